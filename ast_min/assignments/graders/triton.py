"""Grader of `triton`: a row-softmax kernel and the fused-attention forward kernel, run through Triton.

Without a CUDA device the grading process sets TRITON_INTERPRET=1 before the student's file imports
triton, so the kernels run on the CPU; the interpreter computes in numpy, float32 and float16 only
(its bfloat16 matmul is wrong). Expected values: torch's softmax and `ast_min.kernels.reference.attention_math`
in float64. Tolerances: float32 softmax 1e-6 (a row of <= 80 positive exponentials, whose sum's
roundings of 6e-8 relative each add like a random walk, ~sqrt(80) * 6e-8 = 5e-7, on values <= 1);
float32 attention 1e-5 (Dh <= 32 products per score, N <= 40 keys); float16 attention 2e-3 (inputs
and O rounded to fp16, 2^-11 relative, on |O| <= ~2). On a CUDA device one more test times the
kernel against SDPA and reports the ratio, for 0 points.

Shape legend: R rows, C columns, B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import math
import time

import torch
from hypothesis import strategies as st

from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake
from ast_min.kernels.reference import attention_math

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"



GRADER = Grader(
    "triton",
    forbidden=("ast_min.kernels", "ast_min.kernels.reference", "torch.nn.functional.scaled_dot_product_attention", "ast_min.model",
               "torch.softmax", "torch.nn.functional.softmax"),
    time_limit=90.0,
    # The interpreter maps numpy copies of every tensor it touches. On CUDA no address-space cap: the
    # driver reserves virtual ranges far larger than any cap that would still catch a runaway allocation.
    memory_limit=None if CUDA else 6 << 30,
    env={} if CUDA else {"TRITON_INTERPRET": "1"},
    worker_modules=("ast_min.assignments.worker_nan_fill",),  # unwritten output reads NaN
)
SOFTMAX_TOL = dict(atol=1e-6, rtol=1e-6)
FP32_TOL = dict(atol=1e-5, rtol=1e-5)
FP16_TOL = dict(atol=2e-3, rtol=2e-3)
DIAGNOSIS_SECONDS = 60.0  # each derived variant of a kernel runs through the interpreter
T_SOFTMAX, T_SOFTMAX_BIG, T_WORKED, T_ATTN = (
    "softmax: any number of rows and columns",
    "softmax: scores up to 100 (exp overflows float32 without the max)",
    "flash_attention_forward: B = 1, H = 3, N = 24, Dh = 16, float32",
    "flash_attention_forward equals softmax(S) V for any N, Dh, blocks and sm_scale",
)

MISTAKES = [
    Mistake("no_max_subtraction", "your softmax overflows: exp(x) is inf for x > 88 in float32; subtract the "
            "row's maximum first, softmax(x) = exp(x - max x) / sum exp(x - max x)",
            ("numerator = tl.exp(x - tl.max(x, axis=0))", "numerator = tl.exp(x)"), T_SOFTMAX_BIG),
    Mistake("tail_loaded_as_zero", "the lanes past the row's end count in your sum: load them with other=-inf, "
            "so that exp gives 0 there (with other=0 each adds exp(0 - max))",
            ('mask=in_row, other=-float("inf")', "mask=in_row, other=0.0"), T_SOFTMAX),
    Mistake("no_scale", "you left out the softmax scale: S = Q K^T * sm_scale, 1/sqrt(Dh) when sm_scale is None",
            ("scale = 1.0 / math.sqrt(Dh) if sm_scale is None else sm_scale", "scale = 1.0 if sm_scale is None else sm_scale"),
            T_WORKED),
    Mistake("no_rescale", "your accumulator is not rescaled when the running maximum grows: "
            "acc = acc * alpha[:, None] + p @ v, alpha = exp(m_old - m_new)",
            ("acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)", "acc = acc + tl.dot(p.to(v.dtype), v)"),
            T_WORKED),
    Mistake("key_tail_not_masked", "keys past N take part in your softmax (loaded as 0, they score 0): give them "
            "a large finite negative score, tl.where(cols[None, :] < N, s, -1.0e30), so that exp makes them 0",
            ("s = tl.where(cols[None, :] < N, s, -1.0e30)", "s = s"), T_WORKED),
]
HINTS = {m.name: m.hint for m in MISTAKES}


def rows(seed, R, C, scale=1.0):
    return torch.randn(R, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float32) * scale


def softmax_variants(x: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.cpu()
    C = x.shape[1]
    block = 1 << (C - 1).bit_length()
    padded = torch.nn.functional.pad(x, (0, block - C))  # the lanes past C loaded as 0
    e = torch.exp(x)
    return {"no_max_subtraction": e / e.sum(-1, keepdim=True), "tail_loaded_as_zero": padded.softmax(-1)[:, :C]}


def check_softmax(ctx, x):
    ctx.inputs = dict(x=x)
    got = ctx.call("softmax", x.clone().to(DEVICE))
    expected = x.double().softmax(-1)
    ctx.compare(got, expected, "softmax's output", **SOFTMAX_TOL, variants=softmax_variants, hints=HINTS,
                derive=Call("triton", "softmax", (x.to(DEVICE),), axes=("R", "C"), seconds=DIAGNOSIS_SECONDS))


def attention_variants(q, k, v, sm_scale=None, BLOCK_M=16, BLOCK_N=16) -> dict[str, torch.Tensor]:
    """The known mistakes' outputs, as a function of flash_attention_forward's arguments, in float64."""
    from ast_min.assignments.graders.flash import forward_variants

    q, k, v = (t.cpu().double() for t in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    out = {name: o for name, (o, _) in forward_variants(q, k, v, False, scale, BLOCK_N).items()
           if name in ("no_rescale", "no_scale")}
    N = q.shape[-2]
    pad = -N % BLOCK_N  # keys past N loaded as zero vectors: score 0, value 0
    kp, vp = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (k, v))
    out["key_tail_not_masked"] = attention_math(q, kp, vp, False, scale)[0]
    return out


def check_attention(ctx, B, H, N, Dh, block_m, block_n, seed, dtype=torch.float32, sm_scale=None):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, N, Dh, generator=g).to(dtype).to(DEVICE) for _ in range(3))
    scale = 1 / math.sqrt(Dh) if sm_scale is None else sm_scale
    kwargs = dict(BLOCK_M=block_m, BLOCK_N=block_n, **({} if sm_scale is None else dict(sm_scale=sm_scale)))
    ctx.inputs = dict(q=q, k=k, v=v, **kwargs)  # as the student's function receives them
    got = ctx.call("flash_attention_forward", q.clone(), k.clone(), v.clone(), **kwargs)
    got = ctx.expect_tensor(got, "flash_attention_forward's output", (B, H, N, Dh))
    if got.dtype != dtype:
        raise Fail(f"flash_attention_forward should return q's dtype {dtype}, got {got.dtype}")
    tol = FP16_TOL if dtype == torch.float16 else FP32_TOL
    expected = attention_math(*(t.cpu().double() for t in (q, k, v)), False, scale)[0]
    # the second input that confirms a hint: one more batch entry (which a kernel with its launch grid's
    # axes swapped still writes within bounds), other values
    g2 = torch.Generator().manual_seed(seed + 1)
    second = (tuple(torch.randn(B + 1, H, N, Dh, generator=g2).to(dtype).to(DEVICE) for _ in range(3)), kwargs)
    ctx.compare(got, expected, "O", **tol, variants=attention_variants, hints=HINTS,
                derive=Call("triton", "flash_attention_forward", (q, k, v), kwargs, second=second,
                            axes=("B", "H", "N", "Dh"), seconds=DIAGNOSIS_SECONDS))


# ---- 1. shapes and the softmax warm-up ----------------------------------------------------------------------------


@GRADER.test("softmax: shape and a 4 x 10 example")
def softmax_worked(ctx):
    check_softmax(ctx, rows(0, 4, 10))


@GRADER.test(T_SOFTMAX, points=2)
def softmax_property(ctx):
    ctx.prove(st.tuples(st.integers(1, 6), st.integers(1, 80), st.integers(0, 2**16)),
              lambda a: check_softmax(ctx, rows(a[2], a[0], a[1])), max_examples=min(ctx.max_examples, 10))


@GRADER.test(T_SOFTMAX_BIG)
def softmax_big(ctx):
    check_softmax(ctx, rows(1, 5, 30, scale=100.0))


# ---- 2. the attention kernel --------------------------------------------------------------------------------------------


@GRADER.test(T_WORKED, points=2)
def attention_worked(ctx):
    # 2 query blocks, fewer than B x H = 3 heads: a launch grid with its axes swapped writes only inside O
    # (heads 0 and 1; head 2 reads NaN, see worker_nan_fill.py), so it fails here with a
    # counterexample; and as 2 is neither B nor H, a grid that drops B or H writes other heads
    check_attention(ctx, 1, 3, 24, 16, 16, 16, 0)


@GRADER.test(T_ATTN, points=3, time_limit=240.0)
def attention_property(ctx):
    # sm_scale: None (1/sqrt(Dh), not passed) or a given one
    cases = st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 40), st.sampled_from([16, 32]),
                      st.sampled_from([16, 32]), st.sampled_from([16, 32]), st.integers(0, 2**16),
                      st.sampled_from([None, 0.3, 0.05]))
    ctx.prove(cases, lambda a: check_attention(ctx, *a[:7], sm_scale=a[7]), max_examples=min(ctx.max_examples, 6))


@GRADER.test("edge: N = 1, a prime N, float16 inputs and a given sm_scale", time_limit=120.0)
def attention_edges(ctx):
    check_attention(ctx, 1, 1, 1, 16, 16, 16, 1)
    check_attention(ctx, 1, 1, 37, 16, 16, 16, 2)
    check_attention(ctx, 1, 2, 23, 16, 16, 16, 3, dtype=torch.float16)
    check_attention(ctx, 2, 1, 19, 16, 16, 16, 4, sm_scale=0.3)


@GRADER.test("softmax and flash_attention_forward compute with their kernels (no torch matmul, exp or sum)")
def kernels_do_the_work(ctx):
    from ast_min.assignments.graders.triton_backward import COMPUTATIONS

    x = rows(5, 3, 10)
    q, k, v = (torch.randn(1, 1, 20, 16, generator=torch.Generator().manual_seed(6)).to(DEVICE) for _ in range(3))
    for name, args in (("softmax", (x.to(DEVICE),)), ("flash_attention_forward", (q, k, v))):
        ctx.inputs = dict(zip(("x",) if name == "softmax" else ("q", "k", "v"), args))
        _, computed = ctx.call_watching(COMPUTATIONS, name, *args)
        if computed:
            raise Fail(f"`{name}` ran torch's {', '.join(computed)}: the assignment is the kernel, so the "
                       "computation must happen inside it (the launcher only allocates and launches)")


# ---- 3. timing on a GPU: reported, not graded ----------------------------------------------------------------------------


@GRADER.test("timing against SDPA on a CUDA device (reported, 0 points)", points=0)
def timing(ctx):
    if not CUDA:
        ctx.notes.append("no CUDA device here: timing skipped (the interpreter's speed means nothing)")
        return
    B, H, N, Dh = 4, 8, 1024, 64
    q, k, v = (torch.randn(B, H, N, Dh, device="cuda", dtype=torch.float16) for _ in range(3))

    def best(run, repeats=20):
        run()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return min(times)

    yours = best(lambda: ctx.call("flash_attention_forward", q, k, v, BLOCK_M=64, BLOCK_N=64))
    sdpa = best(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    ctx.notes.append(f"B={B} H={H} N={N} Dh={Dh} fp16: yours {yours * 1e3:.3f} ms, SDPA {sdpa * 1e3:.3f} ms, "
                     f"ratio {yours / sdpa:.2f}x (reported, not graded)")
