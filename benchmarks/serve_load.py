"""Load benchmark for `writetune serve`: concurrent clients against the embedded model, continuous batching against
serial serving and against `transformers serve`.

Each server runs as a subprocess on 127.0.0.1 with the same model, one torch thread by default:

- `batched`: `writetune serve --max-batch-size 32`, continuous batching (a request joins the running batch at the
  engine's next step, and its tokens are streamed as they are decoded);
- `serial`: `writetune serve --max-batch-size 1`, one request at a time: the baseline;
- `transformers` (streaming only): `transformers serve --continuous-batching` on the same checkpoint (the model's
  local directory, the one writetune converts the embedded GGUF into), offline. Skipped, with the reason printed,
  when the `transformers` command is not installed next to this Python, the model is not a plain local directory,
  or the server does not start.

Two workloads (`--workload`, both by default):

- `stream`: each of N concurrent clients streams `/v1/chat/completions` answers (`stream: true`, greedy,
  `max_tokens` = `--max-new-tokens`; a system message and one sentence to correct with the grammar task's
  instruction). Time to first token (TTFT) is the time from sending the request to the first SSE chunk with content.
  The generated tokens of an answer are its usage's `completion_tokens` where the server sends one
  (`stream_options.include_usage`: writetune does), else its content chunks (`transformers serve` ignores the
  option and sends one chunk per token; writetune holds back text that could still change, such as trailing
  whitespace, so its chunks would undercount); tokens/s is all clients' tokens over the level's wall time.
- `edit`: N concurrent clients post one-sentence `/v1/edit` grammar requests (ERRANT types included, as the page
  asks for them) to the two writetune servers; latency is the whole request.

A request is an error when it fails, answers other than 200, sends an error event, or its stream ends without a
chunk that has a `finish_reason`. Each (server, clients) level sends `--per-client` requests per client (at least
`--min-requests`), split over `--rounds` rounds that interleave the levels, so that load from other jobs on a shared
machine falls on every server alike. Tokens/step is the mean number of tokens an engine step produced
(writetune's /metrics `writetune_batch_size`: the rows decoded, plus the first tokens of the prompts the step
admitted).

The last line is `errors=<n> ttft_p95_ms=<batched TTFT p95 at 8 clients> stream_speedup=<batched over serial
tokens/s at 8 clients> edit_speedup=<batched over serial requests/s at 8 clients>` (a workload not run leaves its
figure out).

Usage: python benchmarks/serve_load.py [--workload stream,edit] [--quick] [--model SPEC] [--clients 1,8,32]
           [--serial-clients 1,8] [--per-client 2] [--max-new-tokens 48] [--no-transformers]
`--quick` (one request per client, at least 4 a level, serial at 8 clients only) takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from writetune.models import resolve
from writetune.tasks import get_task

SENTENCES = [
    "She go to school yesterday.",
    "The results of the experiment was surprising for everyone.",
    "I has been living in this city since three years.",
    "Their is many reason why people enjoys to travel.",
    "He don't know nothing about the new rules.",
    "We discussed about the problem during the meeting.",
    "The informations you gave me were very useful.",
    "Despite of the rain, the children played outside.",
]
SYSTEM_PROMPT = "You are a careful copy editor."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class StreamResult:
    """What one streamed chat completion delivered, fed its SSE lines as they arrive."""

    ttft: float | None = None  # seconds from the request to the first chunk with content
    chunks: int = 0  # content chunks
    usage_tokens: int | None = None  # completion_tokens of a usage chunk
    finished: bool = False  # a chunk with a finish_reason arrived (`transformers serve` sends no `data: [DONE]`)
    error: str | None = None

    def feed(self, line: str, elapsed: float) -> None:
        """One line of the response body, `elapsed` seconds after the request was sent."""
        if not line.startswith("data:"):
            return
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            self.error = f"not JSON: {data[:80]}"
            return
        if "error" in event:
            self.error = str(event["error"])[:200]
            return
        if event.get("usage"):
            self.usage_tokens = event["usage"]["completion_tokens"]
        for choice in event.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                self.chunks += 1
                if self.ttft is None:
                    self.ttft = elapsed
            if choice.get("finish_reason"):
                self.finished = True

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks

    @property
    def ok(self) -> bool:
        return self.finished and self.error is None


@dataclass
class Level:
    """One (server, workload, clients) level, accumulated over the rounds it ran in."""

    server: str
    workload: str
    clients: int
    latencies: list = field(default_factory=list)  # whole requests
    ttfts: list = field(default_factory=list)  # streamed requests that delivered content
    errors: int = 0
    seconds: float = 0.0
    tokens: int = 0
    batch_sum: float = 0.0
    batch_count: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def tokens_per_step(self) -> str:
        return f"{self.batch_sum / self.batch_count:.1f}" if self.batch_count else "-"


def stream_table(levels: list[Level]) -> list[str]:
    lines = ["| server | clients | requests | errors | TTFT p50 ms | TTFT p95 ms | request p50 ms | tokens/s | "
             "tokens/step |", "|---|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        lines.append(f"| {lv.server} | {lv.clients} | {lv.requests} | {lv.errors} | "
                     f"{1000 * percentile(lv.ttfts, 0.5):.0f} | {1000 * percentile(lv.ttfts, 0.95):.0f} | "
                     f"{1000 * percentile(lv.latencies, 0.5):.0f} | {lv.tokens_per_s:.1f} | {lv.tokens_per_step()} |")
    return lines


def edit_table(levels: list[Level]) -> list[str]:
    lines = ["| server | clients | requests | errors | p50 ms | p95 ms | req/s | tokens/s | tokens/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        lines.append(f"| {lv.server} | {lv.clients} | {lv.requests} | {lv.errors} | "
                     f"{1000 * percentile(lv.latencies, 0.5):.0f} | {1000 * percentile(lv.latencies, 0.95):.0f} | "
                     f"{lv.rps:.2f} | {lv.tokens_per_s:.1f} | {lv.tokens_per_step()} |")
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server command in a subprocess on a free loopback port; its log goes to a temporary file.
    `model_field` is the `model` a chat request names; `metrics` says whether it has writetune's /metrics."""

    def __init__(self, name: str, command: list[str], port: int, model_field: str, metrics: bool,
                 env: dict[str, str] | None = None):
        self.name, self.url, self.model_field, self.metrics = name, f"http://127.0.0.1:{port}", model_field, metrics
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"serve-load-{name}-", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def log_tail(self, chars: int = 3000) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: the server did not become ready in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


