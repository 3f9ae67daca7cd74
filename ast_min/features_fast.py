"""The CPU fast path of the log-mel front end: the numbers of `features.log_mel_spectrogram`, fewer passes.

The step-by-step reference makes about ten passes over a (T, 400) frame matrix 2.5x larger than the
clip (frames overlap) and, vectorised over a batch, streams hundreds of megabytes through memory.
This version computes the same values with the tricks below, each justified by algebra and tested
equal to the reference (tests/test_features.py):

1. Pre-emphasis on the signal, not per frame. Inside a frame, after DC removal,
   z[n] = (x[n] - m) - 0.97 (x[n-1] - m) = e[n] - 0.03 m for n >= 1, where e[n] = x[n] - 0.97 x[n-1]
   is the pre-emphasised *signal* (N samples, 2.5x fewer than the frames hold) and m the frame mean.
   Sample n = 0 is special in Kaldi (it uses itself as predecessor), but the symmetric Hann window
   is exactly 0 there, so whatever sits there is multiplied by 0.
2. DC removal after the fact: windowed = h * e_frame - (0.03 m) h, a product and a rank-one update.
   The frame sums come from sums of `SUM_BLOCK` = 80-sample blocks (160 = 2 x 80, 400 = 5 x 80): one
   pass over the samples instead of one over the frames.
3. The mel projection only over the FFT bins each filter touches. The filterbank is banded (each
   FFT bin lies in at most two triangles): filters are grouped 16 at a time and each group
   multiplies only its own range of FFT bins, by count about 8x fewer multiply-adds than the dense (257, 128).
4. Normalisation folded into the projection: (log(max(E, eps)) - mean) / (2 std)
   = log(max(E e^-mean, eps e^-mean)) / (2 std), so the filterbank is pre-scaled by e^-mean.
5. One clip at a time, each clip's frames in one chunk, written straight into the caller's output
   rows, in reused per-thread buffers (fresh megabyte allocations cost page faults on every call).
   A clip's working set (a few MiB for 10 s: the (1024, 512) frame and (1024, 257) power buffers)
   stays in the caches, where the whole-batch version streams from memory. Smaller chunks would
   fit a smaller cache but multiply the number of torch calls, each with a fixed overhead. Clips
   are spread over threads (torch releases the GIL inside each operation), one intra-op thread each.

What remains is mostly the FFT and the banded projection (`python -m ast_min.bench features` times
the whole against transformers and kaldi-native-fbank).

Shape legend: N samples, T frames, C frames in a chunk, K FFT bins (257), F mel bins.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch

from ast_min.features import (
    FFT_LENGTH,
    FRAME_LENGTH,
    FRAME_SHIFT,
    LOG_FLOOR,
    PREEMPHASIS,
    hanning_window,
    mel_filterbank,
    num_frames,
)

CHUNK_FRAMES = 1024  # C: frames per chunk, a whole 10 s clip (see trick 5)
SUM_BLOCK = math.gcd(FRAME_SHIFT, FRAME_LENGTH)  # samples per partial sum: frames are whole numbers of these
# Filters per banded matmul. A wider band multiplies more zeros (its bins span all its filters'
# triangles); a narrower one makes more torch calls, each with a fixed overhead. Any value gives
# the same numbers; time `python -m ast_min.bench features` after changing it.
FILTERS_PER_BAND = 16


@lru_cache(maxsize=16)
def _bands(num_mel_bins: int, sampling_rate: int, dtype: torch.dtype, scale: float = 1.0) -> tuple:
    """The filterbank times `scale`, cut into blocks of filters: ((f0, f1, k0, k1, weights (k1 - k0, f1 - f0)), ...).

    [k0, k1) is the smallest range of FFT bins where any filter of the block is non-zero. An empty
    filter inside a block (filter 3 at 128 bins, in block 0-15) is an all-zero column of `weights`,
    so the banded product gives it exactly 0, as the full filterbank does; a block of only empty
    filters (none at the sizes AST uses) would get an empty range and stay at 0.
    """
    bank = mel_filterbank(num_mel_bins, sampling_rate=sampling_rate, dtype=torch.float64)  # (K, F)
    bands = []
    for f0 in range(0, num_mel_bins, FILTERS_PER_BAND):
        f1 = min(f0 + FILTERS_PER_BAND, num_mel_bins)
        touched = (bank[:, f0:f1] > 0).any(dim=1).nonzero().flatten()
        k0, k1 = (int(touched[0]), int(touched[-1]) + 1) if len(touched) else (0, 0)
        bands.append((f0, f1, k0, k1, (bank[k0:k1, f0:f1] * scale).to(dtype).contiguous()))
    return tuple(bands)


@lru_cache(maxsize=4)
def _window(dtype: torch.dtype) -> torch.Tensor:
    return hanning_window(FRAME_LENGTH, dtype=dtype)


class _Workspace:
    """One thread's chunk buffers, allocated once and reused: fresh large allocations cost page faults."""

    def __init__(self, dtype: torch.dtype):
        span = (CHUNK_FRAMES - 1) * FRAME_SHIFT + FRAME_LENGTH  # samples under one chunk of frames
        self.signal = torch.zeros(span, dtype=dtype)  # the chunk's pre-emphasised samples
        self.blocks = torch.empty(span // SUM_BLOCK, dtype=dtype)
        self.frames = torch.zeros(CHUNK_FRAMES, FFT_LENGTH, dtype=dtype)  # columns 400.. stay 0: the FFT's zero padding
        self.power = torch.empty(CHUNK_FRAMES, FFT_LENGTH // 2 + 1, dtype=dtype)
        self.dc = torch.empty(CHUNK_FRAMES, dtype=dtype)


_local = threading.local()
_BATCH_LOCK = threading.Lock()


def _workspace(dtype: torch.dtype) -> _Workspace:
    spaces = _local.__dict__.setdefault("spaces", {})
    if dtype not in spaces:
        spaces[dtype] = _Workspace(dtype)
    return spaces[dtype]


def log_mel_into(
    out: torch.Tensor,
    waveform: torch.Tensor,
    *,
    num_mel_bins: int,
    sampling_rate: int,
    norm: tuple[float, float] | None = None,
) -> int:
    """Write the first T' = min(T, len(out)) log-mel frames of a CPU waveform (N,) into out (T_out, F).

    norm = (mean, std) also normalises, (x - mean) / (2 std). Rows of out past T' are left untouched
    (the caller fills them with the padding value). waveform must have at least 400 finite samples
    (the caller checks them); it is computed in out's dtype. Returns T'.
    """
    dtype = out.dtype
    waveform = waveform.to(dtype).contiguous()  # the block sums view it as (-1, 80)
    t_total = min(out.shape[0], num_frames(waveform.shape[-1]))
    space = _workspace(dtype)
    window = _window(dtype)
    # Trick 4: normalisation folded into the filterbank and the floor. (|mean| <= 40 keeps e^-mean and
    # eps e^-mean far inside float32's range; other means are subtracted after the log.)
    mean, std = norm if norm is not None else (0.0, 0.5)
    fold = abs(mean) <= 40
    scale = math.exp(-mean) if fold else 1.0
    floor = LOG_FLOOR * scale
    bands = _bands(num_mel_bins, sampling_rate, dtype, scale)
    for t0 in range(0, t_total, CHUNK_FRAMES):
        c = min(CHUNK_FRAMES, t_total - t0)  # frames in this chunk
        x = waveform[t0 * FRAME_SHIFT : (t0 + c - 1) * FRAME_SHIFT + FRAME_LENGTH]  # (S,) samples under them
        # Trick 1: pre-emphasis once per sample; e[0] is never used (window weight 0 there).
        e = space.signal[: x.shape[0]]  # e[0] stays 0 from allocation
        torch.add(x[1:], x[:-1], alpha=-PREEMPHASIS, out=e[1:])
        # Trick 2a: frame sums from 80-sample block sums. 160 = 2 x 80 and 400 = 5 x 80, so frame t
        # is blocks 2t .. 2t + 4: one contiguous pass over the samples instead of over 2.5x as many.
        blocks = torch.sum(x.view(-1, SUM_BLOCK), dim=1, out=space.blocks[: x.shape[0] // SUM_BLOCK])  # (2C + 3,)
        dc = torch.sum(blocks.unfold(0, FRAME_LENGTH // SUM_BLOCK, FRAME_SHIFT // SUM_BLOCK), dim=1, out=space.dc[:c])  # (C,)
        dc.mul_((1 - PREEMPHASIS) / FRAME_LENGTH)  # 0.03 m (trick 1)
        # Trick 2b: window, then DC removal as a rank-one update, h * e_frame - (0.03 m) h.
        frames = space.frames[:c]  # (C, 512)
        torch.mul(e.unfold(0, FRAME_LENGTH, FRAME_SHIFT), window, out=frames[:, :FRAME_LENGTH])  # (C, 400)
        frames[:, :FRAME_LENGTH].addr_(dc, window, alpha=-1)
        spectrum = torch.view_as_real(torch.fft.rfft(frames)).square_()  # (C, K, 2): re^2 and im^2
        power = torch.add(spectrum[..., 0], spectrum[..., 1], out=space.power[:c])  # (C, K)
        mel = out[t0 : t0 + c]  # (C, F), rows of the caller's output
        # Trick 3: banded projection, each block of filters over its own FFT bins only.
        for f0, f1, k0, k1, weights in bands:
            if k1 > k0:
                torch.mm(power[:, k0:k1], weights, out=mel[:, f0:f1])
            else:
                mel[:, f0:f1] = 0
        torch.log(mel.clamp_min_(floor), out=mel)
        if not fold:
            mel.sub_(mean)
        if norm is not None:
            mel.div_(2 * std)
    return t_total


def log_mel_batch_into(
    outs: list[torch.Tensor],
    clips: list[torch.Tensor],
    *,
    num_mel_bins: int,
    sampling_rate: int,
    norm: tuple[float, float] | None = None,
    padding_value: float = 0.0,
    check: Callable[[torch.Tensor, int], None] | None = None,
) -> None:
    """For each clip i: `check(clip, i)` if given, `log_mel_into(outs[i], clip)`, and fill the remaining rows with padding_value.

    outs[i] (T_out, F) may be uninitialised (torch.empty): the worker computing clip i writes every
    row of it, so the page faults of a fresh output are spread over the threads too. With more
    than one torch thread, clips are spread over that many worker threads (torch releases the GIL
    inside each operation), each running its operations on one intra-op thread, one batch at a time.
    """
    def work(i: int) -> None:
        # One intra-op thread per worker. OpenMP gives every calling thread its own team, so two
        # workers would otherwise each start a team of `threads`; and on a loaded machine every
        # parallel region waits for its slowest (descheduled) thread.
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        if check is not None:
            check(clips[i], i)  # in the worker: a clip's check costs a pass over its samples
        t = log_mel_into(outs[i], clips[i], num_mel_bins=num_mel_bins, sampling_rate=sampling_rate, norm=norm)
        outs[i][t:].fill_(padding_value)

    # Every clip runs on one intra-op thread, a single clip too: the same bits whatever the batch.
    if torch.get_num_threads() == 1:
        for i in range(len(clips)):
            work(i)
        return
    # One batch at a time: torch's thread count is partly process-wide (the workers' setting leaks
    # into it), and two overlapping batches would restore each other's values in the wrong order.
    with _BATCH_LOCK:
        threads = torch.get_num_threads()
        try:
            list(_pool(threads).map(work, range(len(clips))))
        finally:
            torch.set_num_threads(threads)  # put the caller's setting back


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (workers, pool)
_FORK_HOOK = False


def _pool(size: int) -> ThreadPoolExecutor:
    """`size` worker threads, kept between batches (starting threads on every call would cost more than small batches take). Call under _BATCH_LOCK."""
    global _POOL, _FORK_HOOK
    if not _FORK_HOOK:  # registered on first use, not at import
        os.register_at_fork(after_in_child=_forget_pool_after_fork)
        _FORK_HOOK = True
    if _POOL is None or _POOL[0] != size:
        if _POOL is not None:
            _POOL[1].shutdown(wait=True)
        _POOL = (size, ThreadPoolExecutor(size, thread_name_prefix="ast-min-fbank"))
    return _POOL[1]


def _forget_pool_after_fork() -> None:
    # A forked child (a DataLoader worker, say) inherits the pool object but not its threads.
    global _POOL, _BATCH_LOCK
    _POOL, _BATCH_LOCK = None, threading.Lock()

