"""What a system cost to make and to keep, read when it is evaluated: its training run's wall time, hardware, method
and parameter counts (the run's `train_result.json`) and its size on disk (a LoRA run: its adapter). The evaluation
records this in the results document, so a page gathered later from the document alone (a results.json kept after
the run's directory is gone) still shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from writetune.generate import COPY_SPEC
from writetune.models import ModelSpecError, resolve
from writetune.train.loop import RESULT_FILE

TRAINING_KEYS = ("wall_s", "hardware", "method", "trainable_params", "total_params")


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _model_location(spec: str) -> Path | None:
    """Where a system's weights lie on disk (a run's model/, a model directory, the base model's converted copy)."""
    try:
        resolved = resolve(spec, convert=False)
    except (ModelSpecError, OSError, ValueError):
        return None
    path = Path(resolved.path)
    return path if path.exists() else None


def model_cost(spec: str) -> dict[str, Any]:
    """Training (wall_s, hardware, method, trainable_params, total_params) and disk (disk_bytes, disk_what) of a
    model spec, as far as they are on disk; {} for the copy baseline."""
    cost: dict[str, Any] = {}
    if not spec or spec == COPY_SPEC:
        return cost
    result = Path(spec) / RESULT_FILE
    if result.is_file():
        trained = json.loads(result.read_text(encoding="utf-8"))
        cost.update({key: trained.get(key) for key in TRAINING_KEYS})
    location = _model_location(spec)
    if location is not None:
        cost["disk_bytes"] = _directory_bytes(location)
        cost["disk_what"] = "adapter" if (location / "adapter_config.json").is_file() else "weights"
    return cost
