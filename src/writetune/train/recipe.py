"""The training recipe: a typed, validated description of one run, read from YAML (keys: docs/training.md).

Unknown keys are refused, every error names the file and the key, and combinations that cannot work (a LoRA
section on a full fine-tune, both epochs and max_steps, an example budget larger than the batch) fail here, before
any model is loaded, with a sentence that says why.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from writetune.config import RecipeError, read_yaml_mapping, validate
from writetune.metrics import get_metric
from writetune.tasks import get_task

LLAMA_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# keys whose change would make a resumed run differ from the run it continues
TRAINING_KEYS = ("model", "data", "method", "lora", "optimizer", "schedule", "batch", "epochs", "max_steps", "seed",
                 "precision", "gradient_checkpointing", "attention", "edit_weight")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSettings(_Strict):
    """LoRA adapter shape. Dropout defaults to 0: with dropout > 0 PEFT runs the input of every adapted layer
    through a dropout copy, which costs 1.5-2x throughput on CPU for no measurable gain on a few thousand steps."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_LINEAR_MODULES), min_length=1)

    def peft_config(self):
        """These settings as PEFT's LoraConfig for a causal LM (no bias training)."""
        from peft import LoraConfig  # torch loads on use (through peft): reading a recipe does not need it

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none", task_type="CAUSAL_LM")


class OptimizerSettings(_Strict):
    """AdamW. `max_grad_norm` clips the global gradient norm (null: no clipping)."""

    name: Literal["adamw"] = "adamw"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)


class ScheduleSettings(_Strict):
    """Learning-rate schedule: linear warm-up, then cosine or linear decay to `min_lr_ratio` x lr, or constant."""

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0.0, lt=1.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_warmup(self) -> "ScheduleSettings":
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("give warmup_steps or warmup_ratio, not both: they say the same thing twice")
        return self


class BatchSettings(_Strict):
    """Batching by tokens. Each micro-batch is one packed row of at most `tokens` real tokens (no padding);
    `grad_accum` micro-batches per process make one optimizer step. Examples longer than `max_example_tokens`
    (default: `tokens`) are left out of training and counted in the log."""

    tokens: int = Field(2048, ge=16)
    grad_accum: int = Field(1, ge=1)
    max_example_tokens: int | None = Field(None, ge=8)

    @model_validator(mode="after")
    def _fits(self) -> "BatchSettings":
        if self.max_example_tokens is not None and self.max_example_tokens > self.tokens:
            raise ValueError(f"max_example_tokens ({self.max_example_tokens}) is larger than tokens ({self.tokens}): "
                             "an example must fit in one packed row")
        return self

    @property
    def example_limit(self) -> int:
        return self.max_example_tokens or self.tokens


class CheckpointSettings(_Strict):
    """A checkpoint every `every` steps (0: only at the end); the last `keep_last` are kept."""

    every: int = Field(100, ge=0)
    keep_last: int = Field(2, ge=1)


class EvalSettings(_Strict):
    """In-training evaluation, every `every` steps (0: never) and at step 0 when `at_start` is set: the dev loss on
    `loss_examples` dev records (null: all), then greedy generation on `generate_per_task` dev records of each task
    that has a metric, scored with the task's metric (or `metrics[task]`) and the copy rate."""

    every: int = Field(100, ge=0)
    at_start: bool = True
    loss_examples: int | None = Field(256, ge=1)
    generate_per_task: int = Field(24, ge=0)
    tasks: list[str] | None = None
    metrics: dict[str, str] = Field(default_factory=dict)
    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(16, ge=1)
    at_end: bool = True

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str] | None) -> list[str] | None:
        for task in value or []:
            _check_task(task)
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: dict[str, str]) -> dict[str, str]:
        for task, metric in value.items():
            _check_task(task)
            _check_metric(metric)
        return value


class LogSettings(_Strict):
    """Where the run reports: metrics.jsonl always; TensorBoard, W&B and the progress bar as chosen."""

    every: int = Field(1, ge=1)
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "writetune"
    progress: bool = True


class TrainRecipe(_Strict):
    """One training run. Paths are relative to the current directory."""

    model: str = "smollm2-135m"
    data: str
    output_dir: str
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings | None = None
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "bf16"
    gradient_checkpointing: bool = False
    edit_weight: float = Field(3.0, ge=1.0)
    attention: Literal["varlen", "sdpa"] = "varlen"
    threads: int | None = Field(None, ge=1)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _combinations(self) -> "TrainRecipe":
        if self.method == "full" and self.lora is not None:
            raise ValueError("method is 'full' but a 'lora' section is given: a full fine-tune trains every weight "
                             "and has no adapter; remove the section or set method: lora")
        if self.method == "lora" and self.lora is None:
            self.lora = LoraSettings()
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("give epochs or max_steps, not both: the length of the run and the learning-rate "
                             "schedule must follow from one of them")
        if self.log.wandb and importlib.util.find_spec("wandb") is None:
            raise ValueError("log.wandb is true but the wandb package is not installed (pip install wandb), "
                             "or set log.wandb: false")
        return self

    @property
    def num_epochs(self) -> float:
        return self.epochs if self.epochs is not None else 1.0

    def training_view(self) -> dict[str, Any]:
        """The keys that define what is trained (a resumed run must match them)."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in TRAINING_KEYS}


def _check_task(name: str) -> None:
    get_task(name)  # raises UnknownTaskError (a ValueError) naming the known tasks


def _check_metric(name: str) -> None:
    get_metric(name)


def _set_dotted(data: dict, dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{origin}: key '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """`key.sub=value` strings (values parsed as YAML) into (key, value) pairs."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optimizer.lr=1e-4")
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
    return out


def recipe_from_dict(data: dict, where: str = "recipe") -> TrainRecipe:
    """A training recipe from already-parsed keys; `where` names their origin in errors."""
    return validate(TrainRecipe, data, where, error=RecipeError,
                    unknown_key="unknown key (see docs/training.md for the recipe keys)")


def load_train_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                settings: Mapping[str, Any] | None = None) -> TrainRecipe:
    """Read, override and validate a recipe file: `overrides` are `key.sub=value` strings (values read as YAML),
    `settings` already-parsed values under dotted keys, applied after them."""
    path = Path(path)
    data = read_yaml_mapping(path, what="recipe", keys_hint="model, data, output_dir, ...", error=RecipeError,
                             empty_ok=True)
    for key, value in parse_overrides(overrides):
        _set_dotted(data, key, value, f"{path} (--set)")
    for key, value in (settings or {}).items():
        _set_dotted(data, key, value, str(path))
    return recipe_from_dict(data, str(path))


def dump_recipe(recipe: TrainRecipe) -> str:
    """The recipe as YAML, every key written out (the run directory's copy)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
