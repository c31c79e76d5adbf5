"""`writetune score`: one JSON object per metric (score, components, ci, signature) and exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.metrics import score_cli, write
from typer.testing import CliRunner

from writetune.cli import app
from writetune.metrics import score_files


SOURCES = [
    "She have a red car .",
    "Yesterday I buyed three book .",
    "The weather were very bad so we stayed at home .",
    "He go to school every days .",
    "It is fine .",
    "My friends likes to play football in the park .",
]


REF0 = [
    "She has a red car .",
    "Yesterday I bought three books .",
    "The weather was very bad so we stayed at home .",
    "He goes to school every day .",
    "It is fine .",
    "My friends like to play football in the park .",
]


REF1 = [
    "She has got a red car .",
    "Yesterday I bought three books .",
    "The weather was very bad , so we stayed home .",
    "He goes to school every day .",
    "It is fine .",
    "My friends like playing football in the park .",
]


HYP = [
    "She has a red car .",
    "Yesterday I bought three book .",
    "The weather was very bad so we stayed at home .",
    "He go to school every day .",
    "It is fine .",
    "My friends likes to play football in a park .",
]


GOLD_M2 = """S She have a red car .
A 1 2|||R:VERB:SVA|||has|||REQUIRED|||-NONE-|||0
A 1 2|||R:VERB:SVA|||has got|||REQUIRED|||-NONE-|||1

S Yesterday I buyed three book .
A 2 3|||R:VERB:INFL|||bought|||REQUIRED|||-NONE-|||0
A 4 5|||R:NOUN:NUM|||books|||REQUIRED|||-NONE-|||0

S The weather were very bad so we stayed at home .
A 2 3|||R:VERB:SVA|||was|||REQUIRED|||-NONE-|||0

S He go to school every days .
A 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0
A 5 6|||R:NOUN:NUM|||day|||REQUIRED|||-NONE-|||0

S It is fine .
A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0

S My friends likes to play football in the park .
A 2 3|||R:VERB:SVA|||like|||REQUIRED|||-NONE-|||0
"""


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, lines in (("src", SOURCES), ("ref0", REF0), ("ref1", REF1), ("hyp", HYP)):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths["m2"] = tmp_path / "gold.m2"
    paths["m2"].write_text(GOLD_M2, encoding="utf-8")
    return paths


def arguments(metric: str, files) -> tuple[list[str], dict]:
    args = ["--hyp", str(files["hyp"])]
    kwargs: dict = {"hyp": files["hyp"]}
    if metric in ("m2", "errant"):
        args += ["--m2", str(files["m2"])]
        kwargs["m2"] = files["m2"]
        return args, kwargs
    if metric not in ("bleu", "em"):
        args += ["--source", str(files["src"])]
        kwargs["source"] = files["src"]
    if metric not in ("self_bleu", "copy_rate"):
        args += ["--ref", str(files["ref0"]), "--ref", str(files["ref1"])]
        kwargs["refs"] = [files["ref0"], files["ref1"]]
    return args, kwargs


METRICS = ["sari", "gleu", "m2", "errant", "em", "bleu", "self_bleu", "ibleu", "copy_rate"]


@pytest.mark.parametrize("metric", METRICS)
def test_score_json_for_every_metric(metric, files):
    args, kwargs = arguments(metric, files)
    result = CliRunner().invoke(app, ["score", "--metric", metric, *args, "--bootstrap", "50", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"score", "components", "ci", "signature", "n"}
    assert data["n"] == len(SOURCES)
    assert data["signature"].startswith(f"{metric}|") and "bootstrap:50|seed:12345" in data["signature"]
    low, high = data["ci"]
    assert low <= high
    library = score_files(metric, bootstrap=50, **kwargs)
    assert data["score"] == pytest.approx(library.score, abs=1e-12)
    assert data["ci"] == pytest.approx(list(library.ci), abs=1e-12)
    assert -100.0 <= data["score"] <= 100.0


def test_score_components(files):
    args, _ = arguments("sari", files)
    sari = json.loads(CliRunner().invoke(app, ["score", "--metric", "sari", *args, "--json"]).stdout)
    assert set(sari["components"]) == {"add", "keep", "del"} and "ci" not in sari
    args, _ = arguments("m2", files)
    m2 = json.loads(CliRunner().invoke(app, ["score", "--metric", "m2", *args, "--json"]).stdout)
    assert {"P", "R", "F0.5", "correct", "proposed", "gold"} <= set(m2["components"])
    args, _ = arguments("errant", files)
    errant = json.loads(CliRunner().invoke(app, ["score", "--metric", "errant", *args, "--json"]).stdout)
    assert {"P", "R", "F0.5", "TP", "FP", "FN"} <= set(errant["components"])


def test_errant_from_reference_texts(files):
    result = CliRunner().invoke(
        app,
        ["score", "--metric", "errant", "--source", str(files["src"]), "--hyp", str(files["hyp"]),
         "--ref", str(files["ref0"]), "--ref", str(files["ref1"]), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    assert "annotators:2" in json.loads(result.stdout)["signature"]


def test_plain_output_is_one_line(files):
    args, _ = arguments("bleu", files)
    result = CliRunner().invoke(app, ["score", "--metric", "bleu", *args])
    assert result.exit_code == 0
    assert result.stdout.startswith("bleu = ") and "|" in result.stdout


def test_bad_input_exits_2_with_a_one_line_error(files, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("only one line\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["score", "--metric", "bleu", "--hyp", str(short), "--ref", str(files["ref0"]), "--json"]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(short) in result.stderr and "error:" in result.stderr

    bad_m2 = tmp_path / "bad.m2"
    bad_m2.write_text("S He go home .\nA 1 2|||R:VERB|||goes\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["score", "--metric", "m2", "--hyp", str(short), "--m2", str(bad_m2)])
    assert result.exit_code == 2
    assert f"{bad_m2}:2: malformed A line" in result.stderr

    result = CliRunner().invoke(app, ["score", "--metric", "rouge", "--hyp", str(short)])
    assert result.exit_code == 2 and "unknown metric" in result.stderr


def test_entry_point_exit_code_in_a_subprocess(files, tmp_path):
    empty_ref = tmp_path / "ref_with_gap.txt"
    empty_ref.write_text("\n".join(REF0[:2] + [""] + REF0[3:]) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "writetune.cli", "score", "--metric", "sari", "--source", str(files["src"]),
         "--hyp", str(files["hyp"]), "--ref", str(empty_ref), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"error: {empty_ref}:3: empty reference segment"


def test_a_hypothesis_file_of_blank_lines_is_scorable(tmp_path):
    ref = write(tmp_path / "ref.txt", "She goes home .\nHe is here .\n")
    blank = write(tmp_path / "blank.txt", "\n\n")
    code, output = score_cli("--metric", "em", "--hyp", str(blank), "--ref", str(ref), "--json")
    assert code == 0, output
    assert json.loads(output)["score"] == 0.0
