"""What `writetune eval` is asked to do: the options of an evaluation, checked when they are given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from writetune.generate import DecodingConfig, default_dtype
from writetune.models import resolve_device


class EvalConfigError(ValueError):
    """An evaluation configuration that cannot run; the message says which option and why."""


@dataclass
class EvalConfig:
    """Everything `writetune eval` needs. `sets` restricts the suite to those set names."""

    models: list[str]
    data_dir: Path
    out: Path
    suite: str = "writing-dev"
    decodings: list[str] = field(default_factory=lambda: ["greedy"])
    baseline: str | None = None
    strict: bool = False
    limit: int | None = None
    bootstrap: int = 1000
    batch_size: int = 64
    dtype: str = "auto"
    backend: str = "auto"
    device: str = "auto"
    shots: int = 3
    max_new_tokens: int = 256
    length_ratio: float = DecodingConfig.length_ratio  # each answer's budget: ratio x input tokens + slack
    length_slack: int = DecodingConfig.length_slack
    sets: list[str] | None = None
    seed: int = 12345
    chunk: int = 256  # requests per generation call; predictions are saved after each
    threads: int | None = None  # torch CPU threads (None: torch's default)
    shared_answers: Path | None = None  # answer files shared with other evaluations, keyed by what they depend on

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.out = Path(self.out)
        if self.shared_answers is not None:
            self.shared_answers = Path(self.shared_answers)
        if self.limit is not None and self.limit < 1:
            raise EvalConfigError("--limit must be at least 1")
        if self.bootstrap < 0:
            raise EvalConfigError("--bootstrap must be 0 (no intervals) or more")
        if self.batch_size < 1 or self.chunk < 1:
            raise EvalConfigError("--batch-size must be at least 1")
        if self.length_ratio <= 0 or self.length_slack < 0:
            raise EvalConfigError("--length-ratio must be above 0 and --length-slack at least 0")
        if self.threads is not None and self.threads < 1:
            raise EvalConfigError("--threads must be at least 1")
        if not self.data_dir.is_dir():
            raise EvalConfigError(f"--data-dir {self.data_dir}: not a directory")

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        return default_dtype(resolve_device(self.device))
