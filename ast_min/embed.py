"""`ast-min embed FILE...`: AST embeddings of audio files for downstream tasks.

    audio file -> load_audio (mono, 16 kHz) -> ASTFeatureExtractor (B, T, F)
      -> ASTModel(output_hidden_states=True) -> one hidden state h (B, L, D) -> pool -> embeddings

Which hidden state (`layer`), with the indices of transformers' `hidden_states`:

    layer None (default)  the last block's output after the final LayerNorm (`last_hidden_state`),
                          the states the classification head reads
    layer 0               the embeddings: patch projections + [CLS], [DIST] + position embeddings
    layer k, 1 <= k <= N  the output of block k, before any LayerNorm (layer N is the last block's
                          output without the final LayerNorm, as transformers' hidden_states[-1])

How a hidden state becomes a vector (`pool`), token 0 being [CLS], token 1 the distillation token:

    pooled   (h[:, 0] + h[:, 1]) / 2    (B, D)      AST's own summary (section 2.2), the default
    cls      h[:, 0]                    (B, D)
    mean     h[:, 2:].mean(1)           (B, D)      the average over patch tokens
    patches  h[:, 2:]                   (B, P, D)   every patch token, frequency-major order

One row per file; with `window=True` one row per window of the model's length, the windows of
`ast-min classify --window` (`hop` apart, the last one flush with the end). Files shorter than a
window are padded with silence, as for classification.

Shape legend: B files or windows, N samples, T frames, F mel bins, L = P + 2 tokens, P patches,
D hidden size.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ast_min.cli import add_checkpoint_argument, add_device_argument, resolve_device
from ast_min.features import SAMPLING_RATE, samples_for_frames

POOLS = ("pooled", "cls", "mean", "patches")
NUM_SPECIAL_TOKENS = 2  # [CLS] and distillation, in front of the patch tokens


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
    from ast_min.classify import add_hop_argument  # here: importing embed stays free of the classifier's imports

    add_hop_argument(parser, "seconds between windows with --window (default: half a window)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file (numpy adds the suffix otherwise), got {args.out!r}")
    if args.hop is not None and not args.window:
        raise ValueError("--hop only applies with --window (one row per window); add --window or drop --hop")
    from ast_min.files import check_output_file

    check_output_file(out, "--out", "embeddings.npy")  # before any work: the model may take long, the refusal should not
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
    from ast_min.features_cli import save_npy

    out.parent.mkdir(parents=True, exist_ok=True)
    save_npy(os.fspath(out), embeddings)
    options = dict(model=embedder.model_name, layer=args.layer, pool=args.pool, window=args.window,
                   hop_seconds=args.hop if args.window else None)  # fmt: skip
    write_sidecar(out, embeddings, rows, list(args.files), options, embedder.model.config.num_hidden_layers)
    print(f"{out}: {embeddings.shape[0]} rows of {' x '.join(map(str, embeddings.shape[1:]))} "
          f"(layer {describe_layer(args.layer)}, pool {args.pool}); sidecar {out.with_suffix('.json')}")  # fmt: skip
    return 0


# ---- the embeddings -----------------------------------------------------------------------------


def select_hidden_state(model, input_values: torch.Tensor, layer: int | None = None) -> torch.Tensor:
    """input_values (B, T, F) -> the hidden state (B, L, D) that `layer` names (see the module docstring)."""
    check_layer(layer, model.config.num_hidden_layers)
    if layer is None:
        return model(input_values).last_hidden_state  # (B, L, D), after the final LayerNorm
    return model(input_values, output_hidden_states=True).hidden_states[layer]  # (B, L, D)


def pool_tokens(hidden: torch.Tensor, pool: str = "pooled") -> torch.Tensor:
    """(B, L, D) hidden state -> (B, D) for pooled, cls and mean; (B, P, D) for patches."""
    check_pool(pool)
    if pool == "pooled":
        return (hidden[:, 0] + hidden[:, 1]) / 2  # (B, D), as ASTModel's pooler_output
    if pool == "cls":
        return hidden[:, 0]  # (B, D)
    if pool == "mean":
        return hidden[:, NUM_SPECIAL_TOKENS:].mean(dim=1)  # (B, D)
    return hidden[:, NUM_SPECIAL_TOKENS:]  # (B, P, D): patches


@torch.no_grad()
def embed(
    waveforms: list[np.ndarray], model, extractor, *, layer: int | None = None, pool: str = "pooled",
    batch_size: int = 8,
) -> np.ndarray:
    """Mono 16 kHz waveforms (each (N,), at most one window long, shorter ones padded) -> float32 embeddings.

    model: an ast_min ASTModel; extractor: its ASTFeatureExtractor. Returns (B, D), or (B, P, D)
    for pool="patches". Longer waveforms are truncated to the model's window by the extractor:
    cut them with `window_clips` first to embed all of them.
    """
    check_layer(layer, model.config.num_hidden_layers)
    check_pool(pool)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(waveforms), batch_size):
        features = extractor(list(waveforms[i : i + batch_size]), sampling_rate=SAMPLING_RATE, return_tensors="pt")
        hidden = select_hidden_state(model, features.input_values.to(device), layer)  # (b, L, D)
        out.append(pool_tokens(hidden, pool).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


@dataclass
class Row:
    """Where one row of the embeddings comes from: the seconds [start, end) of a file lasting `duration` s."""

    file: str
    start: float
    end: float
    duration: float


def window_clips(waveform: np.ndarray, window: int, hop: int) -> tuple[list[np.ndarray], list[int]]:
    """(N,) -> clips of <= `window` samples starting every `hop` samples (classify --window's starts)."""
    from ast_min.classify import window_starts

    starts = window_starts(len(waveform), window, hop)
    return [waveform[s : s + window] for s in starts], starts


class Embedder:
    """A loaded encoder and its feature extractor; `embed_files` does a list of files."""

    def __init__(self, model, extractor, model_name: str):
        self.model, self.extractor, self.model_name = model, extractor, model_name
        self.window_samples = samples_for_frames(model.config.max_length)  # exactly max_length frames

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, *, device: str = "auto") -> "Embedder":
        """The encoder of `checkpoint` (default: the embedded model), with the features `classify` uses."""
        from ast_min.classify import load_extractor, resolve_checkpoint
        from ast_min.model import ASTModel

        device = resolve_device(device)  # before the model loads: a wrong --device fails at once
        path, name = resolve_checkpoint(checkpoint)
        # sdpa, not "auto": embeddings should not depend on whether the Triton kernel is installed
        model = ASTModel.from_pretrained(path, attn_implementation="sdpa").to(device)
        return cls(model, load_extractor(path, model.config), name)

    def embed_files(
        self, files, *, layer: int | None = None, pool: str = "pooled", window: bool = False,
        hop_seconds: float | None = None, batch_size: int = 8,
    ) -> tuple[np.ndarray, list[Row]]:  # fmt: skip
        """Files -> (embeddings (R, D) or (R, P, D) float32, the R rows' origins).

        One row per file (its first window), or with window=True one per window. Every file is
        read before the model runs, so a missing or unreadable one stops the whole call (the rows
        of an output array must not shift silently).
        """
        from ast_min.audio import load_audio
        from ast_min.classify import check_hop, hop_samples
        from ast_min.features_cli import require_one_frame

        check_layer(layer, self.model.config.num_hidden_layers)
        check_pool(pool)
        check_hop(hop_seconds)
        if not files:
            raise ValueError("no audio files given: pass at least one")
        hop = hop_samples(self.window_samples, hop_seconds)
        clips, rows = [], []
        for file in files:
            waveform = load_audio(file, sampling_rate=SAMPLING_RATE)  # (N,)
            require_one_frame(file, waveform)
            file_clips, starts = window_clips(waveform, self.window_samples, hop) if window else ([waveform], [0])
            clips += file_clips
            duration = round(len(waveform) / SAMPLING_RATE, 3)
            for s in starts:
                end = min(s + self.window_samples, len(waveform))
                rows.append(Row(os.fspath(file), round(s / SAMPLING_RATE, 3), round(end / SAMPLING_RATE, 3), duration))
        embeddings = embed(clips, self.model, self.extractor, layer=layer, pool=pool, batch_size=batch_size)
        finite = np.isfinite(embeddings.reshape(len(embeddings), -1)).all(axis=1)  # (R,)
        if not finite.all():  # never saved: a NaN row would pass silently into a downstream model
            row = rows[int(np.flatnonzero(~finite)[0])]
            raise ValueError(
                f"the model gave NaN or Inf embeddings for {row.file!r} ({row.start:.2f}-{row.end:.2f} s): its weights "
                f"are not finite or make the activations overflow; check or retrain the checkpoint ({self.model_name})"
            )
        return embeddings, rows


