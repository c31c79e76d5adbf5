"""`writetune eval` end to end on the tiny model: the `writing` suite on a data directory in the test-split layout
writes results.json, predictions, report.md, results.csv and plots; bad input is one line and exit code 2."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from test_eval_fixtures import write_writing_data
from writetune.cli import app
from writetune.data.evalsets import suite


def test_eval_writing_suite_with_the_tiny_model_and_copy(tmp_path, tiny_model_dir):
    data = write_writing_data(tmp_path / "data")
    out = tmp_path / "out"
    args = ["eval", "--model", str(tiny_model_dir), "--model", "copy", "--suite", "writing", "--data-dir",
            str(data), "-o", str(out), "--limit", "2", "--bootstrap", "20", "--max-new-tokens", "8",
            "--dtype", "float32", "--batch-size", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert list(document["systems"]) == [str(tiny_model_dir), "copy"]
    assert set(document["systems"]["copy"]) == {s.name for s in suite("writing")}
    assert document["skipped"] == []
    assert all(v["n"] == 2 for v in document["sets"].values())
    for name in ("report.md", "results.csv", "plots/scores.png", "plots/delta_vs_baseline.png",
                 "predictions/copy.jfleg.jsonl"):
        assert (out / name).is_file(), name
    assert "| copy |" in result.output  # the table is printed
    # run again: everything is reused
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "generating" not in again.output and "all 2 predictions reused" in again.output


def test_eval_cli_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch):
    monkeypatch.delenv("WRITETUNE_DATA", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--model", "copy", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no data directory" in result.output
    data = write_writing_data(tmp_path / "data")
    (data / "jfleg/test/test.ref3").unlink()
    result = runner.invoke(app, ["eval", "--model", "copy", "--suite", "writing", "--data-dir", str(data),
                                 "-o", str(tmp_path / "o"), "--strict", "--bootstrap", "0"])
    assert result.exit_code == 2 and "jfleg/test/test.ref3" in result.output
    result = runner.invoke(app, ["eval", "--model", "copy", "--suite", "writing", "--data-dir", str(data),
                                 "-o", str(tmp_path / "o2"), "--set", "jfleg", "--set", "asset", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "skipped jfleg: missing" in result.output
    result = runner.invoke(app, ["eval", "--model", "copy", "--data-dir", str(data), "-o", str(tmp_path / "o3"),
                                 "--decoding", "greedy,nucleus"])
    assert result.exit_code == 2 and "unknown decoding 'nucleus'" in result.output
