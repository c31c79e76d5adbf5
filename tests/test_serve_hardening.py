"""Hostile requests against a real server on 127.0.0.1: text no tokenizer can encode, one request's generator
failure among others, requests sized to occupy the model, timed-out and disconnected requests, unbounded metric
labels, odd seeds and bodies, HEAD, foreign Host headers, and slow or too many connections."""

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

CHAT = "/v1/chat/completions"


class FaultyGenerator:
    """The real tiny-model generator with faults the test controls: calls wait while `gate` is clear, a call with an
    input containing BOOM raises, and with `pause_s` every finished sequence takes that long more."""

    def __init__(self, real, pause_s: float = 0.0):
        self.real, self.tokenizer, self.fmt = real, real.tokenizer, real.fmt
        self.pause_s = pause_s
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[int] = []
        self.finished_sequences = 0
        self.returned = threading.Event()  # set when a call has returned or raised

    @property
    def tokens_generated(self):
        return self.real.tokens_generated

    def generate(self, requests, decoding, on_batch=None):
        self.calls.append(len(requests))
        self.returned.clear()
        self.entered.set()
        try:
            assert self.gate.wait(30)
            if any("BOOM" in r.instruction + r.input for r in requests):
                raise TypeError("the tokenizer fell over")

            def progress(n):
                time.sleep(self.pause_s)
                self.finished_sequences += n
                if on_batch is not None:
                    on_batch(n)

            return self.real.generate(requests, decoding, on_batch=progress)
        finally:
            self.returned.set()


def faulty(tiny_served, pause_s: float = 0.0):
    generator = FaultyGenerator(tiny_served.generator, pause_s)
    return generator, ServedModel(generator, tiny_served.tokenizer, "tiny", tiny_served.prompt_format)


def chat(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 4, **extra}


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]["message"]


def test_a_lone_surrogate_is_422_and_a_failing_request_fails_alone(tiny_served):
    generator, served = faulty(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=8,
                             max_new_tokens=8)
    with BackgroundServer(create_app(served, settings)) as url:
        generator.gate.clear()

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                first = asyncio.create_task(client.post("/v1/edit", json={"task": "grammar", "text": "Hold on."}))
                await asyncio.to_thread(generator.entered.wait, 30)
                texts = ["She go home.", "He buyed apples.", "This BOOM breaks.", "They is here."]
                edits = [asyncio.create_task(client.post("/v1/edit", json={"task": "grammar", "text": t}))
                         for t in texts]
                while (await client.get("/health")).json()["queue_depth"] < 4:
                    await asyncio.sleep(0.02)
                raw = b'{"task":"grammar","text":"bad \\ud800 go"}'  # a lone surrogate, as JSON allows
                surrogate = await client.post("/v1/edit", content=raw, headers={"Content-Type": "application/json"})
                lone_chat = await client.post(CHAT, content=b'{"messages":[{"role":"user","content":"x \\udfff"}]}',
                                              headers={"Content-Type": "application/json"})
                generator.gate.set()
                return await first, [await t for t in edits], surrogate, lone_chat

        first, edits, surrogate, lone_chat = asyncio.run(scenario())
    assert surrogate.status_code == 422 and "lone surrogate" in error_of(surrogate)
    assert lone_chat.status_code == 422 and "lone surrogate" in error_of(lone_chat)
    assert first.status_code == 200
    assert [r.status_code for r in edits] == [200, 200, 500, 200]
    assert "the tokenizer fell over" in error_of(edits[2])
    assert generator.calls[:2] == [1, 4]  # the four went together, then were retried one by one
    assert sorted(generator.calls[2:]) == [1, 1, 1, 1]


