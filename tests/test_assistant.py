"""The shipped assistant: `writetune export --format adapter` (a LoRA adapter alone, in bfloat16), the alias
`assistant-135m` behind `writetune edit`/`serve`'s default, its size and its model card. What it answers through
the console script: tests/test_cli.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.train import tiny_recipe
from writetune.models import ASSISTANT_ALIAS, DEFAULT_ASSISTANT, SHIPPED_ADAPTERS, EMBEDDED_ALIAS, load_model, resolve
from writetune.prompt import token_ids
from writetune.train.export import ExportError, export_adapter
from writetune.train.loop import train
from writetune.train.recipe import recipe_from_dict

SHIPPED = SHIPPED_ADAPTERS[ASSISTANT_ALIAS]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir) -> Path:
    tmp = tmp_path_factory.mktemp("adapter-export")
    recipe = tiny_recipe(tmp, tiny_model_dir, max_steps=4, optimizer__lr=5e-2, checkpoint__every=0)
    return train(recipe_from_dict(recipe)).run_dir


def _logits(loaded, text: str):
    prompt = torch.tensor([token_ids(loaded.tokenizer, loaded.prompt_format.render_prompt("Fix the grammar:", text))])
    with torch.no_grad():
        return loaded.model(prompt).logits


def test_adapter_export_writes_bfloat16_weights_that_load_on_the_same_base(trained_run, tmp_path):
    out = export_adapter(str(trained_run), tmp_path / "adapter")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                    "prompt_format.json"]
    fp32 = load_file(str(trained_run / "model" / "adapter_model.safetensors"))
    bf16 = load_file(str(out / "adapter_model.safetensors"))
    assert bf16.keys() == fp32.keys() and {t.dtype for t in bf16.values()} == {torch.bfloat16}
    assert (out / "adapter_model.safetensors").stat().st_size < 0.6 * (
        trained_run / "model" / "adapter_model.safetensors").stat().st_size
    original, exported = load_model(str(trained_run)), load_model(str(out))
    assert exported.resolved.kind == "adapter" and exported.resolved.base.path == original.resolved.base.path
    assert exported.prompt_format == original.prompt_format
    base = load_model(original.resolved.base.path)
    want, got, plain = (_logits(m, "the cats is sleeping on the mat.") for m in (original, exported, base))
    assert (got - want).abs().max() < 0.05 * (plain - want).abs().max()  # rounding, far below the adapter's effect


def test_adapter_export_refuses_what_it_cannot_write(trained_run, tiny_model_dir, tmp_path):
    with pytest.raises(ExportError, match="not a LoRA adapter"):
        export_adapter(str(tiny_model_dir), tmp_path / "a")
    with pytest.raises(ExportError, match="unknown dtype"):
        export_adapter(str(trained_run), tmp_path / "b", dtype="int8")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_adapter(str(trained_run), tmp_path / "c")
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"


@pytest.mark.embedded
def test_the_shipped_assistant_is_a_small_bfloat16_adapter_on_the_embedded_model():
    assert DEFAULT_ASSISTANT == ASSISTANT_ALIAS
    resolved = resolve(ASSISTANT_ALIAS, convert=False)
    assert resolved.kind == "adapter" and resolved.base.spec == EMBEDDED_ALIAS
    assert Path(resolved.path) == SHIPPED.resolve()
    size = sum(path.stat().st_size for path in SHIPPED.iterdir())
    assert size <= 20 * 1024 * 1024
    weights = load_file(str(SHIPPED / "adapter_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert json.loads((SHIPPED / "adapter_config.json").read_text())["base_model_name_or_path"] == EMBEDDED_ALIAS


def test_the_model_card_says_how_to_reproduce_it_and_what_it_inherits():
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    for heading in ("## Reproduce", "## Training", "## Data", "## Evaluation", "## Limits", "## Licences"):
        assert heading in card
    assert "writetune run configs/assistant-cpu.yaml" in card
    assert re.search(r"`data/train.jsonl` \| `[0-9a-f]{64}`", card)
    assert "CC BY-NC" in card and "jfleg_dev" in card


def _writetune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "writetune.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.embedded
def test_info_names_the_shipped_assistant_and_its_card():
    done = _writetune("info", "--json")
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)["model"]
    assert model["spec"] == ASSISTANT_ALIAS and model["kind"] == "adapter"
    assert model["base"]["spec"] == EMBEDDED_ALIAS and model["card"] == str(SHIPPED.resolve() / "README.md")
