"""`python -m ast_min.bench features`: clips/s of the log-mel front end, measured side by side in one run.

Rows: ast-min's batched front end (`ast_min.extractor.extract_input_values`, the CPU fast path),
ast-min's step-by-step functions vectorised over the whole batch (the readable reference),
`transformers.ASTFeatureExtractor` (its numpy path) and `kaldi-native-fbank` (Kaldi's C++, at the
largest bin count it accepts: it refuses AST's 128). All produce AST's (max_length, F) input from
the same random ten-second clips; each is timed `--repeats` times and the best run is kept. Before
timing, the fast path's output is checked against the step-by-step functions.

Run it on a quiet machine: clips/s is only as good as the cores are idle. The last column, CPU time
per clip summed over threads, is steadier when other jobs share the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch

from ast_min import features as F
from ast_min.extractor import extract_input_values


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ast_min.bench features", description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=64, help="clips per batch (default: 64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds (default: 10)")
    parser.add_argument("--num-mel-bins", type=int, default=F.NUM_MEL_BINS)
    parser.add_argument("--max-length", type=int, default=F.MAX_LENGTH)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the best is kept (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["reference", "transformers", "kaldi"],
                        help="rows to leave out")
    return parser.parse_args(argv)


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall-clock seconds, CPU seconds of all threads in that run) over `repeats` runs."""
    fn()  # warm-up: caches, allocator, lazy imports
    runs = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(runs)


def largest_kaldi_bins(num_mel_bins: int) -> int:
    """The largest bin count <= num_mel_bins that kaldi-native-fbank accepts (it refuses empty filters)."""
    import kaldi_native_fbank as knf

    for bins in range(num_mel_bins, 2, -1):
        options = kaldi_options(bins)
        try:
            knf.OnlineFbank(options)
            return bins
        except Exception:  # "You may have set num_mel_bins too large"
            continue
    raise RuntimeError("kaldi-native-fbank accepts no bin count here")


def kaldi_options(bins: int):
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.window_type = "hanning"
    options.mel_opts.num_bins = bins
    return options


def fast_path_equals_reference(clips: torch.Tensor, num_mel_bins: int, max_length: int) -> bool:
    """The fast path on (B, N) clips against the step-by-step functions in float64, as tests/test_features.py.

    In float64 both compute the same math in another order, so they agree to 1e-9 (~1e5 ulps). The
    timed float32 path is compared through mel energies exp(log-mel), with a tolerance of 1e-4 of
    each frame's strongest mel energy plus 1e-4 relative: float32 FFT rounding is ~eps32 * log2(512)
    of the frame's total energy, so weak bins cannot be compared bin by bin, while a real mistake
    moves the strong bins by O(1).
    """
    options = dict(num_mel_bins=num_mel_bins, max_length=max_length, do_normalize=False)  # log-mel, unnormalised
    reference = F.pad_or_truncate(F.log_mel_spectrogram(clips.double(), num_mel_bins=num_mel_bins), max_length)  # (B, T, F)
    fast64, _ = extract_input_values(clips.double(), dtype=torch.float64, **options)
    worst64 = (fast64 - reference).abs().max().item()
    fast32, _ = extract_input_values(clips, **options)
    energy, expected = fast32.double().exp(), reference.exp()
    bound = 1e-4 * expected + 1e-4 * expected.amax(dim=-1, keepdim=True) + 2 * F.LOG_FLOOR
    worst32 = ((energy - expected).abs() - bound).max().item()  # <= 0: within the tolerance
    print(f"fast path vs step-by-step reference, {len(clips)} clips: float64 max |log-mel difference| = "
          f"{worst64:.1e} (bound 1e-9); float32 worst energy excess over the bound = {worst32:.1e} (must be <= 0)")
    return worst64 <= 1e-9 and worst32 <= 0


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = int(args.seconds * F.SAMPLING_RATE)
    rng = np.random.default_rng(0)
    clips = (rng.standard_normal((args.clips, n)) * 0.1).astype(np.float32)  # (B, N)
    batch = torch.from_numpy(clips)
    options = dict(num_mel_bins=args.num_mel_bins, max_length=args.max_length)

    # Correctness first: the fast path against the step-by-step functions on these very clips.
    if not fast_path_equals_reference(batch[:4], args.num_mel_bins, args.max_length):
        print("error: the fast path disagrees with the step-by-step reference; not timing it")
        return 1

    rows = []  # (name, seconds)
    rows.append(("ast-min extract_input_values (fast path)", best_time(lambda: extract_input_values(batch, **options), args.repeats)))
    if "reference" not in args.skip:

        def step_by_step():
            for part in batch.split(16):  # 16 clips at a time keeps the (B, T, 400) frames in memory
                F.normalize(F.pad_or_truncate(F.log_mel_spectrogram(part, num_mel_bins=args.num_mel_bins), args.max_length))

        rows.append(("ast-min step-by-step, vectorised over the batch", best_time(step_by_step, args.repeats)))
    if "transformers" not in args.skip:
        from transformers import ASTFeatureExtractor

        listed = list(clips)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its empty-mel-filter warning at 128 bins
            extractor = ASTFeatureExtractor(**options)
            rows.append(("transformers ASTFeatureExtractor (numpy)",
                         best_time(lambda: extractor(listed, sampling_rate=F.SAMPLING_RATE, return_tensors="np"), args.repeats)))
    kaldi_bins = None
    if "kaldi" not in args.skip:
        import kaldi_native_fbank as knf

        kaldi_bins = largest_kaldi_bins(args.num_mel_bins)
        kopts = kaldi_options(kaldi_bins)

        def kaldi():
            out = np.zeros((len(clips), args.max_length, kaldi_bins), np.float32)
            for clip, o in zip(clips, out):
                fb = knf.OnlineFbank(kopts)
                fb.accept_waveform(F.SAMPLING_RATE, clip)
                fb.input_finished()
                t = min(fb.num_frames_ready, args.max_length)
                o[:t] = np.stack([fb.get_frame(i) for i in range(t)])
                # padding rows are log-mel 0 *before* normalisation, as pad_or_truncate and transformers pad
                o -= F.AUDIOSET_MEAN
                o /= 2 * F.AUDIOSET_STD

        rows.append((f"kaldi-native-fbank ({kaldi_bins} bins, one thread)", best_time(kaldi, args.repeats)))

    ours = args.clips / rows[0][1][0]
    print(f"\n{args.clips} clips of {args.seconds:g} s, {args.num_mel_bins} mel bins, max_length {args.max_length}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
          f"best of {args.repeats}\n")
    # CPU ms per clip counts every thread's time: it barely moves when other jobs share the cores,
    # where clips/s does, so it is the fairer column on a busy machine.
    print("| front end | clips/s | ast-min fast path is | CPU ms per clip |")
    print("| --- | ---: | ---: | ---: |")
    for name, (seconds, cpu) in rows:
        rate = args.clips / seconds
        print(f"| {name} | {rate:,.1f} | {ours / rate:.1f}x | {cpu / args.clips * 1e3:.2f} |")
    return 0
