# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment `mel` · The mel filterbank and the log, for any bin count, rate and band
#
# Chapter 01 (`notebooks/01_log_mel_spectrogram.py`, §[The mel filterbank, and its empty filter]
# and §[The log]) builds AST's 128-bin bank at 16 kHz. Here you write it for **any**
# number of bins F, sampling rate, FFT length and band [low_freq, high_freq], with the same
# signature, defaults and output layout as `ast_min.features.mel_filterbank` and `log_mel`:
#
# 1. `hz_to_mel(hz)`: Kaldi's (HTK's) mel scale, 1127 ln(1 + f / 700).
# 2. `mel_filterbank(...)`: a (K, F) matrix, K = fft_length // 2 + 1, so that `power @ bank` is the
#    mel energy. F + 2 edge points equally spaced **in mel** from low_freq to high_freq (default:
#    the Nyquist frequency, sampling_rate / 2); filter f rises linearly in mel from edge f to its
#    centre f + 1 (weight 1) and falls to edge f + 2; FFT bin k sits at k * sampling_rate /
#    fft_length Hz. No area normalisation. Compute in float64, return `dtype`.
# 3. `log_mel(power, bank)`: (..., T, K) -> (..., T, F), log(max(power @ bank, eps)) with eps the
#    float32 machine epsilon (`torch.finfo(torch.float32).eps`), natural log.
#
# Write them with numpy/torch only (the grader refuses code that calls ast-min's front end), then
# run `ast-min assignment check mel`.
#
# Shape legend: T frames, K FFT bins, F mel bins.

# %%
import numpy as np
import torch


# %%
def hz_to_mel(hz):
    """Kaldi's mel scale, 1127 ln(1 + hz / 700), for floats and numpy arrays."""
    ### BEGIN SOLUTION
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)
    ### END SOLUTION


# %%
def mel_filterbank(
    num_mel_bins: int = 128,
    *,
    sampling_rate: int = 16000,
    fft_length: int = 512,
    low_freq: float = 20.0,
    high_freq: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Kaldi's mel filterbank, (fft_length // 2 + 1, num_mel_bins): triangles equally spaced in mel."""
    ### BEGIN SOLUTION
    nyquist = sampling_rate / 2
    high_freq = nyquist if high_freq is None else high_freq
    mel_low, mel_high = hz_to_mel(low_freq), hz_to_mel(high_freq)
    edges = mel_low + (mel_high - mel_low) / (num_mel_bins + 1) * np.arange(num_mel_bins + 2)  # (F + 2,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (F,) each
    bin_mels = hz_to_mel(np.arange(fft_length // 2 + 1) * sampling_rate / fft_length)[:, None]  # (K, 1)
    rising = (bin_mels - left) / (centre - left)  # (K, F)
    falling = (right - bin_mels) / (right - centre)  # (K, F)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    return torch.from_numpy(weights).to(dtype)
    ### END SOLUTION


# %%
def log_mel(power: torch.Tensor, filterbank: torch.Tensor) -> torch.Tensor:
    """(..., T, K) power spectra and a (K, F) bank -> (..., T, F) log(max(power @ bank, float32 eps))."""
    ### BEGIN SOLUTION
    floor = torch.finfo(torch.float32).eps
    return torch.clamp_min(power @ filterbank, floor).log()
    ### END SOLUTION


# %% [markdown]
# Try your functions here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    bank = mel_filterbank(8, sampling_rate=8000, fft_length=64)
    print(bank.shape, bank.sum(0))
