"""`ast-min classify FILE...`: the top-k labels of audio files, from any AST checkpoint.

    audio file -> load_audio (mono, 16 kHz) -> ASTFeatureExtractor (B, T, F) -> model -> logits (B, C)
      -> probabilities: sigmoid for multi-label heads (AudioSet: several sounds at once), softmax
         for single-label ones (ESC-50, Speech Commands) -> top k

An AST sees a fixed number of frames (`max_length`, 1024 = 10.24 s for the released models).
Longer files are classified on their first window by default, with a note; `--window` slides
full windows over the whole file (`--hop` apart, the last one flush with the end) and reports each
window and the scores pooled over windows (max for multi-label: a sound present anywhere is
present in the file; mean for single-label). Shorter files are padded with silence, which the
released models have seen for short AudioSet clips.

The features use the checkpoint's `preprocessor_config.json` when it has one (its normalisation
statistics belong to the model), else AudioSet's; mel bins and frames always come from the model.

Shape legend: N samples, W windows, T frames, F mel bins, C labels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ast_min import ASTFeatureExtractor, ASTForAudioClassification
from ast_min.audio import MAX_SECONDS, check_input_file, load_audio
from ast_min.checkpoint import resolve
from ast_min.cli import add_checkpoint_argument, add_device_argument, checked, debugging, resolve_device
from ast_min.features import SAMPLING_RATE, samples_for_frames
from ast_min.features_cli import require_one_frame

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
AUDIOSET_NUM_LABELS = 527


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


# ---- the model and its features ------------------------------------------------------------------


@dataclass
class Result:
    """One file's predictions: `predictions` pooled over `windows` (a single window unless --window)."""

    file: str
    model: str
    duration: float
    activation: str
    predictions: list[tuple[str, float]]
    windows: list[tuple[float, float, list[tuple[str, float]]]] | None = None
    pool: str | None = None
    note: str | None = None

    def to_json(self) -> dict:
        def preds(p):
            return [{"label": label, "score": score} for label, score in p]

        d = {"file": self.file, "model": self.model, "predictions": preds(self.predictions),
             "duration": round(self.duration, 3), "activation": self.activation}  # fmt: skip
        if self.windows is not None:
            d["pool"] = self.pool
            d["windows"] = [{"start": s, "end": e, "predictions": preds(p)} for s, e, p in self.windows]
        return d

    def to_text(self) -> str:
        lines = [f"{self.file}  ({self.duration:.2f} s; model: {self.model})"]
        if self.windows is not None:
            lines[0] += f"\n  {len(self.windows)} windows, {self.pool} of {self.activation} scores:"
        width = max(len(label) for label, _ in self.predictions)
        lines += [f"  {score:7.4f}  {label:<{width}}" for label, score in self.predictions]
        for start, end, preds in self.windows or []:
            top = ", ".join(f"{label} {score:.3f}" for label, score in preds)
            lines.append(f"    {start:.2f}-{end:.2f} s: {top}")
        return "\n".join(lines)


