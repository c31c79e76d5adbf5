"""The metric registry: every metric by name and alias, options, and unknown names."""

from __future__ import annotations

import pytest

from writetune.metrics import MetricInputError, available_metrics, get_metric


def test_registry_covers_every_metric_and_rejects_unknown_names():
    assert set(available_metrics()) >= {"sari", "gleu", "m2", "errant", "em", "bleu", "self_bleu", "ibleu", "copy_rate"}
    with pytest.raises(MetricInputError, match="unknown metric"):
        get_metric("rouge")
    with pytest.raises(MetricInputError, match="bad option"):
        get_metric("sari", nonsense=1)
