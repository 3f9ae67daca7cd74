# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment `triton_backward` · FlashAttention-2's backward pass in Triton
#
# Chapter 03 (`notebooks/03_flash_attention_in_triton.py`, §[The backward pass]) derives the
# backward and writes it blockwise in torch; assignment `flash` has you write that torch version,
# and assignment `triton` the forward kernel. Here you write the backward as Triton kernels. Without
# a GPU they run on the CPU through Triton's interpreter: `TRITON_INTERPRET=1` must be set before
# `import triton` (the first cell does it when no CUDA device is present; the grader always grades
# through the interpreter).
#
# Given the forward's output O and its row log-sum-exp LSE (natural log) and the incoming gradient
# dO, with S = sm_scale Q K^T and P = exp(S - LSE) recomputed tile by tile:
#
#     delta = rowsum(dO * O)    dV = P^T dO    dP = dO V^T    dS = P * (dP - delta)
#     dQ = sm_scale dS K        dK = sm_scale dS^T Q
#
# This assignment uses the **split** backward (ast-min's own, `kernels/fused_attention.py`): no
# two programs write the same rows, so no atomics.
#
# 1. `delta_kernel` and `attention_delta(o, do, BLOCK_M=16)`: delta (B, H, N), one program per
#    (row block, batch x head).
# 2. `keep_mask(rows, cols, N, CAUSAL)`: which (query row, key column) pairs of a tile count: both
#    inside [0, N), and, if causal, the key not after the query (key <= row).
# 3. `dkdv_kernel`: one program per (key block, batch x head) streams every query block and
#    accumulates dK and dV for its keys.
# 4. `dq_kernel`: one program per (query block, batch x head) streams every key block and
#    accumulates dQ for its rows.
# 5. `flash_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, BLOCK_M=16,
#    BLOCK_N=16)` -> dq, dk, dv (B, H, N, Dh), each in q's dtype: launches the three kernels.
#    sm_scale None means 1 / sqrt(Dh).
#
# Masked scores get a large finite negative value (-1.0e30, as chapter 03's kernels use), so that
# exp(s - LSE) is exactly 0 there and never NaN. Inputs are contiguous (B, H, N, Dh) tensors, Dh a
# power of two >= 16, float64 or float32; accumulate in `acc_type(q)` (float64 for float64 inputs,
# float32 otherwise) and pass it to the kernels as `ACC`.
#
# If you prefer FlashAttention-2's one-pass backward (one program per key block computes dK, dV and
# adds its share of dQ with `tl.atomic_add`, as `kernels/variant_fused_backward.py` does), write
# that instead of `dq_kernel`: the grader checks what `attention_delta` and `flash_attention_backward`
# return, against autograd in float64, causal or not, for any N (a ragged last block, N = 1) and a
# given sm_scale, and that the work is done by Triton kernels (no torch matmul, exp or sum inside
# `flash_attention_backward`). No `ast_min.kernels`, no scaled_dot_product_attention. Then run
# `ast-min assignment check triton_backward`.
#
# Shape legend: B batch, H heads, N tokens, Dh head dim.

# %%
import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before importing triton: run kernels on the CPU

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