def test_request_size_limits_are_413():
    served = ServedModel(generator=None, model_id="tiny")  # every request here is refused before it reaches a model
    settings = ServeSettings(model="tiny", errant_types=False, max_prompts=4, max_sentences=3, max_queue=10)
    with TestClient(create_app(served, settings), base_url="http://localhost") as client:
        response = client.post("/v1/completions", json={"prompt": ["p"] * 80, "n": 8})
        assert response.status_code == 413 and "at most 4" in error_of(response)
        response = client.post("/v1/completions", json={"prompt": ["p"] * 4, "n": 3})
        assert response.status_code == 413 and "queues at most 10" in error_of(response)
        assert client.post("/v1/completions", json={"prompt": "p", "n": 9}).status_code == 422
        response = client.post("/v1/edit", json={"task": "grammar", "text": "One. Two. Three. Four."})
        assert response.status_code == 413 and "4 sentences" in error_of(response)
        limits = client.get("/health").json()["limits"]
        assert (limits["max_prompts"], limits["max_sentences"], limits["max_queue"]) == (4, 3, 10)


def test_the_queue_counts_sequences_not_jobs(tiny_served):
    generator, served = faulty(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=1, max_queue=8)
    with BackgroundServer(create_app(served, settings)) as url:
        generator.gate.clear()

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                busy = asyncio.create_task(client.post(CHAT, json=chat("first")))
                await asyncio.to_thread(generator.entered.wait, 30)
                big = asyncio.create_task(client.post("/v1/completions", json={"prompt": ["a", "b", "c"], "n": 2,
                                                                                "max_tokens": 2}))
                while (await client.get("/health")).json()["queue_depth"] < 1:
                    await asyncio.sleep(0.02)
                refused = await client.post("/v1/completions", json={"prompt": ["d", "e", "f"], "max_tokens": 2})
                fits = asyncio.create_task(client.post(CHAT, json=chat("fits")))
                await asyncio.sleep(0.2)
                generator.gate.set()
                return refused, [await t for t in (busy, big, fits)]

        refused, done = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["Retry-After"]  # 6 queued + 3 > 8
    assert [r.status_code for r in done] == [200, 200, 200]


