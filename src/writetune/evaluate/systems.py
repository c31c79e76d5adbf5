"""The rows of an evaluation: a model spec, how it decodes and how many solved examples its prompt shows, parsed
from `--model` specs (`copy`, `few-shot:SPEC`, `NAME=SPEC`) and `--decoding` names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from writetune.evaluate.config import EvalConfig, EvalConfigError
from writetune.generate import COPY_SPEC, DecodingConfig

FEW_SHOT_PREFIX = "few-shot:"
_ROW_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.+-]*)=(.+)$")


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


def config_systems(config: EvalConfig) -> list[System]:
    """The rows of a configuration: its models under each of its decodings."""
    return parse_systems(config.models, config.decodings, shots=config.shots, batch_size=config.batch_size,
                         max_new_tokens=config.max_new_tokens, length_ratio=config.length_ratio,
                         length_slack=config.length_slack)
