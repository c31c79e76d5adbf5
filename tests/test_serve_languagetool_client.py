"""`language-tool-python` (a real LanguageTool client) against a live server on the embedded model: `check()` and
`correct()` give the text `/v1/edit` gives. With `remote_server=` the client downloads nothing and starts no Java
server: its constructor only resolves `localhost` and asks the server for `/v2/languages`. The test holds it to that
by refusing every connection that is not to the loopback address and every subprocess."""

import socket
import subprocess

import httpx
import pytest

from writetune.serve import BackgroundServer, Engine, ServeSettings, create_app

language_tool_python = pytest.importorskip("language_tool_python")

TEXT = "She go to school every day. Yesterday he buyed three apple.\nThé café 😀 were closed when we arrives."


@pytest.fixture
def loopback_only(monkeypatch):
    """Connections to anything but 127.0.0.1 and processes of any kind fail the test."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a connection to {address} was attempted")
        return real_connect(sock, address)

    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.mark.embedded
def test_language_tool_python_corrects_like_v1_edit(loopback_only):
    engine = Engine.load("smollm2-135m", device="cpu")
    with BackgroundServer(create_app(engine, ServeSettings(max_new_tokens=64, request_timeout_s=600))) as url:
        with language_tool_python.LanguageTool("en-US", remote_server=url) as tool:
            assert tool.is_remote and tool._server is None
            answer = httpx.post(f"{url}/v1/edit", json={"text": TEXT}, timeout=600)
            assert answer.status_code == 200, answer.text
            edited = answer.json()
            assert edited["output"] != TEXT  # the untuned model rewrites, so there is something to match
            matches = tool.check(TEXT)  # each of the three sentences is one request of one model batch
            assert matches
            for match in matches:
                assert match.rule_id.startswith("WRITETUNE_") and match.category
                assert match.error_length > 0 and match.replacements
            assert language_tool_python.utils.correct(TEXT, matches) == edited["output"]
            assert tool.correct(TEXT) == edited["output"]
