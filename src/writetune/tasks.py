"""The task registry: what a writing task is (name, aliases, instruction phrasings, metrics).

It is the single source of truth every other module asks; which evaluation sets score a task is said by the
evaluation-set registry (`writetune.data.evalsets`), each set naming its task. The eight built-in tasks are the
seven writing tasks of the Writing-Alpaca study plus `generic` instruction following; a new scenario is a YAML file
registered with `register_task_file`, no code change needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from writetune.config import ConfigError, load_validated


class UnknownTaskError(ValueError):
    """A task name or alias that is not registered."""


class TaskFileError(ConfigError):
    """A task YAML file that does not describe a valid task; the message names the file and the key."""


@dataclass(frozen=True)
class Task:
    """One task. `instructions[0]` is the canonical phrasing used when a user asks for the task by name."""

    name: str
    description: str
    instructions: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    writing: bool = True  # False for generic instruction following

    @property
    def instruction(self) -> str:
        return self.instructions[0]


_BUILTIN = (
    Task(
        name="grammaticality",
        aliases=("grammar", "gec"),
        description="Correct grammatical errors with minimal edits.",
        metrics=("m2_f05", "errant_f05"),
        instructions=(
            "Fix the grammar in this sentence:",
            "Correct the grammatical errors in the following text:",
            "Fix grammatical errors in this text:",
            "Make this sentence grammatically correct:",
            "Remove all grammatical errors from this text:",
            "Please correct any grammar mistakes here:",
            "Edit the text below so that it has no grammatical errors, changing as little as possible:",
            "Proofread this sentence and fix its grammar:",
            "Fix the errors in this sentence:",
            "Rewrite the sentence with correct grammar:",
        ),
    ),
    Task(
        name="fluency",
        aliases=("fluent",),
        description="Make text read naturally, as a native speaker would write it.",
        metrics=("gleu", "sari"),
        instructions=(
            "Make this text more fluent:",
            "Improve the fluency of this sentence:",
            "Rewrite the following so that it reads naturally:",
            "Make the sentence sound like a native speaker wrote it:",
            "Fix the disfluencies in this text:",
            "Smooth out the wording of this sentence:",
            "Edit this text so it flows better:",
            "Please make this sentence more natural and fluent:",
            "Fix grammar and awkward phrasing in this sentence:",
        ),
    ),
    Task(
        name="clarity",
        aliases=("clear",),
        description="Make text clearer and more concise without changing its meaning.",
        metrics=("sari",),
        instructions=(
            "Make this sentence clearer:",
            "Improve the clarity of this text:",
            "Rewrite the following to make it easier to understand:",
            "Make this text more concise and clear:",
            "Clarify this sentence:",
            "Edit this passage so its meaning is clearer:",
            "Remove wordiness and ambiguity from this sentence:",
            "Please make this text more readable:",
        ),
    ),
    Task(
        name="coherence",
        aliases=("coherent",),
        description="Make sentences fit together logically, with better connectives and ordering.",
        metrics=("sari",),
        instructions=(
            "Make this text more coherent:",
            "Improve the coherence of this paragraph:",
            "Fix the coherence of the following text:",
            "Make these sentences connect more logically:",
            "Edit this text so its ideas flow logically:",
            "Improve the transitions between these sentences:",
            "Make the text hang together better:",
            "Please make this passage more cohesive:",
        ),
    ),
    Task(
        name="simplification",
        aliases=("simplify", "simple"),
        description="Rewrite text with simpler words and structure, keeping its meaning.",
        metrics=("sari", "bleu"),
        instructions=(
            "Simplify this sentence:",
            "Make this text simpler:",
            "Rewrite the following in simpler language:",
            "Make this sentence easier to read:",
            "Use simpler words and shorter sentences to rewrite this:",
            "Paraphrase this so a child could understand it:",
            "Rewrite this sentence for a general audience:",
            "Please simplify the wording of this text:",
            "Reduce the complexity of this sentence:",
        ),
    ),
    Task(
        name="neutralization",
        aliases=("neutralize", "neutral", "debias"),
        description="Remove subjective bias so that text states facts neutrally.",
        metrics=("sari", "em"),
        instructions=(
            "Remove bias from this sentence:",
            "Make this text more neutral:",
            "Neutralize this sentence:",
            "Rewrite the following in a neutral point of view:",
            "Remove the subjective language from this text:",
            "Make this sentence objective:",
            "Edit this text so that it takes no side:",
            "Please remove any non-neutral wording here:",
        ),
    ),
    Task(
        name="paraphrase",
        aliases=("paraphrasing", "rephrase"),
        description="Say the same thing in different words.",
        metrics=("self_bleu", "ibleu", "bleu"),
        instructions=(
            "Paraphrase this sentence:",
            "Rewrite this text in different words:",
            "Rephrase the following sentence:",
            "Say this in another way:",
            "Write a paraphrase of this text:",
            "Reword this sentence while keeping its meaning:",
            "Express the same idea with different wording:",
            "Please rephrase this:",
        ),
    ),
    Task(
        name="generic",
        aliases=("general", "alpaca"),
        description="Follow a general instruction (Alpaca-style data that keeps the model's general ability).",
        writing=False,
        instructions=(
            "Follow the instruction.",
            "Complete the task described below.",
            "Respond to the request.",
            "Answer the following.",
            "Do what the instruction asks.",
            "Carry out this instruction.",
            "Help with the following request.",
            "Please respond to this.",
        ),
    ),
)

_REGISTRY: dict[str, Task] = {}
_ALIASES: dict[str, str] = {}


def _add(task: Task, *, replace: bool = False) -> Task:
    names = (task.name, *task.aliases)
    for name in names:
        owner = _ALIASES.get(name)
        if owner is not None and owner != task.name:
            raise ValueError(f"task name or alias '{name}' is already used by task '{owner}'")
    if task.name in _REGISTRY and not replace:
        raise ValueError(f"task '{task.name}' is already registered")
    old = _REGISTRY.get(task.name)
    if old is not None:
        for alias in old.aliases:
            _ALIASES.pop(alias, None)
    _REGISTRY[task.name] = task
    for name in names:
        _ALIASES[name] = task.name
    return task


for _task in _BUILTIN:
    _add(_task)


def get_task(name: str) -> Task:
    """A task by name or alias (case-insensitive)."""
    key = name.strip().lower()
    if key not in _ALIASES:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownTaskError(f"unknown task '{name}' (known tasks: {known}; aliases work too)")
    return _REGISTRY[_ALIASES[key]]


def all_tasks() -> list[Task]:
    """Every registered task, built-ins first, in registration order."""
    return list(_REGISTRY.values())


def writing_tasks() -> list[Task]:
    return [task for task in _REGISTRY.values() if task.writing]


class _TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    instructions: list[str] = Field(min_length=1)
    metrics: list[str] = []
    aliases: list[str] = []
    writing: bool = True

    @field_validator("instructions")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("every instruction must be a non-empty string")
        return value


def register_task_file(path: str | Path, *, replace: bool = False) -> Task:
    """Register a task described by a YAML file (keys: name, description, instructions, metrics, aliases,
    writing). With `replace`, a task of the same name is overwritten."""
    path = Path(path)
    spec = load_validated(path, _TaskFile, what="task", keys_hint="name, description, instructions, ...",
                          error=TaskFileError)
    task = Task(
        name=spec.name,
        description=spec.description,
        instructions=tuple(text.strip() for text in spec.instructions),
        metrics=tuple(spec.metrics),
        aliases=tuple(alias.lower() for alias in spec.aliases),
        writing=spec.writing,
    )
    try:
        return _add(task, replace=replace)
    except ValueError as err:
        raise TaskFileError(f"{path}: {err}") from err
