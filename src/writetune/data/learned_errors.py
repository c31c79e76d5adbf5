"""Grammatical errors learned from real corrections, and an injector that writes them into clean sentences.

`ErrorPatterns` is what is learned from the edits of grammar corpora (`patterns_from_m2`: the annotated edits of M2
files; `patterns_from_pairs`: the edits ERRANT extracts from each source/reference pair): per ERRANT type, how
often each edit occurs (`wrong` tokens → `right` tokens) and how many edits a corrected sentence has.
`LearnedErrorInjector` inverts them: it turns a clean sentence into one with errors by applying `right` → `wrong` where the clean sentence holds
`right` (a missing word, ERRANT's `M:`, is deleted; an unnecessary one, `U:`, is inserted before the word that
follows it in the corrections), with the number of errors drawn from the real per-sentence counts and the types
drawn from the real type distribution among those that apply. Word-specific misspellings rarely apply to another
sentence, so `R:SPELL` errors are character-level misspellings (`synth.ErrorInjector`'s spelling operation).

Determinism is by construction: a sentence's random stream is a hash of the seed and its key, and the learned
tables are sorted before use.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from writetune.data.m2format import M2Document
from writetune.data.synth import ErrorInjector, Injection
from writetune.data.tokenization import detokenize, tokenize_ptb

MAX_EDIT_TOKENS = 3  # longer edits are rewrites, not error patterns
_QUOTES = {'"', "'", "`", "``", "''", "“", "”", "‘", "’"}  # quote edits would re-pair the quotes around them
SPELLING = "R:SPELL"


@dataclass(frozen=True, order=True)
class ErrorPattern:
    """One kind of edit: its ERRANT type, the erroneous tokens, the corrected tokens, and (for an unnecessary word)
    the corrected-side token that follows it, where the inverse puts the word back."""

    type: str
    wrong: tuple[str, ...]
    right: tuple[str, ...]
    before: str = ""


@dataclass
class ErrorPatterns:
    """Edit counts and per-sentence edit counts learned from corrections."""

    counts: Counter = field(default_factory=Counter)  # ErrorPattern -> occurrences
    density: Counter = field(default_factory=Counter)  # edits in a corrected sentence (>= 1) -> sentences
    sentences: int = 0  # corrections read, changed or not

    def add_sentence(self, tokens: Sequence[str], edits: Iterable[tuple[int, int, str, str]]) -> None:
        """One correction of a tokenized sentence: its edits as (start, end, type, corrected text)."""
        self.sentences += 1
        n = 0
        for start, end, kind, correction in edits:
            wrong = tuple(tokens[start:end])
            right = tuple(correction.split())
            if wrong == right or len(wrong) > MAX_EDIT_TOKENS or len(right) > MAX_EDIT_TOKENS:
                continue
            if _QUOTES & {*wrong, *right}:
                continue
            n += 1
            before = tokens[end] if not right and end < len(tokens) else ""
            if not right and not before:
                continue  # an unnecessary sentence-final token: nowhere to anchor its inverse
            self.counts[ErrorPattern(kind, wrong, right, before)] += 1
        if n:
            self.density[n] += 1

    def to_json(self) -> str:
        counts = [[p.type, list(p.wrong), list(p.right), p.before, n] for p, n in sorted(self.counts.items())]
        return json.dumps({"sentences": self.sentences, "density": sorted(self.density.items()), "counts": counts})

    @classmethod
    def from_json(cls, text: str) -> "ErrorPatterns":
        data = json.loads(text)
        counts = Counter({ErrorPattern(t, tuple(w), tuple(r), b): n for t, w, r, b, n in data["counts"]})
        return cls(counts, Counter({int(k): v for k, v in data["density"]}), data["sentences"])

    def pruned(self, min_count: int) -> "ErrorPatterns":
        """The same tables without the patterns seen fewer than `min_count` times (one-off rewrites)."""
        kept = Counter({p: n for p, n in self.counts.items() if n >= min_count})
        return ErrorPatterns(kept, Counter(self.density), self.sentences)

    def type_counts(self) -> Counter:
        out: Counter = Counter()
        for pattern, n in self.counts.items():
            out[pattern.type] += n
        return out

    def summary(self, top: int = 12) -> dict:
        """What the manifest records: sentences read, changed, edits, the type distribution and edits per sentence."""
        types = self.type_counts()
        total = sum(types.values())
        return {
            "sentences": self.sentences,
            "changed": sum(self.density.values()),
            "edits": total,
            "patterns": len(self.counts),
            "types": {t: round(n / total, 4) for t, n in sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))[:top]},
            "edits_per_changed_sentence": dict(sorted(self.density.items())),
        }


def patterns_from_m2(document: M2Document, patterns: ErrorPatterns, *, skip: set[int] = frozenset()) -> None:
    """The annotated edits of every annotator of every block (blocks whose line is in `skip` are left out)."""
    for sentence in document:
        if sentence.line in skip:
            continue
        tokens = sentence.tokens
        by_coder: dict[int, list[tuple[int, int, str, str]]] = {}
        for edit in sentence.edits:
            edits = by_coder.setdefault(edit.coder, [])
            if not edit.is_noop and edit.type != "UNK":
                edits.append((edit.start, edit.end, edit.type, "" if edit.correction == "-NONE-" else edit.correction))
        for edits in by_coder.values():
            patterns.add_sentence(tokens, edits)


def patterns_from_pairs(pairs: Iterable[tuple[str, Sequence[str]]], patterns: ErrorPatterns) -> None:
    """Edits ERRANT extracts from tokenized (source, corrections) pairs; a correction equal to its source counts as
    a sentence without edits and is not parsed."""
    # upward import, listed in tests/test_layers.py (KNOWN_UPWARD)
    from writetune.metrics.errant_f05 import extract_edits, load_annotator

    annotator = load_annotator()
    cache: dict = {}
    for source, corrections in pairs:
        tokens = source.split()
        changed = [c for c in corrections if c.split() != tokens]
        patterns.sentences += len(corrections) - len(changed)
        if not changed:
            continue
        by_coder: dict[int, list[tuple[int, int, str, str]]] = {k: [] for k in range(len(changed))}
        for start, end, kind, correction, coder in extract_edits(annotator, source, changed, cache):
            if start >= 0 and kind not in ("noop", "UNK"):
                by_coder[coder].append((start, end, kind, "" if correction == "-NONE-" else correction))
        for edits in by_coder.values():
            patterns.add_sentence(tokens, edits)


class LearnedErrorInjector:
    """Writes learned errors into clean sentences (see the module docstring)."""

    def __init__(self, patterns: ErrorPatterns, *, seed: int = 0, max_errors: int = 4):
        if not patterns.counts or not patterns.density:
            raise ValueError("no error patterns were learned (the edit sources hold no corrections)")
        self.seed = seed
        self.max_errors = max_errors
        self.density = sorted((n, c) for n, c in patterns.density.items() if n <= max_errors) or [(1, 1)]
        self.type_weights = dict(sorted(patterns.type_counts().items()))
        # patterns by the token where they apply: the first corrected token, or the one an unnecessary word precedes
        self.by_anchor: dict[str, list[tuple[ErrorPattern, int]]] = {}
        for pattern, count in sorted(patterns.counts.items()):
            anchor = pattern.right[0] if pattern.right else pattern.before
            self.by_anchor.setdefault(anchor, []).append((pattern, count))
        self._misspell = ErrorInjector(1.0, seed=seed, types=("spelling",), min_errors=1)

    def corrupt(self, sentence: str, *, key: str) -> Injection | None:
        """The sentence with errors, or None when it cannot take any (or its tokens do not round-trip to it, which
        would add differences that are not errors)."""
        plain = " ".join(sentence.split())
        tokens = tokenize_ptb(plain).split()
        if not tokens or detokenize(" ".join(tokens)) != plain:
            return None
        rng = random.Random(f"{self.seed}\x00learned\x00{key}")
        wanted = rng.choices([n for n, _ in self.density], weights=[c for _, c in self.density])[0]
        touched: set[int] = set()
        applied: list[str] = []
        for _ in range(wanted):
            options = self._candidates(tokens, touched)
            if not options:
                break
            kinds = list(options)
            kind = rng.choices(kinds, weights=[self.type_weights[t] for t in kinds])[0]
            pattern, position, _ = rng.choices(options[kind], weights=[w for _, _, w in options[kind]])[0]
            touched = self._apply(pattern, position, tokens, touched, key)
            applied.append(kind)
        text = detokenize(" ".join(tokens))
        if not applied or text == plain or tokenize_ptb(text).split() != tokens:
            return None  # nothing applied, or the text would not read back as the tokens that carry the errors
        return Injection(text, tuple(applied))

    def _candidates(self, tokens: list[str], touched: set[int]) -> dict[str, list[tuple[ErrorPattern, int, int]]]:
        """Per type, the (pattern, position, weight) triples that apply to `tokens` away from earlier errors."""
        out: dict[str, list[tuple[ErrorPattern, int, int]]] = {}
        for i, token in enumerate(tokens):
            if i in touched:
                continue
            if SPELLING in self.type_weights and len(token) >= 4 and token.isalpha():
                out.setdefault(SPELLING, []).append((ErrorPattern(SPELLING, (), (token,)), i, 1))
            for pattern, count in self.by_anchor.get(token, ()):
                if pattern.type == SPELLING:
                    continue
                width = len(pattern.right)
                if width:
                    if tuple(tokens[i:i + width]) == pattern.right and touched.isdisjoint(range(i, i + width)):
                        out.setdefault(pattern.type, []).append((pattern, i, count))
                elif i - 1 not in touched:
                    out.setdefault(pattern.type, []).append((pattern, i, count))
        return out

    def _apply(self, pattern: ErrorPattern, i: int, tokens: list[str], touched: set[int], key: str) -> set[int]:
        """Write the inverse of `pattern` at position `i` (in place); the positions touched so far, shifted."""
        if pattern.type == SPELLING:
            tokens[i] = self._misspell.corrupt(tokens[i], key=f"{key}\x00{i}").text
            return touched | {i}
        width = len(pattern.right)
        tokens[i:i + width] = pattern.wrong
        delta = len(pattern.wrong) - width
        shifted = {j if j < i else j + delta for j in touched}
        if pattern.wrong:
            return shifted | set(range(i, i + len(pattern.wrong)))
        return shifted | {i - 1, i}  # a deleted word: keep its neighbours as they are
