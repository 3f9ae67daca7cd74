"""`ast-min listen`: classify live audio every hop, one line (or JSON object) per window.

The work is `ast_min.listen` (the sources, the ring buffer, the windows); this module reads the
options, opens the source before the model loads (a missing microphone or file fails at once), and
prints each window as it is classified, then the mean time per window and the real-time factor.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ast_min.audio import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE
from ast_min.classify import Classifier
from ast_min.commands.options import add_checkpoint_argument, add_device_argument, add_hop_argument, checked
from ast_min.features import SAMPLING_RATE
from ast_min.inference import check_hop, hop_samples
from ast_min.listen import file_chunks, listen, microphone_chunks, pcm16_chunks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", metavar="FILE|-",
        help="an audio file read chunk by chunk as if live, or - for raw 16-bit little-endian mono PCM on "
        "standard input (--rate Hz); default: the microphone (needs the sounddevice package)",
    )  # fmt: skip
    parser.add_argument("--rate", type=checked(int, check_rate), default=SAMPLING_RATE,
                        help=f"rate of the PCM on standard input, {MIN_SAMPLING_RATE} to {MAX_SAMPLING_RATE} Hz "
                        "(default 16000; others are resampled)")  # fmt: skip
    add_hop_argument(parser, "seconds between windows (default: half a window, as classify --window)")
    add_checkpoint_argument(parser)
    parser.add_argument("--top-k", type=int, default=3, help="labels per line (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--realtime", action="store_true",
                        help="with a file, wait between chunks so it plays at its real speed")  # fmt: skip
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    check_hop(args.hop)
    check_rate(args.rate)
    if args.realtime and args.input in (None, "-"):
        raise ValueError("--realtime paces a file (--input FILE); a microphone or standard input already arrives live")
    if args.input is None:
        chunks, source = microphone_chunks(), "the microphone"  # fails with NO_MICROPHONE_HELP before the model loads
    elif args.input == "-":
        chunks, source = pcm16_chunks(sys.stdin.buffer, args.rate), "standard input"
    else:
        chunks, source = file_chunks(args.input, realtime=args.realtime), repr(args.input)
    classifier = Classifier.load(args.checkpoint, device=args.device)
    window, hop = classifier.window_samples, hop_samples(classifier.window_samples, args.hop)
    print(f"listening with {classifier.model_name}: {window / SAMPLING_RATE:.2f} s windows "
          f"every {hop / SAMPLING_RATE:.2f} s", file=sys.stderr)  # fmt: skip
    results = []
    try:
        for result in listen(chunks, classifier, hop_seconds=args.hop, top_k=args.top_k, source=source):
            results.append(result)
            # strict JSON: listen() refuses non-finite scores, so a bare NaN can never be printed
            print(json.dumps(result.to_json(), allow_nan=False) if args.json else result.to_text(), flush=True)
    except KeyboardInterrupt:  # the way to stop the microphone
        pass
    if results:
        mean_ms = 1000 * np.mean([w.seconds for w in results])
        print(f"{len(results)} windows, {mean_ms:.1f} ms each on average, real-time factor "
              f"{np.mean([w.rtf for w in results]):.3f}", file=sys.stderr)  # fmt: skip
    return 0


def check_rate(rate) -> None:
    """Refuse a --rate that no recording has: the bounds `ast_min.audio` applies to a file's header."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"--rate must be a positive number of Hz from {MIN_SAMPLING_RATE} to {MAX_SAMPLING_RATE} (the rates "
            f"ast-min reads from files), got {rate!r}"
        )
