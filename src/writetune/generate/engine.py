"""writetune's continuous-batching decoding engine for decoder-only transformers models, which sequences can join at
any time: `add` a prompt (with its token budget, and a `Sampler` unless it is greedy), call `step` until `idle`, and
read each step's new tokens. `run` is the whole loop for a fixed set of prompts (what `writetune eval` generates);
`add_shared` is `add` for prompts that arrive one at a time and share prefixes nobody declared (a server's)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass


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


class BufferLayer:
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
        import torch  # torch stays off the CLI's start-up path

        rows, heads, _, dim = self.kbuf.shape
        for name in ("kbuf", "vbuf"):
            old = getattr(self, name)
            new = torch.empty((rows, heads, capacity, dim), dtype=old.dtype, device=old.device)
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)


class Sampler:
    """Temperature and nucleus (top-p) sampling of one sequence's next token, from its own random generator: a
    seeded sequence draws the same tokens whatever else shares its batch."""

    def __init__(self, temperature: float, top_p: float, seed: int):
        import torch  # torch stays off the CLI's start-up path

        self.torch = torch
        self.temperature, self.top_p = temperature, top_p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits) -> int:
        t = self.torch
        probs = t.softmax(logits.float().cpu() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            ordered, index = probs.sort(descending=True)
            outside = ordered.cumsum(-1) - ordered > self.top_p  # keeps the smallest set reaching top_p
            probs = t.zeros_like(probs).scatter(0, index, ordered.masked_fill(outside, 0.0))
        return int(t.multinomial(probs, 1, generator=self.generator))


@dataclass
class _Sequence:
    ids: list[int]
    budget: int
    group: Hashable | None
    sampler: Sampler | None


class GreedyEngine:
    """Continuous batching for decoder-only models: greedy decoding, and sampling for sequences added with a
    `Sampler`.

    Every cache row is right-aligned: `[padding | prompt prefix | prompt suffix | generated tokens]`. Sequences may
    belong to a group whose shared prompt prefix (system header, instruction, few-shot turns) was computed once by
    `add_prefix`; its keys and values are copied into the rows, so only the suffixes are prefilled. Waiting prompts
    are admitted longest suffix first; a row finishes when it emits a stop token, reaches its budget or is
    cancelled. When `max_rows // 8` rows are free (or half of them finished and nothing waits), finished rows are
    dropped, leading columns that are padding in every remaining row are cut, and waiting prompts are prefilled and
    merged in: a sequence added while others decode joins them at the next step that admits. Positions are passed
    explicitly, so padding is invisible to the model; each step attends through a boolean mask of valid columns.
    Its greedy outputs equal those of `model.generate` one request at a time up to floating-point reassociation
    (identical in float32 on the benchmark's sentences; see docs/benchmarks.md).
    """

    headroom = 64  # cache columns allocated ahead, so that most steps write in place
    shared_prefixes = 32  # prefixes `add_shared` keeps, the least recently used dropped first
    shared_gain = 8  # tokens a new shared prefix must add to the longest cached one it extends

    def __init__(self, model, stop_ids: Sequence[int], pad_id: int, max_rows: int):
        import torch  # torch stays off the CLI's start-up path

        self.torch = torch
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder, self.head = self.model.get_decoder(), self.model.get_output_embeddings()
        self.stop = {int(t) for t in stop_ids}
        self.pad_id = int(pad_id)
        self.max_rows = max_rows
        parameter = next(self.model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.eager = getattr(self.model.config, "_attn_implementation", "sdpa") == "eager"
        self.prefixes: dict[Hashable, tuple[int, list[BufferLayer] | None]] = {}  # group -> (length, its layers)
        self._prefix_ids: dict[Hashable, list[int]] = {}
        self.forward_calls = 0
        self._sequences: dict[int, _Sequence] = {}
        self._waiting: list[int] = []
        self._state: _BatchState | None = None
        self._added = 0
        self._shared: OrderedDict[tuple[int, ...], None] = OrderedDict()  # add_shared's prefixes, oldest first
        self._last_shared: list[int] = []

    # ---- the interface -----------------------------------------------------------------------------------------

    def add_prefix(self, group: Hashable, ids: Sequence[int]) -> None:
        """Compute the shared prompt prefix of `group` once; sequences added with `group` start with these ids."""
        with self.torch.inference_mode():
            self.prefixes[group] = (len(ids), self._prefix(ids) if ids else None)
        self._prefix_ids[group] = list(ids)

    def add(self, ids: Sequence[int], budget: int, *, group: Hashable | None = None,
            sampler: Sampler | None = None) -> int:
        """Queue a prompt; returns its sequence id. It joins the batch at the next step that admits."""
        if budget < 1 or not ids:
            raise ValueError("a sequence needs a prompt of at least one token and a budget of at least one")
        prefix = self._prefix_ids.get(group, [])
        if len(prefix) >= len(ids) or list(ids[:len(prefix)]) != prefix:
            raise ValueError(f"the prompt of a sequence in group {group!r} does not extend the group's prefix")
        seq = self._added
        self._added += 1
        self._sequences[seq] = _Sequence(list(ids), budget, group, sampler)
        self._waiting.append(seq)
        return seq

    def add_shared(self, ids: Sequence[int], budget: int, *, sampler: Sampler | None = None) -> int:
        """`add` a prompt that shares its beginning with earlier ones (a system prompt, an instruction) without saying
        so: it joins the longest cached prefix it extends, and when it shares a longer one with the prompt added
        before it, that prefix's keys and values are computed once and cached for the prompts that follow. Only
        the rest of each prompt is prefilled, which is what brings a request's first token forward."""
        ids = list(ids)
        best = max((p for p in self._shared if len(p) < len(ids) and ids[:len(p)] == list(p)), key=len, default=())
        common = min(_common_prefix([ids, self._last_shared]), len(ids) - 1) if self._last_shared else 0
        self._last_shared = ids
        if common >= len(best) + self.shared_gain:
            best = tuple(ids[:common])
            self.add_prefix(best, best)
            self._shared[best] = None
            while len(self._shared) > self.shared_prefixes:
                self.remove_prefix(self._shared.popitem(last=False)[0])
        if not best:
            return self.add(ids, budget, sampler=sampler)
        self._shared.move_to_end(best)
        return self.add(ids, budget, group=best, sampler=sampler)

    def remove_prefix(self, group: Hashable) -> None:
        """Forget a group's prefix; its sequences still waiting are prefilled whole."""
        self.prefixes.pop(group, None)
        self._prefix_ids.pop(group, None)

    def cancel(self, seq: int) -> None:
        """Stop a sequence: a waiting one is never prefilled, a running one frees its row at the next admission."""
        if self._sequences.pop(seq, None) is None:
            return
        if seq in self._waiting:
            self._waiting.remove(seq)
        elif self._state is not None:
            self._state.cancel(seq)

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing decodes."""
        return not self._waiting and (self._state is None or self._state.active == 0)

    @property
    def waiting(self) -> int:
        """Sequences added but not yet admitted."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Sequences being decoded."""
        return self._state.active if self._state is not None else 0

    def step(self) -> list[tuple[int, int, bool]]:
        """Admit waiting prompts when the batch has room for them (their first tokens come from the prefill), then
        decode one token for every running row. Returns (sequence, token, finished) for each new token; a finished
        sequence's last token is its stop token or the one that reaches its budget."""
        events: list[tuple[int, int, bool]] = []
        with self.torch.inference_mode():
            state = self._state
            free = self.max_rows - (state.active if state is not None else 0)
            refill = max(1, self.max_rows // 8)
            pending = self._waiting
            if state is None or (pending and (free >= refill or state.active == 0)) \
                    or (not pending and state.finished >= max(1, len(state.rows) // 2)):
                # pop() gives the longest prompt suffix (what a prefill computes) first
                pending.sort(key=lambda s: (len(self._sequences[s].ids) - self._prefix_length(s), -s))
                take = [pending.pop() for _ in range(min(free, len(pending)))]
                state = self._admit(state, take, events)
            if state is not None and state.active:
                state.step(self, events)
            self._state = state if state is not None and (state.active or self._waiting) else None
        for seq, _, finished in events:
            if finished:
                self._sequences.pop(seq, None)
        return events

    def run(self, encoded: Sequence[Sequence[int]], budgets: Sequence[int],
            on_batch: Callable[[int], None] | None = None, groups: Sequence[Hashable] | None = None
            ) -> list[list[int]]:
        """Every prompt decoded to its end: the generated tokens of each, in order. Prompts of the same group share
        the prefix they have in common. `on_batch(n)` is called whenever n more prompts are complete."""
        groups = list(groups) if groups is not None else [0] * len(encoded)
        members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        for g, rows in members.items():
            seqs = [encoded[i] for i in rows]
            # every row keeps at least one prompt token of its own to prefill
            n = min(_common_prefix(seqs), min(len(s) for s in seqs) - 1)
            self.add_prefix(g, seqs[0][:n])
        index = {self.add(ids, budget, group=g): i for i, (ids, budget, g) in enumerate(zip(encoded, budgets, groups))}
        results: list[list[int]] = [[] for _ in encoded]
        while not self.idle:
            finished = 0
            for seq, token, done in self.step():
                results[index[seq]].append(token)
                finished += done
            if finished and on_batch is not None:
                on_batch(finished)
        return results

    # ---- the machinery -----------------------------------------------------------------------------------------

    def _prefix_length(self, seq: int) -> int:
        return self.prefixes.get(self._sequences[seq].group, (0, None))[0]

    def _forward(self, input_ids, position_ids, allowed, layers):
        """Logits of the last position. `allowed` is [rows, q, kv] boolean (True = attend)."""
        from transformers.cache_utils import Cache  # torch stays off the CLI's start-up path

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

    def empty_layers(self, rows: int, capacity: int) -> list[BufferLayer]:
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (rows, heads, capacity, dim)
        empty = self.torch.empty
        return [
            BufferLayer(empty(shape, dtype=self.dtype, device=self.device),
                        empty(shape, dtype=self.dtype, device=self.device), 0)
            for _ in range(config.num_hidden_layers)
        ]

    def _prefix(self, ids: Sequence[int]) -> list[BufferLayer]:
        t = self.torch
        n = len(ids)
        layers = self.empty_layers(1, n)
        allowed = t.ones((n, n), dtype=t.bool, device=self.device).tril()[None]
        self._forward(t.tensor([list(ids)], device=self.device), t.arange(n, device=self.device)[None], allowed,
                      layers)
        return layers

    def _next_tokens(self, logits, samplers: Sequence[Sampler | None]):
        """The first maximum of each row (as argmax; faster on CPU), or a sampled token for rows with a sampler."""
        tokens = logits.max(-1).indices
        for r, sampler in enumerate(samplers):
            if sampler is not None:
                tokens[r] = sampler(logits[r])
        return tokens

    def _admit(self, state: "_BatchState | None", take: list[int], events) -> "_BatchState | None":
        """Drop finished rows, cut all-padding columns, prefill the `take` prompts and merge them in. Returns the
        new state (None when no row is left); the prompts' first tokens go to `events`."""
        kept = state.compact(self) if state is not None else None
        if kept is not None and not kept.rows:
            kept = None
        parts = [kept] if kept is not None else []
        for chunk in self._chunks(take):
            parts.append(self._prefill(chunk, events))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else _BatchState.merge(parts, self)

    def _chunks(self, take: list[int]) -> list[list[int]]:
        """`take` (longest suffix first) cut into prefill batches whose suffixes are at least 80% as long as the
        batch's longest, so that padding costs little; a batch of fewer than 8 prompts takes the next anyway."""
        chunks: list[list[tuple[int, int]]] = []
        for seq in take:
            n = len(self._sequences[seq].ids) - self._prefix_length(seq)
            if chunks and (n >= 0.8 * chunks[-1][0][1] or len(chunks[-1]) < 8):
                chunks[-1].append((seq, n))
            else:
                chunks.append([(seq, n)])
        return [[seq for seq, _ in chunk] for chunk in chunks]

    def _prefill(self, take: list[int], events) -> "_BatchState":
        """Prefill the prompt suffixes of `take` after their groups' prefix keys; returns their state."""
        t = self.torch
        sequences = [self._sequences[seq] for seq in take]
        prefix = [self.prefixes.get(s.group, (0, None)) for s in sequences]
        suffixes = [s.ids[p:] for s, (p, _) in zip(sequences, prefix)]
        S = max(len(s) for s in suffixes)  # query columns
        Pm = max(p for p, _ in prefix)  # cache columns before the queries
        k = len(take)
        capacity = Pm + S + self.headroom
        ids = t.full((k, S), self.pad_id, dtype=t.long)
        valid = t.zeros((k, capacity), dtype=t.bool)
        pos = t.zeros((k, S), dtype=t.long)
        layers = self.empty_layers(k, capacity)
        by_prefix: dict[int, list[int]] = {}
        for row, (s, (p, pre)) in enumerate(zip(suffixes, prefix)):
            ids[row, S - len(s):] = t.tensor(s, dtype=t.long)
            pos[row, S - len(s):] = t.arange(p, p + len(s))
            valid[row, Pm - p: Pm] = True
            valid[row, Pm + S - len(s): Pm + S] = True
            by_prefix.setdefault(id(pre), []).append(row)
        for rows in by_prefix.values():  # each group's prefix, copied into its rows; zeros before it
            p, pre = prefix[rows[0]]
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
        samplers = [s.sampler for s in sequences]
        first = self._next_tokens(self._forward(ids, pos, allowed, layers), samplers)
        new = _BatchState(list(take), layers, valid, pos[:, -1] + 1, first, [s.budget for s in sequences], samplers)
        new.record(first.tolist(), self.stop, events)
        return new


class _BatchState:
    """The rows being decoded: their cache layers (right-aligned), valid-column mask, next positions, tokens."""

    def __init__(self, rows, layers, valid, next_pos, last, budgets, samplers):
        self.rows, self.layers, self.valid = rows, layers, valid
        self.next_pos, self.last, self.budgets, self.samplers = next_pos, last, budgets, samplers
        self.generated = [0] * len(rows)
        self.done = [False] * len(rows)
        self.finished = 0

    @property
    def active(self) -> int:
        return len(self.rows) - self.finished

    @property
    def length(self) -> int:
        return self.layers[0].length

    def cancel(self, seq: int) -> None:
        r = self.rows.index(seq)
        if not self.done[r]:
            self.done[r] = True
            self.finished += 1

    def record(self, tokens: list[int], stop: set[int], events: list) -> None:
        """One token per unfinished row, as (sequence, token, finished) events."""
        for r, token in enumerate(tokens):
            if self.done[r]:
                continue
            self.generated[r] += 1
            finished = token in stop or self.generated[r] >= self.budgets[r]
            if finished:
                self.done[r] = True
                self.finished += 1
            events.append((self.rows[r], token, finished))

    def step(self, engine: GreedyEngine, events: list) -> None:
        """One decoding step for every row (finished rows ride along until the next compaction)."""
        t = engine.torch
        L = self.length
        if L + 1 > self.valid.shape[1]:
            more = t.zeros((self.valid.shape[0], engine.headroom), dtype=t.bool, device=self.valid.device)
            self.valid = t.cat([self.valid, more], dim=1)
        self.valid[:, L] = True
        logits = engine._forward(self.last[:, None], self.next_pos[:, None], self.valid[:, None, : L + 1],
                                 self.layers)
        self.last = engine._next_tokens(logits, self.samplers)
        self.next_pos = self.next_pos + 1
        self.record(self.last.tolist(), engine.stop, events)

    def compact(self, engine: GreedyEngine) -> "_BatchState":
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
                          [self.budgets[r] for r in keep], [self.samplers[r] for r in keep])
        out.generated = [self.generated[r] for r in keep]
        return out

    @staticmethod
    def merge(parts: list["_BatchState"], engine: GreedyEngine) -> "_BatchState":
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
                          t.cat([p.last for p in parts]), [b for p in parts for b in p.budgets],
                          [s for p in parts for s in p.samplers])
        out.generated = [x for p in parts for x in p.generated]
        out.done = [x for p in parts for x in p.done]
        out.finished = sum(p.finished for p in parts)
        return out
