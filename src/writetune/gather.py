"""`writetune report DIR...`: the evaluations of several runs and grids gathered into one results page.

Each DIR is an evaluation directory (`results.json`) or a run or grid directory (`eval/results.json`). The documents
must be comparable: evaluated on the same sets (same items, files, tokenisation and metrics), with the same metric
signature for every set and metric, and against the same baseline system; otherwise `IncomparableResults` names the
file and the key, and no page is written. Rows that are the same system (same model, decoding, shots, backend, dtype)
are shown once; where different systems share a name, each of their rows is prefixed with its directory's
name.

The page (`results.md`, with `plots/`) has the systems as rows and the sets' metrics as columns: each cell is the
score with its 95% bootstrap interval and † / ‡ (* for an undirected measure) where the paired bootstrap against the
base row gives p < 0.05. Below the systems, a row gives each column's minimum detectable difference: the smallest
true difference a paired comparison on that set detects with 80% power at alpha = 0.05 (two-sided), (z_0.975 +
z_0.8) x the standard error of the paired difference, read off the paired bootstrap's 95% interval of the
difference, (high - low) / (2 z_0.975), and taken as the median over the systems compared with the base row. Then a
cost table per system: training wall time and hardware, trainable parameters, model size on disk (a LoRA run: its
adapter), generation tokens/s, seconds per 100 answers and peak memory while generating, wherever the run recorded
them. Rows that sample one system with several seeds get a table of their mean and spread.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from writetune.atomic import write_text_atomic
from writetune.evaluate.cost import model_cost
from writetune.pipeline import EVAL_DIR
from writetune.report import (
    ALPHA,
    DELTA_PLOT,
    PLOTS_DIR,
    SCORES_PLOT,
    SEED_SPREAD_NOTE,
    columns,
    plot_deltas,
    plot_scores,
    score_with_interval,
    seed_spread_table,
    significance_mark,
    table_header,
)
from writetune.results import RESULTS_FILE, cell, load_results, records

PAGE_FILE = "results.md"
Z_ALPHA = 1.959964  # two-sided alpha = 0.05
Z_POWER = 0.841621  # power 0.8
SET_KEYS = ("n", "files", "tokenization", "metrics", "max_new_tokens")
SYSTEM_KEYS = ("model", "shots", "decoding", "backend", "dtype")


class IncomparableResults(ValueError):
    """Results that cannot share a table; the message names the file and the key."""


@dataclass
class Source:
    """One gathered results document and the directory it was found in."""

    path: Path
    root: Path
    document: dict

    @property
    def label(self) -> str:
        """The run's or grid's directory name (the parent of an `eval/` directory)."""
        folder = self.path.parent
        return folder.parent.name if folder.name == EVAL_DIR else folder.name


def find_results(directory: str | Path) -> Source:
    """The results document of an evaluation directory, or of a run or grid directory (its `eval/`)."""
    root = Path(directory)
    for candidate in (root / RESULTS_FILE, root / EVAL_DIR / RESULTS_FILE):
        if candidate.is_file():
            return Source(candidate, root, load_results(candidate))
    raise FileNotFoundError(f"{root}: no {RESULTS_FILE} (nor eval/{RESULTS_FILE})")


def _signatures(document: dict, system: str | None = None) -> dict[tuple[str, str], str]:
    """(set, metric) -> signature, of `system`'s records or the first record of each."""
    out: dict[tuple[str, str], str] = {}
    for _, set_name, record in records(document, system):
        out.setdefault((set_name, record["metric"]), record.get("signature", ""))
    return out


def _system_identity(document: dict, name: str) -> dict:
    info = (document.get("system_info") or {}).get(name) or {}
    return {key: info.get(key) for key in SYSTEM_KEYS}


