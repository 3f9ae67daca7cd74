"""The attention backends a model can run: which exist here, and the call into ast-min's Triton kernel.

"eager" and "sdpa" are torch and always available; "triton" is the FlashAttention kernel of
`ast_min.kernels` (the repository's `kernels/` folder), which needs triton and, outside its interpreter, a CUDA device.
"auto" picks the Triton kernel on CUDA when it is available, else "sdpa".
"""

from __future__ import annotations

import functools
import importlib

import torch

ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "triton", "auto")


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    try:
        kernels = importlib.import_module("ast_min.kernels")
    except ImportError:
        return False
    return bool(getattr(kernels, "TRITON_AVAILABLE", False))


def resolve_attn_implementation(name: str, device: torch.device) -> str:
    """Resolve "auto": "triton" on a CUDA device when the kernel is available, else "sdpa"; other names pass through."""
    if name == "auto":
        return "triton" if device.type == "cuda" and _triton_available() else "sdpa"
    return name


def check_attn_implementation(name: str) -> str:
    """`name` when it is one of ATTN_IMPLEMENTATIONS, else a ValueError listing them."""
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"unknown attn_implementation {name!r}; use one of {ATTN_IMPLEMENTATIONS}")
    return name


def triton_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v by ast-min's Triton kernel; q, k, v: (B, H, L, Dh)."""
    try:
        kernels = importlib.import_module("ast_min.kernels")  # imported on use: triton is heavy and optional
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
    return kernels.flash_attention(q, k, v, causal=False, sm_scale=scale)
