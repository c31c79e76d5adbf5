"""The generation backends behind one interface: `make_generator`, the copy system, the OpenAI-compatible client
against real local HTTP servers (`writetune serve` with the tiny model, and a small flaky server for retries, 4xx
errors and bounded concurrency), and the vLLM / llama.cpp adapters (lazy imports with a clear error, and their
calls checked against stand-in modules, since neither runtime is installed here)."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from writetune.generate import (
    CopyGenerator,
    DecodingConfig,
    EndpointError,
    Generator,
    LlamaCppGenerator,
    OpenAIGenerator,
    Request,
    TransformersGenerator,
    VllmGenerator,
    make_generator,
    parse_openai_spec,
    render_messages,
    render_prompt,
)
from writetune.models import load_model
from writetune.prompt import chatml

REQUESTS = [
    Request("Fix the grammar in this sentence:", "She go to school."),
    Request("Simplify this sentence:", "The committee deliberated extensively before reaching a verdict."),
    Request("Paraphrase this sentence:", "The quick brown fox jumps over the lazy dog."),
    Request("Make this text more fluent:", "He went market yesterday and buy apples."),
]
# a budget that does not depend on the tokenizer, so a remote backend and a local one allow the same tokens
FIXED_BUDGET = DecodingConfig(max_new_tokens=10, length_ratio=0.0, length_slack=10, batch_size=4)


def test_copy_generator_returns_the_inputs():
    generator = make_generator("copy")
    assert isinstance(generator, CopyGenerator) and isinstance(generator, Generator)
    seen = []
    assert generator.generate(REQUESTS, on_batch=seen.append) == [r.input for r in REQUESTS]
    assert seen == [len(REQUESTS)]


def test_unknown_backend_and_openai_specs():
    with pytest.raises(ValueError, match="unknown backend"):
        make_generator("x", backend="tensorrt")
    assert parse_openai_spec("openai:gpt-4o-mini") == ("gpt-4o-mini", None)
    assert parse_openai_spec("openai:m@http://h:1/v1") == ("m", "http://h:1/v1")
    with pytest.raises(ValueError, match="needs an endpoint"):
        make_generator("openai:some-model")


def test_decoding_names_parse():
    assert DecodingConfig.parse("greedy").strategy == "greedy"
    beam = DecodingConfig.parse("beam4")
    assert (beam.strategy, beam.num_beams, beam.name) == ("beam", 4, "beam4")
    assert DecodingConfig.parse("beam").num_beams == 4
    assert DecodingConfig.parse("sample", seed=3).describe().startswith("sample;t=0.7,p=0.9,seed=3")
    seeded = DecodingConfig.parse("sample@5")
    assert (seeded.name, seeded.seed) == ("sample@5", 5) and seeded.describe().startswith("sample;t=0.7,p=0.9,seed=5")
    with pytest.raises(ValueError, match="sample@SEED"):
        DecodingConfig.parse("sample@")
    for bad in ("nucleus", "beam1", "beamx"):
        with pytest.raises(ValueError):
            DecodingConfig.parse(bad)


def test_few_shot_rendering_keeps_one_system_header_and_the_turn_layout():
    fmt = chatml()
    request = Request("Fix:", "she go", shots=(("he go", "He goes."), ("i is", "I am.")))
    text = render_prompt(fmt, request)
    assert text.count("<|im_start|>system") == 1
    assert text.startswith(fmt.render_prompt("Fix:", "he go") + "He goes.<|im_end|>")
    assert text.endswith("<|im_start|>user\nFix:\n\nshe go<|im_end|>\n<|im_start|>assistant\n")
    assert render_prompt(fmt, Request("Fix:", "x")) == fmt.render_prompt("Fix:", "x")
    messages = render_messages(fmt, request)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == "Fix:\n\nshe go"


# ---- OpenAI-compatible endpoint: `writetune serve` with the tiny model


@pytest.fixture(scope="module")
def tiny_generator(tiny_model_dir):
    return TransformersGenerator(load_model(str(tiny_model_dir)))


def test_openai_backend_against_writetune_serve_matches_local_generation(tiny_model_dir, tiny_generator):
    from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

    served = ServedModel.load(str(tiny_model_dir), device="cpu", model_id="tiny")
    settings = ServeSettings(model="tiny", errant_types=False, max_batch_size=8)
    with BackgroundServer(create_app(served, settings)) as url:
        remote = make_generator(f"openai:tiny@{url}/v1", concurrency=3)
        assert isinstance(remote, OpenAIGenerator)
        answers = remote.generate(REQUESTS, FIXED_BUDGET)
    local = tiny_generator.generate(REQUESTS, FIXED_BUDGET)
    assert answers == local  # the same prompt, rendered by the same prompt.py, on both sides
    assert remote.tokens_generated > 0
    assert remote.describe() == f"openai:tiny@{url}/v1"


# ---- OpenAI-compatible endpoint: a flaky server


class FlakyServer:
    """`/v1/chat/completions` that answers the user message reversed, fails the first `fail_first` calls per
    message with `fail_status`, answers 400 to a message containing 'bad', and records concurrency."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503, delay: float = 0.05):
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.fail_first, self.fail_status, self.delay = fail_first, fail_status, delay
        self.calls: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        def chat(body: dict):
            user = body["messages"][-1]["content"]
            with self.lock:
                self.bodies.append(body)
                self.calls[user] = self.calls.get(user, 0) + 1
                attempt = self.calls[user]
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                time.sleep(self.delay)
                if "bad" in user:
                    return JSONResponse({"error": {"message": "bad request body"}}, status_code=400)
                if attempt <= self.fail_first:
                    return JSONResponse({"error": {"message": "busy"}}, status_code=self.fail_status,
                                        headers={"retry-after": "0"})
                return {"choices": [{"index": 0, "message": {"role": "assistant", "content": user[::-1]}}],
                        "usage": {"completion_tokens": 2}}
            finally:
                with self.lock:
                    self.in_flight -= 1

        self.app = app


