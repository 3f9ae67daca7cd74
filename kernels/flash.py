"""flash_attention(): the differentiable entry point to the fused-attention kernels.

It checks the arguments, picks the registered forward and backward variants and calls the custom op
(custom_op.py), so that autograd and torch.compile see one node. Shapes: q, k, v (B, H, N, Dh).
"""

from __future__ import annotations

import importlib.util
import math

import torch

TRITON_AVAILABLE: bool = importlib.util.find_spec("triton") is not None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    sm_scale: float | None = None,
    *,
    input_precision: str | None = None,
    return_lse: bool = False,
    backward: str = "split",
    forward: str = "standard",
):
    """Fused scaled-dot-product attention, softmax(q kᵀ · sm_scale) v, in Triton; differentiable.

    Args:
        q, k, v: (B, H, N, Dh) tensors, any strides (e.g. views of one fused qkv projection), one
            dtype among float16, bfloat16, float32 (and float64, meant for gradient checks), on a CUDA
            device, or on the CPU with TRITON_INTERPRET=1 (bfloat16 excepted: the interpreter's bf16
            matmul is broken). Any N >= 0; 1 <= Dh <= 128 (non-powers of two are zero-padded inside
            the kernel, without a copy); B * H <= 65535.
        causal: mask keys after each query (query i sees keys 0..i), as SDPA's is_causal=True.
        sm_scale: the softmax scale; None means 1 / sqrt(Dh).
        input_precision: float32 matmul precision: "ieee" (exact fp32), "tf32" (tensor cores, ~1e-3
            relative error) or None, which follows torch.get_float32_matmul_precision() ("highest",
            torch's default, means "ieee"). Ignored for other dtypes.
        return_lse: also return the row log-sum-exp (natural log), not differentiable.
        backward: which registered backward variant computes the gradients: "split" (two kernels,
            no atomics, deterministic) or "fused" (one pass, dQ by atomic adds); see kernels/NOTES.md.
        forward: which registered forward variant computes O: "standard", or "tma" (tiles loaded
            through tensor descriptors; Hopper or newer on a GPU).

    Returns:
        O (B, H, N, Dh) in q's dtype; with return_lse, (O, LSE) where LSE is (B, H, N) float32
        (float64 for float64 inputs).

    Raises:
        ValueError: an unsupported shape, dtype, device, head dim or argument, naming the fix.
        RuntimeError: triton is not installed, or CPU tensors without TRITON_INTERPRET=1.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError(
            "flash_attention needs triton, which is not installed (it ships for Linux only); install it "
            "with `pip install triton`, or use ast-min's 'sdpa' or 'eager' attention backend")
    from ast_min.kernels import custom_op, variants
    from ast_min.kernels.fused_attention import check_inputs

    check_inputs(q, k, v, causal, sm_scale, input_precision)
    if not torch.compiler.is_compiling():  # (compiled, the op checks it when it runs: discovery imports modules)
        variants.get("backward", backward)  # an unknown name fails here, not at backward time
        variants.get("forward", forward)
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
    # One custom op (kernels/custom_op.py): torch.compile sees a single node with a known output layout.
    # input_precision "" = follow torch's fp32 matmul setting, read when the op runs (not traceable).
    o, lse = custom_op.flash_attention_forward(q, k, v, causal, float(sm_scale), input_precision or "", forward, backward)
    return (o, lse) if return_lse else o
