"""`language-tool-python` (a real LanguageTool client) and `curl -d text=...` against a live server on the embedded
model: `check()` and `correct()`, and curl's matches applied, give the text `/v1/edit` gives. With `remote_server=`
the client downloads nothing and starts no Java server: its constructor only resolves `localhost` and asks the
server for `/v2/languages` (its modules, at import, only read environment variables). The test holds it to that by
refusing, while the client runs, every connection that is not to the loopback address and every subprocess."""

import json
import shutil
import socket
import subprocess
from contextlib import contextmanager

import httpx
import pytest
from test_serve_languagetool import apply_matches

from writetune.serve import BackgroundServer, ServedModel, ServeSettings, create_app

language_tool_python = pytest.importorskip("language_tool_python")

TEXT = "She go to school every day. Yesterday he buyed three apple.\nThé café 😀 were closed when we arrives."


@contextmanager
def loopback_only(monkeypatch):
    """Inside: connections to anything but 127.0.0.1 and processes of any kind fail the test."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a connection to {address} was attempted")
        return real_connect(sock, address)

    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    with monkeypatch.context() as guard:
        guard.setattr(socket.socket, "connect", connect)
        guard.setattr(subprocess, "Popen", no_process)
        guard.setenv("NO_PROXY", "127.0.0.1")
        yield


@pytest.mark.embedded
def test_language_tool_python_and_curl_correct_like_v1_edit(monkeypatch):
    served = ServedModel.load("smollm2-135m", device="cpu")
    with BackgroundServer(create_app(served, ServeSettings(max_new_tokens=64, request_timeout_s=600,
                                                           rewrite_check=False))) as url:
        answer = httpx.post(f"{url}/v1/edit", json={"text": TEXT}, timeout=600)
        assert answer.status_code == 200, answer.text
        edited = answer.json()
        assert edited["output"] != TEXT  # every answer of the untuned model is offered, so there is something to match
        with loopback_only(monkeypatch), language_tool_python.LanguageTool("en-US", remote_server=url) as tool:
            assert tool.is_remote and tool._server is None
            matches = tool.check(TEXT)  # each of the three sentences is one request of one model batch
            assert matches
            for match in matches:
                assert match.rule_id.startswith("WRITETUNE_") and match.category
                assert match.error_length > 0 and match.replacements
            assert language_tool_python.utils.correct(TEXT, matches) == edited["output"]
            assert tool.correct(TEXT) == edited["output"]
        if shutil.which("curl"):  # the same check as a shell script sends it
            curl = subprocess.run(["curl", "-sS", "--max-time", "600", "-d", "language=en-US", "--data-urlencode",
                                   f"text={TEXT}", f"{url}/v2/check"], capture_output=True, text=True, timeout=620,
                                  check=True)
            assert apply_matches(TEXT, json.loads(curl.stdout)["matches"]) == edited["output"]
