"""Shared machinery of the metrics: the `Score` result, the aligned `Inputs`, the `Metric` base class and input
errors.

Every metric follows sacreBLEU's shape: it turns each segment into sufficient statistics (`SegmentStats`, numpy
arrays whose first axis is the segment) and aggregates collected statistics into a corpus score; the path from
inputs to statistics to a `Score` is `Metric.score_inputs`, written once here. Bootstrap resampling and significance
tests (`significance.py`) only re-aggregate resampled statistics, so they never redo tokenisation, edit extraction
or n-gram counting.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from writetune.metrics.signature import Signature
from writetune.metrics.significance import DEFAULT_SEED, bootstrap_ci
from writetune.metrics.stats import SegmentStats


class MetricInputError(ValueError):
    """Input that cannot be scored: mismatched line counts, empty files, malformed M2 lines, empty references.

    The message names the file (and line where there is one): ``path:line: what is wrong``.
    """


class SegmentInputError(MetricInputError):
    """One hypothesis segment (0-based `index`) that a metric cannot score; `score_files` names its file and line."""

    def __init__(self, index: int, problem: str):
        super().__init__(f"hypothesis line {index + 1}: {problem}")
        self.index, self.problem = index, problem


@dataclass(frozen=True)
class Score:
    """A corpus score on a 0-100 scale, with its components, optional 95% interval and a signature string.

    `components` holds sub-scores (also 0-100) and counts; `ci` is the bootstrap percentile interval on the same
    scale as `score`; `signature` says exactly how the number was computed.
    """

    metric: str
    score: float
    components: dict[str, Any]
    n: int
    signature: str
    ci: tuple[float, float] | None = None
    bootstrap: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "score": self.score,
            "components": _jsonable(self.components),
            "n": self.n,
        }
        if self.ci is not None:
            out["ci"] = [self.ci[0], self.ci[1]]
            out["bootstrap"] = self.bootstrap
        out["signature"] = self.signature
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def format(self, digits: int = 2) -> str:
        text = f"{self.metric} = {self.score:.{digits}f}"
        if self.ci is not None:
            text += f" (95% CI {self.ci[0]:.{digits}f}-{self.ci[1]:.{digits}f})"
        return f"{text} | {self.signature}"

    def __str__(self) -> str:
        return self.format()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Inputs:
    """Aligned metric inputs. `refs[k][i]` is reference k of segment i; `gold` is a parsed M2 document."""

    hyps: list[str]
    sources: list[str] | None = None
    refs: list[list[str]] | None = None
    gold: Any = None


class Metric(ABC):
    """A corpus metric: per-segment statistics plus an aggregation into a 0-100 score.

    Subclasses set the class attributes, implement `segment_stats`, `aggregate` and `signature_fields`, and may
    override `resampled_scores` with a vectorised version (the default re-aggregates each resample).
    `higher_is_better` says which way a score improves: True for most metrics, False where lower is better
    (self-BLEU, the share of empty or truncated answers), None for descriptions that are neither (answer length).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    higher_is_better: ClassVar[bool | None] = True
    needs_source: ClassVar[bool] = False
    needs_refs: ClassVar[bool] = False
    accepts_refs: ClassVar[bool] = False
    needs_gold: ClassVar[bool] = False
    accepts_gold: ClassVar[bool] = False

    @abstractmethod
    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        """Statistics of every segment (inputs are already validated)."""

    @abstractmethod
    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        """Corpus score (0-100) and components from collected statistics."""

    @abstractmethod
    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        """The metric's own signature fields, in order (implementation, tokenisation, references, options); a True
        value is a flag, written as its key alone."""

    def signature_versions(self) -> tuple[str, ...]:
        """Versions of the scoring packages the metric delegates to, written after writetune's own."""
        return ()

    def signature(self, n_refs: int | None, bootstrap: int = 0, seed: int | None = None) -> str:
        """Signature string: metric, its own fields, the bootstrap and its seed, versions (see `Signature`)."""
        return Signature(self.name, self.signature_fields(n_refs), bootstrap, seed, self.signature_versions()).format()

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        """Scores of the corpora given by each row of `indices` (segment indices into `stats`)."""
        indices = np.atleast_2d(indices)
        return np.array([self.aggregate(stats.take(row))[0] for row in indices], dtype=np.float64)

    def n_refs(self, inputs: Inputs) -> int | None:
        if inputs.refs is not None:
            return len(inputs.refs)
        return None

    def stats_n_refs(self, stats: SegmentStats) -> int | None:
        """Number of references (or annotators) behind collected statistics, for the signature."""
        return stats.meta.get("n_refs")

    def check_inputs(self, inputs: Inputs) -> None:
        """Requirements that are specific to the metric (presence of source, references, gold)."""
        if self.needs_source and inputs.sources is None:
            raise MetricInputError(f"{self.name}: needs the source segments")
        if self.needs_refs and not inputs.refs:
            raise MetricInputError(f"{self.name}: needs at least one reference")
        if inputs.refs and not (self.accepts_refs or self.needs_refs):
            raise MetricInputError(f"{self.name}: takes no references")
        if self.needs_gold and inputs.gold is None:
            raise MetricInputError(f"{self.name}: needs a gold M2 file")
        if inputs.gold is not None and not (self.accepts_gold or self.needs_gold):
            raise MetricInputError(f"{self.name}: takes no M2 file")

    def corpus_score(
        self,
        hyps: Sequence[str],
        *,
        sources: Sequence[str] | None = None,
        refs: Sequence[Sequence[str]] | None = None,
        gold: Any = None,
        bootstrap: int = 0,
        seed: int | None = None,
        labels: Mapping[str, Any] | None = None,
    ) -> Score:
        """Score a corpus given as lists of segments (`refs[k][i]`: reference k of segment i).

        `labels` names the inputs in error messages (file paths: ``{"hyp": path, "source": path, "refs": [...]}``).
        """
        inputs = self.prepare_inputs(hyps, sources=sources, refs=refs, gold=gold, labels=labels)
        return self.score_inputs(inputs, bootstrap=bootstrap, seed=seed)[0]

    def prepare_inputs(
        self,
        hyps: Sequence[str],
        *,
        sources: Sequence[str] | None = None,
        refs: Sequence[Sequence[str]] | None = None,
        gold: Any = None,
        labels: Mapping[str, Any] | None = None,
    ) -> Inputs:
        """Aligned inputs (`make_inputs`) that also meet this metric's requirements (`check_inputs`)."""
        inputs = make_inputs(hyps, sources=sources, refs=refs, gold=gold, labels=labels)
        self.check_inputs(inputs)
        return inputs

    def score_inputs(
        self, inputs: Inputs, *, bootstrap: int = 0, seed: int | None = None
    ) -> tuple[Score, SegmentStats]:
        """The path from prepared inputs to a score, written once: their statistics, aggregated into a `Score`
        (with a bootstrap interval when `bootstrap` > 0). The statistics come back too, for paired tests."""
        stats = self.segment_stats(inputs)
        return self.score_stats(stats, n_refs=self.n_refs(inputs), bootstrap=bootstrap, seed=seed), stats

    def score_stats(
        self, stats: SegmentStats, *, n_refs: int | None = None, bootstrap: int = 0, seed: int | None = None
    ) -> Score:
        """Turn collected statistics into a `Score`, with a bootstrap interval when `bootstrap` > 0."""
        value, components = self.aggregate(stats)
        if n_refs is None:
            n_refs = self.stats_n_refs(stats)
        ci = None
        if bootstrap:
            seed = DEFAULT_SEED if seed is None else seed
            ci = bootstrap_ci(self, stats, n_samples=bootstrap, seed=seed)
        return Score(
            metric=self.name,
            score=float(value),
            components=components,
            n=stats.n,
            signature=self.signature(n_refs, bootstrap=bootstrap, seed=seed if bootstrap else None),
            ci=ci,
            bootstrap=bootstrap,
        )


