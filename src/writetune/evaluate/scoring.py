"""Scoring one row's answers on one set: the inputs each metric takes (gold edits or sources and references), every
metric of the set with its bootstrap interval, which way each metric is better, and the paired test of every row
against the baseline row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from writetune.data.evalsets import EvalSet
from writetune.data.m2format import M2Document
from writetune.data.readers import Example
from writetune.data.sources import M2Source
from writetune.metrics import Metric, SegmentStats, get_metric, paired_bootstrap, read_m2
from writetune.results import Better, ScoreRecord

def better(metric: Metric) -> Better:
    """The results document's name for the way `metric` improves (its class's `higher_is_better`): `higher`,
    `lower` (self-BLEU, the share of empty or truncated answers) or `neither` (answer length)."""
    return {True: "higher", False: "lower", None: "neither"}[metric.higher_is_better]


def gold_edits(evalset: EvalSet, data_dir: Path, examples: Sequence[Example]) -> M2Document | None:
    """The set's gold M2 document restricted to `examples` (matched by the `file:line` ids), or None."""
    if not isinstance(evalset.source, M2Source):
        return None
    document = read_m2(data_dir / evalset.source.path)
    by_line = {sentence.line: i for i, sentence in enumerate(document)}
    indices = []
    for example in examples:
        line = int(example.id.rsplit(":", 1)[1])
        if line not in by_line:
            raise ValueError(f"{evalset.name}: item {example.id} has no block in {document.path}")
        indices.append(by_line[line])
    return document.subset(indices)


def item_text(example: Example) -> str:
    """What an item asks about, as metrics see its source: the source text, or for an item with its own
    instruction, the instruction and the input (an Alpaca record may have no input)."""
    if not example.instruction:
        return example.source
    return f"{example.instruction}\n\n{example.source}" if example.source else example.instruction


def metric_inputs(metric: Metric, hyps: list[str], examples: Sequence[Example], gold) -> dict[str, Any]:
    """Keyword arguments for `Metric.corpus_score`-style inputs: gold edits where the metric takes them and the
    set has them, else sources and references as the set's files have them."""
    kwargs: dict[str, Any] = {"hyps": hyps}
    use_gold = metric.needs_gold or (metric.accepts_gold and gold is not None)
    if use_gold:
        kwargs["gold"] = gold
    else:
        kwargs["sources"] = [item_text(e) for e in examples]
    if not use_gold and (metric.needs_refs or metric.accepts_refs):
        n_refs = min(len(e.references) for e in examples)
        kwargs["refs"] = [[e.references[k] for e in examples] for k in range(n_refs)]
    return kwargs


@dataclass
class Scored:
    """One metric of one system on one set: the score record and the per-segment statistics."""

    record: ScoreRecord
    metric: Metric
    stats: SegmentStats


def score_set(metric_names: Sequence[str], hyps: list[str], examples: Sequence[Example], gold, policy_text: str,
              set_name: str, bootstrap: int, seed: int, truncated: Sequence[bool] | None = None) -> list[Scored]:
    """Every metric of a set on one system's answers; `truncated` (per answer: did it reach its token budget) goes
    to the metrics that count truncated answers."""
    out = []
    for name in metric_names:
        metric = get_metric(name, truncated=truncated) if name == "empty_or_truncated" else get_metric(name)
        kwargs = metric_inputs(metric, hyps, examples, gold)
        inputs = metric.prepare_inputs(kwargs.pop("hyps"), **kwargs)
        score, stats = metric.score_inputs(inputs, bootstrap=bootstrap, seed=seed)
        record: ScoreRecord = {
            "metric": name,
            "label": getattr(metric, "label", name),
            "better": better(metric),
            "score": round(float(score.score), 4),
            "ci": [round(score.ci[0], 4), round(score.ci[1], 4)] if score.ci is not None else None,
            "n": score.n,
            "signature": f"{score.signature}|set:{set_name}|{policy_text}",
            "components": score.to_dict()["components"],
        }
        out.append(Scored(record, metric, stats))
    return out


def compare_with_baseline(scored: dict[tuple[str, str], list[Scored]], baseline: str, samples: int,
                          seed: int) -> None:
    """Paired bootstrap of every system against the baseline on every set and metric, written into the records:
    `baseline: true` on the baseline row's, `vs_baseline` on the others' (where the baseline has the set)."""
    for (system, set_name), scores in scored.items():
        if system == baseline:
            for s in scores:
                s.record["baseline"] = True
            continue
        base = scored.get((baseline, set_name))
        if base is None:
            continue
        for s, b in zip(scores, base):
            test = paired_bootstrap(s.metric, b.stats, s.stats, n_samples=samples, seed=seed)
            s.record["vs_baseline"] = {
                "baseline": baseline, "delta": round(float(test.delta), 4),
                "p_value": round(float(test.p_value), 5), "test": f"paired_bootstrap:{samples}",
                "delta_ci": [round(float(x), 4) for x in test.delta_ci] if test.delta_ci else None,
            }
