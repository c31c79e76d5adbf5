"""The official OpenAI Python client, unchanged, against a real server with the tiny model: models, chat completions
(plain and streamed), completions, and its authentication error."""

import pytest

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def base_url(tiny_model_dir):
    served = ServedModel.load(str(tiny_model_dir), device="cpu", model_id="tiny-writer")
    settings = ServeSettings(model="tiny", api_key="sk-test", errant_types=False)
    with BackgroundServer(create_app(served, settings)) as url:
        yield url + "/v1"


def test_openai_client_talks_to_the_server(base_url):
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny-writer"]
    messages = [{"role": "user", "content": "Fix the grammar in this sentence: she go home."}]
    chat = client.chat.completions.create(model="tiny-writer", messages=messages, max_tokens=10)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage.completion_tokens <= 10
    stream = client.chat.completions.create(model="tiny-writer", messages=messages, max_tokens=10, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == \
        chat.choices[0].message.content
    completion = client.completions.create(model="tiny-writer", prompt="Say hi.", max_tokens=6)
    assert isinstance(completion.choices[0].text, str) and completion.model == "tiny-writer"


def test_openai_client_sees_auth_and_limit_errors(base_url):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError, match="exceeds this server's limit"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=100_000)
