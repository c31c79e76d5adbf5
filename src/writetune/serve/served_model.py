"""What the server generates with: a generator (anything with `generate(requests, decoding, on_batch)` and a
`tokens_generated` counter, normally `TransformersGenerator`), its tokenizer for usage counts, and the model's id."""

from __future__ import annotations

from pathlib import Path

from writetune.generate import Request, TransformersGenerator, render_prompt
from writetune.models import load_model, resolve_device
from writetune.prompt import token_ids


def model_id_for(spec: str) -> str:
    """A short id for /v1/models: an alias as it is, a directory by its name (a run's `model/` by the run's)."""
    path = Path(spec.rstrip("/\\"))
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.stem if path.suffix == ".gguf" else (path.name or spec)


class ServedModel:
    """A loaded model ready to serve."""

    def __init__(self, generator, tokenizer=None, model_id: str = "writetune", prompt_format=None):
        self.generator = generator
        self.tokenizer = tokenizer if tokenizer is not None else getattr(generator, "tokenizer", None)
        self.prompt_format = prompt_format or getattr(generator, "fmt", None)
        self.model_id = model_id

    @classmethod
    def load(cls, spec: str, *, dtype: str = "float32", device: str = "auto",
             model_id: str | None = None) -> "ServedModel":
        """Load a model spec (see `writetune.models`) with the transformers backend."""
        loaded = load_model(spec, dtype=dtype, device=resolve_device(device), merge_adapter=True)
        return cls(TransformersGenerator(loaded), loaded.tokenizer, model_id or model_id_for(spec),
                   loaded.prompt_format)

    @property
    def tokens_generated(self) -> int:
        return int(getattr(self.generator, "tokens_generated", 0))

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None or not text:
            return 0
        return len(token_ids(self.tokenizer, text))

    def prompt_tokens(self, request: Request) -> int:
        """Tokens of the whole rendered prompt (system prompt and earlier turns included)."""
        if self.prompt_format is None:
            return self.count_tokens(request.instruction) + self.count_tokens(request.input)
        return self.count_tokens(render_prompt(self.prompt_format, request))
