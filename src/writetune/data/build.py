"""The instruction-mix builder: a typed recipe (sources, weights, caps, global size, seed) in, `train.jsonl`,
`dev.jsonl` and `manifest.json` out.

Steps, in order: read every source and detokenize it; turn each example into records (one target per example, or
one per reference); drop records that hold any item of the held-out suites (the `writing-dev` carvings, by
normalised text, so ASSET and TurkCorpus carvings protect each other); refuse (or drop) records that match any other
registered evaluation set present in the data directory, or any sentence of the recipe's fingerprint files (digests
of evaluation sets that are absent, such as the held-back test splits); remove exact and normalised duplicates; carve the dev set,
grouped by source sentence across all sources; limit the share of unchanged pairs per task; sample each source's
quota of the global size by weight and cap; give every writing record an instruction phrasing from the task
registry (sampled per record, seeded); shuffle; write to a temporary directory and rename it into place.

Every random choice is a hash of the seed and a record's id, so the same recipe, data and seed give byte-identical
output, and no timestamps or absolute paths go into the files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from writetune import __version__
from writetune.atomic import remove_stale_temp_dirs, swap_dir_into_place, temp_dir_beside
from writetune.config import ConfigError, read_yaml_mapping, validation_message
from writetune.data.fingerprints import fingerprint, fingerprint_files, read_fingerprints
from writetune.data.readers import DataError, Example, MissingDataError
from writetune.data.sources import SourceSpec
from writetune.data.tokenization import match_key
from writetune.tasks import UnknownTaskError, get_task, register_task_file

DATA_ENV = "WRITETUNE_DATA"
TRAIN_FILE, DEV_FILE, MANIFEST_FILE = "train.jsonl", "dev.jsonl", "manifest.json"


class RecipeError(ConfigError):
    """A recipe that cannot be used; the message names the file and the key."""


class ContaminationError(DataError):
    """Training data that contains evaluation items, found while the recipe says to refuse."""


class OutputExistsError(ValueError):
    """The output directory exists and is not empty (pass overwrite=True / --force), or cannot be written at all:
    it holds or lies inside an input, or it is not a previous build's output."""


# --------------------------------------------------------------------------------------------------------------
# recipe


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


class Recipe(_Strict):
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
        from writetune.data.evalsets import SUITES

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
    def _filter_and_check(self) -> "Recipe":
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


def _format_validation_error(path: Path | str, err: ValidationError) -> str:
    from writetune.data.readers import READERS

    tags = set(READERS) | {"hub", "synthetic"}  # discriminator tags, not keys the user wrote
    return validation_message(path, err, keep=lambda part: not (isinstance(part, str) and part in tags))


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


def load_recipe(path: str | Path) -> Recipe:
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
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_format_validation_error(path, err)) from err


def resolve_data_dir(cli_value: str | Path | None, recipe: Recipe, recipe_path: str | Path | None = None) -> Path:
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


# --------------------------------------------------------------------------------------------------------------
# records


@dataclass
class _Record:
    id: str
    task: str
    origin: str
    instruction: str  # empty: sample a phrasing from the task registry
    input: str
    output: str
    references: tuple[str, ...]
    key_in: str = field(default="", repr=False)
    key_out: str = field(default="", repr=False)

    def __post_init__(self):
        self.key_in = match_key(f"{self.instruction} {self.input}" if self.instruction else self.input)
        self.key_out = match_key(self.output)

    @property
    def unchanged(self) -> bool:
        return self.input == self.output

    def text_keys(self) -> tuple[str, ...]:
        """The keys compared with evaluation items: the input and the output."""
        key_input = match_key(self.input) if self.instruction else self.key_in
        return tuple(k for k in (key_input, self.key_out) if k)


def _hash(*parts: object) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()


