"""What several metric test files use: writing a file to score, running ``writetune score``, and a small gold M2
file (two sentences, one edit each)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from writetune.cli import app

GOLD = "S She go to school every day .\nA 1 2|||R:VERB:SVA|||goes|||REQUIRED|||-NONE-|||0\n\n" \
       "S He buyed apples .\nA 1 2|||R:VERB:INFL|||bought|||REQUIRED|||-NONE-|||0\n\n"


def write(path: Path, text: str | bytes) -> Path:
    """Write `text` (UTF-8) or bytes to `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def score_cli(*args: str) -> tuple[int, str]:
    """Exit code and output of ``writetune score ARGS``."""
    result = CliRunner().invoke(app, ["score", *args])
    return result.exit_code, result.output
