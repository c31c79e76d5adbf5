"""The runner: every row of an `EvalConfig` on every set of its suite, generated (or reused from the prediction
store), scored, tested against the baseline row, and written as `results.json` with the report beside it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from writetune import peak_memory
from writetune.data.evalsets import MissingEvalData
from writetune.data.readers import Example
from writetune.data.tokenization import match_key
from writetune.evaluate.answers import answer_record, item_request, reached_budget, set_decoding
from writetune.evaluate.config import EvalConfig, EvalConfigError
from writetune.evaluate.cost import model_cost
from writetune.evaluate.scoring import Scored, compare_with_baseline, score_set
from writetune.evaluate.sets import SetData, load_set, select_sets
from writetune.evaluate.shots import few_shot_examples
from writetune.evaluate.store import (
    fingerprint,
    kept_records,
    predictions_path,
    read_predictions,
    shared_predictions_path,
    write_predictions,
)
from writetune.evaluate.systems import System, config_systems
from writetune.generate import DecodingConfig, Generator, Request, make_generator
from writetune.report import write_report
from writetune.results import Cell, ResultsDocument, write_results
from writetune.tasks import all_tasks


class Generators:
    """The generators of a run, one model in memory at a time: rows of the same model share one, and loading
    another model drops the previous one."""

    def __init__(self, make: Callable[..., Generator], config: EvalConfig, log: Callable[[str], None]):
        self.make = make
        self.config = config
        self.log = log
        self.loaded: dict[str, Generator] = {}

    def get(self, system: System) -> Generator:
        if system.model not in self.loaded:
            self.loaded.clear()
            self.log(f"loading {system.model}")
            options = {} if system.is_copy or system.model.startswith("openai:") else {
                "dtype": self.config.dtype, "device": self.config.device}
            self.loaded[system.model] = self.make(system.model, self.config.backend, **options)
        return self.loaded[system.model]


Memo = dict[tuple[Request, DecodingConfig | None], str]  # answers of one model and prompt style, by request


class Evaluation:
    """Runs an `EvalConfig`. `make` builds generators (tests pass a counting factory); `log` receives progress
    lines. `run()` returns the results document and writes it with predictions and the report into `config.out`."""

    def __init__(self, config: EvalConfig, *, make: Callable[..., Generator] = make_generator,
                 log: Callable[[str], None] = lambda line: None, progress: bool = True):
        self.config = config
        self.make = make
        self.log = log
        self.progress = progress
        self.systems = config_systems(config)
        names = [s.name for s in self.systems]
        if config.baseline is not None and config.baseline not in names:
            raise EvalConfigError(f"--baseline '{config.baseline}' is not one of the systems ({', '.join(names)})")
        self.baseline = config.baseline or names[0]
        self.blocked: set[str] = set()  # match keys of every item being evaluated: never a few-shot example
        self.generated: dict[str, int] = {}  # system name -> requests sent to its generator in this run
        self.timing: dict[str, dict[str, dict[str, float]]] = {}

    # -- the whole run

    def run(self) -> ResultsDocument:
        started = time.perf_counter()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        sets, skipped = select_sets(self.config, self.log)
        data = {evalset.name: load_set(evalset, self.config) for evalset in sets}
        self.blocked = {match_key(t) for d in data.values() for e in d.examples for t in (e.source, *e.references)}
        cells, scored, failures = self.score_systems(data)
        compare_with_baseline(scored, self.baseline, self.config.bootstrap or 1000, self.config.seed)
        document = self.document(cells, data, skipped, failures, time.perf_counter() - started)
        write_results(document, self.config.out)
        write_report(document, self.config.out)
        return document

    def score_systems(self, data: dict[str, SetData]) -> tuple[
            dict[str, dict[str, Cell]], dict[tuple[str, str], list[Scored]], list[dict[str, str]]]:
        """Every system on every set: the cells, the scores with their statistics (for the paired tests), and
        the (system, set) pairs that could not be evaluated (a few-shot row whose task has no usable pool)."""
        cells: dict[str, dict[str, Cell]] = {}
        scored: dict[tuple[str, str], list[Scored]] = {}
        failures: list[dict[str, str]] = []
        generators = Generators(self.make, self.config, self.log)
        memos: dict[tuple[str, int], Memo] = {}
        for system in self.systems:
            cells[system.name] = {}
            memo = memos.setdefault((system.model, system.shots), {})
            for name, set_data in data.items():
                try:
                    records = self.predictions(system, set_data, generators, memo)
                except (MissingEvalData, ValueError) as err:
                    if self.config.strict or not system.shots:
                        raise
                    failures.append({"system": system.name, "set": name, "reason": str(err)})
                    self.log(f"{system.name} / {name}: not evaluated ({err})")
                    continue
                scores = self.score(set_data, records)
                scored[(system.name, name)] = scores
                cells[system.name][name] = [s.record for s in scores]
                self.log(f"{system.name} / {name}: " + ", ".join(
                    f"{s.record['label']} {s.record['score']:.2f}" for s in scores))
        return cells, scored, failures

    def score(self, data: SetData, records: list[dict]) -> list[Scored]:
        """Every metric of the set on one system's prediction records."""
        truncated = [bool(r.get("truncated")) for r in records] if any("truncated" in r for r in records) else None
        return score_set(data.evalset.metrics, [r["scored"] for r in records], data.examples, data.gold,
                         data.policy.describe(), data.name, self.config.bootstrap, self.config.seed, truncated)

    def document(self, cells: dict[str, dict[str, Cell]], data: dict[str, SetData], skipped: list[dict[str, str]],
                 failures: list[dict[str, str]], seconds: float) -> ResultsDocument:
        config = self.config
        return {
            "systems": cells,
            "baseline": self.baseline,
            "suite": config.suite,
            "sets": {
                name: {
                    "task": d.evalset.task, "description": d.evalset.description, "n": len(d.examples),
                    "metrics": list(d.evalset.metrics), "tokenization": d.policy.describe(),
                    "instruction": d.instruction or "(each item's own)", "references": d.evalset.n_references,
                    "max_new_tokens": d.evalset.max_new_tokens,
                    "files": list(d.evalset.files),
                }
                for name, d in data.items()
            },
            "skipped": skipped,
            "not_evaluated": failures,
            "system_info": {
                s.name: {**s.describe(), "backend": None if s.is_copy else config.backend,
                         "dtype": None if s.is_copy else config.resolved_dtype()}
                for s in self.systems
            },
            "config": {
                "data_dir": str(config.data_dir), "limit": config.limit, "bootstrap": config.bootstrap,
                "bootstrap_seed": config.seed, "batch_size": config.batch_size, "shots": config.shots,
                "max_new_tokens": config.max_new_tokens, "decodings": list(config.decodings),
                "threads": config.threads,
            },
            "timing": {"wall_seconds": round(seconds, 1), "generation": self.timing},
            "cost": {s.name: model_cost(s.model) for s in self.systems},
            "task_order": [t.name for t in all_tasks()],
        }

    # -- one system on one set

    def settings(self, system: System, data: SetData, shots: tuple, decoding: DecodingConfig | None) -> dict:
        """What the answers of a predictions file depend on, with its fingerprint: saved answers are reused only
        under the same settings."""
        meta = {
            "system": system.name,
            **system.describe(),
            "decoding": decoding.describe() if decoding is not None else None,
            "backend": self.config.backend,
            "dtype": None if system.is_copy else self.config.resolved_dtype(),
            "instruction": data.instruction,
            "shots": [list(s) for s in shots],
            "input": data.policy.input,
        }
        answers_depend_on = {key: value for key, value in meta.items() if key != "system"}  # not the row's name
        return {**meta, "fingerprint": fingerprint(answers_depend_on), "set": data.name, "n": len(data.examples)}

    def predictions(self, system: System, data: SetData, generators: Generators, memo: Memo) -> list[dict]:
        """The system's records for the set, in set order: reused from disk where possible (or from another set
        with the same questions), else generated in chunks that are saved as they finish."""
        shots = ()
        if system.shots:
            shots = few_shot_examples(data.evalset, data.examples, self.config.data_dir, system.shots,
                                      blocked=self.blocked)
        decoding = set_decoding(system, data.evalset)
        meta = self.settings(system, data, shots, decoding)
        path = predictions_path(self.config.out, system, data.evalset)
        saved = read_predictions(path, meta["fingerprint"])
        shared = shared_predictions_path(self.config.shared_answers, data.evalset, meta["fingerprint"]) \
            if self.config.shared_answers is not None else None
        if not saved and shared is not None:
            saved = read_predictions(shared, meta["fingerprint"])
        records: dict[str, dict] = {}
        todo: list[tuple[Example, Request]] = []
        for example in data.examples:
            source = data.policy.model_input(example)
            request = item_request(example, source, data.instruction, shots)
            kept = saved.get(example.id)
            if kept is not None and kept.get("source") == source:  # re-scored under today's policy
                records[example.id] = {**kept, "scored": data.policy.apply(kept["output"], example)}
            elif (request, decoding) in memo:
                records[example.id] = answer_record(example, source, memo[(request, decoding)], data.policy)
            else:
                todo.append((example, request))
        def save() -> None:
            kept = kept_records(data.examples, records, saved)
            for where in (path, shared) if shared is not None else (path,):
                write_predictions(where, kept, meta)

        if todo:
            self.log(f"{system.name} / {data.name}: generating {len(todo)} of {len(data.examples)} "
                     f"({len(data.examples) - len(todo)} reused)")
            self.generate(system, data, todo, decoding, generators.get(system), memo, save, records)
        else:
            self.log(f"{system.name} / {data.name}: all {len(data.examples)} predictions reused")
            save()
        by_id = {e.id: e for e in data.examples}
        for key, record in records.items():
            request = item_request(by_id[key], record["source"], data.instruction, shots)
            memo.setdefault((request, decoding), record["output"])
        return [records[e.id] for e in data.examples]

    def generate(self, system: System, data: SetData, todo: list[tuple[Example, Request]],
                 decoding: DecodingConfig | None, generator: Generator, memo: Memo, save: Callable[[], None],
                 records: dict[str, dict]) -> None:
        """Answer `todo` in chunks of `config.chunk` requests (each question once), adding each answer to
        `records` and `memo` and calling `save` after every chunk; records the time, tokens and peak memory."""
        bar = tqdm(total=len(todo), desc=f"{system.name} {data.name}", unit="item", leave=False) \
            if self.progress else None
        peak_memory.reset()
        start = time.perf_counter()
        tokens_before = getattr(generator, "tokens_generated", 0)
        for begin in range(0, len(todo), self.config.chunk):
            chunk = todo[begin: begin + self.config.chunk]
            unique = list(dict.fromkeys(request for _, request in chunk))
            outputs = generator.generate(unique, decoding or DecodingConfig(),
                                         on_batch=bar.update if bar is not None else None)
            self.generated[system.name] = self.generated.get(system.name, 0) + len(unique)
            answer = dict(zip(unique, outputs))
            for example, request in chunk:
                memo[(request, decoding)] = answer[request]
                truncated = reached_budget(generator, request, answer[request], data.evalset, decoding)
                records[example.id] = answer_record(example, data.policy.model_input(example), answer[request],
                                                    data.policy, truncated)
            save()
        if bar is not None:
            bar.close()
        memory, measure = peak_memory.peak()
        self.timing.setdefault(system.name, {})[data.name] = {
            "seconds": round(time.perf_counter() - start, 2), "requests": len(todo),
            "tokens": getattr(generator, "tokens_generated", 0) - tokens_before,
            "peak_memory_bytes": memory, "peak_memory_measure": measure,
        }


def run_evaluation(config: EvalConfig, **kwargs: Any) -> ResultsDocument:
    """Run an evaluation and write `results.json`, predictions and the report into `config.out`."""
    return Evaluation(config, **kwargs).run()
