"""Choosing a backend for a model spec: `make_generator(spec, backend=...)`, the backends that run a model by name
(`register_backend`; transformers, vllm and llamacpp are registered below), the OpenAI spec parser and the default
dtype for a device."""

from __future__ import annotations

import os
from collections.abc import Callable

from writetune.generate.api import CopyGenerator, Generator
from writetune.generate.llamacpp_backend import LlamaCppGenerator
from writetune.generate.openai_backend import OpenAIGenerator
from writetune.generate.transformers_backend import TransformersGenerator
from writetune.generate.vllm_backend import VllmGenerator
from writetune.models import ALIASES, embedded_gguf_path, load_model, resolve_device

COPY_SPEC = "copy"

BackendFactory = Callable[..., Generator]
"""Builds a backend's generator: `factory(spec, dtype=..., device=..., **options)`, with dtype and device resolved
(never `auto`) and `options` as given to `make_generator`."""

_FACTORIES: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory, *, replace: bool = False) -> BackendFactory:
    """Make `make_generator(spec, backend=name)` build its generator with `factory`. `auto` and `openai` are
    reserved; a registered name is replaced only with `replace`."""
    if name in ("auto", "openai"):
        raise ValueError(f"backend name '{name}' is reserved")
    if name in _FACTORIES and not replace:
        raise ValueError(f"backend '{name}' is already registered")
    _FACTORIES[name] = factory
    return factory


def backends() -> tuple[str, ...]:
    """Every name `make_generator` accepts as `backend`: `auto` (transformers), the registered ones, `openai`."""
    return ("auto", *_FACTORIES, "openai")


def parse_openai_spec(spec: str) -> tuple[str, str | None]:
    """`openai:MODEL` or `openai:MODEL@BASE_URL` -> (MODEL, BASE_URL or None)."""
    rest = spec[len("openai:"):] if spec.startswith("openai:") else spec
    model, _, url = rest.partition("@")
    if not model:
        raise ValueError(f"model spec '{spec}': expected openai:MODEL or openai:MODEL@http://host:port/v1")
    return model, (url or None)


def default_dtype(device: str = "cpu") -> str:
    """bfloat16 where the hardware computes it natively (CUDA with bf16, CPUs with AMX or AVX512-BF16), else
    float32."""
    if device.startswith("cuda"):
        import torch  # torch stays off the CLI's start-up path

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return "float32"
    return "bfloat16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "float32"


def make_generator(spec: str, backend: str = "auto", *, dtype: str = "auto", device: str = "auto",
                   **options) -> Generator:
    """A generator for a model spec. `copy` is the copy-the-source system; `openai:MODEL[@URL]` an
    OpenAI-compatible endpoint; otherwise the spec is a model (alias, directory, .gguf file, hub id) run by
    `backend`: transformers (`auto`), vllm, llamacpp or any other registered one (`backends()`). `options` go to
    the backend's factory."""
    if backend not in backends():
        raise ValueError(f"unknown backend '{backend}' (expected one of {', '.join(backends())})")
    if spec == COPY_SPEC:
        return CopyGenerator()
    if spec.startswith("openai:") or backend == "openai":
        model, url = parse_openai_spec(spec)
        return OpenAIGenerator(model, url or options.pop("base_url", None), **options)
    device = resolve_device(device)
    if dtype == "auto":
        dtype = default_dtype(device)
    return _FACTORIES["transformers" if backend == "auto" else backend](spec, dtype=dtype, device=device, **options)


def _transformers(spec: str, *, dtype: str, device: str, **options) -> Generator:
    return TransformersGenerator(load_model(spec, dtype=dtype, device=device, merge_adapter=True))


def _vllm(spec: str, *, dtype: str, device: str, **options) -> Generator:
    return VllmGenerator(spec, dtype=dtype, **options)


def _llamacpp(spec: str, *, dtype: str, device: str, **options) -> Generator:
    path = str(embedded_gguf_path(spec)) if spec in ALIASES else spec
    if not (path.endswith(".gguf") and os.path.isfile(path)):
        raise ValueError(f"the llama.cpp backend needs a .gguf file or an alias of one, not '{spec}'")
    return LlamaCppGenerator(path, **options)


register_backend("transformers", _transformers)
register_backend("vllm", _vllm)
register_backend("llamacpp", _llamacpp)
