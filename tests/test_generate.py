"""The transformers generation backend on a tiny random model: batching, ordering, budgets, stopping, strategies."""

import pytest

from writetune.generate import DecodingConfig, Request, TransformersGenerator
from writetune.models import load_model

REQUESTS = [
    Request("Fix the grammar in this sentence:", "She go to school."),
    Request("Simplify this sentence:", "The committee deliberated extensively before reaching a verdict on it."),
    Request("Name three colours."),
    Request("Paraphrase this sentence:", "The quick brown fox jumps over the lazy dog."),
    Request("Make this text more fluent:", "He went market yesterday and buy apples."),
]


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return TransformersGenerator(load_model(str(tiny_model_dir)))


def test_batched_greedy_equals_one_at_a_time(generator):
    batched = generator.generate(REQUESTS, DecodingConfig(batch_size=4, max_new_tokens=12))
    single = [generator.generate([r], DecodingConfig(batch_size=1, max_new_tokens=12))[0] for r in REQUESTS]
    assert batched == single
    assert any(batched)  # a random model still emits tokens


def test_budget_is_relative_to_input_and_capped(generator, monkeypatch):
    tokenizer = generator.tokenizer
    decoding = DecodingConfig(max_new_tokens=20, length_ratio=0.5, length_slack=1)
    short = Request("Fix:", "Hi.")
    assert generator._budget(short, decoding) == -(-len(tokenizer("Hi.")["input_ids"]) // 2) + 1
    long_request = Request("Fix:", "word " * 200)
    assert generator._budget(long_request, decoding) == 20

    seen = []
    real_generate = generator.loaded.model.generate

    def spy(**kwargs):
        out = real_generate(**kwargs)
        seen.append((kwargs["max_new_tokens"], out.shape[1] - kwargs["input_ids"].shape[1]))
        return out

    monkeypatch.setattr(generator.loaded.model, "generate", spy)
    generator.generate([short, long_request], DecodingConfig(max_new_tokens=20, length_ratio=0.5, length_slack=1,
                                                             batch_size=1))
    assert [limit for limit, _ in seen] == [20, generator._budget(short, decoding)]  # longest prompt first
    assert all(produced <= limit for limit, produced in seen)


def test_decoding_cuts_at_the_first_stop_token(generator):
    tokenizer = generator.tokenizer
    ids = tokenizer("She goes.", add_special_tokens=False)["input_ids"]
    stop = generator.stop_ids[0]
    before = generator.tokens_generated
    assert generator._decode(ids + [stop] + ids) == "She goes."
    assert generator.tokens_generated - before == len(ids)


def test_beam_and_sampling_run_and_sampling_is_seeded(generator):
    beam = generator.generate(REQUESTS[:2], DecodingConfig(strategy="beam", num_beams=3, max_new_tokens=8))
    assert len(beam) == 2
    first = generator.generate(REQUESTS, DecodingConfig(strategy="sample", seed=7, max_new_tokens=8))
    second = generator.generate(REQUESTS, DecodingConfig(strategy="sample", seed=7, max_new_tokens=8))
    assert first == second


@pytest.mark.parametrize(
    "kwargs, message",
    [({"strategy": "nucleus"}, "unknown decoding strategy"), ({"batch_size": 0}, "at least 1"),
     ({"strategy": "sample", "temperature": 0}, "temperature")],
)
def test_bad_decoding_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecodingConfig(**kwargs)
