"""The transformers generation backend on a tiny random model: batching, ordering, budgets, stopping, strategies."""

from dataclasses import replace

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
    assert generator.budget(short, decoding) == -(-len(tokenizer("Hi.")["input_ids"]) // 2) + 1
    long_request = Request("Fix:", "word " * 200)
    assert generator.budget(long_request, decoding) == 20

    seen = []
    real_generate = generator.loaded.model.generate

    def spy(**kwargs):
        out = real_generate(**kwargs)
        seen.append((kwargs["max_new_tokens"], out.shape[1] - kwargs["input_ids"].shape[1]))
        return out

    monkeypatch.setattr(generator.loaded.model, "generate", spy)
    generator.generate([short, long_request], DecodingConfig(max_new_tokens=20, length_ratio=0.5, length_slack=1,
                                                             batch_size=1))
    assert [limit for limit, _ in seen] == [20, generator.budget(short, decoding)]  # longest prompt first
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


# ---- the continuous-batching greedy engine


def _mixed_requests(n: int = 30) -> list[Request]:
    import random

    rng = random.Random(0)
    words = "the cat dog sat on mat school goes she he went market quick brown fox lazy".split()
    instructions = ["Fix the grammar in this sentence:", "Simplify this sentence:", "Paraphrase this sentence:"]
    shots = (("she go", "She goes."), ("he run", "He runs."))
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))
        out.append(Request(instructions[i % 3], text, shots if i % 5 == 0 else ()))
    return out


MIXED_DECODING = DecodingConfig(max_new_tokens=24, length_ratio=1.0, length_slack=2)


@pytest.fixture(scope="module")
def mixed_reference(generator):
    """The mixed requests answered one at a time by `model.generate` (the reference for the engine)."""
    requests = _mixed_requests(24)
    one = replace(MIXED_DECODING, batch_size=1)
    return requests, [generator.generate([r], one)[0] for r in requests]


@pytest.mark.parametrize("rows", [2, 5, 64])
def test_engine_equals_one_request_at_a_time_with_refills_and_prefix_groups(generator, mixed_reference, rows):
    requests, single = mixed_reference
    done = []
    engine_out = generator.generate(requests, replace(MIXED_DECODING, batch_size=rows), on_batch=done.append)
    assert engine_out == single
    assert sum(done) == len(requests)
    assert len(set(engine_out)) > 5  # the random model's answers vary with the prompt


def test_engine_runs_greedy_and_generate_runs_the_rest(generator, monkeypatch):
    from writetune.generate.engine import GreedyEngine

    calls = []
    real_run = GreedyEngine.run

    def spy(self, *args, **kwargs):
        calls.append(self)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(GreedyEngine, "run", spy)
    generator.generate(REQUESTS, DecodingConfig(batch_size=4, max_new_tokens=6))
    assert len(calls) == 1
    # three groups of requests share a prompt prefix; each prefix is computed once, then one pass per step
    assert calls[0].prefixes and all(n > 0 for n, _ in calls[0].prefixes.values())
    generator.generate(REQUESTS, DecodingConfig(strategy="beam", num_beams=2, batch_size=4, max_new_tokens=6))
    generator.generate(REQUESTS, DecodingConfig(batch_size=1, max_new_tokens=6))
    assert len(calls) == 1
    generator.loaded.model.train()
    try:
        assert not generator.engine_supported()  # dropout on: not the engine's business
    finally:
        generator.loaded.model.eval()
    assert generator.engine_supported()


