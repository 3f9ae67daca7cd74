"""FlashAttention in plain torch: the algorithm the Triton kernel implements, written to be stepped through.

Attention (Vaswani et al. 2017, eq. 1) is O = softmax(S) V with S = Q Kᵀ · scale. Computed directly,
it writes the N x N matrix S to memory and reads it back (`attention_math`). FlashAttention (Dao et al.
2022) never forms S: it walks over blocks of keys, keeping per query row only a running maximum m, a
running sum l and an unnormalised output, and rescales them whenever the maximum grows (the online
softmax of Milakov & Gimelshein 2018):

    m_new = max(m, rowmax(S_j))
    l     = l · exp(m - m_new) + rowsum(exp(S_j - m_new))
    acc   = acc · exp(m - m_new) + exp(S_j - m_new) @ V_j
    O     = acc / l,   LSE = m + log(l)            (after the last block)

The backward pass (FlashAttention-2, Algorithm 2) recomputes P = exp(S - LSE) block by block from the
saved LSE, with delta = rowsum(dO ∘ O):

    dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP - delta),   dQ = scale · dS K,   dK = scale · dSᵀ Q

These loops are slow (Python-level, one small matmul per block); they exist to be read, and to check
the Triton kernel's structure against. Natural-log units here; the kernel uses base 2 (exp2), which is
the same algorithm with log2(e) folded into the scale.

Shape legend: B batch, H heads, N tokens, Dh head dim; Bm, Bn the query and key block sizes.
"""

from __future__ import annotations

import math

import torch


def _scale(q: torch.Tensor, sm_scale: float | None) -> float:
    return 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale


def _upcast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # The kernel's accumulation dtype, chosen by the first tensor: float64 for float64, float32 otherwise.
    acc_dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    return tuple(t.to(acc_dtype) for t in tensors)


def attention_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, sm_scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook attention that materialises S. q, k, v: (B, H, N, Dh). Returns O (B, H, N, Dh), LSE (B, H, N)."""
    s = (q @ k.transpose(-2, -1)) * _scale(q, sm_scale)  # (B, H, N, N)
    if causal:
        n = q.shape[-2]
        above_diagonal = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)  # key j > query i
        s = s.masked_fill(above_diagonal, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # (B, H, N)
    return torch.softmax(s, dim=-1) @ v, lse


def blockwise_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    sm_scale: float | None = None,
    block_m: int = 64,
    block_n: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The FlashAttention-2 forward in torch loops. q, k, v: (B, H, N, Dh). Returns O (B, H, N, Dh), LSE (B, H, N).

    Accumulates in float32 (float64 for float64 inputs), like the kernel, and returns O and LSE in
    that accumulation dtype (the kernel stores O in q's dtype).
    """
    scale = _scale(q, sm_scale)
    q, k, v = _upcast(q, k, v)
    acc_dtype = q.dtype
    B, H, N, Dh = q.shape
    o = torch.empty_like(q)
    lse = torch.empty(B, H, N, dtype=acc_dtype, device=q.device)
    for start_m in range(0, N, block_m):  # one Triton program per query block (and per batch, head)
        rows = torch.arange(start_m, min(start_m + block_m, N), device=q.device)
        q_i = q[:, :, rows]  # (B, H, Bm, Dh)
        m = torch.full((B, H, len(rows)), float("-inf"), dtype=acc_dtype, device=q.device)
        l = torch.zeros(B, H, len(rows), dtype=acc_dtype, device=q.device)
        acc = torch.zeros(B, H, len(rows), Dh, dtype=acc_dtype, device=q.device)
        last_key = rows[-1].item() + 1 if causal else N  # causal: no key block lies wholly after the last row
        for start_n in range(0, last_key, block_n):
            cols = torch.arange(start_n, min(start_n + block_n, N), device=q.device)
            s = (q_i @ k[:, :, cols].transpose(-2, -1)) * scale  # (B, H, Bm, Bn)
            if causal:
                # The kernel uses a large finite negative; -inf is safe here because every row has
                # already seen key 0 (m is finite), so exp(-inf - m) = 0, never -inf - -inf.
                s = s.masked_fill(cols[None, :] > rows[:, None], float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # (B, H, Bm, Bn)
            alpha = torch.exp(m - m_new)  # rescales what was summed under the old maximum
            l = l * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v[:, :, cols]
            m = m_new
        o[:, :, rows] = acc / l[..., None]
        lse[:, :, rows] = m + torch.log(l)
    return o, lse


def blockwise_attention_backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    causal: bool = False,
    sm_scale: float | None = None,
    block_m: int = 64,
    block_n: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The FlashAttention-2 backward in torch loops: dq, dk, dv (B, H, N, Dh) from dO, the inputs, O and LSE.

    Loops over key blocks outside (like the dK/dV kernel) and accumulates dQ in place; the Triton kernel
    instead gives dQ its own pass over key blocks, so that no two programs write the same rows.
    """
    scale = _scale(q, sm_scale)
    q, k, v, o, lse, do = _upcast(q, k, v, o, lse, do)  # q first: its dtype picks the accumulation dtype
    N = q.shape[-2]
    delta = (do * o).sum(dim=-1)  # (B, H, N): rowsum(dO ∘ O) = rowsum(P ∘ dP)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for start_n in range(0, N, block_n):
        cols = torch.arange(start_n, min(start_n + block_n, N), device=q.device)
        k_j, v_j = k[:, :, cols], v[:, :, cols]  # (B, H, Bn, Dh)
        first_query = start_n if causal else 0  # causal: queries before this block see none of its keys
        for start_m in range(first_query // block_m * block_m, N, block_m):
            rows = torch.arange(start_m, min(start_m + block_m, N), device=q.device)
            s = (q[:, :, rows] @ k_j.transpose(-2, -1)) * scale  # (B, H, Bm, Bn)
            p = torch.exp(s - lse[:, :, rows, None])  # P, recomputed from the saved log-sum-exp
            if causal:
                p = p.masked_fill(cols[None, :] > rows[:, None], 0.0)
            dv[:, :, cols] += p.transpose(-2, -1) @ do[:, :, rows]
            dp = do[:, :, rows] @ v_j.transpose(-2, -1)  # (B, H, Bm, Bn)
            ds = p * (dp - delta[:, :, rows, None])
            dq[:, :, rows] += scale * ds @ k_j
            dk[:, :, cols] += scale * ds.transpose(-2, -1) @ q[:, :, rows]
    return dq, dk, dv
