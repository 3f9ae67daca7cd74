"""Grader of `framing`: Kaldi's framing, DC removal, pre-emphasis and symmetric Hann window, any L and S.

Expected values come from `ast_min.features` (tested against kaldi-native-fbank and transformers)
in float64; the tolerance 1e-9 is far above float64 rounding of these few-operation steps
(~1e-15 relative) and far below any real mistake (the smallest, y[0] = x[0], changes one sample by
0.97 |x[0]|).

Shape legend: N samples, T frames, L frame length, S frame shift.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ast_min import features
from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake

GRADER = Grader("framing", forbidden=("ast_min.features", "ast_min.features_fast", "torch.hann_window"))
TOL = dict(atol=1e-9, rtol=1e-9)

MISTAKES = [
    Mistake(
        "periodic_hann",
        "this is the periodic Hann window (cos(2 pi n / L), torch.hann_window's default); Kaldi's is "
        "symmetric: divide by L - 1, so that both ends are zero",
        ("2 * torch.pi * n / (length - 1)", "2 * torch.pi * n / length"),
        "hanning_window: Kaldi's symmetric window for any length",
    ),
    Mistake(
        "y0_equals_x0",
        "your first sample of each frame is x[0] (as if x[-1] were 0); Kaldi uses the sample itself as "
        "its own predecessor: y[0] = x[0] - coeff * x[0]",
        ("torch.cat([frames[..., :1], frames[..., :-1]]", "torch.cat([0 * frames[..., :1], frames[..., :-1]]"),
        "pre_emphasis: y[n] = x[n] - c x[n-1] within each frame",
    ),
    Mistake(
        "emphasis_before_dc",
        "you pre-emphasised before removing the DC offset; Kaldi removes each frame's mean first, then "
        "pre-emphasises, then applies the window",
        (
            "pre_emphasis(remove_dc(frame_signal(waveform, frame_length, frame_shift)), coeff)",
            "remove_dc(pre_emphasis(frame_signal(waveform, frame_length, frame_shift), coeff))",
        ),
        "prepare_frames: AST's 400-sample frames every 160 samples",
    ),
    Mistake(
        "partial_last_frame",
        "you kept a zero-padded partial frame at the end; with snip_edges=True Kaldi keeps only whole "
        "frames: T = 1 + (N - L) // S",
        (
            "waveform.unfold(-1, frame_length, frame_shift).clone()",
            "torch.nn.functional.pad(waveform, (0, -(waveform.shape[-1] - frame_length) % frame_shift))"
            ".unfold(-1, frame_length, frame_shift).clone()",
        ),
        "frame_signal: number of frames (snip_edges) and their samples",
    ),
]
HINTS = {m.name: m.hint for m in MISTAKES}


# ---- the reference and the mistakes ------------------------------------------------------------------


def signal(seed: int, n: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def longer(x: torch.Tensor, S: int) -> torch.Tensor:
    """A second input for a diagnosis: three more frames' worth of other samples, with x's offset."""
    return signal(x.shape[-1] + 1, x.shape[-1] + 3 * S) + float(x.mean()) if x.numel() else signal(1, 3 * S)


def periodic_hann(length: int) -> torch.Tensor:
    return 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(length, dtype=torch.float64) / length)


def emphasis_y0_x0(frames: torch.Tensor, coeff: float) -> torch.Tensor:
    previous = torch.cat([torch.zeros_like(frames[..., :1]), frames[..., :-1]], dim=-1)
    return frames - coeff * previous


def frames_partial(x: torch.Tensor, L: int, S: int) -> torch.Tensor:
    if x.shape[-1] < L:
        return x.new_zeros(0, L)
    return torch.nn.functional.pad(x, (0, -(x.shape[-1] - L) % S)).unfold(-1, L, S)


def prepared(x, L, S, coeff, *, window=None, emphasis=None, order="dc_first", framing=None):
    frames = (framing or features.frame_signal)(x, L, S)
    emphasis = emphasis or features.pre_emphasis
    if order == "dc_first":
        frames = emphasis(features.remove_dc(frames), coeff)
    else:
        frames = features.remove_dc(emphasis(frames, coeff))
    return frames * (window or features.hanning_window)(L)


def frame_variants(x, L, S) -> dict[str, torch.Tensor]:
    return {"partial_last_frame": frames_partial(x, L, S)}


def emphasis_variants(frames, coeff) -> dict[str, torch.Tensor]:
    return {"y0_equals_x0": emphasis_y0_x0(frames, coeff)}


def window_variants(L) -> dict[str, torch.Tensor]:
    return {"periodic_hann": periodic_hann(L)}


def check_frames(ctx, x, L, S):
    ctx.inputs = dict(waveform=x, frame_length=L, frame_shift=S)
    ctx.compare(ctx.call("frame_signal", x, L, S), features.frame_signal(x, L, S), "frame_signal's output", **TOL,
                variants=frame_variants, hints=HINTS,
                derive=Call("framing", "frame_signal", (x, L, S), second=((longer(x, S), L, S), {}), axes=("T", "L")))


def check_prepared(ctx, x, L, S, coeff=None):
    ctx.inputs = dict(waveform=x, frame_length=L, frame_shift=S, **({} if coeff is None else dict(coeff=coeff)))
    args = (x, L, S) if coeff is None else (x, L, S, coeff)
    ctx.compare(ctx.call("prepare_frames", *args), prepared(x, L, S, 0.97 if coeff is None else coeff),
                "prepare_frames' output", **TOL, variants=prepare_variants, hints=HINTS,
                derive=Call("framing", "prepare_frames", args, second=((longer(x, S), *args[1:]), {}), axes=("T", "L")))


def prepare_variants(x, L, S, coeff=0.97) -> dict[str, torch.Tensor]:
    return {
        "periodic_hann": prepared(x, L, S, coeff, window=periodic_hann),
        "emphasis_before_dc": prepared(x, L, S, coeff, order="emphasis_first"),
        "partial_last_frame": prepared(x, L, S, coeff, framing=frames_partial),
        "y0_equals_x0": prepared(x, L, S, coeff, emphasis=emphasis_y0_x0),
    }


# Frame length, shift and signal length with at least one whole frame; shift may exceed the length (gaps).
FRAMING = (st.integers(2, 40), st.integers(1, 50), st.integers(0, 120), st.integers(0, 2**16))
framings = st.tuples(*FRAMING)


# ---- 1. shapes ------------------------------------------------------------------------------------------


@GRADER.test("frame_signal: number of frames (snip_edges) and their samples")
def frame_count(ctx):
    for n, L, S in [(1000, 400, 160), (10, 4, 3), (9, 4, 3), (7, 7, 1), (12, 3, 5)]:
        ctx.inputs = dict(N=n, frame_length=L, frame_shift=S)
        check_frames(ctx, signal(0, n), L, S)


@GRADER.test("hanning_window: shape and dtype")
def window_shape(ctx):
    for L in (2, 7, 400):
        ctx.inputs = dict(length=L)
        got = ctx.expect_tensor(ctx.call("hanning_window", L), "hanning_window's output", (L,))
        if got.dtype != torch.float64:
            raise Fail(f"hanning_window should return float64, got {got.dtype}")


# ---- 2. the worked example: AST's own frames ---------------------------------------------------------------


@GRADER.test("prepare_frames: AST's 400-sample frames every 160 samples", points=2)
def worked_example(ctx):
    check_prepared(ctx, signal(1, 1000), 400, 160)


# ---- 3. properties: any frame length, shift and signal ----------------------------------------------------


@GRADER.test("frame_signal equals Kaldi's framing for any L, S, N")
def frame_property(ctx):
    def check(args):
        L, S, extra, seed = args
        check_frames(ctx, signal(seed, L + extra), L, S)

    ctx.prove(framings, check)


@GRADER.test("remove_dc: every frame's mean is removed")
def dc_property(ctx):
    def check(args):
        T, L, seed = args
        frames = signal(seed, T * L).reshape(T, L) + seed % 7  # (T, L), with an offset to remove
        ctx.inputs = dict(frames=frames)
        ctx.compare(ctx.call("remove_dc", frames.clone()), features.remove_dc(frames), "remove_dc's output", **TOL,
                    derive=Call("framing", "remove_dc", (frames,), second=((signal(seed + 1, (T + 2) * (L + 3))
                                .reshape(T + 2, L + 3) + 1.5,), {}), axes=("T", "L")))

    ctx.prove(st.tuples(st.integers(1, 6), st.integers(1, 30), st.integers(0, 2**16)), check)


@GRADER.test("pre_emphasis: y[n] = x[n] - c x[n-1] within each frame", points=2)
def emphasis_property(ctx):
    def check(args):
        T, L, coeff, seed = args
        frames = signal(seed, T * L).reshape(T, L)
        ctx.inputs = dict(frames=frames, coeff=coeff)
        ctx.compare(ctx.call("pre_emphasis", frames.clone(), coeff), features.pre_emphasis(frames, coeff),
                    "pre_emphasis' output", **TOL, variants=emphasis_variants, hints=HINTS,
                    derive=Call("framing", "pre_emphasis", (frames, coeff), axes=("T", "L"),
                                second=((signal(seed + 1, (T + 2) * (L + 3)).reshape(T + 2, L + 3), coeff), {})))

    coeffs = st.sampled_from([0.97, 0.5, 1.0, 0.0, 0.25])
    ctx.prove(st.tuples(st.integers(1, 5), st.integers(1, 30), coeffs, st.integers(0, 2**16)), check)


@GRADER.test("hanning_window: Kaldi's symmetric window for any length", points=2)
def window_property(ctx):
    def check(L):
        ctx.inputs = dict(length=L)
        ctx.compare(ctx.call("hanning_window", L), features.hanning_window(L), "hanning_window's output", **TOL,
                    variants=window_variants, hints=HINTS,
                    derive=Call("framing", "hanning_window", (L,), second=((L + 7,), {})))

    ctx.prove(st.integers(2, 600), check)


@GRADER.test("prepare_frames: the four steps in Kaldi's order, any L, S, N and coefficient", points=2)
def prepare_property(ctx):
    def check(args):
        L, S, extra, seed, coeff = args
        L = max(L, 3)  # a 2-sample Hann window is all zeros: it would hide every mistake
        x = signal(seed, L + extra) + 0.5  # a DC offset, so the order of DC removal and pre-emphasis matters
        check_prepared(ctx, x, L, S, coeff)

    # None: the default coefficient (0.97), not passed
    ctx.prove(st.tuples(*FRAMING, st.sampled_from([None, 0.5, 0.9, 1.0])), check)


# ---- 4. edge cases -------------------------------------------------------------------------------------------


@GRADER.test("edge: fewer samples than one frame gives (0, L)")
def too_short(ctx):
    for n, L, S in [(3, 4, 2), (0, 5, 1), (399, 400, 160)]:
        x = signal(2, n)
        ctx.inputs = dict(N=n, frame_length=L, frame_shift=S)
        ctx.expect_tensor(ctx.call("frame_signal", x, L, S), "frame_signal's output", (0, L))


@GRADER.test("edge: exactly one frame, and a shift longer than the frame")
def one_frame(ctx):
    for n, L, S in [(8, 8, 3), (29, 5, 11), (13, 2, 13)]:
        check_frames(ctx, signal(3, n), L, S)
