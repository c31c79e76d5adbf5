"""Edit extraction for the server: word-level alignment, the apply-reproduces-output invariant, sentence spans,
ERRANT typing through the metrics package's annotator, and the Prometheus exposition format."""

import random
import re

import pytest

from writetune.serve.edits import ErrantTyper, apply_edits, split_sentences, text_edits
from writetune.serve.prometheus import ServerMetrics


def test_word_level_edits_with_offsets():
    source = "the cats is sleeping on the mat."
    edits = text_edits(source, "the cat are sleeping on a mat.", offset=10)
    assert [(e.start, e.end, e.original, e.replacement, e.type) for e in edits] == [
        (14, 18, "cats", "cat", "replace"),
        (19, 21, "is", "are", "replace"),
        (34, 37, "the", "a", "replace"),
    ]
    shifted = " " * 10 + source
    assert all(shifted[e.start:e.end] == e.original for e in edits)


@pytest.mark.parametrize("source,target,expected", [
    ("She goes to school.", "She goes to the school.", [(12, 12, "", "the ", "insert")]),
    ("a very very big dog", "a very big dog", [(2, 7, "very ", "", "delete")]),
    ("Hello  world .", "Hello world.", [(6, 7, " ", "", "whitespace"), (12, 13, " ", "", "whitespace")]),
    ("He buyed apple.", "He bought an apple.", [(3, 8, "buyed", "bought", "replace"), (9, 9, "", "an ", "insert")]),
    ("", "New text.", [(0, 0, "", "New text.", "insert")]),
    ("Gone.", "", [(0, 5, "Gone.", "", "delete")]),
    ("same", "same", []),
])
def test_insertions_deletions_and_whitespace(source, target, expected):
    edits = text_edits(source, target)
    assert [(e.start, e.end, e.original, e.replacement, e.type) for e in edits] == expected
    assert apply_edits(source, edits) == target


def test_applying_edits_reproduces_any_output():
    rng = random.Random(0)
    words = ["the", "a", "cat", "cats", "is", "are", ",", ".", "don't", "Café", "😀", "\n", "  ", "x-y", "!"]
    for _ in range(300):
        source = "".join(rng.choice(words) + rng.choice([" ", "", "  "]) for _ in range(rng.randint(0, 12)))
        target = "".join(rng.choice(words) + rng.choice([" ", ""]) for _ in range(rng.randint(0, 12)))
        edits = text_edits(source, target, offset=3)
        padded = "abc" + source
        assert apply_edits(padded, edits) == "abc" + target
        assert all(padded[e.start:e.end] == e.original for e in edits)
        assert all(a.end <= b.start for a, b in zip(edits, edits[1:]))  # ordered, non-overlapping


def test_overlapping_edits_are_refused():
    with pytest.raises(ValueError, match="overlapping"):
        apply_edits("abcdef", [{"start": 0, "end": 3, "original": "abc", "replacement": "x", "type": "replace"},
                               {"start": 2, "end": 4, "original": "cd", "replacement": "y", "type": "replace"}])


def test_sentence_spans_keep_offsets():
    text = "Mr. Smith went home. He said \"hi!\" then left.\n\n  What? Yes... the end\nLast line  "
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Mr. Smith went home.", "He said \"hi!\" then left.", "What?", "Yes... the end", "Last line"]
    assert split_sentences("   \n ") == []


def test_errant_types_for_grammar_edits():
    typer = ErrantTyper()
    source = "She go to school yesterday and buyed apple."
    target = "She went to school yesterday and bought an apple."
    edits = typer.type_edits(source, target, text_edits(source, target, offset=5), offset=5)
    if not typer.available:
        pytest.skip(f"ERRANT's spaCy model is not installed here: {typer._failed}")
    assert [(e.original, e.replacement, e.type) for e in edits] == [
        ("go", "went", "R:VERB:TENSE"), ("buyed", "bought", "R:VERB:INFL"), ("", "an ", "M:DET")]


def test_errant_typing_can_be_disabled():
    typer = ErrantTyper(enabled=False)
    edits = text_edits("She go home.", "She goes home.")
    assert typer.type_edits("She go home.", "She goes home.", edits) == edits
    assert not typer.available


def test_prometheus_exposition_format():
    metrics = ServerMetrics()
    metrics.queue_depth = lambda: 3
    metrics.observe_request("/v1/edit", "POST", 200, 0.3)
    metrics.observe_request("/v1/edit", "POST", 200, 3.0)
    metrics.observe_request("other", "GET", 404, 0.001)
    metrics.observe_batch(4)
    metrics.observe_generation(4, 100, 2.0)
    metrics.reject("queue_full")
    text = metrics.render()
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? [0-9.e+-]+$|^[a-z_]+\{[^}]*le="\+Inf"[^}]*\} \d+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'writetune_requests_total{route="/v1/edit",method="POST",status="200"} 2' in text
    assert 'writetune_request_duration_seconds_bucket{route="/v1/edit",le="0.5"} 1' in text
    assert 'writetune_request_duration_seconds_bucket{route="/v1/edit",le="+Inf"} 2' in text
    assert 'writetune_request_duration_seconds_count{route="/v1/edit"} 2' in text
    assert "writetune_tokens_per_second 50" in text
    assert "writetune_queue_depth 3" in text
    assert 'writetune_rejected_total{reason="queue_full"} 1' in text
    assert 'writetune_batch_size_bucket{le="4"} 1' in text and 'writetune_batch_size_bucket{le="2"} 0' in text
