"""The instruction-mix builder: a mix recipe (`writetune.data.recipe`) in, `train.jsonl`, `dev.jsonl` and
`manifest.json` out (the record format: `writetune.data.record`).

`build_mix` runs these steps, each a function below from the pools (per source, its candidate records) to the
pools and the per-source counts the manifest reports:

1. `read_sources`: read every source, detokenize it, and turn each example into candidates (one target per
   example, or one per reference).
2. `drop_eval_items`: drop candidates that hold any item of the held-out suites (the `writing-dev` carvings, by
   normalised text, so ASSET and TurkCorpus carvings protect each other); collect those that match any other
   registered evaluation set present in the data directory, or any sentence of the recipe's fingerprint files
   (digests of evaluation sets that are absent, such as the held-back test splits), which `refuse_contamination`
   refuses unless the recipe drops them.
3. `dedupe`: remove exact and normalised duplicates.
4. `carve_dev`: take the dev candidates, grouped by source sentence across all sources.
5. `cap_unchanged`: limit the share of unchanged pairs per task.
6. `sample_train`: split the global size into quotas by weight and cap, and sample each source's quota.
7. `dev_rows`: one dev record per source sentence, with every reference of the group.
8. `with_instructions`: give every writing record an instruction phrasing from the task registry (sampled per
   record, seeded), and shuffle.
9. `write_mix`: write to a temporary directory and swap it into place.

Every random choice is a hash of the seed and a record's id, so the same recipe, data and seed give byte-identical
output, and no timestamps or absolute paths go into the files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from writetune import __version__
from writetune.atomic import atomic_dir, remove_stale_temp_dirs
from writetune.config import RecipeError
from writetune.data.errors import DataError, MissingDataError
from writetune.data.fingerprints import fingerprint, fingerprint_files, read_fingerprints
from writetune.data.readers import Example
from writetune.data.recipe import MixRecipe, SourceEntry, load_mix_recipe, resolve_data_dir
from writetune.data.record import DEV_FILE, MANIFEST_FILE, TRAIN_FILE, Record, write_records
from writetune.data.tokenization import match_key
from writetune.digest import file_sha256
from writetune.data.evalsets import all_eval_sets, item_keys, load_eval_set
from writetune.tasks import get_task

Pools = dict[str, list["_Candidate"]]  # source name -> its candidates, in recipe order
Counts = dict[str, dict]  # source name -> what a step counted (the manifest's `sources`)


class ContaminationError(DataError):
    """Training data that contains evaluation items, found while the recipe says to refuse."""


class OutputExistsError(ValueError):
    """The output directory exists and is not empty (pass overwrite=True / --force), or cannot be written at all:
    it holds or lies inside an input, or it is not a previous build's output."""


# --------------------------------------------------------------------------------------------------------------
# candidates


@dataclass
class _Candidate:
    """A record on its way into the mix: its match keys for deduplication and contamination checks, and every
    reference of its example (dev records keep them). An empty `instruction` is drawn from the task registry when
    the record is written."""

    id: str
    task: str
    origin: str
    instruction: str
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


def _candidates(example: Example, entry: SourceEntry, seed: int) -> list[_Candidate]:
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
        _Candidate(base if k == 0 else f"{base}#{i}", entry.task, entry.name, instruction, source, ref, tuple(refs))
        for k, (i, ref) in enumerate(sorted(chosen))
    ]


def _with_counts(counts: Counts, more: Counts) -> Counts:
    """`counts` with a step's columns added after the earlier steps' (the manifest keeps that order)."""
    return {name: {**columns, **more.get(name, {})} for name, columns in counts.items()}


# --------------------------------------------------------------------------------------------------------------
# evaluation data


