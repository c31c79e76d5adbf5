"""Generation behind one interface: requests of (instruction, input) in, answers out, from any backend.

Every backend renders prompts through `writetune.prompt` (`text.render_prompt`), so a model is asked exactly what it
was trained on: `TransformersGenerator` (CPU/GPU; greedy decoding runs writetune's continuous-batching engine,
`engine.GreedyEngine`, with a shared-prefix KV cache; beam search and sampling run length-sorted left-padded batches
through `model.generate`), `VllmGenerator` (GPU, extra `gpu`), `LlamaCppGenerator` (GGUF files, extra
`gguf-runtime`) and `OpenAIGenerator` (any OpenAI-compatible `/v1/chat/completions` endpoint, so API models can be
rows of a results table). `make_generator(spec, backend=...)` picks one, and `register_backend` adds one. New tokens
per request are capped relative to the input's length (`DecodingConfig`), and every backend stops at the prompt
format's end of turn.

Modules: `api` (requests, decoding, the `Generator` protocol), `text` (prompt rendering, stop cutting, streamed
text), `engine` (the continuous-batching engine), one module per backend, and `select` (choosing one).
"""

from writetune.generate.api import STRATEGIES, CopyGenerator, DecodingConfig, Generator, Request, token_budget
from writetune.generate.engine import GreedyEngine, Sampler
from writetune.generate.llamacpp_backend import LlamaCppGenerator
from writetune.generate.openai_backend import EndpointError, OpenAIGenerator
from writetune.generate.select import (
    COPY_SPEC,
    BackendFactory,
    backends,
    default_dtype,
    make_generator,
    parse_openai_spec,
    register_backend,
)
from writetune.generate.text import TextStream, render_messages, render_prompt
from writetune.generate.transformers_backend import TransformersGenerator
from writetune.generate.vllm_backend import VllmGenerator

__all__ = [
    "COPY_SPEC", "STRATEGIES", "BackendFactory", "CopyGenerator", "DecodingConfig", "EndpointError", "Generator",
    "GreedyEngine", "LlamaCppGenerator", "OpenAIGenerator", "Request", "Sampler", "TextStream",
    "TransformersGenerator", "VllmGenerator", "backends", "default_dtype", "make_generator", "parse_openai_spec",
    "register_backend", "render_messages", "render_prompt", "token_budget",
]
