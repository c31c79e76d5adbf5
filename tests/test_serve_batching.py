"""Micro-batching on a real uvicorn server with the tiny model: concurrent requests share generator calls, answers
stay the same as one-at-a-time, and max_batch_size=1 serves one request per call."""

import asyncio
import threading
import time

import httpx
import pytest

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

PROMPTS = ["Fix the grammar in this sentence: she go home.", "Simplify: the committee deliberated at length.",
           "Paraphrase: the dog runs fast.", "Say hi.", "Make this text more fluent: he went market.",
           "Name three colours."]


class SpyGenerator:
    """The real tiny-model generator, recording how many requests each call held. With `hold` cleared, calls wait
    until the test sets it (so requests pile up behind a busy generator)."""

    def __init__(self, real):
        self.real, self.tokenizer, self.fmt = real, real.tokenizer, real.fmt
        self.calls: list[int] = []
        self.batch_sizes: list[int] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    @property
    def tokens_generated(self):
        return self.real.tokens_generated

    def generate(self, requests, decoding, on_batch=None):
        self.calls.append(len(requests))
        self.batch_sizes.append(decoding.batch_size)
        self.entered.set()
        assert self.hold.wait(30)
        return self.real.generate(requests, decoding, on_batch=on_batch)


def spy_served(tiny_served):
    spy = SpyGenerator(tiny_served.generator)
    return spy, ServedModel(spy, tiny_served.tokenizer, "tiny", tiny_served.prompt_format)


async def _complete_all(url: str, prompts: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        responses = await asyncio.gather(*(
            client.post("/v1/completions", json={"prompt": p, "max_tokens": 8}) for p in prompts))
    assert [r.status_code for r in responses] == [200] * len(prompts)
    return [r.json()["choices"][0]["text"] for r in responses]


def test_concurrent_requests_share_a_batch(tiny_served):
    spy, served = spy_served(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=8)
    with BackgroundServer(create_app(served, settings)) as url:
        answers = asyncio.run(_complete_all(url, PROMPTS))
        calls = list(spy.calls)
        serial = [asyncio.run(_complete_all(url, [p]))[0] for p in PROMPTS]
    assert sum(calls) == len(PROMPTS)
    assert max(calls) > 1, f"requests were generated one by one: {calls}"
    assert set(spy.batch_sizes) == {8}  # the generator may decode up to max_batch_size sequences together
    assert answers == serial  # batching changes the speed, not the answers


def test_requests_queue_behind_a_busy_generator_and_go_together(tiny_served):
    spy, served = spy_served(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=8)
    with BackgroundServer(create_app(served, settings)) as url:
        spy.hold.clear()

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                first = asyncio.create_task(client.post("/v1/completions", json={"prompt": "Say hi.",
                                                                                  "max_tokens": 4}))
                await asyncio.to_thread(spy.entered.wait, 30)
                rest = [asyncio.create_task(client.post("/v1/completions", json={"prompt": p, "max_tokens": 4}))
                        for p in PROMPTS[:5]]
                while (await client.get("/health")).json()["queue_depth"] < 5:
                    await asyncio.sleep(0.02)
                spy.hold.set()
                return [await t for t in [first, *rest]]

        responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 6
    assert spy.calls == [1, 5]


def test_max_batch_size_one_is_serial(tiny_served):
    spy, served = spy_served(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=1)
    with BackgroundServer(create_app(served, settings)) as url:
        asyncio.run(_complete_all(url, PROMPTS[:4]))
    assert spy.calls == [1, 1, 1, 1] and set(spy.batch_sizes) == {1}


def test_a_lone_client_is_not_held_back(tiny_served):
    spy, served = spy_served(tiny_served)
    settings = ServeSettings(model="tiny", errant_types=False)
    with BackgroundServer(create_app(served, settings)) as url:
        with httpx.Client(base_url=url, timeout=60) as http:
            http.post("/v1/completions", json={"prompt": "Say hi.", "max_tokens": 2})
            started = time.perf_counter()
            for _ in range(3):
                assert http.post("/v1/completions", json={"prompt": "Say hi.", "max_tokens": 2}).status_code == 200
            elapsed = time.perf_counter() - started
    assert spy.calls == [1, 1, 1, 1] and elapsed < 3.0  # nowhere near three 5 s windows
