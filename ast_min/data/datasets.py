"""Datasets of audio files: a folder with one sub-folder per class, or a CSV / JSON manifest.

Clips are loaded when asked for (`ast_min.load_audio`: any format soundfile reads, downmixed and
resampled to 16 kHz), so a dataset of any size costs only its file list in memory. Features are
computed later, a batch at a time, by the trainer.

Manifests, multi-label rows allowed:
- the original AST repository's JSON, `{"data": [{"wav": "a.wav", "labels": "/m/09x0r,/m/05zppz"}, ...]}`
  (a bare list of such rows is accepted too), with its `class_labels_indices.csv`
  (`index,mid,display_name`) mapping label ids (AudioSet MIDs) to class indices and names;
- a CSV with a header naming a file column (`file`, `path`, `wav` or `filename`) and a `labels` (or
  `label`) column whose labels are separated by `,` or `;` (quote the field when it holds commas).
Relative file paths are resolved against the manifest's folder.

A file that cannot be used is skipped with a warning naming it, and counted (`num_skipped`), so
one bad file in a million never loses a training run: undecodable, a pipe rather than a file, NaN
samples, an implausible header, or shorter than one frame (400 samples). An empty folder, an empty
manifest or a label outside the label list is a clear error before training starts.

Items are dicts: `waveform` float32 numpy (N,), `target` float32 (C,) multi-hot, `index`.
"""

from __future__ import annotations

import csv
import json
import os
import warnings

import numpy as np
import torch

from ast_min.audio import check_input_file, load_audio
from ast_min.extractor import require_one_frame
from ast_min.features import SAMPLING_RATE

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au")


class ClipDataset(torch.utils.data.Dataset):
    """Audio files with their labels.

    Args:
        files: paths of the audio files.
        labels_per_file: for each file, the names of its labels (one for single-label data).
        labels: every label name, in class-index order; `None` takes the sorted set of labels seen.
        sampling_rate: the rate clips are resampled to.
        multi_label: `None` decides from the data (any file with two labels makes it multi-label).
        source: how error messages name the folder or manifest the files came from.
        display_names: the name to print for each of `labels` (default: the labels themselves).
    """

    def __init__(
        self,
        files: list[str],
        labels_per_file: list[list[str]],
        labels: list[str] | None = None,
        sampling_rate: int = SAMPLING_RATE,
        multi_label: bool | None = None,
        source: str = "dataset",
        display_names: list[str] | None = None,
    ):
        if len(files) != len(labels_per_file):
            raise ValueError(f"{len(files)} files but {len(labels_per_file)} label lists")
        if not files:
            raise ValueError(f"{source} lists no audio files: point at a folder or manifest that has some")
        seen = sorted({label for row in labels_per_file for label in row})
        self.labels = tuple(labels) if labels is not None else tuple(seen)
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = [label for label in seen if label not in index]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ValueError(
                f"{source} names {len(unknown)} label(s) that are not in the label list: {shown}. "
                "Add them to the class list (class_labels_indices.csv) or fix the manifest."
            )
        self.files = [os.fspath(f) for f in files]
        self.targets = [[index[label] for label in row] for row in labels_per_file]
        if any(not row for row in self.targets):
            raise ValueError(f"{source}: every file needs at least one label")
        self.multi_label = any(len(row) > 1 for row in self.targets) if multi_label is None else multi_label
        self.sampling_rate = sampling_rate
        # The names a model should print for each class (class_labels_indices.csv's display_name);
        # default: the labels themselves.
        self.display_names = tuple(display_names) if display_names is not None else self.labels
        self.skipped_files: list[str] = []  # each unusable file once, in the order met

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_skipped(self) -> int:
        """How many distinct files could not be used so far (each was skipped with a warning)."""
        return len(self.skipped_files)

    def __getitem__(self, index: int) -> dict | None:
        """The clip at `index`, or None (with a warning naming the file) when its file cannot be used."""
        path = self.files[index]
        try:
            waveform = load_audio(path, sampling_rate=self.sampling_rate)
            require_one_frame(path, waveform, self.sampling_rate)
        except Exception as e:  # noqa: BLE001 - any unusable file is skipped, whatever the library raises
            if path not in self.skipped_files:  # warn and count each bad file once, not once per epoch
                self.skipped_files.append(path)
                warnings.warn(f"skipping unusable audio file {path!r} ({type(e).__name__}: {e})", stacklevel=2)
            return None
        target = np.zeros(len(self.labels), dtype=np.float32)
        target[self.targets[index]] = 1.0
        return {"waveform": np.asarray(waveform, dtype=np.float32), "target": target, "index": index}

    # ---- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, root: str | os.PathLike, labels: list[str] | None = None, **kwargs) -> "ClipDataset":
        """A folder with one sub-folder per class (`root/dog/1.wav`, `root/rain/7.flac`, ...)."""
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no dataset folder at {root!r}")
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not classes:
            raise ValueError(
                f"{root!r} has no class sub-folders: a folder dataset is laid out as {root}/<class name>/<file>.wav"
            )
        files, rows = [], []
        for name in classes:
            for dirpath, _, filenames in sorted(os.walk(os.path.join(root, name))):
                for filename in sorted(filenames):
                    if filename.lower().endswith(AUDIO_EXTENSIONS):
                        files.append(os.path.join(dirpath, filename))
                        rows.append([name])
        if not files:
            raise ValueError(
                f"the class folders under {root!r} hold no audio files ({', '.join(AUDIO_EXTENSIONS)}); "
                "check the path"
            )
        return cls(files, rows, labels=labels if labels is not None else classes, source=f"folder {root!r}", **kwargs)

    @classmethod
    def from_manifest(
        cls, path: str | os.PathLike, class_labels: str | os.PathLike | None = None, labels: list[str] | None = None,
        **kwargs,
    ) -> "ClipDataset":
        """A JSON (the original repo's) or CSV manifest.

        `class_labels` (a class_labels_indices.csv) or `labels` gives the label list; without either
        it is the sorted set of labels the manifest names.
        """
        path = check_input_file(path, "manifest", "pass a .json or .csv manifest, or a class-folder tree as --data")
        try:
            if path.lower().endswith(".json"):
                files, rows = _read_json_manifest(path)
            elif path.lower().endswith(".csv"):
                files, rows = _read_csv_manifest(path)
            else:
                raise ValueError(f"manifest {path!r} must end in .json or .csv")
        except UnicodeDecodeError as e:  # a ValueError too, but one that would not name the file
            raise ValueError(f"manifest {path!r} is not UTF-8 text ({e}): save it as UTF-8") from None
        base = os.path.dirname(os.path.abspath(path))
        files = [f if os.path.isabs(f) else os.path.join(base, f) for f in files]
        if class_labels is not None:
            ids, names = read_class_labels(class_labels)
            # Manifests may name classes by id (AudioSet MIDs) or by display name; map both to the id.
            by_name = dict(zip(names, ids))
            rows = [[by_name.get(label, label) for label in row] for row in rows]
            return cls(files, rows, labels=ids, source=f"manifest {path!r}", display_names=names, **kwargs)
        return cls(files, rows, labels=labels, source=f"manifest {path!r}", **kwargs)

    @property
    def id2label(self) -> dict[int, str]:
        """Class index -> the name a model should print (display names when a class list gave them)."""
        return {i: str(name) for i, name in enumerate(self.display_names)}


