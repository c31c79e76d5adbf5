"""Exact match and copy rate: string comparison after stripping, case-sensitive."""

from __future__ import annotations

import pytest

from writetune.metrics import get_metric


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
