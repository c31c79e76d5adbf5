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


class ChattyGenerator:
    """Answers the first sentence with chat, corrects the second."""

    tokens_generated = 0

    def generate(self, requests, decoding, on_batch=None):
        out = []
        for r in requests:
            if r.input.startswith("She go"):
                out.append(f"The sentence should read: {r.input.replace('go', 'went')}")
            else:
                out.append(r.input.replace("buyed", "bought"))
        return out


def _client(**settings):
    from fastapi.testclient import TestClient

    from writetune.serve.app import create_app
    from writetune.serve.served_model import ServedModel
    from writetune.serve.settings import ServeSettings

    app = create_app(ServedModel(ChattyGenerator(), model_id="fake"),
                     ServeSettings(model="fake", errant_types=False, **settings))
    return TestClient(app, base_url="http://localhost")


def test_the_edit_service_offers_no_chat_and_counts_it():
    text = "She go to school. He buyed an apple."
    with _client() as client:
        result = client.post("/v1/edit", json={"task": "grammar", "text": text}).json()
        assert result["output"] == "She go to school. He bought an apple."
        assert [e["replacement"] for e in result["edits"]] == ["bought"]
        [flagged] = result["no_confident_suggestion"]
        assert flagged["sentence"] == 0 and "before the sentence" in flagged["reason"] and "answer" not in flagged
        raw = client.post("/v1/edit", json={"task": "grammar", "text": text, "raw_answers": True}).json()
        assert raw["no_confident_suggestion"][0]["answer"] == "The sentence should read: She went to school."
        assert 'writetune_unconfident_total{task="grammaticality"} 2' in client.get("/metrics").text
    with _client(rewrite_check=False) as client:
        result = client.post("/v1/edit", json={"task": "grammar", "text": text}).json()
        assert result["output"].startswith("The sentence should read:") and result["no_confident_suggestion"] == []
