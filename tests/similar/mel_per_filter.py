"""An independent solution of assignment `mel` (copy-check fixture): one triangle at a time, in torch."""

import math

import torch


def hz_to_mel(hz):
    import numpy as np

    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(num_mel_bins=128, *, sampling_rate=16000, fft_length=512, low_freq=20.0, high_freq=None,
                   dtype=torch.float64):
    top = sampling_rate / 2 if high_freq is None else high_freq

    def to_mel(f):
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    lo_mel, hi_mel = to_mel(low_freq), to_mel(top)
    step = (hi_mel - lo_mel) / (num_mel_bins + 1)
    n_bins = fft_length // 2 + 1
    bin_mel = to_mel(torch.arange(n_bins, dtype=torch.float64) * (sampling_rate / fft_length))
    bank = torch.zeros(n_bins, num_mel_bins, dtype=torch.float64)
    for f in range(num_mel_bins):
        left = lo_mel + f * step
        peak = left + step
        right = peak + step
        up = (bin_mel - left) / (peak - left)
        down = (right - bin_mel) / (right - peak)
        bank[:, f] = torch.clamp(torch.minimum(up, down), min=0.0)
    return bank.to(dtype)


def log_mel(power, filterbank):
    energies = torch.matmul(power, filterbank)
    return torch.log(torch.maximum(energies, torch.tensor(torch.finfo(torch.float32).eps, dtype=energies.dtype)))
