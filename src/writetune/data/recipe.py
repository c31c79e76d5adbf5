"""The mix recipe: what `writetune data build` builds (sources, weights, caps, global size, seed, dev carving,
contamination policy), read from YAML and validated (keys: docs/data.md).

A recipe may start from another (`base: other.yaml`): it takes that file's keys, with the base's relative paths
rebased onto it, and overrides them; `add_sources` appends sources to the base's instead of replacing them. Task
files a recipe names are registered before its sources are checked. Every error is a `RecipeError` naming the file
and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from writetune.config import RecipeError, read_yaml_mapping, validate
from writetune.data.errors import MissingDataError
from writetune.data.evalsets import SUITES
from writetune.data.readers import READERS
from writetune.data.sources import SourceSpec
from writetune.tasks import UnknownTaskError, get_task, register_task_file

DATA_ENV = "WRITETUNE_DATA"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceEntry(_Strict):
    """One training source of a recipe."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: str
    read: SourceSpec
    weight: float = Field(1.0, ge=0.0)
    cap: int | None = Field(None, ge=0)
    targets: Literal["random", "changed", "all"] = "random"
    keep_instructions: bool = False
    allow_empty: bool = False  # a source that yields no examples is a warning in the manifest, not an error

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        try:
            return get_task(value).name
        except UnknownTaskError as err:
            raise ValueError(str(err)) from None


class DevConfig(_Strict):
    """Dev carving: per source, `fraction` of its source sentences, at most `max_per_source`."""

    fraction: float = Field(0.02, ge=0.0, le=0.5)
    max_per_source: int = Field(100, ge=0)


class MixRecipe(_Strict):
    """A mix recipe. See docs/data.md for every key."""

    name: str
    description: str = ""
    seed: int = 0
    data_dir: str | None = None
    paths_outside_data_dir: bool = False  # let source paths leave the data directory (absolute or ../)
    size: int | None = Field(None, ge=1)
    unchanged_share: float = Field(0.10, ge=0.0, le=1.0)
    unchanged_share_per_task: dict[str, float] = {}
    dev: DevConfig = DevConfig()
    contamination: Literal["refuse", "drop"] = "refuse"
    fingerprints: list[str] = []  # fingerprint files or directories of them, relative to the data directory
    holdout_suites: list[str] = ["writing-dev", "general"]
    task_files: list[str] = []
    base: str | None = None
    include_tasks: list[str] | None = None
    exclude_tasks: list[str] = []
    weights: dict[str, float] = {}  # source name -> weight, replacing the source's own (e.g. over a base recipe's)
    sources: list[SourceEntry] = Field(min_length=1)

    @field_validator("unchanged_share_per_task")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        out = {}
        for name, share in value.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"share for '{name}' must be between 0 and 1")
            try:
                out[get_task(name).name] = share
            except UnknownTaskError as err:
                raise ValueError(str(err)) from None
        return out

    @field_validator("holdout_suites")
    @classmethod
    def _suites(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in SUITES:
                raise ValueError(f"unknown suite '{name}' (known: {', '.join(SUITES)})")
        return value

    @field_validator("include_tasks", "exclude_tasks")
    @classmethod
    def _task_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return [get_task(name).name for name in value]
        except UnknownTaskError as err:
            raise ValueError(str(err)) from None

    @model_validator(mode="after")
    def _filter_and_check(self) -> "MixRecipe":
        names = {entry.name for entry in self.sources}
        for name, weight in self.weights.items():
            if name not in names:
                raise ValueError(f"weights: no source named '{name}' (sources: {', '.join(sorted(names))})")
            if weight < 0:
                raise ValueError(f"weights: '{name}' must be at least 0")
        self.sources = [entry.model_copy(update={"weight": self.weights[entry.name]}) if entry.name in self.weights
                        else entry for entry in self.sources]
        kept = [
            entry
            for entry in self.sources
            if entry.task not in self.exclude_tasks and (self.include_tasks is None or entry.task in self.include_tasks)
        ]
        if not kept:
            raise ValueError("include_tasks/exclude_tasks leave no source")
        self.sources = kept
        seen = set()
        for entry in self.sources:
            if entry.name in seen:
                raise ValueError(f"source name '{entry.name}' is used twice")
            seen.add(entry.name)
        return self

    def share_for(self, task: str) -> float:
        return self.unchanged_share_per_task.get(task, self.unchanged_share)


_READER_TAGS = frozenset(READERS) | {"hub", "synthetic"}  # discriminator tags in pydantic's error locations


def _written_key(part: object) -> bool:
    """Whether a part of an error location is a key the user wrote (not a reader's discriminator tag)."""
    return not (isinstance(part, str) and part in _READER_TAGS)


def _read_yaml_mapping(path: Path) -> dict:
    return read_yaml_mapping(path, what="recipe", keys_hint="name, sources, ...", error=RecipeError)


def _with_base(path: Path, data: dict, chain: tuple[Path, ...] = ()) -> dict:
    """A recipe with `base: other.yaml` starts from that file's keys (paths relative to it) and overrides them;
    `add_sources` appends sources to the base's instead of replacing them."""
    base = data.get("base")
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"{path}: key 'base': expected the path of another recipe")
    base_path = (path.parent / base).resolve()
    if base_path in chain:
        raise RecipeError(f"{path}: key 'base': recipes include each other ({base})")
    parent = _with_base(base_path, _read_yaml_mapping(base_path), (*chain, path.resolve()))
    merged = {key: value for key, value in parent.items() if key not in ("base", "include_tasks", "exclude_tasks")}

    def rebase(rel: object) -> object:  # relative paths in the base are relative to the base file
        if not isinstance(rel, str) or os.path.isabs(rel):
            return rel
        return os.path.relpath(base_path.parent / rel, path.parent.resolve())

    merged["data_dir"] = rebase(merged.get("data_dir"))
    if isinstance(merged.get("task_files"), list):
        merged["task_files"] = [rebase(f) for f in merged["task_files"]]
    merged.update({key: value for key, value in data.items() if key not in ("base", "add_sources")})
    if "add_sources" in data:
        if not isinstance(data["add_sources"], list) or not isinstance(merged.get("sources", []), list):
            raise RecipeError(f"{path}: key 'add_sources': expected a list of sources")
        merged["sources"] = [*merged.get("sources", []), *data["add_sources"]]
    merged["base"] = base
    return merged


