"""`writetune experiment`: a grid of runs that share their built mixes and one evaluation.

A grid file names a run recipe (the defaults: mix, training recipe, data directory, evaluation), training keys that
hold for every variant (`train_set`, as `writetune train --set`), optionally its own evaluation, and the variants,
each changing what it needs: another mix recipe, another training recipe, more training keys. Output, in one
directory:

    DIR/grid.yaml           the grid as given (a different grid in the same directory is refused)
    DIR/data/<mix>/         each distinct mix recipe built once and shared by the variants that use it
    DIR/runs/<variant>/     each variant's training run (a model spec)
    DIR/eval/               one evaluation: the run recipe's baseline rows (base, copy, ...) and one row per variant
                            named after it, significance against the base model; report.md, results.csv, plots/
    DIR/eval/plots/curve.png   when variants carry `x` values: each set's first metric against x, with 95% intervals

Every stage is skipped when complete and resumes when interrupted, and several processes (`accelerate launch`)
share the work, as in `writetune run`. Before anything is built, every variant is checked: its name is given once
(YAML itself would silently keep the last of two equal keys), does not collide with another variant's file name or a
baseline row, and its mix recipe, training recipe and model exist; a failure names the grid file and the key.
An evaluation may name several suites (`suite: writing-dev,general`).

Work shared by several grids (`share`, `writetune experiment --share SHARED`): a variant's training runs in
SHARED/trainings/<key>/ and DIR/runs/<variant> links to it, where the key is a digest of what the model depends on:
the mix's train and dev records and the settings that define what is trained. Another grid (or variant) that trains
the same model on the same records finds it there and skips the training, so the study's reference training (the
quickstart's mix at the study budget) runs once, not once per grid. A lock file makes a second process that needs
the same training, a grid run beside this one, wait for it rather than train it again. The evaluation keeps its
answers in SHARED/answers/ too, keyed by the set and what the answers depend on (not the row's name), so the base
row of every grid and a shared training's rows are generated once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, field_validator

from writetune.config import RecipeError, load_validated
from writetune.data.record import DEV_FILE, TRAIN_FILE
from writetune.digest import file_sha256
from writetune.evaluate import run_evaluation, split_row_name
from writetune.models import ModelSpecError, resolve
from writetune.pipeline import (
    BASE_SYSTEM,
    DATA_DIR,
    EVAL_DIR,
    FEW_SHOT_BASE,
    NOT_MAIN,
    EvalStage,
    StageClock,
    build_stage,
    claim_output_dir,
    current_processes,
    eval_config,
    load_run_recipe,
    relative_to,
    resolve_run_data_dir,
    train_stage,
)
from writetune.report import COLORS, primary_columns, save_figure
from writetune.results import cell
from writetune.train.recipe import load_train_recipe

GRID_COPY = "grid.yaml"
SHARED_TRAININGS, SHARED_ANSWERS = "trainings", "answers"  # under --share
RUNS_DIR = "runs"
CURVE_PLOT = "curve.png"
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class GridError(RecipeError):
    """A grid file that cannot be used; the message names the file and the key."""


class Variant(BaseModel):
    """One run of a grid. `data` and `train` are paths relative to the grid file (default: the run recipe's);
    `train_set` is merged over the run recipe's; `x` places the variant on the grid's x axis."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = None
    train: str | None = None
    train_set: dict[str, object] = Field(default_factory=dict)
    x: float | None = None


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    run: str  # the run recipe the variants start from, relative to the grid file
    train_set: dict[str, object] = Field(default_factory=dict)  # training keys for every variant
    eval: EvalStage | None = None  # replaces the run recipe's evaluation
    x_label: str | None = None
    variants: dict[str, Variant] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _names(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        for name in value:
            if not _VARIANT_NAME.match(name):
                raise ValueError(f"variant name '{name}': letters, digits and _.+- only, starting with a letter "
                                 "or digit")
        return value


@dataclass
class ExperimentResult(StageClock):
    out: Path
    stages: dict[str, dict[str, str]] = field(default_factory=dict)  # variant -> {"data": ..., "train": ...}
    results: dict | None = None
    curve: Path | None = None

    def format_stages(self) -> list[str]:
        """One line per variant with its stages' states and, where they ran here, their wall times; then the
        evaluation's."""
        lines = [f"{variant}: " + ", ".join(f"{stage} {self.with_time(f'{variant} {stage}', value)}"
                                             for stage, value in stages.items())
                 for variant, stages in self.stages.items()]
        if "eval" in self.seconds:
            lines.append(f"eval: {self.seconds['eval']:.0f} s")
        return lines


def _repeated_variant(path: str | Path) -> tuple[str, int] | None:
    """The first variant name that the grid file gives twice under `variants`, with its line, or None."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # read_yaml_mapping reports these
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if key.value == "variants" and isinstance(value, yaml.MappingNode):
            seen = set()
            for name, _ in value.value:
                if name.value in seen:
                    return name.value, name.start_mark.line + 1
                seen.add(name.value)
    return None


def load_grid(path: str | Path) -> Grid:
    repeated = _repeated_variant(path)
    if repeated is not None:
        raise GridError(f"{path}:{repeated[1]}: key 'variants.{repeated[0]}': variant name given twice")
    grid = load_validated(path, Grid, what="grid", keys_hint="name, run, variants", error=GridError)
    slugs = Counter(re.sub(r"[^A-Za-z0-9._-]+", "_", name) for name in grid.variants)
    for name in grid.variants:
        if slugs[re.sub(r"[^A-Za-z0-9._-]+", "_", name)] > 1:
            raise GridError(f"{path}: key 'variants.{name}': collides with another variant's name once '+' is "
                            "written '_' in file names")
    xs = [v.x for v in grid.variants.values()]
    if any(x is not None for x in xs) and any(x is None for x in xs):
        raise GridError(f"{path}: key 'variants': give `x` to every variant or to none")
    return grid


def run_experiment(grid_path: str | Path, out: str | Path, *, data_dir: str | Path | None = None,
                   share: str | Path | None = None,
                   log: Callable[[str], None] | None = None) -> ExperimentResult:
    """Build, train and evaluate every variant of a grid into `out` (or continue where a previous call stopped);
    with `share`, trainings and answers are kept there and reused by every grid that names the same directory."""
    say = log or (lambda message: None)
    grid_path, out = Path(grid_path), Path(out)
    grid = load_grid(grid_path)
    run_path = relative_to(grid_path, grid.run)
    recipe = load_run_recipe(run_path)
    data_root = resolve_run_data_dir(data_dir, recipe, run_path)
    check_variants(grid, grid_path, recipe, run_path)
    processes = current_processes()
    if processes.is_main:
        claim_output_dir(out, grid_path, GRID_COPY, load_grid, "an experiment")
    result = ExperimentResult(out=out)

    mixes: dict[Path, Path] = {}  # mix recipe -> its build directory, shared by the variants
    trainings = Path(share) / SHARED_TRAININGS if share is not None else None
    systems, base_models = [], []
    for index, (name, variant) in enumerate(grid.variants.items(), 1):
        mix_recipe = (relative_to(grid_path, variant.data) if variant.data else relative_to(run_path, recipe.data)).resolve()
        if mix_recipe not in mixes:
            mixes[mix_recipe] = out / DATA_DIR / _unique_stem(mix_recipe, mixes.values())
        mix_dir = mixes[mix_recipe]
        train_recipe = relative_to(grid_path, variant.train) if variant.train else relative_to(run_path, recipe.train)
        train_set = {**recipe.train_set, **grid.train_set, **variant.train_set}
        say(f"variant {index}/{len(grid.variants)} '{name}': mix {mix_recipe.name}, training {train_recipe.name}")
        stages = result.stages.setdefault(name, {})
        with result.timed(f"{name} data"):
            stages["data"] = build_stage(mix_recipe, mix_dir, data_root, say) if processes.is_main else NOT_MAIN
        processes.barrier()
        run_dir = out / RUNS_DIR / name
        with result.timed(f"{name} train"), _training_place(run_dir, trainings, train_recipe, train_set, mix_dir,
                                                            processes, say) as place:
            trained, stages["train"] = train_stage(train_recipe, train_set, mix_dir, place, say)
        base_models.append(trained.model)
        systems.append(f"{name}={run_dir.resolve()}")
        processes.barrier()
    if not processes.is_main:
        return result

    if len(set(base_models)) > 1:
        say(f"variants start from different base models; the 'base' row is the first one's, {base_models[0]} "
            "(name the others in eval.baselines to get their rows)")
    config = eval_config(grid.eval or recipe.eval, systems, base_models[0], data_root, out / EVAL_DIR,
                         shared_answers=Path(share) / SHARED_ANSWERS if share is not None else None)
    say("evaluating " + ", ".join(config.models))
    with result.timed("eval"):
        result.results = run_evaluation(config)
    if all(v.x is not None for v in grid.variants.values()):
        xs = {name: v.x for name, v in grid.variants.items()}
        result.curve = plot_curve(result.results, xs, grid.x_label or "x", out / EVAL_DIR / "plots" / CURVE_PLOT)
    return result


def training_key(train_recipe: Path, train_set: dict[str, object], mix_dir: Path) -> str:
    """What a training's model depends on, as a digest: the mix's train and dev records and the keys that define
    what is trained (`TrainRecipe.training_view`, the ones a resumed run must match) except the data's path."""
    recipe = load_train_recipe(train_recipe, settings={**train_set, "data": ".", "output_dir": "."})
    payload = {
        "train": file_sha256(mix_dir / TRAIN_FILE),
        "dev": file_sha256(mix_dir / DEV_FILE) if (mix_dir / DEV_FILE).is_file() else None,
        "settings": {key: value for key, value in recipe.training_view().items() if key != "data"},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@contextmanager
def _training_place(run_dir: Path, shared: Path | None, train_recipe: Path, train_set: dict[str, object],
                    mix_dir: Path, processes, say: Callable[[str], None]) -> Iterator[Path]:
    """Where the variant trains: `run_dir` itself without shared trainings (or when it already holds a run of its
    own); else the shared training of its key, which `run_dir` links to, held under a lock while it trains."""
    if shared is None or (run_dir.is_dir() and not run_dir.is_symlink()):
        yield run_dir
        return
    key = training_key(train_recipe, train_set, mix_dir)
    place = shared.resolve() / key
    if not processes.is_main:
        yield place
        return
    place.parent.mkdir(parents=True, exist_ok=True)
    if run_dir.is_symlink() and run_dir.resolve() != place:
        raise GridError(f"{run_dir}: links to {run_dir.resolve()}, but this variant's training is now {place} (its "
                        "mix or training settings changed); remove the link to train again")
    with open(place.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second grid needing this training waits here for the first
        if not run_dir.is_symlink():
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.symlink_to(place, target_is_directory=True)
        say(f"training {key} in {place} (shared)")
        processes.barrier()
        yield place
        processes.barrier()


def check_variants(grid: Grid, grid_path: Path, recipe, run_path: Path) -> None:
    """Every variant's mix recipe, training recipe (with its keys) and model exist, and no variant is named like a
    baseline row of the evaluation; raises GridError naming the grid file and the key."""

    stage = grid.eval or recipe.eval
    reserved = {split_row_name(row)[0] for row in stage.baselines if row not in (BASE_SYSTEM, FEW_SHOT_BASE)}
    base_row = None
    for name, variant in grid.variants.items():
        key = f"variants.{name}"
        if name in reserved:
            raise GridError(f"{grid_path}: key '{key}': '{name}' is also a baseline row of the evaluation")
        mix = relative_to(grid_path, variant.data) if variant.data else relative_to(run_path, recipe.data)
        if not mix.is_file():
            where = f"{grid_path}: key '{key}.data'" if variant.data else f"{run_path}: key 'data'"
            raise GridError(f"{where}: no mix recipe at {mix}")
        train = relative_to(grid_path, variant.train) if variant.train else relative_to(run_path, recipe.train)
        if not train.is_file():
            where = f"{grid_path}: key '{key}.train'" if variant.train else f"{run_path}: key 'train'"
            raise GridError(f"{where}: no training recipe at {train}")
        settings = {**recipe.train_set, **grid.train_set, **variant.train_set, "data": ".", "output_dir": "."}
        try:
            model = load_train_recipe(train, settings=settings).model
        except ValueError as err:
            raise GridError(f"{grid_path}: key '{key}': {err}") from err
        try:
            resolve(model, convert=False)
        except (ModelSpecError, OSError) as err:
            source = f"{key}.train_set.model" if "model" in variant.train_set else f"{key} (model '{model}')"
            raise GridError(f"{grid_path}: key '{source}': {err}") from err
        if base_row is None and BASE_SYSTEM in stage.baselines:
            base_row = model  # the base row is the first variant's base model, named by its spec
        if name == base_row:
            raise GridError(f"{grid_path}: key '{key}': '{name}' is also the name of the base model's row")


def _unique_stem(recipe: Path, taken) -> str:
    names = {path.name for path in taken}
    stem, k = recipe.stem, 2
    while stem in names:
        stem, k = f"{recipe.stem}-{k}", k + 1
    return stem


def plot_curve(document: dict, xs: dict[str, float], x_label: str, path: Path) -> Path:
    """Each set's first metric against the variants' x values (one line per set, 95% interval bars); the
    baseline row, when it is not a variant, is drawn as a dotted horizontal line in the set's colour."""
    cols = primary_columns(document)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    order = sorted(xs, key=xs.get)
    for k, col in enumerate(cols):
        points = [(xs[n], cell(document, n, col["set"], col["metric"])) for n in order]
        points = [(x, r) for x, r in points if r is not None]
        if not points:
            continue
        color = COLORS[k % len(COLORS)]
        scores = [r["score"] for _, r in points]
        low = [max(r["score"] - (r.get("ci") or [r["score"]] * 2)[0], 0.0) for _, r in points]
        high = [max((r.get("ci") or [r["score"]] * 2)[1] - r["score"], 0.0) for _, r in points]
        ax.errorbar([x for x, _ in points], scores, yerr=[low, high], marker="o", capsize=3, color=color,
                    label=f"{col['set']} {col['label']}")
        baseline = document.get("baseline")
        record = cell(document, baseline, col["set"], col["metric"]) if baseline not in xs else None
        if record is not None:
            ax.axhline(record["score"], color=color, linestyle=":", linewidth=0.9)
    ax.set_xlabel(x_label)
    ax.set_ylabel("score (0-100)")
    ax.set_title(f"Scores against {x_label} (dotted: {document.get('baseline')})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(linewidth=0.3)
    return save_figure(fig, path)
