"""The sets an evaluation runs on: the suite's sets (restricted to `--set`) whose files are in the data directory,
and each one loaded with its tokenisation policy, its task instruction and its gold edits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from writetune.data.evalsets import EvalSet, MissingEvalData, get_eval_set, load_eval_set, suite
from writetune.data.m2format import M2Document
from writetune.data.readers import Example
from writetune.evaluate.config import EvalConfig, EvalConfigError
from writetune.evaluate.policy import TokenizationPolicy, tokenization_policy
from writetune.evaluate.scoring import gold_edits
from writetune.tasks import get_task


@dataclass
class SetData:
    """A set as the runner uses it: its items (limited by `--limit`), how their text is shown to a model and
    scored, the task instruction (empty for a non-writing set, whose items carry their own) and the gold edits."""

    evalset: EvalSet
    examples: list[Example]
    policy: TokenizationPolicy
    instruction: str
    gold: M2Document | None = None

    @property
    def name(self) -> str:
        return self.evalset.name


def select_sets(config: EvalConfig, log: Callable[[str], None]) -> tuple[list[EvalSet], list[dict[str, str]]]:
    """The suite's sets (restricted to `config.sets`) that are in the data directory, and the skipped ones with
    the reason. With `strict`, a missing file raises `MissingEvalData` instead."""
    sets = [s for name in config.suite.split(",") for s in suite(name.strip())]
    if config.sets:
        wanted = list(dict.fromkeys(config.sets))
        for name in wanted:
            get_eval_set(name)  # unknown names fail with the known ones listed
        unknown = [n for n in wanted if n not in {s.name for s in sets}]
        if unknown:
            raise EvalConfigError(f"set(s) {', '.join(unknown)} are not in suite '{config.suite}'")
        sets = [s for s in sets if s.name in wanted]
    present, skipped = [], []
    for evalset in sets:
        missing = evalset.missing_files(config.data_dir)
        if missing:
            if config.strict:
                raise MissingEvalData(evalset.name, missing[0])
            reason = f"missing {missing[0]}" + (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else "")
            skipped.append({"set": evalset.name, "task": evalset.task, "reason": reason})
            log(f"skipped {evalset.name}: {reason}")
        else:
            present.append(evalset)
    return present, skipped


def load_set(evalset: EvalSet, config: EvalConfig) -> SetData:
    """The set's items under the configuration's `--limit`, with their policy, instruction and gold edits."""
    examples = load_eval_set(evalset, config.data_dir)
    if config.limit is not None:
        examples = examples[: config.limit]
    if not examples:
        raise ValueError(f"eval set '{evalset.name}' has no items in {config.data_dir}")
    task = get_task(evalset.task)
    return SetData(evalset, examples, tokenization_policy(evalset, examples),
                   task.instruction if task.writing else "", gold_edits(evalset, config.data_dir, examples))
