"""Writing metrics that match the reference implementation each research community reports with.

Registry and public API: `get_metric(name)` returns a `Metric` (sari, gleu, m2, errant, em, bleu, self_bleu, ibleu,
copy_rate; for open-ended instructions rouge_l, answer_words, empty_or_truncated and the four IFBench accuracies
ifbench_{prompt,instruction}_{strict,loose}); `canonical_name` resolves aliases (``m2_f05``, ``errant_f05``, ...) and
`higher_is_better` says which way each metric improves (`writetune.metrics.registry`). `Metric.corpus_score(...)`
scores lists of segments; `score_files(...)` scores files (what ``writetune score`` calls). Every result is a
`Score` (0-100 scale, components, optional bootstrap CI, `Signature`).
Paired significance tests live in `writetune.metrics.significance`. How each metric is computed and validated:
docs/metrics.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from writetune.data.m2format import M2Document
from writetune.metrics.answers import AnswerLength, EmptyOrTruncated
from writetune.metrics.base import Inputs, Metric, MetricInputError, Score, SegmentInputError, make_inputs
from writetune.metrics.bleu import Bleu, IBleu, SelfBleu
from writetune.metrics.errant_f05 import ErrantF05
from writetune.metrics.exact import CopyRate, ExactMatch
from writetune.metrics.files import M2FormatError, parse_m2, read_m2, read_segments
from writetune.metrics.gleu import Gleu
from writetune.metrics.m2 import M2Score
from writetune.metrics.registry import available_metrics, canonical_name, get_metric, higher_is_better, metric_class
from writetune.metrics.rouge import RougeL
from writetune.metrics.sari import Sari
from writetune.metrics.significance import (
    DEFAULT_SEED,
    PairedResult,
    approximate_randomization,
    bootstrap_ci,
    paired_bootstrap,
)
from writetune.metrics.signature import Signature
from writetune.metrics.stats import SegmentStats

PathLike = str | os.PathLike[str]


def load_inputs(
    metric: Metric,
    *,
    hyp: PathLike,
    source: PathLike | None = None,
    refs: Sequence[PathLike] = (),
    m2: PathLike | None = None,
) -> Inputs:
    """Read and validate the files a metric needs; errors name the file (and line)."""
    refs = list(refs or [])
    gold = read_m2(m2) if m2 is not None else None
    hyps = read_segments(hyp)
    sources = read_segments(source) if source is not None else None
    if gold is not None and sources is not None:
        # The source is the M2 file's S lines; a source file given as well must agree with them.
        if len(sources) != len(gold):
            raise MetricInputError(f"{source}: has {len(sources)} lines but {m2} has {len(gold)} sentences")
        for i, (line, sentence) in enumerate(zip(sources, gold)):
            if line.split() != sentence.tokens:
                raise MetricInputError(f"{source}:{i + 1}: differs from the S line at {m2}:{sentence.line}")
        sources = None
    ref_lines = [read_segments(r) for r in refs] if refs else None
    if gold is not None and len(hyps) != len(gold):
        raise MetricInputError(f"{hyp}: has {len(hyps)} lines but {m2} has {len(gold)} sentences")
    labels = {"hyp": str(hyp), "source": str(source), "refs": [str(r) for r in refs]}
    return metric.prepare_inputs(hyps, sources=sources, refs=ref_lines, gold=gold, labels=labels)


def score_files(
    metric: str | Metric,
    *,
    hyp: PathLike,
    source: PathLike | None = None,
    refs: Sequence[PathLike] = (),
    m2: PathLike | None = None,
    bootstrap: int = 0,
    seed: int | None = None,
    **options: Any,
) -> Score:
    """Score one-segment-per-line files. For ``m2`` (and ``errant`` with an M2 file) the source is the M2 file's
    ``S`` lines. `bootstrap` > 0 adds a 95% percentile interval from that many resamples (seed 12345 unless given).
    Raises `MetricInputError` (a ValueError) for bad input."""
    if isinstance(metric, str):
        metric = get_metric(metric, **options)
    elif options:
        raise MetricInputError("options are only accepted together with a metric name")
    if bootstrap < 0:
        raise MetricInputError(f"bootstrap: the number of samples must be >= 0, got {bootstrap}")
    inputs = load_inputs(metric, hyp=hyp, source=source, refs=refs, m2=m2)
    try:
        return metric.score_inputs(inputs, bootstrap=bootstrap, seed=seed)[0]
    except SegmentInputError as err:
        raise MetricInputError(f"{hyp}:{err.index + 1}: {err.problem}") from None


def compare_files(
    metric: str | Metric,
    *,
    hyp_a: PathLike,
    hyp_b: PathLike,
    source: PathLike | None = None,
    refs: Sequence[PathLike] = (),
    m2: PathLike | None = None,
    method: str = "paired_bootstrap",
    samples: int | None = None,
    seed: int = DEFAULT_SEED,
    **options: Any,
) -> PairedResult:
    """Paired significance test of system B against system A on the same inputs (delta = B - A)."""
    if isinstance(metric, str):
        metric = get_metric(metric, **options)
    stats = [
        metric.segment_stats(load_inputs(metric, hyp=h, source=source, refs=refs, m2=m2)) for h in (hyp_a, hyp_b)
    ]
    if method == "paired_bootstrap":
        return paired_bootstrap(metric, stats[0], stats[1], n_samples=samples or 1000, seed=seed)
    if method in ("approximate_randomization", "ar"):
        return approximate_randomization(metric, stats[0], stats[1], n_trials=samples or 10_000, seed=seed)
    raise MetricInputError(f"unknown test {method!r}; choose paired_bootstrap or approximate_randomization")


__all__ = [
    "DEFAULT_SEED",
    "AnswerLength",
    "EmptyOrTruncated",
    "RougeL",
    "Bleu",
    "CopyRate",
    "ErrantF05",
    "ExactMatch",
    "Gleu",
    "IBleu",
    "Inputs",
    "M2Document",
    "M2FormatError",
    "M2Score",
    "Metric",
    "MetricInputError",
    "PairedResult",
    "Sari",
    "Score",
    "SegmentStats",
    "SelfBleu",
    "Signature",
    "approximate_randomization",
    "available_metrics",
    "bootstrap_ci",
    "canonical_name",
    "compare_files",
    "get_metric",
    "higher_is_better",
    "load_inputs",
    "make_inputs",
    "metric_class",
    "paired_bootstrap",
    "parse_m2",
    "read_m2",
    "read_segments",
    "score_files",
]
