"""Live classification of a stream of audio, one result per hop (`ast-min listen`).

    source (microphone | file read chunk by chunk | raw 16-bit PCM on stdin)
      -> mono float32 chunks, resampled to 16 kHz on the fly (soxr's streaming resampler)
      -> ring buffer of the model's window (max_length frames: 10.24 s for AudioSet models)
      -> every hop: the buffer's window -> features -> model -> scores -> one line (or JSON object)

The windows are those of `ast-min classify --window` on the same audio: a window starts every
`hop` samples from the first one, a window is classified as soon as its last sample has arrived,
and when the stream ends, one more window flush with the end covers a tail the last hop left out
(a stream shorter than one window gives one padded window, as a short file does). So a recording
streamed here and the file given to `classify --window --hop` get the same scores per window.

Each line also gives the time the model took for the window and the real-time factor, that time
divided by the hop: below 1 the classifier keeps up with live audio, above 1 it falls behind (a
microphone's input then queues up; use a larger --hop or a smaller model).

Shape legend: N samples, W window samples, C labels.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ast_min.audio import check_samples
from ast_min.features import FRAME_LENGTH, SAMPLING_RATE
from ast_min.inference import hop_samples

CHUNK_SECONDS = 0.1  # how much audio each read returns: small against any window, cheap per call
PCM16_SCALE = 2.0**15  # int16 -> [-1, 1), as soundfile and ast_min.audio scale PCM
NO_MICROPHONE_HELP = (
    "classify a file as if it were live: ast-min listen --input clip.wav; "
    "or pipe raw 16-bit mono PCM at 16 kHz: ffmpeg -i IN -f s16le -ac 1 -ar 16000 - | ast-min listen --input -"
)


class RingBuffer:
    """The last `capacity` samples of a stream, in a fixed array written round and round."""

    def __init__(self, capacity: int):
        self.data = np.zeros(capacity, dtype=np.float32)  # (W,)
        self.end = 0  # samples written so far; the next one goes to end % capacity

    def write(self, samples: np.ndarray) -> None:
        """Append (n,) samples, overwriting the oldest once full."""
        capacity, n = len(self.data), len(samples)
        samples = samples[-capacity:]  # older ones would be overwritten anyway
        start = (self.end + n - len(samples)) % capacity  # where the kept tail goes, as if all n were written
        first = min(len(samples), capacity - start)
        self.data[start : start + first] = samples[:first]
        self.data[: len(samples) - first] = samples[first:]  # the part that wraps round
        self.end += n  # every sample counts: stream positions (window starts, the total) follow `end`

    def latest(self, n: int) -> np.ndarray:
        """The last n <= capacity samples written (fewer at the start of the stream), oldest first."""
        n = min(n, self.end, len(self.data))
        idx = (self.end - n + np.arange(n)) % len(self.data)  # (n,) positions, oldest first
        return self.data[idx]


@dataclass
class Window:
    """One classified window: [start, end) seconds of the stream, top labels, and the time it took."""

    start: float
    end: float
    predictions: list[tuple[str, float]]
    seconds: float
    rtf: float

    def to_json(self) -> dict:
        return {
            "start": self.start, "end": self.end,
            "predictions": [{"label": label, "score": score} for label, score in self.predictions],
            "processing_ms": round(1000 * self.seconds, 2), "rtf": round(self.rtf, 4),
        }  # fmt: skip

    def to_text(self) -> str:
        top = ", ".join(f"{label} {score:.3f}" for label, score in self.predictions)
        return f"{self.start:8.2f}-{self.end:.2f} s  {top}  ({1000 * self.seconds:.0f} ms, RTF {self.rtf:.3f})"


def stream_windows(chunks, window: int, hop: int, source: str = "the stream") -> Iterator[tuple[int, np.ndarray]]:
    """Mono 16 kHz chunks -> (start sample, (<= W,) window) as soon as each window is complete.

    Windows start at 0, hop, 2 hop, ... while a full window fits; at the end of the stream one
    more ends flush with it if the last one did not reach it (`ast_min.inference.window_starts`' rule).
    source: what the error for a stream shorter than one frame calls it.
    """
    ring = RingBuffer(window)
    next_start, last_start = 0, None
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32)
        while len(chunk):
            # feed only up to the next window's end, so the ring holds exactly that window there
            take = min(len(chunk), next_start + window - ring.end)
            ring.write(chunk[:take])
            chunk = chunk[take:]
            if ring.end == next_start + window:
                yield next_start, ring.latest(window)
                last_start, next_start = next_start, next_start + hop
    total = ring.end
    if total < FRAME_LENGTH:
        raise ValueError(
            f"{source} ended after {total} samples, shorter than one {FRAME_LENGTH}-sample "
            f"(25 ms) frame: AST needs at least one frame of audio"
        )
    if last_start is None:  # shorter than one window: one window, padded by the extractor
        yield 0, ring.latest(total)
    elif last_start + window < total:
        yield total - window, ring.latest(window)


def listen(
    chunks, classifier, *, hop_seconds: float | None = None, top_k: int = 3, source: str = "the stream",
) -> Iterator[Window]:  # fmt: skip
    """Classify a stream: mono 16 kHz chunks (each (n,)) -> one Window per hop, as it completes.

    classifier: an `ast_min.classify.Classifier` (model, features, labels, activation); source: what
    error messages call the stream (a file's name, "standard input"). Scores that come out NaN or
    Inf are an error, as in `ast-min classify`, never a line.
    """
    window = classifier.window_samples
    hop = hop_samples(window, hop_seconds)
    for start, clip in stream_windows(chunks, window, hop, source):
        t0 = time.perf_counter()
        scores = classifier.scores([clip], batch_size=1)[0]  # (C,)
        seconds = time.perf_counter() - t0
        if not np.isfinite(scores).all():
            raise ValueError(
                f"the model gave NaN or Inf scores for {source} at {start / SAMPLING_RATE:.2f} s: its weights are not "
                f"finite or make the logits overflow; check or retrain the checkpoint ({classifier.model_name})"
            )
        yield Window(
            start=round(start / SAMPLING_RATE, 3), end=round((start + len(clip)) / SAMPLING_RATE, 3),
            predictions=classifier.top(scores, top_k), seconds=seconds, rtf=seconds * SAMPLING_RATE / hop,
        )  # fmt: skip


# ---- sources ------------------------------------------------------------------------------------


class StreamResampler:
    """Mono chunks at `rate` -> chunks at 16 kHz with soxr's streaming resampler (identity at 16 kHz)."""

    def __init__(self, rate: int):
        self.stream = None
        if rate != SAMPLING_RATE:
            import soxr

            self.stream = soxr.ResampleStream(rate, SAMPLING_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return chunk
        return self.stream.resample_chunk(chunk, last=last)


def file_chunks(path, *, realtime: bool = False, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """An audio file read CHUNK_SECONDS at a time, downmixed and resampled: (n,) float32 chunks at 16 kHz.

    The samples are those `ast_min.audio.load_audio` returns for the whole file (soxr's streaming
    resampler, flushed at the end, gives the one-shot resampler's output). realtime: sleep so
    chunks arrive no faster than the audio's duration.
    """
    from ast_min.audio import open_audio

    f = open_audio(path)  # opened now, so a bad path or header fails before the model loads
    return _file_chunks(f, repr(os.fspath(path)), realtime, chunk_seconds)


def _file_chunks(f, name: str, realtime: bool, chunk_seconds: float) -> Iterator[np.ndarray]:
    with f:
        resample = StreamResampler(f.samplerate)
        block = max(1, round(chunk_seconds * f.samplerate))
        t0 = time.monotonic()
        played = 0
        while True:
            data = f.read(block, dtype="float32", always_2d=True)  # (n, channels)
            last = len(data) < block
            mono = data.mean(axis=1, dtype=np.float32)  # (n,): channels averaged
            check_samples(mono, name, f.samplerate, offset=played)  # load_audio's check, block by block
            yield resample(mono, last=last)
            played += len(data)
            if last:
                return
            if realtime:
                time.sleep(max(0.0, played / f.samplerate - (time.monotonic() - t0)))


def pcm16_chunks(stream, rate: int = SAMPLING_RATE, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """Raw signed 16-bit little-endian mono PCM from a binary stream -> (n,) float32 chunks at 16 kHz.

    Reads until end of stream; an odd byte split across reads is kept for the next read.
    """
    resample = StreamResampler(rate)
    block = 2 * max(1, round(chunk_seconds * rate))
    pending = b""
    while True:
        data = stream.read(block)
        if not data:
            if pending:
                raise ValueError("standard input ended in the middle of a 16-bit sample: send whole s16le samples")
            yield resample(np.zeros(0, np.float32), last=True)
            return
        data = pending + data
        whole = len(data) - len(data) % 2
        pending = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / PCM16_SCALE  # (n,)
        yield resample(samples)


def microphone_chunks(chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """The default input device at 16 kHz mono through `sounddevice` (optional), chunk by chunk.

    Raises RuntimeError saying how to use a file or standard input when sounddevice is not
    installed or there is no input device.
    """
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the package is there but the PortAudio library is not
        raise RuntimeError(
            f"no microphone input: the optional sounddevice package is not usable ({e}); install it with "
            f"`pip install sounddevice`, or {NO_MICROPHONE_HELP}"
        ) from None
    try:
        sounddevice.query_devices(kind="input")
    except Exception as e:  # sounddevice raises PortAudioError or ValueError when there is no input device
        raise RuntimeError(f"no microphone found ({e}): {NO_MICROPHONE_HELP}") from None
    return _microphone_chunks(sounddevice, chunk_seconds)


def _microphone_chunks(sounddevice, chunk_seconds: float) -> Iterator[np.ndarray]:
    chunks: queue.Queue = queue.Queue()

    def callback(indata, frames, time_info, status):  # runs on PortAudio's thread: hand the data over
        chunks.put(indata[:, 0].copy())

    # 16 kHz asked of the device; PortAudio (or the OS) resamples when the hardware runs at another rate
    with sounddevice.InputStream(samplerate=SAMPLING_RATE, channels=1, dtype="float32",
                                 blocksize=round(chunk_seconds * SAMPLING_RATE), callback=callback):  # fmt: skip
        received = 0
        while True:
            chunk = chunks.get()
            check_samples(chunk, "the microphone input", SAMPLING_RATE, offset=received)  # as files are checked
            received += len(chunk)
            yield chunk

