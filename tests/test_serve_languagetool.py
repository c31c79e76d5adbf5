"""The LanguageTool API (`/v2/check`, `/v2/languages`) on a deterministic generator that corrects known sentences:
form posts with emoji and accented letters (UTF-16 offsets), the same corrections as /v1/edit, ERRANT-derived rules,
annotated markup, rule filters, picky level, the server's task option, the API key and errors, and curl against a
live server."""

import json
import random
import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app
from writetune.serve.edits import apply_edits, text_edits
from writetune.serve.languagetool import _match_spans, rule_for, utf16_positions
from writetune.tasks import get_task

CORRECTIONS = {
    "Café 😀 she go to school every day.": "Café 😀 she goes to school every day.",
    "Thé 👍🏽 cats is happy.": "Thé 👍🏽 cats are happy.",
    "We recieved the letter.": "We received the letter.",
    "He bought apple.": "He bought an apple.",
}
TEXT = "Café 😀 she go to school every day. Thé 👍🏽 cats is happy.\nWe recieved the letter. He bought apple."


class CorrectingGenerator:
    """Answers each request with the known correction of its input (the input itself when there is none) and
    records the instructions it was given."""

    tokens_generated = 0

    def __init__(self):
        self.instructions = []

    def generate(self, requests, decoding, on_batch=None):
        self.instructions.extend(r.instruction for r in requests)
        return [CORRECTIONS.get(r.input, r.input) for r in requests]


def make_client(**settings):
    generator = CorrectingGenerator()
    app = create_app(ServedModel(generator, model_id="fake"), ServeSettings(model="fake", **settings))
    return generator, TestClient(app, base_url="http://localhost")


@pytest.fixture(scope="module")
def client():
    _, c = make_client()
    with c:
        yield c


def java_slice(text: str, offset: int, length: int) -> str:
    """`text.substring(offset, offset + length)` as Java computes it (UTF-16 code units)."""
    units = text.encode("utf-16-le")
    return units[2 * offset:2 * (offset + length)].decode("utf-16-le")


def apply_matches(text: str, matches: list[dict]) -> str:
    """Apply each match's first replacement, offsets read as UTF-16 code units."""
    units = text.encode("utf-16-le")
    for m in sorted(matches, key=lambda m: m["offset"], reverse=True):
        start, end = 2 * m["offset"], 2 * (m["offset"] + m["length"])
        units = units[:start] + m["replacements"][0]["value"].encode("utf-16-le") + units[end:]
    return units.decode("utf-16-le")


