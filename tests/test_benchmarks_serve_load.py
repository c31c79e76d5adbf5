"""benchmarks/serve_load.py's streaming client: what it counts as time to first token, tokens and errors, against a
real server on the tiny model and on hand-made event streams."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

from writetune.serve import BackgroundServer, ServeSettings, ServedModel, create_app

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("serve_load", REPO / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


serve_load = load_benchmark()


def chunk(delta: dict, finish_reason: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return "data: " + json.dumps({"object": "chat.completion.chunk", "choices": [choice]})


@pytest.fixture(scope="module")
def tiny_url(tiny_model_dir):
    served = ServedModel.load(str(tiny_model_dir), device="cpu", model_id="tiny")
    app = create_app(served, ServeSettings(model="tiny", errant_types=False, max_new_tokens=16))
    with BackgroundServer(app) as url:
        yield url


def stream(url: str, body: dict):
    async def go():
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await serve_load.stream_request(http, body)

    return asyncio.run(go())


def test_a_streamed_answer_against_the_server(tiny_url):
    body = serve_load.chat_body("tiny", 0, max_tokens=12)
    result, seconds = stream(tiny_url, body)
    assert result.ok and result.error is None
    whole = httpx.post(tiny_url + "/v1/chat/completions", json={**body, "stream": False}, timeout=60).json()
    tokens = whole["usage"]["completion_tokens"]
    assert result.tokens == tokens  # from the usage chunk, not the content chunks
    if whole["choices"][0]["message"]["content"]:
        assert 1 <= result.chunks <= tokens <= 12
        assert 0 < result.ttft <= seconds
    else:
        assert result.chunks == 0 and result.ttft is None


def test_a_refused_request_is_an_error(tiny_url):
    result, _ = stream(tiny_url, serve_load.chat_body("tiny", 0, max_tokens=17))  # above the server's 16
    assert not result.ok and result.error.startswith("HTTP 422")


def test_feed_times_the_first_content_chunk_only():
    result = serve_load.StreamResult()
    for elapsed, line in [(0.1, chunk({"role": "assistant", "content": ""})), (0.2, ""), (0.5, chunk({"content": "A"})),
                          (0.7, chunk({"content": " b"})), (0.8, chunk({}, "stop")), (0.9, "data: [DONE]")]:
        result.feed(line, elapsed)
    assert (result.ttft, result.chunks, result.tokens, result.ok) == (0.5, 2, 2, True)  # no usage: the chunks
    result.feed('data: {"choices": [], "usage": {"completion_tokens": 3}}', 0.85)
    assert result.tokens == 3


def test_an_error_event_or_a_stream_without_a_finish_reason_is_not_ok():
    failed = serve_load.StreamResult()
    failed.feed(chunk({"content": "A"}), 0.1)
    failed.feed('data: {"error": {"message": "timed out", "code": "timeout"}}', 0.2)
    failed.feed(chunk({}, "stop"), 0.3)
    assert not failed.ok and "timed out" in failed.error
    cut = serve_load.StreamResult()
    cut.feed(chunk({"content": "A"}), 0.1)
    cut.feed("data: [DONE]", 0.2)
    assert not cut.ok and cut.error is None