@dataclass
class _EvalIndex:
    """Normalised texts of evaluation sets -> the first set that holds each; plus a report per set."""

    keys: dict[str, str] = field(default_factory=dict)
    report: dict[str, dict] = field(default_factory=dict)

    def add(self, evalset, data_dir: Path) -> None:
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
            "files": {f: file_sha256(data_dir / f) for f in evalset.files},
            "matches": 0,
        }

    def match(self, record: _Candidate) -> str | None:
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
                                 "sha256": file_sha256(file), "fingerprints": len(digests), "matches": 0}

    def match(self, record: _Candidate) -> str | None:
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


def _ordered(records: list[_Candidate], seed: int, salt: str) -> list[_Candidate]:
    return sorted(records, key=lambda r: _hash(seed, salt, r.id))


def _limit_unchanged(records: list[_Candidate], share: float, seed: int) -> tuple[list[_Candidate], int]:
    """Keep every changed record and at most enough unchanged ones for them to be `share` of the result."""
    changed = [r for r in records if not r.unchanged]
    unchanged = [r for r in records if r.unchanged]
    allowed = len(unchanged) if share >= 1.0 else math.floor(share * len(changed) / (1.0 - share) + 1e-9)
    kept = set(id(r) for r in _ordered(unchanged, seed, "unchanged")[:allowed])
    out = [r for r in records if not r.unchanged or id(r) in kept]
    return out, len(records) - len(out)


def _take(records: list[_Candidate], quota: int, seed: int) -> list[_Candidate]:
    """`quota` records, drawn with the pool's ratio of changed to unchanged records (rounded in favour of changed)."""
    changed = _ordered([r for r in records if not r.unchanged], seed, "take")
    unchanged = _ordered([r for r in records if r.unchanged], seed, "take")
    n_unchanged = min(len(unchanged), math.floor(quota * len(unchanged) / max(1, len(records))))
    n_changed = min(len(changed), quota - n_unchanged)
    return changed[:n_changed] + unchanged[:n_unchanged]


# --------------------------------------------------------------------------------------------------------------
# paths


def _recipe_path(data: Path, rel: str, recipe: MixRecipe, what: str) -> Path:
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


# --------------------------------------------------------------------------------------------------------------
# the steps


@dataclass
class SourcesRead:
    """What `read_sources` found: the pools, their counts, the SHA-256 of every input file (by its path relative to
    the data directory), the sources whose text was tokenized, and the warnings for empty sources."""

    pools: Pools
    counts: Counts
    inputs: dict[str, str]
    tokenized: list[str]
    warnings: list[str]


def read_sources(recipe: MixRecipe, data: Path, paths: dict[str, Path], say: Callable[[str], None]) -> SourcesRead:
    """Step 1: every source's examples as candidates. `paths` maps each file a source names to where it is."""
    read = SourcesRead({}, {}, {}, [], [])
    for index, entry in enumerate(recipe.sources):
        for rel in entry.read.files():
            path = paths[rel]
            if not path.exists():
                raise MissingDataError(path, f"file of source '{entry.name}' (recipe key sources.{index})")
            if path.is_file():
                read.inputs[_relative_to(path, data)] = file_sha256(path)
        say(f"reading {entry.name}")
        examples = entry.read.read(data, task=entry.task, origin=entry.name)
        if not examples:
            read.warnings.append(_empty_source(entry, index, [paths[rel] for rel in entry.read.files()], data))
        if any(e.tokenized for e in examples):
            read.tokenized.append(entry.name)
        candidates = [c for e in examples for c in _candidates(e, entry, recipe.seed)]
        ids = Counter(c.id for c in candidates)
        if len(ids) != len(candidates):
            repeated = next(i for i, n in ids.items() if n > 1)
            raise DataError(f"source '{entry.name}': example id '{repeated}' occurs more than once")
        read.pools[entry.name] = candidates
        read.counts[entry.name] = {"task": entry.task, "format": entry.read.format, "examples": len(examples),
                                   "records": len(candidates)}
    return read


