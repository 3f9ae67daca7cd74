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
# # Assignment `triton` · A row-softmax kernel, then the fused-attention forward kernel
#
# Chapter 03 (`notebooks/03_flash_attention_in_triton.py`, §[A fused row softmax] and
# §[FlashAttention's forward in Triton]) writes a minimal kernel and reads ast-min's; chapter 05,
# the kernel lab, takes it further. Assignment `triton_backward` continues with the backward pass. Here you
# write two kernels yourself. Without a GPU they run on the CPU through Triton's interpreter: set
# `TRITON_INTERPRET=1` in the environment **before** `import triton` (the first cell does, when no
# CUDA device is present; the grader does too). The interpreter handles float32 and float16 (its
# bfloat16 matmul is wrong), so the grader uses those.
#
# 1. `softmax_kernel` and `softmax(x)`: x (R, C) float32 -> softmax over each row. One program per
#    row loads the whole row in a block of BLOCK = the next power of two >= C; the lanes past C must
#    not count (load them as -inf), and subtract the row's maximum before exp (exp(89) overflows
#    float32).
# 2. `attention_kernel` and `flash_attention_forward(q, k, v, sm_scale=None, BLOCK_M=16,
#    BLOCK_N=16)`: q, k, v (B, H, N, Dh), Dh a power of two >= 16 -> O (B, H, N, Dh) in q's dtype,
#    non-causal, sm_scale None meaning 1 / sqrt(Dh). One program per (query block, batch x head)
#    keeps the running max m, sum l and accumulator acc of FlashAttention-2 (assignment `flash`):
#    keys past N get a large finite negative score, -1.0e30, as in chapter 03's kernels (with -inf
#    a row whose keys are all masked would compute exp(-inf - (-inf)) = NaN), so that exp makes
#    them 0; acc and l are rescaled whenever m grows.
#
# No `ast_min.kernels`, no scaled_dot_product_attention inside your functions, and the work is the
# kernels' (no torch matmul, exp or sum in `softmax` or `flash_attention_forward`). Then run
# `ast-min assignment check triton` (the interpreter is slow: small shapes take seconds). On a CUDA
# machine the grader also times your kernel against torch's SDPA and reports the ratio, ungraded.
#
# Shape legend: R rows, C columns, B batch, H heads, N tokens, Dh head dim.

# %%
import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before importing triton: run kernels on the CPU

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


# %%
@triton.jit
def softmax_kernel(X, Y, stride_row, n_cols, BLOCK: tl.constexpr):
    """One program per row: Y[row] = softmax(X[row]) over its n_cols columns."""
    ### BEGIN SOLUTION
    row = tl.program_id(0)
    offsets = tl.arange(0, BLOCK)
    in_row = offsets < n_cols
    x = tl.load(X + row * stride_row + offsets, mask=in_row, other=-float("inf"))
    numerator = tl.exp(x - tl.max(x, axis=0))
    tl.store(Y + row * stride_row + offsets, numerator / tl.sum(numerator, axis=0), mask=in_row)
    ### END SOLUTION


def softmax(x: torch.Tensor) -> torch.Tensor:
    """(R, C) float32 -> (R, C): softmax over each row, computed by softmax_kernel."""
    ### BEGIN SOLUTION
    x = x.contiguous()
    y = torch.empty_like(x)
    softmax_kernel[(x.shape[0],)](x, y, x.stride(0), x.shape[1], BLOCK=triton.next_power_of_2(x.shape[1]))
    return y
    ### END SOLUTION


# %%
@triton.jit
def attention_kernel(Q, K, V, O, N, sm_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """O for one block of BLOCK_M query rows of one (batch, head); Q, K, V, O contiguous (B, H, N, HEAD_DIM)."""
    ### BEGIN SOLUTION
    start_m = tl.program_id(0) * BLOCK_M
    head = tl.program_id(1).to(tl.int64) * N * HEAD_DIM  # offset of this (batch, head)
    rows = start_m + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + head + rows[:, None] * HEAD_DIM + dims[None, :], mask=rows[:, None] < N, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, N, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(K + head + cols[:, None] * HEAD_DIM + dims[None, :], mask=cols[:, None] < N, other=0.0)
        v = tl.load(V + head + cols[:, None] * HEAD_DIM + dims[None, :], mask=cols[:, None] < N, other=0.0)
        s = tl.dot(q, tl.trans(k)) * sm_scale  # (BLOCK_M, BLOCK_N)
        s = tl.where(cols[None, :] < N, s, -1.0e30)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(O + head + rows[:, None] * HEAD_DIM + dims[None, :], acc.to(O.dtype.element_ty), mask=rows[:, None] < N)
    ### END SOLUTION


def flash_attention_forward(q, k, v, sm_scale=None, BLOCK_M=16, BLOCK_N=16):
    """q, k, v (B, H, N, Dh) -> O (B, H, N, Dh) in q's dtype, computed by attention_kernel."""
    ### BEGIN SOLUTION
    B, H, N, Dh = q.shape
    scale = 1.0 / math.sqrt(Dh) if sm_scale is None else sm_scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    o = torch.empty_like(q)
    grid = (triton.cdiv(N, BLOCK_M), B * H)
    attention_kernel[grid](q, k, v, o, N, scale, HEAD_DIM=Dh, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)
    return o
    ### END SOLUTION


# %% [markdown]
# Try your kernels here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    x = torch.randn(3, 10)
    print((softmax(x) - x.softmax(-1)).abs().max())
