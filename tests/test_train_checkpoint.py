"""Checkpoints: atomic writes, keep-last-K, and a run killed with SIGKILL that resumes onto the same loss curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.train import tiny_recipe, write_recipe
from writetune.train import checkpoint as ckpt
from writetune.train.logs import read_metrics
from writetune.train.loop import RunDirError, train
from writetune.train.recipe import recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _fake_save(writer, step, fail=False):
    def write_model(d):
        (d / "model").mkdir()
        (d / "model" / "weights.bin").write_bytes(b"w" * 10)

    def write_optim(d):
        if fail:
            raise RuntimeError("killed while writing")
        (d / "optimizer.pt").write_bytes(b"o")

    return writer.save(step, {"step": step, "plan": "x"}, write_model, write_optim)


def test_checkpoint_is_atomic_and_keeps_last_k(tmp_path):
    writer = ckpt.CheckpointWriter(tmp_path, keep_last=2)
    for step in (2, 4, 6):
        _fake_save(writer, step)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]
    with pytest.raises(RuntimeError):
        _fake_save(writer, 8, fail=True)
    # the half-written checkpoint is invisible, and cleaned away on the next start
    assert ckpt.latest_checkpoint(tmp_path).name == "step-6"
    assert (tmp_path / "checkpoints" / ".tmp-step-8").is_dir()
    assert ckpt.remove_stale(tmp_path) and not (tmp_path / "checkpoints" / ".tmp-step-8").exists()
    assert json.loads((tmp_path / "checkpoints" / "step-6" / "state.json").read_text())["step"] == 6


def test_rng_state_round_trip():
    import random

    import numpy as np
    import torch

    state = ckpt.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_existing_run_needs_resume_and_the_same_recipe(tmp_path, tiny_model_dir):
    recipe = tiny_recipe(tmp_path, tiny_model_dir, max_steps=2)
    train(recipe_from_dict(recipe))
    with pytest.raises(RunDirError, match="pass --resume"):
        train(recipe_from_dict(recipe))
    recipe["optimizer"]["lr"] = 0.5
    with pytest.raises(RunDirError, match="keys: optimizer"):
        train(recipe_from_dict(recipe), resume=True)


def test_sigkill_then_resume_reproduces_the_loss_curve(tmp_path, tiny_model_dir):
    steps = 40
    overrides = dict(max_steps=steps, precision="bf16", checkpoint__every=5, checkpoint__keep_last=2, eval__every=10,
                     eval__loss_examples=8, optimizer__lr=3e-3, schedule__name="cosine", schedule__warmup_steps=3)
    # the uninterrupted run, in this process
    reference = tiny_recipe(tmp_path / "a", tiny_model_dir, **overrides)
    train(recipe_from_dict(reference))
    expected = {r["step"]: r for r in read_metrics(reference["output_dir"]) if r["kind"] == "train"}

    recipe = tiny_recipe(tmp_path / "b", tiny_model_dir, **overrides)
    path = write_recipe(tmp_path / "b.yaml", recipe)
    run_dir = Path(recipe["output_dir"])
    env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.Popen([sys.executable, "-m", "writetune.cli", "train", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = [r["step"] for r in read_metrics(run_dir) if r.get("kind") == "train"]
        if done and done[-1] >= 12:
            proc.send_signal(signal.SIGKILL)
            killed_at = done[-1]
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert killed_at is not None, proc.stderr.read().decode()[-2000:]
    assert proc.returncode == -signal.SIGKILL
    assert killed_at < steps, "the run finished before it could be killed"
    last = ckpt.latest_checkpoint(run_dir)
    assert last is not None and int(last.name.split("-")[1]) <= killed_at

    result = train(recipe_from_dict(recipe), resume=True)
    assert result.resumed_from == int(last.name.split("-")[1])
    rows = read_metrics(run_dir)
    train_steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert train_steps == list(range(1, steps + 1))  # every step logged exactly once
    for row in rows:
        if row["kind"] == "train":
            assert row["loss"] == pytest.approx(expected[row["step"]]["loss"], rel=1e-6, abs=1e-7), row["step"]
    dev = {r["step"]: r["dev_loss"] for r in rows if r["kind"] == "eval"}
    dev_expected = {r["step"]: r["dev_loss"] for r in read_metrics(reference["output_dir"]) if r["kind"] == "eval"}
    assert dev.keys() == dev_expected.keys()
    for step, value in dev.items():
        assert value == pytest.approx(dev_expected[step], rel=1e-6)
    assert len(ckpt.list_checkpoints(run_dir)) == 2


def test_full_finetune_bf16_with_checkpointing_resumes_exactly(tmp_path, tiny_model_dir):
    """Full weights, bf16 autocast and gradient checkpointing: resuming from step 2 replays steps 3-4 exactly."""
    import shutil

    recipe = tiny_recipe(tmp_path, tiny_model_dir, max_steps=4, precision="bf16", gradient_checkpointing=True,
                         optimizer__lr=1e-3, checkpoint__every=2, checkpoint__keep_last=3)
    recipe["method"] = "full"
    del recipe["lora"]
    first = train(recipe_from_dict(recipe))
    assert (first.run_dir / "model" / "model.safetensors").is_file()
    shutil.rmtree(first.run_dir / "checkpoints" / "step-4")  # as if killed after step 2's checkpoint
    before = ckpt.read_state(first.run_dir / "checkpoints" / "step-2")["wall_s"]
    assert 0 < before < first.wall_s
    second = train(recipe_from_dict(recipe), resume=True)
    assert second.resumed_from == 2
    assert second.train_losses == pytest.approx(first.train_losses[2:], rel=1e-6)
    # the training's wall time counts the steps before the checkpoint it resumed from, not only this invocation
    recorded = json.loads((first.run_dir / "train_result.json").read_text())
    assert recorded["wall_s"] == pytest.approx(before + recorded["wall_s_this_run"], abs=0.02)
    assert second.wall_s == pytest.approx(recorded["wall_s"], abs=0.01)
