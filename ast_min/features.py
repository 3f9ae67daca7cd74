"""The log-mel front end of AST: Kaldi's `fbank` as the paper (Gong et al. 2021, section 2.1) uses it.

A waveform becomes a (T, F) log-mel spectrogram in nine small steps, each a function below, read in
order (docs/DESIGN.md, "The front end", lists every numerical fact):

    frame_signal     (N,) -> (T, 400)     25 ms frames every 10 ms, Kaldi's snip_edges
    remove_dc        (T, 400)             subtract each frame's mean
    pre_emphasis     (T, 400)             x[n] - 0.97 x[n-1], inside each frame
    hanning_window   (400,)               Kaldi's symmetric Hann window
    power_spectrum   (T, 400) -> (T, 257) |rFFT-512|^2
    mel_filterbank   (257, F)             triangles equally spaced on the mel scale, 20 Hz .. Nyquist
    log_mel          (T, 257) -> (T, F)   log(max(power @ filterbank, float32 eps))
    pad_or_truncate  (T, F) -> (max_length, F)
    normalize        (x - mean) / (2 std)

The original repository subtracts each waveform's mean before `fbank`; transformers does not, and
neither does ast-min (that is how the hub checkpoint is used). It makes no difference beyond
rounding: a constant offset is part of every frame's mean, which step 2 removes.

`log_mel_spectrogram` composes them: the readable reference. This module is only the steps; the
batched entry points (`fbank`, `extract_input_values`), input checking, `ASTFeatureExtractor` and
`compute_norm_stats` live in `ast_min.extractor`. On the CPU they run `ast_min.features_fast`, the
same numbers in fewer passes (tested equal to the reference).

Shape legend: B batch, N samples, T frames, F mel bins (num_mel_bins), K FFT bins (257).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SAMPLING_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
FFT_LENGTH = 512  # the next power of two above FRAME_LENGTH; K = 257 bins
PREEMPHASIS = 0.97
LOW_FREQ = 20.0  # Hz: Kaldi's default lower edge of the first mel triangle
LOG_FLOOR = float(np.finfo(np.float32).eps)  # 2^-23, Kaldi's and transformers' floor
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
NUM_MEL_BINS = 128  # F of the released AST checkpoints: every entry point's default
MAX_LENGTH = 1024  # frames per clip the AudioSet checkpoints take: 10.24 s at the 10 ms shift


# ---- 1. framing ---------------------------------------------------------------------------------
def num_frames(num_samples: int, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT) -> int:
    """Frames Kaldi's `snip_edges=True` cuts from N samples: 1 + (N - 400) // 160, none below 400."""
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_shift


def samples_for_frames(num_frames: int, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT) -> int:
    """Samples a clip needs to give exactly `num_frames` frames: the inverse of `num_frames`."""
    return frame_length + (num_frames - 1) * frame_shift


def frame_signal(waveform: torch.Tensor, frame_length: int = FRAME_LENGTH, frame_shift: int = FRAME_SHIFT) -> torch.Tensor:
    """Cut (..., N) into overlapping frames (..., T, frame_length); samples after the last whole frame are dropped.

    `unfold` returns a strided view, so the 2.5x overlap costs no copy until a later step writes.
    """
    if waveform.shape[-1] < frame_length:  # no whole frame: (..., 0, L), as Kaldi
        return waveform.new_zeros(*waveform.shape[:-1], 0, frame_length)
    return waveform.unfold(-1, frame_length, frame_shift)  # (..., T, 400)


# ---- 2. per-frame DC removal ----------------------------------------------------------------------
def remove_dc(frames: torch.Tensor) -> torch.Tensor:
    """Subtract each frame's mean, (..., T, L) -> (..., T, L): a DC offset would leak into the low bins."""
    return frames - frames.mean(dim=-1, keepdim=True)


# ---- 3. pre-emphasis --------------------------------------------------------------------------------
def pre_emphasis(frames: torch.Tensor, coeff: float = PREEMPHASIS) -> torch.Tensor:
    """y[n] = x[n] - coeff * x[n-1] inside each frame, (..., T, L) -> (..., T, L).

    Kaldi filters each frame on its own, not the whole signal, so frame n's first sample has no
    predecessor; Kaldi uses the sample itself, giving y[0] = (1 - coeff) x[0]. (The Hann window is
    zero there anyway, but this keeps the step exact for any window.)
    """
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # (..., T, L) shifted right by one
    return frames - coeff * previous


