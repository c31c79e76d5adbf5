"""Tables and plots from a results document (`writetune.results`): the paper-shaped markdown table, CSV, and two
figures (scores with 95% CI whiskers; per-task change against the baseline row).

The markdown table has the systems as rows and the sets as columns, grouped by task in the task registry's order
(every metric of a set is a column); the best value of each column is bold, and values that differ significantly
from the baseline row (paired bootstrap, p < 0.05) carry a dagger (better) or a double dagger (worse); for a
measure with no better direction (answer length) the mark is an asterisk and no value is bold. Which way is better
is what each score record says (`better`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import statistics
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from writetune.atomic import write_text_atomic
from writetune.results import cell, records

REPORT_FILE = "report.md"
CSV_FILE = "results.csv"
PLOTS_DIR = "plots"
SCORES_PLOT = "scores.png"
DELTA_PLOT = "delta_vs_baseline.png"
ALPHA = 0.05
PAPER_SETS = ("conll2014", "bea19_dev", "jfleg", "iterater_fluency", "iterater_clarity", "iterater_coherence",
              "turkcorpus", "asset", "wnc", "stsb")
COLORS = matplotlib.colormaps["tab10"].colors


def columns(document: dict) -> list[dict]:
    """Table columns: one per (set, metric), sets grouped by task in the registry's task order, each with the
    metric's label and which way it is better, as its records say (`higher` where no row has a record)."""
    sets = document.get("sets", {})
    order = document.get("task_order") or []
    rank = {task: i for i, task in enumerate(order)}
    names = sorted(sets, key=lambda n: (rank.get(sets[n]["task"], len(rank)), list(sets).index(n)))
    out = []
    first: dict[tuple[str, str], dict] = {}
    for _, set_name, record in records(document):
        first.setdefault((set_name, record["metric"]), record)
    for name in names:
        for metric in sets[name].get("metrics", []):
            record = first.get((name, metric), {})
            out.append({"set": name, "task": sets[name]["task"], "metric": metric,
                        "label": record.get("label", metric), "better": record.get("better", "higher")})
    return out


def significance_mark(record: dict) -> str:
    """† / ‡ where the record differs significantly (p < ALPHA) from the baseline for the better / worse, * where
    it differs on an undirected measure, else ''."""
    test = record.get("vs_baseline")
    if not test or test.get("p_value") is None or test["p_value"] >= ALPHA or test.get("delta") in (None, 0):
        return ""
    if record["better"] == "neither":
        return "*"
    improved = test["delta"] < 0 if record["better"] == "lower" else test["delta"] > 0
    return "†" if improved else "‡"


def _best(document: dict, column: dict) -> float | None:
    if column["better"] == "neither":
        return None
    values = [r["score"] for s in document["systems"] if (r := cell(document, s, column["set"], column["metric"]))]
    if not values:
        return None
    return min(values) if column["better"] == "lower" else max(values)


def _arrow(column: dict) -> str:
    return " ↓" if column["better"] == "lower" else ""


def score_with_interval(record: dict) -> str:
    """A score record's value with one decimal, and its 95% interval where it has one: `31.2 [29.8, 32.6]`."""
    interval = record.get("ci")
    return f"{record['score']:.1f}" + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "")


def table_header(cols: list[dict]) -> list[str]:
    """The two header lines of a systems x (set, metric) table: each task named over its first column, an arrow on
    the metrics where lower is better."""
    header = ["System"]
    previous_task = None
    for col in cols:
        head = f"{col['set']}<br>{col['label']}{_arrow(col)}"
        if col["task"] != previous_task:
            head = f"**{col['task'].capitalize()}**<br>{head}"
            previous_task = col["task"]
        header.append(head)
    return ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(cols)]


def markdown_table(document: dict, *, ci: bool = False) -> str:
    """The paper-shaped table (scores with one decimal); with `ci`, each value with its 95% interval instead."""
    cols = columns(document)
    lines = table_header(cols)
    best = [_best(document, col) for col in cols]
    baseline = document.get("baseline")
    for system in document["systems"]:
        row = [f"{system} (baseline)" if system == baseline else system]
        for col, top in zip(cols, best):
            record = cell(document, system, col["set"], col["metric"])
            if record is None:
                row.append("–")
                continue
            if ci:
                row.append(score_with_interval(record))
                continue
            text = f"{record['score']:.1f}"
            if top is not None and math.isclose(record["score"], top, abs_tol=1e-9):
                text = f"**{text}**"
            row.append(text + significance_mark(record))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


_SEED = re.compile(r"(^|[;,])seed=\d+")


def seed_groups(document: dict) -> dict[str, list[str]]:
    """Rows that are one system sampled with different seeds (the same model, shots, backend, dtype and sampling
    settings but the seed), two or more, under a label `NAME [sample, K seeds]`."""
    groups: dict[tuple, list[str]] = {}
    for name, info in (document.get("system_info") or {}).items():
        decoding = info.get("decoding") or ""
        if not decoding.startswith("sample;") or name not in document["systems"]:
            continue
        key = (info.get("model"), info.get("shots"), info.get("backend"), info.get("dtype"), _SEED.sub(r"\1", decoding))
        groups.setdefault(key, []).append(name)
    out = {}
    for rows in groups.values():
        if len(rows) > 1:
            out[f"{rows[0].split(' [', 1)[0]} [sample, {len(rows)} seeds]"] = rows
    return out


