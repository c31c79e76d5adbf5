"""M2 F0.5 (MaxMatch, as M2Scorer 3.2): hand-computed counts, the scorer's conventions and lattice details, the
bounds on an exploding edit lattice, and M2Scorer's golden values on CWEB dev and its test cases."""

from __future__ import annotations

import json
import time

import pytest
from support.metric_golden import SHARED, case_list, ids, lines, needs_golden, records
from support.metrics import GOLD, score_cli, write

from writetune.metrics import get_metric, parse_m2, read_m2, score_files


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


def test_an_exploding_m2_lattice_is_bounded_and_counts_as_one_wrong_edit(tmp_path):
    long_source = " ".join(f"w{i}" for i in range(60))
    gold = write(tmp_path / "gold.m2", GOLD.split("\n\n")[0] + f"\n\nS {long_source}\n"
                 "A 0 1|||R:NOUN|||v0|||REQUIRED|||-NONE-|||0\n\n")
    for length in (60, 1000):
        unrelated = " ".join(f"x{i}" for i in range(length))
        hyp = write(tmp_path / f"hyp{length}.txt", f"She goes to school every day .\n{unrelated}\n")
        started = time.perf_counter()
        code, output = score_cli("--metric", "m2", "--hyp", str(hyp), "--m2", str(gold), "--json")
        elapsed = time.perf_counter() - started
        assert code == 0, output
        assert elapsed < 15, elapsed  # unbounded: 8 s and 330 MB at 60 tokens, memory exhausted at 1000
        # line 1 is a correct edit, line 2 counts as one proposed edit that is not correct
        assert {k: json.loads(output)["components"][k] for k in ("correct", "proposed", "gold")} == \
            {"correct": 1, "proposed": 2, "gold": 2}


def test_ordinary_m2_lines_still_score_exactly(tmp_path):
    gold = write(tmp_path / "gold.m2", GOLD)
    hyp = write(tmp_path / "hyp.txt", "She goes to school every day .\nHe bought some apples .\n")
    result = score_files("m2", hyp=hyp, m2=gold)
    assert (result.components["correct"], result.components["proposed"], result.components["gold"]) == (2, 3, 2)


@needs_golden
@pytest.mark.parametrize("record", records("M2_F0.5"), ids=ids(records("M2_F0.5")))
def test_m2_cweb_dev(record):
    files = record["files"]
    result = get_metric("m2").corpus_score(lines(files["hypothesis"]), gold=read_m2(SHARED / files["m2"]))
    c, g = result.components, record["components"]
    assert (c["correct"], c["proposed"], c["gold"]) == (g["correct"], g["proposed"], g["gold"])
    for key in ("P", "R", "F0.5"):
        assert c[key] / 100 == pytest.approx(g[key], abs=1e-12)
    assert result.score / 100 == pytest.approx(record["value"], abs=1e-12)


@needs_golden
@pytest.mark.parametrize("case", case_list("m2scorer"), ids=ids(case_list("m2scorer")))
def test_m2_cases(case):
    inputs, want = case["inputs"], case["expected"]
    result = get_metric("m2").corpus_score(inputs["hypothesis"], gold=parse_m2(inputs["gold_m2"]))
    c = result.components
    assert (c["correct"], c["proposed"], c["gold"]) == (want["correct"], want["proposed"], want["gold"])
    assert c["P"] / 100 == pytest.approx(want["P"], abs=1e-12)
    assert c["R"] / 100 == pytest.approx(want["R"], abs=1e-12)
    assert result.score / 100 == pytest.approx(want["F0_5"], abs=1e-12)


def test_gold_edit_matches_span_original_and_any_correction():
    from writetune.metrics.m2 import Edit, GoldEdit

    gold = GoldEdit(1, 2, "go", ["goes", "went"])
    assert gold.matches(Edit("sub", 1, 2, "go", "went", 0))
    assert not gold.matches(Edit("sub", 1, 3, "go", "went", 0))
    assert not gold.matches(Edit("sub", 1, 2, "gone", "went", 0))
    assert not gold.matches(Edit("sub", 1, 2, "go", "gone", 0))


def test_adjacent_edits_merge_into_one_edit():
    from writetune.metrics.m2 import Edit, _merge_edits

    deletion, insertion = Edit("del", 0, 1, "a", "", 0), Edit("ins", 1, 1, "", "b", 0)
    assert _merge_edits(deletion, insertion) == Edit("sub", 0, 1, "a", "b", 0)
    kept, changed = Edit("noop", 1, 2, "c", "c", 1), Edit("sub", 2, 3, "d", "e", 0)
    assert _merge_edits(kept, changed) == Edit("sub", 1, 3, "c d", "c e", 1)
    assert _merge_edits(kept, Edit("noop", 2, 3, "d", "d", 1)).kind == "noop"