def test_beam_search_counts_its_beams_in_the_batch(generator, monkeypatch):
    model = generator.loaded.model
    widths, real_generate = [], model.generate

    def spy(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[0] * kwargs.get("num_beams", 1))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    answers = generator.generate(REQUESTS, DecodingConfig(strategy="beam", num_beams=2, batch_size=4, max_new_tokens=4))
    assert len(answers) == len(REQUESTS) and max(widths) == 4 and len(widths) == -(-len(REQUESTS) // 2)
    widths.clear()
    generator.generate(REQUESTS[:3], DecodingConfig(strategy="beam", num_beams=4, batch_size=2, max_new_tokens=4))
    assert widths == [4, 4, 4]  # fewer rows than beams: one prompt at a time


def test_engine_handles_budgets_of_one_token_and_empty_input(generator):
    requests = [Request("Say hi."), Request("Fix:", "x"), Request("Fix:", "a b c d e f g")]
    decoding = DecodingConfig(batch_size=3, max_new_tokens=1)
    assert generator.generate(requests, decoding) == [
        generator.generate([r], DecodingConfig(batch_size=1, max_new_tokens=1))[0] for r in requests]
    assert generator.generate([], decoding) == []


def test_engine_takes_sequences_while_others_decode_and_cancels(generator):
    requests = _mixed_requests(6)
    encoded = [generator.encode(r) for r in requests]
    alone = [generator.open_engine(4).run([ids], [10])[0] for ids in encoded]
    engine = generator.open_engine(4)
    produced: dict[int, list[int]] = {}
    index = {engine.add(encoded[0], 10): 0}
    for _ in range(3):  # the first request is decoding when the others arrive
        for seq, token, _ in engine.step():
            produced.setdefault(index[seq], []).append(token)
    index.update({engine.add(ids, 10): i for i, ids in enumerate(encoded[1:], start=1)})
    cancelled = next(seq for seq, i in index.items() if i == 5)
    engine.cancel(cancelled)
    shared_steps = 0
    while not engine.idle:
        events = engine.step()
        shared_steps += len({index[seq] for seq, _, _ in events} & {0, 1}) == 2
        for seq, token, _ in events:
            produced.setdefault(index[seq], []).append(token)
    assert [produced[i] for i in range(5)] == alone[:5]  # joining a running batch changes nothing
    assert 5 not in produced and shared_steps > 0


def test_engine_sampling_is_seeded_per_sequence(generator):
    ids = generator.encode(REQUESTS[0])

    def sample(seed):
        engine = generator.open_engine(2)
        sampler = generator.sampler(DecodingConfig(strategy="sample", temperature=1.0, top_p=0.9, seed=seed))
        engine.add(ids, 12, sampler=sampler)
        return [token for _ in range(12) for _, token, _ in engine.step()]

    assert sample(3) == sample(3) and sample(3) != sample(4)


def test_text_stream_pieces_join_to_the_answer_and_stop_at_stop_strings(generator):
    tokenizer = generator.tokenizer
    ids = tokenizer("  She goes home. Then STOP here.", add_special_tokens=False)["input_ids"]
    whole = generator.text_stream()
    pieces = [whole.push(t) for t in ids + [generator.stop_ids[0]]]
    assert "".join(pieces) == whole.text == generator.fmt.strip_response(tokenizer.decode(ids))
    assert whole.done and whole.stopped and whole.tokens == len(ids) and sum(map(bool, pieces)) > 1
    cut = generator.text_stream(stops=["STOP"])
    pieces = []
    for token in ids:
        pieces.append(cut.push(token))
        if cut.done:
            break
    assert "".join(pieces) == cut.text == "She goes home. Then " and cut.stopped and cut.tokens < len(ids)


def test_engine_shares_the_prefix_prompts_added_one_by_one_have_in_common(generator):
    base = Request("Fix the grammar in this sentence:", "", system="You edit text. Keep the meaning; change little.")
    requests = [replace(base, input=text) for text in
                ("she go home", "the cats is on the mat", "he run fast yesterday", "we was late")]
    encoded = [generator.encode(r) for r in requests]
    alone = [generator.open_engine(4).run([ids], [10])[0] for ids in encoded]
    engine = generator.open_engine(4)
    index = {engine.add_shared(ids, 10): i for i, ids in enumerate(encoded)}
    produced: dict[int, list[int]] = {}
    while not engine.idle:
        for seq, token, _ in engine.step():
            produced.setdefault(index[seq], []).append(token)
    assert [produced[i] for i in range(4)] == alone  # the shared prefix changes the cost, not the answers
    common = next(k for k, (a, b) in enumerate(zip(encoded[0], encoded[1])) if a != b)
    assert common > 10 and all(ids[:common] == encoded[0][:common] for ids in encoded)
    assert list(engine._shared) == [tuple(encoded[0][:common])]  # the system prompt and instruction, computed once
    assert engine.prefixes[tuple(encoded[0][:common])][0] == common


def test_engine_keeps_a_bounded_number_of_shared_prefixes(generator):
    engine = generator.open_engine(2)
    engine.shared_prefixes, engine.shared_gain = 2, 2
    instructions = ("Fix the grammar in this sentence:", "Simplify this sentence:", "Paraphrase this sentence:")
    prompts = {i: [generator.encode(Request(i, text)) for text in ("she go home", "the cats is on the mat")]
               for i in instructions}
    for instruction in instructions:
        for ids in prompts[instruction]:
            engine.add_shared(ids, 2)
    while not engine.idle:
        engine.step()
    kept = list(engine._shared)
    assert len(kept) == 2 and set(engine.prefixes) == set(kept)  # dropped from the engine too

    def extends(prefix, ids):
        return list(ids[:len(prefix)]) == list(prefix)

    assert any(all(extends(p, ids) for ids in prompts[instructions[-1]]) for p in kept)  # the newest is kept
    assert not any(all(extends(p, ids) for ids in prompts[instructions[0]]) and len(p) > len(min(kept, key=len))
                   for p in kept)  # the first instruction's own prefix, the least recently used, is gone
