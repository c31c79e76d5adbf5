"""Is a model's answer a rewrite of its sentence? A chatty answer ("The sentence should read: ...", an explanation
after the rewrite, a quote of the sentence inside prose, a "correction" that keeps too little of the source) must not
be offered as suggested edits.

An answer is compared with its source word by word (lower-cased word and punctuation tokens, difflib's matching
blocks): `kept` is the share of source tokens the answer keeps and `dropped` their number, `added` the share of
answer tokens that are not from the source and `new` their number, `lead` and `trail` the answer tokens before the
first and after the last kept token. Each task has limits, measured on the training side of the task's data (the
records of a built mix whose output differs from its input: real rewrites) as the 1st percentile of `kept` and the
99th of the others. An answer is "no confident suggestion" when its `lead` or `trail` is past its limit, or when it
keeps too little of the sentence both as a share and as a count (a short sentence with three errors keeps a small
share of few words), or adds too much both ways. `scripts/measure_rewrite_thresholds.py` measures the limits and writes
`rewrite_thresholds.json` beside this module; docs/serving.md has the numbers and how often each limit fires.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

THRESHOLDS_FILE = Path(__file__).with_name("rewrite_thresholds.json")
FEATURES = ("kept", "dropped", "added", "new", "lead", "trail")
_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class RewriteFeatures:
    kept: float
    dropped: int
    added: float
    new: int
    lead: int
    trail: int


@dataclass(frozen=True)
class Verdict:
    """Whether an answer can be offered as edits; `reason` names the limit it broke."""

    confident: bool
    reason: str
    features: RewriteFeatures


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def rewrite_features(source: str, answer: str) -> RewriteFeatures:
    src, ans = _tokens(source), _tokens(answer)
    blocks = [b for b in difflib.SequenceMatcher(None, src, ans, autojunk=False).get_matching_blocks() if b.size]
    matched = sum(b.size for b in blocks)
    lead = blocks[0].b if blocks else len(ans)
    trail = len(ans) - (blocks[-1].b + blocks[-1].size) if blocks else 0
    return RewriteFeatures(matched / len(src) if src else 1.0, len(src) - matched,
                           1 - matched / len(ans) if ans else 0.0, len(ans) - matched, lead, trail)


@lru_cache(maxsize=1)
def thresholds() -> dict[str, dict[str, float]]:
    """Per task: `kept_min`, `dropped_max`, `added_max`, `new_max`, `lead_max`, `trail_max` (module docstring)."""
    return json.loads(THRESHOLDS_FILE.read_text(encoding="utf-8"))["tasks"]


def check_rewrite(task: str, source: str, answer: str) -> Verdict:
    """The verdict on `answer` as a rewrite of `source` for `task` (a task without measured limits: always
    confident)."""
    features = rewrite_features(source, answer)
    limits = thresholds().get(task)
    if limits is None or not answer.strip():
        return Verdict(bool(answer.strip()) or not source.strip(), "" if answer.strip() else "empty answer", features)
    if features.lead > limits["lead_max"]:
        return Verdict(False, f"{features.lead} words before the sentence (at most {limits['lead_max']:g})",
                       features)
    if features.trail > limits["trail_max"]:
        return Verdict(False, f"{features.trail} words after the sentence (at most {limits['trail_max']:g})",
                       features)
    if features.kept < limits["kept_min"] and features.dropped > limits["dropped_max"]:
        return Verdict(False, f"keeps {features.kept:.0%} of the sentence, {features.dropped} words dropped (limits "
                              f"{limits['kept_min']:.0%}, {limits['dropped_max']:g})", features)
    if features.added > limits["added_max"] and features.new > limits["new_max"]:
        return Verdict(False, f"{features.added:.0%} of the answer is new, {features.new} words (limits "
                              f"{limits['added_max']:.0%}, {limits['new_max']:g})", features)
    return Verdict(True, "", features)
