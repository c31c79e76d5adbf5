"""Signatures: the one-line record of how a score was computed, in sacreBLEU's ``name|key:value|...`` form.

Every signature starts with the metric's name, then the metric's own fields (implementation, tokenisation, number of
references, options), then, when a bootstrap interval was computed, ``bootstrap:N|seed:S``, and ends with the
versions (``version:writetune-X``, plus the version of a scoring package where the metric delegates to one, e.g.
``+sacrebleu-2.4.3``). Metrics supply only their own fields (`Metric.signature_fields`); the rest is written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from writetune import __version__


def version_tag() -> str:
    """writetune's version as signatures write it."""
    return f"writetune-{__version__}"


@dataclass(frozen=True)
class Signature:
    """The shared fields of every metric's signature, extended with the metric's own `fields` (in order).

    A field whose value is True is a flag, written as its key alone (e.g. ``mean``); `versions` are appended to
    writetune's own version with ``+``.
    """

    metric: str
    fields: Mapping[str, object]
    bootstrap: int = 0
    seed: int | None = None
    versions: Sequence[str] = field(default_factory=tuple)

    def format(self) -> str:
        parts = [self.metric]
        parts += [key if value is True else f"{key}:{value}" for key, value in self.fields.items()]
        if self.bootstrap:
            parts.append(f"bootstrap:{self.bootstrap}|seed:{self.seed}")
        parts.append("version:" + "+".join([version_tag(), *self.versions]))
        return "|".join(parts)

    def __str__(self) -> str:
        return self.format()
