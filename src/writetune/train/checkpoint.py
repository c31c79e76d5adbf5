"""Checkpoints of a training run: written atomically, the last K kept, everything needed to continue exactly.

A checkpoint `checkpoints/step-N/` holds the trainable weights as a loadable model (`model/`: a PEFT adapter or full
weights, with tokenizer and prompt_format.json), the optimizer and scheduler state, every process's RNG state
(`rng-rank{r}.pt`: Python, NumPy, torch CPU and CUDA) and `state.json` (step, epoch, tokens seen, and the
fingerprint of the data-order plan). Every `.pt` file holds only tensors, numbers, strings and containers of them, and
is read with `torch.load(weights_only=True)`: a checkpoint copied from elsewhere cannot run code when a run resumes
from it. It is written into `checkpoints/.tmp-step-N/` and swapped into place (`writetune.atomic.atomic_dir`), so a run
killed while saving leaves either the whole checkpoint or none; stale temporary directories are removed on the next
start. Under FSDP the model and optimizer go through `accelerator.save_state` (sharded), inside the same rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from writetune.atomic import atomic_dir

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_stale(run_dir: str | Path) -> list[Path]:
    """Delete temporary directories left by a run killed while saving."""
    root = checkpoint_root(run_dir)
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".tmp-"):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def prune(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints."""
    found = list_checkpoints(run_dir)
    doomed = [path for _, path in found[:-keep_last]] if keep_last > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def rng_state() -> dict:
    """Every generator's state as tensors, numbers and tuples (what `weights_only` loading accepts)."""
    numpy = np.random.get_state(legacy=False)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"bit_generator": numpy["bit_generator"], "key": torch.from_numpy(numpy["state"]["key"].copy()),
                       "pos": int(numpy["state"]["pos"]), "has_gauss": int(numpy["has_gauss"]),
                       "gauss": float(numpy["gauss"])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state({"bit_generator": numpy["bit_generator"], "has_gauss": numpy["has_gauss"],
                         "gauss": numpy["gauss"], "state": {"key": numpy["key"].numpy(), "pos": numpy["pos"]}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(path: Path) -> None:
    for child in path.rglob("*"):
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())


class CheckpointWriter:
    """Writes `step-N` atomically from every process of a run; `write_model` is called on the main process only
    (or on all under FSDP, where saving is collective)."""

    def __init__(self, run_dir: str | Path, keep_last: int, accelerator=None):
        self.root = checkpoint_root(run_dir)
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.acc = accelerator

    def _barrier(self) -> None:
        if self.acc is not None:
            self.acc.wait_for_everyone()

    @property
    def _main(self) -> bool:
        return self.acc is None or self.acc.is_main_process

    @property
    def _rank(self) -> int:
        return 0 if self.acc is None else self.acc.process_index

    def save(self, step: int, state: dict, write_model, write_optim, sharded: bool = False) -> Path:
        """`write_model(dir)` and `write_optim(dir)` write the model and optimizer/scheduler state into `dir`."""
        tmp = self.root / f".tmp-step-{step}"  # every process writes into it, so its name is fixed
        final = self.root / f"step-{step}"
        # the main process stages the directory and swaps it into place (replacing a checkpoint of this step from an
        # earlier attempt); the others only write into it, between the barriers
        with atomic_dir(final, staging=tmp) if self._main else contextlib.nullcontext(tmp):
            self._barrier()
            torch.save(rng_state(), tmp / f"rng-rank{self._rank}.pt")
            if sharded or self._main:
                write_model(tmp)
                write_optim(tmp)
            self._barrier()
            if self._main:
                (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
                _fsync_tree(tmp)
        if self._main:
            prune(self.run_dir, self.keep_last)
        self._barrier()
        return final


def read_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def load_state_file(path: str | Path):
    """A checkpoint `.pt` file, loaded with `weights_only=True` (tensors and plain data only, never code). A file
    that needs more (a pickled object: written by an older version, or crafted) is refused with a message."""
    path = Path(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not loaded: it holds more than tensors and plain data, or is damaged ({first}); "
                         "a checkpoint is loaded only with weights_only=True") from None


def load_rng(checkpoint: str | Path, rank: int) -> None:
    path = Path(checkpoint) / f"rng-rank{rank}.pt"
    if not path.is_file():
        raise ValueError(f"{path}: missing; the checkpoint was written by a run with fewer processes")
    set_rng_state(load_state_file(path))
