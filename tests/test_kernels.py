"""The fused-attention kernel (kernels/) against independent references.

References: float64 attention written out here with torch ops (softmax(q kᵀ s) v, torch.logsumexp),
torch.nn.functional.scaled_dot_product_attention (values, and gradients through autograd),
torch.autograd.gradcheck (finite differences, float64), and for the model test the same AST with
torch's SDPA backend. Without CUDA everything runs through Triton's interpreter (conftest.py sets
TRITON_INTERPRET=1), which is slow, so the drawn shapes are tiny: N up to 70 (the interpreter's
pinned blocks are 32 x 16 / 16 x 32, so that crosses several block boundaries, full, diagonal and
masked-tail blocks alike), B * H up to 4. GPU tests at AST's real shape are skipped without CUDA.

Every buffer the kernels write (O, LSE, delta, dQ, dK, dV) is poisoned with NaN before each launch
(module fixture below), so a test also fails if any element is left unwritten.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min import kernels
from ast_min.kernels import fused_attention, tiles, tuning, variants

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def gpu(test):
    """A test that needs a CUDA device: marked `gpu` (pytest -m gpu selects it) and skipped without one.

    Every such test has "gpu" in its name too: `python -m ast_min.kernels.gpu_table` runs `-k gpu`, which
    also picks up the block-configuration test below, and tests/test_gpu_table.py checks the two agree.
    """
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="needs a CUDA device")(test))


def _runs_here(variant) -> bool:
    # A variant made for newer GPUs only (archs=(90,): TMA) is tested on the CPU and on those GPUs.
    if not CUDA or min(variant.archs) <= 80:
        return True
    major, minor = torch.cuda.get_device_capability()
    return 10 * major + minor >= min(variant.archs)


# Every registered variant (kernels/variant_*.py files register themselves) goes through the same tests.
BACKWARDS = [v.name for v in variants.variants("backward") if _runs_here(v)]
FORWARDS = [v.name for v in variants.variants("forward") if _runs_here(v)]


@pytest.fixture(autouse=True, scope="module")
def poisoned_buffers():
    """Fill every kernel output buffer with NaN (or the dtype's max) instead of leaving torch.empty's garbage."""

    def poisoned(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    # Every launcher allocates through tiles.new_buffer, so one patch poisons them all.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiles, "new_buffer", poisoned)
        yield


# ---- independent references ----------------------------------------------------------------------


def reference_attention(q, k, v, causal, sm_scale):
    """float64 attention written out: returns O (B, H, N, Dh) and LSE (B, H, N)."""
    q, k, v = q.double(), k.double(), v.double()
    s = q @ k.transpose(-2, -1) * sm_scale  # (B, H, N, N)
    if causal:
        n = q.shape[-2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def sdpa_with_grads(q, k, v, do, causal, sm_scale):
    """SDPA in float64 on the same values, and its autograd gradients for the upstream gradient do."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=sm_scale)
    return (o.detach(), *torch.autograd.grad(o, (q, k, v), do.double()))


# ---- drawing inputs ------------------------------------------------------------------------------

# lengths: 1, primes, and the neighbours of the interpreter's block sizes (16, 32) and of 64
LENGTHS = [1, 2, 3, 5, 7, 13, 15, 16, 17, 23, 31, 32, 33, 37, 47, 48, 49, 61, 63, 64, 65, 67, 70]
LAYOUTS = ["contiguous", "bnhd", "fused_qkv", "strided_d", "expanded_batch"]


def make_qkv(B, H, N, Dh, dtype, layout, generator):
    """q, k, v of shape (B, H, N, Dh) with the memory layout named by `layout` (all but the first are views)."""

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float32).to(dtype).to(DEVICE)

    if layout == "contiguous":
        return [randn(B, H, N, Dh) for _ in range(3)]
    if layout == "bnhd":  # (B, N, H, Dh) activations viewed as heads, as a model does
        return [randn(B, N, H, Dh).transpose(1, 2) for _ in range(3)]
    if layout == "fused_qkv":  # one (B, N, 3, H, Dh) projection split into q, k, v: AST's case
        qkv = randn(B, N, 3, H, Dh)
        return [qkv[:, :, i].transpose(1, 2) for i in range(3)]
    if layout == "strided_d":  # every other element of the last dim: stride 2 where Dh is
        return [randn(B, H, N, 2 * Dh)[..., ::2] for _ in range(3)]
    if layout == "expanded_batch":  # one batch element broadcast: batch stride 0
        return [randn(1, H, N, Dh).expand(B, H, N, Dh) for _ in range(3)]
    raise AssertionError(layout)


