"""Bootstrap intervals and paired tests: the vectorised resampling of every metric equals re-aggregating the
resampled statistics, intervals are seeded and sensible, and paired tests behave at their extremes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from writetune.metrics import (
    approximate_randomization,
    bootstrap_ci,
    get_metric,
    paired_bootstrap,
    parse_m2,
)
from writetune.metrics.base import Inputs


WORDS = "the a cat dog sat ran on under mat house quickly slowly big small red old new it was is".split()


def corpus(n: int = 40, seed: int = 0):
    """Synthetic parallel data: sources, two references, a good system (close to references), a bad one."""
    rng = random.Random(seed)
    sources, refs0, refs1, good, bad = [], [], [], [], []
    for _ in range(n):
        src = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
        ref0 = list(src)
        ref0[rng.randrange(len(ref0))] = rng.choice(WORDS)
        ref1 = list(ref0)
        del ref1[rng.randrange(len(ref1))]
        out = list(ref0) if rng.random() < 0.7 else list(src)
        junk = [rng.choice(WORDS) for _ in range(len(src))]
        sources.append(" ".join(src))
        refs0.append(" ".join(ref0))
        refs1.append(" ".join(ref1))
        good.append(" ".join(out))
        bad.append(" ".join(junk))
    return sources, [refs0, refs1], good, bad


def m2_corpus(n: int = 30, seed: int = 1):
    """M2 gold with one or two annotators per sentence, and a system that follows annotator 0 or 1."""
    rng = random.Random(seed)
    blocks, hyps, bad = [], [], []
    for _ in range(n):
        toks = [rng.choice(WORDS) for _ in range(rng.randint(5, 9))]
        i, j = rng.sample(range(len(toks)), 2)
        fix_a, fix_b = rng.choice(WORDS), rng.choice(WORDS)
        lines = [f"S {' '.join(toks)}", f"A {i} {i + 1}|||R:OTHER|||{fix_a}|||REQUIRED|||-NONE-|||0"]
        if rng.random() < 0.5:
            lines.append(f"A {j} {j + 1}|||R:OTHER|||{fix_b}|||REQUIRED|||-NONE-|||1")
        blocks.append("\n".join(lines))
        out = list(toks)
        if rng.random() < 0.5:
            out[i] = fix_a
        else:
            out[j] = fix_b
        hyps.append(" ".join(out))
        bad.append(" ".join(reversed(toks)))
    return parse_m2("\n\n".join(blocks) + "\n"), hyps, bad


def stats_for(name: str, hyps, **options):
    sources, refs, _, _ = corpus()
    metric = get_metric(name, **options)
    if name in ("m2",):
        gold, _, _ = m2_corpus()
        return metric, metric.segment_stats(Inputs(hyps=hyps, gold=gold))
    needs = {
        "sari": dict(sources=sources, refs=refs),
        "gleu": dict(sources=sources, refs=refs),
        "bleu": dict(refs=refs),
        "self_bleu": dict(sources=sources),
        "ibleu": dict(sources=sources, refs=refs),
        "em": dict(refs=refs),
        "copy_rate": dict(sources=sources),
    }[name]
    return metric, metric.segment_stats(Inputs(hyps=hyps, **needs))


@pytest.mark.parametrize("name", ["sari", "gleu", "bleu", "self_bleu", "ibleu", "em", "copy_rate", "m2", "errant"])
def test_vectorised_resampling_equals_reaggregation(name):
    rng = np.random.default_rng(3)
    if name == "m2":
        gold, hyps, _ = m2_corpus()
        metric, stats = stats_for("m2", hyps)
    elif name == "errant":
        gold, hyps, _ = m2_corpus()
        metric = get_metric("errant")
        # The system's edits as a hypothesis M2 (coder 0), scored against the multi-annotator gold.
        hyp_blocks = []
        for sentence, hyp in zip(gold, hyps):
            src, out = sentence.tokens, hyp.split()
            edits = [
                f"A {k} {k + 1}|||R:OTHER|||{out[k]}|||REQUIRED|||-NONE-|||0"
                for k in range(len(src))
                if src[k] != out[k]
            ]
            hyp_blocks.append("\n".join([f"S {sentence.source}", *edits]))
        stats = metric.stats_from_m2(parse_m2("\n\n".join(hyp_blocks) + "\n"), gold)
    else:
        _, _, good, _ = corpus()
        metric, stats = stats_for(name, good, **({"iterations": 40} if name == "gleu" else {}))
    n = stats.n
    indices = np.vstack([np.arange(n), rng.integers(0, n, size=(6, n))])
    fast = metric.resampled_scores(stats, indices)
    slow = [metric.aggregate(stats.take(row))[0] for row in indices]
    assert fast == pytest.approx(slow, abs=1e-9)
    assert fast[0] == pytest.approx(metric.aggregate(stats)[0], abs=1e-9)


def test_multi_annotator_choice_is_exercised():
    gold, hyps, _ = m2_corpus()
    _, stats = stats_for("m2", hyps)
    assert stats["valid"].sum(axis=1).max() == 2 and stats["valid"].sum(axis=1).min() == 1


def test_bootstrap_ci_is_seeded_and_brackets_the_score():
    _, _, good, _ = corpus(n=60)
    metric, stats = stats_for("sari", good[:40])
    score = metric.aggregate(stats)[0]
    low, high = bootstrap_ci(metric, stats, n_samples=300, seed=11)
    assert low < score < high
    assert (low, high) == bootstrap_ci(metric, stats, n_samples=300, seed=11)
    assert (low, high) != bootstrap_ci(metric, stats, n_samples=300, seed=12)


def test_bootstrap_through_corpus_score_for_gleu():
    sources, refs, good, _ = corpus()
    result = get_metric("gleu", iterations=30).corpus_score(good, sources=sources, refs=refs, bootstrap=200)
    assert result.ci is not None and result.ci[0] < result.score < result.ci[1]
    assert "bootstrap:200" in result.signature and "seed:12345" in result.signature


def test_paired_bootstrap_same_system_and_clear_difference():
    _, _, good, bad = corpus()
    metric, stats_good = stats_for("sari", good)
    _, stats_bad = stats_for("sari", bad)
    same = paired_bootstrap(metric, stats_good, stats_good, n_samples=200)
    assert same.delta == 0.0 and same.p_value == 1.0 and same.delta_ci == (0.0, 0.0)
    diff = paired_bootstrap(metric, stats_bad, stats_good, n_samples=500)
    assert diff.delta > 0
    assert diff.p_value < 0.01
    assert diff.delta_ci[0] > 0


def test_approximate_randomization_same_system_and_clear_difference():
    _, _, good, bad = corpus()
    metric, stats_good = stats_for("bleu", good)
    _, stats_bad = stats_for("bleu", bad)
    same = approximate_randomization(metric, stats_good, stats_good, n_trials=200)
    assert same.p_value == 1.0
    diff = approximate_randomization(metric, stats_bad, stats_good, n_trials=500)
    assert diff.delta > 0 and diff.p_value < 0.01


def test_approximate_randomization_with_m2_annotator_choice():
    gold, hyps, bad = m2_corpus()
    metric = get_metric("m2")
    stats_a = metric.segment_stats(Inputs(hyps=bad, gold=gold))
    stats_b = metric.segment_stats(Inputs(hyps=hyps, gold=gold))
    result = approximate_randomization(metric, stats_a, stats_b, n_trials=300, seed=5)
    assert result.delta > 0 and result.p_value < 0.05
    assert result.score_b == pytest.approx(metric.aggregate(stats_b)[0])


def test_paired_tests_reject_different_segment_counts():
    _, _, good, _ = corpus()
    metric, stats = stats_for("em", good)
    with pytest.raises(ValueError):
        paired_bootstrap(metric, stats, stats.take(range(10)))
