"""The request and decoding API every backend implements: `Request` (what to answer), `DecodingConfig` (how),
`token_budget` (new tokens allowed for an input), the `Generator` protocol and the copy-the-source system."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

STRATEGIES = ("greedy", "beam", "sample")


@dataclass(frozen=True)
class Request:
    """One thing to generate: an instruction and the text it applies to (empty for plain instructions).

    `shots` are earlier (input, answer) turns under the same instruction, rendered as a conversation before the
    request: the few-shot prompt of a baseline row. `history` holds earlier (user message, assistant answer) turns
    of a chat, rendered before the shots; `system` replaces the prompt format's system prompt when it is not None
    (an empty string renders no system header).
    """

    instruction: str
    input: str = ""
    shots: tuple[tuple[str, str], ...] = ()
    history: tuple[tuple[str, str], ...] = ()
    system: str | None = None

    @property
    def budget_text(self) -> str:
        """The text a token budget is relative to: the input, or the instruction when there is none."""
        return self.input or self.instruction


_DECODING_NAME = re.compile(r"^(greedy|beam(\d*)|sample(?:@(\d+))?)$")


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode. New tokens per request are `min(max_new_tokens, ceil(length_ratio * input_tokens) +
    length_slack)`, where input_tokens counts the request's input text (or its instruction when it has none).
    `batch_size` is the number of sequences decoded together (for greedy decoding on transformers: the rows of the
    continuous batch; for beam search: `batch_size // num_beams` prompts of `num_beams` beams each)."""

    strategy: str = "greedy"
    num_beams: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    length_ratio: float = 2.0
    length_slack: int = 16
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown decoding strategy '{self.strategy}' (expected one of {', '.join(STRATEGIES)})")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.num_beams < 1:
            raise ValueError("max_new_tokens, batch_size and num_beams must be at least 1")
        if self.strategy == "sample" and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")

    @property
    def name(self) -> str:
        """Short label: `greedy`, `beam4`, `sample` (seed 0) or `sample@SEED`."""
        if self.strategy == "beam":
            return f"beam{self.num_beams}"
        if self.strategy == "sample" and self.seed:
            return f"sample@{self.seed}"
        return self.strategy

    def describe(self) -> str:
        """Every setting that changes the output, for signatures and resume checks."""
        parts = [f"beam{self.num_beams}" if self.strategy == "beam" else self.strategy]
        if self.strategy == "sample":
            parts.append(f"t={self.temperature:g},p={self.top_p:g},seed={self.seed}")
        parts.append(f"max_new={self.max_new_tokens},ratio={self.length_ratio:g},slack={self.length_slack}")
        return ";".join(parts)

    @classmethod
    def parse(cls, name: str, **overrides) -> "DecodingConfig":
        """`greedy`, `beam` (4 beams), `beamN`, `sample` or `sample@SEED` (one row per seed: several seeds give a
        mean and spread), with other fields from `overrides`."""
        match = _DECODING_NAME.match(name.strip().lower())
        if not match:
            raise ValueError(f"unknown decoding '{name}' (expected greedy, beam, beamN such as beam4, sample or "
                             "sample@SEED such as sample@1)")
        if match.group(1) == "greedy":
            return cls(strategy="greedy", **overrides)
        if match.group(1).startswith("sample"):
            seed = int(match.group(3)) if match.group(3) else overrides.pop("seed", 0)
            overrides.pop("seed", None)
            return cls(strategy="sample", seed=seed, **overrides)
        beams = int(match.group(2)) if match.group(2) else overrides.pop("num_beams", 4)
        if beams < 2:
            raise ValueError(f"decoding '{name}': beam search needs at least 2 beams")
        overrides.pop("num_beams", None)
        return cls(strategy="beam", num_beams=beams, **overrides)


def token_budget(n_input_tokens: int, decoding: DecodingConfig) -> int:
    """New tokens allowed for an input of `n_input_tokens` tokens."""
    return min(decoding.max_new_tokens, math.ceil(decoding.length_ratio * n_input_tokens) + decoding.length_slack)


@runtime_checkable
class Generator(Protocol):
    """What every backend offers: answers in request order, and a count of answer tokens produced so far."""

    tokens_generated: int

    def generate(
        self,
        requests: Sequence[Request],
        decoding: DecodingConfig = DecodingConfig(),
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]: ...

    def describe(self) -> str: ...


class CopyGenerator:
    """The copy-the-source system: every answer is the request's input, unchanged."""

    def __init__(self):
        self.tokens_generated = 0

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        outputs = [r.input for r in requests]
        if on_batch is not None and requests:
            on_batch(len(requests))
        return outputs

    def describe(self) -> str:
        return "copy"