def make_grad(shape, dtype, transposed, generator):
    do = torch.randn(*shape, generator=generator).to(dtype).to(DEVICE)
    return do.transpose(1, 2).contiguous().transpose(1, 2) if transposed else do  # same values, other strides


# ---- tolerances ----------------------------------------------------------------------------------
# The references see exactly the kernel's input values (fp16 inputs are upcast), so only the kernel's
# own rounding is measured. With IEEE fp32 matmuls (fp32 inputs) the kernel differs from float64 only
# by fp32 rounding (2^-24 relative per operation, accumulated over the Dh-long dot products and the
# key loop); the errors observed are <= 3e-7 (kernels.bench's CPU run, and NOTES.md's run at AST's
# shape), so 2e-5 (times max|v| >= 1) leaves over 60x margin. fp16: P is rounded to fp16 before
# P @ V (relative 2^-11 per weight, so up to 2^-11 * max|v| absolute) and O is stored in fp16
# (another half-ulp, 2^-11 relative): 4 * 2^-11 * max|v| bounds both with 2x slack. The LSE is always accumulated and stored in fp32: 2e-5 absolute.
# Gradients chain three roundings in fp16 (P, dS, the stored result) on values of size max|ref|:
# 8 * 2^-11 of that scale; in fp32 the same 2e-5-relative argument as O. Every score's rounding
# error is proportional to scale * sum_d |q_d k_d| (smax below), not to |s|, so when smax exceeds
# ~16 (large inputs or scale) all tolerances grow in proportion.


def assert_close_scaled(actual, expected, rel, scale, what):
    """|actual - expected| <= rel * scale everywhere, with `scale` the magnitude of the quantity (>= 1)."""
    assert torch.isfinite(actual).all(), f"{what}: non-finite elements (unwritten, poisoned buffer?)"
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:.3g} * {scale:.3g}"


def rel_tolerance(dtype, grads=False):
    if dtype == torch.float16:
        return (8 if grads else 4) * 2.0**-11
    if dtype == torch.bfloat16:
        return (8 if grads else 4) * 2.0**-8
    return 2e-5


def magnitude(t):
    return max(1.0, t.abs().max().item()) if t.numel() else 1.0


