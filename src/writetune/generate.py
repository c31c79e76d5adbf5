"""Batched generation behind one interface: requests of (instruction, input) in, answers out.

Every backend renders prompts through `writetune.prompt`, so a model is asked exactly what it was trained on. The
transformers backend sorts requests by length, batches them with left padding and a KV cache, stops each sequence
at the format's end-of-turn token, and caps new tokens relative to the input's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from writetune.models import LoadedModel
from writetune.prompt import stop_token_ids, token_ids

STRATEGIES = ("greedy", "beam", "sample")


@dataclass(frozen=True)
class Request:
    """One thing to generate: an instruction and the text it applies to (empty for plain instructions)."""

    instruction: str
    input: str = ""


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode. New tokens per request are `min(max_new_tokens, ceil(length_ratio * input_tokens) +
    length_slack)`, where input_tokens counts the request's input text (or its instruction when it has none)."""

    strategy: str = "greedy"
    num_beams: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    length_ratio: float = 2.0
    length_slack: int = 16
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown decoding strategy '{self.strategy}' (expected one of {', '.join(STRATEGIES)})")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.num_beams < 1:
            raise ValueError("max_new_tokens, batch_size and num_beams must be at least 1")
        if self.strategy == "sample" and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")


class TransformersGenerator:
    """Generation with a transformers causal LM on CPU or GPU."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.fmt = loaded.prompt_format
        self.stop_ids = stop_token_ids(self.tokenizer, self.fmt)
        self.tokens_generated = 0  # answer tokens produced so far (up to each stop token), for throughput figures
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load it through writetune.models.load_model")

    def _budget(self, request: Request, decoding: DecodingConfig) -> int:
        basis = request.input or request.instruction
        n = len(token_ids(self.tokenizer, basis))
        return min(decoding.max_new_tokens, math.ceil(decoding.length_ratio * n) + decoding.length_slack)

    def generate(
        self,
        requests: Sequence[Request],
        decoding: DecodingConfig = DecodingConfig(),
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Answers in the order of `requests`. `on_batch(n)` is called after each batch with its size."""
        import torch

        model = self.loaded.model
        device = next(model.parameters()).device
        encoded = [token_ids(self.tokenizer, self.fmt.render_prompt(r.instruction, r.input)) for r in requests]
        budgets = [self._budget(r, decoding) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (len(encoded[i]), i), reverse=True)
        outputs: list[str] = [""] * len(requests)
        pad_id = self.tokenizer.pad_token_id
        torch.manual_seed(decoding.seed)
        for start in range(0, len(order), decoding.batch_size):
            batch = order[start:start + decoding.batch_size]
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
                ids = encoded[i]
                input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids):] = 1
            kwargs = dict(
                max_new_tokens=max(budgets[i] for i in batch),
                eos_token_id=self.stop_ids,
                pad_token_id=pad_id,
                use_cache=True,
            )
            if decoding.strategy == "greedy":
                kwargs.update(do_sample=False, num_beams=1)
            elif decoding.strategy == "beam":
                kwargs.update(do_sample=False, num_beams=decoding.num_beams, early_stopping=True)
            else:
                kwargs.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
            with torch.inference_mode():
                generated = model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
                )
            new_tokens = generated[:, width:].tolist()
            for row, i in enumerate(batch):
                outputs[i] = self._decode(new_tokens[row][: budgets[i]])
            if on_batch is not None:
                on_batch(len(batch))
        return outputs

    def _decode(self, ids: list[int]) -> str:
        for pos, token in enumerate(ids):
            if token in self.stop_ids:
                ids = ids[:pos]
                break
        self.tokens_generated += len(ids)
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return self.fmt.strip_response(text)
