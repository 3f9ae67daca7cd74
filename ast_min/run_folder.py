"""The folder of a training run: its checkpoints, its history, and resuming from them.

    output_dir/
        last/        the newest epoch: a Hugging Face checkpoint + trainer_state.pt (what --resume needs)
        best/        the best epoch so far by the main metric (accuracy, or mAP for multi-label data)
        averaged/    the weight average of epochs wa_start..wa_end, when the recipe averages
        history.json one record per epoch: losses, metrics, learning rate, seconds

Each checkpoint also holds `training_info.json`: its epoch, and the files the trainer wrote into it.
Checkpoints are written all-or-nothing by `files.replace_directory` (written beside, marked
complete, swapped in), so whatever step an interruption hits, a whole copy survives, and a resumed
run first finishes the save that was cut short (`finish_saves`).

The folder is the user's: an output directory that already holds files is refused unless the run
resumes it or `overwrite` is set, and the trainer replaces or removes only the checkpoints it wrote
itself (those whose files are all listed in their training_info.json). The trainer state holds
tensors and plain data only, read with `torch.load(weights_only=True)` and checked field by field
(`_check_trainer_state`) before any of it is used: a folder from elsewhere cannot run code on resume.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import tempfile
from pathlib import Path

import torch

from ast_min import checkpoint, files
from ast_min.config import CONFIG_FILE
from ast_min.extractor import PREPROCESSOR_CONFIG
from ast_min.recipes import Recipe

STATE_FILE = "trainer_state.pt"  # in last/: what a resumed run needs besides the weights
INFO_FILE = "training_info.json"  # in every checkpoint the trainer writes: its epoch and files
HISTORY_FILE = "history.json"
CHECKPOINTS = ("last", "best", "averaged")
# every name a trainer checkpoint may hold: replacing one drops the earlier copy's, keeps any other file
TRAINER_FILES = {CONFIG_FILE, *checkpoint.HF_WEIGHT_FILES, PREPROCESSOR_CONFIG, STATE_FILE, INFO_FILE}
FRESH = "start a new run with --overwrite (or another --output-dir)"


# ---- before training ------------------------------------------------------------------------------------------------
def prepare(output_dir: str, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory the run would damage or cannot write, before any training.

    A directory holding files needs `resume` (continue its run) or `overwrite` (replace its
    checkpoints); either way, a checkpoint directory holding files the trainer did not write is refused.
    """
    if resume and overwrite:
        raise ValueError("--resume continues the run in --output-dir and --overwrite replaces it: give one of them")
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output-dir {output_dir!r} is a file, not a directory: choose another --output-dir")
    existing = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
    if existing and not (resume or overwrite):
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise ValueError(
            f"--output-dir {output_dir!r} already holds files ({shown}): pass --resume to continue its run, "
            "--overwrite to replace its checkpoints (other files are kept), or choose an empty or new directory"
        )
    for name in CHECKPOINTS:
        path = os.path.join(output_dir, name)
        if not _owned(path):
            raise ValueError(
                f"{path!r} was not written by ast-min train (or holds files it did not write): ast-min "
                f"replaces only its own checkpoints; move it away or choose another --output-dir"
            )
        files.check_save_target(path)
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=output_dir, prefix=".ast-min-write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to --output-dir {output_dir!r} ({e.strerror}): choose a writable directory") from None


def clear_previous_run(output_dir: str) -> None:
    """--overwrite: remove the earlier run's checkpoints (checked to be the trainer's) and history, nothing else."""
    for name in CHECKPOINTS:
        path = os.path.join(output_dir, name)
        if not _owned(path):
            raise RuntimeError(f"{path!r} holds files ast-min train did not write: move them away, then run again")
        files.remove_directory(path)
    history = os.path.join(output_dir, HISTORY_FILE)
    for path in [history, *glob.glob(glob.escape(history) + ".tmp-" + "[0-9a-f]" * 8)]:  # and write_json's leftovers
        if os.path.isfile(path):
            os.remove(path)


