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
# # Assignment `flash` · The online softmax and FlashAttention-2, forward and backward, in torch
#
# Chapter 03 (`notebooks/03_flash_attention_in_triton.py`, §[The online softmax],
# §[Blockwise attention, by hand] and §[The backward pass]) walks one head through the algorithm.
# Here you write it for batches of heads, with a causal mask, any block sizes and any N, with the
# signatures and return conventions of `ast_min.kernels.reference`:
#
# 1. `online_softmax(scores, block_size)`: (R, N) scores, read in blocks of `block_size` columns;
#    returns the final running maximum m (R,) and running sum l (R,) = sum_j exp(s_j - m), so that
#    softmax = exp(s - m) / l. Whenever the maximum grows, what was summed so far must be rescaled.
# 2. `blockwise_attention(q, k, v, causal=False, sm_scale=None, block_m=64, block_n=64)`:
#    q, k, v (B, H, N, Dh) -> O (B, H, N, Dh), LSE (B, H, N) = log-sum-exp of each row's scaled
#    scores (natural log). sm_scale None means 1 / sqrt(Dh). Causal: query i sees keys 0..i.
#    Accumulate in float32 (float64 for float64 inputs) and return O and LSE in that dtype.
# 3. `blockwise_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, block_m=64,
#    block_n=64)` -> dq, dk, dv (B, H, N, Dh): recompute P = exp(S - LSE) block by block, with
#    delta = rowsum(dO * O): dV = P^T dO, dP = dO V^T, dS = P * (dP - delta), dQ = scale dS K,
#    dK = scale dS^T Q.
#
# The point of the algorithm: **no N x N tensor, ever** (the scores of one (block_m, block_n) tile
# at a time). The grader records the shape of every tensor your functions create and refuses an
# N x N one (a full causal mask counts). torch only; no `ast_min.kernels`, no scaled_dot_product_attention.
# Then run `ast-min assignment check flash`.
#
# Shape legend: B batch, H heads, N tokens, Dh head dim, R rows.

# %%
import math

import torch


# %%
def online_softmax(scores: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, N) scores read block_size columns at a time -> running max m (R,) and sum l (R,) after the last block."""
    ### BEGIN SOLUTION
    R = scores.shape[0]
    m = torch.full((R,), -math.inf, dtype=scores.dtype)
    l = torch.zeros(R, dtype=scores.dtype)
    for start in range(0, scores.shape[1], block_size):
        block = scores[:, start : start + block_size]  # (R, block)
        m_new = torch.maximum(m, block.amax(dim=1))
        l = l * torch.exp(m - m_new) + torch.exp(block - m_new[:, None]).sum(dim=1)
        m = m_new
    return m, l
    ### END SOLUTION


# %%
def blockwise_attention(q, k, v, causal=False, sm_scale=None, block_m=64, block_n=64):
    """FlashAttention-2 forward. q, k, v: (B, H, N, Dh). Returns O (B, H, N, Dh) and LSE (B, H, N)."""
    ### BEGIN SOLUTION
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(acc_dtype), k.to(acc_dtype), v.to(acc_dtype)
    B, H, N, Dh = q.shape
    o = torch.empty_like(q)
    lse = torch.empty(B, H, N, dtype=acc_dtype)
    for start_m in range(0, N, block_m):
        rows = torch.arange(start_m, min(start_m + block_m, N))
        q_i = q[:, :, rows]  # (B, H, Bm, Dh)
        m = torch.full((B, H, len(rows)), -math.inf, dtype=acc_dtype)
        l = torch.zeros(B, H, len(rows), dtype=acc_dtype)
        acc = torch.zeros(B, H, len(rows), Dh, dtype=acc_dtype)
        last_key = int(rows[-1]) + 1 if causal else N
        for start_n in range(0, last_key, block_n):
            cols = torch.arange(start_n, min(start_n + block_n, N))
            s = (q_i @ k[:, :, cols].transpose(-2, -1)) * scale  # (B, H, Bm, Bn)
            if causal:
                s = s.masked_fill(cols[None, :] > rows[:, None], float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # (B, H, Bm, Bn)
            alpha = torch.exp(m - m_new)
            l = l * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v[:, :, cols]
            m = m_new
        o[:, :, rows] = acc / l[..., None]
        lse[:, :, rows] = m + torch.log(l)
    return o, lse
    ### END SOLUTION


# %%
def blockwise_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, block_m=64, block_n=64):
    """FlashAttention-2 backward: dq, dk, dv (B, H, N, Dh) from dO, the inputs, O and LSE."""
    ### BEGIN SOLUTION
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, o, lse, do = (t.to(acc_dtype) for t in (q, k, v, o, lse, do))
    N = q.shape[-2]
    delta = (do * o).sum(dim=-1)  # (B, H, N)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for start_n in range(0, N, block_n):
        cols = torch.arange(start_n, min(start_n + block_n, N))
        k_j, v_j = k[:, :, cols], v[:, :, cols]  # (B, H, Bn, Dh)
        for start_m in range(0, N, block_m):
            rows = torch.arange(start_m, min(start_m + block_m, N))
            s = (q[:, :, rows] @ k_j.transpose(-2, -1)) * scale  # (B, H, Bm, Bn)
            p = torch.exp(s - lse[:, :, rows, None])
            if causal:
                p = p.masked_fill(cols[None, :] > rows[:, None], 0.0)
            dv[:, :, cols] += p.transpose(-2, -1) @ do[:, :, rows]
            dp = do[:, :, rows] @ v_j.transpose(-2, -1)  # (B, H, Bm, Bn)
            ds = p * (dp - delta[:, :, rows, None])
            dq[:, :, rows] += scale * ds @ k_j
            dk[:, :, cols] += scale * ds.transpose(-2, -1) @ q[:, :, rows]
    return dq, dk, dv
    ### END SOLUTION


# %% [markdown]
# Try your functions here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    q, k, v = (torch.randn(1, 2, 50, 16, dtype=torch.float64) for _ in range(3))
    o, lse = blockwise_attention(q, k, v, block_m=16, block_n=16)
    print(o.shape, lse.shape)