def acc_type(t: torch.Tensor):
    """The accumulator type for kernels on `t`: float64 for float64 tensors, float32 otherwise."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


# %%
@triton.jit
def delta_kernel(O, DO, DELTA, N, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, ACC: tl.constexpr):
    """DELTA[row] = sum_d dO[row, d] O[row, d] for one block of BLOCK_M rows of one (batch, head)."""
    ### BEGIN SOLUTION
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    head = tl.program_id(1).to(tl.int64)  # (batch, head) index: int64, B*H*N*Dh may pass 2**31
    dims = tl.arange(0, HEAD_DIM)
    offsets = head * N * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
    o = tl.load(O + offsets, mask=rows[:, None] < N, other=0.0).to(ACC)
    do = tl.load(DO + offsets, mask=rows[:, None] < N, other=0.0).to(ACC)
    tl.store(DELTA + head * N + rows, tl.sum(o * do, 1), mask=rows < N)
    ### END SOLUTION


def attention_delta(o: torch.Tensor, do: torch.Tensor, BLOCK_M: int = 16) -> torch.Tensor:
    """o, do (B, H, N, Dh) -> delta (B, H, N), float64 for float64 inputs, float32 otherwise."""
    ### BEGIN SOLUTION
    B, H, N, Dh = o.shape
    o, do = o.contiguous(), do.contiguous()
    delta = torch.empty(B, H, N, dtype=torch.float64 if o.dtype == torch.float64 else torch.float32, device=o.device)
    delta_kernel[(triton.cdiv(N, BLOCK_M), B * H)](o, do, delta, N, HEAD_DIM=Dh, BLOCK_M=BLOCK_M, ACC=acc_type(o))
    return delta
    ### END SOLUTION


# %%
@triton.jit
def keep_mask(rows, cols, N, CAUSAL: tl.constexpr):
    """(len(rows), len(cols)) booleans: the (query, key) pairs of a tile that take part in attention."""
    ### BEGIN SOLUTION
    keep = (rows[:, None] < N) & (cols[None, :] < N)
    if CAUSAL:
        keep = keep & (cols[None, :] <= rows[:, None])
    return keep
    ### END SOLUTION


@triton.jit
def dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, N, sm_scale, CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr):
    """dK and dV for one block of BLOCK_N keys of one (batch, head); all (B, H, N, HEAD_DIM) but LSE, DELTA (B, H, N)."""
    ### BEGIN SOLUTION
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # this program's keys
    head = tl.program_id(1).to(tl.int64)
    dims = tl.arange(0, HEAD_DIM)
    key_offsets = head * N * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :]
    k = tl.load(K + key_offsets, mask=cols[:, None] < N, other=0.0)
    v = tl.load(V + key_offsets, mask=cols[:, None] < N, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    for start_m in range(0, N, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        row_offsets = head * N * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
        q = tl.load(Q + row_offsets, mask=rows[:, None] < N, other=0.0)
        do = tl.load(DO + row_offsets, mask=rows[:, None] < N, other=0.0)
        lse = tl.load(LSE + head * N + rows, mask=rows < N, other=0.0)
        delta = tl.load(DELTA + head * N + rows, mask=rows < N, other=0.0)
        s = tl.dot(q, tl.trans(k), out_dtype=ACC) * sm_scale  # (BLOCK_M, BLOCK_N)
        s = tl.where(keep_mask(rows, cols, N, CAUSAL), s, -1.0e30)
        p = tl.exp(s - lse[:, None])  # P of this tile, recomputed: exactly 0 where masked
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, out_dtype=ACC)
        dp = tl.dot(do, tl.trans(v), out_dtype=ACC)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, out_dtype=ACC)
    dk = dk * sm_scale
    tl.store(DK + key_offsets, dk.to(DK.dtype.element_ty), mask=cols[:, None] < N)
    tl.store(DV + key_offsets, dv.to(DV.dtype.element_ty), mask=cols[:, None] < N)
    ### END SOLUTION


@triton.jit
def dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, N, sm_scale, CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr):
    """dQ for one block of BLOCK_M query rows of one (batch, head)."""
    ### BEGIN SOLUTION
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # this program's queries
    head = tl.program_id(1).to(tl.int64)
    dims = tl.arange(0, HEAD_DIM)
    row_offsets = head * N * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
    q = tl.load(Q + row_offsets, mask=rows[:, None] < N, other=0.0)
    do = tl.load(DO + row_offsets, mask=rows[:, None] < N, other=0.0)
    lse = tl.load(LSE + head * N + rows, mask=rows < N, other=0.0)
    delta = tl.load(DELTA + head * N + rows, mask=rows < N, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC)
    for start_n in range(0, N, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        key_offsets = head * N * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + key_offsets, mask=cols[:, None] < N, other=0.0)
        v = tl.load(V + key_offsets, mask=cols[:, None] < N, other=0.0)
        scores = tl.dot(q, tl.trans(k), out_dtype=ACC) * sm_scale  # (BLOCK_M, BLOCK_N)
        scores = tl.where(keep_mask(rows, cols, N, CAUSAL), scores, -1.0e30)
        probs = tl.exp(scores - lse[:, None])
        dprobs = tl.dot(do, tl.trans(v), out_dtype=ACC)
        dscores = probs * (dprobs - delta[:, None])
        dq += tl.dot(dscores.to(k.dtype), k, out_dtype=ACC)
    dq = dq * sm_scale
    tl.store(DQ + row_offsets, dq.to(DQ.dtype.element_ty), mask=rows[:, None] < N)
    ### END SOLUTION


def flash_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, BLOCK_M=16, BLOCK_N=16):
    """FlashAttention-2's backward: dq, dk, dv (B, H, N, Dh) in q's dtype, from dO, q, k, v, O and LSE (B, H, N)."""
    ### BEGIN SOLUTION
    B, H, N, Dh = q.shape
    scale = 1.0 / math.sqrt(Dh) if sm_scale is None else sm_scale
    do, q, k, v, o, lse = (t.contiguous() for t in (do, q, k, v, o, lse))
    delta = attention_delta(o, do, BLOCK_M)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    meta = dict(CAUSAL=causal, HEAD_DIM=Dh, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, ACC=acc_type(q))
    dkdv_kernel[(triton.cdiv(N, BLOCK_N), B * H)](q, k, v, do, lse, delta, dk, dv, N, scale, **meta)
    dq_kernel[(triton.cdiv(N, BLOCK_M), B * H)](q, k, v, do, lse, delta, dq, N, scale, **meta)
    return dq, dk, dv
    ### END SOLUTION


# %% [markdown]
# Try your kernels here before checking (this cell runs in the notebook, not when graded): the
# gradients of softmax(Q K^T / sqrt(Dh)) V by autograd, in float64, against yours.

# %%
if __name__ == "__main__":
    q, k, v, do = (torch.randn(1, 2, 37, 16, dtype=torch.float64) for _ in range(4))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    scores = leaves[0] @ leaves[1].transpose(-2, -1) / 4.0  # (B, H, N, N), sm_scale = 1 / sqrt(16)
    o = scores.softmax(-1) @ leaves[2]
    expected = torch.autograd.grad(o, leaves, do)
    yours = flash_attention_backward(do, q, k, v, o.detach(), torch.logsumexp(scores, -1).detach())
    print([(a - b).abs().max().item() for a, b in zip(yours, expected)])