def _split_labels(text: str) -> list[str]:
    return [label.strip() for label in text.replace(";", ",").split(",") if label.strip()]


def _read_json_manifest(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"manifest {path!r} is not valid JSON ({e})") from None
    rows = data.get("data") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError(f"manifest {path!r} must be {{\"data\": [{{\"wav\": ..., \"labels\": ...}}, ...]}} or a list of such rows")
    files, labels = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "wav" not in row or "labels" not in row:
            raise ValueError(f"manifest {path!r}, row {i}: expected an object with \"wav\" and \"labels\", got {row!r}")
        files.append(str(row["wav"]))
        value = row["labels"]
        labels.append([str(v) for v in value] if isinstance(value, list) else _split_labels(str(value)))
    return files, labels


def _read_csv_manifest(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        file_column = next((h for h in ("file", "path", "wav", "filename") if h in header), None)
        if file_column is None or "labels" not in header and "label" not in header:
            raise ValueError(
                f"manifest {path!r} needs a header with a file column (file, path, wav or filename) and a labels "
                f"(or label) column; found {header}"
            )
        label_column = "labels" if "labels" in header else "label"
        files, labels = [], []
        for row in reader:
            row = {k.strip(): (v or "") for k, v in row.items() if k is not None}
            files.append(row[file_column].strip())
            labels.append(_split_labels(row[label_column]))
    return files, labels


def read_class_labels(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The original repo's class_labels_indices.csv (`index,mid,display_name`) -> (ids, display names)."""
    path = check_input_file(path, "class list", "pass class_labels_indices.csv (index,mid,display_name)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"index", "mid", "display_name"} <= set(reader.fieldnames or []):
                raise ValueError(f"{path!r} must have the columns index,mid,display_name; found {reader.fieldnames}")
            rows = sorted(reader, key=lambda r: int(r["index"]))
    except UnicodeDecodeError as e:
        raise ValueError(f"class list {path!r} is not UTF-8 text ({e}): save it as UTF-8") from None
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"{path!r}: the index column must run 0, 1, 2, ... without gaps")
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]