def writetune_server(args, name: str, max_batch_size: int) -> ServerProcess:
    port = free_port()
    command = [sys.executable, "-m", "writetune.cli", "serve", "--model", args.model, "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--max-batch-size", str(max_batch_size),
               "--max-new-tokens", str(args.max_new_tokens), "--max-queue", str(max(64, 2 * max(args.clients))),
               "--timeout", str(args.timeout)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return ServerProcess(name, command, port, args.model, metrics=True)


def transformers_command(args) -> tuple[list[str] | None, str | None]:
    """(the `transformers serve` command line without host and port, None), or (None, why it cannot run here)."""
    executable = Path(sys.executable).parent / "transformers"
    if not executable.is_file():
        return None, f"no `transformers` command next to {sys.executable}"
    resolved = resolve(args.model)
    if resolved.base is not None or not Path(resolved.path).is_dir():
        return None, f"'{args.model}' is not a plain local model directory ({resolved.kind}: {resolved.path})"
    return [str(executable), "serve", resolved.path, "--continuous-batching", "--device", "cpu",
            "--dtype", "float32", "--log-level", "warning"], None


def transformers_server(args, command: list[str]) -> ServerProcess:
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return ServerProcess("transformers", [*command, "--host", "127.0.0.1", "--port", str(port)], port,
                         model_field=command[2], metrics=False, env=env)


def server_counts(server: ServerProcess) -> tuple[int, float, int]:
    """(generated tokens, tokens of all engine steps, engine steps) from writetune's /metrics."""
    if not server.metrics:
        return 0, 0.0, 0
    text = httpx.get(server.url + "/metrics", timeout=10).text

    def value(name: str) -> float:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    return (int(value("writetune_generated_tokens_total")), value("writetune_batch_size_sum"),
            int(value("writetune_batch_size_count")))


def chat_body(model: str, index: int, max_tokens: int) -> dict:
    """A streamed, greedy grammar request for the `index`-th sentence, naming `model`."""
    instruction = get_task("grammaticality").instruction
    return {"model": model, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
            "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": f"{instruction}\n\n{SENTENCES[index % len(SENTENCES)]}"}]}