# ---- 4. window ----------------------------------------------------------------------------------------
def hanning_window(length: int = FRAME_LENGTH, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Kaldi's "hanning" window, (L,): 0.5 - 0.5 cos(2 pi n / (L - 1)).

    Symmetric (divides by L - 1, zero at both ends), unlike `torch.hann_window`'s default periodic
    window, which divides by L.
    """
    n = torch.arange(length, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))
    return window.to(dtype=dtype, device=device)


# ---- 5. power spectrum ----------------------------------------------------------------------------------
def power_spectrum(frames: torch.Tensor, fft_length: int = FFT_LENGTH) -> torch.Tensor:
    """|rFFT|^2 of frames zero-padded to fft_length, (..., T, L) -> (..., T, fft_length // 2 + 1)."""
    spectrum = torch.fft.rfft(frames, n=fft_length)  # (..., T, K) complex
    return spectrum.real.square() + spectrum.imag.square()  # exact |X|^2, no sqrt round trip


# ---- 6. mel filterbank ------------------------------------------------------------------------------------
def hz_to_mel(hz: float | np.ndarray) -> float | np.ndarray:
    """Kaldi's (HTK's) mel scale: 1127 ln(1 + f / 700), on floats and numpy arrays."""
    return 1127.0 * np.log1p(np.asarray(hz) / 700.0)


def mel_filterbank(
    num_mel_bins: int = NUM_MEL_BINS,
    *,
    sampling_rate: int = SAMPLING_RATE,
    fft_length: int = FFT_LENGTH,
    low_freq: float = LOW_FREQ,
    high_freq: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Kaldi's mel filterbank as a (K, F) matrix, K = fft_length // 2 + 1: `power @ filterbank` is the mel energy.

    F + 2 edge points are equally spaced in mel between low_freq and high_freq (default: Nyquist);
    filter f rises linearly *in mel* from point f to its centre f + 1 (weight 1) and falls to point
    f + 2. The weights are not area-normalised (Kaldi's choice, kept by AST).

    At 128 bins and 16 kHz the low triangles are narrower than the 31.25 Hz spacing of the FFT
    bins and filter 3 catches no bin centre: its column is all zeros and its log energy is the
    floor, log(eps). Kaldi's C++ refuses that configuration; torchaudio and transformers keep it,
    and the AudioSet checkpoint was trained with it, so it is kept here too.
    """
    if num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be at least 1, got {num_mel_bins}")
    nyquist = sampling_rate / 2
    high_freq = nyquist if high_freq is None else high_freq
    if not 0 <= low_freq < high_freq <= nyquist:
        raise ValueError(
            f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz), got {low_freq} and {high_freq}"
        )
    mel_low, mel_high = hz_to_mel(low_freq), hz_to_mel(high_freq)
    edges = mel_low + (mel_high - mel_low) / (num_mel_bins + 1) * np.arange(num_mel_bins + 2)  # (F + 2,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (F,) each
    bin_mels = hz_to_mel(np.arange(fft_length // 2 + 1) * sampling_rate / fft_length)[:, None]  # (K, 1)
    rising = (bin_mels - left) / (centre - left)  # (K, F)
    falling = (right - bin_mels) / (right - centre)  # (K, F)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)  # zero outside (left, right)
    return torch.from_numpy(weights).to(dtype)


# ---- 7. log -------------------------------------------------------------------------------------------------
def log_mel(power: torch.Tensor, filterbank: torch.Tensor) -> torch.Tensor:
    """log(max(power @ filterbank, eps)), (..., T, K) -> (..., T, F).

    The floor (float32 eps) keeps silent frames and the empty filter finite: log(eps) = -15.94.
    """
    return torch.clamp_min(power @ filterbank, LOG_FLOOR).log()


# ---- 8. length and scale --------------------------------------------------------------------------------------
def pad_or_truncate(features: torch.Tensor, max_length: int, padding_value: float = 0.0) -> torch.Tensor:
    """(T, F) -> (max_length, F): zero rows appended (before normalisation, as transformers), or the tail cut."""
    missing = max_length - features.shape[-2]
    if missing <= 0:
        return features[..., :max_length, :]
    return torch.nn.functional.pad(features, (0, 0, 0, missing), value=padding_value)


def normalize(features: torch.Tensor, mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> torch.Tensor:
    """(x - mean) / (2 std): the AST recipe, which targets mean 0 and std 0.5 rather than 1."""
    return (features - mean) / (2 * std)


# ---- the composition: the readable reference ---------------------------------------------------------------------
def log_mel_spectrogram(
    waveforms: torch.Tensor, *, num_mel_bins: int = NUM_MEL_BINS, sampling_rate: int = SAMPLING_RATE
) -> torch.Tensor:
    """The steps above in order, vectorised over a batch: (..., N) -> (..., T, F), in the input's dtype.

    This is the reference the fast path is tested against; it does no input checking.
    """
    frames = frame_signal(waveforms)  # (..., T, 400)
    frames = pre_emphasis(remove_dc(frames))
    frames = frames * hanning_window(FRAME_LENGTH, dtype=frames.dtype, device=frames.device)
    power = power_spectrum(frames)  # (..., T, 257)
    filterbank = mel_filterbank(num_mel_bins, sampling_rate=sampling_rate, dtype=frames.dtype).to(frames.device)
    return log_mel(power, filterbank)  # (..., T, F)

