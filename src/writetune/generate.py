"""Generation behind one interface: requests of (instruction, input) in, answers out, from any backend.

Every backend renders prompts through `writetune.prompt`, so a model is asked exactly what it was trained on:
`TransformersGenerator` (CPU/GPU; greedy decoding runs a continuous-batching engine with a shared-prefix KV cache,
beam search and sampling run length-sorted left-padded batches through `model.generate`), `VllmGenerator` (GPU,
extra `gpu`), `LlamaCppGenerator` (GGUF files, extra `gguf-runtime`) and `OpenAIGenerator` (any OpenAI-compatible
`/v1/chat/completions` endpoint, so API models can be rows of a results table). `make_generator(spec, backend=...)`
picks one. New tokens per request are capped relative to the input's length (`DecodingConfig`), and every backend
stops at the prompt format's end of turn.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from writetune.models import LoadedModel
from writetune.prompt import PromptFormat, chatml, format_for_tokenizer, stop_token_ids, token_ids

STRATEGIES = ("greedy", "beam", "sample")
BACKENDS = ("auto", "transformers", "vllm", "llamacpp", "openai")
COPY_SPEC = "copy"


@dataclass(frozen=True)
class Request:
    """One thing to generate: an instruction and the text it applies to (empty for plain instructions).

    `shots` are earlier (input, answer) turns under the same instruction, rendered as a conversation before the
    request: the few-shot prompt of a baseline row.
    """

    instruction: str
    input: str = ""
    shots: tuple[tuple[str, str], ...] = ()


def render_prompt(fmt: PromptFormat, request: Request) -> str:
    """The text a completion model sees: each shot as a user turn and an answer, then the request's user turn.
    The system header is rendered once, at the start, by `PromptFormat.render_prompt`."""
    text = ""
    bare = replace(fmt, system="")  # later turns without the system header
    for k, (shot_input, shot_answer) in enumerate(request.shots):
        text += (fmt if k == 0 else bare).render_prompt(request.instruction, shot_input)
        text += fmt.render_response(shot_answer)
    return text + (bare if request.shots else fmt).render_prompt(request.instruction, request.input)


def render_messages(fmt: PromptFormat, request: Request) -> list[dict[str, str]]:
    """The same conversation as chat messages (system, then user/assistant turns) for chat-completion APIs."""
    messages = [{"role": "system", "content": fmt.system}] if fmt.system else []
    for shot_input, shot_answer in request.shots:
        messages.append({"role": "user", "content": fmt.message(request.instruction, shot_input)})
        messages.append({"role": "assistant", "content": shot_answer.strip()})
    messages.append({"role": "user", "content": fmt.message(request.instruction, request.input)})
    return messages


_DECODING_NAME = re.compile(r"^(greedy|beam(\d*)|sample)$")


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode. New tokens per request are `min(max_new_tokens, ceil(length_ratio * input_tokens) +
    length_slack)`, where input_tokens counts the request's input text (or its instruction when it has none).
    `batch_size` is the number of sequences decoded together (for greedy decoding on transformers: the rows of the
    continuous batch)."""

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

    @property
    def name(self) -> str:
        """Short label: `greedy`, `beam4`, `sample`."""
        if self.strategy == "beam":
            return f"beam{self.num_beams}"
        return self.strategy

    def describe(self) -> str:
        """Every setting that changes the output, for signatures and resume checks."""
        parts = [self.name]
        if self.strategy == "sample":
            parts.append(f"t={self.temperature:g},p={self.top_p:g},seed={self.seed}")
        parts.append(f"max_new={self.max_new_tokens},ratio={self.length_ratio:g},slack={self.length_slack}")
        return ";".join(parts)

    @classmethod
    def parse(cls, name: str, **overrides) -> "DecodingConfig":
        """`greedy`, `beam` (4 beams), `beamN` or `sample`, with other fields from `overrides`."""
        match = _DECODING_NAME.match(name.strip().lower())
        if not match:
            raise ValueError(f"unknown decoding '{name}' (expected greedy, beam, beamN such as beam4, or sample)")
        if match.group(1) == "greedy":
            return cls(strategy="greedy", **overrides)
        if match.group(1) == "sample":
            return cls(strategy="sample", **overrides)
        beams = int(match.group(2)) if match.group(2) else overrides.pop("num_beams", 4)
        if beams < 2:
            raise ValueError(f"decoding '{name}': beam search needs at least 2 beams")
        overrides.pop("num_beams", None)
        return cls(strategy="beam", num_beams=beams, **overrides)


