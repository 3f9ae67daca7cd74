"""The default variants: fused_attention.py's forward ("standard") and two-kernel backward ("split").

The kernels and launchers live in `fused_attention.py`, the teaching file; this file describes them
for the registry (`variants.py`): each kernel's argument builder for inspection, its autotune list and
its cost model. Argument builders pass the softmax scale 1/sqrt(Dh) that the model uses.
"""

from __future__ import annotations

import math

import triton

from ast_min.kernels import cost, tuning, variants
from ast_min.kernels.fused_attention import (
    _attn_bwd_delta, _attn_bwd_dkdv, _attn_bwd_dkdv_tuned, _attn_bwd_dq, _attn_bwd_dq_tuned, _attn_fwd, _attn_fwd_tuned,
    attention_backward, attention_forward,
)
from ast_min.kernels.tiles import LOG2E


def _scale(p) -> float:
    return 1.0 / math.sqrt(p.Dh)


def _fwd_args(p):
    t = variants.problem_tensors(p)
    args = (t["q"], t["k"], t["v"], t["o"], t["lse"], t["q"].stride(), t["k"].stride(), t["v"].stride(),
            t["o"].stride(), p.H, p.N, _scale(p) * LOG2E.value)
    return args, variants.problem_meta(p)


def _delta_args(p):
    t = variants.problem_tensors(p)
    meta = variants.problem_meta(p)
    args = (t["o"], t["do"], t["delta"], t["o"].stride(), t["do"].stride(), p.H, p.N)
    return args, dict(HEAD_DIM=p.Dh, BLOCK_D=meta["BLOCK_D"], ACC_DTYPE=meta["ACC_DTYPE"], BLOCK_M=tuning.DELTA_BLOCK_M)


def _dkdv_args(p):
    t = variants.problem_tensors(p)
    args = (t["q"], t["k"], t["v"], t["do"], t["lse"], t["delta"], t["dk"], t["dv"],
            *(t[n].stride() for n in ("q", "k", "v", "do", "dk", "dv")), p.H, p.N, _scale(p), _scale(p) * LOG2E.value)
    return args, variants.problem_meta(p)


def _dq_args(p):
    t = variants.problem_tensors(p)
    args = (t["q"], t["k"], t["v"], t["do"], t["lse"], t["delta"], t["dq"],
            *(t[n].stride() for n in ("q", "k", "v", "do", "dq")), p.H, p.N, _scale(p), _scale(p) * LOG2E.value)
    return args, variants.problem_meta(p)


FORWARD_KERNEL = variants.KernelSpec("forward", _attn_fwd, tuning.FORWARD_GPU, _fwd_args,
                                     lambda p, c: cost.forward(p, c["BLOCK_M"], c["BLOCK_N"]), _attn_fwd_tuned)
DELTA_KERNEL = variants.KernelSpec("delta", _attn_bwd_delta, [triton.Config({}, num_warps=4, num_stages=3)], _delta_args,
                                   lambda p, c: cost.delta(p))
DKDV_KERNEL = variants.KernelSpec("dK/dV", _attn_bwd_dkdv, tuning.BACKWARD_DKDV_GPU, _dkdv_args,
                                  lambda p, c: cost.backward_dkdv(p, c["BLOCK_M"], c["BLOCK_N"]), _attn_bwd_dkdv_tuned)
DQ_KERNEL = variants.KernelSpec("dQ", _attn_bwd_dq, tuning.BACKWARD_DQ_GPU, _dq_args,
                                lambda p, c: cost.backward_dq(p, c["BLOCK_M"], c["BLOCK_N"]), _attn_bwd_dq_tuned)

variants.register(variants.Variant(
    "standard", "forward", attention_forward, (FORWARD_KERNEL,),
    "FlashAttention-2 Algorithm 1: one program per query block, key blocks streamed past"))
variants.register(variants.Variant(
    "split", "backward", attention_backward, (DELTA_KERNEL, DKDV_KERNEL, DQ_KERNEL),
    "delta, then dK/dV (per key block) and dQ (per query block): no atomics, S and dP computed twice"))
