"""Damaged models are one-line errors naming the file, through `load_model` and `writetune edit`: a truncated
.gguf, an adapter whose base is itself, malformed adapter_config.json and config.json, and weights holding inf."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from writetune.cli import app
from writetune.models import ModelSpecError, load_model, resolve
from writetune.train.export import export_gguf


def edit_with(model: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["edit", "She go home.", "--model", str(model), "--max-new-tokens", "1"])
    return result.exit_code, result.output


def assert_one_line_error(model: Path, message: str) -> None:
    code, output = edit_with(model)
    assert code == 2 and "Traceback" not in output, output
    assert message in " ".join(output.split()), output


def save_adapter(base_dir: Path, where: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(where)
    return where


def test_a_truncated_gguf_names_the_file(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path / "cache"))
    whole = export_gguf(str(tiny_model_dir), tmp_path / "whole.gguf", dtype="f32")
    data = whole.read_bytes()
    for name, size in (("header-only.gguf", 20), ("half.gguf", len(data) // 2), ("short.gguf", len(data) - 64)):
        cut = tmp_path / name
        cut.write_bytes(data[:size])
        with pytest.raises(ModelSpecError, match=rf"^{cut}: not a complete GGUF file"):
            resolve(str(cut))
    assert_one_line_error(tmp_path / "half.gguf", f"{tmp_path / 'half.gguf'}: not a complete GGUF file")
    assert not any((tmp_path / "cache").rglob("*.safetensors"))  # nothing half-converted was cached


def test_an_adapter_that_is_its_own_base(tiny_model_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    adapter = save_adapter(tiny_model_dir, run / "model")
    config_file = adapter / "adapter_config.json"
    monkeypatch.chdir(adapter)
    for base in (str(adapter), ".", str(run)):  # itself, itself relative to here, the run directory holding it
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = base
        config_file.write_text(json.dumps(config))
        with pytest.raises(ModelSpecError, match=rf"^{config_file}: .* leads back to the adapter itself"):
            resolve(str(adapter))
    assert_one_line_error(run, f"{config_file}: base_model_name_or_path")


@pytest.mark.parametrize("name", ["adapter_config.json", "config.json"])
def test_malformed_json_configs_name_the_file_and_line(tiny_model_dir, tmp_path, name):
    if name == "config.json":
        model = tmp_path / "model"
        shutil.copytree(tiny_model_dir, model)
    else:
        model = save_adapter(tiny_model_dir, tmp_path / "adapter")
    (model / name).write_text('{\n  "model_type": "llama",\n  "hidden_size": 64,,\n}\n')
    with pytest.raises(ModelSpecError, match=rf"^{model / name}:3: not valid JSON"):
        load_model(str(model))
    assert_one_line_error(model, f"{model / name}:3: not valid JSON")
    (model / name).write_text("[1, 2]\n")
    with pytest.raises(ModelSpecError, match="expected a JSON object"):
        load_model(str(model))


def test_an_inf_weight_names_the_checkpoint_and_tensor(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = next(model.glob("*.safetensors"))
    tensors = load_file(str(weights))
    name = next(n for n in tensors if n.endswith("mlp.up_proj.weight"))
    tensors[name][0, 0] = float("inf")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelSpecError, match=rf"{model}: weight '{name}' holds inf or NaN"):
        load_model(str(model))
    assert_one_line_error(model, f"weight '{name}' holds inf or NaN")

    adapter = save_adapter(tiny_model_dir, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tiny_model_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    adapter_weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora = next(iter(adapter_weights))
    adapter_weights[lora].fill_(float("nan"))
    save_file(adapter_weights, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(ModelSpecError, match=rf"{adapter}: weight .*lora.* holds inf or NaN"):
        load_model(str(adapter))
