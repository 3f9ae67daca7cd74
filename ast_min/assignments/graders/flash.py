"""Grader of `flash`: the online softmax, FlashAttention-2 forward and backward in torch, and no N x N tensor.

Expected values come from `ast_min.kernels.reference.attention_math` (softmax(S) V written out) and autograd
through it, in float64. Tolerance 1e-10 (gradients 1e-9): the blockwise sums regroup a softmax over
N <= 70 keys, whose float64 rounding stays ~1e-14; every mistake below is off by far more at the
inputs drawn (scores of order 1).

float16 and bfloat16 inputs (the task asks for float32 accumulation and float32 results) are
compared with the float64 result on the same (rounded) inputs at 2e-5: converting them to float32
is exact, a score sums Dh = 16 float32 products (relative error <= 16 * 2^-24 = 1e-6 of scores of
order 1), and O sums N <= 70 weighted values (<= 70 * 2^-24 = 4e-6 relative, |v| <= ~4). Keeping
P in float16 instead rounds it by 2^-11 = 5e-4 relative (bfloat16: 2^-8 = 4e-3), errors of order
1e-4 and more: only float32 accumulation passes.

The memory claim is checked by what the student's code cannot switch off: the forward and the
backward each run, for N = 8192, in a fresh worker whose address space may grow by MEMORY_CAP
(48 MB) at most (a hard limit the kernel enforces). One 256 x 256 tile of float64 scores is 0.5 MB
and the inputs and outputs about 3 MB, so the blockwise algorithm fits several times over, while an
N x N matrix cannot: 512 MB in float64, 256 MB in float32, 64 MB even as booleans (a full causal
mask). Its answers are checked too, against references built a slab of rows at a time.

Shape legend: B batch, H heads, N tokens, Dh head dim, R rows.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ast_min.kernels.reference import attention_math
from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake, OutOfMemory

GRADER = Grader("flash", forbidden=(
    "ast_min.kernels", "ast_min.kernels.reference", "torch.nn.functional.scaled_dot_product_attention", "ast_min.model",
))
TOL = dict(atol=1e-10, rtol=1e-10)
GRAD_TOL = dict(atol=1e-9, rtol=1e-9)
MEMORY_N, MEMORY_DH, MEMORY_BLOCK = 8192, 8, 256
MEMORY_CAP = 48 << 20  # bytes of address space beyond Python, torch and the arguments (module docstring)
LOW_TOL = dict(atol=2e-5, rtol=2e-5)  # float16/bfloat16 inputs, float32 accumulation: see the module docstring
SECOND_EXTRA = 13  # tokens the second input of a diagnosis adds: a shrunk N = 1 hides most mistakes
T_ONLINE, T_WORKED, T_FWD, T_BWD, T_MEMORY, T_LOW = (
    "online_softmax: running max and sum for any block size",
    "blockwise_attention: N = 50, Dh = 16, 16 x 16 blocks",
    "blockwise_attention equals softmax(S) V for any sizes, blocks, causal or not",
    "blockwise_attention_backward equals autograd for any sizes, blocks, causal or not",
    "no N x N tensor is ever created (forward and backward)",
    "blockwise_attention: float16 and bfloat16 inputs, float32 accumulation and results",
)

MISTAKES = [
    Mistake("no_rescale", "your accumulator is not rescaled when the running maximum grows: acc must be "
            "multiplied by exp(m_old - m_new) before adding the new block's P @ V (as l is)",
            ("acc = acc * alpha[..., None] + p @ v[:, :, cols]", "acc = acc + p @ v[:, :, cols]"), T_WORKED),
    Mistake("no_scale", "you left out the softmax scale: S = Q K^T * sm_scale, with sm_scale = 1/sqrt(Dh) when None",
            ("scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale\n"
             "    acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32\n    q, k, v = q.to",
             "scale = 1.0 if sm_scale is None else sm_scale\n"
             "    acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32\n    q, k, v = q.to"),
            T_WORKED),
    Mistake("causal_off_by_one", "your causal mask is off by one: query i sees keys 0..i, so mask key j exactly "
            "when j > i",
            ('cols[None, :] > rows[:, None], float("-inf")', 'cols[None, :] > rows[:, None] + 1, float("-inf")'),
            T_FWD),
    Mistake("sum_not_rescaled", "your running sum is not rescaled when the maximum grows: l_new = l * exp(m - m_new) "
            "+ sum(exp(block - m_new))",
            ("l = l * torch.exp(m - m_new) + torch.exp(block - m_new[:, None]).sum(dim=1)",
             "l = l + torch.exp(block - m_new[:, None]).sum(dim=1)"), T_ONLINE),
    Mistake("no_delta", "dS is missing the delta term: dS = P * (dP - delta) with delta = rowsum(dO * O) "
            "(the softmax's Jacobian)",
            ("ds = p * (dp - delta[:, :, rows, None])", "ds = p * dp"), T_BWD),
    Mistake("lse_without_max", "your LSE is log(l) without the running maximum: LSE = m + log(l)",
            ("lse[:, :, rows] = m + torch.log(l)", "lse[:, :, rows] = torch.log(l)"), T_WORKED),
]
HINTS = {m.name: m.hint for m in MISTAKES}


def online_variants(s, block) -> dict[str, torch.Tensor]:
    N = s.shape[-1]
    nb = -(-N // block)
    padded = torch.nn.functional.pad(s, (0, nb * block - N), value=float("-inf")).unflatten(-1, (nb, block))
    running = padded.amax(-1).cummax(-1).values  # (R, nb)
    return {"sum_not_rescaled": torch.exp(padded - running[..., None]).sum((-1, -2))}


def qkv(seed, B, H, N, Dh, count=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, Dh, generator=g, dtype=torch.float64) for _ in range(count)]


def _scores(q, k, causal, scale):
    s = q @ k.transpose(-2, -1) * scale  # (B, H, N, N): the grader may, the student may not
    if causal:
        n = q.shape[-2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return s


def forward_variants(q, k, v, causal, scale, block_n, block_m=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(O, LSE) of each forward mistake, computed from the full score matrix (the causal one needs block_m)."""
    s = _scores(q, k, causal, scale)
    N = s.shape[-1]
    nb = -(-N // block_n)
    padded = torch.nn.functional.pad(s, (0, nb * block_n - N), value=float("-inf"))  # (B, H, N, nb*bn)
    running = padded.unflatten(-1, (nb, block_n)).amax(-1).cummax(-1).values  # (B, H, N, nb): m after each block
    m_per_key = running.repeat_interleave(block_n, dim=-1)[..., :N]  # each key's block's running max
    o_ref, lse_ref = attention_math(q, k, v, causal, scale)
    l = torch.exp(s - s.amax(-1, keepdim=True)).sum(-1)
    no_rescale = (torch.exp(s - m_per_key) @ v) / l[..., None]
    out = {
        "no_rescale": (no_rescale, lse_ref),
        "no_scale": attention_math(q, k, v, causal, 1.0),
        "lse_without_max": (o_ref, lse_ref - s.amax(-1)),
    }
    if causal and block_m is not None:
        # query i sees keys j <= i + 1, among the keys its block's loop visits: the key blocks that start
        # before the block's last row + 1, so key i + 1 is out of reach where a key block ends at i
        rows = torch.arange(N)
        last_key = torch.clamp((rows // block_m + 1) * block_m, max=N)  # each row's block's last row + 1
        reach = torch.clamp(-(-last_key // block_n) * block_n, max=N)  # past the last key the loop visits
        cols = torch.arange(N)
        hidden = (cols[None, :] > rows[:, None] + 1) | (cols[None, :] >= reach[:, None])
        s1 = (q @ k.transpose(-2, -1) * scale).masked_fill(hidden, float("-inf"))
        out["causal_off_by_one"] = (s1.softmax(-1) @ v, torch.logsumexp(s1, -1))
    return out


def forward_call_variants(q, k, v, causal=False, sm_scale=None, block_m=64, block_n=64):
    """forward_variants as a function of blockwise_attention's own arguments, computed in float64."""
    scale = 1 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    return forward_variants(q.double(), k.double(), v.double(), causal, scale, block_n, block_m)


def o_variants(*args, **kwargs):
    return {name: o for name, (o, _) in forward_call_variants(*args, **kwargs).items()}


def lse_variants(*args, **kwargs):
    return {name: lse for name, (_, lse) in forward_call_variants(*args, **kwargs).items()}


def backward_variants(do, q, k, v, o, lse, causal=False, sm_scale=None, block_m=64, block_n=64):
    """{name: (dq, dk)} of the backward's known mistakes."""
    scale = 1 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    p = torch.exp(_scores(q, k, causal, scale) - lse[..., None])  # (B, H, N, N)
    ds = p * (do @ v.transpose(-2, -1))  # the mistake: no delta
    return {"no_delta": (scale * ds @ k, scale * ds.transpose(-2, -1) @ q)}


def check_forward(ctx, B, H, N, Dh, causal, block_m, block_n, seed, sm_scale=None, dtype=torch.float64):
    q, k, v = (t.to(dtype) for t in qkv(seed, B, H, N, Dh))
    scale = 1 / math.sqrt(Dh) if sm_scale is None else sm_scale
    kwargs = dict(causal=causal, sm_scale=sm_scale, block_m=block_m, block_n=block_n)
    ctx.inputs = dict(q=q, k=k, v=v, **kwargs)
    got = ctx.call("blockwise_attention", q.clone(), k.clone(), v.clone(), **kwargs)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Fail(f"blockwise_attention should return (O, LSE), got {type(got).__name__}")
    acc_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    for name, t in zip(("O", "LSE"), got):
        t = ctx.expect_tensor(t, name)
        if t.dtype != acc_dtype:
            raise Fail(f"{name} should be {acc_dtype} for {dtype} inputs (accumulate in float32, float64 for float64 "
                       f"inputs, and return that dtype), got {t.dtype}{ctx.on_inputs()}")
    o_ref, lse_ref = attention_math(q.double(), k.double(), v.double(), causal, scale)
    tol = TOL if dtype == torch.float64 else LOW_TOL
    # the second input that confirms a hint: more tokens (shrunk counterexamples have few), other values
    second = (tuple(t.to(dtype) for t in qkv(seed + 1, B, H, N + SECOND_EXTRA, Dh)), kwargs)
    call = dict(args=(q, k, v), kwargs=kwargs, second=second)
    ctx.compare(got[0], o_ref, "O", **tol, variants=o_variants, hints=HINTS,
                derive=Call("flash", "blockwise_attention", pick=0, axes=("B", "H", "N", "Dh"), **call))
    ctx.compare(got[1], lse_ref, "LSE", **tol, variants=lse_variants, hints=HINTS,
                derive=Call("flash", "blockwise_attention", pick=1, axes=("B", "H", "N"), **call))


def backward_inputs(seed, B, H, N, Dh, causal, sm_scale):
    """do, q, k, v and the forward's o, lse (consistent with them), float64."""
    q, k, v, do = qkv(seed, B, H, N, Dh, count=4)
    o, lse = attention_math(q, k, v, causal, 1 / math.sqrt(Dh) if sm_scale is None else sm_scale)
    return do, q, k, v, o, lse


def check_backward(ctx, B, H, N, Dh, causal, block_m, block_n, seed, sm_scale=None):
    args = backward_inputs(seed, B, H, N, Dh, causal, sm_scale)
    do, q, k, v, o, lse = args
    scale = 1 / math.sqrt(Dh) if sm_scale is None else sm_scale
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = torch.autograd.grad(attention_math(*leaves, causal, scale)[0], leaves, do)
    kwargs = dict(causal=causal, sm_scale=sm_scale, block_m=block_m, block_n=block_n)
    ctx.inputs = dict(do=do, q=q, k=k, v=v, **kwargs)
    got = ctx.call("blockwise_attention_backward", *(t.clone() for t in args), **kwargs)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Fail(f"blockwise_attention_backward should return (dq, dk, dv), got {type(got).__name__}")
    # the second input that confirms a hint: more tokens, other values, the o and lse of the forward on them
    second = (backward_inputs(seed + 1, B, H, N + SECOND_EXTRA, Dh, causal, sm_scale), kwargs)
    for i, (name, g, e) in enumerate(zip(("dq", "dk", "dv"), got, expected)):
        known = (lambda *a, i=i, **kw: {n: pair[i] for n, pair in backward_variants(*a, **kw).items()}) if i < 2 else None
        ctx.compare(g, e, name, **GRAD_TOL, variants=known, hints=HINTS,
                    derive=Call("flash", "blockwise_attention_backward", args, kwargs, pick=i, second=second,
                                axes=("B", "H", "N", "Dh")))


# (B, H, N, Dh, causal, block_m, block_n, seed)
cases = st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 70), st.sampled_from([1, 2, 4, 8, 16]),
                  st.booleans(), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**16))


# ---- 1. shapes ---------------------------------------------------------------------------------------------------


@GRADER.test("blockwise_attention: O (B, H, N, Dh) and LSE (B, H, N)")
def shapes(ctx):
    q, k, v = qkv(0, 2, 3, 20, 8)
    ctx.inputs = dict(q=q, k=k, v=v, block_m=8, block_n=8)
    got = ctx.call("blockwise_attention", q, k, v, block_m=8, block_n=8)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Fail(f"blockwise_attention should return (O, LSE), got {type(got).__name__}")
    ctx.expect_tensor(got[0], "O", (2, 3, 20, 8))
    ctx.expect_tensor(got[1], "LSE", (2, 3, 20))


# ---- 2. worked examples ---------------------------------------------------------------------------------------------


@GRADER.test(T_ONLINE, points=2)
def online(ctx):
    def check(args):
        R, N, block, seed = args
        s = torch.randn(R, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 4
        s = s + torch.linspace(-6, 6, N, dtype=torch.float64)  # rising scores: the maximum keeps growing
        ctx.inputs = dict(scores=s, block_size=block)
        got = ctx.call("online_softmax", s.clone(), block)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Fail(f"online_softmax should return (m, l), got {type(got).__name__}")
        m = s.amax(-1)
        call = dict(args=(s, block), axes=("R",))
        ctx.compare(got[0], m, "m", **TOL, derive=Call("flash", "online_softmax", pick=0, **call))
        ctx.compare(got[1], torch.exp(s - m[:, None]).sum(-1), "l", **TOL, variants=online_variants, hints=HINTS,
                    derive=Call("flash", "online_softmax", pick=1, **call))

    ctx.prove(st.tuples(st.integers(1, 4), st.integers(1, 60), st.integers(1, 20), st.integers(0, 2**16)), check)


@GRADER.test(T_WORKED, points=2)
def worked(ctx):
    check_forward(ctx, 1, 1, 50, 16, False, 16, 16, 0)


# ---- 3. properties -----------------------------------------------------------------------------------------------------


@GRADER.test(T_FWD, points=3)
def forward_property(ctx):
    ctx.prove(cases, lambda a: check_forward(ctx, *a))


@GRADER.test(T_BWD, points=3)
def backward_property(ctx):
    ctx.prove(cases, lambda a: check_backward(ctx, *a), max_examples=max(ctx.max_examples // 2, 4))


def slab_reference(q, k, v, causal, rows=None, slab=512):
    """O and LSE (for `rows`, default all) a slab of query rows at a time: never an N x N matrix."""
    N, scale = q.shape[-2], 1 / math.sqrt(q.shape[-1])
    rows = torch.arange(N) if rows is None else rows
    outs, lses = [], []
    for part in rows.split(slab):
        s = q[:, :, part] @ k.transpose(-2, -1) * scale  # (B, H, slab, N)
        if causal:
            s = s.masked_fill(torch.arange(N)[None, :] > part[:, None], float("-inf"))
        lse = torch.logsumexp(s, -1)
        outs.append(torch.exp(s - lse[..., None]) @ v)
        lses.append(lse)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


def sampled_gradients(do, q, k, v, o, lse, causal, rows, cols):
    """dq at `rows` and dk, dv at `cols` from the definitions, with (rows x N) and (N x cols) slabs only."""
    N, scale = q.shape[-2], 1 / math.sqrt(q.shape[-1])
    delta = (do * o).sum(-1)  # (B, H, N)
    s = q[:, :, rows] @ k.transpose(-2, -1) * scale  # (B, H, r, N)
    keys = torch.arange(N)
    p = torch.exp(s - lse[:, :, rows, None]).masked_fill(causal & (keys[None, :] > rows[:, None]), 0.0)
    dq = scale * (p * (do[:, :, rows] @ v.transpose(-2, -1) - delta[:, :, rows, None])) @ k
    s = q @ k[:, :, cols].transpose(-2, -1) * scale  # (B, H, N, c)
    p = torch.exp(s - lse[..., None]).masked_fill(causal & (cols[None, :] > keys[:, None]), 0.0)
    ds = p * (do @ v[:, :, cols].transpose(-2, -1) - delta[..., None])
    return dq, scale * ds.transpose(-2, -1) @ q, p.transpose(-2, -1) @ do


@GRADER.test(T_MEMORY, points=2)
def memory(ctx):
    N, blocks = MEMORY_N, dict(block_m=MEMORY_BLOCK, block_n=MEMORY_BLOCK)
    q, k, v, do = qkv(5, 1, 1, N, MEMORY_DH, count=4)
    o, lse = slab_reference(q, k, v, True)
    sample = torch.randperm(N, generator=torch.Generator().manual_seed(6))[:32]
    for name, args in (("blockwise_attention", (q, k, v)), ("blockwise_attention_backward", (do, q, k, v, o, lse))):
        ctx.inputs = dict(N=N, Dh=MEMORY_DH, causal=True, **blocks)
        with ctx.memory_limit(MEMORY_CAP):
            try:
                got = ctx.call(name, *args, causal=True, **blocks)
            except OutOfMemory:
                raise Fail(f"`{name}` needed more than {MEMORY_CAP >> 20} MB of memory for N = {N}: FlashAttention "
                           f"holds one ({blocks['block_m']}, {blocks['block_n']}) tile of scores at a time "
                           f"({blocks['block_m'] * blocks['block_n'] * 8 >> 10} KB in float64), never an N x N "
                           f"matrix ({N * N * 8 >> 20} MB in float64, {N * N >> 20} MB even as booleans: a full "
                           "causal mask counts; build the mask per tile from row and column indices)") from None
        if name == "blockwise_attention":
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise Fail(f"blockwise_attention should return (O, LSE), got {type(got).__name__}")
            ctx.compare(got[0], o, "O", **TOL)
            ctx.compare(got[1], lse, "LSE", **TOL)
        else:
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                raise Fail(f"blockwise_attention_backward should return (dq, dk, dv), got {type(got).__name__}")
            dq, dk, dv = (ctx.expect_tensor(g, n, (1, 1, N, MEMORY_DH)) for g, n in zip(got, ("dq", "dk", "dv")))
            expected = sampled_gradients(do, q, k, v, o, lse, True, sample, sample)
            for what, g, e in (("dq", dq[:, :, sample], expected[0]), ("dk", dk[:, :, sample], expected[1]),
                               ("dv", dv[:, :, sample], expected[2])):
                ctx.compare(g, e, f"{what} (at 32 sampled positions)", **GRAD_TOL)


@GRADER.test(T_LOW, points=2)
def low_precision(ctx):
    def check(args):
        dtype, N, causal, seed = args
        check_forward(ctx, 1, 2, N, 16, causal, 16, 16, seed, dtype=dtype)

    ctx.prove(st.tuples(st.sampled_from([torch.float16, torch.bfloat16]), st.integers(1, 70), st.booleans(),
                        st.integers(0, 2**16)), check, max_examples=max(ctx.max_examples // 3, 4))


# ---- 4. edge cases ------------------------------------------------------------------------------------------------------


@GRADER.test("edge: N = 1, a prime N with a ragged last block, causal with N < block, a given sm_scale "
             "(forward and backward)")
def edges(ctx):
    check_forward(ctx, 1, 1, 1, 4, True, 16, 16, 1)
    check_forward(ctx, 1, 2, 37, 8, True, 16, 16, 2)
    check_forward(ctx, 2, 1, 5, 8, True, 64, 64, 3)
    check_forward(ctx, 1, 1, 29, 8, False, 7, 5, 4, sm_scale=0.3)
    check_backward(ctx, 1, 1, 37, 8, True, 16, 8, 5)
    check_backward(ctx, 1, 2, 23, 8, False, 8, 16, 6, sm_scale=0.3)
