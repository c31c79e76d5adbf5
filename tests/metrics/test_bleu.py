"""BLEU, self-BLEU and iBLEU (sacreBLEU on EASSE-normalised text): identity, brevity penalty, empty outputs, the
iBLEU mix, and EASSE's golden BLEU on the shared sets."""

from __future__ import annotations

import math

import pytest
from support.metric_golden import ids, lines, needs_golden, records

from writetune.metrics import get_metric


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


@needs_golden
@pytest.mark.parametrize("record", records("BLEU"), ids=ids(records("BLEU")))
def test_bleu_dev_sets(record):
    files = record["files"]
    result = get_metric("bleu").corpus_score(lines(files["hypothesis"]), refs=[lines(p) for p in files["references"]])
    assert result.score == pytest.approx(record["value"], abs=record["tolerance"]["value_abs"])
    golden = record["components"]
    for key in ("counts", "totals", "sys_len", "ref_len"):
        assert result.components[key] == golden[key], key
    assert result.components["bp"] == pytest.approx(golden["bp"], abs=1e-12)
