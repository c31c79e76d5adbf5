"""The transformers backend (CPU or GPU): greedy decoding on writetune's continuous-batching engine
(`writetune.generate.engine`), beam search and sampling through `model.generate` in length-sorted, left-padded
batches. `open_engine` hands the engine to a caller that feeds it requests as they come (the server)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from writetune.generate.api import DecodingConfig, Request, token_budget
from writetune.generate.engine import GreedyEngine, Sampler
from writetune.generate.text import TextStream, answer_from_tokens, render_prompt
from writetune.models import LoadedModel
from writetune.prompt import stop_token_ids, token_ids

# model types whose decoder layers are plain full attention reading past keys/values through `Cache.update`
_ENGINE_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "granite", "olmo", "olmo2", "phi3", "stablelm", "smollm3"}
# generation-config fields that add a logits processor to greedy decoding; the engine applies none, so a model that
# sets any of them is decoded by `model.generate` instead
_PROCESSOR_FIELDS = {
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "min_length": 0, "min_new_tokens": None, "sequence_bias": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "exponential_decay_length_penalty": None, "renormalize_logits": False, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
}


class TransformersGenerator:
    """Generation with a transformers causal LM on CPU or GPU.

    Greedy decoding with `batch_size` > 1 runs `GreedyEngine` over all requests: one forward pass per step over up to
    `batch_size` sequences, finished sequences replaced by waiting ones, a KV cache written in place, the prompt
    prefix that requests with the same instruction and earlier turns share computed once, and logits only for the
    last position. Beam search, sampling, `batch_size` 1 and models the engine does not support go through
    `model.generate` in length-sorted, left-padded batches.
    """

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.fmt = loaded.prompt_format
        self.stop_ids = stop_token_ids(self.tokenizer, self.fmt)
        self.tokens_generated = 0  # answer tokens produced so far (up to each stop token), for throughput figures
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load it through writetune.models.load_model")

    def describe(self) -> str:
        model = self.loaded.model
        dtype = str(getattr(model, "dtype", "")).replace("torch.", "")
        device = str(getattr(model, "device", "cpu"))
        return f"transformers:{self.loaded.resolved.spec}:{dtype}:{device}"

    def encode(self, request: Request) -> list[int]:
        """The prompt's token ids."""
        return token_ids(self.tokenizer, render_prompt(self.fmt, request))

    def budget(self, request: Request, decoding: DecodingConfig) -> int:
        """New tokens allowed for `request`."""
        return token_budget(len(token_ids(self.tokenizer, request.budget_text)), decoding)

    def engine_supported(self) -> bool:
        """Whether greedy decoding can run on the continuous-batching engine for this model."""
        model = self.loaded.model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = base.config
        if getattr(base, "training", False):  # dropout and gradient checkpointing (which drops the cache) are on
            return False
        if getattr(config, "is_encoder_decoder", False) or config.model_type not in _ENGINE_MODEL_TYPES:
            return False
        if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
            return False
        if getattr(config, "use_sliding_window", False) or any(
            t != "full_attention" for t in (getattr(config, "layer_types", None) or [])
        ):
            return False
        if config.model_type == "mistral" and getattr(config, "sliding_window", None):
            return False
        gen = getattr(base, "generation_config", None)
        for name, default in _PROCESSOR_FIELDS.items():
            value = getattr(gen, name, None)
            if value is not None and value != default:
                return False
        return True

    def open_engine(self, max_rows: int) -> GreedyEngine | None:
        """A continuous-batching engine of `max_rows` rows on this model, for callers that add requests as they
        arrive; None where the model is not one the engine supports."""
        if not self.engine_supported():
            return None
        return GreedyEngine(self.loaded.model, self.stop_ids, self.tokenizer.pad_token_id, max_rows)

    def sampler(self, decoding: DecodingConfig) -> Sampler | None:
        """The engine's sampler for `decoding` (None for greedy decoding)."""
        if decoding.strategy == "greedy":
            return None
        if decoding.strategy != "sample":
            raise ValueError(f"the continuous-batching engine decodes greedily or samples, not '{decoding.name}'")
        return Sampler(decoding.temperature, decoding.top_p, decoding.seed)

    def text_stream(self, stops: Sequence[str] = ()) -> TextStream:
        """A `TextStream` for one answer of this model (its tokenizer, format and stop tokens)."""
        return TextStream(self.tokenizer, self.fmt, self.stop_ids, stops)

    def generate(
        self,
        requests: Sequence[Request],
        decoding: DecodingConfig = DecodingConfig(),
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Answers in the order of `requests`. `on_batch(n)` is called whenever n more answers are complete."""
        if not requests:
            return []
        encoded = [self.encode(r) for r in requests]
        budgets = [self.budget(r, decoding) for r in requests]
        if decoding.strategy == "greedy" and decoding.batch_size > 1 and self.engine_supported():
            engine = GreedyEngine(self.loaded.model, self.stop_ids, self.tokenizer.pad_token_id, decoding.batch_size)
            # requests with the same instruction and earlier turns share a prompt prefix
            groups = [(r.instruction, r.shots, r.history, r.system) for r in requests]
            generated = engine.run(encoded, budgets, on_batch, groups)
        else:
            generated = self._generate_batched(encoded, budgets, decoding, on_batch)
        return [self._decode(ids) for ids in generated]

    def _generate_batched(self, encoded, budgets, decoding, on_batch) -> list[list[int]]:
        """`model.generate` over length-sorted batches with left padding (every prompt ends where generation
        starts), longest prompts first so that memory problems show at once."""
        import torch  # torch stays off the CLI's start-up path

        model = self.loaded.model
        device = next(model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i), reverse=True)
        outputs: list[list[int]] = [[] for _ in encoded]
        pad_id = self.tokenizer.pad_token_id
        torch.manual_seed(decoding.seed)
        # batch_size counts sequences: a beam search decodes num_beams of them per prompt
        beams = decoding.num_beams if decoding.strategy == "beam" else 1
        prompts = max(1, decoding.batch_size // beams)
        for start in range(0, len(order), prompts):
            batch = order[start:start + prompts]
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
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
                outputs[i] = new_tokens[row][: budgets[i]]
            if on_batch is not None:
                on_batch(len(batch))
        return outputs

    def _decode(self, ids: list[int]) -> str:
        text, kept = answer_from_tokens(self.tokenizer, self.fmt, self.stop_ids, ids)
        self.tokens_generated += kept
        return text