def token_budget(n_input_tokens: int, decoding: DecodingConfig) -> int:
    """New tokens allowed for an input of `n_input_tokens` tokens."""
    return min(decoding.max_new_tokens, math.ceil(decoding.length_ratio * n_input_tokens) + decoding.length_slack)


@runtime_checkable
class Generator(Protocol):
    """What every backend offers: answers in request order, and a count of answer tokens produced so far."""

    tokens_generated: int

    def generate(
        self,
        requests: Sequence[Request],
        decoding: DecodingConfig = DecodingConfig(),
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]: ...

    def describe(self) -> str: ...


class CopyGenerator:
    """The copy-the-source system: every answer is the request's input, unchanged."""

    def __init__(self):
        self.tokens_generated = 0

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        outputs = [r.input for r in requests]
        if on_batch is not None and requests:
            on_batch(len(requests))
        return outputs

    def describe(self) -> str:
        return "copy"


# ----------------------------------------------------------------------------------------------------------------
# transformers


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


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

    Greedy decoding with `batch_size` > 1 runs `_GreedyEngine`: one forward pass per step over up to `batch_size`
    sequences, finished sequences replaced by waiting ones (continuous batching), a KV cache written in place, the
    prompt prefix that all requests share computed once, and logits only for the last position. Its outputs equal
    those of `model.generate` one request at a time up to floating-point reassociation (identical in float32 on the
    benchmark's 500 sentences; see docs/benchmarks.md). Beam search, sampling, `batch_size` 1 and models the engine
    does not support go through `model.generate` in length-sorted, left-padded batches.
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

    def _budget(self, request: Request, decoding: DecodingConfig) -> int:
        basis = request.input or request.instruction
        return token_budget(len(token_ids(self.tokenizer, basis)), decoding)

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

    def generate(
        self,
        requests: Sequence[Request],
        decoding: DecodingConfig = DecodingConfig(),
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Answers in the order of `requests`. `on_batch(n)` is called whenever n more answers are complete."""
        if not requests:
            return []
        encoded = [token_ids(self.tokenizer, render_prompt(self.fmt, r)) for r in requests]
        budgets = [self._budget(r, decoding) for r in requests]
        if decoding.strategy == "greedy" and decoding.batch_size > 1 and self.engine_supported():
            engine = _GreedyEngine(self.loaded.model, self.stop_ids, self.tokenizer.pad_token_id)
            keys: dict[tuple, int] = {}  # requests with the same instruction and shots share a prompt prefix
            groups = [keys.setdefault((r.instruction, r.shots), len(keys)) for r in requests]
            generated = engine.run(encoded, budgets, decoding.batch_size, on_batch, groups)
        else:
            generated = self._generate_batched(encoded, budgets, decoding, on_batch)
        return [self._decode(ids) for ids in generated]

    def _generate_batched(self, encoded, budgets, decoding, on_batch) -> list[list[int]]:
        """`model.generate` over length-sorted batches with left padding (every prompt ends where generation
        starts), longest prompts first so that memory problems show at once."""
        import torch

        model = self.loaded.model
        device = next(model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i), reverse=True)
        outputs: list[list[int]] = [[] for _ in encoded]
        pad_id = self.tokenizer.pad_token_id
        torch.manual_seed(decoding.seed)
        for start in range(0, len(order), decoding.batch_size):
            batch = order[start:start + decoding.batch_size]
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
        for pos, token in enumerate(ids):
            if token in self.stop_ids:
                ids = ids[:pos]
                break
        self.tokens_generated += len(ids)
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return self.fmt.strip_response(text)


class _BufferLayer:
    """One layer's KV cache in a preallocated buffer [rows, kv_heads, capacity, head_dim]; `update` writes the new
    columns in place and returns views, so a decoding step copies nothing but the new keys and values."""

    is_sliding = False
    is_compileable = False

    def __init__(self, keys, values, length: int):
        self.kbuf, self.vbuf, self.length = keys, values, length
        self.is_initialized = True

    @property
    def keys(self):
        return self.kbuf[:, :, : self.length]

    @property
    def values(self):
        return self.vbuf[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def update(self, key_states, value_states, *args, **kwargs):
        n = key_states.shape[-2]
        if self.length + n > self.kbuf.shape[2]:
            self._grow(self.length + n + 64)
        self.kbuf[:, :, self.length: self.length + n] = key_states
        self.vbuf[:, :, self.length: self.length + n] = value_states
        self.length += n
        return self.keys, self.values

    def _grow(self, capacity: int) -> None:
        import torch

        rows, heads, _, dim = self.kbuf.shape
        for name in ("kbuf", "vbuf"):
            old = getattr(self, name)
            new = torch.empty((rows, heads, capacity, dim), dtype=old.dtype, device=old.device)
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)


def _buffer_cache(layers: list[_BufferLayer]):
    """A transformers `Cache` over buffer layers: attention modules call `cache.update(k, v, layer_idx)`."""
    from transformers.cache_utils import Cache

    return Cache(layers=layers)


class _GreedyEngine:
    """Continuous-batching greedy decoding for decoder-only models.

    Every cache row is right-aligned: `[padding | prompt prefix | prompt suffix | generated tokens]`. Requests come in
    groups that share a prompt prefix (system header, instruction, few-shot turns); each group's prefix is computed
    once and its keys and values copied into the rows, so only the suffixes are prefilled. Rows are admitted longest
    prompt first; a row finishes when it emits a stop token or reaches its budget. When `max_rows // 8` rows are
    free (or half of them finished and nothing waits), finished rows are dropped, leading columns that are padding
    in every remaining row are cut, and waiting prompts are prefilled and merged in. Positions are passed
    explicitly, so padding is invisible to the model; each step attends through a boolean mask of valid columns.
    """

    headroom = 64  # cache columns allocated ahead, so that most steps write in place

    def __init__(self, model, stop_ids: Sequence[int], pad_id: int):
        import torch

        self.torch = torch
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder, self.head = self.model.get_decoder(), self.model.get_output_embeddings()
        self.stop = {int(t) for t in stop_ids}
        self.pad_id = int(pad_id)
        parameter = next(self.model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.eager = getattr(self.model.config, "_attn_implementation", "sdpa") == "eager"
        self.prefixes: dict[int, tuple[int, list[_BufferLayer] | None]] = {}  # group -> (length, its layers)
        self.forward_calls = 0

    def _forward(self, input_ids, position_ids, allowed, layers):
        """Logits of the last position. `allowed` is [rows, q, kv] boolean (True = attend)."""
        from transformers.cache_utils import Cache

        mask = allowed[:, None]
        if self.eager:  # eager attention adds its mask to the scores
            mask = self.torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill(
                ~mask, self.torch.finfo(self.dtype).min
            )
        self.forward_calls += 1
        out = self.decoder(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=mask,
            past_key_values=Cache(layers=layers),
            use_cache=True,
        )
        # The head runs on the last position as a contiguous 2-D matrix. The causal-LM forward's `logits_to_keep`
        # slices a 3-D view instead, which matmul, when the head is frozen (a tuned model), turns into a batched
        # product over per-row copies of the whole output embedding: a 16-prompt prefill took 1.8 s instead of
        # 0.65 s on CPU (docs/benchmarks.md).
        return self.head(out.last_hidden_state[:, -1, :].contiguous())

    def empty_layers(self, rows: int, capacity: int) -> list[_BufferLayer]:
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (rows, heads, capacity, dim)
        empty = self.torch.empty
        return [
            _BufferLayer(empty(shape, dtype=self.dtype, device=self.device),
                         empty(shape, dtype=self.dtype, device=self.device), 0)
            for _ in range(config.num_hidden_layers)
        ]

    def _prefix(self, ids: Sequence[int]) -> list[_BufferLayer]:
        t = self.torch
        n = len(ids)
        layers = self.empty_layers(1, n)
        allowed = t.ones((n, n), dtype=t.bool, device=self.device).tril()[None]
        self._forward(t.tensor([list(ids)], device=self.device), t.arange(n, device=self.device)[None], allowed,
                      layers)
        return layers

    def run(self, encoded: Sequence[Sequence[int]], budgets: Sequence[int], max_rows: int,
            on_batch: Callable[[int], None] | None = None, groups: Sequence[int] | None = None) -> list[list[int]]:
        t = self.torch
        results: list[list[int]] = [[] for _ in encoded]
        groups = list(groups) if groups is not None else [0] * len(encoded)

        def collect(finished: dict[int, list[int]]) -> None:
            for i, ids in finished.items():
                results[i] = ids
            if finished and on_batch is not None:
                on_batch(len(finished))

        with t.inference_mode():
            members: dict[int, list[int]] = {}
            for i, g in enumerate(groups):
                members.setdefault(g, []).append(i)
            for g, rows in members.items():
                seqs = [encoded[i] for i in rows]
                # every row keeps at least one prompt token of its own to prefill
                n = min(_common_prefix(seqs), min(len(s) for s in seqs) - 1)
                self.prefixes[g] = (n, self._prefix(seqs[0][:n]) if n > 0 else None)
            self.groups = groups
            # pop() gives the longest prompt suffix (what a prefill computes) first
            pending = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]) - self.prefixes[groups[i]][0], -i))
            state: _BatchState | None = None
            refill = max(1, max_rows // 8)
            while pending or (state is not None and state.active):
                free = max_rows - (state.active if state is not None else 0)
                if state is None or (pending and (free >= refill or state.active == 0)) \
                        or (not pending and state.finished >= max(1, len(state.rows) // 2)):
                    take = [pending.pop() for _ in range(min(free, len(pending)))]
                    state, finished = self._admit(state, take, encoded, budgets)
                    collect(finished)
                    if state is None:
                        continue
                collect(state.step(self))
        return results

    def _admit(self, state: "_BatchState | None", take: list[int], encoded, budgets):
        """Drop finished rows, cut all-padding columns, prefill the `take` prompts and merge them in. Returns the
        new state (None when no row is left) and the rows that finished on their first token."""
        kept = state.compact(self) if state is not None else None
        if kept is not None and not kept.rows:
            kept = None
        parts, finished = [kept] if kept is not None else [], {}
        for chunk in self._chunks(take, encoded):
            part, done = self._prefill(chunk, encoded, budgets)
            parts.append(part)
            finished.update(done)
        if not parts:
            return None, finished
        return (parts[0] if len(parts) == 1 else _BatchState.merge(parts, self)), finished

    def _chunks(self, take: list[int], encoded) -> list[list[int]]:
        """`take` (longest suffix first) cut into prefill batches whose suffixes are at least 80% as long as the
        batch's longest, so that padding costs little; a batch of fewer than 8 prompts takes the next anyway."""
        chunks: list[list[int]] = []
        for i in take:
            n = len(encoded[i]) - self.prefixes[self.groups[i]][0]
            if chunks and (n >= 0.8 * chunks[-1][0][1] or len(chunks[-1]) < 8):
                chunks[-1].append((i, n))
            else:
                chunks.append([(i, n)])
        return [[i for i, _ in chunk] for chunk in chunks]

    def _prefill(self, take: list[int], encoded, budgets):
        """Prefill the prompt suffixes of `take` after their groups' prefix keys; returns their state and the rows
        that finished on their first token."""
        t = self.torch
        prefix = [self.prefixes[self.groups[i]] for i in take]
        suffixes = [list(encoded[i][p:]) for i, (p, _) in zip(take, prefix)]
        S = max(len(s) for s in suffixes)  # query columns
        Pm = max(p for p, _ in prefix)  # cache columns before the queries
        k = len(take)
        capacity = Pm + S + self.headroom
        ids = t.full((k, S), self.pad_id, dtype=t.long)
        valid = t.zeros((k, capacity), dtype=t.bool)
        pos = t.zeros((k, S), dtype=t.long)
        layers = self.empty_layers(k, capacity)
        by_group: dict[int, list[int]] = {}
        for row, (i, s, (p, _)) in enumerate(zip(take, suffixes, prefix)):
            ids[row, S - len(s):] = t.tensor(s, dtype=t.long)
            pos[row, S - len(s):] = t.arange(p, p + len(s))
            valid[row, Pm - p: Pm] = True
            valid[row, Pm + S - len(s): Pm + S] = True
            by_group.setdefault(self.groups[i], []).append(row)
        for group, rows in by_group.items():  # each group's prefix, copied into its rows; zeros before it
            p, pre = self.prefixes[group]
            index = t.tensor(rows, dtype=t.long, device=self.device)
            for n, layer in enumerate(layers):
                for buf, pre_buf in ((layer.kbuf, pre[n].kbuf if pre else None),
                                     (layer.vbuf, pre[n].vbuf if pre else None)):
                    if p < Pm:
                        buf[index, :, : Pm - p] = 0  # masked, but never garbage: 0 x NaN would be NaN
                    if pre_buf is not None:
                        buf[index, :, Pm - p: Pm] = pre_buf[0, :, :p]
        for layer in layers:
            layer.length = Pm
        ids, valid, pos = ids.to(self.device), valid.to(self.device), pos.to(self.device)
        # queries attend causally to valid keys; padding queries also to themselves, so no row is fully masked
        square = t.ones((Pm + S, Pm + S), dtype=t.bool, device=self.device)
        allowed = square.tril()[Pm:][None] & valid[:, None, : Pm + S]
        allowed |= t.eye(Pm + S, dtype=t.bool, device=self.device)[Pm:][None]
        first = self._forward(ids, pos, allowed, layers).max(-1).indices
        new = _BatchState(list(take), layers, valid, pos[:, -1] + 1, first, [budgets[i] for i in take])
        return new, new.record(first.tolist(), self.stop)


class _BatchState:
    """The rows being decoded: their cache layers (right-aligned), valid-column mask, next positions, tokens."""

    def __init__(self, rows, layers, valid, next_pos, last, budgets):
        self.rows, self.layers, self.valid = rows, layers, valid
        self.next_pos, self.last, self.budgets = next_pos, last, budgets
        self.tokens: list[list[int]] = [[] for _ in rows]
        self.done = [False] * len(rows)
        self.finished = 0

    @property
    def active(self) -> int:
        return len(self.rows) - self.finished

    @property
    def length(self) -> int:
        return self.layers[0].length

    def record(self, tokens: list[int], stop: set[int]) -> dict[int, list[int]]:
        """Append one token per unfinished row; return {request: tokens} of the rows that now finish."""
        finished = {}
        for r, token in enumerate(tokens):
            if self.done[r]:
                continue
            self.tokens[r].append(token)
            if token in stop or len(self.tokens[r]) >= self.budgets[r]:
                self.done[r] = True
                self.finished += 1
                finished[self.rows[r]] = self.tokens[r]
        return finished

    def step(self, engine: _GreedyEngine) -> dict[int, list[int]]:
        """One decoding step for every row (finished rows ride along until the next compaction)."""
        t = engine.torch
        L = self.length
        if L + 1 > self.valid.shape[1]:
            more = t.zeros((self.valid.shape[0], engine.headroom), dtype=t.bool, device=self.valid.device)
            self.valid = t.cat([self.valid, more], dim=1)
        self.valid[:, L] = True
        logits = engine._forward(self.last[:, None], self.next_pos[:, None], self.valid[:, None, : L + 1],
                                 self.layers)
        self.last = logits.max(-1).indices  # the first maximum, as argmax; faster on CPU
        self.next_pos = self.next_pos + 1
        return self.record(self.last.tolist(), engine.stop)

    def compact(self, engine: _GreedyEngine) -> "_BatchState":
        """The unfinished rows, without the leading columns that are padding in all of them."""
        t = engine.torch
        keep = [r for r in range(len(self.rows)) if not self.done[r]]
        L = self.length
        idx = t.tensor(keep, dtype=t.long, device=self.valid.device)
        valid = self.valid[idx, :L]
        used = valid.any(dim=0).nonzero()
        cut = int(used[0]) if len(used) else L
        n = L - cut
        layers = engine.empty_layers(len(keep), n + engine.headroom)
        for new, old in zip(layers, self.layers):
            new.kbuf[:, :, :n] = old.kbuf[idx, :, cut:L]
            new.vbuf[:, :, :n] = old.vbuf[idx, :, cut:L]
            new.length = n
        new_valid = t.zeros((len(keep), n + engine.headroom), dtype=t.bool, device=self.valid.device)
        new_valid[:, :n] = valid[:, cut:]
        out = _BatchState([self.rows[r] for r in keep], layers, new_valid, self.next_pos[idx], self.last[idx],
                          [self.budgets[r] for r in keep])
        out.tokens = [self.tokens[r] for r in keep]
        return out

    @staticmethod
    def merge(parts: list["_BatchState"], engine: _GreedyEngine) -> "_BatchState":
        """The rows of all `parts` stacked, right-aligned (shorter ones padded on the left), in one copy."""
        t = engine.torch
        L = max(part.length for part in parts)
        total = sum(len(part.rows) for part in parts)
        layers = engine.empty_layers(total, L + engine.headroom)
        valid = t.zeros((total, L + engine.headroom), dtype=t.bool, device=parts[0].valid.device)
        start = 0
        for part in parts:
            rows, n = slice(start, start + len(part.rows)), part.length
            for new, old in zip(layers, part.layers):
                for buf, old_buf in ((new.kbuf, old.kbuf), (new.vbuf, old.vbuf)):
                    buf[rows, :, : L - n] = 0
                    buf[rows, :, L - n: L] = old_buf[:, :, :n]
            valid[rows, L - n: L] = part.valid[:, :n]
            start += len(part.rows)
        for layer in layers:
            layer.length = L
        out = _BatchState([r for p in parts for r in p.rows], layers, valid, t.cat([p.next_pos for p in parts]),
                          t.cat([p.last for p in parts]), [b for p in parts for b in p.budgets])
        out.tokens = [x for p in parts for x in p.tokens]
        out.done = [x for p in parts for x in p.done]
        out.finished = sum(p.finished for p in parts)
        return out


# ----------------------------------------------------------------------------------------------------------------
# vLLM, llama.cpp and OpenAI-compatible endpoints


def _missing_extra(backend: str, extra: str, package: str) -> ValueError:
    return ValueError(
        f"the {backend} backend needs the package '{package}', which is not installed "
        f"(pip install 'writetune[{extra}]')"
    )


def _estimate_tokens(text: str) -> int:
    """Token count of English text without a tokenizer: about four characters per token, never fewer tokens than
    words. Used for the budgets of backends whose tokenizer is remote."""
    return max(len(text.split()), math.ceil(len(text) / 4))


class VllmGenerator:
    """vLLM on a GPU (extra `gpu`): prompts rendered by `writetune.prompt` and passed as token ids, one
    `SamplingParams` per request (its own budget), stop at the format's end-of-turn tokens; beam search through
    `LLM.beam_search`, grouped by budget."""

    def __init__(self, spec: str, *, dtype: str = "auto", llm=None, **engine_kwargs):
        try:
            import vllm
        except ImportError:
            raise _missing_extra("vLLM", "gpu", "vllm") from None
        from writetune.models import resolve
        from writetune.prompt import load_prompt_format

        self.vllm = vllm
        resolved = resolve(spec)
        self.spec = spec
        self.lora = None
        path = resolved.path
        if resolved.kind == "adapter":
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, resolved.path)
            path = resolved.base.path
            engine_kwargs.setdefault("enable_lora", True)
        self.llm = llm or vllm.LLM(model=path, dtype=dtype, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.fmt = load_prompt_format(resolved.path) or (
            load_prompt_format(path) if resolved.kind == "adapter" else None
        ) or format_for_tokenizer(self.tokenizer)
        self.stop_ids = stop_token_ids(self.tokenizer, self.fmt)
        self.tokens_generated = 0
        self.dtype = dtype

    def describe(self) -> str:
        return f"vllm:{self.spec}:{self.dtype}"

    def _params(self, budget: int, decoding: DecodingConfig, index: int):
        stop = list(self.fmt.stop_strings)
        if self.fmt.end_of_turn and len(token_ids(self.tokenizer, self.fmt.end_of_turn)) != 1:
            stop.append(self.fmt.end_of_turn)
        common = dict(max_tokens=budget, stop_token_ids=self.stop_ids, stop=stop or None,
                      skip_special_tokens=True)
        if decoding.strategy == "sample":
            return self.vllm.SamplingParams(temperature=decoding.temperature, top_p=decoding.top_p,
                                            seed=decoding.seed + index, **common)
        return self.vllm.SamplingParams(temperature=0.0, **common)

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        prompts = [{"prompt_token_ids": token_ids(self.tokenizer, render_prompt(self.fmt, r))} for r in requests]
        budgets = [token_budget(len(token_ids(self.tokenizer, r.input or r.instruction)), decoding)
                   for r in requests]
        texts: list[str] = [""] * len(requests)
        if decoding.strategy == "beam":
            from vllm.sampling_params import BeamSearchParams

            by_budget: dict[int, list[int]] = {}
            for i, b in enumerate(budgets):
                by_budget.setdefault(b, []).append(i)
            for budget, indices in by_budget.items():
                params = BeamSearchParams(beam_width=decoding.num_beams, max_tokens=budget)
                outs = self.llm.beam_search([prompts[i] for i in indices], params)
                for i, out in zip(indices, outs):
                    best = out.sequences[0]
                    new = list(best.tokens[len(prompts[i]["prompt_token_ids"]):])
                    texts[i] = self._finish(new)
                if on_batch is not None:
                    on_batch(len(indices))
            return texts
        params = [self._params(b, decoding, i) for i, b in enumerate(budgets)]
        kwargs = {"lora_request": self.lora} if self.lora is not None else {}
        outs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False, **kwargs)
        for i, out in enumerate(outs):
            completion = out.outputs[0]
            self.tokens_generated += len(completion.token_ids)
            texts[i] = self.fmt.strip_response(completion.text)
        if on_batch is not None:
            on_batch(len(requests))
        return texts

    def _finish(self, ids: list[int]) -> str:
        for pos, token in enumerate(ids):
            if token in self.stop_ids:
                ids = ids[:pos]
                break
        self.tokens_generated += len(ids)
        return self.fmt.strip_response(self.tokenizer.decode(ids, skip_special_tokens=True))


class _GgufTokenizerInfo:
    """What `format_for_tokenizer` reads, taken from a GGUF file's metadata."""

    def __init__(self, chat_template: str, eos_token: str):
        self.chat_template = chat_template
        self.eos_token = eos_token


class LlamaCppGenerator:
    """llama.cpp through llama-cpp-python (extra `gguf-runtime`) on a GGUF file: one request at a time (the Python
    binding has no batched generation), greedy (temperature 0) or sampling; no beam search. The prompt format comes
    from the file's chat template unless one is given."""

    def __init__(self, gguf_path: str, *, prompt_format: PromptFormat | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, n_gpu_layers: int = 0, llm=None):
        try:
            import llama_cpp
        except ImportError:
            raise _missing_extra("llama.cpp", "gguf-runtime", "llama-cpp-python") from None
        self.path = gguf_path
        self.llm = llm or llama_cpp.Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=n_threads,
                                          n_gpu_layers=n_gpu_layers, verbose=False)
        if prompt_format is None:
            metadata = getattr(self.llm, "metadata", {}) or {}
            eos_id = self.llm.token_eos()
            eos = self.llm.detokenize([eos_id], special=True).decode("utf-8", "replace") if eos_id >= 0 else ""
            prompt_format = format_for_tokenizer(
                _GgufTokenizerInfo(metadata.get("tokenizer.chat_template", ""), eos)
            )
        self.fmt = prompt_format
        self.tokens_generated = 0

    def describe(self) -> str:
        return f"llamacpp:{os.path.basename(self.path)}"

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        if decoding.strategy == "beam":
            raise ValueError("the llama.cpp backend has no beam search; use greedy or sample, or the transformers "
                             "backend")
        stop = [s for s in (self.fmt.end_of_turn, *self.fmt.stop_strings) if s]
        outputs = []
        for index, request in enumerate(requests):
            prompt = self.llm.tokenize(render_prompt(self.fmt, request).encode("utf-8"), add_bos=False, special=True)
            n_input = len(self.llm.tokenize((request.input or request.instruction).encode("utf-8"), add_bos=False))
            kwargs = dict(max_tokens=token_budget(n_input, decoding), stop=stop)
            if decoding.strategy == "sample":
                kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=0,
                              seed=decoding.seed + index)
            else:
                kwargs.update(temperature=0.0, top_k=1)
            out = self.llm.create_completion(prompt=prompt, **kwargs)
            self.tokens_generated += int(out.get("usage", {}).get("completion_tokens", 0))
            outputs.append(self.fmt.strip_response(out["choices"][0]["text"]))
            if on_batch is not None:
                on_batch(1)
        return outputs


