"""GLEU (JFLEG gleu.py, Python 3 reference draws): hand-computed statistics, brevity penalty, repeated references,
iterations, and the script's golden values and reference draws."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from support.metric_golden import case_list, ids, lines, metric_inputs, needs_golden, records

from writetune.metrics import get_metric
from writetune.metrics.gleu import gleu_from_stats, segment_gleu_stats


def test_gleu_statistics_hand_computed():
    """source 'a b c d e f', reference 'a b c d e g' (f -> g).

    Output 'a b c d e h' (a wrong correction): matches per order 5, 4, 3, 2 of 6, 5, 4, 3 and no penalty (it
    does not keep the source n-grams the reference changed): GLEU = ((5/6)(4/5)(3/4)(2/3)) ** (1/4) = (1/3)^(1/4).
    Identity output: the kept n-grams 'f', 'e f', 'd e f', 'c d e f' are subtracted: 4/6, 3/5, 2/4, 1/3 ->
    (1/15)^(1/4), lower than the wrong correction.
    """
    src, ref = "a b c d e f".split(), "a b c d e g".split()
    wrong = segment_gleu_stats("a b c d e h".split(), src, ref)
    assert wrong == [6, 6, 5, 6, 4, 5, 3, 4, 2, 3]
    assert gleu_from_stats(wrong) == pytest.approx((1 / 3) ** 0.25, abs=1e-15)
    identity = segment_gleu_stats(src, src, ref)
    assert identity == [6, 6, 4, 6, 3, 5, 2, 4, 1, 3]
    assert gleu_from_stats(identity) == pytest.approx((1 / 15) ** 0.25, abs=1e-15)
    metric = get_metric("gleu", iterations=10)
    result = metric.corpus_score(["a b c d e h"], sources=["a b c d e f"], refs=[["a b c d e g"]])
    assert result.score == pytest.approx(100 * (1 / 3) ** 0.25, abs=1e-12)
    assert result.components["std"] == pytest.approx(0.0, abs=1e-12)  # one reference: every iteration draws it


def test_gleu_brevity_penalty_and_zero_statistics():
    # Output shorter than the reference: BP = exp(1 - r/c) with c = 4, r = 5; all n-grams match.
    stats = segment_gleu_stats("a b c d".split(), "a b c d".split(), "a b c d e".split())
    assert stats == [4, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert gleu_from_stats(stats) == pytest.approx(math.exp(1 - 5 / 4), abs=1e-15)
    # Fewer than 4 tokens: the 4-gram denominator is 0, so GLEU is 0 even for a perfect output.
    assert gleu_from_stats(segment_gleu_stats(["a", "b"], ["a", "c"], ["a", "b"])) == 0.0
    # An empty output scores 0.
    result = get_metric("gleu", iterations=5).corpus_score([""], sources=["a b c d"], refs=[["a b c e"]])
    assert result.score == 0.0


def test_gleu_identical_references_equal_one_reference():
    sources = ["I has a dog and it like the park .", "She go to school every days ."]
    hyps = ["I have a dog and it likes the park .", "She goes to school every days ."]
    ref = ["I have a dog and it likes the park .", "She goes to school every day ."]
    one = get_metric("gleu", iterations=50).corpus_score(hyps, sources=sources, refs=[ref])
    many = get_metric("gleu", iterations=50).corpus_score(hyps, sources=sources, refs=[ref, ref, ref])
    assert many.score == pytest.approx(one.score, abs=1e-12)
    assert many.components["std"] == pytest.approx(0.0, abs=1e-12)


def test_gleu_iterations_are_configurable_and_signed():
    metric = get_metric("gleu", iterations=37)
    result = metric.corpus_score(["a b c d e"], sources=["a b c d f"], refs=[["a b c d e"], ["a b c d g"]])
    assert result.components["iterations"] == 37
    assert "iter:37" in result.signature and "ref_seed:j*101" in result.signature
    with pytest.raises(ValueError):
        get_metric("gleu", iterations=0)


@needs_golden
@pytest.mark.parametrize("record", records("GLEU"), ids=ids(records("GLEU")))
def test_gleu_dev_set(record):
    files = record["files"]
    result = get_metric("gleu").corpus_score(
        lines(files["hypothesis"]), sources=lines(files["source"]), refs=[lines(p) for p in files["references"]]
    )
    tol = record["tolerance"]
    assert result.score / 100 == pytest.approx(record["value"], abs=tol["value_abs"])
    assert result.components["std"] / 100 == pytest.approx(record["components"]["std"], abs=tol["std_abs"])
    low, high = record["components"]["ci95"]
    assert result.components["sampling_ci95"][0] / 100 == pytest.approx(low, abs=1e-9)
    assert result.components["sampling_ci95"][1] / 100 == pytest.approx(high, abs=1e-9)
    assert "iter:500" in result.signature and f"nrefs:{record['n_references']}" in result.signature


@needs_golden
@pytest.mark.parametrize("case", case_list("gleu"), ids=ids(case_list("gleu")))
def test_gleu_cases(case):
    inputs, want, tol = case["inputs"], case["expected"], case["tolerance"]["abs"]
    metric = get_metric("gleu")
    result = metric.corpus_score(inputs["hypothesis"], sources=inputs["source"], refs=inputs["references"])
    assert result.score / 100 == pytest.approx(want["mean"], abs=tol)
    assert result.components["std"] / 100 == pytest.approx(want["std"], abs=tol)


@needs_golden
@pytest.mark.parametrize("case", case_list("gleu"), ids=ids(case_list("gleu")))
def test_gleu_reference_choice_breakdown(case):
    """Each drawn reference combination: how many iterations drew it, its summed statistics and corpus GLEU."""
    inputs = case["inputs"]
    metric = get_metric("gleu")
    stats = metric.segment_stats(metric_inputs(inputs["hypothesis"], inputs["source"], inputs["references"]))
    drawn = Counter(tuple(int(x) for x in stats["draws"][:, j]) for j in range(metric.iterations))
    for entry in case["reference_choice_breakdown"]["python3"]:
        choice = tuple(entry["ref_choice"])
        assert drawn[choice] == entry["iterations"], choice
        summed = [int(sum(stats["per_ref"][i, k, s] for i, k in enumerate(choice))) for s in range(10)]
        assert summed == entry["stats"]
        assert gleu_from_stats(summed) == pytest.approx(entry["corpus_gleu"], abs=1e-12)
    assert sum(e["iterations"] for e in case["reference_choice_breakdown"]["python3"]) == 500
