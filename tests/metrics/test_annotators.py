"""The base M2 and ERRANT share (`writetune.metrics.annotators`): per-annotator counts padded into statistics, and
one annotator chosen per sentence, in the scalar and the resampled path alike."""

from __future__ import annotations

import numpy as np
import pytest

from writetune.metrics import ErrantF05, M2Score
from writetune.metrics.annotators import AnnotatorChoiceMetric


def test_counts_become_statistics_padded_to_the_most_annotators():
    stats = AnnotatorChoiceMetric.stats_from_counts([[(1, 1, 1)], [(0, 1, 1), (1, 1, 1)], [(0, 0, 2)]])
    assert stats["cand"].shape == (3, 2, 3)
    assert stats["valid"].tolist() == [[True, False], [True, True], [True, False]]
    assert stats["cand"][1].tolist() == [[0, 1, 1], [1, 1, 1]] and stats["cand"][0, 1].tolist() == [0, 0, 0]
    assert M2Score().stats_n_refs(stats) == 2


@pytest.mark.parametrize("multi", [False, True])
def test_m2_and_errant_agree_on_the_same_edits(multi):
    """The same matches written as M2 counts (correct, proposed, gold) and as ERRANT counts (TP, FP, FN): one
    annotator per sentence sums them, two annotators choose the better one; both metrics give the same F0.5."""
    m2_rows = [[(1, 2, 1)], [(0, 1, 1), (1, 1, 1)] if multi else [(0, 1, 1)], [(0, 0, 1)], [(2, 2, 3)]]
    errant_rows = [[(c, p - c, g - c) for c, p, g in rows] for rows in m2_rows]
    m2, errant = M2Score(), ErrantF05()
    m2_stats, errant_stats = m2.stats_from_counts(m2_rows), errant.stats_from_counts(errant_rows)
    m2_score, m2_parts = m2.aggregate(m2_stats)
    errant_score, errant_parts = errant.aggregate(errant_stats)
    assert m2_score == pytest.approx(errant_score, abs=1e-12)
    correct = 4 if multi else 3
    assert (m2_parts["correct"], m2_parts["proposed"], m2_parts["gold"]) == (correct, 5, 6)
    assert (errant_parts["TP"], errant_parts["FP"], errant_parts["FN"]) == (correct, 5 - correct, 6 - correct)
    indices = np.array([[0, 1, 2, 3], [1, 1, 3, 0], [2, 2, 2, 2]])
    assert m2.resampled_scores(m2_stats, indices) == pytest.approx(errant.resampled_scores(errant_stats, indices))
    assert m2.resampled_scores(m2_stats, indices)[0] == pytest.approx(m2_score, abs=1e-12)