@pytest.fixture
def flaky():
    from writetune.serve import BackgroundServer

    servers = []

    def start(**kwargs):
        server = FlakyServer(**kwargs)
        background = BackgroundServer(server.app)
        url = background.__enter__()
        servers.append(background)
        return server, url + "/v1"

    yield start
    for background in servers:
        background.__exit__(None, None, None)


def test_openai_backend_retries_5xx_and_429_then_answers_in_order(flaky):
    for status in (503, 429):
        server, url = flaky(fail_first=2, fail_status=status)
        client = OpenAIGenerator("m", url, concurrency=2, backoff=0.01)
        answers = client.generate(REQUESTS, DecodingConfig())
        expected = [render_messages(client.fmt, r)[-1]["content"][::-1] for r in REQUESTS]
        assert answers == expected
        assert all(count == 3 for count in server.calls.values())  # two failures, then success
        assert client.tokens_generated == 2 * len(REQUESTS)
        body = server.bodies[-1]
        assert body["model"] == "m" and body["temperature"] == 0.0 and body["messages"][0]["role"] == "system"
        assert body["max_tokens"] >= DecodingConfig().length_slack


def test_openai_backend_gives_up_after_the_retries(flaky):
    server, url = flaky(fail_first=10)
    client = OpenAIGenerator("m", url, max_retries=2, backoff=0.01)
    with pytest.raises(EndpointError, match="gave up after 3 attempts.*HTTP 503"):
        client.generate(REQUESTS[:1], DecodingConfig())
    assert sum(server.calls.values()) == 3


def test_openai_backend_stops_at_a_4xx_without_retrying(flaky):
    server, url = flaky()
    client = OpenAIGenerator("m", url, backoff=0.01)
    with pytest.raises(EndpointError, match="HTTP 400.*bad request body"):
        client.generate([Request("Fix:", "a bad sentence")], DecodingConfig())
    assert sum(server.calls.values()) == 1
    with pytest.raises(ValueError, match="no beam search"):
        client.generate(REQUESTS[:1], DecodingConfig(strategy="beam"))


def test_openai_backend_bounds_concurrency(flaky):
    server, url = flaky(delay=0.15)
    client = OpenAIGenerator("m", url, concurrency=2)
    many = [Request("Fix:", f"sentence number {i}") for i in range(8)]
    done = []
    client.generate(many, DecodingConfig(), on_batch=done.append)
    assert server.max_in_flight == 2
    assert sum(done) == 8


# ---- vLLM and llama.cpp: lazy imports and the calls they make


def test_missing_extras_give_install_hints(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ValueError, match=r"pip install 'writetune\[gpu\]'"):
        make_generator(str(tiny_model_dir), backend="vllm")
    with pytest.raises(ValueError, match=r"pip install 'writetune\[gguf-runtime\]'"):
        LlamaCppGenerator("model.gguf")
    with pytest.raises(ValueError, match="needs a .gguf file"):
        make_generator(str(tiny_model_dir), backend="llamacpp")


