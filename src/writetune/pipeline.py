"""`writetune run`: one recipe from corpora to report — build the mix, train, evaluate base, copy and tuned rows.

A run recipe names a mix recipe and a training recipe (paths relative to the run recipe) and the evaluation to
run. Everything lands in one directory: `data/` (the mix), the training run itself (`model/`, `checkpoints/`,
`metrics.jsonl`, ...; so the directory is a model spec), and `eval/` (results, predictions, report, plots). Each
stage is skipped when its output is complete and resumes when it was interrupted, so re-running the same command
after a crash or a kill continues where it stopped. Under `accelerate launch` the main process builds the mix while
the others wait, every process trains, and the main process evaluates.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from writetune.config import RecipeError, load_validated
from writetune.data.build import build_mix
from writetune.data.evalsets import SUITES
from writetune.data.recipe import DATA_ENV, load_mix_recipe, resolve_data_dir
from writetune.data.record import MANIFEST_FILE
from writetune.generate import DecodingConfig
from writetune.train.recipe import load_train_recipe

RUN_RECIPE_COPY = "run.yaml"
DATA_DIR = "data"
EVAL_DIR = "eval"
BASE_SYSTEM = "base"  # in eval.baselines: the training recipe's base model, zero-shot
FEW_SHOT_BASE = "few-shot:base"
TUNED_SYSTEM = "tuned"  # the row of the run's own model


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
    length_ratio: float = Field(DecodingConfig.length_ratio, gt=0)  # answer budget: ratio x input tokens + slack
    length_slack: int = Field(DecodingConfig.length_slack, ge=0)
    dtype: str = "auto"
    threads: int | None = Field(None, ge=1)

    @field_validator("suite")
    @classmethod
    def _suites(cls, value: str) -> str:
        """One suite or several, comma-separated (`writing-dev,general`), each a registered one."""
        for name in value.split(","):
            if name.strip() not in SUITES:
                raise ValueError(f"unknown suite '{name.strip()}' (known: {', '.join(SUITES)}; several: "
                                 "comma-separated)")
        return value


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
class StageClock:
    """The wall seconds of the named stages that ran in this invocation (a skipped stage has none)."""

    seconds: dict[str, float] = field(default_factory=dict, kw_only=True)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Record the wall time of the block as `stage`'s."""
        started = time.perf_counter()
        yield
        self.seconds[stage] = time.perf_counter() - started

    def with_time(self, stage: str, state: str) -> str:
        """`state`, followed by the stage's wall time where it ran in this invocation: `done (554 s)`."""
        return state + (f" ({self.seconds[stage]:.0f} s)" if stage in self.seconds else "")


@dataclass
class RunResult(StageClock):
    out: Path
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "done" | "skipped (already complete)" | ...
    results: dict | None = None

    def format_stages(self) -> list[str]:
        """One line per stage: its state and, where it ran here, its wall time."""
        return [f"{stage}: {self.with_time(stage, state)}" for stage, state in self.stages.items()]


def load_run_recipe(path: str | Path) -> RunRecipe:
    """Read and validate a run recipe file."""
    return load_validated(path, RunRecipe, what="run recipe", keys_hint="data, train, eval", error=RecipeError)


def relative_to(recipe_path: Path, value: str) -> Path:
    """A path written in a recipe file: absolute as given, else relative to that file's directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else recipe_path.parent / path


def resolve_run_data_dir(cli_value: str | Path | None, recipe: RunRecipe, recipe_path: Path) -> Path:
    """--data-dir, else $WRITETUNE_DATA, else the run recipe's `data_dir` (relative to the run recipe), else the mix
    recipe's. Training data and evaluation sets both come from it."""
    if not cli_value and not os.environ.get(DATA_ENV) and recipe.data_dir:
        cli_value = relative_to(recipe_path, recipe.data_dir)
    mix_path = relative_to(recipe_path, recipe.data)
    return resolve_data_dir(cli_value, load_mix_recipe(mix_path), mix_path)


def build_stage(mix_recipe: Path, mix_dir: Path, data_root: Path, say: Callable[[str], None]) -> str:
    """Build the mix into `mix_dir` unless a complete build is there; returns the stage's state."""
    if (mix_dir / MANIFEST_FILE).is_file():
        return "skipped (already complete)"
    build_mix(mix_recipe, mix_dir, data_dir=data_root, overwrite=True, log=say)
    return "done"


def train_stage(train_recipe_path: Path, train_set: dict[str, object], mix_dir: Path, run_dir: Path,
                say: Callable[[str], None]):
    """Train into `run_dir` (which becomes a model spec) unless it holds a finished run; a killed run resumes.
    Returns the validated training recipe and the stage's state."""
    # torch loads on use: gather imports this module without needing it
    from writetune.train.loop import RESULT_FILE, train

    settings = {**train_set, "data": str(mix_dir.resolve()), "output_dir": str(run_dir.resolve())}
    train_recipe = load_train_recipe(train_recipe_path, settings=settings)
    if (run_dir / RESULT_FILE).is_file() and (run_dir / "model").is_dir():
        return train_recipe, "skipped (already complete)"
    resume = (run_dir / "checkpoints").is_dir()
    if resume:
        say("resuming the killed training run")
    train(train_recipe, resume=resume, log=say)
    return train_recipe, "done"


