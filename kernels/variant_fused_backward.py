"""The one-pass backward: FlashAttention-2's Algorithm 2, with dQ accumulated by atomic adds.

The "split" backward (fused_attention.py) runs two kernels so that no program writes another's rows:
dK/dV loops over query blocks for one key block, dQ loops over key blocks for one query block, and
both recompute S = Q Kᵀ and dP = dO Vᵀ. Here one program per key block does everything in one loop:

    k, v = K[keys], V[keys];  dk = dv = 0
    for each query block i (only those at or below the diagonal if causal):
        pᵀ  = exp2(k @ Q[i]ᵀ · qk_scale - LSE[i] · log2(e))      # recomputed once, not twice
        dv += pᵀ @ dO[i]
        dsᵀ = pᵀ ∘ (v @ dO[i]ᵀ - delta[i])
        dk += dsᵀ @ Q[i]
        DQ[i] += (dsᵀ)ᵀ @ k                                      # atomic: every key block adds to row block i
    dK[keys] = dk · sm_scale;  dV[keys] = dv

Five block matmuls per (key block, query block) pair instead of the split's seven. The price: the dQ
tile is read-modified-written in global memory by every key block (atomics, in an fp32 buffer, fp64
for fp64 inputs, zeroed first and scaled/cast after), and the order of those adds is not fixed, so dQ
is not bit-for-bit reproducible run to run (its rounding differs within the fp32 accumulation bound).

Registered as the backward variant "fused": kernels.flash_attention(..., backward="fused").

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from ast_min.kernels import cost, tiles, tuning, variants
from ast_min.kernels.fused_attention import launch_delta
from ast_min.kernels.tiles import INTERPRETER, LOG2E, NEG_LARGE, common_meta, head_base, tile_ptrs, tile_ptrs_t, unit_last_stride
from ast_min.kernels.variant_standard import DELTA_KERNEL


@triton.jit
def _attn_bwd_fused_step(
    dk, dv, k, v,  # accumulators and tiles of this key block, (BLOCK_N, BLOCK_D) each
    Q, DO, LSE, DELTA, DQ, q_strides, do_strides, dq_strides,  # pointers of this (batch, head), and strides
    start_m, offs_n, offs_d, N_CTX, qk_scale,  # first query of this block; this block's key rows
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """Query block [start_m, start_m + BLOCK_M)'s contribution to dK and dV, and this key block's to its dQ."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row_ok = offs_m < N_CTX
    d_ok = offs_d < HEAD_DIM
    qT = tl.load(tile_ptrs_t(Q, q_strides, offs_m, offs_d), mask=d_ok[:, None] & row_ok[None, :], other=0.0)  # (BLOCK_D, BLOCK_M)
    do = tl.load(tile_ptrs(DO, do_strides, offs_m, offs_d), mask=row_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)
    lse2 = tl.load(LSE + offs_m, mask=row_ok, other=0.0) * LOG2E  # (BLOCK_M,), base-2 units
    delta = tl.load(DELTA + offs_m, mask=row_ok, other=0.0)  # (BLOCK_M,)

    sT = tl.dot(k, qT, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE) * qk_scale  # (BLOCK_N, BLOCK_M)
    if MASKED:
        keep = row_ok[None, :]
        if CAUSAL:
            keep = keep & (offs_m[None, :] >= offs_n[:, None])
        sT = tl.where(keep, sT, NEG_LARGE)
    pT = tl.math.exp2(sT - lse2[None, :])  # Pᵀ: exactly 0 where masked
    dv += tl.dot(pT.to(do.dtype), do, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    dpT = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)  # (BLOCK_N, BLOCK_M)
    dsT = (pT * (dpT - delta[None, :])).to(qT.dtype)
    dk += tl.dot(dsT, tl.trans(qT), input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    dq = tl.dot(tl.trans(dsT), k, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)  # (BLOCK_M, BLOCK_D), unscaled
    tl.atomic_add(tile_ptrs(DQ, dq_strides, offs_m, offs_d), dq, mask=row_ok[:, None] & d_ok[None, :], sem="relaxed")
    return dk, dv


@triton.jit
def _attn_bwd_fused(
    # pointers: inputs and dO (B, H, N, Dh); LSE, DELTA (B, H, N); outputs dK, dV (B, H, N, Dh) and
    # the zeroed accumulator DQ (B, H, N, Dh) in ACC_DTYPE
    Q, K, V, DO, LSE, DELTA, DK, DV, DQ,
    # each (B, H, N, Dh) tensor's strides, as tensor.stride() gives them
    q_strides, k_strides, v_strides, do_strides, dk_strides, dv_strides, dq_strides,
    # sizes and scales: sm_scale, and sm_scale · log2(e)
    H, N_CTX, sm_scale, qk_scale,
    # compile-time parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dK, dV for one block of BLOCK_N key rows, and its share of dQ (see the module docstring)."""
    tl.static_assert(BLOCK_N % BLOCK_M == 0, "the causal split needs BLOCK_N to be a multiple of BLOCK_M")
    tl.static_assert(BLOCK_D >= HEAD_DIM, "the head-dim tile must cover the head dim (BLOCK_D >= HEAD_DIM)")
    start_n = tl.program_id(0) * BLOCK_N
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)
    off_h = (off_bh % H).to(tl.int64)
    Q = head_base(Q, q_strides, off_b, off_h)
    K = head_base(K, k_strides, off_b, off_h)
    V = head_base(V, v_strides, off_b, off_h)
    DO = head_base(DO, do_strides, off_b, off_h)
    DK = head_base(DK, dk_strides, off_b, off_h)
    DV = head_base(DV, dv_strides, off_b, off_h)
    DQ = head_base(DQ, dq_strides, off_b, off_h)
    LSE += off_bh.to(tl.int64) * N_CTX
    DELTA += off_bh.to(tl.int64) * N_CTX

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    tile_ok = (offs_n < N_CTX)[:, None] & (offs_d < HEAD_DIM)[None, :]
    k = tl.load(tile_ptrs(K, k_strides, offs_n, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_N, BLOCK_D)
    v = tl.load(tile_ptrs(V, v_strides, offs_n, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_N, BLOCK_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)

    # The query loop in three parts, as in the split dK/dV kernel: diagonal (causal), full, tail.
    full_m = (N_CTX // BLOCK_M) * BLOCK_M
    if CAUSAL:
        for start_m in range(start_n, tl.minimum(start_n + BLOCK_N, N_CTX), BLOCK_M):
            dk, dv = _attn_bwd_fused_step(dk, dv, k, v, Q, DO, LSE, DELTA, DQ, q_strides, do_strides, dq_strides,
                                          start_m, offs_n, offs_d, N_CTX, qk_scale,
                                          HEAD_DIM, BLOCK_M, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
        full_lo = start_n + BLOCK_N
    else:
        full_lo = 0
    full_hi = tl.maximum(full_lo, full_m)
    for start_m in range(full_lo, full_hi, BLOCK_M):
        dk, dv = _attn_bwd_fused_step(dk, dv, k, v, Q, DO, LSE, DELTA, DQ, q_strides, do_strides, dq_strides,
                                      start_m, offs_n, offs_d, N_CTX, qk_scale,
                                      HEAD_DIM, BLOCK_M, False, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
    for start_m in range(full_hi, N_CTX, BLOCK_M):
        dk, dv = _attn_bwd_fused_step(dk, dv, k, v, Q, DO, LSE, DELTA, DQ, q_strides, do_strides, dq_strides,
                                      start_m, offs_n, offs_d, N_CTX, qk_scale,
                                      HEAD_DIM, BLOCK_M, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)

    dk *= sm_scale
    tl.store(tile_ptrs(DK, dk_strides, offs_n, offs_d), dk.to(DK.dtype.element_ty), mask=tile_ok)
    tl.store(tile_ptrs(DV, dv_strides, offs_n, offs_d), dv.to(DV.dtype.element_ty), mask=tile_ok)


_attn_bwd_fused_tuned = tuning.autotune(
    _attn_bwd_fused, tuning.BACKWARD_FUSED_INTERPRETER if INTERPRETER else tuning.BACKWARD_FUSED_GPU,
    reset_to_zero=["DQ"])


def attention_backward_fused(do, q, k, v, o, lse, causal: bool, sm_scale: float, input_precision: str | None):
    """Launch delta, then the one-pass kernel. All (B, H, N, Dh) but lse (B, H, N). Returns dq, dk, dv."""
    B, H, N, Dh = q.shape
    do, q, k, v = (unit_last_stride(t) for t in (do, q, k, v))
    dk = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    dv = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    if q.numel() == 0:
        return tiles.new_buffer((B, H, N, Dh), q.dtype, q.device), dk, dv
    dq_acc = torch.zeros((B, H, N, Dh), dtype=lse.dtype, device=q.device)  # atomics add into it: must start at 0
    delta = tiles.new_buffer((B, H, N), lse.dtype, q.device)
    meta = common_meta(q, causal, input_precision)
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        launch_delta(o, do, delta, meta)
        _attn_bwd_fused_tuned[lambda m: (triton.cdiv(N, m["BLOCK_N"]), B * H)](
            q, k, v, do, lse, delta, dk, dv, dq_acc,
            q.stride(), k.stride(), v.stride(), do.stride(), dk.stride(), dv.stride(), dq_acc.stride(),
            H, N, sm_scale, sm_scale * LOG2E.value, **meta)
    dq = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    torch.mul(dq_acc, sm_scale, out=dq_acc)
    dq.copy_(dq_acc)  # S = scale · Q Kᵀ: dQ carries the scale once; then cast to the input dtype
    return dq, dk, dv


def _fused_args(p):
    t = variants.problem_tensors(p)
    args = (t["q"], t["k"], t["v"], t["do"], t["lse"], t["delta"], t["dk"], t["dv"], t["dq_acc"],
            *(t[n].stride() for n in ("q", "k", "v", "do", "dk", "dv", "dq_acc")), p.H, p.N, 0.125, 0.125 * LOG2E.value)
    return args, variants.problem_meta(p)


FUSED_KERNEL = variants.KernelSpec("dK/dV+dQ (atomic)", _attn_bwd_fused, tuning.BACKWARD_FUSED_GPU, _fused_args,
                                   lambda p, c: cost.backward_fused(p, c["BLOCK_M"], c["BLOCK_N"]), _attn_bwd_fused_tuned)


variants.register(variants.Variant(
    "fused", "backward", attention_backward_fused, (DELTA_KERNEL, FUSED_KERNEL),
    "FlashAttention-2 Algorithm 2: one program per key block, dQ by atomic adds into fp32; S and dP computed once",
    extra_cost=cost.dq_epilogue))