def _records(example: Example, entry: SourceEntry, seed: int) -> list[_Record]:
    example = example.detokenized()
    writing = get_task(entry.task).writing
    # writing examples are sentences: whitespace is collapsed; generic data keeps its line breaks (lists, code)
    clean = (lambda text: " ".join(text.split())) if writing else str.strip
    source = clean(example.source)
    refs: list[str] = []
    for ref in (clean(r) for r in example.references):
        if ref and ref not in refs:
            refs.append(ref)
    instruction = example.instruction.strip() if example.instruction and (entry.keep_instructions or not writing) else ""
    if not refs or (writing and not source) or (not source and not instruction):
        return []
    base = f"{entry.name}:{example.id}"
    if entry.targets == "all":
        chosen = list(enumerate(refs))
    else:
        pool = [(i, r) for i, r in enumerate(refs) if r != source] if entry.targets == "changed" else []
        pool = pool or list(enumerate(refs))
        chosen = [pool[int(_hash(seed, "target", base), 16) % len(pool)]]
    return [
        _Record(base if k == 0 else f"{base}#{i}", entry.task, entry.name, instruction, source, ref, tuple(refs))
        for k, (i, ref) in enumerate(sorted(chosen))
    ]


# --------------------------------------------------------------------------------------------------------------
# evaluation data


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _EvalIndex:
    """Normalised texts of evaluation sets -> the first set that holds each; plus a report per set."""

    keys: dict[str, str] = field(default_factory=dict)
    report: dict[str, dict] = field(default_factory=dict)

    def add(self, evalset, data_dir: Path) -> None:
        from writetune.data.evalsets import item_keys, load_eval_set

        missing = evalset.missing_files(data_dir)
        if missing:
            self.report[evalset.name] = {"status": "absent", "missing": str(missing[0].relative_to(data_dir))}
            return
        examples = load_eval_set(evalset, data_dir)
        for example in examples:
            for key in item_keys(example):
                self.keys.setdefault(key, evalset.name)
        self.report[evalset.name] = {
            "status": "present",
            "items": len(examples),
            "files": {f: _file_hash(data_dir / f) for f in evalset.files},
            "matches": 0,
        }

    def match(self, record: _Record) -> str | None:
        for key in record.text_keys():
            name = self.keys.get(key)
            if name is not None:
                return name
        return None


@dataclass
class _FingerprintIndex:
    """Sentence fingerprints of evaluation data that is not in the data directory -> the file that lists each
    (named `fingerprints:STEM`); plus a report per file."""

    digests: dict[str, str] = field(default_factory=dict)
    report: dict[str, dict] = field(default_factory=dict)

    def add(self, entry: str, path: Path, index: int, data_dir: Path) -> None:
        if not path.exists():
            self.report[f"fingerprints:{Path(entry).stem}"] = {"status": "absent", "missing": entry}
            return
        files = fingerprint_files(path)
        if not files:
            raise DataError(f"{path}: no *.sha256 fingerprint files (recipe key fingerprints.{index})")
        for file in files:
            name = f"fingerprints:{file.stem}"
            digests = read_fingerprints(file)
            for digest in digests:
                self.digests.setdefault(digest, name)
            self.report[name] = {"status": "present", "file": _relative_to(file, data_dir),
                                 "sha256": _file_hash(file), "fingerprints": len(digests), "matches": 0}

    def match(self, record: _Record) -> str | None:
        if not self.digests:
            return None
        for text in (record.input, record.output):
            name = self.digests.get(fingerprint(text) or "")
            if name is not None:
                return name
        return None


def describe_overlap(by_source: dict[str, dict[str, int]]) -> str:
    """One line for the console: how many training records were dropped, from which source, against which set."""
    total = sum(n for sets in by_source.values() for n in sets.values())
    return f"dropped {total} training records that overlap evaluation data: " + "; ".join(
        f"{source}: " + ", ".join(f"{n} x {name}" for name, n in sorted(sets.items()))
        for source, sets in sorted(by_source.items()))


# --------------------------------------------------------------------------------------------------------------
# selection helpers


def _allocate(size: int | None, limits: list[int], weights: list[float]) -> list[int]:
    """Split `size` over sources in proportion to their weights, never above a source's limit; what a full source
    cannot take goes to the others. Without a size every source gives its limit."""
    if size is None:
        return list(limits)
    alloc = [0] * len(limits)
    active = [i for i in range(len(limits)) if weights[i] > 0 and limits[i] > 0]
    remaining = size
    while active and remaining > 0:
        total = sum(weights[i] for i in active)
        shares = {i: remaining * weights[i] / total for i in active}
        full = [i for i in active if shares[i] >= limits[i] - alloc[i]]
        if full:
            for i in full:
                remaining -= limits[i] - alloc[i]
                alloc[i] = limits[i]
            active = [i for i in active if i not in full]
            continue
        floors = {i: math.floor(shares[i]) for i in active}
        left = remaining - sum(floors.values())
        by_remainder = sorted(active, key=lambda i: (-(shares[i] - floors[i]), i))
        for i in active:
            alloc[i] += floors[i]
        for i in by_remainder[:left]:
            alloc[i] += 1
        remaining = 0
    return alloc


