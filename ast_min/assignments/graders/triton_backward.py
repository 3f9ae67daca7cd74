"""Grader of `triton_backward`: FlashAttention-2's backward (delta, dK/dV and dQ kernels) through Triton's interpreter.

The grading process always sets TRITON_INTERPRET=1 before the student's file imports triton: the
kernels run on the CPU, on CPU tensors, in float64 (the interpreter's tl.dot multiplies float64
exactly, in numpy) and once in float32. Expected values: autograd through
`ast_min.kernels.reference.attention_math` in float64, whose O and LSE are the inputs.

Tolerances. float64: 1e-9, as for assignment `flash`: a gradient sums N <= 40 tiles' products over
Dh <= 32, and float64 rounding (2^-53 = 1.1e-16 relative, times n for a sum of n terms of
magnitude <= ~10) stays below 1e-12; every mistake below changes values by 1e-3 or more at these
inputs (scores of order 1). float32: 1e-4: inputs rounded to float32 (6e-8 relative), LSE too (6e-8
of |LSE| <= ~8: P relative error <= 5e-7), then sums of N + Dh <= 72 float32 products whose
roundings add like a random walk (~sqrt(72) * 6e-8 = 5e-7 relative) on terms of magnitude <= ~10:
errors of order 1e-5 at worst, under the tolerance; a factor sm_scale (<= 0.3) missing or doubled
is off by 30 % or more.

Known mistakes, whose outputs the grader computes from the full (N x N) matrices of the same
inputs: delta from P (each tile's rowsum(P * dP) instead of rowsum(dO * O)); dS scaled twice or not
at all; the causal mask forgotten in the backward; dQ overwritten by each key block instead of
accumulated.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake
from ast_min.kernels.reference import attention_math



GRADER = Grader(
    "triton_backward",
    forbidden=("ast_min.kernels", "ast_min.kernels.reference", "torch.nn.functional.scaled_dot_product_attention",
               "ast_min.model", "torch.autograd.grad"),
    time_limit=120.0,
    memory_limit=6 << 30,  # the interpreter maps numpy copies of every tensor it touches
    env={"TRITON_INTERPRET": "1"},  # always the interpreter: the assignment grades the CPU path
    worker_modules=("ast_min.assignments.worker_nan_fill",),  # unwritten output reads NaN
)
TOL = dict(atol=1e-9, rtol=1e-9)
FP32_TOL = dict(atol=1e-4, rtol=1e-4)
DIAGNOSIS_SECONDS = 60.0  # each derived variant of a kernel runs through the interpreter
SECOND_EXTRA = 13  # tokens the second input of a diagnosis adds: a shrunk N = 1 hides most mistakes
T_DELTA, T_SHAPES, T_WORKED, T_CAUSAL, T_PROPERTY, T_KERNELS = (
    "attention_delta: rowsum(dO * O) for any N",
    "flash_attention_backward: (dq, dk, dv), each (B, H, N, Dh) in q's dtype",
    "flash_attention_backward: B = 1, H = 2, N = 24, Dh = 16, float64",
    "flash_attention_backward: causal, N = 21 (a ragged last block), float64",
    "flash_attention_backward equals autograd for any N, causal or not, blocks and sm_scale",
    "the gradients are computed by Triton kernels (no torch matmul, exp or sum)",
)

MISTAKES = [
    Mistake("delta_from_p", "you computed delta from each tile's P (rowsum(P * dP) over the tile's keys only); the "
            "softmax's row sum runs over all N keys, and it equals rowsum(dO * O): compute it once, before the "
            "tiles (attention_delta)",
            ("        ds = p * (dp - delta[:, None])\n", "        ds = p * (dp - tl.sum(p * dp, 1)[:, None])\n"),
            T_WORKED),
    Mistake("ds_scaled_twice", "dS is scaled by sm_scale twice: S = sm_scale Q K^T gives dQ = sm_scale dS K and "
            "dK = sm_scale dS^T Q, one factor each",
            ("    dq = dq * sm_scale\n", "    dq = dq * sm_scale * sm_scale\n"), T_WORKED),
    Mistake("ds_not_scaled", "dS is not scaled: S = sm_scale Q K^T, so dK = sm_scale dS^T Q (and dQ = sm_scale dS K)",
            ("    dk = dk * sm_scale\n", ""), T_WORKED),
    Mistake("causal_mask_forgotten", "the backward forgets the causal mask: P = exp(S - LSE) must be 0 above the "
            "diagonal (key > query), as in the forward, or future keys get gradients",
            ("    if CAUSAL:\n        keep = keep & (cols[None, :] <= rows[:, None])\n", ""), T_CAUSAL),
    Mistake("dq_not_accumulated", "dQ keeps only the last key block's contribution: accumulate over the key blocks, "
            "dq += dS K, and scale once at the end",
            ("        dq += tl.dot(dscores.to(k.dtype), k, out_dtype=ACC)\n",
             "        dq = tl.dot(dscores.to(k.dtype), k, out_dtype=ACC)\n"), T_WORKED),
]
HINTS = {m.name: m.hint for m in MISTAKES}


# ---- inputs, the reference and the known mistakes --------------------------------------------------------------


def backward_inputs(seed, B, H, N, Dh, causal, sm_scale, dtype=torch.float64):
    """do, q, k, v and the forward's o, lse on them (float64 math, then rounded to dtype)."""
    g = torch.Generator().manual_seed(seed)
    do, q, k, v = (torch.randn(B, H, N, Dh, generator=g, dtype=torch.float64).to(dtype).double() for _ in range(4))
    o, lse = attention_math(q, k, v, causal, _scale(Dh, sm_scale))
    return tuple(t.to(dtype) for t in (do, q, k, v, o, lse))


