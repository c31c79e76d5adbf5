"""Export a trained model: LoRA merged into its base and saved as safetensors with the tokenizer and the prompt
template; a LoRA adapter alone, cast to a smaller dtype (what writetune ships as its assistant); or a GGUF file that
llama.cpp and transformers' GGUF loader read back.

The GGUF writer covers the LLaMA architecture with a byte-level BPE tokenizer (SmolLM2, Llama 3, Qwen-style vocab),
the combination of the embedded model. It writes llama.cpp's metadata keys, the vocabulary with token types and
merges, the chat template, and the weights under llama.cpp's tensor names, with the query and key projections
permuted into llama.cpp's rotary layout (transformers' loader undoes exactly that permutation). 1-D tensors
(norms) stay float32 as llama.cpp requires; matrices are f32, f16 or bf16. The prompt format is also stored under
the key `writetune.prompt_format`, and an Ollama `Modelfile` beside the GGUF file (`ollama create NAME -f
Modelfile`) carries the same format as a TEMPLATE, with its system prompt, stop strings and greedy decoding.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from writetune.atomic import atomic_dir, atomic_file, umask_mode, write_text_atomic
from writetune.models import load_model, resolve
from writetune.prompt import load_prompt_format, save_prompt_format
from writetune.train import attention

GGUF_DTYPES = ("f32", "f16", "bf16")


class ExportError(ValueError):
    """A model that cannot be exported as asked; the message says why."""


def _load_merged(source: str):
    """Load any model spec (run dir, adapter, model dir) in float32 and merge a LoRA adapter into its base."""
    loaded = load_model(source, dtype="float32")
    model = loaded.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    attention.use_sdpa(model)
    model.eval()
    loaded.model = model
    return loaded


def _export_dtype(name: str):
    """The torch dtype a safetensors export (merged or adapter) is written in."""
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ExportError(f"unknown dtype '{name}' (expected one of {', '.join(dtypes)})")
    return dtypes[name]


def _refuse_occupied(target: Path, overwrite: bool) -> None:
    """An export never replaces a non-empty directory or a file unless asked to."""
    occupied = (target.is_dir() and any(target.iterdir())) or (target.exists() and not target.is_dir())
    if occupied and not overwrite:
        raise ExportError(f"{target}: exists and is not empty (pass overwrite / --force to replace it)")


def export_merged(source: str, out_dir: str | os.PathLike, *, dtype: str = "float32",
                  overwrite: bool = False) -> Path:
    """Merge (if an adapter) and save `source` as a standalone model directory: safetensors weights, tokenizer and
    prompt_format.json, written to a temporary directory and swapped into place (`atomic_dir`)."""
    torch_dtype = _export_dtype(dtype)
    target = Path(out_dir)
    _refuse_occupied(target, overwrite)
    with atomic_dir(target) as tmp:
        loaded = _load_merged(source)
        loaded.model.to(torch_dtype)
        loaded.model.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        save_prompt_format(loaded.prompt_format, tmp)
    return target


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export_adapter(source: str, out_dir: str | os.PathLike, *, dtype: str = "bfloat16",
                   overwrite: bool = False) -> Path:
    """Save the LoRA adapter of `source` (a run directory or an adapter) alone: its config, its weights cast to
    `dtype` and its prompt format; no tokenizer and no base weights, which come from the base model the config names.
    PEFT casts the weights back to the base model's dtype when it loads them."""
    torch_dtype = _export_dtype(dtype)
    resolved = resolve(source, convert=False)
    if resolved.kind != "adapter":
        raise ExportError(f"{source}: a {resolved.kind} model, not a LoRA adapter; export it with --format merged")
    adapter = Path(resolved.path)
    missing = [name for name in ADAPTER_FILES if not (adapter / name).is_file()]
    if missing:
        raise ExportError(f"{adapter}: missing {', '.join(missing)}")
    target = Path(out_dir)
    _refuse_occupied(target, overwrite)
    with atomic_dir(target) as tmp:
        weights = load_file(str(adapter / "adapter_model.safetensors"))
        cast = {name: tensor.to(torch_dtype) if tensor.is_floating_point() else tensor
                for name, tensor in weights.items()}
        save_file(cast, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        shutil.copyfile(adapter / "adapter_config.json", tmp / "adapter_config.json")
        fmt = load_prompt_format(adapter)
        if fmt is not None:
            save_prompt_format(fmt, tmp)
        for child in tmp.iterdir():
            child.chmod(umask_mode(0o644))
    return target


def _permute(weights, n_head: int):
    """llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py): HF rotary halves -> interleaved pairs."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensor_name(hf_name: str) -> str | None:
    parts = hf_name.split(".")
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    if hf_name.startswith("model.layers."):
        block = parts[2]
        rest = ".".join(parts[3:])
        table = {
            "input_layernorm.weight": "attn_norm.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight",
            "self_attn.k_proj.weight": "attn_k.weight",
            "self_attn.v_proj.weight": "attn_v.weight",
            "self_attn.o_proj.weight": "attn_output.weight",
            "mlp.gate_proj.weight": "ffn_gate.weight",
            "mlp.up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
        }
        if rest in table:
            return f"blk.{block}.{table[rest]}"
    return None


def _vocabulary(tokenizer, vocab_size: int):
    """Tokens, token types and merges of a byte-level BPE tokenizer, padded to the model's vocabulary size."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    pre = spec.get("pre_tokenizer") or {}
    pre_types = {pre.get("type")} | {p.get("type") for p in pre.get("pretokenizers", []) or []}
    if model.get("type") != "BPE" or "ByteLevel" not in pre_types:
        raise ExportError("GGUF export supports byte-level BPE tokenizers (GPT-2 style, as SmolLM2, Llama 3 and "
                          f"Qwen use); this tokenizer is {model.get('type')} with pre-tokenizer "
                          f"{sorted(t for t in pre_types if t)}")
    vocab = tokenizer.get_vocab()
    if len(vocab) > vocab_size:
        raise ExportError(f"the tokenizer has {len(vocab)} tokens but the model only {vocab_size} embeddings")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = gguf.TokenType.NORMAL
    for index, added in tokenizer.added_tokens_decoder.items():
        if index < vocab_size:
            types[index] = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, [int(t) for t in types], merges


def _pre_tokenizer_name(loaded) -> str:
    """The llama.cpp pre-tokenizer name: the base GGUF's when the model came from one, else 'default'."""
    resolved = loaded.resolved.base or loaded.resolved
    marker = Path(resolved.path) / "writetune_source.json"
    if marker.is_file():
        try:
            source = json.loads(marker.read_text())["gguf"]
            field = gguf.GGUFReader(source).fields.get("tokenizer.ggml.pre")
            if field is not None:
                return str(field.contents())
        except (OSError, KeyError, ValueError):
            pass
    return "default"


def _modelfile_safe(text: str, what: str) -> str:
    """`text`, refused when it would end a Modelfile's triple quotes or read as Go template syntax."""
    if '"""' in text or "{{" in text:
        raise ExportError(f"the prompt format's {what} contains '\"\"\"' or '{{{{', which a Modelfile cannot hold")
    return text


def ollama_modelfile(gguf_name: str, fmt, context_length: int) -> str:
    """An Ollama Modelfile for a GGUF file in the same directory: the prompt format as a Go TEMPLATE (the system
    block only when there is a system prompt, as `render_prompt` does), the format's system prompt, its end of turn
    and stop strings as stops, and greedy decoding without a repeat penalty, as writetune decodes."""
    template = ""
    if fmt.system_template:
        system = _modelfile_safe(fmt.system_template, "system template").format(system="{{ .System }}")
        template = "{{ if .System }}" + system + "{{ end }}"
    template += _modelfile_safe(fmt.user_template, "user template").format(message="{{ .Prompt }}")
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    if fmt.system:
        lines.append(f'SYSTEM """{_modelfile_safe(fmt.system, "system prompt")}"""')
    for stop in dict.fromkeys(s for s in (fmt.end_of_turn, *fmt.stop_strings) if s):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    lines += ["PARAMETER temperature 0", "PARAMETER top_k 1", "PARAMETER repeat_penalty 1",
              f"PARAMETER num_ctx {context_length}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _LlamaShape:
    """What the GGUF header and the tensor permutation need of a LLaMA config."""

    rope_theta: float
    n_head: int
    n_kv: int
    head_dim: int


def _gguf_targets(out_file: str | os.PathLike, dtype: str, overwrite: bool) -> tuple[Path, Path]:
    """The GGUF file and its Modelfile, refused when the dtype or the name is wrong or either exists."""
    if dtype not in GGUF_DTYPES:
        raise ExportError(f"unknown GGUF dtype '{dtype}' (expected one of {', '.join(GGUF_DTYPES)})")
    target = Path(out_file)
    if target.suffix != ".gguf":
        raise ExportError(f"{target}: a GGUF file name must end in .gguf")
    modelfile = target.with_name("Modelfile")
    for path in (target, modelfile):
        if path.exists() and not overwrite:
            raise ExportError(f"{path}: exists (pass overwrite / --force to replace it)")
    return target, modelfile


def _llama_shape(config) -> _LlamaShape:
    """The shape of a plain-RoPE LLaMA model; any other architecture or RoPE scaling is refused."""
    if config.model_type != "llama":
        raise ExportError(f"GGUF export supports the llama architecture; this model is '{config.model_type}'")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ExportError(f"GGUF export supports plain RoPE; this model uses {rope.get('rope_type')} scaling")
    n_head = config.num_attention_heads
    return _LlamaShape(rope_theta=float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
                       n_head=n_head, n_kv=config.num_key_value_heads,
                       head_dim=getattr(config, "head_dim", None) or config.hidden_size // n_head)


def _add_model_metadata(writer, loaded, shape: _LlamaShape, dtype: str) -> None:
    """llama.cpp's architecture keys: name, sizes, attention heads, RoPE, norm epsilon and the file type."""
    config = loaded.model.config
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(Path(str(loaded.resolved.spec)).name or "writetune-model")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_kv)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != config.hidden_size // shape.n_head:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16}[dtype]
    writer.add_file_type(int(file_type))


def _add_tokenizer_metadata(writer, loaded, vocabulary) -> None:
    """The vocabulary (`_vocabulary`'s tokens, types and merges), special token ids, chat template and writetune's
    prompt format."""
    tokenizer = loaded.tokenizer
    tokens, types, merges = vocabulary
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(loaded))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                          ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
        if token_id is not None:
            getattr(writer, f"add_{key}_token_id")(int(token_id))
    writer.add_add_bos_token(False)  # the prompt template carries every special token itself
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    writer.add_string("writetune.prompt_format", loaded.prompt_format.to_json())


def _add_tensors(writer, model, shape: _LlamaShape, dtype: str) -> None:
    """Every weight under its llama.cpp name, q and k permuted to llama.cpp's rotary layout, norms in float32."""
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue
        gguf_name = _tensor_name(name)
        if gguf_name is None:
            raise ExportError(f"no GGUF name for the tensor '{name}' (is this a plain LLaMA model?)")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if gguf_name.endswith("attn_q.weight"):
            data = _permute(data, shape.n_head)
        elif gguf_name.endswith("attn_k.weight"):
            data = _permute(data, shape.n_kv)
        if data.ndim == 1 or dtype == "f32":
            writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
        elif dtype == "f16":
            writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float16))
        else:
            raw = gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
            writer.add_tensor(gguf_name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)


def export_gguf(source: str, out_file: str | os.PathLike, *, dtype: str = "f16", overwrite: bool = False) -> Path:
    """Write `source` (merged first if an adapter) as a GGUF file of the LLaMA architecture, and an Ollama
    `Modelfile` for it in the same directory."""
    target, modelfile = _gguf_targets(out_file, dtype, overwrite)
    loaded = _load_merged(source)
    shape = _llama_shape(loaded.model.config)
    vocabulary = _vocabulary(loaded.tokenizer, loaded.model.config.vocab_size)
    with atomic_file(target) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        _add_model_metadata(writer, loaded, shape, dtype)
        _add_tokenizer_metadata(writer, loaded, vocabulary)
        _add_tensors(writer, loaded.model, shape, dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    context_length = loaded.model.config.max_position_embeddings
    write_text_atomic(modelfile, ollama_modelfile(target.name, loaded.prompt_format, context_length), mode=0o644)
    return target
