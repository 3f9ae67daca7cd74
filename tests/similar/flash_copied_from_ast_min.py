"""A disguised copy of ast-min's own blockwise attention (copy-check fixture): renamed, re-wrapped, commented,
independent statements swapped. The copy check must flag it against `ast-min`."""
import math

import torch as th


def online_softmax(scores, block_size):
    # my running statistics
    mx = th.full((scores.shape[0],), -math.inf, dtype=scores.dtype)
    sm = th.zeros(scores.shape[0], dtype=scores.dtype)
    for b in range(0, scores.shape[1], block_size):
        piece = scores[:, b:b + block_size]
        new = th.maximum(mx, piece.amax(dim=1))
        sm = sm * th.exp(mx - new) + th.exp(piece - new[:, None]).sum(dim=1)
        mx = new
    return mx, sm


def _my_scale(query, given):
    return 1.0 / math.sqrt(query.shape[-1]) if given is None else given


def _my_upcast(*ts):
    wanted = th.float64 if ts[0].dtype == th.float64 else th.float32
    return tuple(t.to(wanted) for t in ts)


def blockwise_attention(q, k, v, causal=False, sm_scale=None,
                        block_m=64, block_n=64):
    factor = _my_scale(q, sm_scale)
    q, k, v = _my_upcast(q, k, v)
    dt = q.dtype
    nb, nh, ntok, hd = q.shape
    result = th.empty_like(q)
    logz = th.empty(nb, nh, ntok,
                    dtype=dt, device=q.device)
    for first_row in range(0, ntok, block_m):
        r = th.arange(first_row, min(first_row + block_m, ntok),
                      device=q.device)
        qq = q[:, :, r]
        # running state of these rows
        run_max = th.full((nb, nh, len(r)), float("-inf"), dtype=dt,
                          device=q.device)
        run_sum = th.zeros(nb, nh, len(r), dtype=dt, device=q.device)
        accum = th.zeros(nb, nh, len(r), hd, dtype=dt, device=q.device)
        end = r[-1].item() + 1 if causal else ntok
        for first_col in range(0, end, block_n):
            c = th.arange(first_col, min(first_col + block_n, ntok),
                          device=q.device)
            sc = (qq @ k[:, :, c].transpose(-2, -1)) * factor
            if causal:
                sc = sc.masked_fill(c[None, :] > r[:, None],
                                    float("-inf"))
            new_max = th.maximum(run_max, sc.amax(dim=-1))
            ex = th.exp(sc - new_max[..., None])
            corr = th.exp(run_max - new_max)
            run_sum = run_sum * corr + ex.sum(dim=-1)
            accum = accum * corr[..., None] + ex @ v[:, :, c]
            run_max = new_max
        logz[:, :, r] = run_max + th.log(run_sum)
        result[:, :, r] = accum / run_sum[..., None]
    return result, logz


def blockwise_attention_backward(do, q, k, v, o, lse, causal=False,
                                 sm_scale=None, block_m=64, block_n=64):
    factor = _my_scale(q, sm_scale)
    q, k, v, o, lse, do = _my_upcast(q, k, v, o, lse, do)
    ntok = q.shape[-2]
    gq, gk, gv = th.zeros_like(q), th.zeros_like(k), th.zeros_like(v)
    dlt = (do * o).sum(dim=-1)
    for first_col in range(0, ntok, block_n):
        c = th.arange(first_col, min(first_col + block_n, ntok), device=q.device)
        kc, vc = k[:, :, c], v[:, :, c]
        start_q = first_col if causal else 0
        for first_row in range(start_q // block_m * block_m, ntok, block_m):
            r = th.arange(first_row, min(first_row + block_m, ntok), device=q.device)
            sc = (q[:, :, r] @ kc.transpose(-2, -1)) * factor
            pr = th.exp(sc - lse[:, :, r, None])
            if causal:
                pr = pr.masked_fill(c[None, :] > r[:, None], 0.0)
            gv[:, :, c] += pr.transpose(-2, -1) @ do[:, :, r]
            dpr = do[:, :, r] @ vc.transpose(-2, -1)
            dsc = pr * (dpr - dlt[:, :, r, None])
            gq[:, :, r] += factor * dsc @ kc
            gk[:, :, c] += factor * dsc.transpose(-2, -1) @ q[:, :, r]
    return gq, gk, gv