def seed_spread_table(document: dict) -> str:
    """For each seed group: every column's mean over the seeds ± their standard deviation, with the range. Empty
    when no system was sampled with several seeds."""
    groups = seed_groups(document)
    if not groups:
        return ""
    cols = columns(document)
    lines = table_header(cols)
    for label, rows in groups.items():
        row = [label]
        for col in cols:
            scores = [r["score"] for name in rows if (r := cell(document, name, col["set"], col["metric"]))]
            if len(scores) < 2:
                row.append("–")
                continue
            row.append(f"{statistics.mean(scores):.1f} ± {statistics.stdev(scores):.1f} "
                       f"({min(scores):.1f}–{max(scores):.1f})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


SEED_SPREAD_NOTE = ("Each cell: the mean over the seeds ± their standard deviation (the range in brackets): how much "
                    "of a sampled row's score is the draw.")


def csv_text(document: dict) -> str:
    """Long format: one row per system, set and metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["system", "task", "set", "metric", "score", "ci_low", "ci_high", "n", "baseline",
                     "delta_vs_baseline", "p_value", "signature"])
    for system in document["systems"]:
        for col in columns(document):
            record = cell(document, system, col["set"], col["metric"])
            if record is None:
                continue
            interval = record.get("ci") or [None, None]
            test = record.get("vs_baseline") or {}
            writer.writerow([system, col["task"], col["set"], col["metric"], record["score"], interval[0],
                             interval[1], record.get("n"), document.get("baseline"), test.get("delta"),
                             test.get("p_value"), record.get("signature")])
    return buffer.getvalue()


def markdown_report(document: dict, plots: dict[str, str] | None = None) -> str:
    """The whole report: table, notes, intervals, skipped sets, signatures, plots."""
    baseline = document.get("baseline")
    parts = [f"# Evaluation: suite `{document.get('suite')}`\n"]
    parts.append(markdown_table(document))
    parts.append(
        f"\nBold: best in the column. † / ‡: significantly better / worse than the baseline row `{baseline}` "
        f"(paired bootstrap, p < {ALPHA}); *: differs significantly on a measure with no better direction. "
        "↓: lower is better. Scores on a 0-100 scale, except answer lengths (words)."
    )
    extras = [name for name in document.get("sets", {}) if name not in PAPER_SETS]
    if extras and document.get("suite") == "writing":
        parts.append(f" Sets beyond the paper's ten: {', '.join(extras)}.")
    parts.append("\n")
    skipped = document.get("skipped") or []
    failures = document.get("not_evaluated") or []
    if skipped or failures:
        parts.append("\n## Not evaluated\n")
        for item in skipped:
            parts.append(f"- `{item['set']}` ({item.get('task', '')}): skipped, {item['reason']}")
        for item in failures:
            parts.append(f"- `{item['system']}` on `{item['set']}`: {item['reason']}")
        parts.append("")
    parts.append("\n## 95% confidence intervals (bootstrap)\n")
    parts.append(markdown_table(document, ci=True))
    spread = seed_spread_table(document)
    if spread:
        parts.append("\n## Sampling over seeds\n")
        parts.append(spread + "\n" + SEED_SPREAD_NOTE)
    parts.append("\n## Systems\n")
    for name, info in (document.get("system_info") or {}).items():
        details = ", ".join(f"{k}: {v}" for k, v in info.items() if v not in (None, 0, ""))
        parts.append(f"- `{name}`: {details}")
    parts.append("\n## Sets and signatures\n")
    signatures: dict[tuple[str, str], str] = {}
    for system in document["systems"]:
        for col in columns(document):
            record = cell(document, system, col["set"], col["metric"])
            if record is not None:
                signatures.setdefault((col["set"], col["metric"]), record.get("signature", ""))
    for name, info in (document.get("sets") or {}).items():
        parts.append(f"- `{name}` ({info['task']}, n = {info['n']}): {info['description']}. "
                     f"Tokenisation: `{info['tokenization']}`. Instruction: \"{info['instruction']}\"")
        for metric in info.get("metrics", []):
            if (name, metric) in signatures:
                parts.append(f"  - {metric}: `{signatures[(name, metric)]}`")
    timing = document.get("timing") or {}
    if timing.get("wall_seconds") is not None:
        parts.append(f"\nWall time of the run: {timing['wall_seconds']:.0f} s.")
    if plots:
        parts.append("\n## Plots\n")
        for title, path in plots.items():
            parts.append(f"![{title}]({path})")
    return "\n".join(parts) + "\n"


def primary_columns(document: dict) -> list[dict]:
    seen, out = set(), []
    for col in columns(document):
        if col["set"] not in seen:
            seen.add(col["set"])
            out.append(col)
    return out


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out and save a figure (PNG, 120 dpi, creating the directory). Figures are made with
    `matplotlib.figure.Figure`, not pyplot: nothing global (backend, open figures) changes."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_scores(document: dict, path: Path) -> Path:
    """Grouped bars: each set's first metric, one bar per system, 95% CI whiskers."""
    cols = primary_columns(document)
    systems = list(document["systems"])
    width = 0.8 / max(len(systems), 1)
    fig = Figure(figsize=(max(6.0, 1.3 * len(cols) + 2), 4.8))
    ax = fig.subplots()
    for k, system in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for j, col in enumerate(cols):
            record = cell(document, system, col["set"], col["metric"])
            if record is None:
                continue
            xs.append(j - 0.4 + width * (k + 0.5))
            ys.append(record["score"])
            interval = record.get("ci") or [record["score"], record["score"]]
            lo.append(max(record["score"] - interval[0], 0.0))
            hi.append(max(interval[1] - record["score"], 0.0))
        ax.bar(xs, ys, width=width * 0.95, color=COLORS[k % len(COLORS)], label=system)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="black", elinewidth=0.9, capsize=2)
    labels = [f"{c['set']}\n{c['label']}{_arrow(c)}" for c in cols]
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(labels, fontsize=8)
    previous = None
    for j, col in enumerate(cols):  # task boundaries
        if previous is not None and col["task"] != previous:
            ax.axvline(j - 0.5, color="grey", linewidth=0.6, linestyle=":")
        previous = col["task"]
    ax.set_ylabel("score (0-100)")
    ax.set_title(f"Suite {document.get('suite')}: scores with 95% bootstrap intervals")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", linewidth=0.3)
    return save_figure(fig, path)


