"""An independent solution of assignment `flash` (copy-check fixture): FlashAttention-1's loop order.

The forward walks the key blocks in the outer loop and keeps the running statistics of every
query row at once; the backward visits each (query block, key block) pair once with precomputed
block boundaries.
"""

import torch


def _bounds(n, size):
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def online_softmax(scores, block_size):
    m = None
    s = None
    for lo, hi in _bounds(scores.size(1), block_size):
        part = scores[:, lo:hi]
        part_max = part.amax(dim=1)
        if m is None:
            m, s = part_max, torch.exp(part - part_max[:, None]).sum(dim=1)
            continue
        m_next = torch.where(part_max > m, part_max, m)
        s = s * torch.exp(m - m_next) + torch.exp(part - m_next[:, None]).sum(dim=1)
        m = m_next
    return m, s


def blockwise_attention(q, k, v, causal=False, sm_scale=None, block_m=64, block_n=64):
    work = torch.float64 if q.dtype is torch.float64 else torch.float32
    Q, K, V = (x.to(work) for x in (q, k, v))
    n, d = Q.shape[-2], Q.shape[-1]
    scale = sm_scale if sm_scale is not None else 1.0 / d ** 0.5
    m = torch.full(Q.shape[:-1], -torch.inf, dtype=work)  # (B, H, N) running max of every row
    s = torch.zeros(Q.shape[:-1], dtype=work)  # running sum of every row
    acc = torch.zeros_like(Q)  # running unnormalised output of every row
    for k_lo, k_hi in _bounds(n, block_n):
        for q_lo, q_hi in _bounds(n, block_m):
            if causal and k_lo > q_hi - 1:
                continue  # every key of this block comes after every query of that one
            logits = torch.matmul(Q[..., q_lo:q_hi, :], K[..., k_lo:k_hi, :].mT).mul(scale)
            if causal:
                future = torch.arange(k_lo, k_hi)[None, :] > torch.arange(q_lo, q_hi)[:, None]
                logits = logits.masked_fill(future, -torch.inf)
            m_old = m[..., q_lo:q_hi]
            m_new = torch.maximum(m_old, logits.amax(-1))
            keep = torch.exp(m_old - m_new)
            w = torch.exp(logits - m_new[..., None])
            s[..., q_lo:q_hi] = s[..., q_lo:q_hi] * keep + w.sum(-1)
            acc[..., q_lo:q_hi, :] = acc[..., q_lo:q_hi, :] * keep[..., None] + torch.matmul(w, V[..., k_lo:k_hi, :])
            m[..., q_lo:q_hi] = m_new
    return acc / s[..., None], m + torch.log(s)


def blockwise_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, block_m=64, block_n=64):
    work = torch.float64 if q.dtype is torch.float64 else torch.float32
    dO, Q, K, V, O, L = (x.to(work) for x in (do, q, k, v, o, lse))
    n, d = Q.shape[-2], Q.shape[-1]
    scale = sm_scale if sm_scale is not None else 1.0 / d ** 0.5
    D = (dO * O).sum(-1)  # delta: one number per row
    grads = [torch.zeros_like(Q), torch.zeros_like(K), torch.zeros_like(V)]
    for q_lo, q_hi in _bounds(n, block_m):
        for k_lo, k_hi in _bounds(n, block_n):
            if causal and k_lo > q_hi - 1:
                continue
            logits = torch.matmul(Q[..., q_lo:q_hi, :], K[..., k_lo:k_hi, :].mT).mul(scale)
            P = torch.exp(logits - L[..., q_lo:q_hi, None])
            if causal:
                future = torch.arange(k_lo, k_hi)[None, :] > torch.arange(q_lo, q_hi)[:, None]
                P = torch.where(future, torch.zeros_like(P), P)
            dP = torch.matmul(dO[..., q_lo:q_hi, :], V[..., k_lo:k_hi, :].mT)
            dS = P * (dP - D[..., q_lo:q_hi, None])
            grads[0][..., q_lo:q_hi, :] += scale * torch.matmul(dS, K[..., k_lo:k_hi, :])
            grads[1][..., k_lo:k_hi, :] += scale * torch.matmul(dS.mT, Q[..., q_lo:q_hi, :])
            grads[2][..., k_lo:k_hi, :] += torch.matmul(P.mT, dO[..., q_lo:q_hi, :])
    return tuple(grads)
