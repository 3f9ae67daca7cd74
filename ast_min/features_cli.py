"""`ast-min features FILE... [--out X.npy]`: the front end on audio files, from the command line.

Each file is loaded (mono, resampled to 16 kHz), turned into AST's input (max_length, F) log-mel
features, and summarised in one line; `--out` saves the whole batch (B, max_length, F) as .npy.

Shape legend: B files, T frames (max_length), F mel bins.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ast_min.features import AUDIOSET_MEAN, AUDIOSET_STD, FRAME_SHIFT, MAX_LENGTH, NUM_MEL_BINS, SAMPLING_RATE, num_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg; any rate, any channels)")
    parser.add_argument("--out", metavar="X.npy", help="save the features of all files as one (B, T, F) float32 .npy")
    parser.add_argument("--num-mel-bins", type=int, default=NUM_MEL_BINS, help=f"F, mel bins (default: {NUM_MEL_BINS})")
    parser.add_argument(
        "--max-length", type=int, default=MAX_LENGTH,
        help=f"T, frames to pad/truncate to (default: {MAX_LENGTH} = {MAX_LENGTH * FRAME_SHIFT / SAMPLING_RATE:.2f} s)",
    )
    parser.add_argument("--mean", type=float, default=AUDIOSET_MEAN, help="normalisation mean (default: AudioSet's)")
    parser.add_argument("--std", type=float, default=AUDIOSET_STD, help="normalisation std (default: AudioSet's)")
    parser.add_argument("--no-normalize", action="store_true", help="keep the raw log-mel values")
    parser.add_argument(
        "--preprocessor", metavar="DIR",
        help="read the settings from DIR/preprocessor_config.json (a checkpoint directory) instead",
    )


def run(args: argparse.Namespace) -> int:
    from ast_min.audio import load_audio
    from ast_min.features import ASTFeatureExtractor

    if args.preprocessor:
        extractor = ASTFeatureExtractor.from_pretrained(args.preprocessor)
    else:
        extractor = ASTFeatureExtractor(
            num_mel_bins=args.num_mel_bins, max_length=args.max_length,
            do_normalize=not args.no_normalize, mean=args.mean, std=args.std,
        )
    waveforms = [load_audio(path, extractor.sampling_rate) for path in args.files]
    # a clip shorter than one frame is refused by the extractor, which names the clip and the fix
    features = extractor(waveforms, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_values"]
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
    if args.out:
        np.save(args.out, features)  # already float32: the extractor computes in float32
        print(f"saved {features.shape} float32 to {args.out}")
    return 0
