"""`ast-min embed FILE... --out EMB.npy`: AST embeddings of audio files, saved with a sidecar naming each row.

The work is `ast_min.embed.Embedder` (which hidden state, how it is pooled: see that module); this
module reads the options, writes the .npy and its sidecars EMB.json and EMB.csv (the files, windows
and options of every row), and prints one line. The sidecars never replace a file embed did not write.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ast_min import files
from ast_min.commands.options import add_checkpoint_argument, add_device_argument, add_hop_argument
from ast_min.embed import POOLS, Embedder, Row

SIDECAR_COLUMNS = ["row", "file", "start", "end", "duration"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg; any rate or channels)")
    parser.add_argument("--out", required=True, metavar="EMB.npy",
                        help="where to save the float32 array; a sidecar EMB.json (and EMB.csv, one line per row) "
                        "names the files, windows and options")  # fmt: skip
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--layer", type=int, default=None, metavar="K",
        help="hidden state to embed: 0 = embeddings output, K = output of block K (before the final LayerNorm), "
        "as transformers' hidden_states (default: last block after the final LayerNorm)",
    )  # fmt: skip
    parser.add_argument("--pool", choices=POOLS, default="pooled",
                        help="pooled = ([CLS] + [DIST]) / 2 (default), cls, mean over patch tokens, "
                        "or patches: every patch token (rows, P, D)")  # fmt: skip
    parser.add_argument("--window", action="store_true", help="one row per window of a long file, not only the first")
    add_hop_argument(parser, "seconds between windows with --window (default: half a window)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file (numpy adds the suffix otherwise), got {args.out!r}")
    if args.hop is not None and not args.window:
        raise ValueError("--hop only applies with --window (one row per window); add --window or drop --hop")
    files.check_output_file(out, "--out", "embeddings.npy")  # before any work: the model may take long, the refusal should not
    check_sidecars(out)
    embedder = Embedder.load(args.checkpoint, device=args.device)
    embeddings, rows = embedder.embed_files(
        args.files, layer=args.layer, pool=args.pool, window=args.window, hop_seconds=args.hop,
        batch_size=args.batch_size,
    )  # fmt: skip
    for row in rows:
        if not args.window and row.duration > row.end:
            print(f"note: {row.file} lasts {row.duration:.2f} s; embedded its first {row.end:.2f} s "
                  "(use --window for one row per window)", file=sys.stderr)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    files.save_npy(os.fspath(out), embeddings)
    options = dict(model=embedder.model_name, layer=args.layer, pool=args.pool, window=args.window,
                   hop_seconds=args.hop if args.window else None)  # fmt: skip
    write_sidecar(out, embeddings, rows, list(args.files), options, embedder.model.config.num_hidden_layers)
    print(f"{out}: {embeddings.shape[0]} rows of {' x '.join(map(str, embeddings.shape[1:]))} "
          f"(layer {describe_layer(args.layer)}, pool {args.pool}); sidecar {out.with_suffix('.json')}")  # fmt: skip
    return 0


def describe_layer(layer: int | None) -> str:
    return "last (after the final LayerNorm)" if layer is None else str(layer)


def check_sidecars(out: Path) -> None:
    """Refuse an --out whose sidecars (out.json, out.csv) would replace files embed did not write.

    The user names only the .npy; a labels.csv beside labels.npy is theirs, so a sidecar path is
    replaced only when it holds an earlier embed's sidecar (json: its "array" names this .npy;
    csv: embed's header), which is what lets the same command run twice.
    """
    for path in (out.with_suffix(".json"), out.with_suffix(".csv")):
        if os.path.lexists(path) and not _is_sidecar(path, out):
            raise ValueError(
                f"--out {out}: embed writes its sidecars {out.with_suffix('.json').name} and "
                f"{out.with_suffix('.csv').name} beside it, and {path} exists but was not written by embed; "
                "choose another --out (or move that file away)"
            )


def _is_sidecar(path: Path, out: Path) -> bool:
    try:
        if path.suffix == ".json":
            meta = json.loads(path.read_text())
            return isinstance(meta, dict) and meta.get("array") == out.name
        with open(path, newline="") as f:
            return next(csv.reader(f), None) == SIDECAR_COLUMNS
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):  # a directory, unreadable, not JSON or CSV
        return False


def write_sidecar(out: Path, embeddings: np.ndarray, rows: list[Row], file_names: list[str], options: dict,
                  num_layers: int):
    """Write out.json (files, options, shape, one entry per row) and out.csv (row, file, start, end, duration)."""
    meta = {
        "array": out.name,
        "shape": list(embeddings.shape),
        "dtype": str(embeddings.dtype),
        "files": file_names,
        **options,
        "layer_meaning": describe_layer(options["layer"]),
        "num_hidden_layers": num_layers,
        "rows": [asdict(r) for r in rows],
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SIDECAR_COLUMNS)
        writer.writerows([i, r.file, r.start, r.end, r.duration] for i, r in enumerate(rows))
