"""Grader of `mel`: Kaldi's mel filterbank and the log-mel step, any F, sampling rate, FFT length and band.

Expected values come from `ast_min.features` (tested against transformers and kaldi-native-fbank).
The filterbank tolerance 1e-8 is far above float64 rounding of the weights (mel values ~3000
computed to ~1e-16 relative, divided by triangle widths >= ~1 mel: ~1e-12) and far below the smallest
mistake here; a float32 computation (2^-24 relative: ~2e-4 on mel values near 3000) does not pass,
as the task says. log_mel compares logs of float64 products: 1e-9.

Shape legend: T frames, K FFT bins, F mel bins.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from ast_min import features
from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Fail, Grader, Mistake

GRADER = Grader("mel", forbidden=("ast_min.features", "ast_min.features_fast"))
BANK_TOL = dict(atol=1e-8, rtol=1e-8)
LOG_TOL = dict(atol=1e-9, rtol=1e-9)
EPS = float(np.finfo(np.float32).eps)
T_SHAPE, T_WORKED, T_BANK, T_LOG = (
    "mel_filterbank: shape (K, F) and dtype",
    "mel_filterbank: AST's 128 bins at 16 kHz, empty filter included",
    "mel_filterbank equals Kaldi's for any F, rate, FFT length and band",
    "log_mel: log(max(power @ bank, eps)) for any energies",
)

MISTAKES = [
    Mistake(
        "hz_spacing",
        "your edge points are equally spaced in Hz; Kaldi spaces them equally in mel (convert low_freq "
        "and high_freq to mel, space F + 2 points evenly between them)",
        ("edges = mel_low + (mel_high - mel_low) / (num_mel_bins + 1) * np.arange(num_mel_bins + 2)",
         "edges = hz_to_mel(low_freq + (high_freq - low_freq) / (num_mel_bins + 1) * np.arange(num_mel_bins + 2))"),
        T_WORKED,
    ),
    Mistake(
        "transposed",
        "your bank is (F, K), the transpose: ast-min's layout is (K, F) so that power (T, K) @ bank gives (T, F)",
        ("return torch.from_numpy(weights).to(dtype)", "return torch.from_numpy(weights.T.copy()).to(dtype)"),
        T_SHAPE,
    ),
    Mistake(
        "nyquist_fixed",
        "your default high_freq is 8000 Hz whatever the rate; the default is the Nyquist frequency, "
        "sampling_rate / 2",
        ("nyquist = sampling_rate / 2", "nyquist = 8000.0"),
        T_BANK,
    ),
    Mistake(
        "log_of_sum_with_eps",
        "you took log(x + eps); Kaldi floors instead: log(max(x, eps)), which differs for tiny energies",
        ("torch.clamp_min(power @ filterbank, floor).log()", "(power @ filterbank + floor).log()"),
        T_LOG,
    ),
    Mistake(
        "log10",
        "you took log10; the log-mel step uses the natural log (torch.log)",
        ("torch.clamp_min(power @ filterbank, floor).log()", "torch.clamp_min(power @ filterbank, floor).log10()"),
        T_LOG,
    ),
]
HINTS = {m.name: m.hint for m in MISTAKES}


def mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def bank(F, sr, nfft, low, high, hz_spaced=False) -> torch.Tensor:
    """An independent copy of the construction, with a switch for the Hz-spacing mistake."""
    if hz_spaced:
        edges = mel(low + (high - low) / (F + 1) * np.arange(F + 2))
    else:
        edges = mel(low) + (mel(high) - mel(low)) / (F + 1) * np.arange(F + 2)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    bins = mel(np.arange(nfft // 2 + 1) * sr / nfft)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.clip(np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)), 0.0, None)
    return torch.from_numpy(np.nan_to_num(w))


def bank_variants(F, sampling_rate=16000, fft_length=512, low_freq=20.0, high_freq=None, **_) -> dict[str, torch.Tensor]:
    sr, nfft, low, high = sampling_rate, fft_length, low_freq, high_freq
    top = sr / 2 if high is None else high
    out = {"hz_spacing": bank(F, sr, nfft, low, top, hz_spaced=True),
           "transposed": features.mel_filterbank(F, sampling_rate=sr, fft_length=nfft, low_freq=low, high_freq=high).T}
    if high is None and low < 8000.0:
        out["nyquist_fixed"] = bank(F, sr, nfft, low, 8000.0)
    return out


def check_bank(ctx, F, sr, nfft, low, high):
    ctx.inputs = dict(num_mel_bins=F, sampling_rate=sr, fft_length=nfft, low_freq=low, high_freq=high)
    kwargs = dict(sampling_rate=sr, fft_length=nfft, low_freq=low, high_freq=high)
    got = ctx.call("mel_filterbank", F, **kwargs)
    expected = features.mel_filterbank(F, **kwargs)
    # the second input that confirms a hint: three more bins, the same rate, FFT length and band
    ctx.compare(got, expected, "mel_filterbank's output", **BANK_TOL, variants=bank_variants, hints=HINTS,
                derive=Call("mel", "mel_filterbank", (F,), kwargs, second=((F + 3,), kwargs), axes=("K", "F")))


def log_variants(power, fb) -> dict[str, torch.Tensor]:
    energy = power @ fb
    return {"log_of_sum_with_eps": (energy + EPS).log(), "log10": energy.clamp_min(EPS).log10()}


def check_log(ctx, power, fb):
    ctx.compare(ctx.call("log_mel", power, fb), features.log_mel(power, fb), "log_mel's output", **LOG_TOL,
                variants=log_variants, hints=HINTS, derive=Call("mel", "log_mel", (power, fb), axes=("T", "F")))


# ---- 1. shapes -----------------------------------------------------------------------------------------------


@GRADER.test(T_SHAPE)
def shape(ctx):
    for F, sr, nfft in [(10, 16000, 512), (3, 8000, 256), (40, 22050, 1024)]:
        ctx.inputs = dict(num_mel_bins=F, sampling_rate=sr, fft_length=nfft)
        got = ctx.expect_tensor(ctx.call("mel_filterbank", F, sampling_rate=sr, fft_length=nfft), "mel_filterbank's output")
        K = nfft // 2 + 1
        if tuple(got.shape) != (K, F):  # the values too: a known mistake is named only when it reproduces them
            check_bank(ctx, F, sr, nfft, 20.0, None)
    got = ctx.call("mel_filterbank", 5, dtype=torch.float32)
    if not isinstance(got, torch.Tensor) or got.dtype != torch.float32:
        raise Fail(f"mel_filterbank(5, dtype=torch.float32) should return float32, got {getattr(got, 'dtype', type(got))}")


@GRADER.test("log_mel: shape (..., T, F)")
def log_shape(ctx):
    fb = features.mel_filterbank(7, sampling_rate=8000, fft_length=64)  # (33, 7)
    for shape in [(4, 33), (2, 3, 33)]:
        power = torch.rand(*shape, dtype=torch.float64)
        ctx.inputs = dict(power=power, filterbank=fb)
        ctx.expect_tensor(ctx.call("log_mel", power, fb), "log_mel's output", (*shape[:-1], 7))


# ---- 2. the worked example ----------------------------------------------------------------------------------


@GRADER.test(T_WORKED, points=2)
def worked(ctx):
    check_bank(ctx, 128, 16000, 512, 20.0, None)


# ---- 3. properties -------------------------------------------------------------------------------------------


@GRADER.test(T_BANK, points=3)
def bank_property(ctx):
    def check(args):
        F, sr, nfft, low_fraction, high_fraction = args
        nyquist = sr / 2
        low = round(low_fraction * nyquist * 0.3, 3)
        high = None if high_fraction is None else round(low + (nyquist - low) * high_fraction, 3)
        check_bank(ctx, F, sr, nfft, low, high)

    ctx.prove(st.tuples(st.integers(1, 80), st.sampled_from([16000, 8000, 22050, 44100]),
                        st.sampled_from([512, 256, 1024]), st.floats(0, 1),
                        st.one_of(st.none(), st.floats(0.2, 1))), check)


@GRADER.test(T_LOG, points=2)
def log_property(ctx):
    def check(args):
        T, F, decades, seed = args
        g = torch.Generator().manual_seed(seed)
        fb = features.mel_filterbank(F, sampling_rate=8000, fft_length=64)  # (33, F)
        power = torch.rand(T, 33, generator=g, dtype=torch.float64) * 10.0 ** -decades  # energies down to below eps
        ctx.inputs = dict(power=power, filterbank=f"mel_filterbank({F}, sampling_rate=8000, fft_length=64)")
        check_log(ctx, power, fb)

    ctx.prove(st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(0, 9), st.integers(0, 2**16)), check)


# ---- 4. edge cases -------------------------------------------------------------------------------------------


@GRADER.test("edge: one bin, and a band below the Nyquist frequency")
def edge_bank(ctx):
    check_bank(ctx, 1, 16000, 512, 20.0, None)
    check_bank(ctx, 6, 16000, 512, 300.0, 3400.0)


@GRADER.test("edge: the empty filter's log is log(eps), silence too")
def edge_log(ctx):
    fb = features.mel_filterbank(128)  # filter 3 catches no FFT bin
    power = torch.rand(3, 257, dtype=torch.float64)
    power[1] = 0.0  # a silent frame
    ctx.inputs = dict(power="(3, 257), frame 1 silent", filterbank="mel_filterbank(128)")
    check_log(ctx, power, fb)