class Classifier:
    """A loaded model, its feature extractor and its label names; `classify_file` does one file."""

    def __init__(self, model, extractor, model_name: str, activation: str, device: torch.device):
        self.model, self.extractor, self.model_name, self.device = model, extractor, model_name, device
        self.activation = activation
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.window_samples = samples_for_frames(config.max_length)  # exactly max_length frames

    @classmethod
    def load(cls, checkpoint: str | None, *, device: str = "auto", activation: str = "auto", labels_file=None):
        device = resolve_device(device)  # before the model loads: a wrong --device fails at once
        path, name = resolve_checkpoint(checkpoint)
        model = ASTForAudioClassification.from_pretrained(path).to(device)
        if labels_file is not None:
            model.config.id2label = read_labels(labels_file, model.config.num_labels)
        extractor = load_extractor(path, model.config)
        if activation == "auto":
            activation = default_activation(model.config)
        return cls(model, extractor, name, activation, device)

    def classify_file(
        self, file, *, top_k: int = 5, window: bool = False, hop_seconds: float | None = None,
        pool: str = "auto", batch_size: int = 8,
    ) -> Result:  # fmt: skip
        """Load a file, cut it into windows, run the model and return the top-k (pooled) labels."""
        waveform = load_audio(file, sampling_rate=SAMPLING_RATE)  # (N,)
        duration = len(waveform) / SAMPLING_RATE
        require_one_frame(file, waveform)
        window_seconds = self.window_samples / SAMPLING_RATE
        hop = hop_samples(self.window_samples, hop_seconds)
        starts = window_starts(len(waveform), self.window_samples, hop) if window else [0]
        note = None
        if not window and len(waveform) > self.window_samples:
            note = (
                f"{os.fspath(file)} lasts {duration:.2f} s; classified its first {window_seconds:.2f} s "
                "(use --window to classify all of it)"
            )
        clips = [waveform[s : s + self.window_samples] for s in starts]  # W clips of <= window samples
        scores = self.scores(clips, batch_size)  # (W, C)
        if not np.isfinite(scores).all():
            raise ValueError(
                f"the model gave NaN or Inf scores for {os.fspath(file)!r}: its weights are not finite or make the "
                f"logits overflow; check or retrain the checkpoint ({self.model_name})"
            )
        if pool == "auto":
            pool = "max" if self.activation == "sigmoid" else "mean"
        pooled = scores.max(0) if pool == "max" else scores.mean(0)  # (C,)
        result = Result(
            file=os.fspath(file), model=self.model_name, duration=duration, activation=self.activation,
            predictions=self.top(pooled, top_k), note=note,
        )  # fmt: skip
        if window:
            result.pool = pool
            result.windows = [
                (round(s / SAMPLING_RATE, 3), round(min(s + self.window_samples, len(waveform)) / SAMPLING_RATE, 3),
                 self.top(row, top_k))
                for s, row in zip(starts, scores)
            ]  # fmt: skip
        return result

    @torch.no_grad()
    def scores(self, clips: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Mono 16 kHz clips -> (W, C) scores (probabilities, or raw values for regression heads)."""
        out = []
        for i in range(0, len(clips), batch_size):
            features = self.extractor(clips[i : i + batch_size], sampling_rate=SAMPLING_RATE, return_tensors="pt")
            logits = self.model(features.input_values.to(self.device)).logits.float()  # (b, C)
            if self.activation == "sigmoid":
                logits = logits.sigmoid()
            elif self.activation == "softmax":
                logits = logits.softmax(-1)
            out.append(logits.cpu().numpy())
        return np.concatenate(out)

    def top(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k best (label, score) pairs, scores descending (ties: lower label id first)."""
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.labels[i], float(scores[i])) for i in order]


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> tuple[Path, str]:
    """A --checkpoint option -> (the local path to load from, the name to show the user).

    None means the model shipped in ast_min/default_model; anything else goes through
    `ast_min.checkpoint.resolve` (a directory, an original-repository .pth, or a hub id). Every
    command that loads a model (classify, embed, export, listen) resolves it here, so they agree on
    the default and on the message when it is missing.
    """
    if checkpoint is not None:
        return resolve(checkpoint), os.fspath(checkpoint)
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            "no --checkpoint given and no default model is installed (ast_min/default_model is missing). "
            "Pass --checkpoint with a Hugging Face checkpoint directory, an original-repository .pth file, "
            "or, online, a hub id such as MIT/ast-finetuned-audioset-10-10-0.4593; "
            "or fine-tune one with `ast-min train` (it writes such a directory)"
        )
    return DEFAULT_MODEL_DIR, "ast-min default model (ast_min/default_model)"


