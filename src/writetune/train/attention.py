"""Padding-free attention for packed rows: each example attends causally to itself and never to its neighbours.

Registered with transformers as the attention implementation `writetune_varlen`. When a forward call carries
`cu_seq_lens_q` (the cumulative example lengths of a packed row, as flash-attention's varlen kernels take them),
attention runs once per example slice with PyTorch's causal SDPA, so the cost is the sum of the examples' squared
lengths rather than the row's (what a block-diagonal mask over the whole row would cost on CPU). Without those
arguments (generation with a KV cache and a padding mask) it is plain SDPA, so the same model object can generate
during training.
"""

from __future__ import annotations

IMPLEMENTATION = "writetune_varlen"
_registered = False


def _varlen_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    kwargs.pop("max_length_q", None)
    kwargs.pop("max_length_k", None)
    if cu is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    import torch

    bounds = cu.tolist()
    pieces = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        out, _ = sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                                        value[:, :, start:end], None, dropout=dropout, scaling=scaling,
                                        is_causal=True, **kwargs)
        pieces.append(out)  # [1, len, heads, dim]
    return torch.cat(pieces, dim=1), None


def _varlen_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None, attention_mask=None,
                 **kwargs):
    """No mask for a packed training row (the attention function splits it); SDPA's mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and q_length == kv_length and not q_offset and not kv_offset:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Register the implementation with transformers (idempotent) and return its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

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
