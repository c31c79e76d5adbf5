"""In-training evaluation with generation: every N steps, generate on a small dev subset per task and score it with
the task's metric and the copy rate, so a run that learns to copy its input is visible while it trains.

The subset is fixed for the whole run (the first `n` dev records of each task after a seeded shuffle). Generation
goes through `writetune.generate.TransformersGenerator` (greedy), i.e. the same prompt rendering as evaluation and
serving. Metrics come from `writetune.metrics`: the task's first metric that can be computed from the dev records'
references (M2 F0.5 needs gold edit files, so grammaticality uses ERRANT F0.5 from the references), unless the
recipe names one. GLEU and ERRANT split on whitespace and their reference corpora are PTB-tokenized, so hypotheses,
sources and references are tokenized with the data layer's `tokenize_ptb` first; SARI tokenizes for itself.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from writetune.data.record import Record
from writetune.data.tokenization import tokenize_ptb
from writetune.generate import DecodingConfig, Request, TransformersGenerator
from writetune.metrics import MetricInputError, canonical_name, get_metric, metric_class
from writetune.tasks import get_task

_WHITESPACE_TOKENIZED = {"gleu", "errant", "m2"}
_REFERENCE_METRICS = {"sari", "gleu", "errant", "bleu", "em", "ibleu"}


def metric_for_task(task: str, override: dict[str, str] | None = None) -> str | None:
    """The metric logged for a task during training (None: the task has no reference-based metric)."""
    name = get_task(task).name
    if override and name in override:
        return override[name]
    for metric in get_task(name).metrics:
        try:
            metric = canonical_name(metric)
        except MetricInputError:
            continue  # a task file may name a metric that is not registered: nothing to log for it
        if metric_class(metric).needs_gold:
            metric = "errant"  # M2 needs gold edit files; ERRANT scores the same edits from the references
        if metric in _REFERENCE_METRICS:
            return metric
    return None


@dataclass
class TaskSubset:
    task: str
    metric: str
    records: list[Record] = field(default_factory=list)


def select_subsets(dev: Sequence[Record], per_task: int, seed: int, tasks: Sequence[str] | None = None,
                   metrics: dict[str, str] | None = None) -> list[TaskSubset]:
    """Fixed per-task generation subsets of the dev records (tasks without a metric are skipped)."""
    wanted = {get_task(t).name for t in tasks} if tasks else None
    by_task: dict[str, list[Record]] = defaultdict(list)
    for record in dev:
        by_task[record.task].append(record)
    subsets = []
    for task in sorted(by_task):
        if wanted is not None and task not in wanted:
            continue
        metric = metric_for_task(task, metrics)
        if metric is None or per_task <= 0:
            continue
        pool = [r for r in by_task[task] if r.input.strip()]
        random.Random(f"{seed}:{task}").shuffle(pool)
        if pool:
            subsets.append(TaskSubset(task=task, metric=metric, records=pool[:per_task]))
    return subsets


def score_outputs(metric: str, outputs: Sequence[str], subset: Sequence[Record]) -> dict:
    """`{"metric", "score", "copy_rate", "n"}` for one task's outputs."""
    sources = [r.input for r in subset]
    n_refs = max(len(r.references) for r in subset)
    # pad reference lists by repeating the last one (sets with a varying number of references)
    refs = [[(r.references[k] if k < len(r.references) else r.references[-1]) for r in subset] for k in range(n_refs)]
    hyps = list(outputs)
    if metric in _WHITESPACE_TOKENIZED:
        hyps = [tokenize_ptb(h) for h in hyps]
        sources_m = [tokenize_ptb(s) for s in sources]
        refs = [[tokenize_ptb(x) for x in stream] for stream in refs]
    else:
        sources_m = sources
    scorer = get_metric(metric)
    score = scorer.corpus_score(hyps, sources=sources_m, refs=refs)
    copy = get_metric("copy_rate").corpus_score(list(outputs), sources=sources)
    return {"metric": metric, "score": round(score.score, 3), "copy_rate": round(copy.score, 2), "n": len(hyps)}


def run_generation_eval(loaded, subsets: Sequence[TaskSubset], *, max_new_tokens: int, batch_size: int,
                        samples: int = 2) -> dict[str, dict]:
    """Generate greedily for every subset and score it. `loaded` is a `writetune.models.LoadedModel`."""
    generator = TransformersGenerator(loaded)
    decoding = DecodingConfig(strategy="greedy", max_new_tokens=max_new_tokens, batch_size=batch_size)
    requests = [Request(r.instruction, r.input) for subset in subsets for r in subset.records]
    outputs = generator.generate(requests, decoding)  # one call: batches group similar lengths across tasks
    results = {}
    start = 0
    for subset in subsets:
        mine = outputs[start:start + len(subset.records)]
        start += len(subset.records)
        result = score_outputs(subset.metric, mine, subset.records)
        result["samples"] = [{"input": r.input, "output": o} for r, o in zip(subset.records[:samples], mine)]
        results[subset.task] = result
    return results
