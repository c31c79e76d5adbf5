"""A tiny mix and a tiny training recipe written into a test's tmp_path, for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


_PAIRS = [
    ("grammaticality", "Fix the grammar in this sentence:", "the cats is sleeping on the mat.",
     "The cats are sleeping on the mat."),
    ("grammaticality", "Fix grammatical errors in this text:", "She go to school every day.",
     "She goes to school every day."),
    ("grammaticality", "Fix the grammar in this sentence:", "He go to the market yesterday.",
     "He went to the market yesterday."),
    ("simplification", "Simplify this sentence:", "the committee deliberated extensively before reaching a verdict.",
     "The committee talked before a verdict."),
    ("simplification", "Make this text simpler:", "The quick brown fox jumps over the lazy dog.",
     "The fox jumps over the dog."),
    ("fluency", "Make this text more fluent:", "She go to school every day .", "She goes to school every day."),
    ("generic", "Answer the following.", "", "The quick brown fox jumps over the lazy dog."),
    ("generic", "Respond to the request.", "Paraphrase this sentence: the cats is sleeping.",
     "The cats are sleeping."),
]



def write_tiny_mix(directory: Path, n_train: int = 48, n_dev: int = 12) -> Path:
    """train.jsonl / dev.jsonl in the format of `writetune data build`, from a few pairs the tiny tokenizer knows."""
    directory.mkdir(parents=True, exist_ok=True)

    def rows(n: int, split: str):
        for i in range(n):
            task, instruction, source, target = _PAIRS[i % len(_PAIRS)]
            suffix = " " + " ".join(["day"] * (i % 5))  # varying lengths
            row = {"id": f"{split}-{i}", "task": task, "origin": "tiny", "instruction": instruction,
                   "input": (source + suffix).strip() if source else "", "output": (target + suffix).strip()}
            if split == "dev":
                row["references"] = [row["output"], target]
            yield row

    for split, n in (("train", n_train), ("dev", n_dev)):
        with open(directory / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows(n, split):
                fh.write(json.dumps(row) + "\n")
    return directory



def tiny_recipe(tmp_path: Path, model_dir: Path, **overrides) -> dict:
    """A recipe dict for the tiny model: a few steps, no generation eval unless asked."""
    mix = write_tiny_mix(tmp_path / "mix")
    recipe = {
        "model": str(model_dir),
        "data": str(mix),
        "output_dir": str(tmp_path / "run"),
        "method": "lora",
        "lora": {"rank": 4, "alpha": 8},
        "optimizer": {"lr": 1e-2},
        "schedule": {"name": "constant", "warmup_steps": 0},
        "batch": {"tokens": 160, "grad_accum": 1},
        "max_steps": 6,
        "seed": 0,
        "precision": "fp32",
        "checkpoint": {"every": 2, "keep_last": 2},
        "eval": {"every": 0, "at_start": False, "at_end": False, "generate_per_task": 0},
        "log": {"tensorboard": False, "progress": False},
    }
    for key, value in overrides.items():
        node = recipe
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return recipe



def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
