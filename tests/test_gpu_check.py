"""The GPU check's CPU smoke run: benchmarks/gpu_check.py end to end at tiny sizes (writetune vs TRL training,
the generation engine vs transformers' continuous batching, the dry run's estimate vs the measured peak)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_smoke_runs_end_to_end(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--cpu-smoke", "--out",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert done.stdout.strip().splitlines()[-1] == report["summary"]
    tiny = report["shapes"]["tiny"]
    ours, trl = tiny["writetune"], tiny["trl"]
    assert ours["peak_bytes"] <= ours["estimate_bytes"] <= 1.25 * ours["peak_bytes"]
    assert ours["tokens_per_s"] > 0 and trl["tokens_per_s"] > 0 and trl["steps"] == ours["steps"]
    # same 8 examples, same initial weights: both systems compute the same loss (bf16 matmuls: 2% apart at most)
    assert abs(ours["loss_step1"] / trl["loss_step1"] - 1) < 0.02
    generation = report["generation"]
    assert generation["writetune"]["tokens"] > 0 and generation["transformers_cb"]["tokens"] > 0
    assert "speedup_vs_trl" in report["summary"] and "generation_speedup_vs_cb" in report["summary"]
