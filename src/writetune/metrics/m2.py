"""M2 F0.5 (MaxMatch) as the CoNLL-2014 M2 scorer (NUS M2Scorer 3.2) computes it, from tokenized hypotheses + gold M2.

For each sentence the hypothesis edits are not fixed in advance: MaxMatch builds an edit lattice from all optimal
token-level Levenshtein alignments of source and hypothesis (two cost settings, substitution cost 1 and 2, merged),
adds transitive arcs that merge adjacent edits spanning at most `max_unchanged_words` unchanged tokens, gives arcs
that equal a gold edit a large negative weight (other edits a small positive epsilon) and takes the shortest path:
the segmentation of the hypothesis' changes that overlaps most with that annotator's gold edits. With several
annotators, the one that maximises the running corpus F (ties: more correct, then fewer proposed + beta^2 * gold) is
chosen sentence by sentence, in file order.

This is a re-implementation of the scorer's documented and observed behaviour, including the details that move
counts: arcs present in both Levenshtein lattices are kept twice (their epsilons add up twice), transitive noop
arcs are removed while iterating over the arc list (so an arc right after a removed one survives), a matched
hypothesis edit is counted once per gold edit it equals, gold edits are matched in M2 order, P = 1 when nothing is
proposed and R = 1 when there is no gold edit. Per-segment statistics are the (correct, proposed, gold) counts for
every annotator, so resampling re-runs only the annotator choice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from writetune.data.m2format import M2Document, M2Sentence
from writetune.metrics.annotators import AnnotatorChoiceMetric, Counts
from writetune.metrics.base import Inputs, MetricInputError
from writetune.metrics.stats import SegmentStats

INF = float("inf")
EPSILON = 0.001
# Bounds on one sentence's work. The lattice of all optimal alignments grows combinatorially when a hypothesis
# shares little with its source (40 tokens with few in common: 600,000 arcs, 16 s, 400 MB; a 1,000-token line
# exhausts memory); the original scorer has the same blow-up and no bound. The largest lattice in the golden data
# (CWEB dev, the scorer's test cases) has 4,191 arcs and 16,129 alignment cells, so these bounds leave real system
# outputs untouched; a sentence beyond them is an error naming its line (about a second of work at most).
MAX_ALIGNMENT_CELLS = 250_000  # source tokens x hypothesis tokens (500 x 500)
MAX_LATTICE_ARCS = 100_000  # arcs of the lattice, transitive ones included
MAX_LATTICE_STEPS = 4_000_000  # arc pairs looked at while adding transitive arcs


class LatticeTooLarge(ValueError):
    """One sentence's edit lattice would exceed the bounds above; the message says which and by how much."""


class Edit(NamedTuple):
    """An edit as the scorer represents it: its kind (``noop``, ``sub``, ``del`` or ``ins``), the source token span
    it replaces, the original and corrected text, and how many unchanged source tokens it spans."""

    kind: str
    start: int
    end: int
    original: str
    correction: str
    unchanged: int


class GoldEdit(NamedTuple):
    """A gold edit as the scorer reads it: source token span, the original text and the accepted corrections."""

    start: int
    end: int
    original: str
    corrections: list[str]

    def matches(self, edit: Edit) -> bool:
        """The scorer's test: same span and original text, and the correction is one of the accepted ones."""
        return (edit.start == self.start and edit.end == self.end and edit.original == self.original
                and edit.correction in self.corrections)


Vertex = tuple[int, int]
Arc = tuple[Vertex, Vertex]


# --------------------------------------------------------------------------------------------------------------
# Gold edits as the M2 scorer reads them
# --------------------------------------------------------------------------------------------------------------