class EndpointError(ValueError):
    """An OpenAI-compatible endpoint refused a request (4xx) or kept failing after the retries."""


class OpenAIGenerator:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM's server, llama.cpp's server,
    `writetune serve`). The conversation is rendered as messages by `render_messages` (system, few-shot turns,
    user), `concurrency` requests are in flight at once, 429 and 5xx answers and connection errors are retried with
    exponential backoff (honouring Retry-After), and any other 4xx answer stops with its status and message.
    The budget uses an estimate of the input's tokens (four characters per token), since the tokenizer is remote.
    """

    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None,
                 prompt_format: PromptFormat | None = None, concurrency: int = 8, timeout: float = 120.0,
                 max_retries: int = 5, backoff: float = 0.5, client=None):
        base_url = base_url or os.environ.get("WRITETUNE_API_BASE") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError(f"model 'openai:{model}' needs an endpoint: give it as openai:{model}@URL or set "
                             "WRITETUNE_API_BASE (e.g. http://localhost:8000/v1)")
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be at least 1 and max_retries at least 0")
        import httpx

        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.fmt = prompt_format or chatml()
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        key = api_key or os.environ.get("WRITETUNE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.Client(timeout=timeout, headers=headers)
        self.tokens_generated = 0
        self.requests_sent = 0
        self._lock = threading.Lock()  # the counters are updated from the worker threads

    def describe(self) -> str:
        return f"openai:{self.model}@{self.url.rsplit('/chat/completions', 1)[0]}"

    def _body(self, request: Request, decoding: DecodingConfig, index: int) -> dict:
        if decoding.strategy == "beam":
            raise ValueError("OpenAI-compatible endpoints offer no beam search; use greedy or sample")
        body = {
            "model": self.model,
            "messages": render_messages(self.fmt, request),
            "max_tokens": token_budget(_estimate_tokens(request.input or request.instruction), decoding),
            "n": 1,
        }
        if decoding.strategy == "sample":
            body.update(temperature=decoding.temperature, top_p=decoding.top_p, seed=decoding.seed + index)
        else:
            body.update(temperature=0.0, seed=decoding.seed)
        return body

    def _post(self, body: dict) -> str:
        import httpx

        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                with self._lock:
                    self.requests_sent += 1
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    data = response.json()
                    usage = data.get("usage") or {}
                    with self._lock:
                        self.tokens_generated += int(usage.get("completion_tokens") or 0)
                    content = data["choices"][0]["message"].get("content") or ""
                    return self.fmt.strip_response(content)
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    raise EndpointError(f"{self.url}: {problem}")
                retry_after = response.headers.get("retry-after")
            if attempt == self.max_retries:
                raise EndpointError(f"{self.url}: gave up after {self.max_retries + 1} attempts ({problem})")
            delay = self.backoff * (2 ** attempt)
            try:
                delay = max(delay, float(retry_after)) if retry_after else delay
            except ValueError:
                pass
            time.sleep(delay)
        raise AssertionError("unreachable")

    def generate(self, requests, decoding=DecodingConfig(), on_batch=None):
        from concurrent.futures import ThreadPoolExecutor, as_completed

        bodies = [self._body(r, decoding, i) for i, r in enumerate(requests)]
        outputs: list[str] = [""] * len(requests)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._post, body): i for i, body in enumerate(bodies)}
            try:
                for future in as_completed(futures):
                    outputs[futures[future]] = future.result()
                    if on_batch is not None:
                        on_batch(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return outputs


# ----------------------------------------------------------------------------------------------------------------
# choosing a backend


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
        import torch

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
    `backend`: transformers (`auto`), vllm or llamacpp. `options` go to the backend's constructor."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (expected one of {', '.join(BACKENDS)})")
    if spec == COPY_SPEC:
        return CopyGenerator()
    if spec.startswith("openai:") or backend == "openai":
        model, url = parse_openai_spec(spec)
        return OpenAIGenerator(model, url or options.pop("base_url", None), **options)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = default_dtype(device)
    if backend == "vllm":
        return VllmGenerator(spec, dtype=dtype, **options)
    if backend == "llamacpp":
        from writetune.models import ALIASES, embedded_gguf_path

        path = str(embedded_gguf_path(spec)) if spec in ALIASES else spec
        if not (path.endswith(".gguf") and os.path.isfile(path)):
            raise ValueError(f"the llama.cpp backend needs a .gguf file or an alias of one, not '{spec}'")
        return LlamaCppGenerator(path, **options)
    from writetune.models import load_model

    return TransformersGenerator(load_model(spec, dtype=dtype, device=device, merge_adapter=True))
