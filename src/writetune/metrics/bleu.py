"""Corpus BLEU as EASSE reports it (sacreBLEU on lowercased, 13a-tokenized text), plus self-BLEU and iBLEU.

* ``bleu``: EASSE's `corpus_bleu` default: every segment is lowercased and 13a-tokenized first, then sacreBLEU
  scores it with ``BLEU(lowercase=False, force=True, tokenize="none", smooth_method="exp")``. Multi-reference.
* ``self_bleu``: the same BLEU of the outputs against their *source* as the only reference: how much of the input a
  paraphrase copies (lower is more diverse; 100 for a system that copies its input).
* ``ibleu``: Sun & Zhou's (2012) iBLEU = alpha * BLEU(output, references) - (1 - alpha) * BLEU(output, source),
  alpha = 0.8 unless set (the value is part of the signature).

Per-segment statistics are sacreBLEU's own (hypothesis length, closest reference length, matches and totals for
orders 1-4), so the corpus score is sacreBLEU's `_compute_score_from_stats` of their sum.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from sacrebleu.metrics.bleu import BLEU

from writetune.metrics.base import Inputs, Metric
from writetune.metrics.sari import normalize, sacrebleu_version
from writetune.metrics.stats import SegmentStats, counts_matrix

DEFAULT_IBLEU_ALPHA = 0.8


def _sacrebleu_bleu():
    return BLEU(lowercase=False, force=True, tokenize="none", smooth_method="exp")


@lru_cache(maxsize=4)
def _scorer_with_references(refs: tuple[tuple[str, ...], ...]):
    """A sacreBLEU BLEU holding the pre-processed references (n-grams, lengths), so that several systems scored
    against the same references pay for that once. Keyed by the normalized reference streams themselves."""
    return BLEU(lowercase=False, force=True, tokenize="none", smooth_method="exp", references=[list(r) for r in refs])


class _BleuStats:
    """Extracts BLEU segment statistics of normalized text and turns summed statistics into BLEU."""

    def __init__(self, lowercase: bool = True, tokenizer: str = "13a"):
        self.lowercase = lowercase
        self.tokenizer = tokenizer
        self.scorer = _sacrebleu_bleu()

    def norm(self, text: str) -> str:
        return normalize(text.strip(), self.lowercase, self.tokenizer)

    def segment_stats(self, hyps: list[str], ref_streams: list[list[str]]) -> np.ndarray:
        hyps_n = [self.norm(h) for h in hyps]
        refs_n = tuple(tuple(self.norm(r) for r in stream) for stream in ref_streams)
        scorer = _scorer_with_references(refs_n)
        return np.array(scorer._extract_corpus_statistics(hyps_n, None), dtype=np.int64)

    def score(self, totals: np.ndarray):
        return self.scorer._compute_score_from_stats([int(x) for x in totals])

    def scores(self, totals: np.ndarray) -> np.ndarray:
        return np.array([self.score(row).score for row in np.atleast_2d(totals)], dtype=np.float64)

    @staticmethod
    def components(bleu_score) -> dict[str, Any]:
        return {
            "counts": list(bleu_score.counts),
            "totals": list(bleu_score.totals),
            "precisions": list(bleu_score.precisions),
            "bp": bleu_score.bp,
            "sys_len": bleu_score.sys_len,
            "ref_len": bleu_score.ref_len,
        }

    def signature_fields(self) -> dict[str, object]:
        return {
            "impl": "sacrebleu-BLEU(easse corpus_bleu semantics)",
            "case": "lc" if self.lowercase else "mixed",
            "tok": self.tokenizer,
            "smooth": "exp",
        }


class _SacreBleuMetric(Metric):
    """A metric scored with sacreBLEU's BLEU on EASSE-normalised text (`stats`); its signature names sacreBLEU."""

    def __init__(self, lowercase: bool = True, tokenizer: str = "13a"):
        self.stats = _BleuStats(lowercase, tokenizer)

    def signature_versions(self) -> tuple[str, ...]:
        return (sacrebleu_version(),)


class Bleu(_SacreBleuMetric):
    """Corpus BLEU against the references (EASSE's normalisation)."""

    name = "bleu"
    label = "BLEU"
    needs_refs = True

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        return SegmentStats(
            {"bleu": self.stats.segment_stats(inputs.hyps, inputs.refs)}, len(inputs.hyps), {"n_refs": len(inputs.refs)}
        )

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        result = self.stats.score(stats["bleu"].sum(axis=0))
        return result.score, self.stats.components(result)

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        return self.stats.scores(counts_matrix(indices, stats.n) @ stats["bleu"].astype(np.float64))

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {**self.stats.signature_fields(), "nrefs": n_refs}


class SelfBleu(_SacreBleuMetric):
    """BLEU of the outputs against their source (copying; lower = more diverse)."""

    name = "self_bleu"
    label = "self-BLEU"
    higher_is_better = False
    needs_source = True

    def n_refs(self, inputs: Inputs) -> int | None:
        return None

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        return SegmentStats({"bleu": self.stats.segment_stats(inputs.hyps, [inputs.sources])}, len(inputs.hyps))

    aggregate = Bleu.aggregate
    resampled_scores = Bleu.resampled_scores

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {**self.stats.signature_fields(), "refs": "source"}


class IBleu(_SacreBleuMetric):
    """iBLEU = alpha * BLEU(output, refs) - (1 - alpha) * BLEU(output, source)."""

    name = "ibleu"
    label = "iBLEU"
    needs_source = True
    needs_refs = True

    def __init__(self, alpha: float = DEFAULT_IBLEU_ALPHA, lowercase: bool = True, tokenizer: str = "13a"):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"ibleu: alpha must be in [0, 1], got {alpha}")
        super().__init__(lowercase, tokenizer)
        self.alpha = alpha

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        return SegmentStats(
            {
                "bleu": self.stats.segment_stats(inputs.hyps, inputs.refs),
                "self_bleu": self.stats.segment_stats(inputs.hyps, [inputs.sources]),
            },
            len(inputs.hyps),
            {"n_refs": len(inputs.refs)},
        )

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        bleu = self.stats.score(stats["bleu"].sum(axis=0)).score
        self_bleu = self.stats.score(stats["self_bleu"].sum(axis=0)).score
        value = self.alpha * bleu - (1.0 - self.alpha) * self_bleu
        return value, {"bleu": bleu, "self_bleu": self_bleu, "alpha": self.alpha}

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        counts = counts_matrix(indices, stats.n)
        bleu = self.stats.scores(counts @ stats["bleu"].astype(np.float64))
        self_bleu = self.stats.scores(counts @ stats["self_bleu"].astype(np.float64))
        return self.alpha * bleu - (1.0 - self.alpha) * self_bleu

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        return {"alpha": f"{self.alpha:g}", **self.stats.signature_fields(), "nrefs": f"{n_refs}+source"}
