"""SARI as EASSE computes it by default (corpus-level, lowercase, sacreBLEU 13a tokenizer, F1 for deletion).

Every segment is lowercased and tokenized with sacreBLEU's 13a tokenizer. For n-gram orders 1-4 the ADD, KEEP and
DELETE statistics are summed over the corpus and only then turned into P/R/F1 (EASSE's default, not the average of
sentence scores that other SARI packages report). ADD counts n-grams as sets (added by the system, not in the
source, found in the union of the references); KEEP and DELETE use counts, with the source and system counts
multiplied by the number of references and compared with the summed reference counts. ADD, KEEP and DELETE all use
F1 (EASSE's ``use_f1_for_deletion=True``; the paper's DELETE precision is available as an option). An F1 whose
precision or recall is 0 counts as 0. SARI = (ADD + KEEP + DELETE) / 3 on a 0-100 scale.

Per-segment statistics: for each order, (correct, system total, reference total) of ADD, KEEP and DELETE, i.e. 36
integers per segment.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

import numpy as np
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from writetune.metrics.base import Inputs, Metric
from writetune.metrics.stats import SegmentStats, counts_matrix

NGRAM_ORDER = 4


@lru_cache(maxsize=1)
def _tokenizer_13a():
    return Tokenizer13a()


@lru_cache(maxsize=1 << 18)
def normalize(text: str, lowercase: bool = True, tokenizer: str = "13a") -> str:
    """EASSE's `normalize`: lowercase first, then tokenize (13a or none)."""
    if lowercase:
        text = text.lower()
    if tokenizer == "13a":
        return _tokenizer_13a()(text)
    if tokenizer == "none":
        return text
    raise ValueError(f"unknown tokenizer {tokenizer!r} (expected '13a' or 'none')")


def extract_ngrams(tokens: list[str]) -> list[Counter]:
    """Counts of the n-grams of orders 1-4. EASSE keys n-grams by their space-joined string; tokens contain no
    spaces, so token tuples are the same keys."""
    return [Counter(zip(*(tokens[i:] for i in range(n)))) for n in range(1, NGRAM_ORDER + 1)]


def segment_ngram_stats(source: str, system: str, references: list[str]) -> np.ndarray:
    """Statistics of one (normalized) segment: array (3 operations, 3 quantities, 4 orders).

    Quantities are (system correct, system total, reference total) for ADD, KEEP and DELETE in that order. This is
    EASSE's `compute_ngram_stats` for one segment, with its Counter arithmetic written out per n-gram: with R
    references, source and system counts are multiplied by R (``&`` is the minimum, ``-`` the positive difference).
    """
    out = np.zeros((3, 3, NGRAM_ORDER), dtype=np.int64)
    src_ngrams = extract_ngrams(source.split())
    sys_ngrams = extract_ngrams(system.split())
    refs_ngrams = [Counter() for _ in range(NGRAM_ORDER)]
    for ref in references:
        tokens = ref.split()
        for n in range(NGRAM_ORDER):
            refs_ngrams[n].update(zip(*(tokens[i:] for i in range(n + 1))))
    num_refs = len(references)
    for n in range(NGRAM_ORDER):
        src, hyp, refs = src_ngrams[n], sys_ngrams[n], refs_ngrams[n]
        # ADD (binary): added by the system / by the references, and added correctly.
        add_sys = [g for g in hyp if g not in src]
        out[0, 1, n] = len(add_sys)
        out[0, 2, n] = sum(1 for g in refs if g not in src)
        out[0, 0, n] = sum(1 for g in add_sys if g in refs)
        keep_sys = keep_ref = keep_ok = del_sys = del_ref = del_ok = 0
        for g, count in src.items():
            weighted = count * num_refs
            in_sys = hyp.get(g, 0) * num_refs
            in_refs = refs.get(g, 0)
            # KEEP: source & system, source & references, and their intersection.
            kept_sys = min(weighted, in_sys)
            kept_ref = min(weighted, in_refs)
            keep_sys += kept_sys
            keep_ref += kept_ref
            keep_ok += min(kept_sys, kept_ref)
            # DELETE: source - system, source - references, and their intersection.
            deleted_sys = max(weighted - in_sys, 0)
            deleted_ref = max(weighted - in_refs, 0)
            del_sys += deleted_sys
            del_ref += deleted_ref
            del_ok += min(deleted_sys, deleted_ref)
        out[1, :, n] = (keep_ok, keep_sys, keep_ref)
        out[2, :, n] = (del_ok, del_sys, del_ref)
    return out


