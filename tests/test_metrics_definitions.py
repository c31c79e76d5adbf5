"""Metrics checked against their definitions: hand-computed small cases, identity and empty outputs, unequal
numbers of references, and the registry/Score/signature contract. No shared data needed."""

from __future__ import annotations

import json
import math

import pytest

from writetune.metrics import (
    MetricInputError,
    Score,
    available_metrics,
    get_metric,
    parse_m2,
)
from writetune.metrics.gleu import gleu_from_stats, segment_gleu_stats

# ---------------------------------------------------------------------------------------------------------------
# SARI
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# GLEU
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# M2 (MaxMatch)
# ---------------------------------------------------------------------------------------------------------------


def m2_counts(hyps, m2_text, **options):
    result = get_metric("m2", **options).corpus_score(hyps, gold=parse_m2(m2_text))
    c = result.components
    return (c["correct"], c["proposed"], c["gold"]), result


def test_m2_exact_correction():
    m2 = "S He go home .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n"
    counts, result = m2_counts(["He goes home ."], m2)
    assert counts == (1, 1, 1)
    assert result.score == 100.0


def test_m2_alternative_corrections():
    m2 = "S He go home .\nA 1 2|||R:VERB|||goes||went|||REQUIRED|||-NONE-|||0\n"
    assert m2_counts(["He went home ."], m2)[0] == (1, 1, 1)


def test_m2_nothing_proposed_and_nothing_to_correct():
    """P = 1 when nothing is proposed and R = 1 when there is no gold edit (the scorer's conventions)."""
    counts, result = m2_counts(["It is fine ."], "S It is fine .\nA -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n")
    assert counts == (0, 0, 0)
    assert (result.components["P"], result.components["R"], result.score) == (100.0, 100.0, 100.0)
    counts, result = m2_counts(["He go home ."], "S He go home .\nA 1 2|||R:VERB|||goes|||REQUIRED|||-NONE-|||0\n")
    assert counts == (0, 0, 1)
    assert (result.components["P"], result.components["R"], result.score) == (100.0, 0.0, 0.0)


def test_m2_unequal_numbers_of_annotators():
    """Sentence 1 has annotators 0 (goes) and 1 (went); sentence 2 only annotator 0.

    Output 'He went home .': annotator 0 gives (0, 1, 1) with running F 0, annotator 1 gives (1, 1, 1) with
    F 1 -> annotator 1. Sentence 2 is left as is: (0, 0, 1). Totals (1, 1, 2): P 1, R 0.5,
    F0.5 = 1.25 * 0.5 / (0.25 + 0.5) = 5/6.
    """
    m2 = (
        "S He go home .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n"
        "A 1 2|||R:VERB:TENSE|||went|||REQUIRED|||-NONE-|||1\n\n"
        "S She like cats .\nA 1 2|||R:VERB:SVA|||likes|||REQUIRED|||-NONE-|||0\n"
    )
    counts, result = m2_counts(["He went home .", "She like cats ."], m2)
    assert counts == (1, 1, 2)
    assert result.score == pytest.approx(100 * 5 / 6, abs=1e-12)
    assert "annotators:2" in result.signature


def test_m2_lattice_merges_two_inserted_tokens_at_sentence_start():
    """The scorer (since its insertion fix) anchors insertions before the first token at offset 0, so the two
    inserted tokens merge into the gold edit 0 0 -> 'The big'. Anchoring them at j-1 (old versions) cannot match."""
    m2 = "S dog barks .\nA 0 0|||M:DET|||The big|||REQUIRED|||-NONE-|||0\n"
    assert m2_counts(["The big dog barks ."], m2)[0] == (1, 1, 1)
    assert m2_counts(["The big dog barks ."], m2, first_row_insert_at_zero=False)[0] == (0, 1, 1)


def test_m2_empty_output_is_one_whole_sentence_deletion():
    m2 = "S Yesterday I buyed three book .\nA 2 3|||R:VERB:INFL|||bought|||REQUIRED|||-NONE-|||0\n"
    assert m2_counts([""], m2)[0] == (0, 1, 1)


def test_m2_edit_outside_max_unchanged_words_is_not_merged():
    """Two changes three unchanged tokens apart stay two edits (max_unchanged_words = 2), one correct."""
    m2 = "S a b c d e f\nA 0 1|||R:OTHER|||x|||REQUIRED|||-NONE-|||0\n"
    counts, _ = m2_counts(["x b c d y f"], m2)
    assert counts == (1, 2, 1)


# ---------------------------------------------------------------------------------------------------------------
# ERRANT scoring (errant_compare semantics on M2 text; spaCy-free)
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# BLEU, self-BLEU, iBLEU, exact match, copy rate
# ---------------------------------------------------------------------------------------------------------------