async def stream_request(http: httpx.AsyncClient, body: dict) -> tuple[StreamResult, float]:
    """One streamed chat completion: what it delivered, and its whole time in seconds."""
    result = StreamResult()
    started = time.perf_counter()
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
            else:
                async for line in response.aiter_lines():
                    result.feed(line, time.perf_counter() - started)
    except httpx.HTTPError as err:
        result.error = f"{type(err).__name__}: {err}"
    return result, time.perf_counter() - started


async def edit_request(http: httpx.AsyncClient, index: int) -> tuple[bool, float]:
    started = time.perf_counter()
    try:
        response = await http.post("/v1/edit", json={"task": "grammar", "text": SENTENCES[index % len(SENTENCES)]})
        ok = response.status_code == 200 and "edits" in response.json()
    except (httpx.HTTPError, ValueError):
        ok = False
    return ok, time.perf_counter() - started


async def drive(server: ServerProcess, level: Level, total: int, args) -> None:
    """`level.clients` closed-loop clients send `total` requests between them; the results are added to `level`."""
    next_index = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            index, next_index = next_index, next_index + 1
            if level.workload == "stream":
                result, seconds = await stream_request(http, chat_body(server.model_field, index, args.max_new_tokens))
                ok = result.ok
                level.tokens += result.tokens
                if result.ttft is not None:
                    level.ttfts.append(result.ttft)
                if not ok and level.errors < 3:
                    print(f"# {server.name}: {result.error or 'the stream ended without a finish_reason'}",
                          flush=True)
            else:
                ok, seconds = await edit_request(http, index)
            level.latencies.append(seconds)
            level.errors += not ok

    before = server_counts(server)
    limits = httpx.Limits(max_connections=level.clients + 4, max_keepalive_connections=level.clients + 4)
    async with httpx.AsyncClient(base_url=server.url, timeout=args.timeout + 30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(level.clients)))
        level.seconds += time.perf_counter() - started
    after = server_counts(server)
    if level.workload == "edit":  # edits stream nothing: their tokens come from the server
        level.tokens += after[0] - before[0]
    level.batch_sum += after[1] - before[1]
    level.batch_count += after[2] - before[2]


