"""Load benchmark for `writetune serve`: concurrent clients against the embedded model, batched vs serial serving.

Starts `writetune serve` twice as subprocesses on 127.0.0.1 with the same model: one batched (max batch
`--max-batch-size`, a `--window-ms` micro-batching window), one serial (max batch 1, the baseline). N concurrent
httpx clients post one-sentence /v1/edit grammar requests (ERRANT types included, as the page asks for them); each
(mode, clients) level sends a fixed number of requests, split over `--rounds` rounds that interleave the levels, so
that load from other jobs on a shared machine falls on both servers alike. It reports p50/p95 latency, throughput,
generated tokens/s and mean micro-batch size (from the server's /metrics) and errors (any non-200 or failed
request), then the throughput ratio of batched over serial serving. The last line is
`errors=<n> batching_speedup=<ratio at 8 clients> p95_ms=<batched p95 at 8 clients>`.

Usage: python benchmarks/serve_load.py [--quick] [--model SPEC] [--clients 1,8,32] [--serial-clients 8]
`--quick` (fewer requests, serial at 8 clients only) finishes in under 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx

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


# --quick: requests per (mode, clients), over all rounds. Serial serving is steady at once (one request at a time);
# the batched levels get enough requests for more than one micro-batch per round.
QUICK_REQUESTS = {("serial", 8): 16, ("batched", 1): 4, ("batched", 8): 32, ("batched", 32): 64}


@dataclass
class Level:
    """One (mode, clients) level, accumulated over the rounds it ran in."""

    mode: str
    clients: int
    latencies: list = field(default_factory=list)
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

    def row(self) -> str:
        mean_batch = self.batch_sum / self.batch_count if self.batch_count else 0.0
        return (f"| {self.mode} | {self.clients} | {self.requests} | {self.errors} | "
                f"{1000 * percentile(self.latencies, 0.5):.0f} | {1000 * percentile(self.latencies, 0.95):.0f} | "
                f"{self.rps:.2f} | {self.tokens / self.seconds:.1f} | {mean_batch:.1f} |")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class ServerProcess:
    """`writetune serve` in a subprocess on a free loopback port; its log goes to a temporary file."""

    def __init__(self, args, max_batch_size: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="serve-load-", suffix=".log", delete=False)
        command = [sys.executable, "-m", "writetune.cli", "serve", "--model", args.model, "--host", "127.0.0.1",
                   "--port", str(self.port), "--device", "cpu", "--max-batch-size", str(max_batch_size),
                   "--batch-window-ms", str(args.window_ms), "--max-new-tokens", str(args.max_new_tokens),
                   "--max-queue", str(max(64, 2 * max(args.clients))), "--timeout", str(args.timeout)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        os.unlink(self.log.name)


def server_counts(url: str) -> tuple[int, float, int]:
    """(generated tokens, sum of model batch sizes, number of model batches) from the server's /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text

    def value(name: str) -> float:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    return (int(value("writetune_generated_tokens_total")), value("writetune_batch_size_sum"),
            int(value("writetune_batch_size_count")))


async def drive(url: str, level: Level, total: int, timeout: float) -> None:
    """`level.clients` clients send `total` requests between them; the results are added to `level`."""
    next_index = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            index, next_index = next_index, next_index + 1
            body = {"task": "grammar", "text": SENTENCES[index % len(SENTENCES)]}
            started = time.perf_counter()
            try:
                response = await http.post("/v1/edit", json=body)
                ok = response.status_code == 200 and "edits" in response.json()
            except (httpx.HTTPError, ValueError):
                ok = False
            level.latencies.append(time.perf_counter() - started)
            level.errors += not ok

    before = server_counts(url)
    limits = httpx.Limits(max_connections=level.clients + 4, max_keepalive_connections=level.clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=timeout + 30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(level.clients)))
        level.seconds += time.perf_counter() - started
    after = server_counts(url)
    level.tokens += after[0] - before[0]
    level.batch_sum += after[1] - before[1]
    level.batch_count += after[2] - before[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--clients", default="1,8,32", help="client counts for the batched server")
    parser.add_argument("--serial-clients", default=None, help="client counts for the serial server (default: "
                        "8 with --quick, else 1,8; serial throughput does not grow with more clients)")
    parser.add_argument("--requests", type=int, default=0, help="requests per level (default: per-client x clients)")
    parser.add_argument("--per-client", type=int, default=4, help="requests per client")
    parser.add_argument("--min-requests", type=int, default=16, help="fewest requests per level")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both servers (default 1: on a "
                        "CPU shared with other jobs, more threads than free cores slows generation down severalfold; "
                        "0 leaves torch's default)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (QUICK_REQUESTS) and serial serving at "
                        "8 clients only: finishes in under 5 minutes")
    parser.add_argument("--rounds", type=int, default=2, help="rounds the levels are interleaved in")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    serial_default = "8" if args.quick else "1,8"
    serial_clients = [int(c) for c in (args.serial_clients or serial_default).split(",")]

    started = time.perf_counter()
    print(f"# model={args.model} window_ms={args.window_ms:g} max_new_tokens={args.max_new_tokens} "
          f"threads={args.threads or 'default'} rounds={args.rounds} cpu_count={os.cpu_count()} quick={args.quick}",
          flush=True)
    servers = {}
    try:
        for mode, batch in (("serial", 1), ("batched", args.max_batch_size)):
            servers[mode] = ServerProcess(args, batch)
            servers[mode].wait_ready()
            warm = Level(mode, 2)
            asyncio.run(drive(servers[mode].url, warm, 2, args.timeout))  # spaCy/ERRANT load, first-call costs
            print(f"# {mode} server (max batch {batch}) ready and warm after {time.perf_counter() - started:.0f} s"
                  + (f"; {warm.errors} warm-up requests failed" if warm.errors else ""), flush=True)
        levels = [Level("serial", c) for c in serial_clients] + [Level("batched", c) for c in args.clients]
        # Rounds interleave the levels, so load from other jobs on the machine falls on both servers alike.
        for round_ in range(args.rounds):
            for level in levels:
                total = (args.requests or (QUICK_REQUESTS.get((level.mode, level.clients)) if args.quick else 0)
                         or max(args.min_requests, args.per_client * level.clients))
                asyncio.run(drive(servers[level.mode].url, level, max(1, total // args.rounds), args.timeout))
            print(f"# round {round_ + 1}/{args.rounds} done after {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        for server in servers.values():
            server.stop()

    print("| mode | clients | requests | errors | p50 ms | p95 ms | req/s | tokens/s | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        print(level.row())
    serial = [level for level in levels if level.mode == "serial"]
    batched = [level for level in levels if level.mode == "batched"]
    errors = sum(level.errors for level in levels)
    by_clients = {level.clients: level for level in serial}
    speedups = {b.clients: b.rps / by_clients[b.clients].rps for b in batched if b.clients in by_clients}
    for clients, ratio in speedups.items():
        print(f"# batched/serial throughput at {clients} clients: {ratio:.2f}x")
    best_serial = max(serial, key=lambda level: level.rps)
    for level in batched:
        if level.clients not in by_clients:
            print(f"# batched throughput at {level.clients} clients / best serial throughput "
                  f"({best_serial.clients} clients): {level.rps / best_serial.rps:.2f}x")
    at8 = next((b for b in batched if b.clients == 8), batched[-1])
    speedup = speedups.get(at8.clients, float("nan"))
    print(f"# total {time.perf_counter() - started:.0f} s")
    print(f"errors={errors} batching_speedup={speedup:.2f} p95_ms={1000 * percentile(at8.latencies, 0.95):.0f}")


if __name__ == "__main__":
    main()