def embed_files(files, checkpoint=None, **options) -> tuple[np.ndarray, list[Row]]:
    """One call: `Embedder.load(checkpoint).embed_files(files, **options)` (layer, pool, window, hop_seconds)."""
    device = options.pop("device", "auto")
    return Embedder.load(checkpoint, device=device).embed_files(files, **options)


# ---- checks and the sidecar ---------------------------------------------------------------------


def check_layer(layer: int | None, num_layers: int) -> None:
    """Refuse a layer index outside 0..num_layers (None, the default, is always valid)."""
    if layer is None:
        return
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= num_layers:
        raise ValueError(
            f"--layer must be an integer from 0 (embeddings output) to {num_layers} (output of the last of this "
            f"model's {num_layers} blocks), got {layer!r}; leave it out for the last block after the final LayerNorm"
        )


def check_pool(pool: str) -> None:
    """Refuse a pool that is not one of POOLS."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; use one of {', '.join(POOLS)}")


def describe_layer(layer: int | None) -> str:
    return "last (after the final LayerNorm)" if layer is None else str(layer)


SIDECAR_COLUMNS = ["row", "file", "start", "end", "duration"]


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


def write_sidecar(out: Path, embeddings: np.ndarray, rows: list[Row], files: list[str], options: dict, num_layers: int):
    """Write out.json (files, options, shape, one entry per row) and out.csv (row, file, start, end, duration)."""
    meta = {
        "array": out.name,
        "shape": list(embeddings.shape),
        "dtype": str(embeddings.dtype),
        "files": files,
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