def check_comparable(sources: list[Source]) -> None:
    """Raise IncomparableResults (file and key) unless every document was scored like the first."""
    first = sources[0]
    sets0 = first.document.get("sets") or {}
    base0 = _system_identity(first.document, first.document.get("baseline"))
    signatures0 = _signatures(first.document, first.document.get("baseline"))
    for source in sources[1:]:
        sets = source.document.get("sets") or {}
        if set(sets) != set(sets0):
            raise IncomparableResults(
                f"{source.path}: key 'sets': evaluated on {', '.join(sorted(sets)) or 'nothing'}, but {first.path} on "
                f"{', '.join(sorted(sets0)) or 'nothing'}")
        for name in sets0:
            for key in SET_KEYS:
                if sets[name].get(key) != sets0[name].get(key):
                    raise IncomparableResults(
                        f"{source.path}: key 'sets.{name}.{key}': {sets[name].get(key)!r}, but {first.path} has "
                        f"{sets0[name].get(key)!r}")
        baseline = source.document.get("baseline")
        base = _system_identity(source.document, baseline)
        if base != base0:
            raise IncomparableResults(
                f"{source.path}: key 'baseline': '{baseline}' ({base}) is not the baseline of {first.path}, "
                f"'{first.document.get('baseline')}' ({base0}); significance marks would mean different things")
        for (set_name, metric), signature in _signatures(source.document, baseline).items():
            if (set_name, metric) in signatures0 and signature != signatures0[(set_name, metric)]:
                raise IncomparableResults(
                    f"{source.path}: key 'systems.{baseline}.{set_name}.signature' ({metric}): '{signature}', but "
                    f"{first.path} has '{signatures0[(set_name, metric)]}'")


def gather(sources: list[Source]) -> dict:
    """One results document from comparable ones: the first's baseline row, then every other system once."""
    if not sources:
        raise ValueError("no results to gather")
    check_comparable(sources)
    first = sources[0].document
    baseline = first.get("baseline")
    merged = {key: first.get(key) for key in ("sets", "task_order", "skipped", "not_evaluated")}
    merged.update(suite=first.get("suite"), baseline=baseline, systems={}, system_info={}, timing={}, cost={},
                  origin={})
    rows = [(source, name, baseline if name == source.document.get("baseline") else name,
             _system_identity(source.document, name)) for source in sources for name in source.document["systems"]]
    kinds: dict[str, list[dict]] = {}  # row name -> the different systems that carry it, in order of appearance
    for _, _, row, identity in rows:
        if identity not in kinds.setdefault(row, []):
            kinds[row].append(identity)
    prefixed: dict[tuple[str, int], str] = {}  # (row name, which of its systems) -> that system's prefixed row
    identities: dict[str, dict] = {}
    for source, name, row, identity in rows:
        kind = kinds[row].index(identity)
        if len(kinds[row]) > 1 and not (row == baseline and kind == 0):
            # different systems of one name: each row says the directory it was first gathered from (the base
            # row keeps its name)
            row = prefixed.setdefault((row, kind), f"{source.label}/{name}")
        if row in identities:
            if identities[row] == identity:
                continue  # the same system, evaluated again
            raise IncomparableResults(f"{source.path}: key 'systems.{name}': a different system of that name is "
                                      f"already gathered as '{row}'")
        identities[row] = identity
        document = source.document
        generation = (document.get("timing") or {}).get("generation") or {}
        merged["systems"][row] = document["systems"][name]
        merged["system_info"][row] = (document.get("system_info") or {}).get(name, {})
        merged["timing"][row] = generation.get(name, {})
        if name in (document.get("cost") or {}):
            merged["cost"][row] = document["cost"][name]
        merged["origin"][row] = str(source.root)
    # the base row first
    order = [baseline] + [name for name in merged["systems"] if name != baseline]
    for key in ("systems", "system_info", "timing", "cost", "origin"):
        merged[key] = {name: merged[key][name] for name in order if name in merged[key]}
    return merged


# ----------------------------------------------------------------------------------------------------------------
# minimum detectable difference


