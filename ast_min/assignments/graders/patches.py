"""Grader of `patches`: the patch grid, patchify in ast-min's layout, and the patch embedding as a matmul.

Expected values: `ast_min.model.patchify` and `torch.nn.functional.conv2d` (the convolution the
embedding must equal), in float64. patchify copies values, so it must be exact; the embedding sums
p*p products whose rounding (~p^2 * 1e-16 relative) stays far below the 1e-10 tolerance.

Shape legend: B batch, T frames, F mel bins, p patch size, f x t grid, P = f*t, D hidden size.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ast_min import model
from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake

GRADER = Grader("patches", forbidden=("ast_min.model", "torch.nn.functional.conv2d", "torch.conv2d"))
EXACT = dict(atol=0.0, rtol=0.0)
TOL = dict(atol=1e-10, rtol=1e-10)
T_GRID, T_WORKED, T_PATCH, T_EMBED = (
    "grid_size: (f, t) for any size and strides",
    "patchify: a 2 x 6 x 5 batch, 3 x 3 patches, strides (2, 3)",
    "patchify equals ast-min's for any (T, F), patch size and strides",
    "patch_embed equals the convolution for any sizes",
)

MISTAKES = [
    Mistake(
        "time_major_order",
        "your patches are in time-major order (j*f + i); AST orders them frequency-major, patch (i, j) at "
        "index i*t + j, as Conv2d's output (B, D, f, t) flattens",
        ("return patches.reshape(B, f * t, patch_size * patch_size)",
         "return patches.transpose(1, 2).reshape(B, f * t, patch_size * patch_size)"),
        T_WORKED,
    ),
    Mistake(
        "patch_flattened_time_major",
        "each of your patches is flattened time-major (frame c, bin b at c*p + b); flatten it frequency-major, "
        "the order of the Conv2d weight (D, 1, p, p) over the (F, T) image",
        ("return patches.reshape(B, f * t, patch_size * patch_size)",
         "return patches.transpose(-1, -2).reshape(B, f * t, patch_size * patch_size)"),
        T_PATCH,
    ),
    Mistake(
        "strides_swapped",
        "you swapped the strides: frequency_stride steps along the mel bins (F), time_stride along the frames (T)",
        ("unfold(1, patch_size, frequency_stride)  # (B, f, T, p)\n    patches = patches.unfold(2, patch_size, time_stride)",
         "unfold(1, patch_size, time_stride)  # (B, f, T, p)\n    patches = patches.unfold(2, patch_size, frequency_stride)"),
        T_PATCH,
    ),
    Mistake(
        "grid_missing_plus_one",
        "your grid is one short: a patch fits at 0, s, 2s, ... up to (n - p), which is (n - p) // s + 1 positions",
        ("f = (num_mel_bins - patch_size) // frequency_stride + 1", "f = (num_mel_bins - patch_size) // frequency_stride"),
        T_GRID,
    ),
]
HINTS = {m.name: m.hint for m in MISTAKES}


def spectrograms(seed: int, B: int, T: int, F: int) -> torch.Tensor:
    return torch.randn(B, T, F, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def larger(x: torch.Tensor) -> torch.Tensor:
    """A second input for a diagnosis: more frames and bins than a shrunk counterexample has, other values."""
    B, T, F = x.shape
    return spectrograms(T * 31 + F, B, T + 11, F + 7)


def grid_variants(T, F, p, sf, st_) -> dict[str, torch.Tensor]:
    return {"grid_missing_plus_one": torch.tensor([(F - p) // sf, (T - p) // st_]),
            "grid_missing_plus_one#2": torch.tensor([(F - p) // sf, (T - p) // st_ + 1])}


def patch_variants(x, p, sf, st_) -> dict[str, torch.Tensor]:
    ref = model.patchify(x, p, sf, st_)
    B, P = ref.shape[:2]
    f = (x.shape[2] - p) // sf + 1
    t = P // f
    grid = ref.reshape(B, f, t, p, p)
    return {
        "time_major_order": grid.transpose(1, 2).reshape(B, P, p * p),
        "patch_flattened_time_major": grid.transpose(-1, -2).reshape(B, P, p * p),
        "strides_swapped": model.patchify(x, p, st_, sf),
    }


def embed_variants(x, weight, bias, sf, st_) -> dict[str, torch.Tensor]:
    p = weight.shape[-1]
    return {k: v @ weight.reshape(weight.shape[0], -1).T + bias for k, v in patch_variants(x, p, sf, st_).items()}


def check_patchify(ctx, x, p, sf, st_):
    ctx.inputs = dict(input_values=x, patch_size=p, frequency_stride=sf, time_stride=st_)
    ctx.compare(ctx.call("patchify", x.clone(), p, sf, st_), model.patchify(x, p, sf, st_), "patchify's output",
                **EXACT, variants=patch_variants, hints=HINTS,
                derive=Call("patches", "patchify", (x, p, sf, st_), second=((larger(x), p, sf, st_), {}),
                            axes=("B", "P", "p*p")))


def check_embed(ctx, x, weight, bias, sf, st_):
    ctx.inputs = dict(input_values=x, weight=weight, bias=bias, frequency_stride=sf, time_stride=st_)
    conv = torch.nn.functional.conv2d(x.unsqueeze(1).transpose(2, 3), weight, bias, stride=(sf, st_))  # (B, D, f, t)
    expected = conv.flatten(2).transpose(1, 2)  # (B, P, D), frequency-major
    ctx.compare(ctx.call("patch_embed", x.clone(), weight, bias, sf, st_), expected, "patch_embed's output", **TOL,
                variants=embed_variants, hints=HINTS,
                derive=Call("patches", "patch_embed", (x, weight, bias, sf, st_),
                            second=((larger(x), weight, bias, sf, st_), {}), axes=("B", "P", "D")))


# (patch size, frequency stride, time stride, extra frames, extra bins, batch, seed); strides may exceed p (gaps)
cases = st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 8), st.integers(0, 12), st.integers(0, 12),
                  st.integers(1, 2), st.integers(0, 2**16))


# ---- 1. shapes -------------------------------------------------------------------------------------------------


@GRADER.test(T_GRID)
def grid(ctx):
    def check(args):
        p, sf, st_, dt, df, _, _ = args
        T, F = p + dt, p + df
        ctx.inputs = dict(num_frames=T, num_mel_bins=F, patch_size=p, frequency_stride=sf, time_stride=st_)
        got = ctx.call("grid_size", T, F, p, sf, st_)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Fail(f"grid_size should return a pair (f, t), got {got!r}")
        expected = torch.tensor([(F - p) // sf + 1, (T - p) // st_ + 1])
        # the second input that confirms a hint: other sizes, the same patch and strides
        second = ((T + 31, F + 37, p, sf, st_), {})
        ctx.compare(torch.tensor([int(v) for v in got]), expected, "(f, t)", **EXACT, variants=grid_variants,
                    hints=HINTS, derive=Call("patches", "grid_size", (T, F, p, sf, st_), second=second))

    ctx.prove(cases, check)


@GRADER.test("patchify: output shape (B, f*t, p*p)")
def patch_shape(ctx):
    x = spectrograms(0, 2, 20, 12)
    ctx.inputs = dict(input_values=x, patch_size=4, frequency_stride=3, time_stride=5)
    ctx.expect_tensor(ctx.call("patchify", x, 4, 3, 5), "patchify's output", (2, 3 * 4, 16))


# ---- 2. the worked example -----------------------------------------------------------------------------------------


@GRADER.test(T_WORKED, points=2)
def worked(ctx):
    x = torch.arange(2 * 6 * 5, dtype=torch.float64).reshape(2, 6, 5)  # (B, T, F), every value tells where it was
    check_patchify(ctx, x, 3, 2, 3)


# ---- 3. properties ----------------------------------------------------------------------------------------------------


@GRADER.test(T_PATCH, points=3)
def patch_property(ctx):
    def check(args):
        p, sf, st_, dt, df, B, seed = args
        check_patchify(ctx, spectrograms(seed, B, p + dt, p + df), p, sf, st_)

    ctx.prove(cases, check)


@GRADER.test(T_EMBED, points=3)
def embed_property(ctx):
    def check(args):
        p, sf, st_, dt, df, B, seed = args
        g = torch.Generator().manual_seed(seed + 1)
        D = 1 + seed % 7
        weight = torch.randn(D, 1, p, p, generator=g, dtype=torch.float64)
        bias = torch.randn(D, generator=g, dtype=torch.float64)
        check_embed(ctx, spectrograms(seed, B, p + dt, p + df), weight, bias, sf, st_)

    ctx.prove(cases, check)


# ---- 4. edge cases -----------------------------------------------------------------------------------------------------


@GRADER.test("edge: one patch covering everything, 1 x 1 patches, a prime-sized input")
def edges(ctx):
    check_patchify(ctx, spectrograms(1, 1, 5, 5), 5, 1, 1)  # one patch
    check_patchify(ctx, spectrograms(2, 2, 7, 3), 1, 1, 1)  # every value its own patch
    check_patchify(ctx, spectrograms(3, 1, 13, 11), 4, 3, 5)  # strides that do not divide (T - p) or (F - p)