def _owned(path: str) -> bool:
    """Whether the trainer wrote everything at `path`, so that it may replace or remove it.

    True for a missing path, and for a checkpoint holding no file beyond those its INFO_FILE lists
    (and the marker of a save whose swap was cut short).
    """
    if not os.path.lexists(path):
        return True
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    info = _read_info(path)
    if info is None or not isinstance(info.get("files"), list):
        return False
    return set(os.listdir(path)) <= {*info["files"], INFO_FILE, files.SAVE_MARKER}


def _read_info(directory: str | os.PathLike | None) -> dict | None:
    """The INFO_FILE of a checkpoint directory the trainer wrote, or None."""
    try:
        with open(os.path.join(directory, INFO_FILE)) as f:
            info = json.load(f)
    except (OSError, TypeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


# ---- during training --------------------------------------------------------------------------------------------------
def save_checkpoint(model, feature_extractor, directory: str, epoch: int, state: dict | None = None) -> None:
    """Write a Hugging Face checkpoint directory (with the trainer state when given) all-or-nothing."""

    def write(tmp: Path) -> list[str]:
        written = [*checkpoint.write_pretrained(model, tmp), *feature_extractor.save_pretrained(tmp)]
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
            written.append(os.fspath(tmp / STATE_FILE))
        names = sorted(os.path.basename(p) for p in written)
        info = {"epoch": epoch, "written_by": "ast-min train", "files": names}
        return [*written, files.write_json(tmp / INFO_FILE, info)]

    files.replace_directory(directory, write, TRAINER_FILES)


def write_history(output_dir: str, history: list[dict]) -> None:
    files.write_json(os.path.join(output_dir, HISTORY_FILE), history)


def finish_saves(output_dir: str) -> None:
    """Finish the checkpoint saves an interruption cut short (the newest whole copy of each wins)."""
    for name in CHECKPOINTS:
        files.finish_interrupted_save(os.path.join(output_dir, name))


def saved_epoch(directory: str) -> int | None:
    """The epoch of the checkpoint saved at `directory`, or None when there is none."""
    info = _read_info(files.saved_directory(directory))
    epoch = None if info is None else info.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


# ---- resuming -----------------------------------------------------------------------------------------------------------
def load_trainer_state(output_dir: str, model, optimizer, scaler, recipe: Recipe, labels: list[str]) -> dict | None:
    """Restore model, optimiser and scaler from last/; the loop's state, or None if there is no last/.

    Only tensors and plain data are unpickled (`weights_only=True`), and the whole state is checked
    before any of it is used (`_check_trainer_state`). Each failure names the file, the field and the fix.
    """
    last = os.path.join(output_dir, "last")
    path = os.path.join(last, STATE_FILE)
    epoch_on_disk = saved_epoch(last)
    if epoch_on_disk is None:
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0]
        raise ValueError(
            f"refusing to resume from {path!r}: it holds Python objects other than tensors and plain data, "
            f"which could run code when loaded ({reason}). ast-min never writes such a file; {FRESH}"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch's loader raises many kinds on a damaged file
        raise ValueError(f"cannot read the trainer state {path!r} ({type(e).__name__}: {e}): the file is damaged; "
                         f"{FRESH}") from None
    missing = [k for k in ("model", "optimizer", "scaler", "state", "recipe") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise ValueError(f"{path!r} is not an ast-min trainer state (it lacks {', '.join(missing)}); {FRESH}")
    _check_trainer_state(saved, path, epoch_on_disk, model)
    theirs = saved["recipe"]
    changed = [f"{k} {theirs.get(k)!r} -> {getattr(recipe, k)!r}" for k in ("model", "max_length", "num_mel_bins")
               if theirs.get(k) != getattr(recipe, k)]
    if "labels" in saved and list(saved["labels"]) != list(labels):
        changed.append(f"labels {list(saved['labels'])[:4]}... -> {list(labels)[:4]}...")
    if changed:
        raise ValueError(f"{path!r} was written by a run with other settings ({'; '.join(changed)}): resume with the "
                         f"options of that run, or {FRESH}")
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        reason = str(e).strip().splitlines()[0]
        raise ValueError(f"{path!r} does not fit this run's model ({reason}): resume with the options of the run "
                         f"that wrote it, or {FRESH}") from None
    return saved["state"]


def _check_trainer_state(saved: dict, path: str, epoch_on_disk: int, model) -> None:
    """Refuse a trainer state whose plain data the loop could not use, naming the file and the field.

    What `train` writes (and so what a state must be): `model`, `optimizer` and `scaler` are state
    dicts; `recipe` the run's Recipe as a dict; `labels` (when present) a list of names; `state` the
    loop's: `epoch` (the last epoch trained, the epoch the training_info.json beside it records),
    `step` (optimiser steps so far), `history` (one record per epoch, in order), `best` (None or the
    best epoch so far and its metrics), `wa` (None or the running weight average, tensors of the
    model's names and shapes) and `wa_count` (epochs averaged so far, 0 exactly when `wa` is None).
    A state holding anything else was edited or damaged: continuing from it would fail mid-run or
    train the wrong epochs, so it is refused here, before anything is restored.
    """

    def refuse(field: str, problem: str):
        raise ValueError(f"{path!r}: {field} {problem}; the trainer state was edited or damaged: {FRESH}")

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    for key in ("model", "optimizer", "scaler", "recipe", "state"):
        if not isinstance(saved[key], dict):
            refuse(key, f"is a {type(saved[key]).__name__}, expected a dict")
    if "labels" in saved and not (isinstance(saved["labels"], list) and all(isinstance(n, str) for n in saved["labels"])):
        refuse("labels", f"is {_shown(saved['labels'])}, expected a list of label names")
    state = saved["state"]
    missing = [k for k in ("epoch", "step", "history", "best", "wa", "wa_count") if k not in state]
    if missing:
        refuse("state", f"lacks {', '.join(missing)}")
    epoch = state["epoch"]
    if not whole(epoch) or epoch < 1:
        refuse("state.epoch", f"is {_shown(epoch)}, expected a whole number of epochs trained, at least 1")
    if epoch != epoch_on_disk:
        refuse("state.epoch", f"is {epoch}, but {INFO_FILE} beside it records epoch {epoch_on_disk}")
    if not whole(state["step"]) or state["step"] < 0:
        refuse("state.step", f"is {_shown(state['step'])}, expected a whole number of optimiser steps")
    history = state["history"]
    if not isinstance(history, list) or len(history) != epoch:
        refuse("state.history", f"is {_shown(history)}, expected a list of {epoch} records, one per epoch trained")
    for i, record in enumerate(history):
        if not isinstance(record, dict) or record.get("epoch") != i + 1:
            refuse(f"state.history[{i}]", f"is {_shown(record)}, expected the record of epoch {i + 1}")
    best = state["best"]
    if best is not None:
        if not isinstance(best, dict) or not whole(best.get("epoch")) or not 1 <= best["epoch"] <= epoch:
            refuse("state.best", f"is {_shown(best)}, expected None or {{'epoch': 1..{epoch}, 'metrics': {{...}}}}")
        metrics = best.get("metrics")
        if not isinstance(metrics, dict) or not all(number(metrics.get(k)) for k in ("accuracy", "mAP")):
            refuse("state.best.metrics", f"is {_shown(metrics)}, expected the evaluation metrics (accuracy, mAP, ...)")
    wa, wa_count = state["wa"], state["wa_count"]
    if not whole(wa_count) or not 0 <= wa_count <= epoch or (wa is None) != (wa_count == 0):
        refuse("state.wa_count", f"is {_shown(wa_count)} with state.wa {'None' if wa is None else 'set'}, expected the "
               f"number of epochs averaged (0 to {epoch}, 0 exactly when nothing is averaged)")
    if wa is not None:
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if not isinstance(wa, dict) or set(wa) != set(expected) or any(
                not isinstance(v, torch.Tensor) or v.shape != expected[k] for k, v in wa.items()):
            refuse("state.wa", "is not a weight average of this run's model (its tensor names or shapes differ)")


def _shown(value, limit: int = 60) -> str:
    """A value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
