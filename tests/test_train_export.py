"""Export round trips: the merged model and the GGUF file give the trained model's logits and greedy outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from support.train import tiny_recipe
from writetune.models import load_model
from writetune.prompt import token_ids
from writetune.train.export import ExportError, export_gguf, export_merged
from writetune.train.loop import train
from writetune.train.recipe import recipe_from_dict

TEXTS = [("Fix the grammar in this sentence:", "the cats is sleeping on the mat."),
         ("Simplify this sentence:", "The quick brown fox jumps over the lazy dog.")]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    recipe = tiny_recipe(tmp, tiny_model_dir, max_steps=4, optimizer__lr=5e-2, checkpoint__every=0)
    return train(recipe_from_dict(recipe)).run_dir


def _prompts(loaded):
    return [torch.tensor([token_ids(loaded.tokenizer, loaded.prompt_format.render_prompt(*t))]) for t in TEXTS]


def _logits_and_greedy(model, prompts):
    with torch.no_grad():
        logits = [model(p).logits for p in prompts]
        greedy = [model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=8, do_sample=False).tolist()
                  for p in prompts]
    return logits, greedy


def test_run_dir_loads_as_adapter_on_the_original_spec(trained_run, tiny_model_dir):
    import json

    config = json.loads((trained_run / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())
    loaded = load_model(str(trained_run))
    assert loaded.resolved.kind == "adapter" and (trained_run / "model" / "prompt_format.json").is_file()


def test_merged_export_round_trip(trained_run, tmp_path):
    adapter = load_model(str(trained_run))
    base = load_model(adapter.resolved.base.path)
    out = export_merged(str(trained_run), tmp_path / "merged")
    merged = load_model(str(out))
    assert merged.resolved.kind == "directory"
    assert (out / "prompt_format.json").is_file() and (out / "model.safetensors").is_file()
    prompts = _prompts(adapter)
    want_logits, want_greedy = _logits_and_greedy(adapter.model, prompts)
    got_logits, got_greedy = _logits_and_greedy(merged.model, prompts)
    base_logits, _ = _logits_and_greedy(base.model, prompts)
    for want, got, plain in zip(want_logits, got_logits, base_logits):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        assert (plain - want).abs().max() > 1e-2  # the adapter changed the model, so the check means something
    assert got_greedy == want_greedy
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_merged(str(trained_run), out)


@pytest.mark.parametrize("dtype, tol", [("f32", 1e-4), ("f16", 3e-2)])
def test_gguf_export_round_trip_through_transformers(trained_run, tmp_path, dtype, tol):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = export_gguf(str(trained_run), tmp_path / f"model-{dtype}.gguf", dtype=dtype)
    adapter = load_model(str(trained_run))
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for instruction, text in TEXTS:
        rendered = adapter.prompt_format.render_prompt(instruction, text)
        assert token_ids(tokenizer, rendered) == token_ids(adapter.tokenizer, rendered)
    prompts = _prompts(adapter)
    want_logits, want_greedy = _logits_and_greedy(adapter.model, prompts)
    got_logits, got_greedy = _logits_and_greedy(model, prompts)
    for want, got in zip(want_logits, got_logits):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    if dtype == "f32":
        assert got_greedy == want_greedy


def test_gguf_loads_back_through_writetune_models(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("WRITETUNE_CACHE", str(tmp_path / "cache"))
    path = export_gguf(str(trained_run), tmp_path / "model.gguf", dtype="f32")
    loaded = load_model(str(path))
    adapter = load_model(str(trained_run))
    assert loaded.prompt_format == adapter.prompt_format
    prompt = _prompts(adapter)[0]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(prompt).logits, adapter.model(prompt).logits, rtol=1e-4, atol=1e-4)


def _render_modelfile_template(modelfile: str, message: str) -> str:
    """What Ollama sends the model for one user message: the Modelfile's TEMPLATE with its SYSTEM filled in (the
    two Go template constructs the export writes: `{{ if .System }}...{{ end }}` and the `.System`/`.Prompt` fields)."""
    template = re.search(r'^TEMPLATE """(.*?)"""$', modelfile, re.S | re.M).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', modelfile, re.S | re.M)
    system = system.group(1) if system else ""
    template = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ end \}\}", lambda m: m.group(1) if system else "", template,
                      flags=re.S)
    return template.replace("{{ .System }}", system).replace("{{ .Prompt }}", message)


def test_gguf_export_writes_an_ollama_modelfile(trained_run, tmp_path):
    path = export_gguf(str(trained_run), tmp_path / "model.gguf", dtype="f16")
    modelfile = (tmp_path / "Modelfile").read_text()
    fmt = load_model(str(trained_run)).prompt_format
    assert modelfile.splitlines()[0] == "FROM ./model.gguf" and path.name == "model.gguf"
    for instruction, text in TEXTS:
        assert _render_modelfile_template(modelfile, fmt.message(instruction, text)) == \
            fmt.render_prompt(instruction, text)
    stops = re.findall(r"^PARAMETER stop (.*)$", modelfile, re.M)
    assert json.loads(stops[0]) == fmt.end_of_turn
    assert "PARAMETER temperature 0" in modelfile and "PARAMETER repeat_penalty 1" in modelfile
    path.unlink()
    with pytest.raises(ExportError, match="Modelfile: exists"):
        export_gguf(str(trained_run), tmp_path / "model.gguf")


def _llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the gguf-runtime extra; it "
                               "builds llama.cpp from source)")


def _assert_llama_cpp_answers_like_transformers(llama_cpp, path: Path, loaded, new_tokens: int) -> None:
    """llama.cpp reads the GGUF at `path`: the prompt the Modelfile beside it renders tokenises to the ids
    transformers gives, and llama.cpp's greedy answer is `loaded.model`'s, token for token."""
    modelfile = (path.parent / "Modelfile").read_text()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, verbose=False)
    for instruction, text in TEXTS:
        rendered = _render_modelfile_template(modelfile, loaded.prompt_format.message(instruction, text))
        ids = token_ids(loaded.tokenizer, rendered)
        assert llm.tokenize(rendered.encode(), add_bos=False, special=True) == ids
        with torch.no_grad():
            want = loaded.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                         max_new_tokens=new_tokens, do_sample=False)[0].tolist()[len(ids):]
        got = []
        for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            got.append(token)
            if len(got) == new_tokens or token == llm.token_eos():
                break
        assert got == want, (llm.detokenize(got), llm.detokenize(want))
    llm.close()


def test_gguf_greedy_answer_in_llama_cpp_equals_transformers(trained_run, tmp_path):
    llama_cpp = _llama_cpp()
    path = export_gguf(str(trained_run), tmp_path / "model.gguf", dtype="f32")
    _assert_llama_cpp_answers_like_transformers(llama_cpp, path, load_model(str(trained_run)), new_tokens=8)


@pytest.mark.embedded
def test_embedded_model_exported_to_gguf_answers_the_same_in_llama_cpp(tmp_path):
    """The same on the embedded SmolLM2-135M (its own pre-tokenizer, 30 layers): a real model's greedy answer."""
    llama_cpp = _llama_cpp()
    path = export_gguf("smollm2-135m", tmp_path / "smollm2.gguf", dtype="f32")
    _assert_llama_cpp_answers_like_transformers(llama_cpp, path, load_model("smollm2-135m"), new_tokens=24)


def test_gguf_export_refuses_what_it_cannot_write(trained_run, tmp_path):
    with pytest.raises(ExportError, match="must end in .gguf"):
        export_gguf(str(trained_run), tmp_path / "model.bin")
    with pytest.raises(ExportError, match="unknown GGUF dtype"):
        export_gguf(str(trained_run), tmp_path / "model.gguf", dtype="q4")
