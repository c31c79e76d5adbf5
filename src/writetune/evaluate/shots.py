"""Few-shot prompts: k solved examples for a set's task, drawn from the task's training-side pool
(`writetune.data.evalsets.SHOT_POOLS`), never from an item being evaluated."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from writetune.data.evalsets import SHOT_POOLS, EvalSet, MissingEvalData
from writetune.data.readers import Example
from writetune.data.tokenization import match_key


def few_shot_examples(evalset: EvalSet, examples: Sequence[Example], data_dir: Path, k: int,
                      seed: int = 0, blocked: set[str] | None = None) -> tuple[tuple[str, str], ...]:
    """k solved (input, answer) pairs for the set's task, from the task's training-side pool: never an item whose
    source or reference matches (by `match_key`) an item of this set or a key in `blocked` (the other sets being
    evaluated), never an unchanged pair, 4-40 words, chosen by a hash of the text (the same shots for every item of
    the set). Raises MissingEvalData or ValueError when the pool is absent or too small."""
    spec = SHOT_POOLS.get(evalset.task)
    if spec is None:
        raise ValueError(f"no training-side pool for task '{evalset.task}' to draw few-shot examples from")
    for path in spec.files():
        if not (data_dir / path).is_file():
            raise MissingEvalData(evalset.name, data_dir / path)
    blocked = set(blocked or ()) | {match_key(t) for e in examples for t in (e.source, *e.references)}
    candidates = []
    for pool_example in spec.read(data_dir, task=evalset.task, origin="shots"):
        plain = pool_example.detokenized()
        source, answer = plain.source, plain.references[0] if plain.references else ""
        if not answer or match_key(source) == match_key(answer) or match_key(source) in blocked:
            continue
        if any(match_key(r) in blocked for r in pool_example.references):
            continue
        if not 4 <= len(source.split()) <= 40:
            continue
        rank = hashlib.sha256(f"shots:{seed}:{evalset.task}:{match_key(source)}".encode()).hexdigest()
        candidates.append((rank, source, answer))
    if len(candidates) < k:
        raise ValueError(f"the few-shot pool of task '{evalset.task}' has only {len(candidates)} usable pairs")
    return tuple((s, a) for _, s, a in sorted(candidates)[:k])