def test_check_gives_the_corrections_of_v1_edit_at_utf16_offsets(client):
    answer = client.post("/v2/check", data={"text": TEXT, "language": "en-US"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["software"]["apiVersion"] == 1 and body["language"]["code"] == "en-US"
    edited = client.post("/v1/edit", json={"text": TEXT, "task": "grammar"}).json()
    assert edited["output"] != TEXT
    matches = body["matches"]
    assert len(matches) == len(edited["edits"])
    assert apply_matches(TEXT, matches) == edited["output"]
    for match, edit in zip(matches, edited["edits"]):
        original = java_slice(TEXT, match["offset"], match["length"])
        assert match["length"] > 0 and edit["original"] in original
        ctx = match["context"]
        assert java_slice(ctx["text"], ctx["offset"], ctx["length"]) == original
        assert original in match["sentence"] and match["sentence"] in TEXT
        assert set(match) >= {"message", "shortMessage", "offset", "length", "replacements", "context", "sentence",
                              "rule"}
    # after the emoji, Java positions run ahead of Python's: the offsets really are UTF-16
    after_emoji = [m for m in matches if m["offset"] > TEXT.index("😀")]
    assert after_emoji and all(m["offset"] > utf16_positions(TEXT).index(m["offset"]) for m in after_emoji)


def test_rules_come_from_errant_types(client):
    matches = client.post("/v2/check", data={"text": TEXT, "language": "en-US"}).json()["matches"]
    edits = client.post("/v1/edit", json={"text": TEXT}).json()
    if edits["edit_types"] != "errant":
        pytest.skip("ERRANT's spaCy model is not installed here")
    by_text = {java_slice(TEXT, m["offset"], m["length"]): m["rule"] for m in matches}
    for edit, match in zip(edits["edits"], matches):
        assert match["rule"] == rule_for(edit["type"], "grammaticality")
        assert match["rule"]["id"] == "WRITETUNE_" + edit["type"].replace(":", "_")
    assert by_text["go"]["id"] == "WRITETUNE_R_VERB_SVA" and by_text["go"]["category"]["id"] == "GRAMMAR"
    assert by_text["go"]["issueType"] == "grammar"
    assert by_text["recieved"]["category"]["id"] == "TYPOS" and by_text["recieved"]["issueType"] == "misspelling"
    article = next(m for m in matches if m["rule"]["id"] == "WRITETUNE_M_DET")  # an insertion, widened to a word
    assert java_slice(TEXT, article["offset"], article["length"]) == "apple"
    assert article["replacements"] == [{"value": "an apple"}]


def test_match_spans_reproduce_any_output_without_empty_matches():
    rng = random.Random(1)
    words = ["the", "a", "cat", "cats", "an", "apple", ",", ".", "Café", "😀", "\n", "x-y", "!"]
    for _ in range(400):
        source = " ".join(rng.choice(words) for _ in range(rng.randint(1, 10)))
        target = " ".join(rng.choice(words) for _ in range(rng.randint(0, 10)))
        spans = _match_spans(source, [e.to_dict() for e in text_edits(source, target)])
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
        assert apply_edits(source, [{"start": s.start, "end": s.end, "original": source[s.start:s.end],
                                     "replacement": s.replacement, "type": s.type} for s in spans]) == target
        assert all(s.start < s.end for s in spans if source.strip())


def test_rule_mapping_without_errant_types():
    assert rule_for("whitespace", "grammaticality")["category"]["id"] == "TYPOGRAPHY"
    assert rule_for("replace", "grammaticality")["category"]["id"] == "GRAMMAR"
    clarity = rule_for("replace", "clarity")
    assert clarity["id"] == "WRITETUNE_CLARITY_REPLACE" and clarity["issueType"] == "style"
    assert rule_for("U:PUNCT", "grammaticality")["description"] == "Unnecessary punctuation"


def test_annotated_markup_offsets_point_into_the_sent_text(client):
    parts = [{"markup": "<p>"}, {"text": "We recieved "}, {"markup": "<b>", "interpretAs": ""},
             {"text": "the letter."}, {"markup": "</b></p>", "interpretAs": "\n"}, {"text": "He bought apple."}]
    sent = "".join(p.get("text", p.get("markup")) for p in parts)
    matches = client.post("/v2/check", data={"data": json.dumps({"annotation": parts}),
                                             "language": "en-GB"}).json()["matches"]
    assert {java_slice(sent, m["offset"], m["length"]) for m in matches} == {"recieved", "apple"}


def test_rule_and_category_filters(client):
    everything = client.post("/v2/check", data={"text": TEXT}).json()["matches"]
    first = everything[0]["rule"]["id"]
    without = client.post("/v2/check", data={"text": TEXT, "disabledRules": first}).json()["matches"]
    assert len(without) < len(everything) and first not in {m["rule"]["id"] for m in without}
    category = everything[0]["rule"]["category"]["id"]
    only = client.post("/v2/check", data={"text": TEXT, "enabledOnly": "true",
                                          "enabledCategories": category}).json()["matches"]
    assert only and {m["rule"]["category"]["id"] for m in only} == {category}


def test_languages_and_empty_text(client):
    listed = client.get("/v2/languages").json()
    assert {"name": "English (US)", "code": "en", "longCode": "en-US"} in listed
    assert client.post("/v2/check", data={"text": "  \n", "language": "auto"}).json()["matches"] == []


def test_picky_level_and_the_server_task_option():
    generator, c = make_client(languagetool_task="clarity")
    with c:
        matches = c.post("/v2/check", data={"text": "He bought apple."}).json()["matches"]
        assert generator.instructions == [get_task("clarity").instruction]
        assert matches and all(m["rule"]["category"]["id"] == "STYLE" for m in matches)
        generator.instructions.clear()
        c.post("/v2/check", data={"text": "He bought apple.", "level": "picky"})
        assert generator.instructions == [get_task("grammaticality").instruction, get_task("clarity").instruction]
    with pytest.raises(ValueError, match="not a writing task"):
        ServeSettings(languagetool_task="generic")
    with pytest.raises(ValueError, match="unknown task"):
        ServeSettings(languagetool_task="poetry")


def test_errors_limits_and_the_api_key():
    _, c = make_client(api_key="sesame", max_input_chars=200)
    with c:
        assert c.get("/v2/languages").status_code == 200  # public, as clients call it before anything else
        refused = c.post("/v2/check", data={"text": "He bought apple."})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert c.post("/v2/check", data={"text": "He bought apple.", "apiKey": "wrong"}).status_code == 401
        ok = c.post("/v2/check", data={"text": "He bought apple.", "apiKey": "sesame"})
        assert ok.status_code == 200 and ok.json()["matches"]
        with_header = c.post("/v2/check", data={"text": "He bought apple."}, headers={"X-API-Key": "sesame"})
        assert with_header.status_code == 200
        cases = [({"apiKey": "sesame"}, 400, "missing_text"),
                 ({"apiKey": "sesame", "text": "x", "language": "de-DE"}, 400, "unsupported_language"),
                 ({"apiKey": "sesame", "data": "{not json"}, 400, "invalid_data"),
                 ({"apiKey": "sesame", "text": "x", "level": "loud"}, 400, "invalid_level"),
                 ({"apiKey": "sesame", "text": "word " * 60}, 413, "input_too_long")]
        for fields, status, code in cases:
            answer = c.post("/v2/check", data=fields)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), fields
        as_json = c.post("/v2/check", json={"text": "x"}, headers={"X-API-Key": "sesame"})
        assert as_json.status_code == 415


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_form_posts_to_a_live_server():
    generator = CorrectingGenerator()
    app = create_app(ServedModel(generator, model_id="fake"), ServeSettings(model="fake"))
    with BackgroundServer(app) as url:
        plain = subprocess.run(["curl", "-sS", "--max-time", "60", "-d", "text=He bought apple.", f"{url}/v2/check"],
                               capture_output=True, text=True, timeout=90, check=True)
        encoded = subprocess.run(["curl", "-sS", "--max-time", "60", "--data-urlencode", f"text={TEXT}",
                                  "-d", "language=en-US", f"{url}/v2/check"],
                                 capture_output=True, text=True, timeout=90, check=True)
        edited = subprocess.run(["curl", "-sS", "--max-time", "60", "-H", "Content-Type: application/json", "-d",
                                 json.dumps({"text": TEXT}), f"{url}/v1/edit"],
                                capture_output=True, text=True, timeout=90, check=True)
    assert [m["replacements"][0]["value"] for m in json.loads(plain.stdout)["matches"]] == ["an apple"]
    assert apply_matches(TEXT, json.loads(encoded.stdout)["matches"]) == json.loads(edited.stdout)["output"]
    assert apply_edits(TEXT, json.loads(edited.stdout)["edits"]) == json.loads(edited.stdout)["output"]
