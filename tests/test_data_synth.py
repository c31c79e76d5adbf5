"""The grammatical-error injector: seeded, rate respected, every error type occurs."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from writetune.data.synth import ERROR_TYPES, ErrorInjector

SUBJECTS = ["The teacher", "A small dog", "My brother", "The old house", "This report", "An engineer"]
VERBS = ["was walking", "has looked", "is waiting", "had worked", "will travel", "stayed"]
TAILS = [
    "to the station in the morning, before the rain started.",
    "at the pictures of the city for an hour.",
    "for the bus on the corner of the street.",
    "with the children in the garden during the summer.",
    "from London to Paris with two friends.",
    "in a village near the sea, and it liked the quiet.",
]
SENTENCES = [f"{s} {v} {t}" for s in SUBJECTS for v in VERBS for t in TAILS]  # 216 clean sentences


def n_words(text: str) -> int:
    return len(re.findall(r"\w+(?:['’-]\w+)*", text))


def test_same_seed_same_output_and_order_does_not_matter():
    a = [ErrorInjector(0.2, seed=3).corrupt(s) for s in SENTENCES]
    injector = ErrorInjector(0.2, seed=3)
    b = [injector.corrupt(s) for s in reversed(SENTENCES)][::-1]
    assert a == b
    c = [ErrorInjector(0.2, seed=4).corrupt(s) for s in SENTENCES]
    assert a != c


def test_key_seeds_the_sentence():
    injector = ErrorInjector(0.3, seed=1)
    sentence = SENTENCES[0]
    outputs = {injector.corrupt(sentence, key=f"id{i}").text for i in range(20)}
    assert len(outputs) > 5


@pytest.mark.parametrize("rate", [0.05, 0.15, 0.3])
def test_rate_is_the_expected_number_of_errors_per_word(rate):
    injector = ErrorInjector(rate, seed=11)
    results = [injector.corrupt(s) for s in SENTENCES for _ in range(1)]
    results += [injector.corrupt(s, key=f"second:{s}") for s in SENTENCES]
    words = 2 * sum(n_words(s) for s in SENTENCES)
    errors = sum(len(r.errors) for r in results)
    assert errors / words == pytest.approx(rate, rel=0.15)


def test_zero_errors_leave_the_sentence_unchanged_and_errors_change_it():
    injector = ErrorInjector(0.1, seed=2)
    for sentence in SENTENCES:
        result = injector.corrupt(sentence)
        if result.errors:
            assert result.text != sentence
        else:
            assert result.text == sentence


def test_every_error_type_occurs_with_roughly_equal_frequency():
    injector = ErrorInjector(0.2, seed=5)
    counts = Counter(e for s in SENTENCES for e in injector.corrupt(s).errors)
    assert set(counts) == set(ERROR_TYPES)
    assert min(counts.values()) > 0.5 * max(counts.values())


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_each_type_alone_changes_sentences(error_type):
    injector = ErrorInjector(0.2, seed=9, types=[error_type], min_errors=1)
    results = [injector.corrupt(s) for s in SENTENCES]
    assert all(set(r.errors) <= {error_type} for r in results)
    # a type applies to most sentences (agreement needs e.g. is/are, a plural, or "a" + noun)
    assert sum(bool(r.errors) for r in results) >= 0.85 * len(SENTENCES)
    assert all((r.text != s) == bool(r.errors) for r, s in zip(results, SENTENCES))


def test_article_and_agreement_examples():
    article = ErrorInjector(1.0, seed=0, types=["article"]).corrupt("The cat sat on the mat.")
    assert article.text != "The cat sat on the mat." and set(article.errors) == {"article"}
    agreement = ErrorInjector(0.5, seed=0, types=["agreement"], min_errors=1).corrupt("She is happy.")
    assert agreement.text == "She are happy."


def test_min_errors():
    injector = ErrorInjector(0.0, seed=0, min_errors=2)
    assert all(len(injector.corrupt(s).errors) == 2 for s in SENTENCES[:20])
    assert ErrorInjector(0.0, seed=0).corrupt(SENTENCES[0]).errors == ()


@pytest.mark.parametrize("kwargs", [{"rate": 1.5}, {"rate": -0.1}, {"types": ["capitalisation"]}, {"types": []}, {"min_errors": -1}])
def test_bad_settings(kwargs):
    rate = kwargs.pop("rate", 0.1)
    with pytest.raises(ValueError):
        ErrorInjector(rate, **kwargs)