def _scale(Dh, sm_scale):
    return 1 / math.sqrt(Dh) if sm_scale is None else sm_scale


def _full(do, q, k, v, o, lse, causal, sm_scale, mask=True):
    """P, dP and the scale on the full (N x N) matrices, float64."""
    do, q, k, v, o, lse = (t.double() for t in (do, q, k, v, o, lse))
    scale = _scale(q.shape[-1], sm_scale)
    s = q @ k.transpose(-2, -1) * scale  # (B, H, N, N)
    if causal and mask:
        N = q.shape[-2]
        s = s.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
    p = torch.exp(s - lse[..., None])
    return p, do @ v.transpose(-2, -1), scale


def gradients(p, dp, delta, do, q, k, scale):
    ds = p * (dp - delta)
    return scale * ds @ k, scale * ds.transpose(-2, -1) @ q, p.transpose(-2, -1) @ do


def known_variants(do, q, k, v, o, lse, causal=False, sm_scale=None, BLOCK_M=16, BLOCK_N=16):
    """{mistake: (dq, dk, dv)} on these inputs."""
    p, dp, scale = _full(do, q, k, v, o, lse, causal, sm_scale)
    do, q, k, o = (t.double() for t in (do, q, k, o))
    delta = (do * o).sum(-1, keepdim=True)
    dq, dk, dv = gradients(p, dp, delta, do, q, k, scale)
    N = q.shape[-2]
    # delta from P: each (query block, key block) tile's own rowsum(P * dP); dK reads it (the dK/dV kernel)
    pdp = torch.nn.functional.pad(p * dp, (0, -N % BLOCK_N)).unflatten(-1, (-1, BLOCK_N))  # (B, H, N, nb, BLOCK_N)
    tile_delta = pdp.sum(-1, keepdim=True).expand_as(pdp).flatten(-2)[..., :N]  # (B, H, N, N)
    ds_tiles = p * (dp - tile_delta)
    unmasked = _full(do, q, k, v, o, lse, causal, sm_scale, mask=False)[0]
    last = slice((N - 1) // BLOCK_N * BLOCK_N, N)  # the last key block the dQ loop visits
    ds = p * (dp - delta)
    return {
        "delta_from_p": (dq, scale * ds_tiles.transpose(-2, -1) @ q, dv),
        "ds_scaled_twice": (dq * scale, dk, dv),
        "ds_not_scaled": (dq, dk / scale, dv),
        "causal_mask_forgotten": gradients(unmasked, dp, delta, do, q, k, scale),
        "dq_not_accumulated": (scale * ds[..., last] @ k[..., last, :], dk, dv),
    }


# the work a kernel must do; a launcher allocates, copies and launches
COMPUTATIONS = ("mm", "bmm", "addmm", "baddbmm", "matmul", "dot", "mv", "einsum", "_softmax", "_log_softmax", "exp",
                "exp2", "logsumexp", "sum")


def check_backward(ctx, B, H, N, Dh, causal, block_m, block_n, seed, sm_scale=None, dtype=torch.float64):
    args = backward_inputs(seed, B, H, N, Dh, causal, sm_scale, dtype)
    do, q, k, v, o, lse = (t.double() for t in args)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = torch.autograd.grad(attention_math(*leaves, causal, _scale(Dh, sm_scale))[0], leaves, do)
    kwargs = dict(causal=causal, BLOCK_M=block_m, BLOCK_N=block_n, **({} if sm_scale is None else dict(sm_scale=sm_scale)))
    ctx.inputs = dict(zip(("do", "q", "k", "v"), args), **kwargs)  # as the student's function receives them
    got = ctx.call("flash_attention_backward", *(t.clone() for t in args), **kwargs)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Fail(f"flash_attention_backward should return (dq, dk, dv), got {type(got).__name__}")
    for name, g in zip(("dq", "dk", "dv"), got):
        ctx.expect_tensor(g, name, (B, H, N, Dh))
        if g.dtype != dtype:
            raise Fail(f"{name} should have q's dtype {dtype}, got {g.dtype}{ctx.on_inputs()}")
    # the second input that confirms a hint: more tokens (shrunk counterexamples have few), other values
    second = (backward_inputs(seed + 1, B, H, N + SECOND_EXTRA, Dh, causal, sm_scale, dtype), kwargs)
    tol = TOL if dtype == torch.float64 else FP32_TOL
    for i, (name, g, e) in enumerate(zip(("dq", "dk", "dv"), got, expected)):
        ctx.compare(g, e, name, **tol, hints=HINTS,
                    variants=lambda *a, i=i, **kw: {n: grads[i] for n, grads in known_variants(*a, **kw).items()},
                    derive=Call("triton_backward", "flash_attention_backward", args, kwargs, pick=i, second=second,
                                axes=("B", "H", "N", "Dh"), seconds=DIAGNOSIS_SECONDS))


def check_delta(ctx, B, H, N, Dh, seed, dtype=torch.float64):
    do, _, _, _, o, _ = backward_inputs(seed, B, H, N, Dh, False, None, dtype)
    ctx.inputs = dict(o=o, do=do)
    got = ctx.call("attention_delta", o.clone(), do.clone())
    got = ctx.expect_tensor(got, "delta", (B, H, N))
    ctx.compare(got, (o.double() * do.double()).sum(-1), "delta", **(TOL if dtype == torch.float64 else FP32_TOL),
                derive=Call("triton_backward", "attention_delta", (o, do), axes=("B", "H", "N"),
                            seconds=DIAGNOSIS_SECONDS))


# ---- 1. delta, then shapes -------------------------------------------------------------------------------------------


@GRADER.test(T_DELTA)
def delta(ctx):
    ctx.prove(st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 40), st.sampled_from([16, 32]),
                        st.integers(0, 2**16)), lambda a: check_delta(ctx, *a), max_examples=min(ctx.max_examples, 6))


