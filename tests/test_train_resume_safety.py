"""Resuming never unpickles code: a real tiny run's checkpoint holds only what `torch.load(weights_only=True)`
reads, and a checkpoint file replaced by a pickle that would run code stops the resume with a message naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from support.train import tiny_recipe
from writetune.train import checkpoint as ckpt
from writetune.train.loop import train
from writetune.train.recipe import recipe_from_dict


class _RunsCode:
    """Unpickling this creates a file: the stand-in for arbitrary code in a crafted checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("resume-safety")
    recipe = tiny_recipe(root, tiny_model_dir, max_steps=4)
    train(recipe_from_dict(recipe))
    return recipe


def interrupted_copy(recipe: dict, where: Path) -> dict:
    """A copy of the run as a run killed after step 2 would have left it (what `writetune run` resumes by itself)."""
    run = Path(recipe["output_dir"])
    shutil.copytree(run, where)
    shutil.rmtree(where / "checkpoints" / "step-4")
    shutil.rmtree(where / "model", ignore_errors=True)
    return {**recipe, "output_dir": str(where)}


def test_checkpoint_files_load_with_weights_only(finished_run):
    checkpoint = ckpt.latest_checkpoint(finished_run["output_dir"])
    files = sorted(checkpoint.glob("*.pt"))
    assert {f.name for f in files} == {"optimizer.pt", "scheduler.pt", "rng-rank0.pt"}
    for f in files:
        torch.load(f, weights_only=True)


@pytest.mark.parametrize("name", ["rng-rank0.pt", "optimizer.pt", "scheduler.pt"])
def test_a_crafted_checkpoint_file_is_refused_without_running_it(tmp_path, finished_run, name):
    recipe = interrupted_copy(finished_run, tmp_path / "copied-run")
    marker = tmp_path / "code-ran"
    planted = Path(recipe["output_dir"]) / "checkpoints" / "step-2" / name
    torch.save(_RunsCode(marker), planted)
    with pytest.raises(ValueError, match=rf"{planted}: not loaded"):
        train(recipe_from_dict(recipe), resume=True)
    assert not marker.exists()


def test_an_interrupted_copy_still_resumes(tmp_path, finished_run):
    recipe = interrupted_copy(finished_run, tmp_path / "copied-run")
    result = train(recipe_from_dict(recipe), resume=True)
    assert result.resumed_from == 2 and result.steps == 4
