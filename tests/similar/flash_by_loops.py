"""An independent solution of assignment `flash` (copy-check fixture): explicit while loops over tiles."""

import math

import torch

NEG_INF = float("-inf")


def online_softmax(scores, block_size):
    n_rows, n_cols = scores.shape
    best = scores.new_full((n_rows,), NEG_INF)
    total = scores.new_zeros(n_rows)
    col = 0
    while col < n_cols:
        chunk = scores[:, col : col + block_size]
        top = torch.max(best, chunk.max(dim=1).values)
        total = total * (best - top).exp() + (chunk - top.unsqueeze(1)).exp().sum(1)
        best = top
        col += block_size
    return best, total


def _tile_scores(q_tile, k_tile, scale, row_ids, col_ids, causal):
    scores = torch.einsum("bhid,bhjd->bhij", q_tile, k_tile) * scale
    if causal:
        hidden = col_ids.unsqueeze(0) > row_ids.unsqueeze(1)
        scores = torch.where(hidden, torch.full_like(scores, NEG_INF), scores)
    return scores


def blockwise_attention(q, k, v, causal=False, sm_scale=None, block_m=64, block_n=64):
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    batch, heads, length, dim = q.shape
    if sm_scale is None:
        sm_scale = dim ** -0.5
    out = q.new_zeros(batch, heads, length, dim)
    logsumexp = q.new_zeros(batch, heads, length)
    i = 0
    while i < length:
        i_end = min(i + block_m, length)
        row_ids = torch.arange(i, i_end)
        q_tile = q[:, :, i:i_end]
        best = q.new_full((batch, heads, i_end - i), NEG_INF)
        total = q.new_zeros(batch, heads, i_end - i)
        numer = q.new_zeros(batch, heads, i_end - i, dim)
        j = 0
        stop = i_end if causal else length
        while j < stop:
            j_end = min(j + block_n, length)
            scores = _tile_scores(q_tile, k[:, :, j:j_end], sm_scale, row_ids, torch.arange(j, j_end), causal)
            top = torch.maximum(best, scores.max(dim=-1).values)
            shrink = torch.exp(best - top)
            weights = torch.exp(scores - top.unsqueeze(-1))
            numer = shrink.unsqueeze(-1) * numer + torch.einsum("bhij,bhjd->bhid", weights, v[:, :, j:j_end])
            total = shrink * total + weights.sum(dim=-1)
            best = top
            j = j_end
        out[:, :, i:i_end] = numer / total.unsqueeze(-1)
        logsumexp[:, :, i:i_end] = best + total.log()
        i = i_end
    return out, logsumexp


def blockwise_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, block_m=64, block_n=64):
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (t.to(dtype) for t in (do, q, k, v, o, lse))
    length, dim = q.shape[-2:]
    if sm_scale is None:
        sm_scale = dim ** -0.5
    row_dot = torch.einsum("bhid,bhid->bhi", do, o)
    grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    # first pass: one key tile at a time gathers dK and dV over every query tile
    j = 0
    while j < length:
        j_end = min(j + block_n, length)
        col_ids = torch.arange(j, j_end)
        i = 0
        while i < length:
            i_end = min(i + block_m, length)
            row_ids = torch.arange(i, i_end)
            scores = _tile_scores(q[:, :, i:i_end], k[:, :, j:j_end], sm_scale, row_ids, col_ids, causal)
            probs = torch.exp(scores - lse[:, :, i:i_end].unsqueeze(-1))
            grad_v[:, :, j:j_end] += torch.einsum("bhij,bhid->bhjd", probs, do[:, :, i:i_end])
            dprobs = torch.einsum("bhid,bhjd->bhij", do[:, :, i:i_end], v[:, :, j:j_end])
            dscores = probs * (dprobs - row_dot[:, :, i:i_end].unsqueeze(-1)) * sm_scale
            grad_k[:, :, j:j_end] += torch.einsum("bhij,bhid->bhjd", dscores, q[:, :, i:i_end])
            i = i_end
        j = j_end
    # second pass: one query tile at a time gathers dQ over every key tile
    i = 0
    while i < length:
        i_end = min(i + block_m, length)
        row_ids = torch.arange(i, i_end)
        j = 0
        while j < length:
            j_end = min(j + block_n, length)
            scores = _tile_scores(q[:, :, i:i_end], k[:, :, j:j_end], sm_scale, row_ids, torch.arange(j, j_end), causal)
            probs = torch.exp(scores - lse[:, :, i:i_end].unsqueeze(-1))
            dprobs = torch.einsum("bhid,bhjd->bhij", do[:, :, i:i_end], v[:, :, j:j_end])
            dscores = probs * (dprobs - row_dot[:, :, i:i_end].unsqueeze(-1)) * sm_scale
            grad_q[:, :, i:i_end] += torch.einsum("bhij,bhjd->bhid", dscores, k[:, :, j:j_end])
            j = j_end
        i = i_end
    return grad_q, grad_k, grad_v
