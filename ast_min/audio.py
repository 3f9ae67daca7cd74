"""Audio files in, the waveform AST expects out: mono float32 samples in [-1, 1) at 16 kHz.

AST's checkpoints were trained on 16 kHz mono audio (AudioSet clips decoded and resampled
offline), so every clip must match: channels are averaged and any other rate is resampled.

- Decoding: `soundfile` (libsndfile) reads WAV, FLAC and OGG/Vorbis (and MP3 with libsndfile
  >= 1.1). It is small, has wheels everywhere, and returns floats scaled exactly as torchaudio's
  loader did for the original repo: int16 PCM divided by 32768.
- Resampling: `soxr` (the SoX resampler, "HQ" quality): a band-limited polyphase filter whose
  anti-aliasing stop band starts at the new Nyquist frequency, so 44.1/48 kHz content above 8 kHz
  is removed rather than folded back into the 0-8 kHz band the mel filterbank looks at. It is
  faster than scipy's `resample_poly` and, unlike FFT resampling, needs no periodicity.

Shape legend: N samples, C channels.
"""

from __future__ import annotations

import os

import numpy as np


def load_audio(path: str | os.PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """Read an audio file as a mono float32 waveform (N,) at `sampling_rate` Hz, samples in [-1, 1).

    Multi-channel audio is downmixed by averaging the channels; other rates are resampled with
    soxr. Raises FileNotFoundError for a missing file and ValueError for an unreadable or empty one.
    """
    import soundfile

    if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer number of Hz, got {sampling_rate!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no audio file at {path!r}: check the path")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory: pass an audio file (wav, flac, ogg)")
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)  # (N, C)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise ValueError(
            f"cannot decode {path!r} ({e}): soundfile reads wav, flac and ogg; "
            "convert other formats first, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"
        ) from None
    if samples.shape[0] == 0:
        raise ValueError(f"{path!r} holds no samples: the file is empty or truncated")
    waveform = samples.mean(axis=1, dtype=np.float32)  # (N,): downmix, as the original repo's mono AudioSet
    return resample(waveform, file_rate, sampling_rate)


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int = 16000) -> np.ndarray:
    """Resample a mono waveform (N,) from orig_rate to new_rate Hz with soxr's anti-aliasing filter, float32 out."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"resample takes a mono waveform (N,), got shape {waveform.shape}: average the channels first")
    if orig_rate == new_rate:
        return waveform
    import soxr

    return soxr.resample(waveform, orig_rate, new_rate, quality="HQ").astype(np.float32, copy=False)
