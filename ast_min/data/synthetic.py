"""A synthetic sound-event dataset that needs no download: the data behind ast-min's embedded model.

Ten classes of sounds that a log-mel spectrogram tells apart by shape, not by a single number:

    pure_tone       one sine at a random frequency
    rising_chirp    a sine sweeping up (exponentially: a straight line on the mel axis)
    falling_chirp   the same sweeping down
    white_noise     flat spectrum
    pink_noise      1/f power spectrum (3 dB per octave down)
    click_train     impulses at a random rate (vertical lines in the spectrogram)
    am_tone         a sine fully amplitude-modulated at 4-8 Hz (a beating horizontal line)
    harmonic_stack  a fundamental and its first few harmonics, all of them (a comb)
    square_wave     odd harmonics only, falling as 1/k (a comb with every second tooth missing)
    tone_bursts     short sine pips separated by silence (a dashed horizontal line)

Every clip draws its event's frequency, duration, onset and gain, and a white-noise background at a
random signal-to-noise ratio, from `numpy.random.default_rng([seed, index])`: clip `i` of seed `s`
is the same on every machine and in every process, whatever order the clips are asked in, so a
held-out set is simply another seed.

Shape legend: N samples (a clip is one 1-D float32 array at `SAMPLING_RATE`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ast_min.features import FRAME_LENGTH, SAMPLING_RATE, samples_for_frames

CLASSES = (
    "pure_tone",
    "rising_chirp",
    "falling_chirp",
    "white_noise",
    "pink_noise",
    "click_train",
    "am_tone",
    "harmonic_stack",
    "square_wave",
    "tone_bursts",
)

# Frequency range of tonal events. Above ~150 Hz so a 64-bin mel filterbank resolves them; the top
# leaves room for a few harmonics below the 8 kHz Nyquist frequency.
LOW_HZ, HIGH_HZ = 150.0, 3000.0


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink noise by shaping white noise's spectrum by 1/sqrt(f) (power 1/f)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # keep the DC bin finite; its weight hardly matters
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def _event(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """The clean event of class `name`, `n` samples long, not yet scaled."""
    t = np.arange(n) / SAMPLING_RATE
    if name == "pure_tone":
        return np.sin(2 * np.pi * _log_uniform(rng, LOW_HZ, HIGH_HZ) * t + rng.uniform(0, 2 * np.pi))
    if name in ("rising_chirp", "falling_chirp"):
        # At least an octave and a half of sweep, so the slope shows within the shortest event.
        f0 = _log_uniform(rng, LOW_HZ, HIGH_HZ / 3)
        f1 = f0 * _log_uniform(rng, 3.0, HIGH_HZ / f0)
        if name == "falling_chirp":
            f0, f1 = f1, f0
        duration = n / SAMPLING_RATE
        k = np.log(f1 / f0) / duration  # exponential sweep: f(t) = f0 exp(k t)
        return np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    if name == "white_noise":
        return rng.standard_normal(n)
    if name == "pink_noise":
        return _pink(rng, n)
    if name == "click_train":
        x = np.zeros(n)
        period = int(SAMPLING_RATE / rng.uniform(4.0, 25.0))
        x[rng.integers(0, period) :: period] = 1.0
        return x
    if name == "am_tone":
        carrier = np.sin(2 * np.pi * _log_uniform(rng, LOW_HZ, HIGH_HZ) * t)
        # Deep and slow: a rate near 10 Hz would repeat once per 10-frame patch stride and hide in every patch alike.
        depth, rate = rng.uniform(0.9, 1.0), rng.uniform(4.0, 8.0)
        return carrier * (1 - depth * 0.5 * (1 + np.cos(2 * np.pi * rate * t)))
    if name == "harmonic_stack":
        f0 = _log_uniform(rng, LOW_HZ, HIGH_HZ / 4)
        count = int(min(rng.integers(4, 8), (SAMPLING_RATE / 2 - 100) // f0))
        return sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, count + 1))
    if name == "square_wave":
        f0 = _log_uniform(rng, LOW_HZ, HIGH_HZ / 2)
        # A band-limited square wave: odd harmonics at 1/k below Nyquist (no aliasing to blur the comb).
        ks = np.arange(1, int((SAMPLING_RATE / 2 - 100) // f0) + 1, 2)
        return (np.sin(2 * np.pi * f0 * ks[:, None] * t) / ks[:, None]).sum(axis=0)
    if name == "tone_bursts":
        tone = np.sin(2 * np.pi * _log_uniform(rng, LOW_HZ, HIGH_HZ) * t)
        period = rng.uniform(0.12, 0.3)  # seconds per burst + gap
        on = rng.uniform(0.3, 0.6)  # duty cycle
        return tone * ((t / period) % 1.0 < on)
    raise ValueError(f"unknown synthetic class {name!r}; the classes are {', '.join(CLASSES)}")


def make_clip(seed: int, index: int, num_samples: int = samples_for_frames(128)) -> tuple[np.ndarray, int]:
    """Clip `index` of the dataset drawn with `seed`: a float32 waveform (N,) and its class id.

    Classes cycle with the index (`index % 10`), so any run of ten consecutive indices holds one clip
    of each class; everything else about the clip is drawn from `default_rng([seed, index])`.
    """
    if num_samples < FRAME_LENGTH:
        raise ValueError(f"num_samples={num_samples} is shorter than one {FRAME_LENGTH}-sample frame; use at least {FRAME_LENGTH}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed ({seed}) and index ({index}) must be non-negative")
    label = index % len(CLASSES)
    rng = np.random.default_rng([seed, index])
    # The event lasts 60-100% of the clip and starts anywhere it fits.
    length = int(num_samples * rng.uniform(0.6, 1.0))
    onset = int(rng.integers(0, num_samples - length + 1))
    event = _event(CLASSES[label], rng, length)
    # 10 ms raised-cosine fades so the event's edges do not splash broadband clicks over the spectrum.
    fade = min(160, length // 4)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    event[:fade] *= ramp
    event[length - fade :] *= ramp[::-1]
    event *= 1.0 / np.sqrt(np.mean(event**2) + 1e-12)  # unit RMS over the event
    # Background at SNR 10-30 dB relative to the event, and an overall gain of -35..-10 dB RMS.
    snr_db = rng.uniform(10.0, 30.0)
    clip = rng.standard_normal(num_samples) * 10 ** (-snr_db / 20)
    clip[onset : onset + length] += event
    clip *= 10 ** (rng.uniform(-35.0, -10.0) / 20) / np.sqrt(np.mean(clip**2))
    # Sparse events (a slow click train) reach a high peak at a modest RMS: keep every clip within
    # [-0.9, 0.9] so that it survives being written as 16-bit PCM.
    clip *= min(1.0, 0.9 / np.abs(clip).max())
    return clip.astype(np.float32), label


class SyntheticDataset(torch.utils.data.Dataset):
    """`size` clips of the synthetic set drawn with `seed`, made on demand (nothing is stored).

    Items are dicts like every ast-min dataset's: `waveform` float32 numpy (N,), `target` float32
    one-hot (10,), `index`. The clips last `samples_for_frames(num_frames)` samples so that they
    fill exactly `num_frames` spectrogram frames.
    """

    labels = CLASSES
    sampling_rate = SAMPLING_RATE
    multi_label = False

    def __init__(self, size: int, seed: int = 0, num_frames: int = 128):
        if size < 1:
            raise ValueError(f"size={size}: a synthetic dataset needs at least one clip")
        self.size, self.seed, self.num_samples = int(size), int(seed), samples_for_frames(num_frames)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} clips")
        waveform, label = make_clip(self.seed, index, self.num_samples)
        target = np.zeros(len(CLASSES), dtype=np.float32)
        target[label] = 1.0
        return {"waveform": waveform, "target": target, "index": index}


def write_examples(
    directory: str | os.PathLike, seed: int = 12345, per_class: int = 1, num_frames: int = 128, classes=CLASSES
) -> list[str]:
    """Write `per_class` 16-bit 16 kHz wav files of each of `classes` to `directory` as `<class>_<k>.wav`
    (`<class>.wav` when `per_class` is 1).

    These are the README's example files (`ast-min classify examples/rising_chirp.wav`). Returns
    their paths. For a training folder (one sub-folder per class) use `write_class_folders`.
    """
    import soundfile as sf

    os.makedirs(directory, exist_ok=True)
    paths = []
    for k in range(per_class):
        for name in classes:
            label = CLASSES.index(name)
            waveform, _ = make_clip(seed, k * len(CLASSES) + label, samples_for_frames(num_frames))
            path = os.path.join(directory, f"{name}.wav" if per_class == 1 else f"{name}_{k}.wav")
            sf.write(path, waveform, SAMPLING_RATE, subtype="PCM_16")
            paths.append(path)
    return paths


def write_class_folders(directory: str | os.PathLike, size: int, seed: int = 0, num_frames: int = 128) -> list[str]:
    """Write `size` clips as `directory/<class>/<index>.wav`, the layout `ClipDataset.from_folder` reads."""
    import soundfile as sf

    paths = []
    for index in range(size):
        waveform, label = make_clip(seed, index, samples_for_frames(num_frames))
        folder = os.path.join(directory, CLASSES[label])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{index:06d}.wav")
        sf.write(path, waveform, SAMPLING_RATE, subtype="FLOAT")
        paths.append(path)
    return paths
