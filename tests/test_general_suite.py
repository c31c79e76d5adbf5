"""The `general` suite: IFBench scored offline by the package's own verifiers (agreeing with the package's whole-prompt
functions, skipped instructions never counted as passed), ROUGE-L and the answer measures, the held-out Alpaca carving
kept out of every mix, and the runner's per-item instructions, fixed budgets and truncation flags."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from test_eval_fixtures import RecordingGenerator, write_writing_data
from writetune.data import evalsets
from writetune.data.evalsets import get_eval_set, load_eval_set, suite
from writetune.evaluate import EvalConfig, Evaluation
from writetune.metrics import get_metric
from writetune.metrics import ifbench


@pytest.fixture(scope="module")
def sample_outputs():
    """The answers the package ships as its sample output (one per test prompt)."""
    path = resources.files("ifbench") / "data" / "sample_output.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_offline_nltk_has_punkt_tab_and_never_downloads(tmp_path, monkeypatch):
    import nltk
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with ifbench.offline():
        assert (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english" / "abbrev_types.txt").is_file()
        assert nltk.download("punkt_tab", quiet=True) is True
        assert nltk.download("no_such_resource", quiet=True) is False
        assert nltk.sent_tokenize("Mr. Smith left at 5 p.m. today. He came back.") == [
            "Mr. Smith left at 5 p.m. today.", "He came back."]
    assert str(tmp_path / "nltk_data") not in nltk.data.path and nltk.download is not ifbench._offline_nltk_download


def test_per_instruction_scoring_agrees_with_the_package(sample_outputs):
    lib = ifbench._evaluation_lib()
    skipped = ifbench.unavailable_instructions()
    responses = {r["prompt"]: r["response"] for r in sample_outputs}
    compared = 0
    with ifbench.offline():
        for mode, test in (("strict", lib.test_instruction_following_strict),
                           ("loose", lib.test_instruction_following_loose)):
            for item in lib.read_prompt_list(str(ifbench.data_path())):
                if set(item.instruction_id_list) & skipped:
                    continue
                item.kwargs = [{k: v for k, v in kw.items() if v is not None} for kw in item.kwargs]
                expected = test(item, responses).follow_instruction_list
                assert [v == 1 for v in ifbench.verify(item.prompt, responses[item.prompt], mode)] == expected
                compared += 1
    assert compared >= 2 * 250


def test_skipped_instructions_are_neither_passed_nor_failed(sample_outputs, monkeypatch):
    prompts = [r["prompt"] for r in sample_outputs]
    answers = [r["response"] for r in sample_outputs]
    metric = get_metric("ifbench_instruction_strict")
    before = metric.corpus_score(answers, sources=prompts)
    followed = {i for r in sample_outputs for i, v in zip(
        ifbench._items_by_prompt()[r["prompt"].strip()].instruction_ids,
        ifbench.verify(r["prompt"], r["response"], "strict")) if v == 1}
    extra = sorted(followed)[0]  # an instruction that some answer follows
    missing = ifbench.unavailable_instructions() | {extra}
    monkeypatch.setattr(ifbench, "unavailable_instructions", lambda: missing)
    ifbench.verify.cache_clear()
    try:
        after = metric.corpus_score(answers, sources=prompts)
        prompt_level = get_metric("ifbench_prompt_strict").corpus_score(answers, sources=prompts)
    finally:
        ifbench.verify.cache_clear()
    n_extra = sum(item.instruction_ids.count(extra) for item in ifbench.ifbench_items())
    assert after.components["instructions_skipped"] == before.components["instructions_skipped"] + n_extra
    assert after.components["counted"] == before.components["counted"] - n_extra
    assert after.components["followed"] < before.components["followed"]
    with_extra = sum(extra in item.instruction_ids for item in ifbench.ifbench_items())
    assert prompt_level.components["counted"] <= len(prompts) - with_extra
    assert f"{extra}={n_extra}" in after.signature and "skipped:" in after.signature


def test_unknown_prompt_is_refused():
    with pytest.raises(ValueError, match="not a prompt of IFBench_test.jsonl"):
        get_metric("ifbench_prompt_loose").corpus_score(["an answer"], sources=["Write a poem."])


def test_rouge_l_and_the_answer_measures():
    rouge = get_metric("rouge_l")
    assert rouge.corpus_score(["The cats sat on mats."], refs=[["the cat sat on the mat"]]).score == pytest.approx(
        100 * 2 * (5 / 5) * (5 / 6) / (5 / 5 + 5 / 6))  # stemmed: cats~cat, mats~mat; LCS 5 of 5 and 6 tokens
    assert rouge.corpus_score(["", "nothing alike"], refs=[["a b", "x y"]]).score == 0.0
    assert rouge.corpus_score(["a b"], refs=[["x y"], ["a b"]]).score == 100.0  # the best reference
    assert "stemmer:porter" in rouge.corpus_score(["a"], refs=[["a"]]).signature
    words = get_metric("answer_words").corpus_score(["one two three", "", "four"], bootstrap=50)
    assert words.score == pytest.approx(4 / 3) and words.ci[0] <= words.score <= words.ci[1]
    share = get_metric("empty_or_truncated", truncated=[False, False, True, False])
    result = share.corpus_score(["a", " ", "b", "c"])
    assert result.score == 50.0 and result.components["empty"] == 1 and result.components["truncated"] == 1
    assert "truncation-unknown" in get_metric("empty_or_truncated").corpus_score(["a"]).signature


def test_alpaca_carving_holds_whole_records(shared_dir):
    evalset = get_eval_set("alpaca_heldout")
    items = load_eval_set(evalset, shared_dir / "data")
    assert len(items) == evalsets.ALPACA_HELDOUT and all(e.instruction and e.references[0] for e in items)
    assert sum(not e.source for e in items) > 10  # records without an input are carved by their instruction
    assert len({(e.instruction, e.source) for e in items}) == len(items)
    assert [e.id for e in load_eval_set(evalset, shared_dir / "data")] == [e.id for e in items]
    assert len(load_eval_set(get_eval_set("ifbench"), shared_dir / "data")) == evalsets.IFBENCH_PROMPTS


def test_no_mix_trains_on_the_general_suite(shared_dir, tmp_path):
    from writetune.data.build import build_mix

    recipe = tmp_path / "mix.yaml"
    recipe.write_text("name: generic\nsources:\n  - {name: alpaca, task: generic, read: {format: alpaca_json, "
                      "path: alpaca/alpaca_5000.json}}\n", encoding="utf-8")
    result = build_mix(recipe, tmp_path / "out", data_dir=shared_dir / "data")
    held = load_eval_set(get_eval_set("alpaca_heldout"), shared_dir / "data")
    rows = [json.loads(line) for name in ("train.jsonl", "dev.jsonl")
            for line in (tmp_path / "out" / name).read_text(encoding="utf-8").splitlines()]
    trained = {(r["instruction"], r["input"], r["output"]) for r in rows}
    assert not trained & {(e.instruction, e.source, e.references[0]) for e in held}
    report = result.manifest["holdout"]["eval_sets"]
    assert result.manifest["holdout"]["suites"] == ["writing-dev", "general"]
    assert report["alpaca_heldout"]["matches"] >= len(held)
    assert result.manifest["sources"]["alpaca"]["held_out"] >= len(held)
    assert result.manifest["contamination"]["matches"] == 0


class TokenizingGenerator(RecordingGenerator):
    """A fake model with a whitespace tokenizer, answering from a table or with `length` words."""

    def __init__(self, answers, length):
        super().__init__(answers)
        self.length = length
        self.tokenizer = lambda text, add_special_tokens=False: {"input_ids": text.split()}

    def generate(self, requests, decoding=None, on_batch=None):
        self.calls.append((list(requests), decoding))
        return [self.answers.get(r.instruction, " ".join(["word"] * self.length)) for r in requests]


def test_runner_uses_each_items_own_instruction_and_the_sets_budget(shared_dir, tmp_path):
    items = load_eval_set(get_eval_set("alpaca_heldout"), shared_dir / "data")[:4]
    budget = get_eval_set("alpaca_heldout").max_new_tokens
    generator = TokenizingGenerator({items[0].instruction: "", items[1].instruction: "a short answer"}, budget)
    config = EvalConfig(models=["fake"], data_dir=shared_dir / "data", out=tmp_path / "out",
                        suite="writing-dev,general", sets=["alpaca_heldout", "ifbench"], limit=4, bootstrap=20)
    document = Evaluation(config, make=lambda *a, **k: generator, progress=False).run()
    requests = [r for batch, _ in generator.calls for r in batch]
    by_instruction = {r.instruction: r for r in requests}
    for item in items:
        assert by_instruction[item.instruction].input == item.source
    prompts = load_eval_set(get_eval_set("ifbench"), shared_dir / "data")[:4]
    assert all(by_instruction[p.source].input == "" for p in prompts)  # the IFBench prompt is the instruction
    decodings = {d for _, d in generator.calls}
    assert all(d.max_new_tokens == budget and d.length_ratio == 0.0 for d in decodings)
    share = next(r for r in document["systems"]["fake"]["alpaca_heldout"] if r["metric"] == "empty_or_truncated")
    assert share["components"]["empty"] == 1 and share["components"]["truncated"] == 2 and share["score"] == 75.0
    assert document["sets"]["alpaca_heldout"]["max_new_tokens"] == budget
    assert {r["metric"] for r in document["systems"]["fake"]["ifbench"]} >= set(ifbench.ACCURACY_METRICS)


def test_general_suite_lists_both_sets_and_writing_data_alone_skips_alpaca(tmp_path):
    data = write_writing_data(tmp_path / "data")
    config = EvalConfig(models=["copy"], data_dir=data, out=tmp_path / "out", suite="general", limit=3, bootstrap=0)
    document = Evaluation(config, progress=False).run()
    assert [s.name for s in suite("general")] == ["ifbench", "alpaca_heldout"]
    assert list(document["sets"]) == ["ifbench"] and document["skipped"][0]["set"] == "alpaca_heldout"
    score = next(r for r in document["systems"]["copy"]["ifbench"] if r["metric"] == "ifbench_prompt_strict")
    assert score["score"] == 0.0  # copying gives an empty answer, which follows nothing


@pytest.mark.parametrize("name", ["rouge_l", "answer_words", "empty_or_truncated", *ifbench.ACCURACY_METRICS])
def test_vectorised_resampling_equals_reaggregation(name, sample_outputs):
    import numpy as np

    from writetune.metrics.base import make_inputs

    records = sample_outputs[:60]
    hyps = [r["response"] if k % 7 else "" for k, r in enumerate(records)]
    if name.startswith("ifbench"):
        metric, inputs = get_metric(name), make_inputs(hyps, sources=[r["prompt"] for r in records])
    elif name == "rouge_l":
        metric, inputs = get_metric(name), make_inputs(hyps, refs=[[r["prompt"] for r in records]])
    else:
        options = {"truncated": [k % 3 == 0 for k in range(len(hyps))]} if name == "empty_or_truncated" else {}
        metric, inputs = get_metric(name, **options), make_inputs(hyps)
    stats = metric.segment_stats(inputs)
    indices = np.vstack([np.arange(stats.n), np.random.default_rng(5).integers(0, stats.n, size=(6, stats.n))])
    fast = metric.resampled_scores(stats, indices)
    assert fast == pytest.approx([metric.aggregate(stats.take(row))[0] for row in indices], abs=1e-9)
    assert fast[0] == pytest.approx(metric.aggregate(stats)[0], abs=1e-9)
