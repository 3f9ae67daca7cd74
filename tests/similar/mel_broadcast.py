"""An independent solution of assignment `mel` (copy-check fixture): numpy broadcasting, edges by linspace."""

import numpy as np
import torch

FLOOR = float(np.finfo(np.float32).eps)


def hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    return 1127.0 * np.log1p(hz / 700.0)


def mel_filterbank(num_mel_bins=128, *, sampling_rate=16000, fft_length=512, low_freq=20.0, high_freq=None,
                   dtype=torch.float64):
    if high_freq is None:
        high_freq = sampling_rate / 2
    points = np.linspace(hz_to_mel(low_freq), hz_to_mel(high_freq), num_mel_bins + 2)
    freqs = np.fft.rfftfreq(fft_length, d=1.0 / sampling_rate)
    where = hz_to_mel(freqs)[:, np.newaxis]
    lower, middle, upper = points[np.newaxis, :-2], points[np.newaxis, 1:-1], points[np.newaxis, 2:]
    rise = np.divide(where - lower, middle - lower)
    fall = np.divide(upper - where, upper - middle)
    triangles = np.maximum(0.0, np.minimum(rise, fall))
    return torch.tensor(triangles, dtype=dtype)


def log_mel(power, filterbank):
    return (power @ filterbank).clamp(min=FLOOR).log()
