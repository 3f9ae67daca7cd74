"""`ast-min features FILE... [--out X.npy]`: the front end on audio files, from the command line.

Each file is loaded (mono, resampled to 16 kHz), turned into AST's input (max_length, F) log-mel
features, and summarised in one line; `--out` saves the whole batch (B, max_length, F) as .npy.
Where the batch will go is checked before any file is read, and it is written to a temporary file
renamed into place, so an error never leaves a half-written .npy behind.

Shape legend: B files, T frames (max_length), F mel bins.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np

from ast_min import files
from ast_min.audio import load_audio
from ast_min.commands.options import MAX_FRAMES, check_max_length, checked
from ast_min.extractor import ASTFeatureExtractor, check_normalization, require_one_frame
from ast_min.features import AUDIOSET_MEAN, AUDIOSET_STD, FRAME_SHIFT, MAX_LENGTH, NUM_MEL_BINS, SAMPLING_RATE, num_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg; any rate, any channels)")
    parser.add_argument("--out", metavar="X.npy", help="save the features of all files as one (B, T, F) float32 .npy "
                        "(.npy is appended when missing, as numpy.save does)")
    parser.add_argument("--num-mel-bins", type=int, default=NUM_MEL_BINS, help=f"F, mel bins (default: {NUM_MEL_BINS})")
    parser.add_argument(
        "--max-length", type=checked(int, check_max_length), default=MAX_LENGTH,
        help=f"T, frames to pad/truncate to, 1 to {MAX_FRAMES} "
        f"(default: {MAX_LENGTH} = {MAX_LENGTH * FRAME_SHIFT / SAMPLING_RATE:.2f} s)",
    )
    parser.add_argument("--mean", type=float, default=AUDIOSET_MEAN, help="normalisation mean (default: AudioSet's)")
    parser.add_argument("--std", type=float, default=AUDIOSET_STD, help="normalisation std (default: AudioSet's)")
    parser.add_argument("--no-normalize", action="store_true", help="keep the raw log-mel values")
    parser.add_argument(
        "--preprocessor", metavar="DIR",
        help="read the settings from DIR/preprocessor_config.json (a checkpoint directory) instead",
    )


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out) if args.out else None  # checked before the work, not after
    extractor = _extractor(args)
    waveforms = []
    for path in args.files:
        waveform = load_audio(path, extractor.sampling_rate)  # names the file in its errors
        require_one_frame(path, waveform, extractor.sampling_rate)
        waveforms.append(waveform)
    features = extractor(waveforms, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_values"]
    for path, x in zip(args.files, features):
        if not np.isfinite(x).all():  # the samples and options were checked so this cannot happen: never write it
            raise ValueError(f"the features of {path!r} came out NaN or Inf although the audio and the options passed "
                             "their checks; please report this, with the file and the command")  # fmt: skip
    print(f"{'file':<32} {'seconds':>8} {'frames':>12} {'shape':>12} {'min':>8} {'mean':>8} {'std':>8} {'max':>8}")
    for path, waveform, x in zip(args.files, waveforms, features):
        frames = num_frames(len(waveform))
        used = f"{min(frames, extractor.max_length)}/{frames}"  # kept / computed from the audio
        shape = "x".join(map(str, x.shape))
        name = os.path.basename(path)
        print(
            f"{name[-32:]:<32} {len(waveform) / extractor.sampling_rate:8.2f} {used:>12} {shape:>12} "
            f"{x.min():8.3f} {x.mean():8.3f} {x.std():8.3f} {x.max():8.3f}"
        )
        if frames > extractor.max_length:
            print(f"  note: {name} is truncated to the first {extractor.max_length * FRAME_SHIFT / extractor.sampling_rate:.2f} s")
    if out:
        files.save_npy(out, features)  # already float32: the extractor computes in float32
        print(f"saved {features.shape} float32 to {out}")
    return 0


def _extractor(args: argparse.Namespace) -> ASTFeatureExtractor:
    if args.preprocessor:
        return ASTFeatureExtractor.from_pretrained(args.preprocessor)
    if not args.no_normalize:
        if not math.isfinite(args.mean):
            raise ValueError(f"--mean must be a finite number, got {args.mean}")
        if not (math.isfinite(args.std) and args.std > 0):
            raise ValueError(f"--std must be a positive, finite number, got {args.std}: "
                             "give the dataset's feature standard deviation (ast_min.compute_norm_stats), or --no-normalize")
        check_normalization(args.mean, args.std, names=("--mean", "--std"))
    if args.num_mel_bins < 1:
        raise ValueError(f"--num-mel-bins must be at least 1, got {args.num_mel_bins}")
    check_max_length(args.max_length)
    return ASTFeatureExtractor(
        num_mel_bins=args.num_mel_bins, max_length=args.max_length,
        do_normalize=not args.no_normalize, mean=args.mean, std=args.std,
    )


def output_path(out: str) -> str:
    """The path numpy.save will write for `out` (it appends .npy), checked writable before any work is done."""
    out = os.fspath(out)
    if not out.endswith(".npy"):
        out += ".npy"
    folder = os.path.dirname(os.path.abspath(out))
    files.check_output_file(out, "--out", "features.npy")
    if not os.path.isdir(folder):
        raise ValueError(f"--out {out!r}: the folder {folder!r} does not exist: create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out!r}: the folder {folder!r} is not writable: choose another --out")
    return out
