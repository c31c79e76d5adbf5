"""Measure the limits of `writetune.serve.rewrite_check` from real rewrites and write them beside that module.

For every writing task, the records of a built mix whose output differs from its input are real rewrites of the
training side; the limits are the 1st percentile of `kept` and the 99th of every other feature over them.
The script then reports how often the limits fire on the references of the `writing-dev` carvings (rewrites the
limits never saw: the false-alarm rate) and, given saved predictions of `writetune eval`, on a system's answers.

    python scripts/measure_rewrite_thresholds.py out/mix-paper --data-dir ../shared/data \
        [--predictions runs/quickstart/eval/predictions]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from writetune.data.evalsets import load_eval_set, suite
from writetune.serve.rewrite_check import FEATURES, THRESHOLDS_FILE, check_rewrite, rewrite_features, thresholds
from writetune.tasks import get_task


def measure(mix: Path) -> dict:
    by_task: dict[str, list] = defaultdict(list)
    for line in (mix / "train.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if get_task(row["task"]).writing and row["output"] != row["input"]:
            by_task[row["task"]].append(rewrite_features(row["input"], row["output"]))
    tasks = {}
    for task, rows in sorted(by_task.items()):
        values = {f: np.array([getattr(r, f) for r in rows], dtype=float) for f in FEATURES}
        limits = {"kept_min": round(float(np.percentile(values["kept"], 1)), 4)}
        limits.update({f"{f}_max": round(float(np.percentile(values[f], 99)), 4) for f in FEATURES if f != "kept"})
        tasks[task] = {**limits, "n": len(rows)}
    manifest = json.loads((mix / "manifest.json").read_text(encoding="utf-8"))
    return {"measured_on": {"recipe": manifest["recipe"], "seed": manifest["seed"],
                            "rule": "1st percentile of kept, 99th of the other features, over changed train records"},
            "tasks": tasks}


def alarm_rates(pairs: dict[str, list[tuple[str, str, str]]]) -> dict[str, str]:
    out = {}
    for name, rows in pairs.items():
        flagged = sum(not check_rewrite(task, source, answer).confident for task, source, answer in rows)
        out[name] = f"{flagged}/{len(rows)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mix", type=Path, help="a built mix directory (train.jsonl, manifest.json)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, help="a predictions/ folder of writetune eval")
    args = parser.parse_args()
    document = measure(args.mix)
    THRESHOLDS_FILE.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    thresholds.cache_clear()
    print(json.dumps(document["tasks"], indent=1))
    refs: dict[str, list] = {}
    for evalset in suite("writing-dev"):
        if evalset.available(args.data_dir):
            examples = [e.detokenized() for e in load_eval_set(evalset, args.data_dir)]
            refs[evalset.name] = [(evalset.task, e.source, r) for e in examples for r in e.references if r != e.source]
    print("flagged among the writing-dev references:", alarm_rates(refs))
    if args.predictions:
        answers: dict[str, list] = {}
        for path in sorted(args.predictions.glob("*.jsonl")):
            system, set_name = path.stem.rsplit(".", 1)
            task = next(s.task for s in suite("writing-dev") if s.name == set_name)
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            answers[f"{system} {set_name}"] = [(task, r["source"], r["output"]) for r in rows]
        print("flagged among the answers:", alarm_rates(answers))


if __name__ == "__main__":
    main()
