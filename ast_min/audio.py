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

Every command that reads a file goes through the same two checks, here:

- `open_audio` checks the header before anything is allocated: a rate outside [MIN_SAMPLING_RATE,
  MAX_SAMPLING_RATE] is refused, since a corrupt or hostile header (say 1 Hz) would otherwise make
  the resampler allocate gigabytes or turn a few samples into hours. `load_audio`, which holds the
  whole file, also refuses a clip longer than MAX_SECONDS.
- `check_samples` refuses NaN or Inf samples and samples beyond +-MAX_PEAK, naming the file and the
  first bad sample: such values would come out of the front end as NaN features and from the model
  as NaN scores. `load_audio` applies it to the whole file, `ast-min listen` to each block it reads.

A WAV file holding fewer frames than its header declares (a copy cut short) is read, with a warning.

Shape legend: N samples, C channels.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings

import numpy as np

# AST's rate (ast_min.features.SAMPLING_RATE), written out so that audio I/O stays free of torch,
# which ast_min.features imports.
DEFAULT_SAMPLING_RATE = 16000
# Telephone audio is 8 kHz; below 1 kHz nothing of the 20 Hz-8 kHz band the mel filterbank reads
# survives. Above 1 MHz no audio interface records: such a rate is a corrupt header.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 1_000_000
# Four hours at 16 kHz is 230 M samples (0.9 GiB as float32): the longest clip worth loading whole.
# Longer recordings should be cut first (`ffmpeg -i IN -f segment -segment_time 3600 OUT%03d.wav`).
MAX_SECONDS = 4 * 3600
# The largest sample magnitude accepted. Integer files decode to [-1, 1) and float files are written
# there; the one other scale the front end takes is Kaldi's, int16 values as floats, whose full scale
# is 2^15. Anything beyond is not a recording but damage or a unit mistake (a float file written
# with samples of 1e20), and the front end's float32 power spectrum would overflow on it long before
# float32's range of the samples does: `ast_min.extractor.check_finite` derives that everything up
# to MAX_PEAK stays finite.
MAX_PEAK = 2.0**15


def load_audio(path: str | os.PathLike, sampling_rate: int = DEFAULT_SAMPLING_RATE) -> np.ndarray:
    """Read an audio file as a mono float32 waveform (N,) at `sampling_rate` Hz, samples in [-1, 1).

    Multi-channel audio is downmixed by averaging the channels; other rates are resampled with
    soxr. Raises FileNotFoundError for a missing file and ValueError for an unreadable or empty
    one, one with NaN/Inf samples or samples beyond +-MAX_PEAK (`check_samples`), and an implausible
    one (a rate or length the header cannot truthfully hold); warns when a WAV file was cut short
    of the frames its header declares.
    """
    _check_rate(sampling_rate, "sampling_rate")
    path = os.fspath(path)
    with open_audio(path) as f:  # the header's rate and channels checked
        file_rate, frames = f.samplerate, f.frames
        _check_length(repr(path), frames, file_rate, sampling_rate)  # before the whole file is allocated
        try:
            samples = f.read(dtype="float32", always_2d=True)  # (N, C)
        except (RuntimeError, TypeError) as e:  # soundfile's LibsndfileError is a RuntimeError
            raise _cannot_decode(path, e) from None
    if samples.shape[0] == 0:
        raise ValueError(f"{path!r} holds no samples: the file is empty or truncated")
    declared = _wav_declared_frames(path)
    if declared is None:
        declared = frames
    if samples.shape[0] < declared:
        warnings.warn(
            f"{path!r} holds {samples.shape[0]} frames but its header declares {declared}: the file was cut short "
            f"(an interrupted copy or download?); using the {samples.shape[0] / file_rate:.3f} s it holds",
            stacklevel=2,
        )
    waveform = samples.mean(axis=1, dtype=np.float32)  # (N,): downmix, as the original repo's mono AudioSet
    check_samples(waveform, repr(path), file_rate)
    return resample(waveform, file_rate, sampling_rate)


def open_audio(path: str | os.PathLike):
    """`path` opened with soundfile for reading (a `soundfile.SoundFile`; close it, or use it in a `with`).

    The one way ast-min opens an audio file, so that whole-file loading (`load_audio`) and chunked
    reading (`ast-min listen --input FILE`) refuse the same inputs with the same messages: a missing
    file or one that is not a regular file (see `check_input_file`), one soundfile cannot decode
    (ValueError saying which formats it reads and how to convert the others), and a header whose
    sampling rate or channel count no recording has.
    """
    import soundfile  # on first use: importing this module (ast_min.extractor and the datasets do) stays light

    path = check_input_file(path, "audio file", "pass an audio file (wav, flac, ogg)")
    try:
        f = soundfile.SoundFile(path)
    except (RuntimeError, TypeError) as e:  # soundfile's LibsndfileError is a RuntimeError
        raise _cannot_decode(path, e) from None
    try:
        _check_header(path, f.samplerate, f.channels)
    except BaseException:
        f.close()
        raise
    return f


