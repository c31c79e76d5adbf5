"""The server on writetune's engine, against a real uvicorn server with the tiny model whose engine steps are slowed
on purpose: a streamed answer's first chunk leaves before its last token is generated, a request arriving mid-batch
joins the running batch, a client that disconnects stops its generation, and a chat's system prompt and earlier
turns reach the model."""

import asyncio
import json
import threading
import time

import httpx
import pytest

from writetune.generate import DecodingConfig, Request
from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

CHAT = "/v1/chat/completions"


class SlowGenerator:
    """The real tiny-model generator whose engine sleeps `delay_s` before each step and records, per step, when it
    ended and which sequences got a token."""

    def __init__(self, real, delay_s: float):
        self.real, self.delay_s = real, delay_s
        self.steps: list[tuple[float, list[int]]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def open_engine(self, max_rows):
        engine = self.real.open_engine(max_rows)
        real_step = engine.step

        def step():
            time.sleep(self.delay_s)
            events = real_step()
            with self.lock:
                self.steps.append((time.monotonic(), [seq for seq, _, _ in events]))
            return events

        engine.step = step
        return engine


def slow_server(tiny_served, delay_s=0.15, **settings):
    slow = SlowGenerator(tiny_served.generator, delay_s)
    served = ServedModel(slow, tiny_served.tokenizer, "tiny", tiny_served.prompt_format)
    return slow, create_app(served, ServeSettings(model="tiny", errant_types=False, **settings))


def chat(text, **extra):
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 12, **extra}


async def stream_chat(client, body, on_first=None):
    """(arrival time of each content chunk, the joined content, the final usage) of a streamed chat."""
    arrivals, content, usage = [], "", None
    async with client.stream("POST", CHAT, json={**body, "stream": True,
                                                 "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event["choices"]:
                piece = choice["delta"].get("content")
                if piece:
                    arrivals.append(time.monotonic())
                    content += piece
                    if on_first is not None and len(arrivals) == 1:
                        on_first.set()
    return arrivals, content, usage


def never_stopping_prompt(tiny_served, budget=12):
    """A prompt whose greedy answer runs to its budget without a stop token (so that it takes many steps)."""
    for k in range(40):
        request = Request(f"Repeat after me, round {k}: la la la.")
        generator = tiny_served.generator
        ids = generator.open_engine(1).run([generator.encode(request)], [budget])[0]
        if len(ids) == budget and not set(ids) & set(generator.stop_ids):
            return request.instruction
    pytest.skip("the tiny model stops early on every candidate prompt")


def test_first_chunk_leaves_before_the_last_token_is_generated(tiny_served):
    prompt = never_stopping_prompt(tiny_served)
    slow, app = slow_server(tiny_served)
    with BackgroundServer(app) as url:
        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                streamed = await stream_chat(client, chat(prompt))
                whole = (await client.post(CHAT, json=chat(prompt))).json()
                return streamed, whole

        (arrivals, content, usage), whole = asyncio.run(scenario())
    last_step = slow.steps[len(slow.steps) // 2 - 1][0]  # the streamed request's steps come first
    assert len(arrivals) > 1 and arrivals[0] < last_step, (arrivals, slow.steps)
    assert content == whole["choices"][0]["message"]["content"]
    assert usage == whole["usage"] and usage["completion_tokens"] == 12  # real tokens: the budget, all generated


def test_a_request_arriving_mid_batch_joins_the_running_batch(tiny_served):
    long_prompt = never_stopping_prompt(tiny_served, budget=24)
    slow, app = slow_server(tiny_served, max_batch_size=8)
    with BackgroundServer(app) as url:
        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                first_chunk = asyncio.Event()
                running = asyncio.create_task(stream_chat(client, chat(long_prompt, max_tokens=24), first_chunk))
                await first_chunk.wait()  # the long answer is being decoded now
                joined_at = len(slow.steps)
                short = await client.post(CHAT, json=chat("Say hi.", max_tokens=3))
                done_at = len(slow.steps)
                arrivals, _, _ = await running
                serial = await client.post(CHAT, json=chat("Say hi.", max_tokens=3))
                return joined_at, done_at, short, arrivals, serial

        joined_at, done_at, short, arrivals, serial = asyncio.run(scenario())
    assert short.status_code == 200
    assert short.json()["choices"][0]["message"] == serial.json()["choices"][0]["message"]
    shared = [seqs for _, seqs in slow.steps[joined_at:done_at] if len(seqs) == 2]
    assert shared, slow.steps  # steps that decoded both requests together
    assert done_at - joined_at < 24  # it did not wait for the long answer's 24 steps
    assert slow.steps[done_at - 1][0] < arrivals[-1]  # and finished while the long one was still streaming


def test_a_client_that_disconnects_stops_its_generation(tiny_served):
    prompt = never_stopping_prompt(tiny_served, budget=40)
    slow, app = slow_server(tiny_served, delay_s=0.1)
    with BackgroundServer(app) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            with client.stream("POST", CHAT, json={**chat(prompt, max_tokens=40), "stream": True}) as response:
                for line in response.iter_lines():
                    if '"content": "' in line and '"content": ""' not in line:
                        break  # the first content chunk: go away
            time.sleep(1.5)
            steps_after = len(slow.steps)
            time.sleep(1.0)
            assert len(slow.steps) == steps_after, "the engine kept decoding for a client that left"
            assert client.get("/health").json()["status"] == "ok"
    assert steps_after < 40


def test_system_prompt_and_history_reach_the_model(tiny_served):
    app = create_app(tiny_served, ServeSettings(model="tiny", errant_types=False))
    question = "Fix the grammar: she go home."
    history = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there."}]
    bodies = {
        "plain": [{"role": "user", "content": question}],
        "system": [{"role": "system", "content": "You answer in French."}, {"role": "user", "content": question}],
        "history": [*history, {"role": "user", "content": question}],
    }
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        answers = {name: client.post(CHAT, json={"messages": messages, "max_tokens": 12}).json()
                   for name, messages in bodies.items()}
    texts = {name: a["choices"][0]["message"]["content"] for name, a in answers.items()}
    decoding = DecodingConfig(max_new_tokens=12, length_ratio=0, length_slack=12)
    expected = tiny_served.generator.generate([
        Request(question),
        Request(question, system="You answer in French."),
        Request(question, history=(("Say hi.", "Hi there."),)),
    ], decoding)
    assert [texts["plain"], texts["system"], texts["history"]] == expected
    assert len(set(texts.values())) == 3  # each part of the conversation changes the answer
    tokens = {name: a["usage"]["prompt_tokens"] for name, a in answers.items()}
    assert tokens["history"] > tokens["plain"]  # usage counts the whole rendered conversation
