"""The rewrite check: chatty answers (a preamble, an explanation, prose around the sentence, a "correction" that
keeps too little of it) are not offered as edits, real corrections are; and the shipped limits are what the
measuring script computes from the shipped mix."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from writetune.serve.rewrite_check import THRESHOLDS_FILE, check_rewrite, rewrite_features

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SOURCE = "She go to school yesterday and forget her book."


@pytest.mark.parametrize("answer", [
    "She went to school yesterday and forgot her book.",
    "She went to school yesterday and forgot her books.",
    SOURCE,
])
def test_corrections_are_confident(answer):
    assert check_rewrite("grammaticality", SOURCE, answer).confident


@pytest.mark.parametrize("answer, reason", [
    ("The sentence should read: She went to school yesterday and forgot her book.", "before the sentence"),
    ("She went to school yesterday and forgot her book. The verbs are now in the past tense.", "after the sentence"),
    ("The original sentence contains a grammatical error in the verb.", "before the sentence"),
    ("Book.", "keeps"),
    ("", "empty"),
])
def test_chat_is_not_a_suggestion(answer, reason):
    verdict = check_rewrite("grammaticality", SOURCE, answer)
    assert not verdict.confident and reason in verdict.reason


def test_features():
    features = rewrite_features("a b c d", "x y a b c d")
    assert (features.kept, features.dropped, features.new, features.lead, features.trail) == (1.0, 0, 2, 2, 0)
    assert features.added == pytest.approx(2 / 6)
    assert check_rewrite("generic", "Tell me a joke.", "Why did the chicken cross the road?").confident


@pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared data folder is not beside the repository ({DATA})")
def test_shipped_limits_are_what_the_script_measures(tmp_path):
    from writetune.data.build import build_mix

    spec = importlib.util.spec_from_file_location("measure", REPO / "scripts" / "measure_rewrite_thresholds.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    build_mix(REPO / "configs" / "mix-paper.yaml", tmp_path / "mix", data_dir=DATA)
    shipped = json.loads(THRESHOLDS_FILE.read_text(encoding="utf-8"))
    assert measure.measure(tmp_path / "mix") == shipped
