"""A disguised copy of flash_by_loops.py (copy-check fixture): another student's work, renamed and reformatted.
The copy check must flag the pair."""

import math
import torch

MINUS_INFINITY = float('-inf')


def online_softmax(scores, block_size):
    R, C = scores.shape
    mx = scores.new_full((R,), MINUS_INFINITY)
    acc = scores.new_zeros(R)
    c0 = 0
    while c0 < C:
        sub = scores[:, c0:c0 + block_size]
        mnew = torch.max(mx, sub.max(dim=1).values)
        acc = acc * (mx - mnew).exp() + (sub - mnew.unsqueeze(1)).exp().sum(1)
        mx = mnew
        c0 += block_size
    return mx, acc


def _scores_of(qt, kt, s, rows, cols, causal):  # scores of one tile
    out = torch.einsum('bhid,bhjd->bhij', qt, kt) * s
    if causal:
        masked = cols.unsqueeze(0) > rows.unsqueeze(1)
        out = torch.where(masked, torch.full_like(out, MINUS_INFINITY), out)
    return out


def blockwise_attention(q, k, v, causal=False, sm_scale=None, block_m=64, block_n=64):
    t = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(t), k.to(t), v.to(t)
    B, H, N, D = q.shape
    if sm_scale is None: sm_scale = D ** -0.5
    res = q.new_zeros(B, H, N, D)
    lz = q.new_zeros(B, H, N)
    a = 0
    while a < N:
        a2 = min(a + block_m, N)
        rows = torch.arange(a, a2)
        qt = q[:, :, a:a2]
        mx = q.new_full((B, H, a2 - a), MINUS_INFINITY)
        acc = q.new_zeros(B, H, a2 - a)
        num = q.new_zeros(B, H, a2 - a, D)
        b = 0
        limit = a2 if causal else N
        while b < limit:
            b2 = min(b + block_n, N)
            sc = _scores_of(qt, k[:, :, b:b2], sm_scale, rows, torch.arange(b, b2), causal)
            mnew = torch.maximum(mx, sc.max(dim=-1).values)
            f = torch.exp(mx - mnew)
            w = torch.exp(sc - mnew.unsqueeze(-1))
            num = f.unsqueeze(-1) * num + torch.einsum('bhij,bhjd->bhid', w, v[:, :, b:b2])
            acc = f * acc + w.sum(dim=-1)
            mx = mnew
            b = b2
        res[:, :, a:a2] = num / acc.unsqueeze(-1)
        lz[:, :, a:a2] = mx + acc.log()
        a = a2
    return res, lz


def blockwise_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, block_m=64, block_n=64):
    t = torch.float64 if q.dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (x.to(t) for x in (do, q, k, v, o, lse))
    N, D = q.shape[-2:]
    if sm_scale is None: sm_scale = D ** -0.5
    rd = torch.einsum('bhid,bhid->bhi', do, o)
    gq, gk, gv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    b = 0
    while b < N:
        b2 = min(b + block_n, N)
        cols = torch.arange(b, b2)
        a = 0
        while a < N:
            a2 = min(a + block_m, N)
            rows = torch.arange(a, a2)
            sc = _scores_of(q[:, :, a:a2], k[:, :, b:b2], sm_scale, rows, cols, causal)
            pr = torch.exp(sc - lse[:, :, a:a2].unsqueeze(-1))
            gv[:, :, b:b2] += torch.einsum('bhij,bhid->bhjd', pr, do[:, :, a:a2])
            dp = torch.einsum('bhid,bhjd->bhij', do[:, :, a:a2], v[:, :, b:b2])
            ds = pr * (dp - rd[:, :, a:a2].unsqueeze(-1)) * sm_scale
            gk[:, :, b:b2] += torch.einsum('bhij,bhid->bhjd', ds, q[:, :, a:a2])
            a = a2
        b = b2
    a = 0
    while a < N:
        a2 = min(a + block_m, N)
        rows = torch.arange(a, a2)
        b = 0
        while b < N:
            b2 = min(b + block_n, N)
            sc = _scores_of(q[:, :, a:a2], k[:, :, b:b2], sm_scale, rows, torch.arange(b, b2), causal)
            pr = torch.exp(sc - lse[:, :, a:a2].unsqueeze(-1))
            dp = torch.einsum('bhid,bhjd->bhij', do[:, :, a:a2], v[:, :, b:b2])
            ds = pr * (dp - rd[:, :, a:a2].unsqueeze(-1)) * sm_scale
            gq[:, :, a:a2] += torch.einsum('bhij,bhjd->bhid', ds, k[:, :, b:b2])
            b = b2
        a = a2
    return gq, gk, gv