@dataclass
class EvalIndexes:
    """The evaluation data a build checks against: the held-out suites' items, every other registered set's, and
    the recipe's fingerprint files."""

    holdout: _EvalIndex
    check: _EvalIndex
    prints: _FingerprintIndex


def load_eval_indexes(recipe: MixRecipe, data: Path) -> EvalIndexes:
    indexes = EvalIndexes(_EvalIndex(), _EvalIndex(), _FingerprintIndex())
    for evalset in all_eval_sets():
        (indexes.holdout if evalset.suite in recipe.holdout_suites else indexes.check).add(evalset, data)
    for index, entry in enumerate(recipe.fingerprints):
        indexes.prints.add(entry, _recipe_path(data, entry, recipe, f"recipe key fingerprints.{index}"), index, data)
    return indexes


def drop_eval_items(pools: Pools, indexes: EvalIndexes) -> tuple[Pools, Counts, list[tuple[_Candidate, str]]]:
    """Step 2: candidates holding an item of a held-out suite go; those matching any other evaluation data go too
    and are returned with the set they match, for `refuse_contamination`. The indexes count their matches."""
    kept_pools: Pools = {}
    counts: Counts = {}
    contaminated: list[tuple[_Candidate, str]] = []
    for name, candidates in pools.items():
        kept = []
        held = 0
        for candidate in candidates:
            hit = indexes.holdout.match(candidate)
            if hit is not None:
                indexes.holdout.report[hit]["matches"] += 1
                held += 1
                continue
            hit = indexes.check.match(candidate)
            if hit is not None:
                indexes.check.report[hit]["matches"] += 1
                contaminated.append((candidate, hit))
                continue
            hit = indexes.prints.match(candidate)
            if hit is not None:
                indexes.prints.report[hit]["matches"] += 1
                contaminated.append((candidate, hit))
                continue
            kept.append(candidate)
        kept_pools[name] = kept
        counts[name] = {"held_out": held, "contaminated": len(candidates) - len(kept) - held}
    return kept_pools, counts, contaminated


def refuse_contamination(contaminated: list[tuple[_Candidate, str]], mode: str) -> dict[str, dict[str, int]]:
    """When refusing, contaminated candidates stop the build; else the overlap, per source and evaluation set."""
    if contaminated and mode == "refuse":
        shown = "; ".join(f"{c.id} ({c.output[:50]!r}) is in eval set '{hit}'" for c, hit in contaminated[:5])
        raise ContaminationError(
            f"{len(contaminated)} training records contain evaluation items, e.g. {shown}. "
            "Remove the overlap or build with --drop-contaminated."
        )
    overlap: dict[str, dict[str, int]] = {}  # source -> evaluation set -> records
    for candidate, hit in contaminated:
        by_set = overlap.setdefault(candidate.origin, {})
        by_set[hit] = by_set.get(hit, 0) + 1
    return overlap


def dedupe(pools: Pools) -> tuple[Pools, Counts]:
    """Step 3: exact, then normalised duplicates go (the first occurrence wins, in recipe order)."""
    seen_exact: set[tuple] = set()
    seen_norm: set[tuple] = set()
    kept_pools: Pools = {}
    counts: Counts = {}
    for name, candidates in pools.items():
        kept, exact, norm = [], 0, 0
        for candidate in candidates:
            k_exact = (candidate.task, candidate.instruction, candidate.input, candidate.output)
            k_norm = (candidate.task, candidate.key_in, candidate.key_out)
            if k_exact in seen_exact:
                exact += 1
                continue
            if k_norm in seen_norm:
                norm += 1
                continue
            seen_exact.add(k_exact)
            seen_norm.add(k_norm)
            kept.append(candidate)
        kept_pools[name] = kept
        counts[name] = {"duplicates_exact": exact, "duplicates_normalised": norm}
    return kept_pools, counts


