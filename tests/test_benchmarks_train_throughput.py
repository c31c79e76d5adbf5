"""benchmarks/train_throughput.py end to end on the tiny model: its writetune row trains through the Trainer's parts
and reports tokens/s, the measured bf16 matmul peak and an MFU computed from them (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support.train import write_tiny_mix

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def test_writetune_row_reports_tokens_per_second_and_mfu(tmp_path, tiny_model_dir):
    mix = write_tiny_mix(tmp_path / "mix", n_train=8, n_dev=2)
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(mix), "--model", str(tiny_model_dir),
                           "--examples", "8", "--systems", "writetune", "--precision", "fp32"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    peak = re.search(r"bf16 matmul peak measured (\d+) GFLOP/s, ([\d.]+) GFLOPs per trained token", done.stdout)
    assert peak and int(peak.group(1)) > 0, done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("| writetune |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    examples, tokens, tokens_per_s, mfu = int(cells[2]), int(cells[3]), float(cells[5]), cells[7]
    assert examples == 8 and tokens > 8 and tokens_per_s > 0
    assert re.fullmatch(r"\d+%", mfu), mfu
