"""The attention backends: one map from a name to a function computing softmax(q kᵀ · scale) v.

Every backend has the signature `(q, k, v, scale, dropout) -> (out, probs)`, q, k, v and out of shape
(B, H, L, Dh), `dropout` the probability of dropping an attention weight (0 outside training), and
probs the (B, H, L, L) attention maps where the backend forms them (None otherwise), as transformers'
`ALL_ATTENTION_FUNCTIONS` maps its backends. The model, the commands' option choices and the error
messages read ATTENTION_FUNCTIONS; adding a backend is one entry there.

"eager" writes the softmax out (the only one with maps); "sdpa" is torch's fused
scaled_dot_product_attention; "triton" is ast-min's FlashAttention kernel (`ast_min.kernels`, the
repository's `kernels/` folder), which needs triton and, outside its interpreter, a CUDA device.
"auto" (not a backend but a choice) picks the Triton kernel on CUDA when it is available, else "sdpa".
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout: float = 0.0):
    """softmax(q kᵀ · scale) v written out; returns (out, probs)."""
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, L, L)
    # half inputs take their softmax in float32 (exp over- and underflows early in fp16/bf16);
    # float32 and float64 keep their own precision
    probs = scores.softmax(dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
    out = F.dropout(probs, p=dropout, training=dropout > 0) @ v  # (B, H, L, Dh)
    return out, probs


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout: float = 0.0):
    """torch's scaled_dot_product_attention (fused kernels on CPU and GPU); returns (out, None)."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale), None


def triton_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout: float = 0.0):
    """ast-min's Triton FlashAttention kernel; returns (out, None)."""
    if dropout > 0:
        raise ValueError(
            "the Triton attention kernel has no attention dropout: set "
            "attention_probs_dropout_prob=0 or train with attn_implementation='sdpa'"
        )
    try:
        from ast_min import kernels  # imported on use: triton is heavy and optional
    except ImportError as e:
        raise RuntimeError(
            f"attn_implementation='triton' needs `ast_min.kernels` and triton ({e}); "
            "install triton (pip install triton) or use attn_implementation='sdpa'"
        ) from None
    if not getattr(kernels, "TRITON_AVAILABLE", False) or not hasattr(kernels, "flash_attention"):
        raise RuntimeError(
            "attn_implementation='triton' but the Triton kernel is not available here "
            "(triton missing or the kernel not built); use attn_implementation='sdpa'"
        )
    return kernels.flash_attention(q, k, v, causal=False, sm_scale=scale), None


# name -> backend function; the first is what output_attentions=True runs (it alone forms the maps)
ATTENTION_FUNCTIONS: dict[str, Callable] = {
    "eager": eager_attention,
    "sdpa": sdpa_attention,
    "triton": triton_attention,
}
ATTN_IMPLEMENTATIONS = (*ATTENTION_FUNCTIONS, "auto")  # the names a model, `train` and the benches accept
# Backends that trace into plain ONNX operators (MatMul + Softmax); the Triton kernel has no ONNX form.
TRACEABLE = ("sdpa", "eager")


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    try:
        from ast_min import kernels
    except ImportError:
        return False
    return bool(getattr(kernels, "TRITON_AVAILABLE", False))


def resolve_attn_implementation(name: str, device: torch.device) -> str:
    """Resolve "auto": "triton" on a CUDA device when the kernel is available, else "sdpa"; other names pass through."""
    if name == "auto":
        return "triton" if device.type == "cuda" and _triton_available() else "sdpa"
    return name


def check_attn_implementation(name: str) -> str:
    """`name` when it is a backend of ATTENTION_FUNCTIONS or "auto", else a ValueError listing them."""
    if name != "auto" and name not in ATTENTION_FUNCTIONS:
        raise ValueError(f"unknown attn_implementation {name!r}; use one of {(*ATTENTION_FUNCTIONS, 'auto')}")
    return name