def carve_dev(pools: Pools, recipe: MixRecipe) -> tuple[Pools, Pools]:
    """Step 4: per source, `dev.fraction` of its source sentences (at most `dev.max_per_source`), chosen by hash;
    every candidate of a chosen sentence, from any source, goes to dev. Returns (train pools, dev pools)."""
    dev_keys: set[str] = set()
    for name, candidates in pools.items():
        groups = sorted({c.key_in for c in candidates}, key=lambda k: _hash(recipe.seed, "dev", name, k))
        wanted = min(recipe.dev.max_per_source, round(recipe.dev.fraction * len(groups)))
        dev_keys.update(groups[:wanted])
    train = {name: [c for c in candidates if c.key_in not in dev_keys] for name, candidates in pools.items()}
    dev = {name: [c for c in candidates if c.key_in in dev_keys] for name, candidates in pools.items()}
    return train, dev


def cap_unchanged(pools: Pools, recipe: MixRecipe) -> tuple[Pools, Counts]:
    """Step 5: per source (so also per task), every changed pair stays and at most the task's share of unchanged
    ones."""
    kept_pools: Pools = {}
    counts: Counts = {}
    for entry in recipe.sources:
        candidates = pools[entry.name]
        kept_pools[entry.name], dropped = _limit_unchanged(candidates, recipe.share_for(entry.task), recipe.seed)
        counts[entry.name] = {"unchanged_in_pool": sum(c.unchanged for c in candidates), "unchanged_dropped": dropped}
    return kept_pools, counts


def sample_train(pools: Pools, recipe: MixRecipe) -> tuple[list[_Candidate], Counts]:
    """Step 6: the global size split into per-source quotas (`_quotas`), each drawn from its pool (`_take`)."""
    limits = [min(len(pools[e.name]), e.cap) if e.cap is not None else len(pools[e.name]) for e in recipe.sources]
    weights = [entry.weight if limit else 0.0 for entry, limit in zip(recipe.sources, limits)]
    quotas = _quotas(recipe.size, [entry.task for entry in recipe.sources], limits, weights)
    train: list[_Candidate] = []
    counts: Counts = {}
    for entry, quota in zip(recipe.sources, quotas):
        chosen = _take(pools[entry.name], quota, recipe.seed)
        counts[entry.name] = {"available": len(pools[entry.name]), "train": len(chosen)}
        train.extend(chosen)
    return train, counts


def dev_rows(dev_pools: Pools, recipe: MixRecipe) -> tuple[list[_Candidate], Counts]:
    """Step 7: one dev candidate per (source, source sentence), holding every reference of the group, with the
    task's share of unchanged pairs."""
    dev: list[_Candidate] = []
    counts: Counts = {}
    for entry in recipe.sources:
        by_key: dict[str, list[_Candidate]] = defaultdict(list)
        for candidate in dev_pools[entry.name]:
            by_key[candidate.key_in].append(candidate)
        rows = []
        for group in by_key.values():
            first = min(group, key=lambda c: c.id)
            refs: list[str] = []
            for candidate in group:
                for ref in candidate.references:
                    if ref not in refs:
                        refs.append(ref)
            rows.append(_Candidate(first.id, first.task, first.origin, first.instruction, first.input, first.output,
                                   tuple(refs)))
        rows, _ = _limit_unchanged(rows, recipe.share_for(entry.task), recipe.seed)
        counts[entry.name] = {"dev": len(rows)}
        dev.extend(rows)
    return dev, counts


OWN_INSTRUCTION = "(the example's own instruction)"  # how the manifest counts an example's own instruction


def _instruction(candidate: _Candidate, seed: int) -> str:
    """The candidate's own instruction, else one of its task's phrasings, drawn by hash of the seed and its id."""
    if candidate.instruction:
        return candidate.instruction
    phrasings = get_task(candidate.task).instructions
    return phrasings[int(_hash(seed, "instruction", candidate.id), 16) % len(phrasings)]


