"""The HTTP API on the tiny random model: OpenAI-compatible chat/completions (plain and SSE), models, tasks, health,
/v1/edit (offsets that reproduce the output, ERRANT types, the "all" pipeline), metrics, the page, and the CLI."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from writetune.cli import app as cli_app
from writetune.generate import DecodingConfig, Request
from writetune.serve import ServeSettings, create_app
from writetune.serve.edits import apply_edits, split_sentences
from writetune.tasks import get_task

TEXT = "She go to school every day. He buyed apples yesterday!\nThe cats is sleeping."


@pytest.fixture(scope="module")
def client(tiny_served):
    app = create_app(tiny_served, ServeSettings(model="tiny", max_new_tokens=64, rewrite_check=False))
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def sse_events(text: str) -> list:
    events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_models_tasks_health_and_page(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    tasks = [t["name"] for t in client.get("/v1/tasks").json()["data"]]
    assert "grammaticality" in tasks and "clarity" in tasks and tasks[-1] == "all" and "generic" not in tasks
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["limits"]["max_new_tokens"] == 64 and not health["auth_required"]
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[0]
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200


def test_chat_completion_plain_and_streamed(client, tiny_served):
    body = {"model": "anything", "messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Fix the grammar: she go home."}],
            "max_tokens": 12}
    answer = client.post("/v1/chat/completions", json=body).json()
    choice = answer["choices"][0]
    assert answer["object"] == "chat.completion" and answer["model"] == "tiny"
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    expected = tiny_served.generator.generate([Request("Fix the grammar: she go home.", system="Be brief.")],
                                         DecodingConfig(max_new_tokens=12, length_ratio=0, length_slack=12))[0]
    assert choice["message"]["content"] == expected  # the whole conversation, rendered with the model's format
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]

    streamed = client.post("/v1/chat/completions", json={**body, "stream": True,
                                                         "stream_options": {"include_usage": True}})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed.text)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert content == expected
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == choice["finish_reason"]
    assert events[-1]["usage"] == answer["usage"]


def test_chat_content_parts_stop_and_n(client):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Name three colours."}]}],
            "max_tokens": 10, "n": 2}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert len(answer["choices"]) == 2 and answer["choices"][0]["message"] == answer["choices"][1]["message"]
    full = answer["choices"][0]["message"]["content"]
    if len(full) > 2:
        stop = full[1:3]
        cut = client.post("/v1/chat/completions", json={**body, "n": 1, "stop": [stop]}).json()["choices"][0]
        assert cut["message"]["content"] == full[:full.find(stop)] and cut["finish_reason"] == "stop"


def test_completions_plain_list_and_streamed(client):
    one = client.post("/v1/completions", json={"prompt": "Paraphrase: the dog runs.", "max_tokens": 8}).json()
    assert one["object"] == "text_completion" and len(one["choices"]) == 1
    many = client.post("/v1/completions", json={"prompt": ["Paraphrase: the dog runs.", "Say hi."],
                                                "max_tokens": 8}).json()
    assert [c["index"] for c in many["choices"]] == [0, 1]
    assert many["choices"][0]["text"] == one["choices"][0]["text"]  # batched together, same greedy answer
    echoed = client.post("/v1/completions", json={"prompt": "Say hi.", "max_tokens": 8, "echo": True}).json()
    assert echoed["choices"][0]["text"] == "Say hi." + many["choices"][1]["text"]
    streamed = client.post("/v1/completions", json={"prompt": "Paraphrase: the dog runs.", "max_tokens": 8,
                                                    "stream": True})
    events = sse_events(streamed.text)
    assert "".join(e["choices"][0]["text"] for e in events) == one["choices"][0]["text"]
    assert events[-1]["choices"][0]["finish_reason"] == one["choices"][0]["finish_reason"]


def test_edit_offsets_reproduce_the_output(client, tiny_served):
    result = client.post("/v1/edit", json={"task": "grammar", "text": TEXT}).json()
    assert result["task"] == "grammaticality" and result["sentences"] == 3
    edits = result["edits"]
    assert edits, "a random model rewrites the sentences"
    for edit in edits:
        assert TEXT[edit["start"]:edit["end"]] == edit["original"]
        assert set(edit) == {"start", "end", "original", "replacement", "type"}
    assert apply_edits(TEXT, edits) == result["output"]
    # the output is each sentence as the model edits it on its own, with the text between sentences kept
    spans = split_sentences(TEXT)
    answers = tiny_served.generator.generate([Request(get_task("grammar").instruction, TEXT[s:e]) for s, e in spans],
                                        DecodingConfig(max_new_tokens=64))
    rebuilt, pos = "", 0
    for (s, e), answer in zip(spans, answers):
        rebuilt += TEXT[pos:s] + answer
        pos = e
    assert result["output"] == rebuilt + TEXT[pos:]
    assert result["edit_types"] in ("errant", "word")
    if result["edit_types"] == "errant":
        assert any(":" in e["type"] for e in edits)  # ERRANT codes such as R:OTHER, M:DET


def test_edit_all_runs_grammar_then_clarity(client):
    result = client.post("/v1/edit", json={"task": "all", "text": "She go to school. It is nice."}).json()
    assert result["task"] == "all" and [s["task"] for s in result["stages"]] == ["grammaticality", "clarity"]
    assert apply_edits("She go to school. It is nice.", result["edits"]) == result["output"]
    assert result["output"].endswith(result["stages"][1]["outputs"][-1])


def test_edit_with_a_non_grammar_task_uses_word_types(client):
    text = "The committee deliberated extensively before reaching a verdict."
    result = client.post("/v1/edit", json={"task": "simplify", "text": text}).json()
    assert result["edit_types"] == "word"
    assert {e["type"] for e in result["edits"]} <= {"insert", "delete", "replace", "whitespace"}
    assert apply_edits(text, result["edits"]) == result["output"]


def test_metrics_count_requests_and_tokens(client):
    client.post("/v1/completions", json={"prompt": "Say hi.", "max_tokens": 4})
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'writetune_requests_total{route="/v1/completions",method="POST",status="200"}' in text
    assert 'writetune_request_duration_seconds_count{route="/v1/completions"}' in text
    generated = next(line for line in text.splitlines() if line.startswith("writetune_generated_tokens_total "))
    assert int(generated.split()[1]) > 0
    assert "writetune_queue_depth 0" in text and "writetune_tokens_per_second " in text


def test_serve_command_validates_its_settings():
    runner = CliRunner()
    assert "OpenAI-compatible" in runner.invoke(cli_app, ["serve", "--help"]).output
    bad = runner.invoke(cli_app, ["serve", "--model", "/nonexistent/model-dir", "--port", "8123"])
    assert bad.exit_code == 2 and "unknown model spec" in bad.output
    blank = runner.invoke(cli_app, ["serve", "--api-key", " "])
    assert blank.exit_code == 2 and "api_key" in blank.output


def test_sampling_is_random_unless_seeded(client):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Write anything."}], "temperature": 1.0,
            "max_tokens": 16}
    unseeded = {client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
                for _ in range(3)}
    assert len(unseeded) > 1
    seeded = {client.post("/v1/chat/completions", json={**body, "seed": 7}).json()["choices"][0]["message"]["content"]
              for _ in range(2)}
    assert len(seeded) == 1