def _cannot_decode(path: str, error: Exception) -> ValueError:
    return ValueError(
        f"cannot decode {path!r} ({error}): soundfile reads wav, flac and ogg; "
        "convert other formats first, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"
    )


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int = DEFAULT_SAMPLING_RATE) -> np.ndarray:
    """Resample a mono waveform (N,) from orig_rate to new_rate Hz with soxr's anti-aliasing filter, float32 out."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"resample takes a mono waveform (N,), got shape {waveform.shape}: average the channels first")
    _check_rate(orig_rate, "orig_rate")
    _check_rate(new_rate, "new_rate")
    if orig_rate == new_rate:
        return waveform
    _check_length("the waveform", len(waveform), orig_rate, new_rate)
    import soxr  # on first use, as soundfile

    return soxr.resample(waveform, orig_rate, new_rate, quality="HQ").astype(np.float32, copy=False)


def check_input_file(path: str | os.PathLike, what: str, fix: str) -> str:
    """`path` as a str, after checking that it names a regular file (not missing, a folder, a pipe or a device).

    Reading a named pipe or a character device blocks until someone writes to it, possibly for
    ever: such inputs are refused before they are opened. `what` names the file in messages
    ("audio file", "labels file"); `fix` says what to pass instead.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path!r}: check the path") from None
    except OSError as e:
        raise ValueError(f"cannot open {path!r} ({e.strerror}): check its permissions") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path!r} is a directory: {fix}")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path!r} is not a regular file (a named pipe, socket or device, which could block for ever): {fix}")
    return path


def _check_rate(rate, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{name} must be an integer number of Hz in [{MIN_SAMPLING_RATE}, {MAX_SAMPLING_RATE}], got {rate!r}"
        )


def _check_header(path: str, rate: int, channels: int) -> None:
    """Refuse a header whose rate or channel count no real recording has, before any sample is allocated."""
    if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{path!r} claims a sampling rate of {rate} Hz, outside [{MIN_SAMPLING_RATE}, {MAX_SAMPLING_RATE}] Hz: "
            "its header is corrupt; re-encode the file with its true rate"
        )
    if channels < 1:
        raise ValueError(f"{path!r} claims {channels} channels: its header is corrupt")


def _check_length(name: str, frames: int, rate: int, new_rate: int) -> None:
    seconds = frames / rate
    if seconds > MAX_SECONDS:
        raise ValueError(
            f"{name} lasts {seconds / 3600:.1f} h ({frames} samples at {rate} Hz), more than the {MAX_SECONDS // 3600} h "
            f"ast-min loads at once ({MAX_SECONDS * new_rate} samples at {new_rate} Hz): cut it into shorter files first"
        )


def check_samples(samples, name: str, rate: int | None = None, offset: int = 0) -> None:
    """Refuse NaN or Inf samples and samples beyond +-MAX_PEAK, naming `name` and the first bad sample.

    samples: a mono numpy array or torch tensor; name: what the message calls it (a file's repr,
    "clip 3"); rate: its sampling rate, to give the time too; offset: the index of samples[0] in
    the file, for a block read from the middle of one. The extremes decide (NaN makes them NaN);
    only a failing array is searched.
    """
    if len(samples) == 0:
        return
    if hasattr(samples, "aminmax"):  # a torch tensor, on any device: both extremes in one pass
        low, high = (float(v) for v in samples.aminmax())
    else:
        low, high = float(samples.min()), float(samples.max())
    if -MAX_PEAK <= low and high <= MAX_PEAK:  # False for NaN
        return
    values = samples.detach().cpu().numpy() if hasattr(samples, "detach") else np.asarray(samples)
    where = lambda i: f"sample {offset + i}" + (f", {(offset + i) / rate:.3f} s" if rate else "")  # noqa: E731
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(
            f"{name} has NaN or Inf samples (the first at {where(int(bad[0]))}): the audio is damaged; "
            "repair it (e.g. numpy.nan_to_num) or leave it out"
        )
    first = int(np.flatnonzero(np.abs(values) > MAX_PEAK)[0])
    raise ValueError(
        f"{name} has samples up to {float(np.abs(values).max()):.3g} (the first beyond +-{MAX_PEAK:.0f} at "
        f"{where(first)}): audio must lie in [-1, 1) (int16-scaled values up to +-{MAX_PEAK:.0f} are accepted "
        "too), and larger ones would give NaN features; rescale it into [-1, 1) or leave it out"
    )


def _wav_declared_frames(path: str) -> int | None:
    """Frames a RIFF/WAVE file's `data` chunk header declares, or None (not a WAV, or a size left unknown).

    libsndfile trims its frame count to what the file holds, so a file cut short looks whole to it;
    the header's own chunk size still says how long the recording was. Streamed WAVs write an
    unknown size as 0 or 0xFFFFFFFF: those declare nothing.
    """
    with open(path, "rb") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            header = f.read(8)
            if len(header) < 8:
                return None
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                fmt = f.read(size)
                if len(fmt) < 14:
                    return None
                block_align = struct.unpack("<H", fmt[12:14])[0]
                if size % 2:
                    f.seek(1, os.SEEK_CUR)  # chunks are padded to an even size
            elif chunk == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + size % 2, os.SEEK_CUR)
