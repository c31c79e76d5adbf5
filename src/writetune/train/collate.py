"""From mix records (`writetune.data.record`) to packed training rows: tokenise through `writetune.prompt`, mask the
loss by construction, pack several examples into one padding-free row, and plan which rows make each optimizer
step.

An example is the prompt's token ids followed by the response's: the two parts are rendered and tokenised
separately (exactly as generation encodes a prompt and then produces the answer), so the boundary between "ignored"
and "trained" is known without looking for any template string. The response ends with the format's end-of-turn
token (plus the tokenizer's EOS when the end-of-turn marker is not a stop token), so the tuned model learns to stop.

A packed row concatenates examples with per-example position ids (each restarts at 0) and `cu_seq_lens`, the
cumulative example lengths that the varlen attention in `attention.py` uses to keep examples from attending to each
other. Only positions that predict a response token are sent through the LM head (`target_positions`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

import numpy as np
import torch

from writetune.data.record import Record
from writetune.prompt import PromptFormat, stop_token_ids, token_ids
from writetune.tasks import UnknownTaskError, get_task

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    """Prompt ids then response ids; only the response is trained."""

    ids: tuple[int, ...]
    n_prompt: int
    task: str = ""
    weights: tuple[float, ...] | None = None  # per response token (edit weighting); None: all 1

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt

    def labels(self) -> list[int]:
        """Hugging Face convention (unshifted): IGNORE_INDEX on the prompt, the token itself on the response."""
        return [IGNORE_INDEX] * self.n_prompt + list(self.ids[self.n_prompt:])


def tokenize_example(tokenizer, fmt: PromptFormat, instruction: str, input_text: str, output: str,
                     task: str = "") -> TokenizedExample:
    """Render with the one renderer and tokenise prompt and response separately (masking by construction)."""
    prompt = token_ids(tokenizer, fmt.render_prompt(instruction, input_text))
    response = token_ids(tokenizer, fmt.render_response(output))
    stops = stop_token_ids(tokenizer, fmt)
    if not response or response[-1] not in stops:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"prompt format '{fmt.name}': its end-of-turn marker {fmt.end_of_turn!r} is not a "
                             "single stop token and the tokenizer has no EOS token to end a response with")
        response = response + [tokenizer.eos_token_id]
    return TokenizedExample(ids=tuple(prompt + response), n_prompt=len(prompt), task=task)


def edit_weights(prompt: Sequence[int], response: Sequence[int], edit_weight: float) -> tuple[float, ...] | None:
    """Per-token loss weights that shift an example's weight onto its edits (edit-weighted MLE, Junczys-Dowmunt et
    al. 2018, which counters the copy bias of models trained on minimal-edit pairs).

    Response tokens that are not part of a run copied from the prompt (difflib's longest matching blocks over token
    ids) weigh `edit_weight`, copied tokens and the closing stop token weigh 1, and the weights are rescaled so they
    sum to the response length: an example keeps its total weight (so the task balance of the mix is unchanged)
    and only its edits count more. An example with no copied tokens (generic instructions) or no edits (an
    unchanged pair) gets all ones (None)."""
    n = len(response)
    copied = [False] * n
    matcher = SequenceMatcher(None, list(prompt), list(response[:-1]), autojunk=False)
    for block in matcher.get_matching_blocks():
        if block.size >= 2:  # a single shared token (a comma, "the") is not a copied span
            for j in range(block.b, block.b + block.size):
                copied[j] = True
    copied[-1] = True  # the stop token is not an edit
    n_copied = sum(copied)
    if n_copied in (n, 1) or edit_weight == 1.0:
        return None
    raw = [1.0 if c else edit_weight for c in copied]
    scale = n / sum(raw)
    return tuple(w * scale for w in raw)


def _is_writing_task(name: str) -> bool:
    try:
        return get_task(name).writing
    except UnknownTaskError:
        return True


def tokenize_records(tokenizer, fmt: PromptFormat, records: Sequence[Record],
                     edit_weight: float = 1.0) -> list[TokenizedExample]:
    """Tokenise records; with `edit_weight` > 1 the responses of writing tasks get edit weights."""
    examples = [tokenize_example(tokenizer, fmt, r.instruction, r.input, r.output, r.task) for r in records]
    if edit_weight == 1.0:
        return examples
    out = []
    for record, ex in zip(records, examples):
        if record.input.strip() and _is_writing_task(record.task):
            weights = edit_weights(ex.ids[:ex.n_prompt], ex.ids[ex.n_prompt:], edit_weight)
            ex = replace(ex, weights=weights) if weights is not None else ex
        out.append(ex)
    return out


def examples_within_limit(examples: Sequence[TokenizedExample], limit: int, path: object,
                          error: type[ValueError] = ValueError) -> list[TokenizedExample]:
    """The examples of at most `limit` tokens, in order: what a run trains on. `error`, naming the mix file `path`,
    when every example is longer."""
    kept = [ex for ex in examples if len(ex) <= limit]
    if not kept:
        raise error(f"{path}: every example is longer than {limit} tokens (batch.max_example_tokens)")
    return kept


@dataclass
class PackedBatch:
    """One padding-free row of several examples (tensors have batch dimension 1)."""

    input_ids: object  # LongTensor [1, L]
    position_ids: object  # LongTensor [1, L], restarting at 0 for every example
    labels: object  # LongTensor [1, L], IGNORE_INDEX outside responses (unshifted)
    target_positions: object  # LongTensor [N]: positions whose next token is a response token
    targets: object  # LongTensor [N]: that next token
    cu_seq_lens: object  # IntTensor [n_examples + 1]
    max_length: int
    n_examples: int
    weights: object = None  # FloatTensor [N] of per-target loss weights, or None (all 1)

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def n_targets(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device) -> "PackedBatch":
        for name in ("input_ids", "position_ids", "labels", "target_positions", "targets", "cu_seq_lens", "weights"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))
        return self

    def model_kwargs(self) -> dict:
        """Keyword arguments for a transformers causal LM forward (varlen attention + LM head on targets only)."""
        return dict(input_ids=self.input_ids, position_ids=self.position_ids, use_cache=False,
                    cu_seq_lens_q=self.cu_seq_lens, cu_seq_lens_k=self.cu_seq_lens,
                    max_length_q=self.max_length, max_length_k=self.max_length,
                    logits_to_keep=self.target_positions)


def collate(examples: Sequence[TokenizedExample]) -> PackedBatch:
    """Pack examples into one row. Example i's response token t is predicted at the position just before it, inside
    the same example, so no target ever crosses an example boundary."""
    ids, positions, labels, target_positions, targets, cu, weights = [], [], [], [], [], [0], []
    weighted = any(ex.weights is not None for ex in examples)
    for ex in examples:
        offset = len(ids)
        ids.extend(ex.ids)
        positions.extend(range(len(ex)))
        labels.extend(ex.labels())
        target_positions.extend(range(offset + ex.n_prompt - 1, offset + len(ex) - 1))
        targets.extend(ex.ids[ex.n_prompt:])
        if weighted:
            weights.extend(ex.weights if ex.weights is not None else [1.0] * ex.n_response)
        cu.append(len(ids))
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        labels=torch.tensor([labels], dtype=torch.long),
        target_positions=torch.tensor(target_positions, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        cu_seq_lens=torch.tensor(cu, dtype=torch.int32),
        max_length=max((len(ex) for ex in examples), default=0),
        n_examples=len(examples),
        weights=torch.tensor(weights, dtype=torch.float32) if weighted else None,
    )


def pack(order: Sequence[int], lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Greedy in-order packing: fill a row with examples in `order` until the next one would exceed `budget`."""
    rows: list[list[int]] = []
    row: list[int] = []
    used = 0
    for index in order:
        n = lengths[index]
        if n > budget:
            raise ValueError(f"example {index} has {n} tokens, more than the row budget of {budget}")
        if row and used + n > budget:
            rows.append(row)
            row, used = [], 0
        row.append(index)
        used += n
    if row:
        rows.append(row)
    return rows