def _quotas(size: int | None, tasks: list[str], limits: list[int], weights: list[float]) -> list[int]:
    """Two levels of `_allocate`: the size over tasks (a task weighs the sum of its sources' weights), then each
    task's share over its sources, so what a small source cannot give goes to its own task first."""
    order = list(dict.fromkeys(tasks))
    members = {t: [i for i, task in enumerate(tasks) if task == t] for t in order}
    task_limits = [sum(limits[i] for i in members[t] if weights[i] > 0) for t in order]
    task_weights = [sum(weights[i] for i in members[t]) for t in order]
    task_quota = _allocate(size, task_limits, task_weights) if size is not None else [None] * len(order)
    quotas = [0] * len(tasks)
    for t, quota in zip(order, task_quota):
        idx = members[t]
        for i, q in zip(idx, _allocate(quota, [limits[i] for i in idx], [weights[i] for i in idx])):
            quotas[i] = q
    return quotas


def _ordered(records: list[_Record], seed: int, salt: str) -> list[_Record]:
    return sorted(records, key=lambda r: _hash(seed, salt, r.id))


def _limit_unchanged(records: list[_Record], share: float, seed: int) -> tuple[list[_Record], int]:
    """Keep every changed record and at most enough unchanged ones for them to be `share` of the result."""
    changed = [r for r in records if not r.unchanged]
    unchanged = [r for r in records if r.unchanged]
    allowed = len(unchanged) if share >= 1.0 else math.floor(share * len(changed) / (1.0 - share) + 1e-9)
    kept = set(id(r) for r in _ordered(unchanged, seed, "unchanged")[:allowed])
    out = [r for r in records if not r.unchanged or id(r) in kept]
    return out, len(records) - len(out)


def _take(records: list[_Record], quota: int, seed: int) -> list[_Record]:
    """`quota` records, drawn with the pool's ratio of changed to unchanged records (rounded in favour of changed)."""
    changed = _ordered([r for r in records if not r.unchanged], seed, "take")
    unchanged = _ordered([r for r in records if r.unchanged], seed, "take")
    n_unchanged = min(len(unchanged), math.floor(quota * len(unchanged) / max(1, len(records))))
    n_changed = min(len(changed), quota - n_unchanged)
    return changed[:n_changed] + unchanged[:n_unchanged]


# --------------------------------------------------------------------------------------------------------------
# the build


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict
    train: int
    dev: int


def _recipe_path(data: Path, rel: str, recipe: Recipe, what: str) -> Path:
    """Where a recipe's data path points: inside the data directory, unless the recipe sets
    `paths_outside_data_dir` (`..` and absolute paths are refused otherwise, whatever the file system holds).
    `what` names the recipe key in the error."""
    path = Path(os.path.normpath(Path(os.path.abspath(data)) / rel))
    if not recipe.paths_outside_data_dir and not _is_within(path, Path(os.path.abspath(data))):
        raise RecipeError(f"{what}: path '{rel}' is outside the data directory {data}; set "
                          "paths_outside_data_dir: true in the recipe to allow it")
    return path


def _relative_to(path: Path, data: Path) -> str:
    """A path as the manifest records it: relative to the data directory (no absolute paths in the outputs)."""
    return Path(os.path.relpath(path, os.path.abspath(data))).as_posix()