def _fake_vllm(tokenizer, calls):
    module = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def get_tokenizer(self):
            return tokenizer

        def generate(self, prompts, sampling_params=None, use_tqdm=True, **kwargs):
            calls.append(("generate", prompts, sampling_params))
            outs = []
            for prompt in prompts:
                ids = tokenizer("Done.", add_special_tokens=False)["input_ids"]
                completion = types.SimpleNamespace(text="Done.<|im_end|>", token_ids=ids)
                outs.append(types.SimpleNamespace(outputs=[completion]))
            return outs

        def beam_search(self, prompts, params):
            calls.append(("beam_search", prompts, params))
            answer = tokenizer("Done.", add_special_tokens=False)["input_ids"]
            stop = tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"]
            return [types.SimpleNamespace(sequences=[types.SimpleNamespace(
                tokens=list(p["prompt_token_ids"]) + answer + stop + answer)]) for p in prompts]

    class BeamSearchParams:
        def __init__(self, beam_width, max_tokens):
            self.beam_width, self.max_tokens = beam_width, max_tokens

    sampling = types.ModuleType("vllm.sampling_params")
    sampling.BeamSearchParams = BeamSearchParams
    module.sampling_params = sampling
    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module


def test_vllm_adapter_sends_rendered_token_ids_budgets_and_stops(monkeypatch, tiny_model_dir, tiny_generator):
    calls = []
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(tiny_generator.tokenizer, calls))
    generator = make_generator(str(tiny_model_dir), backend="vllm", dtype="bfloat16")
    assert isinstance(generator, VllmGenerator)
    decoding = DecodingConfig(max_new_tokens=50, length_ratio=1.0, length_slack=2)
    assert generator.generate(REQUESTS, decoding) == ["Done."] * len(REQUESTS)
    kind, prompts, params = calls[-1]
    assert calls[0][1]["dtype"] == "bfloat16"
    for request, prompt, param in zip(REQUESTS, prompts, params):
        assert prompt["prompt_token_ids"] == tiny_generator.tokenizer(
            render_prompt(tiny_generator.fmt, request), add_special_tokens=False)["input_ids"]
        assert param.kwargs["max_tokens"] == tiny_generator.budget(request, decoding)
        assert param.kwargs["temperature"] == 0.0
        assert set(param.kwargs["stop_token_ids"]) == set(tiny_generator.stop_ids)


def test_vllm_beam_answers_end_at_the_stop_token(monkeypatch, tiny_model_dir, tiny_generator):
    calls = []
    fake = _fake_vllm(tiny_generator.tokenizer, calls)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", fake.sampling_params)
    generator = make_generator(str(tiny_model_dir), backend="vllm")
    answers = generator.generate(REQUESTS[:2], DecodingConfig.parse("beam4"))
    assert answers == ["Done."] * 2  # the tokens after the stop token are dropped
    done = len(tiny_generator.tokenizer("Done.", add_special_tokens=False)["input_ids"])
    assert generator.tokens_generated == 2 * done
    beams = [call[2] for call in calls if call[0] == "beam_search"]
    assert beams and all(p.beam_width == 4 for p in beams)


def test_llamacpp_adapter_renders_prompts_and_refuses_beam(monkeypatch):
    calls = []

    class FakeLlama:
        metadata = {"tokenizer.chat_template": "{{ '<|im_start|>' + message['role'] }}"}

        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def token_eos(self):
            return 2

        def detokenize(self, ids, special=False):
            return b"<|im_end|>"

        def tokenize(self, data, add_bos=False, special=False):
            return list(data.split())

        def create_completion(self, prompt, **kwargs):
            calls.append(("complete", prompt, kwargs))
            return {"choices": [{"text": " Fixed. "}], "usage": {"completion_tokens": 3}}

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama))
    generator = LlamaCppGenerator("model.gguf", n_threads=2)
    assert generator.fmt.name == "chatml"
    assert generator.generate(REQUESTS[:2], DecodingConfig()) == ["Fixed.", "Fixed."]
    _, prompt, kwargs = calls[1]
    assert prompt == render_prompt(generator.fmt, REQUESTS[0]).encode().split()
    assert kwargs["temperature"] == 0.0 and "<|im_end|>" in kwargs["stop"]
    assert generator.tokens_generated == 6
    with pytest.raises(ValueError, match="no beam search"):
        generator.generate(REQUESTS[:1], DecodingConfig(strategy="beam"))