def task_deltas(document: dict) -> dict[str, dict[str, float]]:
    """{system: {task: mean over the task's sets of (score - baseline score)}} on each set's first metric, with the
    sign flipped for lower-is-better metrics so that positive always means better than the baseline."""
    baseline = document.get("baseline")
    out: dict[str, dict[str, float]] = {}
    for system in document["systems"]:
        if system == baseline:
            continue
        per_task: dict[str, list[float]] = {}
        for col in primary_columns(document):
            mine = cell(document, system, col["set"], col["metric"])
            base = cell(document, baseline, col["set"], col["metric"])
            if mine is None or base is None:
                continue
            delta = mine["score"] - base["score"]
            per_task.setdefault(col["task"], []).append(-delta if col["better"] == "lower" else delta)
        out[system] = {task: sum(v) / len(v) for task, v in per_task.items()}
    return out


def plot_deltas(document: dict, path: Path) -> Path | None:
    """Grouped bars per task: each system's mean change against the baseline (positive = better)."""
    deltas = task_deltas(document)
    if not deltas:
        return None
    order = document.get("task_order") or []
    tasks = sorted({t for d in deltas.values() for t in d}, key=lambda t: order.index(t) if t in order else 99)
    systems = list(deltas)
    width = 0.8 / max(len(systems), 1)
    fig = Figure(figsize=(max(7.5, 1.5 * len(tasks) + 3), 4.6))
    ax = fig.subplots()
    all_systems = list(document["systems"])
    for k, system in enumerate(systems):
        xs = [j - 0.4 + width * (k + 0.5) for j, t in enumerate(tasks) if t in deltas[system]]
        ys = [deltas[system][t] for t in tasks if t in deltas[system]]
        color = COLORS[all_systems.index(system) % len(COLORS)]
        bars = ax.bar(xs, ys, width=width * 0.95, color=color, label=system)
        ax.bar_label(bars, labels=[f"{y:+.1f}" for y in ys], fontsize=7, padding=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, fontsize=9, rotation=20, ha="right")
    ax.set_ylabel(f"points vs {document.get('baseline')}")
    ax.set_title(f"Change against the baseline {document.get('baseline')}\n"
                 "(per task: mean over its sets of each set's first metric; positive = better)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", linewidth=0.3)
    ax.margins(y=0.15)
    return save_figure(fig, path)


def write_report(document: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write report.md, results.csv and the plots into `out`; returns their paths by kind."""
    out = Path(out)
    paths: dict[str, Path] = {}
    plots: dict[str, str] = {}
    if document["systems"] and columns(document):
        paths["scores_plot"] = plot_scores(document, out / PLOTS_DIR / SCORES_PLOT)
        plots["Scores with 95% intervals"] = f"{PLOTS_DIR}/{SCORES_PLOT}"
        delta = plot_deltas(document, out / PLOTS_DIR / DELTA_PLOT)
        if delta is not None:
            paths["delta_plot"] = delta
            plots["Per-task change against the baseline"] = f"{PLOTS_DIR}/{DELTA_PLOT}"
    paths["csv"] = out / CSV_FILE
    write_text_atomic(paths["csv"], csv_text(document))
    paths["markdown"] = out / REPORT_FILE
    write_text_atomic(paths["markdown"], markdown_report(document, plots))
    return paths
