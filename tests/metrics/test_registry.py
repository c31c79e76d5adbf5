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


def test_every_alias_resolves_to_a_registered_metric():
    from writetune.metrics import canonical_name
    from writetune.metrics.registry import ALIASES, METRICS

    assert canonical_name("m2_f05") == "m2" and canonical_name("errant_f05") == "errant"
    assert canonical_name(" Exact_Match ") == "em"
    for alias, name in ALIASES.items():
        assert name in METRICS, alias
        assert get_metric(alias).name == name == canonical_name(alias.upper())
    for name in available_metrics():
        assert canonical_name(name) == name
    with pytest.raises(MetricInputError, match="unknown metric 'm3'"):
        canonical_name("m3")


def test_each_metric_says_which_way_it_improves():
    from writetune.metrics import higher_is_better, metric_class

    assert higher_is_better("self_bleu") is False and higher_is_better("self-bleu") is False
    assert higher_is_better("empty_or_truncated") is False
    assert higher_is_better("answer_words") is None  # a description of the answers, neither better nor worse
    assert higher_is_better("m2_f05") is True and higher_is_better("gleu") is True
    lower = {name for name in available_metrics() if higher_is_better(name) is False}
    assert lower == {"self_bleu", "empty_or_truncated"}
    assert all(metric_class(name).name == name for name in available_metrics())