def load_mix_recipe(path: str | Path) -> MixRecipe:
    """Read and validate a recipe YAML file. Task files it names are registered before its sources are checked."""
    path = Path(path)
    data = _with_base(path, _read_yaml_mapping(path))
    task_files = data.get("task_files") or []
    if isinstance(task_files, list):
        for index, task_file in enumerate(task_files):
            if not isinstance(task_file, str):
                raise RecipeError(f"{path}: key 'task_files.{index}': expected a path")
            try:
                register_task_file(path.parent / task_file, replace=True)
            except ValueError as err:
                raise RecipeError(f"{path}: key 'task_files.{index}': {err}") from err
    return validate(MixRecipe, data, path, error=RecipeError, keep=_written_key)


def resolve_data_dir(cli_value: str | Path | None, recipe: MixRecipe, recipe_path: str | Path | None = None) -> Path:
    """--data-dir, else $WRITETUNE_DATA, else the recipe's `data_dir` (relative to the recipe file)."""
    if cli_value:
        chosen, how = Path(cli_value), "--data-dir"
    elif os.environ.get(DATA_ENV):
        chosen, how = Path(os.environ[DATA_ENV]), f"${DATA_ENV}"
    elif recipe.data_dir:
        base = Path(recipe_path).parent if recipe_path else Path.cwd()
        chosen, how = base / recipe.data_dir, "the recipe's data_dir"
    else:
        raise RecipeError(f"no data directory: pass --data-dir, set {DATA_ENV}, or set data_dir in the recipe")
    if not chosen.is_dir():
        raise MissingDataError(chosen, f"data directory (from {how})")
    return chosen
