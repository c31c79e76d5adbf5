"""Limits and faults: oversized input (413), too many tokens and bad fields (422), malformed JSON (400), missing or
wrong API key (401), a full queue (503 + Retry-After), timeouts (504), generator errors (500), and a fault run
against a real server after which it still answers correctly."""

import asyncio
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

CHAT = "/v1/chat/completions"


class GatedGenerator:
    """The real tiny-model generator behind a gate the test controls; raises for inputs containing BOOM."""

    def __init__(self, real):
        self.real, self.tokenizer, self.fmt = real, real.tokenizer, real.fmt
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.finished = threading.Semaphore(0)  # released once per generate call that has returned or raised

    @property
    def tokens_generated(self):
        return self.real.tokens_generated

    def generate(self, requests, decoding, on_batch=None):
        self.entered.set()
        try:
            assert self.open.wait(30)
            if any("BOOM" in r.instruction + r.input for r in requests):
                raise RuntimeError("the model fell over")
            return self.real.generate(requests, decoding, on_batch=on_batch)
        finally:
            self.finished.release()


def gated(tiny_served):
    gate = GatedGenerator(tiny_served.generator)
    return gate, ServedModel(gate, tiny_served.tokenizer, "tiny", tiny_served.prompt_format)


@pytest.fixture(scope="module")
def client(tiny_served):
    settings = ServeSettings(model="tiny", errant_types=False, max_input_chars=100, max_new_tokens=16)
    with TestClient(create_app(tiny_served, settings), base_url="http://localhost") as c:
        yield c


def chat(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 4, **extra}


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]["message"]