def minimum_detectable_difference(delta_ci: tuple[float, float]) -> float:
    """The MDD at 80% power, alpha 0.05 two-sided, of a paired comparison whose bootstrap 95% interval of the
    difference is `delta_ci`."""
    standard_error = (delta_ci[1] - delta_ci[0]) / (2 * Z_ALPHA)
    return (Z_ALPHA + Z_POWER) * standard_error


def detectable_differences(document: dict) -> dict[tuple[str, str], float | None]:
    """Per (set, metric): the median MDD over the systems with a paired test against the base row."""
    out: dict[tuple[str, str], float | None] = {}
    for col in columns(document):
        values = []
        for system in document["systems"]:
            record = cell(document, system, col["set"], col["metric"])
            test = (record or {}).get("vs_baseline") or {}
            if test.get("delta_ci"):
                values.append(minimum_detectable_difference(tuple(test["delta_ci"])))
        out[(col["set"], col["metric"])] = statistics.median(values) if values else None
    return out


# ----------------------------------------------------------------------------------------------------------------
# cost


def system_cost(document: dict, name: str) -> dict[str, Any]:
    """What is known of a system's cost: training and size on disk (recorded by the evaluation; read off the disk
    for a document written before it recorded them), generation speed and peak memory (from the evaluation's
    timing)."""
    recorded = (document.get("cost") or {}).get(name)
    info = (document.get("system_info") or {}).get(name) or {}
    cost: dict[str, Any] = dict(recorded) if recorded is not None else model_cost(info.get("model") or "")
    timing = (document.get("timing") or {}).get(name) or {}
    seconds = sum(t.get("seconds", 0) for t in timing.values())
    tokens = sum(t.get("tokens", 0) for t in timing.values())
    if seconds > 0 and tokens > 0:
        cost["tokens_per_s"] = tokens / seconds
    generated = [t for t in timing.values() if t.get("requests", 0) > 0]
    if generated:
        cost["seconds_per_100"] = 100 * sum(t["seconds"] for t in generated) / sum(t["requests"] for t in generated)
    peaks = [(t["peak_memory_bytes"], t.get("peak_memory_measure", "")) for t in timing.values()
             if t.get("peak_memory_bytes")]
    if peaks:
        cost["peak_memory_bytes"], cost["peak_memory_measure"] = max(peaks)
    return cost