@GRADER.test(T_SHAPES)
def shapes(ctx):
    for dtype in (torch.float64, torch.float32):
        args = backward_inputs(0, 2, 1, 20, 16, False, None, dtype)
        ctx.inputs = dict(zip(("do", "q", "k", "v"), args))
        got = ctx.call("flash_attention_backward", *args)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise Fail(f"flash_attention_backward should return (dq, dk, dv), got {type(got).__name__}")
        for name, g in zip(("dq", "dk", "dv"), got):
            ctx.expect_tensor(g, name, (2, 1, 20, 16))
            if g.dtype != dtype:
                raise Fail(f"{name} should have q's dtype {dtype}, got {g.dtype}{ctx.on_inputs()}")


# ---- 2. worked examples ---------------------------------------------------------------------------------------------


@GRADER.test(T_WORKED, points=2)
def worked(ctx):
    check_backward(ctx, 1, 2, 24, 16, False, 16, 16, 0)


@GRADER.test(T_CAUSAL, points=2)
def worked_causal(ctx):
    check_backward(ctx, 1, 1, 21, 16, True, 16, 16, 1)


# ---- 3. properties ---------------------------------------------------------------------------------------------------


@GRADER.test(T_PROPERTY, points=3, time_limit=240.0)
def backward_property(ctx):
    # (B, H, N, Dh, causal, BLOCK_M, BLOCK_N, seed, sm_scale: None = 1/sqrt(Dh), not passed)
    cases = st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 40), st.sampled_from([16, 32]),
                      st.booleans(), st.sampled_from([16, 32]), st.sampled_from([16, 32]), st.integers(0, 2**16),
                      st.sampled_from([None, 0.3, 0.05]))
    ctx.prove(cases, lambda a: check_backward(ctx, *a[:8], sm_scale=a[8]), max_examples=min(ctx.max_examples, 5))


@GRADER.test(T_KERNELS)
def kernels_do_the_work(ctx):
    args = backward_inputs(2, 1, 1, 24, 16, True, None)
    ctx.inputs = dict(zip(("do", "q", "k", "v"), args), causal=True)
    _, computed = ctx.call_watching(COMPUTATIONS, "flash_attention_backward", *args, causal=True)
    if computed:
        raise Fail(f"flash_attention_backward ran torch's {', '.join(computed)}: the assignment is the kernels, so "
                   "delta, P, dS and the gradients must be computed inside them (the launcher only allocates and "
                   "launches)")


# ---- 4. edge cases ---------------------------------------------------------------------------------------------------


@GRADER.test("edge: N = 1 causal, a block larger than N, a given sm_scale, float32 inputs")
def edges(ctx):
    check_backward(ctx, 1, 1, 1, 16, True, 16, 16, 3)
    check_backward(ctx, 2, 1, 5, 32, False, 32, 16, 4)
    check_backward(ctx, 1, 2, 29, 16, True, 16, 32, 5, sm_scale=0.3)
    check_backward(ctx, 1, 1, 23, 16, True, 16, 16, 6, dtype=torch.float32)
    check_delta(ctx, 1, 1, 23, 16, 7, dtype=torch.float32)
