"""`writetune run`: one recipe from corpora to report — build the mix, train, evaluate base, copy and tuned rows.

A run recipe names a mix recipe and a training recipe (paths relative to the run recipe) and the evaluation to
run. Everything lands in one directory: `data/` (the mix), the training run itself (`model/`, `checkpoints/`,
`metrics.jsonl`, ...; so the directory is a model spec), and `eval/` (results, predictions, report, plots). Each
stage is skipped when its output is complete and resumes when it was interrupted, so re-running the same command
after a crash or a kill continues where it stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from writetune.config import ConfigError, read_yaml_mapping, validation_message

RUN_RECIPE_COPY = "run.yaml"
DATA_DIR = "data"
EVAL_DIR = "eval"
BASE_SYSTEM = "base"  # in eval.baselines: the training recipe's base model, zero-shot
FEW_SHOT_BASE = "few-shot:base"


class RunRecipeError(ConfigError):
    """A run recipe that cannot be used; the message names the file and the key."""


class EvalStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str = "writing-dev"
    sets: list[str] | None = None
    baselines: list[str] = Field(default_factory=lambda: [BASE_SYSTEM, "copy"])
    limit: int | None = Field(None, ge=1)
    decodings: list[str] = Field(default_factory=lambda: ["greedy"])
    bootstrap: int = Field(1000, ge=0)
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    dtype: str = "auto"


class RunRecipe(BaseModel):
    """The run recipe's keys. `data` and `train` are paths relative to the run recipe file; `train_set` overrides
    training-recipe keys (dotted, as `writetune train --set`)."""

    model_config = ConfigDict(extra="forbid")

    data: str
    train: str
    data_dir: str | None = None
    train_set: dict[str, object] = Field(default_factory=dict)
    eval: EvalStage = Field(default_factory=EvalStage)


@dataclass
class RunResult:
    out: Path
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "done" | "skipped (already complete)" | ...
    results: dict | None = None


def load_run_recipe(path: str | Path) -> RunRecipe:
    path = Path(path)
    data = read_yaml_mapping(path, what="run recipe", keys_hint="data, train, eval", error=RunRecipeError)
    try:
        return RunRecipe.model_validate(data)
    except ValidationError as err:
        raise RunRecipeError(validation_message(path, err)) from err


def _relative_to(recipe_path: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else recipe_path.parent / path


def resolve_run_data_dir(cli_value: str | Path | None, recipe: RunRecipe, recipe_path: Path) -> Path:
    """--data-dir, else $WRITETUNE_DATA, else the run recipe's `data_dir` (relative to the run recipe), else the mix
    recipe's. Training data and evaluation sets both come from it."""
    import os

    from writetune.data.build import DATA_ENV, resolve_data_dir
    from writetune.data.build import load_recipe as load_mix_recipe

    if not cli_value and not os.environ.get(DATA_ENV) and recipe.data_dir:
        cli_value = _relative_to(recipe_path, recipe.data_dir)
    mix_path = _relative_to(recipe_path, recipe.data)
    return resolve_data_dir(cli_value, load_mix_recipe(mix_path), mix_path)


def _systems(recipe: RunRecipe, base_model: str, tuned: str) -> list[str]:
    systems = []
    for name in recipe.eval.baselines:
        if name == BASE_SYSTEM:
            systems.append(base_model)
        elif name == FEW_SHOT_BASE:
            systems.append(f"few-shot:{base_model}")
        else:
            systems.append(name)
    return [*systems, tuned]


def run_pipeline(recipe_path: str | Path, out: str | Path, *, data_dir: str | Path | None = None,
                 log: Callable[[str], None] | None = None) -> RunResult:
    """Run (or continue) every stage of a run recipe into `out`."""
    from writetune.data.build import build_mix
    from writetune.evaluate import EvalConfig, run_evaluation
    from writetune.train.loop import RESULT_FILE, train
    from writetune.train.recipe import load_recipe

    say = log or (lambda message: None)
    recipe_path = Path(recipe_path)
    recipe = load_run_recipe(recipe_path)
    out = Path(out)
    result = RunResult(out=out)
    data_root = resolve_run_data_dir(data_dir, recipe, recipe_path)
    out.mkdir(parents=True, exist_ok=True)
    copy = out / RUN_RECIPE_COPY
    if copy.is_file() and load_run_recipe(copy) != recipe:
        raise RunRecipeError(f"{out} holds a run of a different recipe ({copy}); choose another output directory")
    shutil.copyfile(recipe_path, copy)

    # 1. data
    mix = out / DATA_DIR
    if (mix / "manifest.json").is_file():
        result.stages["data"] = "skipped (already complete)"
    else:
        say("stage 1/3: building the instruction mix")
        build_mix(_relative_to(recipe_path, recipe.data), mix, data_dir=data_root, overwrite=True, log=say)
        result.stages["data"] = "done"

    # 2. training (the run directory is `out` itself, so `out` is a model spec)
    overrides = [f"{key}={value}" for key, value in recipe.train_set.items()]
    overrides += [f"data={mix.resolve()}", f"output_dir={out.resolve()}"]
    train_recipe = load_recipe(_relative_to(recipe_path, recipe.train), overrides)
    if (out / RESULT_FILE).is_file() and (out / "model").is_dir():
        result.stages["train"] = "skipped (already complete)"
    else:
        resume = (out / "checkpoints").is_dir()
        say("stage 2/3: training" + (" (resuming)" if resume else ""))
        train(train_recipe, resume=resume, log=say)
        result.stages["train"] = "done"

    # 3. evaluation: base, baselines and the tuned model, with the base model as the significance baseline
    eval_dir = out / EVAL_DIR
    config = EvalConfig(
        models=_systems(recipe, train_recipe.model, str(out.resolve())),
        data_dir=data_root,
        out=eval_dir,
        suite=recipe.eval.suite,
        sets=recipe.eval.sets,
        decodings=recipe.eval.decodings,
        baseline=train_recipe.model if BASE_SYSTEM in recipe.eval.baselines else None,
        limit=recipe.eval.limit,
        bootstrap=recipe.eval.bootstrap,
        batch_size=recipe.eval.batch_size,
        max_new_tokens=recipe.eval.max_new_tokens,
        dtype=recipe.eval.dtype,
    )
    say("stage 3/3: evaluating " + ", ".join(config.models))
    result.results = run_evaluation(config)  # also writes report.md, results.csv and plots/ into eval_dir
    result.stages["eval"] = "done"
    return result
