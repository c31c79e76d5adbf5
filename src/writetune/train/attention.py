"""Padding-free attention for packed rows: each example attends causally to itself and never to its neighbours.

Registered with transformers as the attention implementation `writetune_varlen`. When a forward call carries
`cu_seq_lens_q` (the cumulative example lengths of a packed row, as flash-attention's varlen kernels take them),
attention runs once per example slice, causally, so the cost is the sum of the examples' squared lengths rather than
the row's (what a block-diagonal mask over the whole row would cost on CPU). Slices up to 512 tokens use a plain
matmul-softmax-matmul (grouped-query aware, softmax in fp32), which on CPU is about twice as fast as PyTorch's flash
kernel at the ~100-token lengths of writing examples; longer slices use causal SDPA. Without those
arguments (generation with a KV cache and a padding mask) it is plain SDPA, so the same model object can generate
during training.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

IMPLEMENTATION = "writetune_varlen"
_registered = False


MATH_MAX_LEN = 512  # below this, plain matmul + softmax beats PyTorch's CPU flash kernel (measured ~2x at ~100 tokens)


def _segment_math(query, key, value, scaling: float):
    """Causal attention of one short example: [1, H, l, D] x [1, KV, l, D] -> [1, H, l, D], grouped-query aware,
    softmax in fp32 (as transformers' eager attention)."""
    _, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    q = query.reshape(1, kv_heads, groups * length, dim)  # head h = j * groups + g uses key/value head j
    scores = torch.matmul(q, key.transpose(-1, -2)) * scaling
    causal = torch.ones(length, length, dtype=torch.bool, device=query.device).tril().repeat(groups, 1)
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(probs, value).reshape(1, heads, length, dim)


def _varlen_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    cu = kwargs.pop("cu_seq_lens_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    kwargs.pop("max_length_q", None)
    kwargs.pop("max_length_k", None)
    if cu is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)

    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    bounds = cu.tolist()
    pieces = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        if end - start <= MATH_MAX_LEN and not (dropout and module.training):
            pieces.append(_segment_math(q, k, v, scaling))
        else:
            out, _ = sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True,
                                            **kwargs)
            pieces.append(out.transpose(1, 2))
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def _varlen_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None, attention_mask=None,
                 **kwargs):
    """No mask for a packed training row (the attention function splits it); SDPA's mask otherwise."""
    if attention_mask is None and q_length == kv_length and not q_offset and not kv_offset:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Register the implementation with transformers (idempotent) and return its name."""
    global _registered
    if not _registered:
        AttentionInterface.register(IMPLEMENTATION, _varlen_attention)
        AttentionMaskInterface.register(IMPLEMENTATION, _varlen_mask)
        _registered = True
    return IMPLEMENTATION


def use_varlen(model) -> None:
    """Switch a loaded model (or a PEFT wrapper of one) to the varlen implementation."""
    register()
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.set_attn_implementation(IMPLEMENTATION)


def use_sdpa(model) -> None:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.set_attn_implementation("sdpa")
