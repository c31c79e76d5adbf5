"""Where a run reports: `metrics.jsonl` (one JSON object per line, the record of truth), TensorBoard event files,
W&B when asked for, and a progress bar with tokens/s and ETA. Only the main process logs.

A resumed run first cuts `metrics.jsonl` back to the checkpoint's step and opens TensorBoard with `purge_step`, so
the logs of a killed-and-resumed run read like those of a run that was never interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from writetune.atomic import write_text_atomic

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                break
    return rows


def truncate_metrics(run_dir: str | Path, step: int) -> None:
    """Keep only records up to and including `step` (atomically)."""
    run_dir = Path(run_dir)
    rows = [row for row in read_metrics(run_dir) if row.get("step", 0) <= step]
    write_text_atomic(run_dir / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in rows))


def _flatten(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step",):
            out[name] = float(value)
    return out


class RunLogger:
    """Appends records to metrics.jsonl and mirrors their numbers to TensorBoard and W&B."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool, wandb: bool, wandb_project: str,
                 resume_step: int | None, config: dict):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if resume_step is not None:
            truncate_metrics(self.run_dir, resume_step)
        self.fh = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        if tensorboard:
            kwargs = {"purge_step": resume_step + 1} if resume_step is not None else {}
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), **kwargs)
        if wandb:
            try:
                import wandb as wandb_module  # optional: wandb is no dependency, only log.wandb needs it
            except ImportError as err:  # checked when the recipe is read; kept for installs that break later
                raise ValueError("log.wandb is true but wandb cannot be imported; pip install wandb") from err
            self.wandb = wandb_module.init(project=wandb_project, dir=str(self.run_dir), config=config,
                                           resume="allow", name=self.run_dir.name)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        step = int(record.get("step", 0))
        kind = record.get("kind", "train")
        numbers = _flatten({k: v for k, v in record.items() if k not in ("kind", "samples")}, f"{kind}/")
        numbers = {k: v for k, v in numbers.items() if "/samples/" not in k}
        if self.tb is not None:
            for name, value in numbers.items():
                self.tb.add_scalar(name, value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.fh.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class Progress:
    """A tqdm bar over optimizer steps showing loss, real tokens/s and the ETA."""

    def __init__(self, total: int, initial: int, enabled: bool, say=None):
        self.bar = None
        self.say = say or (lambda message: None)
        if enabled:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="train")

    def update(self, loss: float, tokens_per_s: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", lr=f"{lr:.2e}", refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.say(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
