"""Augmentation as the original AST recipes use it (YuanGongND/ast, src/dataloader.py).

- Mixup (Zhang et al. 2018) on *waveforms*: `lam * x_i + (1 - lam) * x_j` with `lam ~ Beta(10, 10)`
  (so mixes stay near half and half) and the labels mixed with the same weights. The original
  subtracts each waveform's mean first and mixes the shorter clip zero-padded; so does this.
- SpecAugment (Park et al. 2019) frequency and time masking on the log-mel features: one mask of
  width `uniform{0 .. freqm - 1}` mel bins and one of `uniform{0 .. timem - 1}` frames, each
  starting anywhere it fits (torchaudio's FrequencyMasking / TimeMasking rule, which the original
  calls). The original masks the un-normalised log-mel with 0, which after its normalisation
  `(x - mean) / (2 std)` is the constant `-mean / (2 std)` (~0.47 for AudioSet); the masks here act
  on the normalised features, and the Collator passes that constant as `value`, so the filled
  cells equal the original's.
- Noise and time roll (the Speech Commands recipe): add `uniform[0, 1) * u / 10` noise, with one
  `u ~ uniform[0, 1)` per clip, and roll the frames by `uniform{-10 .. 9}` (circularly).

Every function draws from a `numpy.random.Generator` passed in, so the trainer can give each clip
its own generator seeded by (seed, epoch, clip index): a clip is augmented the same way whether it
is in a batch of 8 on one process or of 4 on each of two, and after a resume.

Shape legend: N samples, T frames, F mel bins, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mask:
    """One SpecAugment mask: `width` consecutive rows (frames) or columns (mel bins) from `start`."""

    start: int
    width: int


def draw_mask(rng: np.random.Generator, max_width: int, size: int) -> Mask:
    """torchaudio's mask rule: width ~ uniform{0..max_width-1}, start ~ uniform{0..size-width-1}.

    torchaudio draws both as floats and truncates; integer draws give the same distribution.
    `max_width` 0 means no masking (width 0). The width never exceeds `size`.
    """
    if max_width < 0:
        raise ValueError(f"a SpecAugment mask width must be >= 0, got {max_width}")
    width = int(rng.integers(0, max_width)) if max_width > 0 else 0
    width = min(width, size)
    start = int(rng.integers(0, size - width)) if size - width > 0 else 0
    return Mask(start, width)


def spec_augment(
    features: torch.Tensor, rng: np.random.Generator, freqm: int, timem: int, value: float = 0.0
) -> tuple[torch.Tensor, Mask, Mask]:
    """One frequency and one time mask on a clip's features (T, F); returns (masked copy, freq mask, time mask)."""
    if features.ndim != 2:
        raise ValueError(f"spec_augment works on one clip's (frames, mel bins) features, got shape {tuple(features.shape)}")
    num_frames, num_bins = features.shape
    freq, time = draw_mask(rng, freqm, num_bins), draw_mask(rng, timem, num_frames)
    out = features.clone()
    out[:, freq.start : freq.start + freq.width] = value
    out[time.start : time.start + time.width, :] = value
    return out, freq, time


def mixup(
    waveform: np.ndarray, target: np.ndarray, other_waveform: np.ndarray, other_target: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """`lam * (x - mean x) + (1 - lam) * (y - mean y)` on waveforms (N,) and the targets (C,) alike.

    The result has the first clip's length: the other is zero-padded or cut to it, as the original does.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"the mixup weight must lie in [0, 1], got {lam}")
    x = waveform - waveform.mean()
    y = np.zeros_like(x)
    n = min(x.size, other_waveform.size)
    y[:n] = other_waveform[:n] - other_waveform.mean()
    return (lam * x + (1 - lam) * y).astype(np.float32), (lam * target + (1 - lam) * other_target).astype(np.float32)


def draw_mixup_weight(rng: np.random.Generator, alpha: float = 10.0) -> float:
    """lam ~ Beta(alpha, alpha); the original uses alpha = 10."""
    return float(rng.beta(alpha, alpha))


def noise_and_roll(features: torch.Tensor, rng: np.random.Generator, max_shift: int = 10) -> torch.Tensor:
    """The Speech Commands recipe's noise and time roll on one clip's features (T, F)."""
    noise = torch.from_numpy(rng.random(features.shape, dtype=np.float32)) * (float(rng.random()) / 10)
    shift = int(rng.integers(-max_shift, max_shift))
    return torch.roll(features + noise.to(features.device, features.dtype), shifts=shift, dims=0)