def test_timed_out_and_disconnected_requests_stop_their_generation(tiny_served):
    big = {"prompt": ["one", "two", "three", "four"], "n": 8, "max_tokens": 4}  # 32 sequences, 6.4 s of work
    generator, served = faulty(tiny_served, pause_s=0.2)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=1,
                             request_timeout_s=0.6, max_new_tokens=4)
    with BackgroundServer(create_app(served, settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        assert client.post("/v1/completions", json=big).status_code == 504
        after = client.post(CHAT, json=chat("quick", max_tokens=1))
        waited = time.perf_counter() - started
        metrics = client.get("/metrics").text
    assert after.status_code == 200 and waited < 3.0, waited
    assert generator.finished_sequences < 12, generator.finished_sequences
    assert "writetune_inflight_requests 0" in metrics

    generator, served = faulty(tiny_served, pause_s=0.2)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=1, request_timeout_s=60)
    with BackgroundServer(create_app(served, settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        generator.gate.clear()  # the model is held, so the request is with it when the client gives up
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            client.post("/v1/completions", json=big, timeout=2.0)
        assert generator.entered.is_set()
        left = time.perf_counter()
        generator.gate.set()
        assert generator.returned.wait(5)
        stopped_after = time.perf_counter() - left
    assert stopped_after < 2.0 and generator.finished_sequences < 12, (stopped_after, generator.finished_sequences)


def test_metric_labels_come_from_closed_sets(tiny_served):
    settings = ServeSettings(model="tiny", errant_types=False)
    with BackgroundServer(create_app(tiny_served, settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        for k in range(5):
            client.request(f"XANMVKLJELC{k}", "/health")
            client.get(f"/no-such-page-{k}")
        metrics = client.get("/metrics").text
    assert "XANMVKLJELC" not in metrics and "no-such-page" not in metrics
    series = [line for line in metrics.splitlines() if line.startswith("writetune_requests_total{")]
    assert any('route="/health",method="other"' in line for line in series)
    assert any('route="other",method="GET",status="404"' in line and line.endswith(" 5") for line in series)


def test_seed_nesting_head_docs_and_host_header(tiny_served):
    settings = ServeSettings(model="tiny", errant_types=False, max_new_tokens=4, allowed_hosts=("writer.example",))
    with BackgroundServer(create_app(tiny_served, settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        huge_seed = client.post(CHAT, json=chat("hi", seed=10**30, temperature=0.5))
        signed = client.post(CHAT, json=chat("hi", seed=-(2**63), temperature=0.5))
        nested = client.post(CHAT, content=b"[" * 1000 + b"]" * 1000, headers={"Content-Type": "application/json"})
        heads = [client.head(path) for path in ("/", "/health", "/metrics")]
        docs = client.get("/docs")
        schema = client.get("/openapi.json")
        port = url.rsplit(":", 1)[1]
        foreign = client.get("/health", headers={"Host": f"rebound.attacker.example:{port}"})
        named = client.get("/health", headers={"Host": f"writer.example:{port}"})
        local = [client.get("/health", headers={"Host": h}) for h in (f"localhost:{port}", f"[::1]:{port}")]
    assert huge_seed.status_code == 422 and "seed" in error_of(huge_seed)
    assert signed.status_code == 200
    assert nested.status_code == 400 and "too deeply" in error_of(nested) and "UTF-8" not in error_of(nested)
    assert [h.status_code for h in heads] == [200, 200, 200] and all(h.content == b"" for h in heads)
    assert docs.status_code == 404 and schema.status_code == 200  # no page that needs a CDN; the schema stays
    assert foreign.status_code == 400 and "rebound.attacker.example" in error_of(foreign)
    assert named.status_code == 200 and [r.status_code for r in local] == [200, 200]


def test_serve_warns_about_a_key_on_the_command_line(monkeypatch):
    from typer.testing import CliRunner

    from writetune.cli import app as cli_app

    runner = CliRunner()
    monkeypatch.delenv("WRITETUNE_API_KEY", raising=False)
    given = runner.invoke(cli_app, ["serve", "--api-key", "s3cret", "--model", "/nonexistent/model-dir"])
    assert "WRITETUNE_API_KEY instead" in given.output
    from_env = runner.invoke(cli_app, ["serve", "--model", "/nonexistent/model-dir"],
                             env={"WRITETUNE_API_KEY": "s3cret"})
    assert from_env.exit_code == 2 and "WRITETUNE_API_KEY instead" not in from_env.output


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Send `trickle` one byte every 0.3 s until the server closes the connection; (seconds it took, what came)."""
    started, received = time.perf_counter(), b""
    sock.settimeout(0.3)
    pending = list(trickle)
    while time.perf_counter() - started < seconds:
        try:
            chunk = sock.recv(4096)
            if not chunk:
                return time.perf_counter() - started, received
            received += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            return time.perf_counter() - started, received
        if pending:
            try:
                sock.send(bytes([pending.pop(0)]))
            except (BrokenPipeError, ConnectionResetError):
                return time.perf_counter() - started, received
    return float("inf"), received


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_slow_clients_are_cut_off_and_connections_are_limited(tiny_served):
    settings = ServeSettings(model="tiny", errant_types=False, header_timeout_s=1.0, body_timeout_s=1.5,
                             max_connections=4)
    with BackgroundServer(create_app(tiny_served, settings)) as url:
        silent = _connect(url)  # opens a connection and sends nothing
        took, _ = _closed_within(silent, 6)
        assert took < 3, took

        trickling_head = _connect(url)
        took, answer = _closed_within(trickling_head, 6, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                                      + b"a" * 40)
        assert took < 3 and answer.startswith(b"HTTP/1.1 408"), (took, answer)

        trickling_body = _connect(url)
        body = json.dumps({"task": "grammar", "text": "She go home."}).encode()
        trickling_body.sendall(b"POST /v1/edit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        took, answer = _closed_within(trickling_body, 6, body)
        assert took < 4 and answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer, (took, answer)

        held = [_connect(url) for _ in range(4)]
        time.sleep(0.2)
        extra = _connect(url)
        took, answer = _closed_within(extra, 3)
        assert took < 1 and answer.startswith(b"HTTP/1.1 503"), (took, answer)
        for sock in held:
            sock.close()
        time.sleep(0.2)
        kept_alive = _connect(url)  # once they are gone the server answers again, and an idle kept-alive
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # connection is not a slow client
        answers = []
        for _ in range(2):
            kept_alive.sendall(request)
            answers.append(_read_response(kept_alive))
            time.sleep(1.5)
        kept_alive.close()
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
