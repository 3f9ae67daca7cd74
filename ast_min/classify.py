"""Classification: the top-k labels of audio files, from any AST checkpoint (`ast-min classify FILE...`).

    audio file -> load_audio (mono, 16 kHz) -> ASTFeatureExtractor (B, T, F) -> model -> logits (B, C)
      -> probabilities: sigmoid for multi-label heads (AudioSet: several sounds at once), softmax
         for single-label ones (ESC-50, Speech Commands) -> top k

An AST sees a fixed number of frames (`max_length`, 1024 = 10.24 s for the released models).
Longer files are classified on their first window by default, with a note; `window=True`
(`--window`) slides full windows over the whole file (`hop_seconds` apart, the last one flush with
the end: `ast_min.inference.window_starts`) and reports each window and the scores pooled over windows (max for multi-label: a sound present anywhere is
present in the file; mean for single-label). Shorter files are padded with silence, which the
released models have seen for short AudioSet clips.

The features use the checkpoint's `preprocessor_config.json` when it has one (its normalisation
statistics belong to the model), else AudioSet's; mel bins and frames always come from the model
(`ast_min.inference.load_extractor`). The command itself is `ast_min/commands/classify.py`.

Shape legend: N samples, W windows, T frames, F mel bins, C labels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ast_min.audio import check_input_file, load_audio
from ast_min.device import resolve_device
from ast_min.extractor import require_one_frame
from ast_min.features import SAMPLING_RATE, samples_for_frames
from ast_min.inference import hop_samples, load_extractor, resolve_checkpoint, window_starts
from ast_min.model import ASTForAudioClassification

AUDIOSET_NUM_LABELS = 527


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
