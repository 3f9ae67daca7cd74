"""`ast-min export --format onnx --out MODEL.onnx`: a classifier as an ONNX file, kept only if it agrees with torch.

The work, and the argument for its tolerance, is `ast_min.export`; this module reads the options,
checks --out and any --audio before the model loads, and prints what was written and the parity report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ast_min import files
from ast_min.audio import load_audio
from ast_min.commands.options import add_checkpoint_argument
from ast_min.export import EXPORT_ATTENTION, FORMATS, export_onnx, load_classifier, require_onnx
from ast_min.extractor import require_one_frame
from ast_min.features import SAMPLING_RATE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="output format (onnx)")
    parser.add_argument("--out", required=True, metavar="MODEL.onnx", help="where to write the model")
    add_checkpoint_argument(parser)
    parser.add_argument("--attention", choices=EXPORT_ATTENTION, default="sdpa",
                        help="attention to trace: sdpa (default) or eager; both become MatMul + Softmax")  # fmt: skip
    parser.add_argument("--audio", nargs="+", metavar="FILE",
                        help="audio files whose features the parity check also runs "
                        "(default: three synthetic sounds of the embedded model's classes)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out must name a .onnx file, got {args.out!r}")
    files.check_output_file(out, "--out", "model.onnx")
    require_onnx()  # before loading anything: the missing extra is the first thing to fix
    audio = None
    if args.audio:  # before the model: a bad file is refused at once, by name, as classify and embed refuse it
        audio = [load_audio(f, sampling_rate=SAMPLING_RATE) for f in args.audio]
        for f, waveform in zip(args.audio, audio):
            require_one_frame(f, waveform)
    model, extractor, name = load_classifier(args.checkpoint, args.attention)
    report = export_onnx(model, out, audio=audio, extractor=extractor)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) from {name}: input_values (batch, "
          f"{model.config.max_length}, {model.config.num_mel_bins}) -> logits (batch, {model.config.num_labels}), "
          f"{args.attention} attention")  # fmt: skip
    print(report.to_text())
    return 0
