"""Model spec resolution: directories, adapters, run directories, GGUF conversion and its cache, clear errors; the
"auto" device."""

import json

import pytest

from writetune import models
from writetune.models import ModelSpecError, load_model, resolve, resolve_device
from writetune.prompt import alpaca, save_prompt_format


def test_directory_resolves_and_loads(tiny_model_dir):
    resolved = resolve(str(tiny_model_dir))
    assert resolved.kind == "directory" and resolved.path == str(tiny_model_dir.resolve())
    loaded = load_model(str(tiny_model_dir))
    assert loaded.prompt_format.name == "chatml"  # from the tokenizer's chat template
    assert loaded.tokenizer.pad_token is not None
    assert not loaded.model.training


def test_saved_prompt_format_wins_over_the_tokenizer(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    save_prompt_format(alpaca("<|im_end|>"), copy)
    assert load_model(str(copy)).prompt_format.name == "alpaca"


def test_adapter_directory_loads_onto_its_base(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(tiny_model_dir)
    config_path.write_text(json.dumps(config))

    resolved = resolve(str(tmp_path / "adapter"))
    assert resolved.kind == "adapter" and resolved.base.kind == "directory"
    loaded = load_model(str(tmp_path / "adapter"))
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        expected = peft_model.eval()(ids).logits
        got = loaded.model(ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    # merged for inference: a plain model (no LoRA layers left) with the adapter's outputs
    merged = load_model(str(tmp_path / "adapter"), merge_adapter=True).model
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        assert torch.allclose(expected, merged(ids).logits, atol=1e-5)


def test_run_directory_resolves_to_its_model(tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "run" / "model")
    assert resolve(str(tmp_path / "run")).path == str((tmp_path / "run" / "model").resolve())


@pytest.mark.parametrize("spec, message", [
    ("no-such-model", "unknown model spec 'no-such-model'"),
    ("", "empty model spec"),
])
def test_unknown_spec_is_a_clear_error(spec, message):
    with pytest.raises(ModelSpecError, match=message):
        resolve(spec)


def test_directory_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSpecError, match="neither a model"):
        resolve(str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelSpecError, match="not a model directory"):
        resolve(str(tmp_path / "notes.txt"))


def test_unreachable_hub_id_fails_fast_with_a_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    spec = "writetune-tests/no-such-model"
    assert resolve(spec).kind == "hub"
    with pytest.raises(ModelSpecError, match="hub id, but it is not in the local cache and the hub cannot be reached"):
        load_model(spec)


def test_bad_dtype_is_refused(tiny_model_dir):
    with pytest.raises(ModelSpecError, match="unknown dtype"):
        load_model(str(tiny_model_dir), dtype="float8")


@pytest.mark.parametrize("gpu", [True, False])
def test_auto_device_is_cuda_only_with_a_gpu_and_a_named_device_stays(monkeypatch, gpu):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert resolve_device("auto") == ("cuda" if gpu else "cpu")
    assert [resolve_device(d) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]


def test_missing_embedded_package_names_the_install(monkeypatch):
    monkeypatch.setitem(models.ALIASES, "ghost", models.EmbeddedModel("no_such_pkg_x", "x.gguf", "pip install x"))
    with pytest.raises(ModelSpecError, match="pip install x"):
        resolve("ghost")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("WRITETUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert models.cache_dir() == tmp_path / "x" / "writetune"


@pytest.mark.embedded
def test_embedded_gguf_converts_once_and_matches_direct_loading(tmp_path, monkeypatch):
    """Alias and GGUF path share one cached conversion; the second resolution does not convert; logits match the
    model transformers loads straight from the GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf = models.embedded_gguf_path()
    first = resolve(models.EMBEDDED_ALIAS, cache=tmp_path)
    assert models.is_converted(models.converted_dir(gguf, tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(models, "_dequantize_into", refuse)
    second = resolve(str(gguf), cache=tmp_path)
    assert second.kind == "gguf" and second.path == first.path

    cached = load_model(models.EMBEDDED_ALIAS, cache=tmp_path)
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    ids = torch.tensor([cached.tokenizer("She go to school yesterday.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, cached.model(ids).logits)
    assert cached.prompt_format.name == "chatml"
    assert "<|im_start|>" in cached.tokenizer.chat_template
