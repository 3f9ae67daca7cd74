"""What every command that runs a trained model shares: which checkpoint, its features, and the windows.

- `resolve_checkpoint`: a --checkpoint value (a directory, an original-repository .pth, a hub id)
  or, when none is given, the model shipped in ast_min/default_model.
- `load_extractor`: the feature extractor that belongs to a checkpoint.
- `hop_samples`, `check_hop`, `window_starts`: where the windows of a long recording start, the one
  rule `classify --window`, `embed --window` and `listen` share, so the same --hop gives the same
  windows in all of them.

Shape legend: N samples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ast_min import files
from ast_min.audio import MAX_SECONDS
from ast_min.extractor import ASTFeatureExtractor
from ast_min.features import SAMPLING_RATE

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
MIN_HOP_SECONDS = 1 / SAMPLING_RATE  # one sample: windows cannot start closer together
MAX_HOP_SECONDS = MAX_SECONDS  # the longest audio ast-min loads: a longer hop could never reach a second window


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> tuple[Path, str]:
    """A --checkpoint option -> (the local path to load from, the name to show the user).

    None means the model shipped in ast_min/default_model; anything else goes through
    `ast_min.files.resolve` (a directory, an original-repository .pth, or a hub id). Every
    command that loads a model (classify, embed, export, listen) resolves it here, so they agree on
    the default and on the message when it is missing.
    """
    if checkpoint is not None:
        return files.resolve(checkpoint), os.fspath(checkpoint)
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


def hop_samples(window: int, hop_seconds: float | None) -> int:
    """`--hop SECONDS` in samples at 16 kHz: half of `window` samples when None (the default), else the
    seconds rounded to the nearest sample (at least 1).

    The one rounding rule for every command that slides windows (classify --window, embed --window,
    listen), so the same --hop gives the same window starts in all of them.
    """
    check_hop(hop_seconds)
    return window // 2 if hop_seconds is None else max(1, round(hop_seconds * SAMPLING_RATE))


def check_hop(hop_seconds: float | None) -> None:
    """Refuse a --hop that is not a number of seconds from one sample to MAX_HOP_SECONDS (None, the default, passes).

    Infinity would reach `round` as an OverflowError, 1e308 too once multiplied by the rate, and
    NaN as a ValueError without the option's name; a hop under one sample rounds to no hop at all.
    The parser calls this on --hop (`commands.options.add_hop_argument`), so a bad value fails at
    once, in one line.
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
