"""Scoring model output against tokenized references: an answer is projected onto its source's tokens, so the copy
system scores exactly what the reference scorer gives the source file (on fixtures with the quote, bracket and
apostrophe cases that the detokenize/re-tokenize round trip does not survive, and on every PTB-tokenized set of the
shared data folder through the full `writetune eval` path)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from writetune.data.readers import Example
from writetune.data.tokenization import detokenize, project_onto_source, tokenize_ptb
from writetune.data.evalsets import get_eval_set, load_eval_set, suite
from writetune.evaluate import EvalConfig, Evaluation, metric_inputs, score_set, tokenization_policy
from writetune.evaluate.scoring import gold_edits
from writetune.metrics import get_metric

ROUND_TRIP_FAILURES = [
    "I like `` rich '' people .",
    "He built the house . ) Then he left .",
    "I know that 'where you go is where you are ' .",
    "-lrb- see above -rrb- he do n't know .",
    "They said `` go '' and we went .",
]


@pytest.mark.parametrize("source", ROUND_TRIP_FAILURES)
def test_the_round_trip_alone_changes_these_sources(source):
    assert tokenize_ptb(detokenize(source)) != source  # the reason the projection exists


@pytest.mark.parametrize("source", ROUND_TRIP_FAILURES)
def test_an_unchanged_answer_scores_as_the_source_byte_for_byte(source):
    plain = detokenize(source)
    assert project_onto_source(plain, source) == source
    assert project_onto_source(f"  {plain}\n", source) == source  # whitespace is not a change


def test_only_the_changed_stretch_is_tokenized():
    source = "-lrb- see above -rrb- he do n't know ."
    assert detokenize(source) == "(see above) he don't know."
    # the model rewrote "he don't" as "he doesn't": the brackets keep the source's bracket tokens
    assert project_onto_source("(see above) he doesn't know.", source) == "-lrb- see above -rrb- he does n't know ."
    quoted = "I like `` rich '' people ."
    assert project_onto_source('I like "poor" people.', quoted) == "I like `` poor '' people ."
    assert project_onto_source("I like people.", quoted) == "I like people ."
    assert project_onto_source("", quoted) == ""


def test_the_eval_policy_projects_tokenized_sets_and_says_so():
    evalset = get_eval_set("jfleg_dev")
    example = Example("fluency", "He built the house . ) Then he left .", ("He built it .",), "fixture", "f:1",
                      tokenized=True)
    policy = tokenization_policy(evalset, [example])
    assert policy.apply(policy.model_input(example), example) == example.source
    assert "+projected" in policy.describe()
    raw = tokenization_policy(get_eval_set("asset_dev"), [])
    assert "+projected" not in raw.describe()


def _ptb_sets(data_dir: Path):
    sets = [s for s in suite("writing-dev") if s.tokenization == "ptb" and s.available(data_dir)]
    if not sets:
        pytest.skip(f"no PTB-tokenized dev set in {data_dir}")
    return sets


def _reference_scores(evalset, data_dir: Path) -> dict[str, float]:
    """What the scorers give the source lines of the set as they are in its files (the reference value)."""
    examples = load_eval_set(evalset, data_dir)
    gold = gold_edits(evalset, data_dir, examples)
    out = {}
    for name in evalset.metrics:
        metric = get_metric(name)
        kwargs = metric_inputs(metric, [e.source for e in examples], examples, gold)
        out[name] = round(float(metric.corpus_score(**kwargs).score), 4)
    return out


def test_copy_through_writetune_eval_equals_the_reference_score_of_the_source(shared_dir, tmp_path):
    data_dir = shared_dir / "data"
    sets = _ptb_sets(data_dir)
    config = EvalConfig(models=["copy"], data_dir=data_dir, out=tmp_path / "eval", suite="writing-dev",
                        sets=[s.name for s in sets], bootstrap=0)
    document = Evaluation(config, progress=False).run()
    for evalset in sets:
        cell = document["systems"]["copy"][evalset.name]
        got = {r["metric"]: r["score"] for r in cell}
        assert got == _reference_scores(evalset, data_dir), evalset.name
        saved = [json.loads(line) for line in (tmp_path / "eval" / "predictions" / f"copy.{evalset.name}.jsonl")
                 .read_text().splitlines()]
        examples = load_eval_set(evalset, data_dir)
        policy = tokenization_policy(evalset, examples)
        expected = [" ".join(e.source.split()) for e in examples]
        assert [r["scored"] for r in saved] == [t.lower() if policy.lowercase else t for t in expected]


def test_copy_of_the_whole_jfleg_dev_file_reproduces_the_golden_gleu(shared_dir):
    record = next((r for r in json.loads((shared_dir / "metric_golden" / "expected.json").read_text())
                   if r["id"] == "gleu/jfleg_dev/identity_source"), None)
    if record is None:
        pytest.skip("no golden GLEU for the JFLEG dev source file")
    evalset = dataclasses.replace(get_eval_set("jfleg_dev"), carving=None)
    examples = load_eval_set(evalset, shared_dir / "data")
    policy = tokenization_policy(evalset, examples)
    hyps = [policy.apply(policy.model_input(e), e) for e in examples]
    assert hyps == [" ".join(e.source.split()) for e in examples]
    scored = score_set(["gleu"], hyps, examples, None, policy.describe(), "jfleg_dev_full", 0, 0)
    assert scored[0].record["score"] == round(record["value"] * 100, 4)  # the record keeps 4 decimals
    assert len(hyps) == record["n_sentences"]