def make_inputs(
    hyps: Sequence[str],
    *,
    sources: Sequence[str] | None = None,
    refs: Sequence[Sequence[str]] | None = None,
    gold: Any = None,
    labels: Mapping[str, Any] | None = None,
) -> Inputs:
    """Validate that the inputs line up and that no reference or source segment is empty."""
    labels = dict(labels or {})
    hyp_label = labels.get("hyp", "hypothesis")
    src_label = labels.get("source", "source")
    ref_labels = list(labels.get("refs") or [])
    if isinstance(hyps, str):
        raise MetricInputError(f"{hyp_label}: expected a list of segments, got a string")
    hyps = [str(h) for h in hyps]
    if not hyps:
        raise MetricInputError(f"{hyp_label}: no segments to score")
    n = len(hyps)
    src_list = None
    if sources is not None:
        if isinstance(sources, str):
            raise MetricInputError(f"{src_label}: expected a list of segments, got a string")
        src_list = [str(s) for s in sources]
        if len(src_list) != n:
            raise MetricInputError(f"{hyp_label}: has {n} segments but {src_label} has {len(src_list)}")
        for i, s in enumerate(src_list):
            if not s.strip():
                raise MetricInputError(f"{src_label}:{i + 1}: empty source segment")
    ref_list = None
    if refs is not None:
        if isinstance(refs, str) or (len(refs) and isinstance(refs[0], str)):
            raise MetricInputError("references: expected a list of reference streams (refs[k][i]), got strings")
        ref_list = []
        for k, stream in enumerate(refs):
            label = ref_labels[k] if k < len(ref_labels) else f"reference {k + 1}"
            stream = [str(r) for r in stream]
            if len(stream) != n:
                raise MetricInputError(f"{hyp_label}: has {n} segments but {label} has {len(stream)}")
            for i, r in enumerate(stream):
                if not r.strip():
                    raise MetricInputError(f"{label}:{i + 1}: empty reference segment")
            ref_list.append(stream)
    if gold is not None and len(gold) != n:
        gold_label = getattr(gold, "path", "the gold M2 document")
        raise MetricInputError(f"{hyp_label}: has {n} segments but {gold_label} has {len(gold)} sentences")
    return Inputs(hyps=hyps, sources=src_list, refs=ref_list, gold=gold)