def with_instructions(train: list[_Candidate], dev: list[_Candidate], seed: int) -> tuple[list[Record], list[Record]]:
    """Step 8: the mix records, each with its instruction: training shuffled by hash, dev by task, origin and
    hash."""
    def record(candidate: _Candidate) -> Record:
        return Record(id=candidate.id, task=candidate.task, instruction=_instruction(candidate, seed),
                      input=candidate.input, output=candidate.output, references=candidate.references,
                      origin=candidate.origin)

    dev_order = sorted(dev, key=lambda c: (c.task, c.origin, _hash(seed, "dev-order", c.id)))
    return [record(c) for c in _ordered(train, seed, "shuffle")], [record(c) for c in dev_order]


def instruction_counts(train: list[_Candidate], seed: int) -> dict[str, dict[str, int]]:
    """Per task, how many training records got each phrasing (most used first)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for candidate in train:
        counts[candidate.task][OWN_INSTRUCTION if candidate.instruction else _instruction(candidate, seed)] += 1
    return {task: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for task, c in sorted(counts.items())}


def unchanged_report(recipe: MixRecipe, counts: Counts, train: list[_Candidate],
                     dev: list[_Candidate]) -> dict[str, dict]:
    """Per task: the largest share of unchanged pairs allowed, and the share in the pool (before `cap_unchanged`),
    in training and in dev."""
    report: dict[str, dict] = {}
    for entry in recipe.sources:
        row = report.setdefault(entry.task, {"max_share": recipe.share_for(entry.task), "pool": 0,
                                             "pool_unchanged": 0})
        row["pool"] += counts[entry.name]["available"] + counts[entry.name]["unchanged_dropped"]
        row["pool_unchanged"] += counts[entry.name]["unchanged_in_pool"]
    for task, row in report.items():
        task_train = [c for c in train if c.task == task]
        task_dev = [c for c in dev if c.task == task]
        row["pool_share"] = round(row["pool_unchanged"] / row["pool"], 4) if row["pool"] else 0.0
        row["train"] = len(task_train)
        row["train_unchanged"] = sum(c.unchanged for c in task_train)
        row["train_share"] = round(row["train_unchanged"] / len(task_train), 4) if task_train else 0.0
        row["dev"] = len(task_dev)
        row["dev_share"] = round(sum(c.unchanged for c in task_dev) / len(task_dev), 4) if task_dev else 0.0
    return dict(sorted(report.items()))


def select_train_and_dev(pools: Pools, recipe: MixRecipe,
                         stats: Counts) -> tuple[list[_Candidate], list[_Candidate], Counts]:
    """Steps 3 to 7 on the pools cleared of evaluation items: the training and dev candidates, and `stats` with
    each step's counts added. An empty training side is refused, naming every source's weight and supply."""
    pools, counts = dedupe(pools)
    stats = _with_counts(stats, counts)
    pools, dev_pools = carve_dev(pools, recipe)
    pools, counts = cap_unchanged(pools, recipe)
    stats = _with_counts(stats, counts)
    train, counts = sample_train(pools, recipe)
    stats = _with_counts(stats, counts)
    dev, counts = dev_rows(dev_pools, recipe)
    stats = _with_counts(stats, counts)
    if not train:
        shares = ", ".join(f"{e.name}: weight {e.weight:g}, {stats[e.name]['available']} available"
                           for e in recipe.sources)
        raise DataError(f"the mix is empty: no source contributes a training record ({shares})")
    return train, dev, stats


@dataclass(frozen=True)
class MixContamination:
    """How the build met evaluation data in its sources: the mode, the matched candidates with the set each
    matched, and their counts by source and set."""

    mode: str
    matched: list[tuple[_Candidate, str]]
    by_source: dict[str, dict[str, int]]


def mix_manifest(recipe: MixRecipe, read: SourcesRead, indexes: EvalIndexes, contamination: MixContamination,
                 stats: Counts, train: list[_Candidate], dev: list[_Candidate]) -> dict:
    """What `manifest.json` says of a mix: the recipe, the counts, every source's steps, the inputs' digests, the
    held-out and checked evaluation sets, and how the sources were detokenized."""
    matches = len(contamination.matched)
    return {
        "writetune_version": __version__,
        "recipe": recipe.name,
        "description": recipe.description,
        "seed": recipe.seed,
        "size_requested": recipe.size,
        "counts": {
            "train": len(train),
            "dev": len(dev),
            "train_by_task": dict(sorted(Counter(c.task for c in train).items())),
            "train_by_origin": dict(sorted(Counter(c.origin for c in train).items())),
            "dev_by_task": dict(sorted(Counter(c.task for c in dev).items())),
            "dev_by_origin": dict(sorted(Counter(c.origin for c in dev).items())),
        },
        "unchanged": unchanged_report(recipe, stats, train, dev),
        "instructions": instruction_counts(train, recipe.seed),
        "sources": stats,
        "warnings": read.warnings,
        "inputs": dict(sorted(read.inputs.items())),
        "holdout": {"suites": recipe.holdout_suites, "eval_sets": indexes.holdout.report},
        "contamination": {
            "mode": contamination.mode,
            "matches": matches,
            "dropped": matches if contamination.mode == "drop" else 0,
            "by_source": {source: dict(sorted(sets.items()))
                          for source, sets in sorted(contamination.by_source.items())},
            "eval_sets": indexes.check.report,
            "fingerprints": indexes.prints.report,
        },
        "tokenization": {
            "tokenized_sources": read.tokenized,
            "detokenizer": "writetune.data.tokenization.detokenize (PTB rules, then sacremoses MosesDetokenizer 'en')",
        },
        "recipe_resolved": recipe.model_dump(mode="json"),
    }


def write_mix(out: Path, train: list[Record], dev: list[Record], manifest: dict, say: Callable[[str], None]) -> None:
    """Step 9: the three files, written into a temporary directory beside `out` and swapped into place."""
    for stale in remove_stale_temp_dirs(out):
        say(f"removed {stale.name}, left by a build that did not finish")
    with atomic_dir(out) as tmp:
        write_records(tmp / TRAIN_FILE, train, with_references=False)
        write_records(tmp / DEV_FILE, dev, with_references=True)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------
# the build


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict
    train: int
    dev: int


def build_mix(
    recipe: MixRecipe | str | Path,
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
    if not isinstance(recipe, MixRecipe):
        recipe_path = Path(recipe)
        recipe = load_mix_recipe(recipe_path)
    data = resolve_data_dir(data_dir, recipe, recipe_path)
    out = Path(out_dir)
    paths = {rel: _recipe_path(data, rel, recipe, f"source '{entry.name}' (recipe key sources.{index})")
             for index, entry in enumerate(recipe.sources) for rel in entry.read.files()}
    _check_output_dir(out, [data, *paths.values(), *([recipe_path] if recipe_path else [])], overwrite)
    mode = recipe.contamination if drop_contaminated is None else ("drop" if drop_contaminated else "refuse")

    read = read_sources(recipe, data, paths, say)
    say("loading evaluation sets")
    indexes = load_eval_indexes(recipe, data)
    pools, counts, contaminated = drop_eval_items(read.pools, indexes)
    stats = _with_counts(read.counts, counts)
    overlap = refuse_contamination(contaminated, mode)
    if contaminated:
        say(describe_overlap(overlap))
    train, dev, stats = select_train_and_dev(pools, recipe, stats)
    train_records, dev_records = with_instructions(train, dev, recipe.seed)
    manifest = mix_manifest(recipe, read, indexes, MixContamination(mode, contaminated, overlap), stats, train, dev)
    write_mix(out, train_records, dev_records, manifest, say)
    say(f"wrote {len(train_records)} train and {len(dev_records)} dev records to {out}")
    return BuildResult(out, manifest, len(train_records), len(dev_records))
