"""The distributed path on CPU: `accelerate launch` with 2 processes (gloo) trains the same model as one process
that accumulates the same global batch (per-step losses, dev loss and final adapter weights agree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.train import tiny_recipe, write_recipe
from writetune.train.logs import read_metrics
from writetune.train.loop import train
from writetune.train.recipe import recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _accelerate() -> str:
    exe = Path(sys.executable).with_name("accelerate")
    if not exe.exists():
        found = shutil.which("accelerate")
        if not found:
            pytest.skip("accelerate's launcher is not installed")
        return found
    return str(exe)


def test_two_processes_match_one_process_with_accumulation(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    common = dict(max_steps=5, checkpoint__every=0, eval__every=5, eval__loss_examples=8, optimizer__lr=3e-3)
    two = tiny_recipe(tmp_path / "two", tiny_model_dir, batch__grad_accum=1, **common)
    path = write_recipe(tmp_path / "two.yaml", two)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [_accelerate(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "-m", "writetune.cli", "train", str(path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr

    one = tiny_recipe(tmp_path / "one", tiny_model_dir, batch__grad_accum=2, **common)
    train(recipe_from_dict(one))

    rows2, rows1 = read_metrics(two["output_dir"]), read_metrics(one["output_dir"])
    loss2 = [r["loss"] for r in rows2 if r["kind"] == "train"]
    loss1 = [r["loss"] for r in rows1 if r["kind"] == "train"]
    assert len(loss2) == len(loss1) == 5
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    tokens2 = [r["tokens"] for r in rows2 if r["kind"] == "train"]
    assert tokens2 == [r["tokens"] for r in rows1 if r["kind"] == "train"]  # the same global batches
    dev2 = [r["dev_loss"] for r in rows2 if r["kind"] == "eval"]
    assert dev2 == pytest.approx([r["dev_loss"] for r in rows1 if r["kind"] == "eval"], rel=1e-5)
    w2 = load_file(str(Path(two["output_dir"]) / "model" / "adapter_model.safetensors"))
    w1 = load_file(str(Path(one["output_dir"]) / "model" / "adapter_model.safetensors"))
    assert w2.keys() == w1.keys()
    import torch

    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-6)
    assert any(w1[name].abs().sum() > 0 for name in w1 if "lora_B" in name)  # training moved the adapter


def test_run_under_accelerate_builds_once_trains_on_both_and_evaluates_once(tmp_path, tiny_model_dir, shared_dir):
    from test_pipeline import _recipes

    recipe = _recipes(tmp_path, tiny_model_dir)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [_accelerate(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29519",
           "-m", "writetune.cli", "run", str(recipe), "-o", str(out), "--data-dir", str(shared_dir / "data")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout + done.stderr
    assert done.stdout.count("data: done") == 1 and done.stdout.count("data: left to the main process") == 1
    assert done.stdout.count("eval: done") == 1 and done.stdout.count("eval: left to the main process") == 1
    assert (out / "model").is_dir() and (out / "eval" / "results.json").is_file()
    assert [r["kind"] for r in read_metrics(out)].count("train") == 2  # max_steps of the recipe, logged once