def test_bleu_identity_and_brevity_penalty():
    assert get_metric("bleu").corpus_score(["the cat sat on the mat"], refs=[["the cat sat on the mat"]]).score == (
        pytest.approx(100.0)
    )
    # Every n-gram matches, output 4 tokens vs reference 6: BLEU = 100 * exp(1 - 6/4).
    result = get_metric("bleu").corpus_score(["a b c d"], refs=[["a b c d e f"]])
    assert result.score == pytest.approx(100 * math.exp(-0.5), abs=1e-9)
    assert result.components["bp"] == pytest.approx(math.exp(-0.5))


def test_bleu_empty_outputs_score_zero():
    assert get_metric("bleu").corpus_score(["", ""], refs=[["a b c d", "e f g h"]]).score == 0.0


def test_self_bleu_and_ibleu():
    sources = ["the quick brown fox jumps over the lazy dog", "a b c d e f"]
    copy = get_metric("self_bleu").corpus_score(sources, sources=sources)
    assert copy.score == pytest.approx(100.0)
    hyps = ["a fast brown fox leaps over the lazy dog", "a b c d e g"]
    refs = [["a fast brown fox leaps over a lazy dog", "a b c d e g"]]
    ibleu = get_metric("ibleu").corpus_score(hyps, sources=sources, refs=refs)
    bleu = get_metric("bleu").corpus_score(hyps, refs=refs).score
    self_bleu = get_metric("self_bleu").corpus_score(hyps, sources=sources).score
    assert ibleu.components["bleu"] == pytest.approx(bleu)
    assert ibleu.components["self_bleu"] == pytest.approx(self_bleu)
    assert ibleu.score == pytest.approx(0.8 * bleu - 0.2 * self_bleu)
    assert "alpha:0.8" in ibleu.signature
    half = get_metric("ibleu", alpha=0.5).corpus_score(hyps, sources=sources, refs=refs)
    assert half.score == pytest.approx(0.5 * bleu - 0.5 * self_bleu)


def test_exact_match_and_copy_rate():
    hyps = ["The cat sat.", "A dog barked. ", "the bird sang."]
    refs = [["The cat sat.", "A dog barks.", "The bird sang."], ["x", "A dog barked.", "y"]]
    em = get_metric("em").corpus_score(hyps, refs=refs)
    assert em.components == {"matches": 2, "segments": 3}  # case-sensitive: 'the bird' != 'The bird'
    assert em.score == pytest.approx(200 / 3)
    sources = ["The cat sat.", "A dog barks.", "the bird sang."]
    copy = get_metric("copy_rate").corpus_score(hyps, sources=sources)
    assert copy.components["matches"] == 2
    assert copy.score == pytest.approx(200 / 3)


# ---------------------------------------------------------------------------------------------------------------
# Registry, Score, signatures
# ---------------------------------------------------------------------------------------------------------------


def test_registry_covers_every_metric_and_rejects_unknown_names():
    assert set(available_metrics()) >= {"sari", "gleu", "m2", "errant", "em", "bleu", "self_bleu", "ibleu", "copy_rate"}
    with pytest.raises(MetricInputError, match="unknown metric"):
        get_metric("rouge")
    with pytest.raises(MetricInputError, match="bad option"):
        get_metric("sari", nonsense=1)


def test_score_to_dict_is_json_and_signatures_name_the_metric():
    result = get_metric("sari").corpus_score(["a c"], sources=["a b"], refs=[["a c"]], bootstrap=20, seed=7)
    assert isinstance(result, Score)
    data = json.loads(result.to_json())
    assert set(data) >= {"score", "components", "ci", "n", "signature"}
    assert data["signature"].startswith("sari|")
    for part in ("tok:13a", "case:lc", "nrefs:1", "bootstrap:20", "seed:7", "version:writetune-"):
        assert part in data["signature"]
    no_ci = get_metric("sari").corpus_score(["a c"], sources=["a b"], refs=[["a c"]])
    assert no_ci.ci is None and "ci" not in no_ci.to_dict() and "seed" not in no_ci.signature


def test_signature_from_collected_statistics_knows_the_reference_count():
    from writetune.metrics import Inputs

    cases = {
        "sari": (Inputs(hyps=["a c"], sources=["a b"], refs=[["a c"], ["a d"]]), "nrefs:2"),
        "bleu": (Inputs(hyps=["a c"], refs=[["a c"], ["a d"], ["a e"]]), "nrefs:3"),
        "gleu": (Inputs(hyps=["a c"], sources=["a b"], refs=[["a c"], ["a d"]]), "nrefs:2"),
        "em": (Inputs(hyps=["a c"], refs=[["a c"]]), "any-of-1-refs"),
        "m2": (
            Inputs(
                hyps=["a c"],
                gold=parse_m2("S a b\nA 1 2|||R|||c|||REQUIRED|||-NONE-|||0\nA 1 2|||R|||d|||REQUIRED|||-NONE-|||1\n"),
            ),
            "annotators:2",
        ),
    }
    for name, (inputs, expected_part) in cases.items():
        metric = get_metric(name)
        assert expected_part in metric.score_stats(metric.segment_stats(inputs)).signature, name
