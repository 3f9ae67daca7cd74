"""Embeddings: AST's hidden states of audio files, pooled, as features for downstream tasks (`ast-min embed`).

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

import os
from dataclasses import dataclass

import numpy as np
import torch

from ast_min.audio import load_audio
from ast_min.device import resolve_device
from ast_min.extractor import require_one_frame
from ast_min.features import SAMPLING_RATE, samples_for_frames
from ast_min.inference import check_hop, hop_samples, load_extractor, resolve_checkpoint, window_starts
from ast_min.model import ASTModel

POOLS = ("pooled", "cls", "mean", "patches")
NUM_SPECIAL_TOKENS = 2  # [CLS] and distillation, in front of the patch tokens


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


# ---- checks -------------------------------------------------------------------------------------
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
