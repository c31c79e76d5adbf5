"""ERRANT F0.5 (errant_parallel + errant_compare, ERRANT 3.0.2): errant_compare's rules on M2 text, and ERRANT's
golden values, from stored hypothesis M2 files and end to end with spaCy."""

from __future__ import annotations

import pytest
from support.metric_golden import SHARED, case_list, ids, lines, needs_golden, records

from writetune.metrics import get_metric, parse_m2, read_m2
from writetune.metrics.errant_f05 import extract_edits, load_annotator, m2_edits


def errant_from_m2(hyp_m2, gold_m2):
    metric = get_metric("errant")
    result = metric.score_stats(metric.stats_from_m2(parse_m2(hyp_m2), parse_m2(gold_m2)))
    c = result.components
    return (c["TP"], c["FP"], c["FN"]), result


def test_errant_unk_edits_are_ignored_and_noops_count_as_no_edit():
    gold = (
        "S He go to school yesterday .\nA 1 2|||R:VERB:TENSE|||went|||REQUIRED|||-NONE-|||0\n"
        "A 4 5|||UNK|||yesterday|||REQUIRED|||-NONE-|||0\n\n"
        "S It is fine .\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n"
    )
    hyp = (
        "S He go to school yesterday .\nA 1 2|||R:VERB:TENSE|||went|||REQUIRED|||-NONE-|||0\n\n"
        "S It is fine .\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n"
    )
    counts, result = errant_from_m2(hyp, gold)
    assert counts == (1, 0, 0)
    assert result.score == 100.0


def test_errant_span_and_correction_must_both_match():
    gold = "S She have a red car .\nA 1 2|||R:VERB:SVA|||has|||REQUIRED|||-NONE-|||0\n"
    hyp = "S She have a red car .\nA 1 2|||R:VERB:TENSE|||had|||REQUIRED|||-NONE-|||0\n"
    counts, result = errant_from_m2(hyp, gold)
    assert counts == (0, 1, 1)
    assert (result.components["P"], result.components["R"], result.score) == (0.0, 0.0, 0.0)


def test_errant_best_annotator_per_sentence():
    gold = (
        "S He go home .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n"
        "A 1 2|||R:VERB:TENSE|||went|||REQUIRED|||-NONE-|||1\n\n"
        "S She like cats .\nA 1 2|||R:VERB:SVA|||likes|||REQUIRED|||-NONE-|||0\n"
    )
    hyp = (
        "S He go home .\nA 1 2|||R:VERB:TENSE|||went|||REQUIRED|||-NONE-|||0\n\n"
        "S She like cats .\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n"
    )
    counts, result = errant_from_m2(hyp, gold)
    assert counts == (1, 0, 1)  # annotator 1 chosen for sentence 1
    assert result.score == pytest.approx(100 * 1.25 * 0.5 / (0.25 + 0.5), abs=1e-12)


def _errant_counts(result):
    return result.components["TP"], result.components["FP"], result.components["FN"]


@needs_golden
@pytest.mark.parametrize("record", records("ERRANT_F0.5"), ids=ids(records("ERRANT_F0.5")))
def test_errant_compare_on_stored_hypothesis_m2(record):
    """errant_compare semantics on the hypothesis M2 files errant_parallel wrote (full CWEB dev, no spaCy)."""
    files = record["files"]
    metric = get_metric("errant")
    hyp_m2 = files.get("hypothesis_m2_generated") or files["hypothesis_m2"]
    result = metric.score_stats(metric.stats_from_m2(read_m2(SHARED / hyp_m2), read_m2(SHARED / files["m2"])))
    g = record["components"]
    assert _errant_counts(result) == (g["TP"], g["FP"], g["FN"])
    for key in ("P", "R", "F0.5"):
        assert result.components[key] / 100 == pytest.approx(g[key], abs=1e-12)


@needs_golden
@pytest.mark.parametrize("case", case_list("errant"), ids=ids(case_list("errant")))
def test_errant_cases_from_stored_hypothesis_m2(case):
    metric = get_metric("errant")
    stats = metric.stats_from_m2(parse_m2(case["generated_hypothesis_m2"]), parse_m2(case["inputs"]["gold_m2"]))
    result = metric.score_stats(stats)
    want = case["expected"]
    assert _errant_counts(result) == (want["TP"], want["FP"], want["FN"])
    assert result.score / 100 == pytest.approx(want["F0_5"], abs=1e-12)


@needs_golden
@pytest.mark.parametrize("case", case_list("errant"), ids=ids(case_list("errant")))
def test_errant_cases_end_to_end(case):
    """spaCy + ERRANT edit extraction from the hypothesis text, against the gold M2 (and the reference texts)."""
    inputs, want = case["inputs"], case["expected"]
    metric = get_metric("errant")
    result = metric.corpus_score(inputs["hypothesis"], gold=parse_m2(inputs["gold_m2"]))
    assert _errant_counts(result) == (want["TP"], want["FP"], want["FN"])
    assert result.score / 100 == pytest.approx(want["F0_5"], abs=1e-12)
    if case["inputs"]["gold_m2_origin"].startswith("errant_parallel"):
        # The gold M2 was made by errant_parallel from these references, so extracting it ourselves agrees.
        from_refs = metric.corpus_score(inputs["hypothesis"], sources=inputs["source"], refs=inputs["references"])
        assert _errant_counts(from_refs) == (want["TP"], want["FP"], want["FN"])


ERRANT_SUBSET = 100


@needs_golden
@pytest.mark.parametrize("subset", ["cweb_g_dev", "cweb_s_dev"])
def test_errant_end_to_end_matches_errant_parallel_on_cweb_subset(subset):
    """On the first sentences of CWEB dev, our spaCy extraction writes exactly errant_parallel's edits, and the
    end-to-end score equals errant_compare on the stored hypothesis M2 restricted to the same sentences.
    (The full sets take minutes with spaCy; their counts are checked through the stored M2 files above.)"""
    record = next(r for r in records("ERRANT_F0.5") if r["id"] == f"errant/{subset}/annotator2_tokenized")
    files = record["files"]
    gold = read_m2(SHARED / files["m2"])
    stored = read_m2(SHARED / files["hypothesis_m2_generated"])
    hyps = lines(files["hypothesis"])
    keep = list(range(ERRANT_SUBSET))
    annotator = load_annotator()
    for i in keep:
        assert sorted(extract_edits(annotator, gold[i].source, [hyps[i]])) == sorted(m2_edits(stored[i])), i
    metric = get_metric("errant")
    end_to_end = metric.corpus_score([hyps[i] for i in keep], gold=gold.subset(keep))
    via_m2 = metric.score_stats(metric.stats_from_m2(stored.subset(keep), gold.subset(keep)))
    assert _errant_counts(end_to_end) == _errant_counts(via_m2)
    assert end_to_end.score == via_m2.score
