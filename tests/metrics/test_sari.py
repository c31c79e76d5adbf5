"""SARI (EASSE's corpus SARI): hand-computed cases, its conventions, and the golden values of EASSE on the shared
sets."""

from __future__ import annotations

import pytest
from support.metric_golden import case_list, ids, lines, metric_inputs, needs_golden, records

from writetune.metrics import get_metric


def test_sari_hand_computed_two_token_sentence():
    """source 'a b', output 'a c', reference 'a c' (one reference).

    ADD:  1-grams {c} added, {c} in ref -> F1 1; 2-grams {a c} -> F1 1; orders 3-4 empty -> 0. ADD = 2/4.
    KEEP: 1-grams keep {a}, ref keeps {a} -> F1 1; 2-gram 'a b' kept by neither -> 0; ADD orders 3-4 -> 0.
          KEEP = 1/4.
    DEL:  1-grams {b} deleted by both -> F1 1; 2-gram 'a b' deleted by both -> 1; orders 3-4 -> 0. DEL = 2/4.
    SARI = 100 * (0.5 + 0.25 + 0.5) / 3.
    """
    result = get_metric("sari").corpus_score(["a c"], sources=["a b"], refs=[["a c"]])
    assert result.components == pytest.approx({"add": 50.0, "keep": 25.0, "del": 50.0})
    assert result.score == pytest.approx(100 * 1.25 / 3)


def test_sari_identity_has_no_add_and_no_delete():
    sources = ["The cat sat on the mat .", "It was raining heavily all day ."]
    refs = [["The cat sat on a mat .", "It rained all day ."], ["A cat sat on the mat .", "It rained a lot ."]]
    result = get_metric("sari").corpus_score(sources, sources=sources, refs=refs)
    assert result.components["add"] == 0.0
    assert result.components["del"] == 0.0
    assert result.score == pytest.approx(result.components["keep"] / 3)


def test_sari_empty_outputs_keep_and_add_nothing():
    sources = ["The cat sat on the mat .", "It was raining heavily all day ."]
    refs = [["The cat sat on a mat .", "It rained all day ."]]
    result = get_metric("sari").corpus_score(["", ""], sources=sources, refs=refs)
    assert result.components["add"] == 0.0
    assert result.components["keep"] == 0.0
    assert result.components["del"] > 0.0
    assert result.score == pytest.approx(result.components["del"] / 3)


def test_sari_repeated_reference_equals_single_reference():
    """KEEP/DELETE multiply system counts by the number of references and ADD uses the union, so a reference
    repeated k times gives the same SARI as the reference once (unequal numbers of references)."""
    sources = ["the old house is on the hill", "he walked to the shop quickly"]
    hyps = ["the house is on the hill", "he went to the shop"]
    ref = ["the house is on a hill", "he quickly went to the store"]
    one = get_metric("sari").corpus_score(hyps, sources=sources, refs=[ref])
    three = get_metric("sari").corpus_score(hyps, sources=sources, refs=[ref, ref, ref])
    assert three.score == pytest.approx(one.score, abs=1e-12)
    assert "nrefs:1" in one.signature and "nrefs:3" in three.signature


def test_sari_is_lowercased_and_13a_tokenized():
    a = get_metric("sari").corpus_score(["The cat, sat."], sources=["the cat sat ."], refs=[["THE CAT , SAT ."]])
    b = get_metric("sari").corpus_score(["the cat , sat ."], sources=["the cat sat ."], refs=[["the cat , sat ."]])
    assert a.score == b.score


@needs_golden
@pytest.mark.parametrize("record", records("SARI"), ids=ids(records("SARI")))
def test_sari_dev_sets(record):
    files = record["files"]
    result = get_metric("sari").corpus_score(
        lines(files["hypothesis"]),
        sources=lines(files["source"]),
        refs=[lines(p) for p in files["references"]],
    )
    tol = record["tolerance"]
    assert result.score == pytest.approx(record["value"], abs=tol["value_abs"])
    for op in ("add", "keep", "del"):
        assert result.components[op] == pytest.approx(record["components"][op], abs=tol["components_abs"])
    assert result.n == record["n_sentences"]
    assert f"nrefs:{record['n_references']}" in result.signature


@needs_golden
@pytest.mark.parametrize("case", case_list("sari"), ids=ids(case_list("sari")))
def test_sari_and_bleu_cases(case):
    inputs, want, tol = case["inputs"], case["expected"], case["tolerance"]["abs"]
    sari = get_metric("sari").corpus_score(inputs["hypothesis"], sources=inputs["source"], refs=inputs["references"])
    assert sari.score == pytest.approx(want["sari"], abs=tol)
    for op in ("add", "keep", "del"):
        assert sari.components[op] == pytest.approx(want[op], abs=tol)
    bleu = get_metric("bleu").corpus_score(inputs["hypothesis"], refs=inputs["references"])
    assert bleu.score == pytest.approx(want["bleu"], abs=tol)


@needs_golden
def test_sari_ngram_statistics_match_easse_counts():
    """The per-order counts that EASSE's compute_ngram_stats printed for each case, summed over sentences."""
    metric = get_metric("sari")
    names = ("sys_correct", "sys_total", "ref_total")
    for case in case_list("sari"):
        inputs = case["inputs"]
        stats = metric.segment_stats(
            metric_inputs(inputs["hypothesis"], inputs["source"], inputs["references"])
        )
        totals = stats["ngrams"].sum(axis=0).reshape(3, 3, 4)
        for o, op in enumerate(("add", "keep", "del")):
            for q, name in enumerate(names):
                want = case["ngram_stats_orders_1_to_4"][f"{op}_{name}"]
                assert totals[o, q].tolist() == want, (case["id"], op, name)