def _prf(correct: np.ndarray, sys_total: np.ndarray, ref_total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and F1 (elementwise; 0 where undefined), as EASSE's compute_precision_recall_f1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(sys_total > 0, correct / sys_total, 0.0)
        recall = np.where(ref_total > 0, correct / ref_total, 0.0)
        f1 = np.where((precision > 0) & (recall > 0), 2 * precision * recall / (precision + recall), 0.0)
    return precision, f1


def operation_scores(totals: np.ndarray, use_f1_for_deletion: bool = True) -> np.ndarray:
    """(..., 3, 3, 4) summed statistics -> (..., 3) ADD, KEEP, DELETE scores on a 0-100 scale."""
    totals = totals.astype(np.float64)
    precision, f1 = _prf(totals[..., 0, :], totals[..., 1, :], totals[..., 2, :])
    add = f1[..., 0, :].sum(axis=-1) / NGRAM_ORDER
    keep = f1[..., 1, :].sum(axis=-1) / NGRAM_ORDER
    dele = (f1 if use_f1_for_deletion else precision)[..., 2, :].sum(axis=-1) / NGRAM_ORDER
    return 100.0 * np.stack([add, keep, dele], axis=-1)


class Sari(Metric):
    """SARI, EASSE's corpus-level default."""

    name = "sari"
    label = "SARI"
    needs_source = True
    needs_refs = True

    def __init__(self, lowercase: bool = True, tokenizer: str = "13a", use_f1_for_deletion: bool = True):
        self.lowercase = lowercase
        self.tokenizer = tokenizer
        self.use_f1_for_deletion = use_f1_for_deletion
        normalize("", lowercase, tokenizer)  # validate the tokenizer name early

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        def norm(text: str) -> str:
            return normalize(text.strip(), self.lowercase, self.tokenizer)

        rows = []
        for i, (src, hyp) in enumerate(zip(inputs.sources, inputs.hyps)):
            refs = [norm(stream[i]) for stream in inputs.refs]
            rows.append(segment_ngram_stats(norm(src), norm(hyp), refs).reshape(-1))
        return SegmentStats({"ngrams": np.array(rows, dtype=np.int64)}, len(rows), {"n_refs": len(inputs.refs)})

    def _from_totals(self, totals: np.ndarray) -> np.ndarray:
        ops = operation_scores(totals.reshape(totals.shape[:-1] + (3, 3, NGRAM_ORDER)), self.use_f1_for_deletion)
        return ops

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        totals = stats["ngrams"].sum(axis=0)
        add, keep, dele = (float(x) for x in self._from_totals(totals))
        return (add + keep + dele) / 3, {"add": add, "keep": keep, "del": dele}

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        totals = counts_matrix(indices, stats.n) @ stats["ngrams"].astype(np.float64)
        return self._from_totals(totals).sum(axis=-1) / 3

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {
            "impl": "easse-corpus_sari(6a4352e semantics)",
            "case": "lc" if self.lowercase else "mixed",
            "tok": self.tokenizer,
            "nrefs": n_refs,
            "del": "f1" if self.use_f1_for_deletion else "precision",
        }

    def signature_versions(self) -> tuple[str, ...]:
        return (sacrebleu_version(),)


def sacrebleu_version() -> str:
    """The installed sacreBLEU (its 13a tokenizer and BLEU), as signatures name it."""
    return f"sacrebleu-{sacrebleu.__version__}"