def gold_edits_by_annotator(sentence: M2Sentence) -> dict[int, list[GoldEdit]]:
    """The scorer's reading of one M2 block: annotator id -> [(start, end, original, [corrections])].

    A noop line (type ``noop`` or span -1 -1) registers its annotator with no edits; a block without any ``A``
    line counts as annotator 0 with no edits. Corrections are split on ``||``, stripped, and ``-NONE-`` means the
    empty string.
    """
    tokens = sentence.tokens
    out: dict[int, list[GoldEdit]] = {}
    for edit in sentence.edits:
        edits = out.setdefault(edit.coder, [])
        if edit.is_noop:
            continue
        corrections = [c.strip() if c != "-NONE-" else "" for c in edit.correction.split("||")]
        original = " ".join(tokens[edit.start : edit.end])
        edits.append(GoldEdit(edit.start, edit.end, original, corrections))
    if not out:
        out[0] = []
    return out


# --------------------------------------------------------------------------------------------------------------
# The edit lattice
# --------------------------------------------------------------------------------------------------------------

_SUB, _DEL, _INS = 1, 2, 4


def _backpointer_arcs(src: list[str], hyp: list[str], cost_sub: int) -> set[Arc]:
    """Arcs of the graph of all optimal Levenshtein alignments (ins/del cost 1), reachable from the end cell."""
    n, m = len(src), len(hyp)
    prev = list(range(m + 1))
    masks: list[bytearray] = [bytearray(m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        masks[0][j] = _INS
    for i in range(1, n + 1):
        cur = [i] + [0] * m
        row = masks[i]
        row[0] = _DEL
        s = src[i - 1]
        for j in range(1, m + 1):
            deletion = prev[j] + 1
            insertion = cur[j - 1] + 1
            substitution = prev[j - 1] if s == hyp[j - 1] else prev[j - 1] + cost_sub
            best = min(substitution, deletion, insertion)
            mask = 0
            if substitution == best:
                mask |= _SUB
            if deletion == best:
                mask |= _DEL
            if insertion == best:
                mask |= _INS
            row[j] = mask
            cur[j] = best
        prev = cur
    arcs: set[Arc] = set()
    seen = {(n, m)}
    stack = [(n, m)]
    while stack:
        v = stack.pop()
        i, j = v
        mask = masks[i][j]
        if mask & _SUB:
            u = (i - 1, j - 1)
            arcs.add((u, v))
            if u not in seen:
                seen.add(u)
                stack.append(u)
        if mask & _DEL:
            u = (i - 1, j)
            arcs.add((u, v))
            if u not in seen:
                seen.add(u)
                stack.append(u)
        if mask & _INS:
            u = (i, j - 1)
            arcs.add((u, v))
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return arcs


def _arc_edit(arc: Arc, src: list[str], hyp: list[str], first_row_insert_at_zero: bool) -> Edit:
    (i0, j0), (i1, j1) = arc
    if i1 == i0 + 1 and j1 == j0 + 1:
        a, b = src[i0], hyp[j0]
        return Edit("noop", i0, i1, a, b, 1) if a == b else Edit("sub", i0, i1, a, b, 0)
    if i1 == i0 + 1:
        return Edit("del", i0, i1, src[i0], "", 0)
    if i0 == 0 and not first_row_insert_at_zero:
        return Edit("ins", j0, j0, "", hyp[j0], 0)
    return Edit("ins", i0, i0, "", hyp[j0], 0)


def _merge_edits(e1: Edit, e2: Edit) -> Edit:
    """Combine two adjacent edits into one, as the scorer's transitive arcs do."""
    k1, k2 = e1.kind, e2.kind
    start, end, unchanged = e1.start, e2.end, e1.unchanged + e2.unchanged
    if k1 == "ins":
        if k2 == "ins":
            return Edit("ins", start, end, "", e1.correction + " " + e2.correction, unchanged)
        if k2 == "del":
            return Edit("sub", start, end, e2.original, e1.correction, unchanged)
        return Edit("sub", start, end, e2.original, e1.correction + " " + e2.correction, unchanged)  # sub or noop
    if k1 == "del":
        if k2 == "ins":
            return Edit("sub", start, end, e1.original, e2.correction, unchanged)
        if k2 == "del":
            return Edit("del", start, end, e1.original + " " + e2.original, "", unchanged)
        return Edit("sub", start, end, e1.original + " " + e2.original, e2.correction, unchanged)  # sub or noop
    # e1 is sub or noop
    original, correction = e1.original + " " + e2.original, e1.correction + " " + e2.correction
    if k2 == "ins":
        return Edit("sub", start, end, e1.original, correction, unchanged)
    if k2 == "del":
        return Edit("sub", start, end, original, e1.correction, unchanged)
    return Edit("noop" if k1 == "noop" and k2 == "noop" else "sub", start, end, original, correction, unchanged)


class Lattice:
    """The MaxMatch edit lattice of one (source, hypothesis) pair, shared by all annotators of the sentence."""

    __slots__ = ("vertices", "arcs", "dist", "edits")

    def __init__(
        self, src: list[str], hyp: list[str], max_unchanged_words: int = 2, first_row_insert_at_zero: bool = True
    ):
        if len(src) * len(hyp) > MAX_ALIGNMENT_CELLS:
            raise LatticeTooLarge(self._too_large(src, hyp, f"{MAX_ALIGNMENT_CELLS:,} alignment cells"))
        arcs1 = _backpointer_arcs(src, hyp, 1)
        arcs2 = _backpointer_arcs(src, hyp, 2)
        if len(arcs1) + len(arcs2) > MAX_LATTICE_ARCS:
            raise LatticeTooLarge(self._too_large(src, hyp, f"{MAX_LATTICE_ARCS:,} arcs"))
        vertices = sorted({v for arc in arcs1 for v in arc} | {v for arc in arcs2 for v in arc} | {(0, 0)})
        # Arcs found in both lattices are listed twice, as the scorer's merge does.
        arcs: list[Arc] = sorted(list(arcs1) + list(arcs2))
        edits: dict[Arc, Edit] = {}
        dist: dict[Arc, float] = {}
        succ: dict[Vertex, set[Vertex]] = {v: set() for v in vertices}
        pred: dict[Vertex, set[Vertex]] = {v: set() for v in vertices}
        for arc in arcs:
            if arc not in edits:
                edits[arc] = _arc_edit(arc, src, hyp, first_row_insert_at_zero)
                dist[arc] = 1
                succ[arc[0]].add(arc[1])
                pred[arc[1]].add(arc[0])
        # Transitive arcs, in the scorer's k, i, j vertex order (vertices sorted).
        steps = 0
        for vk in vertices:
            preds = sorted(pred[vk])
            if not preds:
                continue
            succs = sorted(succ[vk])
            if not succs:
                continue
            steps += len(preds) * len(succs)
            if steps > MAX_LATTICE_STEPS:
                raise LatticeTooLarge(self._too_large(src, hyp, f"{MAX_LATTICE_STEPS:,} steps"))
            for vi in preds:
                eik = edits[(vi, vk)]
                dik = dist[(vi, vk)]
                for vj in succs:
                    dkj = dist[(vk, vj)]
                    key = (vi, vj)
                    if dik + dkj < dist.get(key, INF):
                        eij = _merge_edits(eik, edits[(vk, vj)])
                        if eij.unchanged <= max_unchanged_words:
                            if len(arcs) >= MAX_LATTICE_ARCS:
                                raise LatticeTooLarge(self._too_large(src, hyp, f"{MAX_LATTICE_ARCS:,} arcs"))
                            arcs.append(key)
                            dist[key] = dik + dkj
                            edits[key] = eij
                            succ[vi].add(vj)
                            pred[vj].add(vi)
        # Remove transitive noop arcs the way the scorer does: list.remove while iterating the same list, so the
        # arc that follows a removed one is not looked at.
        i = 0
        while i < len(arcs):
            arc = arcs[i]
            edit = edits.get(arc)
            if edit is None:
                # A later duplicate of an arc removed above (the reference scorer raises KeyError here).
                del arcs[i]
                continue
            if edit.kind == "noop" and dist[arc] > 1:
                arcs.remove(arc)
                dist[arc] = INF
                del edits[arc]
            i += 1
        self.vertices = vertices
        self.arcs = arcs
        self.dist = dist
        self.edits = edits

    @staticmethod
    def _too_large(src: list[str], hyp: list[str], bound: str) -> str:
        return (f"its edit lattice would exceed {bound} ({len(src)} source, {len(hyp)} hypothesis tokens): the "
                "hypothesis shares too little with the source for MaxMatch to align it")

    def weights(self, gold: list[GoldEdit]) -> dict[Arc, float]:
        """Arc weights for one annotator: gold-matching arcs -len(arcs), other edit arcs +epsilon."""
        arcs, edits = self.arcs, self.edits
        weights = dict(self.dist)
        groups: dict[tuple[int, int], list[Arc]] = {}
        for arc in arcs:
            e = edits[arc]
            groups.setdefault((e.start, e.end), []).append(arc)
        gold_groups: dict[tuple[int, int], list[GoldEdit]] = {}
        for g in gold:
            gold_groups.setdefault((g.start, g.end), []).append(g)
        negative = -len(arcs)
        for key in sorted(groups):
            group = sorted(groups[key])
            golds = gold_groups.get(key, [])
            if key[0] == key[1]:
                # Insertions at one position: match arcs and gold edits from both ends inwards.
                lptr, rptr, cur = 0, len(group) - 1, 0
                g_lptr, g_rptr = 0, len(golds) - 1
                while lptr <= rptr:
                    arc = group[cur]
                    e = edits[arc]
                    matched = False
                    order = range(g_lptr, g_rptr + 1) if cur == lptr else reversed(range(g_lptr, g_rptr + 1))
                    for gi in order:
                        if golds[gi].matches(e):
                            matched = True
                            weights[arc] = negative
                            if cur == lptr:
                                g_lptr = gi + 1
                            else:
                                g_rptr = gi - 1
                            break
                    if not matched and e.kind != "noop":
                        weights[arc] += EPSILON
                    if matched:
                        if cur == lptr:
                            lptr += 1
                            while lptr < len(group) and group[lptr][0] != group[cur][1]:
                                weights[group[lptr]] += EPSILON
                                lptr += 1
                            cur = lptr
                        else:
                            rptr -= 1
                            while rptr >= 0 and group[rptr][1] != group[cur][0]:
                                weights[group[rptr]] += EPSILON
                                rptr -= 1
                            cur = rptr
                    elif cur == lptr:
                        lptr += 1
                        cur = rptr
                    else:
                        rptr -= 1
                        cur = lptr
            else:
                for arc in group:
                    e = edits[arc]
                    matched = False
                    for g in golds:
                        if g.matches(e):
                            matched = True
                            weights[arc] = negative
                            break
                    if not matched and e.kind != "noop":
                        weights[arc] += EPSILON
        return weights

    def best_edit_sequence(self, weights: dict[Arc, float]) -> list[Edit]:
        """Shortest path (Bellman-Ford in the scorer's arc order): its edits other than noops, from the sentence
        end backwards."""
        vertices, arcs = self.vertices, self.arcs
        distance = dict.fromkeys(vertices, INF)
        distance[(0, 0)] = 0
        path: dict[Vertex, Vertex] = {}
        for _ in range(len(vertices) - 1):
            changed = False
            for arc in arcs:
                v, w = arc
                d = distance[v] + weights[arc]
                if d < distance[w]:
                    distance[w] = d
                    path[w] = v
                    changed = True
            if not changed:
                break
        v = vertices[-1]
        sequence = []
        while v in path:
            u = path[v]
            e = self.edits[(u, v)]
            if e.kind != "noop":
                sequence.append(e)
            v = u
        return sequence


def match_sequence(edit_seq: list[Edit], gold: list[GoldEdit]) -> int:
    """Correct edits: scan gold edits in M2 order from the last match on; an edit counts once per equal gold edit."""
    correct = 0
    last = 0
    for e in reversed(edit_seq):
        for gi in range(last, len(gold)):
            if gold[gi].matches(e):
                correct += 1
                last = gi + 1
    return correct


def _equals_ignore_whitespace_casing(a: str, b: str) -> bool:
    return a.replace(" ", "").lower() == b.replace(" ", "").lower()


def unaligned_counts(golds: dict[int, list[GoldEdit]]) -> list[Counts]:
    """The counts of a sentence whose hypothesis MaxMatch cannot align within the lattice bounds (it shares too
    little with its source): the whole rewrite is one proposed edit, and it is not correct."""
    return [(0, 1, len(golds[annotator])) for annotator in sorted(golds)]


def sentence_counts(
    source: str,
    hypothesis: str,
    golds: dict[int, list[GoldEdit]],
    max_unchanged_words: int = 2,
    ignore_whitespace_casing: bool = False,
    first_row_insert_at_zero: bool = True,
) -> list[Counts]:
    """(correct, proposed, gold) for every annotator of one sentence, annotators in id order."""
    src = source.split()
    hyp = hypothesis.split()
    if src == hyp:
        # The only optimal alignment is the diagonal of noops, so the scorer proposes nothing.
        return [(0, 0, len(golds[annotator])) for annotator in sorted(golds)]
    lattice = Lattice(src, hyp, max_unchanged_words, first_row_insert_at_zero)
    out = []
    for annotator in sorted(golds):
        gold = golds[annotator]
        seq = lattice.best_edit_sequence(lattice.weights(gold))
        if ignore_whitespace_casing:
            seq = [e for e in seq if not _equals_ignore_whitespace_casing(e.original, e.correction)]
        out.append((match_sequence(seq, gold), len(seq), len(gold)))
    return out


# --------------------------------------------------------------------------------------------------------------
# Corpus aggregation: best annotator per sentence on the running totals
# --------------------------------------------------------------------------------------------------------------


def _comp_f(c: float, proposed: float, gold: float, beta: float) -> float:
    denominator = beta * beta * gold + proposed
    if denominator == 0:
        return 1.0 if c == 0 else 0.0
    return (1 + beta * beta) * c / denominator


def prf(correct: float, proposed: float, gold: float, beta: float) -> tuple[float, float, float]:
    """The scorer's final P, R, F: P = 1 when nothing is proposed, R = 1 when there is no gold edit."""
    p = correct / proposed if proposed else 1.0
    r = correct / gold if gold else 1.0
    denominator = beta * beta * p + r
    f = (1.0 + beta * beta) * p * r / denominator if denominator else 0.0
    return p, r, f


def choose_annotators(cand: np.ndarray, valid: np.ndarray, beta: float) -> tuple[float, float, float]:
    """Walk the sentences in order and add, for each, the annotator maximising the running F (exact, scalar)."""
    b2 = beta * beta
    sc = sp = sg = 0.0
    for i in range(cand.shape[0]):
        f_max, c_max, p_min, g_min = -1.0, -1.0, INF, INF
        add = (0.0, 0.0, 0.0)
        for a in range(cand.shape[1]):
            if not valid[i, a]:
                continue
            c, p, g = (float(x) for x in cand[i, a])
            lc, lp, lg = sc + c, sp + p, sg + g
            f = _comp_f(lc, lp, lg, beta)
            if (
                f_max < f
                or (f_max == f and c_max < lc)
                or (f_max == f and c_max == lc and p_min + b2 * g_min > lp + b2 * lg)
            ):
                f_max, c_max, p_min, g_min = f, lc, lp, lg
                add = (c, p, g)
        sc += add[0]
        sp += add[1]
        sg += add[2]
    return sc, sp, sg


def choose_annotators_many(cand: np.ndarray, valid: np.ndarray, indices: np.ndarray, beta: float) -> np.ndarray:
    """`choose_annotators` for many resampled corpora at once; returns totals of shape (B, 3)."""
    b2 = beta * beta
    n_rows = indices.shape[0]
    totals = np.zeros((n_rows, 3))
    for t in range(indices.shape[1]):
        rows = indices[:, t]
        f_max = np.full(n_rows, -1.0)
        c_max = np.full(n_rows, -1.0)
        pg_min = np.full(n_rows, INF)
        add = np.zeros((n_rows, 3))
        for a in range(cand.shape[1]):
            ok = valid[rows, a]
            if not ok.any():
                continue
            local = totals + cand[rows, a]
            lc, lp, lg = local[:, 0], local[:, 1], local[:, 2]
            denominator = b2 * lg + lp
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(denominator == 0, np.where(lc == 0, 1.0, 0.0), (1 + b2) * lc / denominator)
            pg = lp + b2 * lg
            better = ok & ((f_max < f) | ((f_max == f) & (c_max < lc)) | ((f_max == f) & (c_max == lc) & (pg_min > pg)))
            f_max = np.where(better, f, f_max)
            c_max = np.where(better, lc, c_max)
            pg_min = np.where(better, pg, pg_min)
            add = np.where(better[:, None], cand[rows, a], add)
        totals = totals + add
    return totals


class M2Score(AnnotatorChoiceMetric):
    """M2 F0.5 (MaxMatch), faithful to the CoNLL-2014 M2 scorer."""

    name = "m2"
    label = "M2 F0.5"
    needs_gold = True

    def __init__(
        self,
        beta: float = 0.5,
        max_unchanged_words: int = 2,
        ignore_whitespace_casing: bool = False,
        first_row_insert_at_zero: bool = True,
    ):
        self.beta = beta
        self.max_unchanged_words = max_unchanged_words
        self.ignore_whitespace_casing = ignore_whitespace_casing
        self.first_row_insert_at_zero = first_row_insert_at_zero

    def check_inputs(self, inputs: Inputs) -> None:
        super().check_inputs(inputs)
        if not isinstance(inputs.gold, M2Document):
            raise MetricInputError(f"{self.name}: the gold edits must be an M2Document (see writetune.metrics.read_m2)")

    def n_refs(self, inputs: Inputs) -> int | None:
        return max(len(gold_edits_by_annotator(s)) for s in inputs.gold)

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        per_sentence = []
        for hyp, sentence in zip(inputs.hyps, inputs.gold):
            golds = gold_edits_by_annotator(sentence)
            try:
                counts = sentence_counts(
                    sentence.source,
                    hyp.strip(),
                    golds,
                    self.max_unchanged_words,
                    self.ignore_whitespace_casing,
                    self.first_row_insert_at_zero,
                )
            except LatticeTooLarge:
                counts = unaligned_counts(golds)
            per_sentence.append(counts)
        return self.stats_from_counts(per_sentence)

    def choose(self, cand: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
        return choose_annotators(cand, valid, self.beta)

    def choose_many(self, cand: np.ndarray, valid: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return choose_annotators_many(cand.astype(np.float64), valid, indices, self.beta)

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        correct, proposed, gold = (float(x) for x in self.totals(stats))
        p, r, f = prf(correct, proposed, gold, self.beta)
        return 100.0 * f, {
            "P": 100.0 * p,
            "R": 100.0 * r,
            f"F{self.beta:g}": 100.0 * f,
            "correct": int(correct),
            "proposed": int(proposed),
            "gold": int(gold),
        }

    def f_scores(self, totals: np.ndarray) -> np.ndarray:
        c, p, g = totals[:, 0], totals[:, 1], totals[:, 2]
        b2 = self.beta * self.beta
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(p > 0, c / p, 1.0)
            rec = np.where(g > 0, c / g, 1.0)
            den = b2 * prec + rec
            f = np.where(den > 0, (1.0 + b2) * prec * rec / den, 0.0)
        return 100.0 * f

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {
            "impl": "maxmatch(m2scorer-3.2 semantics)",
            "tok": "whitespace(pre-tokenized)",
            "annotators": n_refs if n_refs is not None else "?",
            "beta": f"{self.beta:g}",
            "max_unchanged": self.max_unchanged_words,
            "ws_case": "ignored" if self.ignore_whitespace_casing else "kept",
        }