def eval_config(stage: EvalStage, systems: list[str], base_model: str, data_root: Path, out: Path, *,
                shared_answers: Path | None = None):
    """The evaluation of a run or grid: the stage's baselines (`base` = the base model, named by its spec), then
    `systems` (`NAME=SPEC` rows), with the base model as the significance baseline when it is a row; answers are
    also kept in, and read from, `shared_answers` when given."""
    from writetune.evaluate import EvalConfig  # torch loads on use: gather imports this module without needing it

    rows = []
    for name in stage.baselines:
        rows.append(base_model if name == BASE_SYSTEM else f"few-shot:{base_model}" if name == FEW_SHOT_BASE else name)
    baseline = None
    if BASE_SYSTEM in stage.baselines:  # with several decodings, the base model's first strategy
        baseline = base_model if len(stage.decodings) == 1 else \
            f"{base_model} [{DecodingConfig.parse(stage.decodings[0]).name}]"
    return EvalConfig(
        models=[*rows, *systems],
        data_dir=data_root,
        out=out,
        suite=stage.suite,
        sets=stage.sets,
        decodings=stage.decodings,
        baseline=baseline,
        limit=stage.limit,
        bootstrap=stage.bootstrap,
        batch_size=stage.batch_size,
        max_new_tokens=stage.max_new_tokens,
        length_ratio=stage.length_ratio,
        length_slack=stage.length_slack,
        dtype=stage.dtype,
        threads=stage.threads,
        shared_answers=shared_answers,
    )


@dataclass(frozen=True)
class Processes:
    """Where this process stands under `accelerate launch` (one process otherwise): the main process builds mixes
    and evaluates while the others wait at `barrier`; every process trains."""

    is_main: bool = True
    count: int = 1

    def barrier(self) -> None:
        if self.count > 1:
            from accelerate import PartialState  # torch loads on use: gather imports this module without needing it

            PartialState().wait_for_everyone()


def current_processes() -> Processes:
    count = int(os.environ.get("WORLD_SIZE", "1"))
    if count <= 1:
        return Processes()
    # torch loads on use: gather imports this module without needing it
    import torch
    from accelerate import PartialState

    # joins the process group that the training run will use, with the trainer's device choice (CPU: gloo)
    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(is_main=state.is_main_process, count=state.num_processes)


NOT_MAIN = "left to the main process"


def claim_output_dir(out: Path, recipe_path: Path, copy_name: str, load: Callable[[Path], object], what: str) -> None:
    """Make `out` and keep a copy of the recipe in it; refuse a directory that holds a run of another recipe."""
    out.mkdir(parents=True, exist_ok=True)
    copy = out / copy_name
    if copy.is_file() and load(copy) != load(recipe_path):
        raise RecipeError(f"{out} holds {what} of a different recipe ({copy}); choose another output directory")
    shutil.copyfile(recipe_path, copy)


def run_pipeline(recipe_path: str | Path, out: str | Path, *, data_dir: str | Path | None = None,
                 log: Callable[[str], None] | None = None) -> RunResult:
    """Run (or continue) every stage of a run recipe into `out`."""
    from writetune.evaluate import run_evaluation  # torch loads on use: gather imports this module without needing it

    say = log or (lambda message: None)
    recipe_path = Path(recipe_path)
    recipe = load_run_recipe(recipe_path)
    out = Path(out)
    result = RunResult(out=out)
    data_root = resolve_run_data_dir(data_dir, recipe, recipe_path)
    processes = current_processes()
    if processes.is_main:
        claim_output_dir(out, recipe_path, RUN_RECIPE_COPY, load_run_recipe, "a run")
        say("stage 1/3: building the instruction mix")
        with result.timed("data"):
            result.stages["data"] = build_stage(relative_to(recipe_path, recipe.data), out / DATA_DIR, data_root, say)
    else:
        result.stages["data"] = NOT_MAIN
    processes.barrier()
    # the training run directory is `out` itself, so `out` is a model spec
    say("stage 2/3: training")
    with result.timed("train"):
        train_recipe, result.stages["train"] = train_stage(relative_to(recipe_path, recipe.train), recipe.train_set,
                                                           out / DATA_DIR, out, say)
    processes.barrier()
    if not processes.is_main:
        result.stages["eval"] = NOT_MAIN
        return result
    config = eval_config(recipe.eval, [f"{TUNED_SYSTEM}={out.resolve()}"], train_recipe.model, data_root,
                         out / EVAL_DIR)
    say("stage 3/3: evaluating " + ", ".join(config.models))
    with result.timed("eval"):
        result.results = run_evaluation(config)  # also writes report.md, results.csv and plots/ into the eval dir
    result.stages["eval"] = "done"
    return result


def dry_run_pipeline(recipe_path: str | Path, out: str | Path, *, data_dir: str | Path | None = None, **options):
    """The training stage's dry run (`writetune.train.dryrun.plan_run`) as `run_pipeline` would set it up: the run
    recipe, its mix recipe, its data directory and its evaluation settings are validated, the training recipe gets
    the run's data and output directories, and the example count comes from the mix recipe's size until the mix is
    built. `options` are plan_run's."""
    from writetune.train.dryrun import plan_run  # torch loads on use: gather imports this module without needing it

    recipe_path = Path(recipe_path)
    recipe = load_run_recipe(recipe_path)
    out = Path(out)
    mix = load_mix_recipe(relative_to(recipe_path, recipe.data))
    data_root = resolve_run_data_dir(data_dir, recipe, recipe_path)
    settings = {**recipe.train_set, "data": str((out / DATA_DIR).resolve()), "output_dir": str(out.resolve())}
    train_recipe = load_train_recipe(relative_to(recipe_path, recipe.train), settings=settings)
    eval_config(recipe.eval, [f"{TUNED_SYSTEM}={out.resolve()}"], train_recipe.model, data_root, out / EVAL_DIR)
    options.setdefault("examples", None)
    options["examples"] = options["examples"] or mix.size
    return plan_run(train_recipe, **options)