def _size(n: float | None) -> str:
    if not n:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cost_table(document: dict) -> str:
    lines = ["| System | Training | Hardware | Trainable / total parameters | On disk | Generation tokens/s | "
             "s / 100 sentences | Peak memory (generating) |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name in document["systems"]:
        c = system_cost(document, name)
        training = f"{c['wall_s'] / 60:.1f} min ({c.get('method')})" if c.get("wall_s") else "–"
        params = (f"{c['trainable_params']:,} / {c['total_params']:,}" if c.get("trainable_params") and
                  c.get("total_params") else "–")
        disk = f"{_size(c['disk_bytes'])} ({c['disk_what']})" if c.get("disk_bytes") else "–"
        speed = f"{c['tokens_per_s']:.0f}" if c.get("tokens_per_s") else "–"
        per_100 = f"{c['seconds_per_100']:.1f}" if c.get("seconds_per_100") is not None else "–"
        memory = (f"{_size(c['peak_memory_bytes'])} ({c['peak_memory_measure'].replace('_', ' ')})"
                  if c.get("peak_memory_bytes") else "–")
        lines.append(f"| {name} | {training} | {c.get('hardware') or '–'} | {params} | {disk} | {speed} | {per_100} | "
                     f"{memory} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# the page


def results_table(document: dict) -> str:
    """Systems x (set, metric): score [95% interval] with the significance mark, then the MDD row."""
    cols = columns(document)
    lines = table_header(cols)
    baseline = document.get("baseline")
    for system in document["systems"]:
        row = [f"{system} (base)" if system == baseline else system]
        for col in cols:
            record = cell(document, system, col["set"], col["metric"])
            if record is None:
                row.append("–")
                continue
            row.append(score_with_interval(record) + significance_mark(record))
        lines.append("| " + " | ".join(row) + " |")
    mdd = detectable_differences(document)
    lines.append("| *MDD, 80% power* | " + " | ".join(
        f"*{value:.1f}*" if (value := mdd[(c["set"], c["metric"])]) is not None else "–" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def results_page(document: dict, sources: list[Source], plots: dict[str, str]) -> str:
    baseline = document.get("baseline")
    parts = ["# Results\n", results_table(document)]
    parts.append(
        f"\nEach cell: score [95% bootstrap interval]. † / ‡: significantly better / worse than the base row "
        f"`{baseline}` (paired bootstrap, p < {ALPHA}); *: significantly different on a measure with no better "
        "direction; a difference without a mark is not one the test can tell from chance. ↓: lower is better. "
        "MDD: the smallest true difference from the base row that a paired comparison on that set detects with "
        "80% power (alpha 0.05, two-sided), from the paired bootstrap (median over the systems compared); "
        "differences below it are ones the set is too small to show.\n")
    spread = seed_spread_table(document)
    if spread:
        parts.append("\n## Sampling over seeds\n")
        parts.append(spread + "\n" + SEED_SPREAD_NOTE + "\n")
    parts.append("\n## Cost\n")
    parts.append(cost_table(document))
    parts.append("\nTraining: wall time and hardware of the run (its train_result.json, recorded when it was "
                 "evaluated); on disk: the run's model/ (for LoRA the adapter, which also needs the base model) or the "
                 "base model's weights; tokens/s and peak memory: while the evaluation generated (on CPU the whole "
                 "process's peak resident set); s / 100 sentences: generation wall time per 100 answers, over the "
                 "sets this evaluation generated (not those whose answers it reused).\n")
    if plots:
        parts.append("\n## Plots\n")
        parts.extend(f"![{title}]({path})" for title, path in plots.items())
    parts.append("\n## Sources\n")
    for source in sources:
        parts.append(f"- `{source.path}`: suite `{source.document.get('suite')}`, "
                     f"{len(source.document['systems'])} systems")
    parts.append("\n## Rows\n")
    for name, info in document["system_info"].items():
        details = ", ".join(f"{k}: {v}" for k, v in info.items() if v not in (None, 0, ""))
        parts.append(f"- `{name}` ({document['origin'][name]}): {details}")
    parts.append("\n## Sets and signatures\n")
    signatures = _signatures(document)
    for name, info in (document.get("sets") or {}).items():
        parts.append(f"- `{name}` ({info['task']}, n = {info['n']}): {info['description']}")
        for metric in info.get("metrics", []):
            if (name, metric) in signatures:
                parts.append(f"  - {metric}: `{signatures[(name, metric)]}`")
    return "\n".join(parts) + "\n"


def write_results_page(directories: list[str | Path], out: str | Path) -> Path:
    """Gather the results under `directories` into `out/results.md` (and `out/plots/`); returns the page's path."""
    if not directories:
        raise ValueError("report: give at least one evaluation, run or grid directory")
    sources = [find_results(d) for d in directories]
    document = gather(sources)
    out = Path(out)
    plots: dict[str, str] = {}
    if document["systems"] and columns(document):
        plot_scores(document, out / PLOTS_DIR / SCORES_PLOT)
        plots["Scores with 95% intervals"] = f"{PLOTS_DIR}/{SCORES_PLOT}"
        if plot_deltas(document, out / PLOTS_DIR / DELTA_PLOT) is not None:
            plots["Per-task change against the base row"] = f"{PLOTS_DIR}/{DELTA_PLOT}"
    return write_text_atomic(out / PAGE_FILE, results_page(document, sources, plots))
