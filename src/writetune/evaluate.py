"""The suite runner: every system on every evaluation set of a suite, scored with each set's metrics.

For each system x set it loads the examples (`writetune.evalsets`), generates answers (resumable: predictions are
written atomically per set and reused by item id when the system's settings are unchanged), puts the answers into
the form the set's references have (the tokenisation policy: PTB re-tokenisation for PTB-tokenized sets, raw text
for raw sets, lower case where the references are lower-cased), scores them with every metric of the set
(bootstrap confidence intervals) and tests each system against a baseline row (paired bootstrap). The result is one
JSON document (`results.json`) from which `writetune.report` draws tables and plots.

Items of a non-writing task (the `general` suite) carry their own instruction and are answered within the set's fixed
token budget; each answer records whether it reached that budget (re-encoded with the model's tokenizer), which the
`empty_or_truncated` metric counts. `suite` may name several suites, comma-separated (`writing-dev,general`).

Systems are model specs (`writetune.generate.make_generator`), plus two baseline forms that need no training:
`copy` (the output is the source) and `few-shot:SPEC` (SPEC prompted with k solved examples from the training side
of the same task, never from evaluation items).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from writetune import peak_memory
from writetune.atomic import write_text_atomic
from writetune.data.readers import Example
from writetune.data.sources import M2Source, ParallelSource, StsbCsvSource, WncPrePostSource
from writetune.data.tokenization import match_key, project_onto_source, tokenize_ptb
from writetune.evalsets import EvalSet, MissingEvalData, get_eval_set, load_eval_set, suite
from writetune.generate import (
    COPY_SPEC,
    DecodingConfig,
    Generator,
    Request,
    default_dtype,
    make_generator,
    token_budget,
)
from writetune.prompt import token_ids
from writetune.tasks import all_tasks, get_task

RESULTS_FILE = "results.json"
PREDICTIONS_DIR = "predictions"
FEW_SHOT_PREFIX = "few-shot:"
LOWER_IS_BETTER = {"self_bleu", "empty_or_truncated"}  # every other metric: higher is better
TRUNCATION_SLACK = 2  # re-encoding an answer's text may give a token or two fewer than were generated


class EvalConfigError(ValueError):
    """An evaluation configuration that cannot run; the message says which option and why."""


# ----------------------------------------------------------------------------------------------------------------
# systems


@dataclass(frozen=True)
class System:
    """One row of the results table: a model spec, how it decodes and how many solved examples its prompt shows.
    `model` is `copy` for the copy-the-source baseline (which has no decoding)."""

    name: str
    model: str
    decoding: DecodingConfig | None = None
    shots: int = 0

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or "system"

    @property
    def is_copy(self) -> bool:
        return self.model == COPY_SPEC

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "shots": self.shots}
        out["decoding"] = self.decoding.describe() if self.decoding is not None else None
        return out


_ROW_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.+-]*)=(.+)$")


def split_row_name(spec: str) -> tuple[str, str]:
    """`NAME=SPEC` gives a row its own name (`tuned=runs/quickstart`); a bare SPEC is named by itself."""
    match = _ROW_NAME.match(spec.strip())
    if match is None:
        return spec.strip(), spec.strip()
    return match.group(1), match.group(2).strip()


def parse_systems(models: Sequence[str], decodings: Sequence[str] = ("greedy",), *, shots: int = 3,
                  **decoding_options) -> list[System]:
    """Systems from `--model` specs and `--decoding` names: one row per model and decoding strategy (`copy` gets
    one row). `few-shot:SPEC` is SPEC with a `shots`-example prompt; `NAME=SPEC` names the row NAME."""
    if not models:
        raise EvalConfigError("no --model given (a model spec, 'copy' or 'few-shot:SPEC')")
    names = [d.strip() for d in decodings if d.strip()] or ["greedy"]
    configs = [DecodingConfig.parse(name, **decoding_options) for name in names]
    systems: list[System] = []
    for given in models:
        row, spec = split_row_name(given)
        if not spec:
            raise EvalConfigError("empty --model spec")
        if spec == COPY_SPEC:
            systems.append(System(row, COPY_SPEC))
            continue
        k = 0
        model = spec
        if spec.startswith(FEW_SHOT_PREFIX):
            model = spec[len(FEW_SHOT_PREFIX):].strip()
            k = shots
            if not model or model == COPY_SPEC:
                raise EvalConfigError(f"'{spec}': few-shot needs a model spec after 'few-shot:'")
            if k < 1:
                raise EvalConfigError(f"'{spec}': --shots must be at least 1 for a few-shot system")
        for decoding in configs:
            name = row if len(configs) == 1 else f"{row} [{decoding.name}]"
            systems.append(System(name, model, decoding, k))
    seen = set()
    for system in systems:
        if system.name in seen:
            raise EvalConfigError(f"system '{system.name}' is given twice")
        seen.add(system.name)
    return systems


# ----------------------------------------------------------------------------------------------------------------
# tokenisation policy


@dataclass(frozen=True)
class TokenizationPolicy:
    """How text crosses between a set's files and a model: the model sees `input` text (`detokenized` for
    PTB-tokenized sets, `raw` otherwise), and its answer is scored as `hypothesis`: `ptb` (tokenized with
    `writetune.data.tokenization.tokenize_ptb`, as the M2 scorer and JFLEG's GLEU script expect), `ptb+hyphens`
    (also splitting intra-word hyphens, as CWEB's spaCy tokenization does) or `raw` (whitespace collapsed only, as
    EASSE expects); `lowercase` when the set's references are lower-cased.

    A tokenized answer is projected onto its source (`project_onto_source`): what the model left unchanged keeps
    the source's own tokens, and only the changed stretches are tokenized, so copying the source scores exactly
    what the reference scorer gives the source file."""

    input: str
    hypothesis: str
    lowercase: bool = False

    def model_input(self, example: Example) -> str:
        return example.detokenized().source if self.input == "detokenized" else example.source

    def tokenize(self, text: str) -> str:
        """Text in the set's token conventions."""
        text = tokenize_ptb(text, split_hyphens="+hyphens" in self.hypothesis)
        if "+possessive" in self.hypothesis:  # the WNC sample writes the possessive as "kgb ' s"
            text = _POSSESSIVE.sub("' s", text)
        return text

    def apply(self, output: str, example: Example) -> str:
        """The answer to `example` as it is scored."""
        text = " ".join(output.split())
        if self.hypothesis.startswith("ptb"):
            if self.input == "detokenized":
                text = project_onto_source(text, example.source, self.tokenize)
            else:
                text = self.tokenize(text)
        return text.lower() if self.lowercase else text

    def describe(self) -> str:
        projected = "+projected" if self.hypothesis.startswith("ptb") and self.input == "detokenized" else ""
        return f"input:{self.input}|hyp:{self.hypothesis}{projected}" + ("+lowercased" if self.lowercase else "")


_POSSESSIVE = re.compile(r"(?<!\S)'s(?!\S)")


def tokenization_policy(evalset: EvalSet, examples: Sequence[Example]) -> TokenizationPolicy:
    """The policy of a set: its registered tokenisation (`ptb` or `raw`), refined by the conventions of its files:
    CWEB (spaCy) and the WNC sample split intra-word hyphens, the WNC sample also splits the possessive, and
    lower-cased references get lower-cased hypotheses. Measured on the copy system, the refinements raise the share
    of sources that survive detokenisation and re-tokenisation unchanged from 55 to 85 of the 100 on `wnc_dev`."""
    refs = [r for e in examples for r in e.references]
    lowercase = bool(refs) and all(r == r.lower() for r in refs) and any(r != r.upper() for r in refs)
    if evalset.tokenization != "ptb":
        return TokenizationPolicy("raw", "raw", lowercase)
    hypothesis = "ptb"
    if isinstance(evalset.source, WncPrePostSource):
        hypothesis = "ptb+hyphens+possessive"
    elif any(f.startswith("cweb/") for f in evalset.files):
        hypothesis = "ptb+hyphens"
    return TokenizationPolicy("detokenized", hypothesis, lowercase)


# ----------------------------------------------------------------------------------------------------------------
# few-shot pools: the training side of each task in a data directory laid out as the releases are

SHOT_POOLS = {
    "grammaticality": M2Source(format="m2", path="cweb/m2/CWEB-G.dev.m2"),
    "fluency": ParallelSource(format="parallel", source="jfleg/dev/dev.src",
                              references=[f"jfleg/dev/dev.ref{i}" for i in range(4)], tokenized=True),
    "simplification": ParallelSource(format="parallel", source="asset/dataset/asset.valid.orig",
                                     references=["asset/dataset/asset.valid.simp.0"]),
    "neutralization": WncPrePostSource(format="wnc_pre_post", pre="wnc_sample/pre.train", post="wnc_sample/post.train"),
    "paraphrase": StsbCsvSource(format="stsb_csv", path="stsb_en/stsb-en-train.csv"),
}


def few_shot_examples(evalset: EvalSet, examples: Sequence[Example], data_dir: Path, k: int,
                      seed: int = 0, blocked: set[str] | None = None) -> tuple[tuple[str, str], ...]:
    """k solved (input, answer) pairs for the set's task, from the task's training-side pool: never an item whose
    source or reference matches (by `match_key`) an item of this set or a key in `blocked` (the other sets being
    evaluated), never an unchanged pair, 4-40 words, chosen by a hash of the text (the same shots for every item of
    the set). Raises MissingEvalData or ValueError when the pool is absent or too small."""
    spec = SHOT_POOLS.get(evalset.task)
    if spec is None:
        raise ValueError(f"no training-side pool for task '{evalset.task}' to draw few-shot examples from")
    for path in spec.files():
        if not (data_dir / path).is_file():
            raise MissingEvalData(evalset.name, data_dir / path)
    blocked = set(blocked or ()) | {match_key(t) for e in examples for t in (e.source, *e.references)}
    candidates = []
    for pool_example in spec.read(data_dir, task=evalset.task, origin="shots"):
        plain = pool_example.detokenized()
        source, answer = plain.source, plain.references[0] if plain.references else ""
        if not answer or match_key(source) == match_key(answer) or match_key(source) in blocked:
            continue
        if any(match_key(r) in blocked for r in pool_example.references):
            continue
        if not 4 <= len(source.split()) <= 40:
            continue
        rank = hashlib.sha256(f"shots:{seed}:{evalset.task}:{match_key(source)}".encode()).hexdigest()
        candidates.append((rank, source, answer))
    if len(candidates) < k:
        raise ValueError(f"the few-shot pool of task '{evalset.task}' has only {len(candidates)} usable pairs")
    return tuple((s, a) for _, s, a in sorted(candidates)[:k])


# ----------------------------------------------------------------------------------------------------------------
# configuration


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
    sets: list[str] | None = None
    seed: int = 12345
    chunk: int = 256  # requests per generation call; predictions are saved after each
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.out = Path(self.out)
        if self.limit is not None and self.limit < 1:
            raise EvalConfigError("--limit must be at least 1")
        if self.bootstrap < 0:
            raise EvalConfigError("--bootstrap must be 0 (no intervals) or more")
        if self.batch_size < 1 or self.chunk < 1:
            raise EvalConfigError("--batch-size must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise EvalConfigError("--threads must be at least 1")
        if not self.data_dir.is_dir():
            raise EvalConfigError(f"--data-dir {self.data_dir}: not a directory")

    def systems(self) -> list[System]:
        return parse_systems(self.models, self.decodings, shots=self.shots, batch_size=self.batch_size,
                             max_new_tokens=self.max_new_tokens)

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return default_dtype(device)


# ----------------------------------------------------------------------------------------------------------------
# predictions on disk


def predictions_path(out: Path, system: System, evalset: EvalSet) -> Path:
    return out / PREDICTIONS_DIR / f"{system.slug}.{evalset.name}.jsonl"


def _read_predictions(path: Path, fingerprint: str) -> dict[str, dict]:
    """Records of a predictions file keyed by item id, or {} when it is absent or was made with other settings."""
    meta = path.with_suffix(".meta.json")
    if not path.is_file() or not meta.is_file():
        return {}
    try:
        if json.loads(meta.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            return {}
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return {}
    return {r["id"]: r for r in records if "id" in r and "output" in r}


def _write_predictions(path: Path, records: list[dict], meta: dict) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_text_atomic(path.with_suffix(".meta.json"), json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# scoring


def _metric(name: str):
    from writetune.metrics import get_metric

    return get_metric(name)


def _gold(evalset: EvalSet, data_dir: Path, examples: Sequence[Example]):
    """The set's gold M2 document restricted to `examples` (matched by the `file:line` ids), or None."""
    if not isinstance(evalset.source, M2Source):
        return None
    from writetune.metrics import read_m2

    document = read_m2(data_dir / evalset.source.path)
    by_line = {sentence.line: i for i, sentence in enumerate(document)}
    indices = []
    for example in examples:
        line = int(example.id.rsplit(":", 1)[1])
        if line not in by_line:
            raise ValueError(f"{evalset.name}: item {example.id} has no block in {document.path}")
        indices.append(by_line[line])
    return document.subset(indices)


def item_text(example: Example) -> str:
    """What an item asks about, as metrics see its source: the source text, or for an item with its own
    instruction, the instruction and the input (an Alpaca record may have no input)."""
    if not example.instruction:
        return example.source
    return f"{example.instruction}\n\n{example.source}" if example.source else example.instruction


def item_request(example: Example, source: str, instruction: str, shots: tuple = ()) -> Request:
    """The request for an item: the set's task instruction over the item's text, or, for an item of a non-writing
    set (`instruction` empty), the item's own instruction over its input (an IFBench prompt is the instruction)."""
    if instruction:
        return Request(instruction, source, shots)
    if example.instruction:
        return Request(example.instruction, source, shots)
    return Request(source, "", shots)


def metric_inputs(metric, hyps: list[str], examples: Sequence[Example], gold) -> dict[str, Any]:
    """Keyword arguments for `Metric.corpus_score`-style inputs: gold edits where the metric takes them and the
    set has them, else sources and references as the set's files have them."""
    kwargs: dict[str, Any] = {"hyps": hyps}
    use_gold = metric.needs_gold or (metric.accepts_gold and gold is not None)
    if use_gold:
        kwargs["gold"] = gold
    else:
        kwargs["sources"] = [item_text(e) for e in examples]
    if not use_gold and (metric.needs_refs or metric.accepts_refs):
        n_refs = min(len(e.references) for e in examples)
        kwargs["refs"] = [[e.references[k] for e in examples] for k in range(n_refs)]
    return kwargs


@dataclass
class _Scored:
    """One metric of one system on one set: the score record and the per-segment statistics."""

    record: dict[str, Any]
    metric: Any
    stats: Any


def score_set(metric_names: Sequence[str], hyps: list[str], examples: Sequence[Example], gold, policy_text: str,
              set_name: str, bootstrap: int, seed: int, truncated: Sequence[bool] | None = None) -> list[_Scored]:
    """Every metric of a set on one system's answers; `truncated` (per answer: did it reach its token budget) goes
    to the metrics that count truncated answers."""
    from writetune.metrics import get_metric, make_inputs

    out = []
    for name in metric_names:
        metric = get_metric("empty_or_truncated", truncated=truncated) if name == "empty_or_truncated" \
            else _metric(name)
        kwargs = metric_inputs(metric, hyps, examples, gold)
        inputs = make_inputs(kwargs.pop("hyps"), **kwargs)
        metric.check_inputs(inputs)
        stats = metric.segment_stats(inputs)
        score = metric.score_stats(stats, n_refs=metric.n_refs(inputs), bootstrap=bootstrap, seed=seed)
        record = {
            "metric": name,
            "label": getattr(metric, "label", name),
            "score": round(float(score.score), 4),
            "ci": [round(score.ci[0], 4), round(score.ci[1], 4)] if score.ci is not None else None,
            "n": score.n,
            "signature": f"{score.signature}|set:{set_name}|{policy_text}",
            "components": score.to_dict()["components"],
        }
        out.append(_Scored(record, metric, stats))
    return out


# ----------------------------------------------------------------------------------------------------------------
# the runner


@dataclass
class _SetData:
    evalset: EvalSet
    examples: list[Example]
    policy: TokenizationPolicy
    instruction: str
    gold: Any = None


class Evaluation:
    """Runs an `EvalConfig`. `make` builds generators (tests pass a counting factory); `log` receives progress
    lines. `run()` returns the results document and writes it with predictions and the report into `config.out`."""

    def __init__(self, config: EvalConfig, *, make: Callable[..., Generator] = make_generator,
                 log: Callable[[str], None] = lambda line: None, progress: bool = True):
        self.config = config
        self.make = make
        self.log = log
        self.progress = progress
        self.systems = config.systems()
        names = [s.name for s in self.systems]
        if config.baseline is not None and config.baseline not in names:
            raise EvalConfigError(f"--baseline '{config.baseline}' is not one of the systems ({', '.join(names)})")
        self.baseline = config.baseline or names[0]
        self.blocked: set[str] = set()  # match keys of every item being evaluated: never a few-shot example
        self.generated: dict[str, int] = {}  # system name -> requests sent to its generator in this run
        self.timing: dict[str, dict[str, dict[str, float]]] = {}

    # -- sets

    def select_sets(self) -> tuple[list[EvalSet], list[dict[str, str]]]:
        """The suite's sets (restricted to `config.sets`) that are in the data directory, and the skipped ones with
        the reason. With `strict`, a missing file raises `MissingEvalData` instead."""
        sets = [s for name in self.config.suite.split(",") for s in suite(name.strip())]
        if self.config.sets:
            wanted = list(dict.fromkeys(self.config.sets))
            for name in wanted:
                get_eval_set(name)  # unknown names fail with the known ones listed
            unknown = [n for n in wanted if n not in {s.name for s in sets}]
            if unknown:
                raise EvalConfigError(f"set(s) {', '.join(unknown)} are not in suite '{self.config.suite}'")
            sets = [s for s in sets if s.name in wanted]
        present, skipped = [], []
        for evalset in sets:
            missing = evalset.missing_files(self.config.data_dir)
            if missing:
                if self.config.strict:
                    raise MissingEvalData(evalset.name, missing[0])
                reason = f"missing {missing[0]}" + (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else "")
                skipped.append({"set": evalset.name, "task": evalset.task, "reason": reason})
                self.log(f"skipped {evalset.name}: {reason}")
            else:
                present.append(evalset)
        return present, skipped

    def load(self, evalset: EvalSet) -> _SetData:
        examples = load_eval_set(evalset, self.config.data_dir)
        if self.config.limit is not None:
            examples = examples[: self.config.limit]
        if not examples:
            raise ValueError(f"eval set '{evalset.name}' has no items in {self.config.data_dir}")
        task = get_task(evalset.task)
        return _SetData(evalset, examples, tokenization_policy(evalset, examples),
                        task.instruction if task.writing else "", _gold(evalset, self.config.data_dir, examples))

    @staticmethod
    def set_decoding(system: System, evalset: EvalSet) -> DecodingConfig | None:
        """The system's decoding on a set: as configured, or with the set's fixed budget of new tokens for every
        answer (no budget proportional to the input) where the set has one."""
        if system.decoding is None or evalset.max_new_tokens is None:
            return system.decoding
        return replace(system.decoding, max_new_tokens=evalset.max_new_tokens, length_ratio=0.0,
                       length_slack=evalset.max_new_tokens)

    # -- generation

    def _fingerprint(self, system: System, data: _SetData, shots: tuple) -> tuple[str, dict]:
        decoding = self.set_decoding(system, data.evalset)
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
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        return digest, meta

    def predictions(self, system: System, data: _SetData, get_generator: Callable[[], Generator],
                    memo: dict) -> list[dict]:
        """The system's records for the set, in set order: reused from disk where possible, else generated in
        chunks that are saved as they finish."""
        shots = ()
        if system.shots:
            shots = few_shot_examples(data.evalset, data.examples, self.config.data_dir, system.shots,
                                      blocked=self.blocked)
        fingerprint, meta = self._fingerprint(system, data, shots)
        decoding = self.set_decoding(system, data.evalset)
        path = predictions_path(self.config.out, system, data.evalset)
        done = _read_predictions(path, fingerprint)
        records: dict[str, dict] = {}
        todo: list[tuple[Example, Request]] = []
        for example in data.examples:
            source = data.policy.model_input(example)
            request = item_request(example, source, data.instruction, shots)
            if example.id in done and done[example.id].get("source") == source:  # re-scored under today's policy
                saved = done[example.id]
                records[example.id] = {**saved, "scored": data.policy.apply(saved["output"], example)}
            elif (request, decoding) in memo:
                records[example.id] = self._record(example, source, memo[(request, decoding)], data)
            else:
                todo.append((example, request))
        meta = {**meta, "fingerprint": fingerprint, "set": data.evalset.name, "n": len(data.examples)}
        if todo:
            self.log(f"{system.name} / {data.evalset.name}: generating {len(todo)} of {len(data.examples)} "
                     f"({len(data.examples) - len(todo)} reused)")
            generator = get_generator()
            bar = _progress(len(todo), f"{system.name} {data.evalset.name}", self.progress)
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
                    truncated = self._truncated(generator, request, answer[request], data, decoding)
                    records[example.id] = self._record(example, data.policy.model_input(example), answer[request],
                                                       data, truncated)
                _write_predictions(path, self._keep(data, records, done), meta)
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - start
            memory, measure = peak_memory.peak()
            self.timing.setdefault(system.name, {})[data.evalset.name] = {
                "seconds": round(seconds, 2), "requests": len(todo),
                "tokens": getattr(generator, "tokens_generated", 0) - tokens_before,
                "peak_memory_bytes": memory, "peak_memory_measure": measure,
            }
        else:
            self.log(f"{system.name} / {data.evalset.name}: all {len(data.examples)} predictions reused")
            _write_predictions(path, self._keep(data, records, done), meta)
        by_id = {e.id: e for e in data.examples}
        for key, record in records.items():
            request = item_request(by_id[key], record["source"], data.instruction, shots)
            memo.setdefault((request, decoding), record["output"])
        return [records[e.id] for e in data.examples]

    @staticmethod
    def _truncated(generator: Generator, request: Request, output: str, data: _SetData,
                   decoding: DecodingConfig | None) -> bool | None:
        """Whether an answer of a set with a fixed budget reached it: its text re-encoded with the generator's
        tokenizer is within TRUNCATION_SLACK tokens of the budget. None where it is not measured (no budget, or a
        backend without a tokenizer here)."""
        tokenizer = getattr(generator, "tokenizer", None)
        if data.evalset.max_new_tokens is None or decoding is None or tokenizer is None:
            return None
        budget = token_budget(len(token_ids(tokenizer, request.input or request.instruction)), decoding)
        return len(token_ids(tokenizer, output)) >= budget - TRUNCATION_SLACK

    @staticmethod
    def _keep(data: _SetData, records: dict[str, dict], saved: dict[str, dict]) -> list[dict]:
        """What the predictions file holds: this run's records in set order, then saved records of items outside
        this run (a run with a smaller --limit does not throw away a larger run's answers)."""
        ordered = [records[e.id] for e in data.examples if e.id in records]
        return ordered + [r for key, r in saved.items() if key not in records]

    @staticmethod
    def _record(example: Example, source: str, output: str, data: _SetData, truncated: bool | None = None) -> dict:
        record = {"id": example.id, "source": source, "output": output, "references": list(example.references),
                  "scored": data.policy.apply(output, example)}
        if truncated is not None:
            record["truncated"] = truncated
        return record

    # -- the whole run

    def run(self) -> dict[str, Any]:
        config = self.config
        started = time.perf_counter()
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        sets, skipped = self.select_sets()
        data = {}
        for evalset in sets:
            data[evalset.name] = self.load(evalset)
        self.blocked = {match_key(t) for d in data.values() for e in d.examples for t in (e.source, *e.references)}
        results: dict[str, dict[str, Any]] = {}
        scored: dict[tuple[str, str], list[_Scored]] = {}
        failures: list[dict[str, str]] = []
        generators: dict[str, Generator] = {}
        memos: dict[tuple[str, Any], dict] = {}
        for system in self.systems:
            results[system.name] = {}

            def get_generator(system=system) -> Generator:
                key = system.model
                if key not in generators:
                    generators.clear()  # one model in memory at a time
                    self.log(f"loading {system.model}")
                    options = {} if system.is_copy or system.model.startswith("openai:") else {
                        "dtype": config.dtype, "device": config.device}
                    generators[key] = self.make(system.model, config.backend, **options)
                return generators[key]

            memo = memos.setdefault((system.model, system.shots), {})
            for name, set_data in data.items():
                try:
                    records = self.predictions(system, set_data, get_generator, memo)
                except (MissingEvalData, ValueError) as err:
                    if config.strict or not system.shots:
                        raise
                    failures.append({"system": system.name, "set": name, "reason": str(err)})
                    self.log(f"{system.name} / {name}: not evaluated ({err})")
                    continue
                hyps = [r["scored"] for r in records]
                truncated = [bool(r.get("truncated")) for r in records] \
                    if any("truncated" in r for r in records) else None
                scores = score_set(set_data.evalset.metrics, hyps, set_data.examples, set_data.gold,
                                   set_data.policy.describe(), name, config.bootstrap, config.seed, truncated)
                scored[(system.name, name)] = scores
                records_out = [s.record for s in scores]
                results[system.name][name] = records_out[0] if len(records_out) == 1 else records_out
                self.log(f"{system.name} / {name}: " + ", ".join(
                    f"{s.record['label']} {s.record['score']:.2f}" for s in scores))
        self._significance(scored)
        document = {
            "systems": results,
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
            "timing": {"wall_seconds": round(time.perf_counter() - started, 1), "generation": self.timing},
            "task_order": [t.name for t in all_tasks()],
        }
        write_text_atomic(config.out / RESULTS_FILE, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        from writetune.report import write_report

        write_report(document, config.out)
        return document

    def _significance(self, scored: dict[tuple[str, str], list[_Scored]]) -> None:
        """Paired bootstrap of every system against the baseline on every set and metric, into the records."""
        from writetune.metrics import paired_bootstrap

        samples = self.config.bootstrap or 1000
        for (system, set_name), scores in scored.items():
            if system == self.baseline:
                for s in scores:
                    s.record["baseline"] = True
                continue
            base = scored.get((self.baseline, set_name))
            if base is None:
                continue
            for s, b in zip(scores, base):
                test = paired_bootstrap(s.metric, b.stats, s.stats, n_samples=samples, seed=self.config.seed)
                s.record["vs_baseline"] = {
                    "baseline": self.baseline, "delta": round(float(test.delta), 4),
                    "p_value": round(float(test.p_value), 5), "test": f"paired_bootstrap:{samples}",
                    "delta_ci": [round(float(x), 4) for x in test.delta_ci] if test.delta_ci else None,
                }


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", leave=False)


def run_evaluation(config: EvalConfig, **kwargs) -> dict[str, Any]:
    """Run an evaluation and write `results.json`, predictions and the report into `config.out`."""
    return Evaluation(config, **kwargs).run()


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results document written by `run_evaluation` (a file or the directory that holds results.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no results file") from None
    except ValueError as err:
        raise ValueError(f"{path}: not a results document ({err})") from None
    if not isinstance(document, dict) or "systems" not in document:
        raise ValueError(f"{path}: not a results document (no 'systems')")
    return document


__all__ = [
    "EvalConfig", "EvalConfigError", "Evaluation", "System", "TokenizationPolicy", "few_shot_examples",
    "load_results", "parse_systems", "run_evaluation", "tokenization_policy",
]