def test_too_long_input_is_413(client):
    response = client.post("/v1/edit", json={"task": "grammar", "text": "x" * 101})
    assert response.status_code == 413 and "at most 100" in error_of(response)
    response = client.post(CHAT, json={"messages": [{"role": "system", "content": "s" * 60},
                                                    {"role": "user", "content": "u" * 41}]})
    assert response.status_code == 413
    response = client.post("/v1/completions", json={"prompt": ["p" * 60, "q" * 41]})
    assert response.status_code == 413
    huge = b'{"task": "grammar", "text": "' + b"y" * 70_000 + b'"}'  # refused before it is parsed
    response = client.post("/v1/edit", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "request body larger" in error_of(response)


def test_too_many_tokens_and_bad_fields_are_422(client):
    response = client.post(CHAT, json=chat("hi", max_tokens=17))
    assert response.status_code == 422 and "limit of 16" in error_of(response)
    for body in (chat("hi", temperature=5), chat("hi", n=0), chat("hi", max_tokens=0), {"messages": []},
                 {"prompt": [1, 2, 3]}, chat("hi", stop=["a", "b", "c", "d", "e"]),
                 {"messages": [{"role": "assistant", "content": "no user here"}]},
                 {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}):
        path = "/v1/completions" if "prompt" in body else CHAT
        response = client.post(path, json=body)
        assert response.status_code == 422, body
        error_of(response)
    response = client.post("/v1/edit", json={"task": "no-such-task", "text": "Hello."})
    assert response.status_code == 422 and "unknown task 'no-such-task'" in error_of(response)
    response = client.post("/v1/edit", json={"task": "generic", "text": "Hello."})
    assert response.status_code == 422 and "not a writing task" in error_of(response)
    response = client.post("/v1/edit", json={"task": "grammar", "text": "   "})
    assert response.status_code == 422 and "empty" in error_of(response)


def test_malformed_requests_are_4xx_with_a_message(client):
    json_header = {"Content-Type": "application/json"}
    for raw in (b'{"messages": [', b"not json at all", b"\xff\xfe\x00"):
        response = client.post(CHAT, content=raw, headers=json_header)
        assert response.status_code == 400 and "not valid JSON" in error_of(response)
    response = client.post(CHAT, content=b'["a list"]', headers=json_header)
    assert response.status_code == 400 and "JSON object" in error_of(response)
    response = client.post("/v1/edit", content=b"task=grammar&text=hi",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert 400 <= response.status_code < 500
    error_of(response)
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and error_of(response)
    assert client.get(CHAT).status_code == 405


def test_api_key_is_required_when_set(tiny_served):
    settings = ServeSettings(model="tiny", errant_types=False, api_key="s3cret", max_new_tokens=8)
    with TestClient(create_app(tiny_served, settings), base_url="http://localhost") as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"X-API-Key": "nope"}):
            response = c.post(CHAT, json=chat("hi"), headers=headers)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
            assert "API key" in error_of(response)
        assert c.get("/v1/models").status_code == 401
        assert c.post(CHAT, json=chat("hi"), headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post(CHAT, json=chat("hi"), headers={"X-API-Key": "s3cret"}).status_code == 200
        for public in ("/", "/health", "/v1/tasks", "/static/app.js"):
            assert c.get(public).status_code == 200
        assert c.get("/health").json()["auth_required"] is True


def test_full_queue_is_503_with_retry_after_and_recovers(tiny_served):
    gate, served = gated(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=1, max_queue=2)
    with BackgroundServer(create_app(served, settings)) as url:
        gate.open.clear()

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                busy = asyncio.create_task(client.post(CHAT, json=chat("first")))
                await asyncio.to_thread(gate.entered.wait, 30)
                waiting = [asyncio.create_task(client.post(CHAT, json=chat(f"queued {k}"))) for k in range(2)]
                while (await client.get("/health")).json()["queue_depth"] < 2:
                    await asyncio.sleep(0.02)
                refused = await client.post(CHAT, json=chat("one too many"))
                gate.open.set()
                done = [await t for t in [busy, *waiting]]
                after = await client.post(CHAT, json=chat("after"))
                metrics = (await client.get("/metrics")).text
                return refused, done, after, metrics

        refused, done, after, metrics = asyncio.run(scenario())
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "busy" in error_of(refused)
    assert [r.status_code for r in done] == [200, 200, 200] and after.status_code == 200
    assert 'writetune_rejected_total{reason="queue_full"} 1' in metrics


def test_timeout_is_504_and_generation_errors_are_500(tiny_served):
    gate, served = gated(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, request_timeout_s=1.0, max_new_tokens=8)
    with TestClient(create_app(served, settings), base_url="http://localhost") as c:
        gate.open.clear()
        response = c.post(CHAT, json=chat("slow"))
        assert response.status_code == 504 and "timed out" in error_of(response)
        gate.open.set()
        assert gate.finished.acquire(timeout=30)  # the abandoned generation no longer holds the model
        response = c.post("/v1/edit", json={"task": "grammar", "text": "This BOOM sentence. And this one."})
        assert response.status_code == 500 and "the model fell over" in error_of(response)
        assert c.post(CHAT, json=chat("fine again")).status_code == 200


def test_fault_run_then_the_server_still_answers(tiny_served):
    """Oversized, malformed, unauthorised and flood requests against one real server, then good requests."""
    settings = ServeSettings(model="tiny", api_key="k", max_input_chars=200, max_new_tokens=8, max_queue=4,
                             max_batch_size=4)
    auth = {"Authorization": "Bearer k"}
    with BackgroundServer(create_app(tiny_served, settings)) as url:
        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                statuses = []
                statuses.append((await client.post("/v1/edit", json={"task": "grammar", "text": "z" * 5000},
                                                   headers=auth)).status_code)
                statuses.append((await client.post("/v1/edit", content=b"z" * 3_000_000, headers=auth)).status_code)
                statuses.append((await client.post(CHAT, content=b"{oops", headers={
                    **auth, "Content-Type": "application/json"})).status_code)
                statuses.append((await client.post(CHAT, json=chat("hi"))).status_code)
                statuses.append((await client.post(CHAT, json=chat("hi", max_tokens=10_000),
                                                   headers=auth)).status_code)
                flood = await asyncio.gather(*(
                    client.post(CHAT, json=chat(f"flood {k}"), headers=auth) for k in range(60)))
                unauth_flood = await asyncio.gather(*(client.post(CHAT, json=chat("x")) for _ in range(30)))
                good = await client.post("/v1/edit", json={"task": "grammar", "text": "She go home."},
                                         headers=auth)
                health = await client.get("/health")
                return statuses, flood, unauth_flood, good, health

        statuses, flood, unauth_flood, good, health = asyncio.run(scenario())
    assert statuses == [413, 413, 400, 401, 422]
    codes = [r.status_code for r in flood]
    assert set(codes) <= {200, 503} and 200 in codes, codes
    assert all(r.headers.get("Retry-After") for r in flood if r.status_code == 503)
    assert {r.status_code for r in unauth_flood} == {401}
    assert good.status_code == 200 and good.json()["object"] == "edit"
    assert health.json()["status"] == "ok" and health.json()["queue_depth"] == 0
