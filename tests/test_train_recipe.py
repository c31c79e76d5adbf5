"""The training recipe (`writetune.train.recipe`): defaults and overrides, errors that name the file and key, and the
shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.train import tiny_recipe, write_recipe

from writetune.train.recipe import RecipeError, load_train_recipe


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