def check_forward_backward(q, k, v, do, causal, sm_scale, dtype, backward="split", forward="standard"):
    """The kernel's O, LSE, dQ, dK, dV against float64 math and float64 SDPA, all at once."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    o, lse = kernels.flash_attention(q, k, v, causal=causal, sm_scale=sm_scale, input_precision="ieee", return_lse=True,
                                     backward=backward, forward=forward)
    assert o.shape == q.shape and o.dtype == dtype and lse.shape == q.shape[:3]
    dq, dk, dv = torch.autograd.grad(o, (q, k, v), do)

    o_math, lse_math = reference_attention(q, k, v, causal, scale)
    o_sdpa, dq_ref, dk_ref, dv_ref = sdpa_with_grads(q, k, v, do, causal, scale)
    smax = ((q.detach().double().abs() @ k.detach().double().abs().transpose(-2, -1)) * abs(scale)).max().item() if q.numel() else 0.0
    growth = max(1.0, smax / 16)
    rel = rel_tolerance(dtype) * growth
    vmax = magnitude(v)
    assert_close_scaled(o, o_math, rel, vmax, "O vs float64 math")
    assert_close_scaled(o, o_sdpa, rel, vmax, "O vs SDPA")
    assert_close_scaled(lse, lse_math, 2e-5 * growth, magnitude(lse_math), "LSE vs float64 logsumexp")
    rel_g = rel_tolerance(dtype, grads=True) * growth
    for name, got, ref in (("dq", dq, dq_ref), ("dk", dk, dk_ref), ("dv", dv, dv_ref)):
        assert got.shape == ref.shape and got.dtype == dtype
        assert_close_scaled(got, ref, rel_g, magnitude(ref), f"{name} vs SDPA autograd")


# ---- forward and backward, drawn -----------------------------------------------------------------


@settings(max_examples=50)
@given(
    bh=st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 2), (1, 4), (4, 1)]),
    n=st.sampled_from(LENGTHS),
    head_dim=st.sampled_from([16, 32, 64]),
    causal=st.booleans(),
    sm_scale=st.one_of(st.none(), st.floats(0.02, 0.5)),
    dtype=st.sampled_from([torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])),
    layout=st.sampled_from(LAYOUTS),
    grad_transposed=st.booleans(),
    backward=st.sampled_from(BACKWARDS),
    forward=st.sampled_from(FORWARDS),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_and_gradients_match_float64_and_sdpa(bh, n, head_dim, causal, sm_scale, dtype, layout, grad_transposed,
                                                      backward, forward, seed):
    B, H = bh
    g = torch.Generator().manual_seed(seed)
    q, k, v = make_qkv(B, H, n, head_dim, dtype, layout, g)
    do = make_grad((B, H, n, head_dim), dtype, grad_transposed, g)
    check_forward_backward(q, k, v, do, causal, sm_scale, dtype, backward, forward)


@pytest.mark.parametrize("forward", FORWARDS)
@pytest.mark.parametrize("causal", [False, True])
def test_every_forward_variant_at_block_boundaries(forward, causal):
    # N = 49 with Dh 24 (a padded head dim): partial tails for every interpreter block size.
    g = torch.Generator().manual_seed(24)
    q, k, v = make_qkv(1, 2, 49, 24, torch.float32, "fused_qkv", g)
    check_forward_backward(q, k, v, make_grad(q.shape, torch.float32, True, g), causal, None, torch.float32, "split", forward)


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("causal", [False, True])
def test_every_backward_variant_at_block_boundaries(backward, causal):
    # N = 49 crosses the interpreter's 16- and 32-row blocks with a partial tail; two (batch, head)
    # pairs share the kernels' grid. Each variant must give SDPA's gradients, not only the default.
    g = torch.Generator().manual_seed(49)
    q, k, v = make_qkv(1, 2, 49, 32, torch.float32, "fused_qkv", g)
    check_forward_backward(q, k, v, make_grad(q.shape, torch.float32, True, g), causal, None, torch.float32, backward)


def test_unknown_backward_variant_names_the_registered_ones():
    q = torch.randn(1, 1, 4, 16, device=DEVICE)
    with pytest.raises(ValueError, match="registered: .*split"):
        kernels.flash_attention(q, q, q, backward="nope")


def test_the_smallest_variant_contributing_shows_runs_by_name(monkeypatch):
    # CONTRIBUTING's first step: a launcher that calls an existing one, registered under a new name,
    # is what flash_attention(forward=name) runs; the reference is float64 attention written out.
    calls = []

    def forward(q, k, v, causal, sm_scale, input_precision):
        calls.append(q.shape)
        return fused_attention.attention_forward(q, k, v, causal, sm_scale, input_precision)

    monkeypatch.setitem(variants._REGISTRY, ("forward", "smallest"), variants.Variant("smallest", "forward", forward))
    g = torch.Generator().manual_seed(5)
    q, k, v = make_qkv(1, 2, 37, 16, torch.float32, "contiguous", g)
    o = kernels.flash_attention(q, k, v, forward="smallest", input_precision="ieee")
    assert calls == [q.shape]
    torch.testing.assert_close(o.double(), reference_attention(q, k, v, False, 0.25)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head_dim", [1, 8, 24, 40, 80, 96, 100, 128])
def test_head_dims_that_are_not_16_32_64_are_padded_inside_the_kernel(head_dim):
    # Decision (documented in kernels/__init__.py and NOTES.md): any Dh in 1..128 works; the tile is
    # the next power of two >= 16 and the loads zero the extra columns. 80 and 96 are the common ones.
    g = torch.Generator().manual_seed(head_dim)
    q, k, v = make_qkv(1, 2, 37, head_dim, torch.float32, "bnhd", g)
    do = make_grad((1, 2, 37, head_dim), torch.float32, False, g)
    for causal in (False, True):
        check_forward_backward(q, k, v, do, causal, None, torch.float32)


def test_large_scores_do_not_overflow():
    # Scores of several hundred: exp would overflow fp32 without the running-max subtraction.
    g = torch.Generator().manual_seed(0)
    q, k, v = make_qkv(1, 1, 33, 32, torch.float32, "contiguous", g)
    check_forward_backward(q * 6, k * 6, v, make_grad(q.shape, torch.float32, False, g), False, 1.0, torch.float32)


def test_upstream_gradient_with_zero_strides():
    # o.sum().backward() hands the kernel an expanded tensor of ones: every stride of dO is 0.
    g = torch.Generator().manual_seed(3)
    q, k, v = (t.requires_grad_() for t in make_qkv(2, 2, 29, 32, torch.float32, "contiguous", g))
    kernels.flash_attention(q, k, v).sum().backward()
    _, *refs = sdpa_with_grads(q, k, v, torch.ones(q.shape, dtype=torch.float64, device=DEVICE), False, 32**-0.5)
    for got, ref in zip((q.grad, k.grad, v.grad), refs):
        assert_close_scaled(got, ref, 2e-5, magnitude(ref), "gradient of o.sum()")


@pytest.mark.parametrize("backward", BACKWARDS)
@settings(max_examples=3)
@given(causal=st.booleans(), n=st.sampled_from([17, 33, 40]), seed=st.integers(0, 2**31 - 1))
def test_gradcheck_float64(backward, causal, n, seed):
    # float64 runs the same kernels with fp64 tiles, so finite differences can check the backward.
    g = torch.Generator().manual_seed(seed)
    q, k, v = (t.double().requires_grad_() for t in make_qkv(1, 2, n, 16, torch.float32, "contiguous", g))
    fn = lambda q, k, v: kernels.flash_attention(q, k, v, causal=causal, backward=backward)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_tf32_precision_is_selectable_and_default_follows_torch():
    # On the CPU interpreter both are exact; on a GPU "tf32" is ~1e-3 off (checked in the GPU test).
    g = torch.Generator().manual_seed(1)
    q, k, v = make_qkv(1, 1, 20, 16, torch.float32, "contiguous", g)
    o_math, _ = reference_attention(q, k, v, False, 0.25)
    for precision in (None, "ieee", "tf32"):
        o = kernels.flash_attention(q, k, v, input_precision=precision)
        tol = 2e-2 if (CUDA and precision == "tf32") else 2e-5
        assert_close_scaled(o, o_math, tol, magnitude(v), f"input_precision={precision}")
    assert tiles.input_precision_for(torch.float32, None) == (
        "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32")
    assert tiles.input_precision_for(torch.float16, "tf32") == "ieee"  # only fp32 has the choice


def test_empty_inputs():
    for shape in [(2, 3, 0, 16), (0, 3, 5, 16)]:
        q = torch.randn(shape, device=DEVICE, requires_grad=True)
        o = kernels.flash_attention(q, q, q)
        assert o.shape == shape
        (dq,) = torch.autograd.grad(o.sum(), q, allow_unused=True)
        assert dq is None or dq.shape == shape


def test_double_backward_is_refused():
    q = torch.randn(1, 1, 5, 16, device=DEVICE, dtype=torch.float64, requires_grad=True)
    w = torch.randn_like(q, requires_grad=True)  # an upstream gradient that itself needs a gradient
    o = kernels.flash_attention(q, q, q)
    with pytest.raises(RuntimeError, match="double backward .*once_differentiable"):  # refused when asked for
        torch.autograd.grad(o, q, grad_outputs=w, create_graph=True)


# ---- the pure-torch blockwise reference (kernels/reference.py) -----------------------------------


@settings(max_examples=20)
@given(
    b=st.integers(1, 2), h=st.integers(1, 2), n=st.integers(1, 70), head_dim=st.sampled_from([3, 16, 33]),
    causal=st.booleans(), block_m=st.sampled_from([1, 7, 16, 64]), block_n=st.sampled_from([1, 5, 16, 64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_blockwise_reference_matches_sdpa(b, h, n, head_dim, causal, block_m, block_n, seed):
    # float64 throughout: the loops must equal SDPA to rounding (1e-12), values and gradients.
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(b, h, n, head_dim, generator=g, dtype=torch.float64) for _ in range(4))
    o, lse = kernels.blockwise_attention(q, k, v, causal, 0.3, block_m, block_n)
    o_ref, dq_ref, dk_ref, dv_ref = sdpa_with_grads(q, k, v, do, causal, 0.3)
    torch.testing.assert_close(o, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, reference_attention(q, k, v, causal, 0.3)[1], rtol=1e-12, atol=1e-12)
    grads = kernels.blockwise_attention_backward(do, q, k, v, o, lse, causal, 0.3, block_m, block_n)
    for got, ref in zip(grads, (dq_ref, dk_ref, dv_ref)):
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)
    o_math, lse_math = kernels.attention_math(q, k, v, causal, 0.3)
    torch.testing.assert_close(o_math, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse_math, lse, rtol=1e-12, atol=1e-12)


# ---- tuning invariants ---------------------------------------------------------------------------


def test_every_config_aligns_the_causal_diagonal():
    # The loops split at the diagonal, which needs the outer block to be a multiple of the inner one.
    for cfg in tuning.FORWARD_GPU + tuning.FORWARD_INTERPRETER + tuning.BACKWARD_DQ_GPU + tuning.BACKWARD_DQ_INTERPRETER:
        assert cfg.kwargs["BLOCK_M"] % cfg.kwargs["BLOCK_N"] == 0, cfg
    for cfg in (tuning.BACKWARD_DKDV_GPU + tuning.BACKWARD_DKDV_INTERPRETER
                + tuning.BACKWARD_FUSED_GPU + tuning.BACKWARD_FUSED_INTERPRETER):
        assert cfg.kwargs["BLOCK_N"] % cfg.kwargs["BLOCK_M"] == 0, cfg
    assert len(tuning.FORWARD_INTERPRETER) == len(tuning.BACKWARD_DKDV_INTERPRETER) == len(tuning.BACKWARD_DQ_INTERPRETER) == 1


def test_block_invariants_are_asserted_inside_the_kernels(monkeypatch):
    # A forward config whose query block is not a multiple of its key block would misalign the causal
    # diagonal: tl.static_assert stops it when the kernel is built, before any wrong number exists.
    monkeypatch.setattr(fused_attention, "_attn_fwd_tuned", tuning.autotune(fused_attention._attn_fwd, tuning._configs([(16, 32, 4, 1)])))
    q = torch.randn(1, 1, 40, 16, device=DEVICE)
    with pytest.raises(Exception, match="BLOCK_M to be a multiple of BLOCK_N"):
        kernels.flash_attention(q, q, q)


def test_head_dim_tile_below_16_is_refused_with_tritons_own_rule(monkeypatch):
    # Triton's NVIDIA backend asks tl.dot for (M, N, K) >= (1, 1, 16) on 16-bit operands: only the
    # reduction side K has a minimum. The head-dim tile is the K of Q Kᵀ, so the kernel asserts it
    # (the launcher pads Dh 8 to 16; here the padding is removed to see the assertion speak).
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import min_dot_size

    for arch in (80, 90):
        assert min_dot_size(GPUTarget("cuda", arch, 32))(tl.float16, tl.float16) == (1, 1, 16)
    monkeypatch.setattr(tiles, "block_d", lambda head_dim: head_dim)
    q = torch.randn(1, 1, 20, 8, device=DEVICE)
    with pytest.raises(Exception, match=r"reduction side K >= 16"):
        kernels.flash_attention(q, q, q)


@pytest.mark.parametrize("i", range(max(len(tuning.FORWARD_GPU), len(tuning.BACKWARD_DKDV_GPU), len(tuning.BACKWARD_DQ_GPU),
                                       len(tuning.BACKWARD_FUSED_GPU))))
def test_every_gpu_block_config_is_correct(i, monkeypatch):
    # Each GPU autotune candidate pinned on its own (autotuning would only ever check the winner), at
    # N = 300, a multiple of none of the block sizes, through every backward variant. On a CPU this runs
    # the block shapes through the interpreter, which ignores warps and stages; on a GPU it runs each
    # configuration as compiled, warps and stages included: the check a change of num_warps needs.
    from ast_min.kernels import variant_fused_backward as fused

    pick = lambda configs: [configs[i % len(configs)]]  # noqa: E731
    monkeypatch.setattr(fused_attention, "_attn_fwd_tuned", tuning.autotune(fused_attention._attn_fwd, pick(tuning.FORWARD_GPU)))
    monkeypatch.setattr(fused_attention, "_attn_bwd_dkdv_tuned",
                        tuning.autotune(fused_attention._attn_bwd_dkdv, pick(tuning.BACKWARD_DKDV_GPU)))
    monkeypatch.setattr(fused_attention, "_attn_bwd_dq_tuned", tuning.autotune(fused_attention._attn_bwd_dq, pick(tuning.BACKWARD_DQ_GPU)))
    monkeypatch.setattr(fused, "_attn_bwd_fused_tuned",
                        tuning.autotune(fused._attn_bwd_fused, pick(tuning.BACKWARD_FUSED_GPU), reset_to_zero=["DQ"]))
    g = torch.Generator().manual_seed(i)
    q, k, v = make_qkv(1, 1, 300, 64, torch.float32, "bnhd", g)
    do = make_grad(q.shape, torch.float32, False, g)
    for backward in BACKWARDS:
        check_forward_backward(q, k, v, do, i % 2 == 1, None, torch.float32, backward)


# ---- clear errors --------------------------------------------------------------------------------


def _t(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE).to(dtype)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((_t(2, 5, 16), _t(2, 5, 16), _t(2, 5, 16)), {}, "4 dimensions"),
        ((_t(1, 2, 5, 16), _t(1, 2, 6, 16), _t(1, 2, 6, 16)), {}, "same shape"),
        ((_t(1, 2, 5, 16), _t(1, 2, 5, 16, dtype=torch.float16), _t(1, 2, 5, 16)), {}, "one dtype"),
        ((_t(1, 2, 5, 16).int(),) * 3, {}, "dtype torch.int32 is not supported"),
        ((_t(1, 2, 5, 256),) * 3, {}, "head dim 256"),
        ((torch.empty(1, 2, 5, 0, device=DEVICE),) * 3, {}, "head dim 0"),
        ((torch.empty(1, 1, 1, 16, device=DEVICE).expand(65536, 1, 1, 16),) * 3, {}, "65535"),
        ((_t(1, 2, 5, 16),) * 3, {"causal": 1}, "causal must be True or False"),
        ((_t(1, 2, 5, 16),) * 3, {"sm_scale": float("nan")}, "sm_scale"),
        ((_t(1, 2, 5, 16),) * 3, {"input_precision": "tf32x3"}, "input_precision"),
        (("q", "k", "v"), {}, "must be a torch.Tensor"),
    ],
    ids=["ndim", "shapes", "dtypes", "int", "dh256", "dh0", "grid", "causal", "scale", "precision", "not-tensor"],
)
def test_unsupported_inputs_raise_clear_value_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernels.flash_attention(*args, **kwargs)


def test_mixed_devices_are_refused():
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="one device"):
        kernels.flash_attention(q, q.to("meta"), q)


def test_unsupported_device_is_refused():
    q = torch.randn(1, 1, 4, 16, device="meta")
    with pytest.raises(ValueError, match="use a CUDA device"):
        kernels.flash_attention(q, q, q)


@pytest.mark.skipif(CUDA, reason="the interpreter's bf16 limitation is a CPU matter")
def test_bfloat16_on_the_interpreter_is_refused():
    q = torch.randn(1, 1, 4, 16, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="bfloat16 is not supported by Triton's CPU interpreter"):
        kernels.flash_attention(q, q, q)


def test_cpu_tensors_without_the_interpreter_say_how_to_enable_it(monkeypatch):
    monkeypatch.setattr(fused_attention, "INTERPRETER", False)
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.flash_attention(q, q, q)


def test_missing_triton_is_reported_and_imports_still_work():
    # A fresh interpreter in which `import triton` fails, as on macOS.
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import ast_min, torch\nfrom ast_min import kernels\n"
        "assert kernels.TRITON_AVAILABLE is False\n"
        "q = torch.zeros(1, 1, 4, 16)\n"
        "try:\n"
        "    kernels.flash_attention(q, q, q)\n"
        "except RuntimeError as e:\n"
        "    assert 'triton' in str(e) and 'not installed' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        # The model's "triton" backend reports the same missing package instead of a NameError deep inside.
        "from ast_min import ASTConfig, ASTForAudioClassification\n"
        "config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32,\n"
        "                   num_mel_bins=16, max_length=16, num_labels=2)\n"
        "try:\n"
        "    model = ASTForAudioClassification(config)\n"
        "    model.set_attn_implementation('triton')\n"
        "    model(torch.zeros(1, 16, 16))\n"
        "except Exception as e:\n"
        "    assert 'triton' in str(e).lower(), repr(e)\n"
        "else:\n"
        "    raise SystemExit('the triton backend ran without triton')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---- GPU: AST's real shape -----------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_ast_shape(dtype, causal):
    # AST: B x 12 heads x 1214 tokens x 64, no block size divides 1214. The model's q, k, v layout.
    g = torch.Generator().manual_seed(0)
    q, k, v = make_qkv(2, 12, 1214, 64, dtype, "fused_qkv", g)
    do = make_grad((2, 12, 1214, 64), dtype, True, g)
    check_forward_backward(q, k, v, do, causal, None, dtype)


@gpu
def test_gpu_tf32_default_is_close_but_not_exact():
    g = torch.Generator().manual_seed(0)
    q, k, v = make_qkv(1, 12, 1214, 64, torch.float32, "bnhd", g)
    o = kernels.flash_attention(q, k, v, input_precision="tf32")
    o_math, _ = reference_attention(q, k, v, False, 0.125)
    assert_close_scaled(o, o_math, 1e-2, magnitude(v), "tf32")  # TF32 has a 10-bit mantissa: ~1e-3 relative
    # ... and not exact: TF32 rounds each matmul input to 2^-11 relative; rounding these q, k, P, v
    # so (to nearest) in float64 math gives a max error of 2.2e-4 (~4.6e-5 * max|v|), 2.3 times the
    # IEEE path's fp32 tolerance (rel_tolerance(float32) = 2e-5 * max|v|, which the same kernel meets with
    # input_precision="ieee"): a "tf32" that silently ran in IEEE fp32 would fail here.
    err = (o.double() - o_math).abs().max().item()
    assert err > rel_tolerance(torch.float32) * magnitude(v), f"tf32 error {err:.3g} is IEEE-fp32 small: was TF32 used?"


@gpu
@pytest.mark.parametrize("head_dim", [16, 32, 80, 96, 128])
def test_gpu_head_dims(head_dim):
    g = torch.Generator().manual_seed(head_dim)
    q, k, v = make_qkv(2, 4, 1000, head_dim, torch.float16, "bnhd", g)
    check_forward_backward(q, k, v, make_grad(q.shape, torch.float16, False, g), False, None, torch.float16)


# ---- the whole model through the kernel ----------------------------------------------------------


@settings(max_examples=3)
@given(batch=st.integers(1, 2), seed=st.integers(0, 2**31 - 1))
def test_ast_with_triton_backend_equals_sdpa_backend_forward_and_gradients(batch, seed):
    # A small AST: hidden 32, 2 heads of 16, 2 layers, 32 mel bins x 96 frames, 16x16 patches with
    # stride 10 -> (32-16)//10+1 = 2 x (96-16)//10+1 = 9 patches + [CLS] + [DIST] = L = 20 tokens,
    # which crosses the interpreter's 16-key block. Weights are redrawn larger than the init so that
    # attention is far from uniform. The reference is the same model with torch's SDPA backend.
    from ast_min import ASTConfig, ASTForAudioClassification

    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=32, max_length=96, patch_size=16, frequency_stride=10, time_stride=10,
                       num_labels=5)
    g = torch.Generator().manual_seed(seed)
    model = ASTForAudioClassification(config).to(DEVICE).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x = torch.randn(batch, 96, 32, generator=g).to(DEVICE)
    labels = torch.randint(0, 5, (batch,), generator=g).to(DEVICE)

    calls = []
    original = kernels.flash_attention

    def counting_flash_attention(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    results = {}
    for backend in ("sdpa", "triton"):
        model.set_attn_implementation(backend)
        model.zero_grad()
        kernels.flash_attention = counting_flash_attention
        try:
            out = model(x, labels=labels)
        finally:
            kernels.flash_attention = original
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results[backend] = (out.logits.detach(), out.last_hidden_state.detach(), grads)

    # The kernel matches SDPA to ~1e-6 per attention call (IEEE fp32, the default under torch's
    # "highest" matmul precision); two pre-norm layers and the head amplify that by at most the
    # LayerNorm gains (~|w| / std ~ 10 here): 1e-4 relative to each quantity's size.
    assert calls == [(batch, 2, 20, 16)] * 2, "the triton backend must call the kernel once per layer"
    (logits_s, hidden_s, grads_s), (logits_t, hidden_t, grads_t) = results["sdpa"], results["triton"]
    assert_close_scaled(logits_t, logits_s, 1e-4, magnitude(logits_s), "logits")
    assert_close_scaled(hidden_t, hidden_s, 1e-4, magnitude(hidden_s), "last_hidden_state")
    for name, grad in grads_s.items():
        assert_close_scaled(grads_t[name], grad, 1e-4, magnitude(grad), f"grad of {name}")


# ---- the benchmark command -----------------------------------------------------------------------


@pytest.mark.skipif(CUDA, reason="on a GPU this would run the full benchmark")
def test_bench_on_cpu_runs_the_interpreter_and_reports_agreement(tmp_path, capsys):
    from ast_min.kernels import bench

    out = tmp_path / "table.md"
    assert bench.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "TIMINGS ARE MEANINGLESS" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| tiny")]
    triton = ["triton"] + [f"triton-{v.name}" for v in variants.variants() if v.name not in ("split", "standard")]
    assert {(r[5].strip(), r[6].strip()) for r in rows} == {(d, p) for d in ("fp32", "fp16") for p in triton + ["sdpa", "eager"]}
    for r in rows:  # max |O - SDPA fp32|: the kernel agrees to rounding (fp16: 4 * 2^-11 * max|v| ~ 8e-3)
        assert float(r[-2]) < (2e-5 if r[5].strip() == "fp32" else 8e-3), r
        assert (r[-1].strip() != "") == r[6].strip().startswith("triton"), r  # the cost model beside each kernel row
