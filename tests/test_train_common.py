"""Shared helpers of the training tests (a tiny mix and a tiny recipe written into tmp_path), plus recipe tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from writetune.train.recipe import RecipeError, load_train_recipe

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


# ------------------------------------------------------------------------------------------------ recipe tests

def test_recipe_defaults_and_overrides(tmp_path, tiny_model_dir):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, tiny_model_dir))
    recipe = load_train_recipe(path, ["optimizer.lr=3e-4", "batch.grad_accum=2"])
    assert recipe.optimizer.lr == 3e-4 and recipe.batch.grad_accum == 2
    assert recipe.lora.dropout == 0.0 and recipe.precision == "fp32"
    # parsed settings (as `writetune run` passes a recipe's train_set) apply after the strings, values kept as given
    recipe = load_train_recipe(path, ["optimizer.lr=3e-4"], settings={"optimizer.lr": 5e-5, "eval.every": 7,
                                                                  "lora.target_modules": ["q_proj"]})
    assert recipe.optimizer.lr == 5e-5 and recipe.eval.every == 7 and recipe.lora.target_modules == ["q_proj"]
    with pytest.raises(RecipeError, match=r"r.yaml: key 'lr.x': 'lr' is not a section"):
        load_train_recipe(path, settings={"lr": 1, "lr.x": 2})


@pytest.mark.parametrize("change, key, words", [
    ({"lora": {"rank": 0}}, "lora.rank", "greater than or equal to 1"),
    ({"lora": {"rnak": 4}}, "lora.rnak", "unknown key"),
    ({"method": "full"}, "(top level)", "a full fine-tune trains every weight"),
    ({"epochs": 1}, "(top level)", "give epochs or max_steps, not both"),
    ({"batch": {"tokens": 64, "max_example_tokens": 128}}, "batch", "must fit in one packed row"),
    ({"precision": "fp8"}, "precision", "'fp32' or 'bf16'"),
    ({"schedule": {"warmup_steps": 3, "warmup_ratio": 0.1}}, "schedule", "not both"),
    ({"eval": {"metrics": {"simplification": "nope"}}}, "eval.metrics", "unknown metric"),
    ({"eval": {"tasks": ["poetry"]}}, "eval.tasks", "unknown task 'poetry'"),
])
def test_recipe_errors_name_file_and_key(tmp_path, tiny_model_dir, change, key, words):
    recipe = tiny_recipe(tmp_path, tiny_model_dir)
    recipe.update(change)
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    with pytest.raises(RecipeError) as err:
        load_train_recipe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: key '{key}'"), message
    assert words in message, message


def test_recipe_wandb_without_package_is_a_clear_error(tmp_path, tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    recipe = tiny_recipe(tmp_path, tiny_model_dir)
    recipe["log"]["wandb"] = True
    with pytest.raises(RecipeError, match="wandb package is not installed"):
        load_train_recipe(write_recipe(tmp_path / "w.yaml", recipe))


def test_recipe_bad_yaml_and_bad_override(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken.yaml:\d+: not valid YAML"):
        load_train_recipe(path)
    path.write_text("data: x\noutput_dir: y\n")
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_train_recipe(path, ["optimizer.lr"])


@pytest.mark.parametrize("name", ["train-lora-quick.yaml", "train-full.yaml"])
def test_shipped_recipes_are_valid(name):
    root = Path(__file__).resolve().parents[1] / "configs"
    recipe = load_train_recipe(root / name)
    assert recipe.model == "smollm2-135m"
    accelerate = {p.stem: yaml.safe_load(p.read_text()) for p in (root / "accelerate").glob("*.yaml")}
    assert accelerate["ddp"]["distributed_type"] == "MULTI_GPU" and accelerate["fsdp"]["distributed_type"] == "FSDP"