@dataclass(frozen=True)
class StepPlan:
    """The data order of a whole run: which packed rows every process uses in every optimizer step.

    Epoch e shuffles the examples with a generator seeded by (seed, e) and packs them in that order; the rows of
    all epochs form one stream, and step s takes the next `world_size * grad_accum` rows (row `g` of process `r` is
    stream row `s * world * accum + r * accum + g`). The plan is a pure function of the seed, the example lengths and
    the batch shape, so a resumed run only needs the step number to continue with the same data.
    """

    steps: list[list[list[int]]]  # steps[s][r * accum + g] = example indices of that row
    world_size: int
    grad_accum: int
    epoch_of_step: list[float]

    def rows_for(self, step: int, rank: int) -> list[list[int]]:
        start = rank * self.grad_accum
        return self.steps[step][start:start + self.grad_accum]

    def __len__(self) -> int:
        return len(self.steps)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(json.dumps([self.world_size, self.grad_accum, self.steps]).encode())
        return digest.hexdigest()[:16]


def plan_steps(lengths: Sequence[int], *, budget: int, seed: int, world_size: int = 1, grad_accum: int = 1,
               epochs: float = 1.0, max_steps: int | None = None) -> StepPlan:
    """Plan `max_steps` steps, or as many whole steps as `epochs` passes over the data give (at least one)."""
    rows_per_step = world_size * grad_accum
    n = len(lengths)
    if n == 0:
        raise ValueError("no training examples")
    stream: list[list[int]] = []
    stream_epoch: list[float] = []
    epoch = 0
    while True:
        rng = np.random.default_rng([seed, epoch])
        rows = pack(rng.permutation(n).tolist(), lengths, budget)
        if max_steps is None and epoch + 1 > epochs:  # the fractional last epoch
            rows = rows[: int(round((epochs - epoch) * len(rows)))]
        stream.extend(rows)
        stream_epoch.extend(epoch + (i + 1) / len(rows) for i in range(len(rows)))
        epoch += 1
        if max_steps is not None:
            if len(stream) >= max_steps * rows_per_step:
                break
        elif epoch >= epochs:
            break
    n_steps = max_steps if max_steps is not None else max(1, len(stream) // rows_per_step)
    if len(stream) < n_steps * rows_per_step:  # tiny data and many processes: repeat the stream
        stream = (stream * (n_steps * rows_per_step // len(stream) + 1))
        stream_epoch = (stream_epoch * (n_steps * rows_per_step // len(stream_epoch) + 1))
    steps = [stream[s * rows_per_step:(s + 1) * rows_per_step] for s in range(n_steps)]
    epoch_of_step = [stream_epoch[(s + 1) * rows_per_step - 1] for s in range(n_steps)]
    return StepPlan(steps=steps, world_size=world_size, grad_accum=grad_accum, epoch_of_step=epoch_of_step)
