"""The command line: `info` and `edit` on a tiny model, errors as one line with exit code 2, and the shipped
default end to end through the installed console script."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from writetune.cli import app
from writetune.serve.rewrite_check import check_rewrite

runner = CliRunner()


def test_info_reports_versions_device_cache_and_model(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["info", "--model", str(tiny_model_dir), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["cache"] == str(tmp_path / "cache")
    assert facts["model"] == {"spec": str(tiny_model_dir), "kind": "directory",
                              "path": str(tiny_model_dir.resolve()), "ready": True}
    assert facts["torch"] and facts["transformers"] and facts["device"]
    table = runner.invoke(app, ["info", "--model", str(tiny_model_dir)])
    assert table.exit_code == 0 and "transformers" in table.output


def test_info_on_the_alias_does_not_convert(monkeypatch, tmp_path):
    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"]["ready"] is False
    assert not (tmp_path / "cache").exists()


def test_edit_with_a_directory_model(tiny_model_dir):
    result = runner.invoke(app, ["edit", "She go to school.", "--task", "grammar", "--model", str(tiny_model_dir),
                                 "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, message", [
    (["edit", "text", "--task", "poetry"], "unknown task 'poetry'"),
    (["edit", "text", "--model", "no-such-model"], "unknown model spec"),
    (["edit", "   "], "empty"),
])
def test_bad_input_is_one_error_line_and_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.embedded
def test_edit_on_the_shipped_default_through_the_console_script():
    """The default model is the shipped assistant: it answers with the corrected sentence alone, no preamble."""
    exe = Path(sys.executable).with_name("writetune")
    assert exe.is_file(), f"the writetune console script is not installed beside {sys.executable}"
    sentence = "She go to school yesterday."
    proc = subprocess.run([exe, "edit", sentence, "--task", "grammar", "--max-new-tokens", "48"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    answer = proc.stdout.strip()
    assert "\n" not in answer and answer != sentence and re.search(r"\bwent\b", answer), answer
    assert check_rewrite("grammaticality", sentence, answer).confident, answer