def _is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _check_output_dir(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output directory that holds or lies inside an input (the data directory, a source file, the
    recipe), and one that is not empty unless `overwrite` is set and it is a previous build's output (it has a
    manifest): `--force` replaces a mix, never anything else."""
    target = Path(os.path.realpath(out))
    for given in inputs:
        path = Path(os.path.realpath(given))
        if _is_within(path, target) or _is_within(target, path):
            relation = "contains" if _is_within(path, target) else "is inside"
            raise OutputExistsError(f"{out}: the output directory {relation} the input {given}; choose a directory "
                                    "apart from the data and the recipe")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise OutputExistsError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(f"{out}: output directory exists and is not empty (use --force to replace it)")
    if not (out / MANIFEST_FILE).is_file():
        raise OutputExistsError(f"{out}: not replaced: it is not empty and has no {MANIFEST_FILE}, so it is not the "
                                "output of a previous build (--force replaces only those)")


def _empty_source(entry: SourceEntry, index: int, paths: list[Path], data: Path) -> str:
    """For a source that yields no examples: an error naming its files, unless the source sets `allow_empty`; then
    the warning the manifest records (paths relative to the data directory)."""
    what = f"source '{entry.name}' (recipe key sources.{index}) yields no examples"
    if not entry.allow_empty:
        where = ", ".join(str(p) for p in paths) or f"source '{entry.name}'"
        raise DataError(f"{where}: {what} (set allow_empty: true on the source to build without it)")
    return f"{', '.join(_relative_to(p, data) for p in paths) or entry.name}: {what}"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_mix(
    recipe: Recipe | str | Path,
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    drop_contaminated: bool | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the mix a recipe describes into `out_dir` (written whole or not at all).

    `data_dir` overrides $WRITETUNE_DATA and the recipe's `data_dir`; `drop_contaminated` overrides the recipe's
    `contamination` mode (True: drop, False: refuse). Raises `RecipeError`, `DataError` (a bad or missing data file,
    or contamination when refusing) or `OutputExistsError`."""
    say = log or (lambda message: None)
    recipe_path = None
    if not isinstance(recipe, Recipe):
        recipe_path = Path(recipe)
        recipe = load_recipe(recipe_path)
    data = resolve_data_dir(data_dir, recipe, recipe_path)
    out = Path(out_dir)
    source_paths = {rel: _recipe_path(data, rel, recipe, f"source '{entry.name}' (recipe key sources.{index})")
                    for index, entry in enumerate(recipe.sources) for rel in entry.read.files()}
    _check_output_dir(out, [data, *source_paths.values(), *([recipe_path] if recipe_path else [])], overwrite)
    mode = recipe.contamination if drop_contaminated is None else ("drop" if drop_contaminated else "refuse")
    seed = recipe.seed

    # 1. read the sources
    inputs: dict[str, str] = {}
    stats: dict[str, dict] = {}
    pools: dict[str, list[_Record]] = {}
    tokenized_sources = []
    warnings: list[str] = []
    for index, entry in enumerate(recipe.sources):
        for rel in entry.read.files():
            path = source_paths[rel]
            if not path.exists():
                raise MissingDataError(path, f"file of source '{entry.name}' (recipe key sources.{index})")
            if path.is_file():
                inputs[_relative_to(path, data)] = _file_hash(path)
        say(f"reading {entry.name}")
        examples = entry.read.read(data, task=entry.task, origin=entry.name)
        if not examples:
            warnings.append(_empty_source(entry, index, [source_paths[rel] for rel in entry.read.files()], data))
        if any(e.tokenized for e in examples):
            tokenized_sources.append(entry.name)
        records = [r for e in examples for r in _records(e, entry, seed)]
        ids = Counter(r.id for r in records)
        if len(ids) != len(records):
            repeated = next(i for i, n in ids.items() if n > 1)
            raise DataError(f"source '{entry.name}': example id '{repeated}' occurs more than once")
        pools[entry.name] = records
        stats[entry.name] = {
            "task": entry.task,
            "format": entry.read.format,
            "examples": len(examples),
            "records": len(records),
        }

    # 2. held-out suites: remove their items; 3. every other registered eval set: refuse or drop
    from writetune.data.evalsets import all_eval_sets

    say("loading evaluation sets")
    holdout, check, prints = _EvalIndex(), _EvalIndex(), _FingerprintIndex()
    for evalset in all_eval_sets():
        (holdout if evalset.suite in recipe.holdout_suites else check).add(evalset, data)
    for index, entry in enumerate(recipe.fingerprints):
        prints.add(entry, _recipe_path(data, entry, recipe, f"recipe key fingerprints.{index}"), index, data)
    contaminated: list[tuple[_Record, str]] = []
    for name, records in pools.items():
        kept = []
        held = 0
        for record in records:
            hit = holdout.match(record)
            if hit is not None:
                holdout.report[hit]["matches"] += 1
                held += 1
                continue
            hit = check.match(record)
            if hit is not None:
                check.report[hit]["matches"] += 1
                contaminated.append((record, hit))
                continue
            hit = prints.match(record)
            if hit is not None:
                prints.report[hit]["matches"] += 1
                contaminated.append((record, hit))
                continue
            kept.append(record)
        pools[name] = kept
        stats[name]["held_out"] = held
        stats[name]["contaminated"] = len(records) - len(kept) - held
    if contaminated and mode == "refuse":
        shown = "; ".join(f"{r.id} ({r.output[:50]!r}) is in eval set '{hit}'" for r, hit in contaminated[:5])
        raise ContaminationError(
            f"{len(contaminated)} training records contain evaluation items, e.g. {shown}. "
            "Remove the overlap or build with --drop-contaminated."
        )
    overlap: dict[str, dict[str, int]] = {}  # source -> evaluation set -> records
    for record, hit in contaminated:
        by_set = overlap.setdefault(record.origin, {})
        by_set[hit] = by_set.get(hit, 0) + 1
    if contaminated:
        say(describe_overlap(overlap))

    # 4. deduplicate: exact, then normalised (first occurrence wins, in recipe order)
    seen_exact: set[tuple] = set()
    seen_norm: set[tuple] = set()
    for name, records in pools.items():
        kept, exact, norm = [], 0, 0
        for record in records:
            k_exact = (record.task, record.instruction, record.input, record.output)
            k_norm = (record.task, record.key_in, record.key_out)
            if k_exact in seen_exact:
                exact += 1
                continue
            if k_norm in seen_norm:
                norm += 1
                continue
            seen_exact.add(k_exact)
            seen_norm.add(k_norm)
            kept.append(record)
        pools[name] = kept
        stats[name]["duplicates_exact"] = exact
        stats[name]["duplicates_normalised"] = norm

    # 5. dev carving, grouped by source sentence across all sources
    dev_keys: set[str] = set()
    for name, records in pools.items():
        groups = sorted({r.key_in for r in records}, key=lambda k: _hash(seed, "dev", name, k))
        wanted = min(recipe.dev.max_per_source, round(recipe.dev.fraction * len(groups)))
        taken = 0
        for key in groups:
            if taken >= wanted:
                break
            dev_keys.add(key)
            taken += 1
    dev_pool: dict[str, list[_Record]] = {}
    for name, records in pools.items():
        dev_pool[name] = [r for r in records if r.key_in in dev_keys]
        pools[name] = [r for r in records if r.key_in not in dev_keys]

    # 6. unchanged pairs: at most the task's share, per source (so also per task)
    unchanged_report: dict[str, dict] = {}
    for name, records in pools.items():
        task = stats[name]["task"]
        before = len(records)
        stats[name]["unchanged_in_pool"] = sum(r.unchanged for r in records)
        pools[name], dropped = _limit_unchanged(records, recipe.share_for(task), seed)
        stats[name]["unchanged_dropped"] = dropped
        row = unchanged_report.setdefault(task, {"max_share": recipe.share_for(task), "pool": 0, "pool_unchanged": 0})
        row["pool"] += before
        row["pool_unchanged"] += stats[name]["unchanged_in_pool"]

    # 7. quotas and sampling
    names = list(pools)
    limits = [
        min(len(pools[n]), entry.cap) if entry.cap is not None else len(pools[n])
        for n, entry in zip(names, recipe.sources)
    ]
    weights = [entry.weight if limit else 0.0 for entry, limit in zip(recipe.sources, limits)]
    quotas = _quotas(recipe.size, [entry.task for entry in recipe.sources], limits, weights)
    train: list[_Record] = []
    for name, quota in zip(names, quotas):
        chosen = _take(pools[name], quota, seed)
        stats[name]["available"] = len(pools[name])
        stats[name]["train"] = len(chosen)
        train.extend(chosen)

    # dev rows: one per (source, source sentence), with every reference of the group
    dev: list[_Record] = []
    for name, records in dev_pool.items():
        by_key: dict[str, list[_Record]] = defaultdict(list)
        for record in records:
            by_key[record.key_in].append(record)
        rows = []
        for group in by_key.values():
            first = min(group, key=lambda r: r.id)
            refs: list[str] = []
            for record in group:
                for ref in record.references:
                    if ref not in refs:
                        refs.append(ref)
            rows.append(_Record(first.id, first.task, first.origin, first.instruction, first.input, first.output, tuple(refs)))
        rows, _ = _limit_unchanged(rows, recipe.share_for(stats[name]["task"]), seed)
        stats[name]["dev"] = len(rows)
        dev.extend(rows)

    # 8. instructions
    instruction_counts: dict[str, Counter] = defaultdict(Counter)

    def render(record: _Record, split: str) -> dict:
        if record.instruction:
            instruction = record.instruction
            if split == "train":
                instruction_counts[record.task]["(the example's own instruction)"] += 1
        else:
            phrasings = get_task(record.task).instructions
            instruction = phrasings[int(_hash(seed, "instruction", record.id), 16) % len(phrasings)]
            if split == "train":
                instruction_counts[record.task][instruction] += 1
        row = {
            "id": record.id,
            "task": record.task,
            "origin": record.origin,
            "instruction": instruction,
            "input": record.input,
            "output": record.output,
        }
        if split == "dev":
            row["references"] = list(record.references)
        return row

    train_rows = [render(r, "train") for r in _ordered(train, seed, "shuffle")]
    if not train_rows:
        shares = ", ".join(f"{e.name}: weight {e.weight:g}, {stats[e.name]['available']} available"
                           for e in recipe.sources)
        raise DataError(f"the mix is empty: no source contributes a training record ({shares})")
    dev_rows = [render(r, "dev") for r in sorted(dev, key=lambda r: (r.task, r.origin, _hash(seed, "dev-order", r.id)))]

    # 9. manifest
    for task, row in unchanged_report.items():
        task_train = [r for r in train if r.task == task]
        task_dev = [r for r in dev if r.task == task]
        row["pool_share"] = round(row["pool_unchanged"] / row["pool"], 4) if row["pool"] else 0.0
        row["train"] = len(task_train)
        row["train_unchanged"] = sum(r.unchanged for r in task_train)
        row["train_share"] = round(row["train_unchanged"] / len(task_train), 4) if task_train else 0.0
        row["dev"] = len(task_dev)
        row["dev_share"] = round(sum(r.unchanged for r in task_dev) / len(task_dev), 4) if task_dev else 0.0
    manifest = {
        "writetune_version": __version__,
        "recipe": recipe.name,
        "description": recipe.description,
        "seed": seed,
        "size_requested": recipe.size,
        "counts": {
            "train": len(train_rows),
            "dev": len(dev_rows),
            "train_by_task": dict(sorted(Counter(r.task for r in train).items())),
            "train_by_origin": dict(sorted(Counter(r.origin for r in train).items())),
            "dev_by_task": dict(sorted(Counter(r.task for r in dev).items())),
            "dev_by_origin": dict(sorted(Counter(r.origin for r in dev).items())),
        },
        "unchanged": dict(sorted(unchanged_report.items())),
        "instructions": {task: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for task, c in sorted(instruction_counts.items())},
        "sources": stats,
        "warnings": warnings,
        "inputs": dict(sorted(inputs.items())),
        "holdout": {"suites": recipe.holdout_suites, "eval_sets": holdout.report},
        "contamination": {
            "mode": mode,
            "matches": len(contaminated),
            "dropped": len(contaminated) if mode == "drop" else 0,
            "by_source": {source: dict(sorted(sets.items())) for source, sets in sorted(overlap.items())},
            "eval_sets": check.report,
            "fingerprints": prints.report,
        },
        "tokenization": {
            "tokenized_sources": tokenized_sources,
            "detokenizer": "writetune.data.tokenization.detokenize (PTB rules, then sacremoses MosesDetokenizer 'en')",
        },
        "recipe_resolved": recipe.model_dump(mode="json"),
    }

    # 10. write atomically
    for stale in remove_stale_temp_dirs(out):
        say(f"removed {stale.name}, left by a build that did not finish")
    tmp = temp_dir_beside(out)
    try:
        _write_jsonl(tmp / TRAIN_FILE, train_rows)
        _write_jsonl(tmp / DEV_FILE, dev_rows)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        swap_dir_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {len(train_rows)} train and {len(dev_rows)} dev records to {out}")
    return BuildResult(out, manifest, len(train_rows), len(dev_rows))