def load_extractor(path: Path, config) -> ASTFeatureExtractor:
    """The feature extractor for the model at `path` (from `resolve_checkpoint`) with `config`.

    Mel bins and frames always come from the model's config (the position embeddings fix them);
    the normalisation statistics come from the checkpoint's preprocessor_config.json when it has
    one, since they belong to the data the model was trained on, else AudioSet's.
    """
    shape = dict(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
    if path.is_dir() and (path / "preprocessor_config.json").is_file():
        return ASTFeatureExtractor.from_pretrained(path, **shape)
    return ASTFeatureExtractor(**shape)  # AudioSet normalisation


def add_hop_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--hop SECONDS`, as every command that slides windows takes it: checked while it is parsed."""
    bounds = f" (one sample, 1/{SAMPLING_RATE} s, to {MAX_HOP_SECONDS // 3600} h)"
    parser.add_argument("--hop", type=checked(float, check_hop), default=None, metavar="SECONDS", help=help_text + bounds)


def hop_samples(window: int, hop_seconds: float | None) -> int:
    """`--hop SECONDS` in samples at 16 kHz: half of `window` samples when None (the default), else the
    seconds rounded to the nearest sample (at least 1).

    The one rounding rule for every command that slides windows (classify --window, embed --window,
    listen), so the same --hop gives the same window starts in all of them.
    """
    check_hop(hop_seconds)
    return window // 2 if hop_seconds is None else max(1, round(hop_seconds * SAMPLING_RATE))


MIN_HOP_SECONDS = 1 / SAMPLING_RATE  # one sample: windows cannot start closer together
MAX_HOP_SECONDS = MAX_SECONDS  # the longest audio ast-min loads: a longer hop could never reach a second window


def check_hop(hop_seconds: float | None) -> None:
    """Refuse a --hop that is not a number of seconds from one sample to MAX_HOP_SECONDS (None, the default, passes).

    Infinity would reach `round` as an OverflowError, 1e308 too once multiplied by the rate, and
    NaN as a ValueError without the option's name; a hop under one sample rounds to no hop at all.
    The parser calls this on --hop (`add_hop_argument`), so a bad value fails at once, in one line.
    """
    if hop_seconds is None:
        return
    ok = not isinstance(hop_seconds, bool) and isinstance(hop_seconds, (int, float, np.integer, np.floating))
    if not (ok and math.isfinite(hop_seconds) and hop_seconds > 0):
        raise ValueError(f"--hop must be a positive, finite number of seconds, got {hop_seconds!r}")
    if not MIN_HOP_SECONDS <= hop_seconds <= MAX_HOP_SECONDS:
        raise ValueError(
            f"--hop must be a positive, finite number of seconds from 1/{SAMPLING_RATE} (one sample) to "
            f"{MAX_HOP_SECONDS} ({MAX_HOP_SECONDS // 3600} h, the longest audio ast-min reads), got {hop_seconds!r}"
        )


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of full windows every `hop` samples, plus one flush with the end to cover the tail.

    A file no longer than one window gets the single start 0 (it is padded, not windowed).
    """
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def default_activation(config) -> str:
    """sigmoid for multi-label heads, softmax for single-label, none ("identity") for regression.

    config.problem_type decides when the checkpoint records it; otherwise a 527-way head is taken
    to be AudioSet's (multi-label, as the released MIT checkpoints, whose config leaves it unset).
    """
    if config.problem_type == "multi_label_classification":
        return "sigmoid"
    if config.problem_type == "single_label_classification":
        return "softmax"
    if config.problem_type == "regression" or config.num_labels == 1:
        return "identity"
    return "sigmoid" if config.num_labels == AUDIOSET_NUM_LABELS else "softmax"


def read_labels(file, num_labels: int) -> dict[int, str]:
    """Label names from a .txt (one per line), .json (list, or {id: name}) or the original repo's
    class_labels_indices.csv (index,mid,display_name)."""
    path = Path(check_input_file(file, "labels file", "pass a .txt, .json or .csv file of label names"))
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, (list, dict)):
                raise ValueError(f"expected a list of names or an {{id: name}} object, got a {type(data).__name__}")
            names = data if isinstance(data, list) else [data[k] for k in sorted(data, key=int)]
        elif path.suffix == ".csv":
            from ast_min.data.datasets import read_class_labels  # the one reader of this format, as training uses

            names = read_class_labels(path)[1]
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    except (ValueError, KeyError, TypeError) as e:  # also UnicodeDecodeError and JSONDecodeError
        raise ValueError(f"cannot read label names from {str(path)!r} ({e}): fix the file") from None
    if len(names) != num_labels:
        raise ValueError(f"{str(path)!r} names {len(names)} labels but the model has {num_labels}")
    return {i: str(n) for i, n in enumerate(names)}
