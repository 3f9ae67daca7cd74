"""`ast-min classify FILE...`: the top-k labels of audio files, one block (or JSON object) per file.

The work is `ast_min.classify.Classifier`; this module reads the options and prints. A file that
cannot be classified is reported on its own line and the others go on (exit status 2 at the end).
"""

from __future__ import annotations

import argparse
import json
import sys

from ast_min.classify import Classifier
from ast_min.commands import debugging
from ast_min.commands.options import add_checkpoint_argument, add_device_argument, add_hop_argument
from ast_min.inference import check_hop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg; any rate, mono or stereo)")
    add_checkpoint_argument(parser)
    parser.add_argument("--top-k", type=int, default=5, help="how many labels to print per file (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON list with an object per file")
    parser.add_argument(
        "--window", action="store_true", help="classify every window of a long file, not only the first"
    )
    add_hop_argument(parser, "seconds between windows (default: half a window)")
    parser.add_argument(
        "--pool", choices=["auto", "max", "mean"], default="auto",
        help="how --window pools window scores (auto: max for multi-label, mean for single-label)",
    )  # fmt: skip
    parser.add_argument(
        "--activation", choices=["auto", "sigmoid", "softmax"], default="auto",
        help="logits -> scores (auto: sigmoid for multi-label heads, softmax for single-label)",
    )  # fmt: skip
    parser.add_argument("--labels", metavar="FILE", help="label names (.txt one per line, .json list/dict, or "
                        "the original repo's class_labels_indices.csv) for checkpoints without names")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_hop(args.hop)
    classifier = Classifier.load(
        args.checkpoint, device=args.device, activation=args.activation, labels_file=args.labels
    )
    results, failed = [], 0
    for file in args.files:
        try:
            result = classifier.classify_file(
                file, top_k=args.top_k, window=args.window, hop_seconds=args.hop, pool=args.pool,
                batch_size=args.batch_size,
            )  # fmt: skip
        except (ValueError, FileNotFoundError) as e:  # one bad file does not stop the others
            if debugging():
                raise
            print(f"ast-min classify: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if result.note:
            print(f"note: {result.note}", file=sys.stderr)
        results.append(result)
        if not args.json:
            print(result.to_text())
    if args.json:
        # Strict JSON: a NaN or Inf would print as a bare NaN/Infinity that JSON parsers reject.
        # classify_file refuses non-finite scores, so a ValueError here would mean a bug.
        print(json.dumps([r.to_json() for r in results], indent=2, allow_nan=False))
    return 2 if failed else 0