def ratio_lines(levels: list[Level], workload: str, rate) -> dict[int, float]:
    """Print batched over serial and over transformers at each client count; return batched over serial by clients."""
    by = {(lv.server, lv.clients): lv for lv in levels}
    speedups = {}
    for lv in levels:
        if lv.server != "batched":
            continue
        for other in ("serial", "transformers"):
            if (other, lv.clients) in by and rate(by[other, lv.clients]) > 0:
                ratio = rate(lv) / rate(by[other, lv.clients])
                print(f"# {workload}: batched/{other} throughput at {lv.clients} clients: {ratio:.2f}x")
                if other == "serial":
                    speedups[lv.clients] = ratio
    return speedups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--workload", default="stream,edit", help="stream, edit or both (comma-separated)")
    parser.add_argument("--clients", default="1,8,32", help="client counts for the batched and transformers servers")
    parser.add_argument("--serial-clients", default=None, help="client counts for the serial server (default: "
                        "8 with --quick, else 1,8; serial throughput does not grow with more clients)")
    parser.add_argument("--per-client", type=int, default=2, help="requests per client in a level")
    parser.add_argument("--min-requests", type=int, default=8, help="fewest requests in a level")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every server (default 1: on a "
                        "CPU shared with other jobs, more threads than free cores slows generation down severalfold; "
                        "0 leaves torch's default)")
    parser.add_argument("--no-transformers", action="store_true", help="do not start `transformers serve`")
    parser.add_argument("--quick", action="store_true", help="one request per client, at least 4 a level, serial "
                        "serving at 8 clients only")
    parser.add_argument("--rounds", type=int, default=2, help="rounds the levels are interleaved in")
    args = parser.parse_args()
    workloads = [w for w in args.workload.split(",") if w]
    if not workloads or set(workloads) - {"stream", "edit"}:
        parser.error(f"--workload: expected stream, edit or both, got {args.workload!r}")
    args.clients = [int(c) for c in args.clients.split(",")]
    serial_clients = [int(c) for c in (args.serial_clients or ("8" if args.quick else "1,8")).split(",")]
    per_client, min_requests = (1, 4) if args.quick else (args.per_client, args.min_requests)

    started = time.perf_counter()
    print(f"# model={args.model} workloads={','.join(workloads)} max_new_tokens={args.max_new_tokens} "
          f"threads={args.threads or 'default'} rounds={args.rounds} cpu_count={os.cpu_count()} "
          f"affinity={sorted(os.sched_getaffinity(0))} quick={args.quick}", flush=True)
    command, skipped = None, "--no-transformers"
    if "stream" in workloads and not args.no_transformers:
        command, skipped = transformers_command(args)
    servers: dict[str, ServerProcess] = {}
    levels: list[Level] = []
    try:
        starts = [("serial", lambda: writetune_server(args, "serial", 1)),
                  ("batched", lambda: writetune_server(args, "batched", args.max_batch_size))]
        if command:
            starts.append(("transformers", lambda: transformers_server(args, command)))
        for name, start in starts:
            server = start()
            try:
                server.wait_ready()
            except RuntimeError as err:
                server.stop()
                if name != "transformers":
                    raise
                skipped = f"`transformers serve` did not start: {str(err)[-600:]}"
                continue
            servers[name] = server
            for workload in workloads:
                if workload == "edit" and name == "transformers":
                    continue
                warm = Level(name, workload, 2)  # first-call costs: spaCy/ERRANT, kernels, a cache manager
                asyncio.run(drive(server, warm, 2, args))
                print(f"# {name} server warm for {workload} after {time.perf_counter() - started:.0f} s"
                      + (f"; {warm.errors} warm-up requests failed" if warm.errors else ""), flush=True)
        if "stream" in workloads and "transformers" not in servers:
            print(f"# skipped transformers serve: {skipped}", flush=True)
        for workload in workloads:
            for name in servers:
                if workload == "edit" and name == "transformers":
                    continue
                levels += [Level(name, workload, c) for c in (serial_clients if name == "serial" else args.clients)]
        # Rounds interleave the levels, so load from other jobs on the machine falls on every server alike.
        for round_ in range(args.rounds):
            for level in levels:
                total = max(min_requests, per_client * level.clients)
                asyncio.run(drive(servers[level.server], level, max(1, total // args.rounds), args))
            print(f"# round {round_ + 1}/{args.rounds} done after {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        for server in servers.values():
            server.stop()

    summary = [f"errors={sum(lv.errors for lv in levels)}"]
    if "stream" in workloads:
        stream = [lv for lv in levels if lv.workload == "stream"]
        print("\n".join(stream_table(stream)))
        speedups = ratio_lines(stream, "stream", lambda lv: lv.tokens_per_s)
        at8 = next((lv for lv in stream if lv.server == "batched" and lv.clients == 8), None)
        if at8 is not None:
            summary.append(f"ttft_p95_ms={1000 * percentile(at8.ttfts, 0.95):.0f}")
        summary.append(f"stream_speedup={speedups.get(8, float('nan')):.2f}")
    if "edit" in workloads:
        edit = [lv for lv in levels if lv.workload == "edit"]
        print("\n".join(edit_table(edit)))
        speedups = ratio_lines(edit, "edit", lambda lv: lv.rps)
        summary.append(f"edit_speedup={speedups.get(8, float('nan')):.2f}")
    print(f"# total {time.perf_counter() - started:.0f} s")
    print(" ".join(summary))


if __name__ == "__main__":
    main()
