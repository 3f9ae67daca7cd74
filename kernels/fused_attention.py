"""Fused attention in Triton: FlashAttention-2's forward and backward passes.

What you will learn here: how softmax(Q Kᵀ · scale) V is computed one (query block, key block) tile at a
time, without ever writing the N x N score matrix to memory, and how the backward pass recomputes
those scores from one saved number per row (the log-sum-exp) instead of storing them.

Papers: Milakov & Gimelshein 2018 (online softmax); Dao et al. 2022 (FlashAttention, §3.1 tiling,
§3.2 recomputation); Dao 2023 (FlashAttention-2, Algorithm 1 forward with the query blocks in the
outer loop, Algorithm 2 backward). Read `kernels/reference.py` first: it is the same algorithm in
plain torch loops.

Shape legend: B batch, H heads, N tokens (sequence length), Dh head dim; a kernel program owns one
(batch, head) pair and one block of BLOCK_M query rows (or BLOCK_N key rows in the dK/dV kernel).

Three facts shape the code (see docs/DESIGN.md, "The fused-attention kernel"):
- N need not be a multiple of any block size (AST has N = 1214): the last key block is masked with
  a large *finite* negative score (with -inf a fully masked row would give exp(-inf - -inf) = NaN),
  and the stores of out-of-range query rows (O, LSE, dQ) and key rows (dK, dV) are masked.
- Scores are kept in base-2 units: log2(e) is folded into the scale once, so each exponential is
  the cheap `exp2` instruction.
- P (and dS in the backward) are cast to the *input* dtype before the second matmul of each step, so
  fp16, bf16, fp32 and fp64 all take the same path.

Head dims that are not a power of two (80, 96, ...) are padded inside the kernel: the tile width is
the next power of two, at least 16 (the head dim is the reduction side K of Q Kᵀ and dO Vᵀ, and tl.dot
needs K >= 16 for fp16/bf16 operands; M and N may be smaller), and the loads fill the extra columns with
zeros, which add nothing to Q Kᵀ and produce output columns that are never stored. No copy is made.
Head dims above 128 are refused (the tiles would not fit in a GPU's shared memory).

The kernels are the teaching path; block sizes and autotuning live apart, in `kernels/tuning.py`.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl

from ast_min.kernels import tiles, tuning
from ast_min.kernels.tiles import (
    INTERPRETER, LN2, LOG2E, NEG_LARGE, common_meta, head_base, key_block_bounds, tile_ptrs, tile_ptrs_t, unit_last_stride,
)

MAX_HEAD_DIM = 128
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------------


@triton.jit
def _attn_fwd_step(
    acc, l_i, m_i, q,  # running state of this query block, and its Q tile (BLOCK_M, BLOCK_D)
    K, V, k_strides, v_strides,  # key/value pointers of this (batch, head) and their strides
    start_n, offs_m, offs_d, N_CTX, qk_scale,  # first key of this block; this block's query rows
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,  # does this key block need masking (the tail block, or the causal diagonal)?
    CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """One step of the online softmax: fold key block [start_n, start_n + BLOCK_N) into the state."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    key_ok = offs_n < N_CTX
    d_ok = offs_d < HEAD_DIM
    # Kᵀ is loaded transposed through its strides, so Q Kᵀ is a plain tl.dot; padded rows/columns are 0.
    kT = tl.load(tile_ptrs_t(K, k_strides, offs_n, offs_d), mask=d_ok[:, None] & key_ok[None, :], other=0.0)  # (BLOCK_D, BLOCK_N)
    v = tl.load(tile_ptrs(V, v_strides, offs_n, offs_d), mask=key_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)

    s = tl.dot(q, kT, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
    if MASKED:
        keep = key_ok[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, NEG_LARGE)

    m_new = tl.maximum(m_i, tl.max(s, 1))  # the new running row maximum
    p = tl.math.exp2(s - m_new[:, None])  # (BLOCK_M, BLOCK_N), unnormalised probabilities
    alpha = tl.math.exp2(m_i - m_new)  # rescales everything summed so far to the new maximum
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    return acc, l_i, m_new


@triton.jit
def _attn_fwd(
    # pointers: inputs (B, H, N, Dh), output O (B, H, N, Dh), row log-sum-exp LSE (B, H, N) contiguous
    Q, K, V, O, LSE,
    # each (B, H, N, Dh) tensor's strides in elements, as the tuple tensor.stride() gives them
    q_strides, k_strides, v_strides, o_strides,
    # sizes and the softmax scale (already multiplied by log2(e))
    H, N_CTX, qk_scale,
    # compile-time parameters: problem, then numerics, then tiling (BLOCK_M/BLOCK_N come from tuning.py)
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """O and LSE for one block of BLOCK_M query rows of one (batch, head).

    Pseudo-code (FlashAttention-2, Algorithm 1), scores in base-2 units s = (q · k) · scale · log2(e):

        q = Q[rows]                                   # stays in registers for the whole loop
        m = -inf, l = 0, acc = 0                      # running max, running sum, unnormalised output
        for each key block j (only up to the diagonal if causal):
            s = q @ K[j]ᵀ · qk_scale                  # masked with NEG_LARGE past N (and above the diagonal)
            m_new = max(m, rowmax(s))
            p = exp2(s - m_new)
            l = l · exp2(m - m_new) + rowsum(p)
            acc = acc · exp2(m - m_new) + p @ V[j]
            m = m_new
        O[rows] = acc / l
        LSE[rows] = (m + log2(l)) · ln(2)             # natural-log log-sum-exp, saved for the backward

    The key loop runs in two parts so that only the blocks that need a mask pay for one: blocks
    wholly inside [0, N) (and wholly below the diagonal if causal) first, then the rest, masked.
    """
    tl.static_assert(BLOCK_D >= HEAD_DIM, "the head-dim tile must cover the head dim (BLOCK_D >= HEAD_DIM)")
    tl.static_assert(BLOCK_D >= 16, "tl.dot needs its reduction side K >= 16 (fp16/bf16); BLOCK_D is the K of Q Kᵀ")
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)  # int64: B·H·N·Dh can exceed 2**31 elements
    off_h = (off_bh % H).to(tl.int64)
    Q = head_base(Q, q_strides, off_b, off_h)
    K = head_base(K, k_strides, off_b, off_h)
    V = head_base(V, v_strides, off_b, off_h)
    O = head_base(O, o_strides, off_b, off_h)
    LSE += off_bh.to(tl.int64) * N_CTX

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N_CTX
    tile_ok = row_ok[:, None] & (offs_d < HEAD_DIM)[None, :]
    q = tl.load(tile_ptrs(Q, q_strides, offs_m, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_M, BLOCK_D)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC_DTYPE)
    l_i = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC_DTYPE)

    full_hi, hi = key_block_bounds(start_m, N_CTX, CAUSAL, BLOCK_M, BLOCK_N)
    for start_n in range(0, full_hi, BLOCK_N):
        acc, l_i, m_i = _attn_fwd_step(acc, l_i, m_i, q, K, V, k_strides, v_strides, start_n, offs_m, offs_d, N_CTX,
                                       qk_scale, HEAD_DIM, BLOCK_N, False, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
    for start_n in range(full_hi, hi, BLOCK_N):
        acc, l_i, m_i = _attn_fwd_step(acc, l_i, m_i, q, K, V, k_strides, v_strides, start_n, offs_m, offs_d, N_CTX,
                                       qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)

    acc = acc / l_i[:, None]
    tl.store(tile_ptrs(O, o_strides, offs_m, offs_d), acc.to(O.dtype.element_ty), mask=tile_ok)
    tl.store(LSE + offs_m, ((m_i + tl.math.log2(l_i)) * LN2).to(LSE.dtype.element_ty), mask=row_ok)


# --------------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------------
# With P = softmax(S), S = scale · Q Kᵀ and dO the incoming gradient (FlashAttention-2, Algorithm 2):
#     dV = Pᵀ dO        dP = dO Vᵀ        dS = P ∘ (dP - delta)        dQ = scale · dS K        dK = scale · dSᵀ Q
# where delta = rowsum(dO ∘ O) = rowsum(P ∘ dP). P is recomputed tile by tile as exp(S - LSE).
# The "split" backward (here) accumulates dK/dV and dQ in two kernels (one looping over query blocks
# for a key block, one over key blocks for a query block), so no program ever writes to another's
# output: no atomics, at the price of recomputing S and dP in both. The "fused" backward
# (variant_fused_backward.py) is FlashAttention-2's single pass, with dQ accumulated by atomic adds.


@triton.jit
def _attn_bwd_delta(
    O, DO, DELTA,  # O, dO (B, H, N, Dh); DELTA (B, H, N) contiguous
    o_strides, do_strides,
    H, N_CTX,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ACC_DTYPE: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta[row] = sum_d dO[row, d] · O[row, d] for one block of BLOCK_M rows."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)
    off_h = (off_bh % H).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N_CTX
    tile_ok = row_ok[:, None] & (offs_d < HEAD_DIM)[None, :]
    o = tl.load(tile_ptrs(head_base(O, o_strides, off_b, off_h), o_strides, offs_m, offs_d), mask=tile_ok, other=0.0)
    do = tl.load(tile_ptrs(head_base(DO, do_strides, off_b, off_h), do_strides, offs_m, offs_d), mask=tile_ok, other=0.0)
    tl.store(DELTA + off_bh.to(tl.int64) * N_CTX + offs_m, tl.sum(o.to(ACC_DTYPE) * do.to(ACC_DTYPE), 1), mask=row_ok)


@triton.jit
def _attn_bwd_dkdv_step(
    dk, dv, k, v,  # accumulators and tiles of this key block, (BLOCK_N, BLOCK_D) each
    Q, DO, LSE, DELTA, q_strides, do_strides,  # pointers of this (batch, head), and Q's and dO's strides
    start_m, offs_n, offs_d, N_CTX, qk_scale,  # first query of this block; this block's key rows
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """Add query block [start_m, start_m + BLOCK_M)'s contribution to dK and dV (computed transposed)."""
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
    pT = tl.math.exp2(sT - lse2[None, :])  # Pᵀ, recomputed: exactly 0 where masked
    dv += tl.dot(pT.to(do.dtype), do, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    dpT = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)  # (BLOCK_N, BLOCK_M)
    dsT = pT * (dpT - delta[None, :])
    dk += tl.dot(dsT.to(qT.dtype), tl.trans(qT), input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(
    # pointers: inputs and dO (B, H, N, Dh); LSE, DELTA (B, H, N) contiguous; outputs dK, dV (B, H, N, Dh)
    Q, K, V, DO, LSE, DELTA, DK, DV,
    # each (B, H, N, Dh) tensor's strides, as tensor.stride() gives them
    q_strides, k_strides, v_strides, do_strides, dk_strides, dv_strides,
    # sizes and scales: sm_scale, and sm_scale · log2(e)
    H, N_CTX, sm_scale, qk_scale,
    # compile-time parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dK and dV for one block of BLOCK_N key rows of one (batch, head).

        k, v = K[keys], V[keys];  dk = dv = 0
        for each query block i (only those at or below the diagonal if causal):
            pᵀ = exp2(k @ Q[i]ᵀ · qk_scale - LSE[i] · log2(e))        # recomputed, masked
            dv += pᵀ @ dO[i]
            dsᵀ = pᵀ ∘ (v @ dO[i]ᵀ - delta[i])
            dk += dsᵀ @ Q[i]
        dK[keys] = dk · sm_scale;  dV[keys] = dv

    Query blocks that need a mask: the tail past N, and, if causal, the diagonal blocks
    [start_n, start_n + BLOCK_N) (BLOCK_N is a multiple of BLOCK_M, so they align).
    """
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
    LSE += off_bh.to(tl.int64) * N_CTX
    DELTA += off_bh.to(tl.int64) * N_CTX

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    tile_ok = (offs_n < N_CTX)[:, None] & (offs_d < HEAD_DIM)[None, :]
    k = tl.load(tile_ptrs(K, k_strides, offs_n, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_N, BLOCK_D)
    v = tl.load(tile_ptrs(V, v_strides, offs_n, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_N, BLOCK_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)

    full_m = (N_CTX // BLOCK_M) * BLOCK_M  # query blocks below this need no tail mask
    if CAUSAL:
        # the diagonal, masked; then the query blocks wholly below it
        for start_m in range(start_n, tl.minimum(start_n + BLOCK_N, N_CTX), BLOCK_M):
            dk, dv = _attn_bwd_dkdv_step(dk, dv, k, v, Q, DO, LSE, DELTA, q_strides, do_strides, start_m, offs_n, offs_d,
                                         N_CTX, qk_scale, HEAD_DIM, BLOCK_M, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
        full_lo = start_n + BLOCK_N
    else:
        full_lo = 0
    full_hi = tl.maximum(full_lo, full_m)
    for start_m in range(full_lo, full_hi, BLOCK_M):
        dk, dv = _attn_bwd_dkdv_step(dk, dv, k, v, Q, DO, LSE, DELTA, q_strides, do_strides, start_m, offs_n, offs_d,
                                     N_CTX, qk_scale, HEAD_DIM, BLOCK_M, False, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
    for start_m in range(full_hi, N_CTX, BLOCK_M):  # the tail block past N, masked
        dk, dv = _attn_bwd_dkdv_step(dk, dv, k, v, Q, DO, LSE, DELTA, q_strides, do_strides, start_m, offs_n, offs_d,
                                     N_CTX, qk_scale, HEAD_DIM, BLOCK_M, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)

    dk *= sm_scale  # S = scale · Q Kᵀ, so dK carries the scale once
    tl.store(tile_ptrs(DK, dk_strides, offs_n, offs_d), dk.to(DK.dtype.element_ty), mask=tile_ok)
    tl.store(tile_ptrs(DV, dv_strides, offs_n, offs_d), dv.to(DV.dtype.element_ty), mask=tile_ok)


@triton.jit
def _attn_bwd_dq_step(
    dq, q, do, lse2, delta,  # accumulator and tiles of this query block
    K, V, k_strides, v_strides,  # key/value pointers of this (batch, head) and their strides
    start_n, offs_m, offs_d, N_CTX, qk_scale,  # first key of this block; this block's query rows
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """Add key block [start_n, start_n + BLOCK_N)'s contribution to dQ."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    key_ok = offs_n < N_CTX
    d_ok = offs_d < HEAD_DIM
    kT = tl.load(tile_ptrs_t(K, k_strides, offs_n, offs_d), mask=d_ok[:, None] & key_ok[None, :], other=0.0)  # (BLOCK_D, BLOCK_N)
    vT = tl.load(tile_ptrs_t(V, v_strides, offs_n, offs_d), mask=d_ok[:, None] & key_ok[None, :], other=0.0)  # (BLOCK_D, BLOCK_N)

    s = tl.dot(q, kT, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE) * qk_scale  # (BLOCK_M, BLOCK_N)
    if MASKED:
        keep = key_ok[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, NEG_LARGE)
    p = tl.math.exp2(s - lse2[:, None])
    dp = tl.dot(do, vT, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)  # (BLOCK_M, BLOCK_N)
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(kT.dtype), tl.trans(kT), input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    return dq


@triton.jit
def _attn_bwd_dq(
    # pointers: inputs and dO (B, H, N, Dh); LSE, DELTA (B, H, N) contiguous; output dQ (B, H, N, Dh)
    Q, K, V, DO, LSE, DELTA, DQ,
    # each (B, H, N, Dh) tensor's strides, as tensor.stride() gives them
    q_strides, k_strides, v_strides, do_strides, dq_strides,
    # sizes and scales: sm_scale, and sm_scale · log2(e)
    H, N_CTX, sm_scale, qk_scale,
    # compile-time parameters
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dQ for one block of BLOCK_M query rows of one (batch, head).

        q, dO_i, lse, delta = rows of this block;  dq = 0
        for each key block j (only up to the diagonal if causal):
            p = exp2(q @ K[j]ᵀ · qk_scale - lse · log2(e))            # recomputed, masked
            ds = p ∘ (dO_i @ V[j]ᵀ - delta)
            dq += ds @ K[j]
        dQ[rows] = dq · sm_scale

    The key loop is split like the forward's: unmasked blocks first, then the tail / diagonal.
    """
    tl.static_assert(BLOCK_D >= HEAD_DIM, "the head-dim tile must cover the head dim (BLOCK_D >= HEAD_DIM)")
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)
    off_h = (off_bh % H).to(tl.int64)
    Q = head_base(Q, q_strides, off_b, off_h)
    K = head_base(K, k_strides, off_b, off_h)
    V = head_base(V, v_strides, off_b, off_h)
    DO = head_base(DO, do_strides, off_b, off_h)
    DQ = head_base(DQ, dq_strides, off_b, off_h)
    LSE += off_bh.to(tl.int64) * N_CTX
    DELTA += off_bh.to(tl.int64) * N_CTX

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N_CTX
    tile_ok = row_ok[:, None] & (offs_d < HEAD_DIM)[None, :]
    q = tl.load(tile_ptrs(Q, q_strides, offs_m, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_M, BLOCK_D)
    do = tl.load(tile_ptrs(DO, do_strides, offs_m, offs_d), mask=tile_ok, other=0.0)  # (BLOCK_M, BLOCK_D)
    lse2 = tl.load(LSE + offs_m, mask=row_ok, other=0.0) * LOG2E  # (BLOCK_M,)
    delta = tl.load(DELTA + offs_m, mask=row_ok, other=0.0)  # (BLOCK_M,)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC_DTYPE)

    full_hi, hi = key_block_bounds(start_m, N_CTX, CAUSAL, BLOCK_M, BLOCK_N)
    for start_n in range(0, full_hi, BLOCK_N):
        dq = _attn_bwd_dq_step(dq, q, do, lse2, delta, K, V, k_strides, v_strides, start_n, offs_m, offs_d, N_CTX,
                               qk_scale, HEAD_DIM, BLOCK_N, False, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
    for start_n in range(full_hi, hi, BLOCK_N):
        dq = _attn_bwd_dq_step(dq, q, do, lse2, delta, K, V, k_strides, v_strides, start_n, offs_m, offs_d, N_CTX,
                               qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)

    dq *= sm_scale
    tl.store(tile_ptrs(DQ, dq_strides, offs_m, offs_d), dq.to(DQ.dtype.element_ty), mask=tile_ok)


# Autotuned (GPU) or pinned (interpreter) versions of the kernels above; see tuning.py.
_attn_fwd_tuned = tuning.autotune(_attn_fwd, tuning.FORWARD_INTERPRETER if INTERPRETER else tuning.FORWARD_GPU)
_attn_bwd_dkdv_tuned = tuning.autotune(_attn_bwd_dkdv, tuning.BACKWARD_DKDV_INTERPRETER if INTERPRETER else tuning.BACKWARD_DKDV_GPU)
_attn_bwd_dq_tuned = tuning.autotune(_attn_bwd_dq, tuning.BACKWARD_DQ_INTERPRETER if INTERPRETER else tuning.BACKWARD_DQ_GPU)


# --------------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------------


def check_inputs(q, k, v, causal, sm_scale, input_precision) -> None:
    """Raise a ValueError (bad arguments) or RuntimeError (environment) naming what is unsupported."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"flash_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"flash_attention: {name} must have 4 dimensions (B, H, N, Dh), got shape {tuple(t.shape)}; "
                "reshape (B, N, H*Dh) activations with .view(B, N, H, Dh).transpose(1, 2)")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"flash_attention: q, k and v must have the same shape (B, H, N, Dh), got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}; different query and key lengths are not supported")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"flash_attention: q, k and v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"flash_attention: dtype {q.dtype} is not supported; use float16, bfloat16 or float32 "
                         "(float64 for gradient checks)")
    if not (q.device == k.device == v.device):
        raise ValueError(f"flash_attention: q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    head_dim = q.shape[-1]
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"flash_attention: head dim {head_dim} is not supported: it must be between 1 and "
                         f"{MAX_HEAD_DIM} (larger tiles do not fit a GPU's shared memory); use more heads")
    if q.shape[0] * q.shape[1] > 65535:
        raise ValueError(f"flash_attention: batch x heads = {q.shape[0] * q.shape[1]} exceeds the grid limit "
                         "65535; split the batch into chunks")
    if not isinstance(causal, bool):
        raise ValueError(f"flash_attention: causal must be True or False, got {causal!r}")
    if sm_scale is not None and not (isinstance(sm_scale, (int, float)) and math.isfinite(sm_scale)):
        raise ValueError(f"flash_attention: sm_scale must be a finite number or None (1/sqrt(Dh)), got {sm_scale!r}")
    if input_precision not in (None, "ieee", "tf32"):
        raise ValueError(f"flash_attention: input_precision must be None, 'ieee' or 'tf32', got {input_precision!r}")
    if q.device.type == "cpu":
        if not INTERPRETER:
            raise RuntimeError(
                "flash_attention: the tensors are on the CPU, where Triton kernels run only through its "
                "interpreter; set the environment variable TRITON_INTERPRET=1 before `ast_min.kernels` is first used "
                "(e.g. `TRITON_INTERPRET=1 python ...`, or os.environ['TRITON_INTERPRET'] = '1' at the top of "
                "your script), or move the tensors to a CUDA device")
        if q.dtype == torch.bfloat16:
            raise ValueError(
                "flash_attention: bfloat16 is not supported by Triton's CPU interpreter (its tl.dot multiplies "
                "bf16 bit patterns as integers); use float32 or float16 on the CPU, or a CUDA device for bf16")
    elif q.device.type != "cuda":
        raise ValueError(f"flash_attention: tensors on {q.device.type} are not supported; use a CUDA device "
                         "(or the CPU with TRITON_INTERPRET=1)")


def attention_forward(q, k, v, causal: bool, sm_scale: float, input_precision: str | None):
    """Launch the forward kernel. q, k, v: (B, H, N, Dh), checked. Returns O (B, H, N, Dh), LSE (B, H, N)."""
    B, H, N, Dh = q.shape
    q, k, v = (unit_last_stride(t) for t in (q, k, v))
    o = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    lse = tiles.new_buffer((B, H, N), lse_dtype, q.device)
    if o.numel() == 0:
        return o, lse
    grid = lambda meta: (triton.cdiv(N, meta["BLOCK_M"]), B * H)  # noqa: E731
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        _attn_fwd_tuned[grid](q, k, v, o, lse, q.stride(), k.stride(), v.stride(), o.stride(),
                              H, N, sm_scale * LOG2E.value, **common_meta(q, causal, input_precision))
    return o, lse


def launch_delta(o, do, delta, meta: dict) -> None:
    """delta = rowsum(dO ∘ O) into `delta` (B, H, N): the first kernel of every backward variant."""
    B, H, N, Dh = o.shape
    block_m = tuning.DELTA_BLOCK_M
    _attn_bwd_delta[(triton.cdiv(N, block_m), B * H)](o, do, delta, o.stride(), do.stride(), H, N, HEAD_DIM=Dh,
                                                       BLOCK_D=meta["BLOCK_D"], ACC_DTYPE=meta["ACC_DTYPE"], BLOCK_M=block_m)


def attention_backward(do, q, k, v, o, lse, causal: bool, sm_scale: float, input_precision: str | None):
    """Launch the backward kernels. All (B, H, N, Dh) but lse (B, H, N). Returns dq, dk, dv."""
    B, H, N, Dh = q.shape
    do, q, k, v = (unit_last_stride(t) for t in (do, q, k, v))
    dq = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    dk = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    dv = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    if q.numel() == 0:
        return dq, dk, dv
    delta = tiles.new_buffer((B, H, N), lse.dtype, q.device)
    meta = common_meta(q, causal, input_precision)
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        launch_delta(o, do, delta, meta)
        scales = (sm_scale, sm_scale * LOG2E.value)
        _attn_bwd_dkdv_tuned[lambda m: (triton.cdiv(N, m["BLOCK_N"]), B * H)](
            q, k, v, do, lse, delta, dk, dv, q.stride(), k.stride(), v.stride(), do.stride(), dk.stride(), dv.stride(),
            H, N, *scales, **meta)
        _attn_bwd_dq_tuned[lambda m: (triton.cdiv(N, m["BLOCK_M"]), B * H)](
            q, k, v, do, lse, delta, dq, q.stride(), k.stride(), v.stride(), do.stride(), dq.stride(),
            H, N, *scales, **meta)
    return dq, dk, dv
