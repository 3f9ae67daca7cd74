"""Fine-tuning: the original AST training loop (YuanGongND/ast src/traintest.py), readable in one sitting.

    for epoch:                                   # 1-based, as the original logs them
        for batch (mixup -> log-mel -> SpecAugment -> noise/roll, see data/pipeline.py):
            lr = base * warmup(step) * decay ** (MultiStepLR milestones passed)
            loss = CE(softmax) or BCE(sigmoid per class) of the logits  / grad_accum
            backward (fp16: through a GradScaler); every grad_accum batches: Adam step
        evaluate -> accuracy, mAP, mean AUC, d'     (metrics.py)
        save last/ (+ trainer state, to resume) and best/ in the Hugging Face format
        average the weights of epochs wa_start..wa_end (the original's "wa")

Checkpoints are crash-consistent: each is written into `NAME.tmp/`, marked complete by a
`training_info.json` written last, then renamed into place (the previous one kept as `NAME.old/`
until the rename is done). Whatever step an interruption hits, a complete copy survives, and
`--resume` continues from the newest complete one, finishing the interrupted save first. The
trainer state holds tensors and plain data only, loaded with `torch.load(weights_only=True)`: a
checkpoint folder from elsewhere cannot run code on resume. An output directory that already holds
files is refused unless the run resumes it or `overwrite` is set, and the trainer replaces only the
checkpoints it wrote itself (those with a `training_info.json` listing every file they hold).

Scale-out is torch's own: under `torchrun` every process trains a DistributedDataParallel replica
(NCCL on GPUs, gloo on CPUs) on its share of each global batch (`DistributedSampler`); rank 0 alone
evaluates, logs and writes checkpoints. `batch_size` is the global batch, so a run on 2 processes
takes the same optimiser steps as on one.

Reproducibility: the data order comes from `DistributedSampler(seed, epoch)`, each clip's
augmentation from its own generator (seed, epoch, index), and torch's generator is reseeded at each
epoch start, so a run resumed after epoch k continues exactly as if it had never stopped.

Shape legend: B clips, T frames, F mel bins, C classes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as nnf
from tqdm.auto import tqdm

from ast_min import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, compute_norm_stats
from ast_min.cli import resolve_device
from ast_min.data import (
    ClipDataset, Collator, MixupDataset, SyntheticDataset, WeightedDistributedSampler, balanced_weights,
)
from ast_min.features import SAMPLING_RATE
from ast_min.backends import ATTN_IMPLEMENTATIONS
from ast_min.metrics import compute_metrics, confusion_matrix
from ast_min.recipes import RECIPES, Recipe, get_recipe
from ast_min.run_check import compare_with_reference

STATE_FILE = "trainer_state.pt"  # in last/: what a resumed run needs besides the weights
INFO_FILE = "training_info.json"  # in every checkpoint the trainer writes: complete or not, epoch, files
HISTORY_FILE = "history.json"
CHECKPOINTS = ("last", "best", "averaged")


# ---- the schedule ----------------------------------------------------------------------------------------------------
def learning_rate(recipe: Recipe, step: int, epoch: int) -> float:
    """The learning rate of optimiser step `step` (0-based, global) in epoch `epoch` (1-based).

    Linear warm-up over `warmup_steps`, times the epoch decay of the original's
    `MultiStepLR(milestones=range(lr_decay_start, 1000, lr_decay_every), gamma=lr_decay)` stepped
    once after each epoch: epoch e runs at `lr * lr_decay ** #(milestones < e)`.
    """
    warmup = min(1.0, (step + 1) / recipe.warmup_steps) if recipe.warmup_steps > 0 else 1.0
    passed = 0 if epoch <= recipe.lr_decay_start else (epoch - 1 - recipe.lr_decay_start) // recipe.lr_decay_every + 1
    return recipe.lr * warmup * recipe.lr_decay**passed


def loss_function(recipe: Recipe, multi_label: bool) -> str:
    """"bce" or "ce": the recipe's choice, else BCE for multi-label data and cross-entropy otherwise."""
    if recipe.loss not in ("auto", "ce", "bce"):
        raise ValueError(f"loss must be 'auto', 'ce' or 'bce', got {recipe.loss!r}")
    return ("bce" if multi_label else "ce") if recipe.loss == "auto" else recipe.loss


def compute_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss of logits (B, C) against targets (B, C), soft (mixup) or hard.

    "ce": cross-entropy with probability targets, which equals the usual class-index form for
    one-hot rows and handles mixed labels; "bce": binary cross-entropy per class (multi-label).
    """
    logits = logits.float()  # the loss in fp32 even under autocast: log-sum-exp overflows in fp16
    if kind == "bce":
        return nnf.binary_cross_entropy_with_logits(logits, targets)
    return nnf.cross_entropy(logits, targets)


# ---- distributed helpers -----------------------------------------------------------------------------------------------
@dataclass
class Distributed:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str) -> "Distributed":
        """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


# ---- options -----------------------------------------------------------------------------------------------------------
@dataclass
class RunOptions:
    """What a training run needs besides the recipe's hyper-parameters."""

    output_dir: str = "runs/ast-min"
    init: str | None = None  # None: random initialisation from recipe.model
    seed: int = 0
    precision: str = "auto"  # "fp32" | "bf16" | "fp16" | "auto" (bf16 on a CUDA card that has it, else fp32)
    grad_accum: int = 1
    device: str = "auto"
    num_workers: int = 0
    resume: bool = False
    overwrite: bool = False  # replace the checkpoints of an earlier run in output_dir (never other files)
    attn_implementation: str = "auto"
    progress: bool = True
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, one more forward pass


def _resolve_device(name: str, world: Distributed | None = None) -> str:
    """The device name this process trains on: under torchrun, plain "cuda" becomes this rank's card."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and world is not None and world.world_size > 1:
        return f"cuda:{world.local_rank}"
    return str(device)


def _resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16, fp16 or auto, got {precision!r}")
    return precision


# ---- model and front end ---------------------------------------------------------------------------------------------
def build_model(
    recipe: Recipe, id2label: dict[int, str], multi_label: bool, init: str | None, attn_implementation: str
) -> ASTForAudioClassification:
    """A fresh AST of `recipe.model`'s size, or a checkpoint adapted to the recipe's frames and labels."""
    problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    if init is None:
        config = ASTConfig(
            **recipe.model, max_length=recipe.max_length, num_mel_bins=recipe.num_mel_bins,
            id2label=id2label, problem_type=problem_type,
        )
        model = ASTForAudioClassification(config)
        model.set_attn_implementation(attn_implementation)
        return model
    # A different max_length adapts the position embeddings; a different label set gets a new head.
    model = ASTForAudioClassification.from_pretrained(
        init, attn_implementation=attn_implementation, max_length=recipe.max_length, id2label=id2label
    )
    if model.config.num_mel_bins != recipe.num_mel_bins:
        raise ValueError(
            f"the checkpoint {init!r} takes {model.config.num_mel_bins} mel bins but the recipe gives "
            f"{recipe.num_mel_bins}: pass --num-mel-bins {model.config.num_mel_bins}"
        )
    model.config.problem_type = problem_type
    return model


def build_feature_extractor(recipe: Recipe, dataset, sampling_rate: int = SAMPLING_RATE, max_clips: int = 2000):
    """The front end with the recipe's statistics, or the training set's own (`compute_norm_stats`)."""
    mean, std = recipe.norm_mean, recipe.norm_std
    if mean is None or std is None:
        mean, std = dataset_norm_stats(dataset, recipe, sampling_rate, max_clips)
    return ASTFeatureExtractor(
        sampling_rate=sampling_rate, num_mel_bins=recipe.num_mel_bins, max_length=recipe.max_length,
        do_normalize=True, mean=float(mean), std=float(std),
    )


def dataset_norm_stats(
    dataset, recipe: Recipe, sampling_rate: int = SAMPLING_RATE, max_clips: int = 2000
) -> tuple[float, float]:
    """Mean and std of the un-normalised log-mel features of (up to `max_clips` evenly spaced) clips."""
    step = max(1, len(dataset) // max_clips)
    items = [dataset[i] for i in range(0, len(dataset), step)]
    waveforms = [item["waveform"] for item in items if item is not None]
    if not waveforms:
        raise ValueError("no readable clip to compute normalisation statistics from")
    return compute_norm_stats(waveforms, num_mel_bins=recipe.num_mel_bins, max_length=recipe.max_length, sampling_rate=sampling_rate)


# ---- evaluation --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(
    model: ASTForAudioClassification, loader: Iterable[dict], device: str, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and targets (B, C) of every clip the loader yields, in order."""
    model.eval()
    logits, targets = [], []
    for batch in loader:
        if "input_values" not in batch:  # every clip of this batch was unusable
            continue
        with _autocast(device, precision):
            out = model(batch["input_values"].to(device))
        logits.append(out.logits.float().cpu())
        targets.append(batch["targets"])
    if not logits:
        raise ValueError("the evaluation set yielded no readable clip")
    return torch.cat(logits), torch.cat(targets)


def evaluate(model: ASTForAudioClassification, loader: Iterable[dict], device: str, precision: str, loss_kind: str) -> dict:
    """Loss and metrics (accuracy, mAP, mAUC, d') of `model` on `loader`, plus the confusion matrix."""
    logits, targets = predict(model, loader, device, precision)
    # The original applies a sigmoid before scoring; AP and AUC depend only on the ranking anyway.
    scores = torch.sigmoid(logits) if loss_kind == "bce" else torch.softmax(logits, dim=-1)
    metrics = {"loss": compute_loss(logits, targets, loss_kind).item(), **compute_metrics(scores, targets)}
    metrics["confusion_matrix"] = confusion_matrix(scores, targets).tolist()
    return metrics


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


# ---- checkpoints -------------------------------------------------------------------------------------------------------
# A checkpoint NAME (last, best, averaged) is saved in five steps, each of which an interruption may follow:
#   1. remove NAME.tmp (an earlier save's leftover)   2. write NAME.tmp, INFO_FILE last: now it is complete
#   3. remove NAME.old   4. rename NAME -> NAME.old, NAME.tmp -> NAME   5. remove NAME.old
# After any of them, NAME, NAME.tmp or NAME.old holds a complete copy, and the newest complete one is
# the checkpoint (`_finish_save` makes it NAME again). Removal rewrites INFO_FILE as incomplete first,
# so a half-removed directory is never taken for a complete one.


def _copies(directory: str) -> tuple[str, str, str]:
    """The three places a checkpoint NAME may be found complete: NAME, NAME.tmp and NAME.old."""
    return directory, directory + ".tmp", directory + ".old"


def _write_json(path: str, obj) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(partial, path)


def _read_info(directory: str) -> dict | None:
    """The INFO_FILE of a checkpoint directory the trainer wrote, or None."""
    try:
        with open(os.path.join(directory, INFO_FILE)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _complete_epoch(directory: str) -> int | None:
    """The epoch of a complete checkpoint in `directory`, or None when it is missing or incomplete."""
    info = _read_info(directory) if os.path.isdir(directory) else None
    if info is None or info.get("complete") is not True or not isinstance(info.get("epoch"), int):
        return None
    return info["epoch"]


def _owned(path: str) -> bool:
    """Whether the trainer wrote everything at `path`, so that it may replace or remove it.

    True for a missing path, a directory holding nothing but the marker being written (a save
    interrupted at its first step), a save in progress (only the trainer writes there), and a
    complete checkpoint holding no file beyond those its INFO_FILE lists.
    """
    if not os.path.lexists(path):
        return True
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    names = set(os.listdir(path))
    markers = {INFO_FILE, INFO_FILE + ".partial"}
    if names <= {INFO_FILE + ".partial"}:
        return True
    info = _read_info(path)
    if info is None:
        return False
    if info.get("complete") is not True:
        return True
    return names <= {*info.get("files", []), *markers}


def _remove(directory: str) -> None:
    """Remove a checkpoint directory the trainer wrote; it reads as incomplete from the first step on."""
    if not os.path.isdir(directory):
        return
    if not _owned(directory):
        raise RuntimeError(f"{directory!r} holds files ast-min train did not write: move them away, then run again")
    if os.path.isfile(os.path.join(directory, INFO_FILE)):
        _write_json(os.path.join(directory, INFO_FILE), {"complete": False})
    for name in sorted(os.listdir(directory), key=lambda n: n == INFO_FILE):  # INFO_FILE last
        path = os.path.join(directory, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.rmdir(directory)


def _save_checkpoint(model, feature_extractor, directory: str, epoch: int, state: dict | None = None) -> None:
    """Write a Hugging Face checkpoint directory (with the trainer state when given) crash-consistently."""
    tmp = directory + ".tmp"
    _remove(tmp)
    os.makedirs(tmp)
    _write_json(os.path.join(tmp, INFO_FILE), {"complete": False})  # marks the directory as the trainer's
    model.save_pretrained(tmp)
    feature_extractor.save_pretrained(tmp)
    if state is not None:
        torch.save(state, os.path.join(tmp, STATE_FILE))
    files = sorted(set(os.listdir(tmp)) - {INFO_FILE})
    _write_json(os.path.join(tmp, INFO_FILE), {"complete": True, "epoch": epoch, "written_by": "ast-min train",
                                               "files": files})
    _finish_save(directory)


def _finish_save(directory: str) -> int | None:
    """Make the newest complete copy among NAME, NAME.tmp and NAME.old the checkpoint NAME; its epoch, or None.

    The steps repeat the end of `_save_checkpoint`, so an interruption here is recovered the same way.
    """
    _, tmp, old = _copies(directory)
    epochs = {d: _complete_epoch(d) for d in (directory, tmp, old)}
    complete = [d for d, e in epochs.items() if e is not None]
    if not complete:
        return None
    newest = max(complete, key=lambda d: epochs[d])  # ties: NAME, listed first
    if newest == tmp:
        _remove(old)
        if os.path.exists(directory):
            os.replace(directory, old)
        os.replace(tmp, directory)
    elif newest == old:
        _remove(tmp)
        _remove(directory)
        os.replace(old, directory)
    _remove(tmp)
    _remove(old)
    return epochs[newest]


def _prepare_output_dir(output_dir: str, resume: bool, overwrite: bool) -> None:
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
        for path in _copies(os.path.join(output_dir, name)):
            legacy = os.path.isfile(os.path.join(path, STATE_FILE)) and not os.path.exists(os.path.join(path, INFO_FILE))
            if legacy:
                raise ValueError(
                    f"{path!r} comes from an earlier version of ast-min train (it has no {INFO_FILE}), whose runs "
                    "cannot be resumed or replaced: choose another --output-dir (its checkpoints still load "
                    "with from_pretrained)"
                )
            if not _owned(path):
                raise ValueError(
                    f"{path!r} was not written by ast-min train (or holds files it did not write): ast-min "
                    f"replaces only its own checkpoints; move it away or choose another --output-dir"
                )
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=output_dir, prefix=".ast-min-write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to --output-dir {output_dir!r} ({e.strerror}): choose a writable directory") from None


def _clear_previous_run(output_dir: str) -> None:
    """--overwrite: remove the earlier run's checkpoints (checked to be the trainer's) and history, nothing else."""
    for name in CHECKPOINTS:
        for path in _copies(os.path.join(output_dir, name)):
            _remove(path)
    for name in (HISTORY_FILE, HISTORY_FILE + ".partial"):
        if os.path.isfile(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))


def _load_trainer_state(output_dir: str, model, optimizer, scaler, recipe: Recipe, labels: list[str]) -> dict | None:
    """Restore model, optimiser and scaler from the newest complete last/; the loop's state, or None if none.

    Only tensors and plain data are unpickled (`weights_only=True`), and the whole state is checked
    before any of it is used (`_check_trainer_state`). Each failure names the file, the field and the fix.
    """
    last = os.path.join(output_dir, "last")
    path = os.path.join(last, STATE_FILE)
    epoch_on_disk = _complete_epoch(last)
    if epoch_on_disk is None:
        return None
    fresh = "start a new run with --overwrite (or another --output-dir)"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0]
        raise ValueError(
            f"refusing to resume from {path!r}: it holds Python objects other than tensors and plain data, "
            f"which could run code when loaded ({reason}). ast-min never writes such a file; {fresh}"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch's loader raises many kinds on a damaged file
        raise ValueError(f"cannot read the trainer state {path!r} ({type(e).__name__}: {e}): the file is damaged; "
                         f"{fresh}") from None
    missing = [k for k in ("model", "optimizer", "scaler", "state", "recipe") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise ValueError(f"{path!r} is not an ast-min trainer state (it lacks {', '.join(missing)}); {fresh}")
    _check_trainer_state(saved, path, epoch_on_disk, model, fresh)
    theirs = saved["recipe"]
    changed = [f"{k} {theirs.get(k)!r} -> {getattr(recipe, k)!r}" for k in ("model", "max_length", "num_mel_bins")
               if theirs.get(k) != getattr(recipe, k)]
    if "labels" in saved and list(saved["labels"]) != list(labels):
        changed.append(f"labels {list(saved['labels'])[:4]}... -> {list(labels)[:4]}...")
    if changed:
        raise ValueError(f"{path!r} was written by a run with other settings ({'; '.join(changed)}): resume with the "
                         f"options of that run, or {fresh}")
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        reason = str(e).strip().splitlines()[0]
        raise ValueError(f"{path!r} does not fit this run's model ({reason}): resume with the options of the run "
                         f"that wrote it, or {fresh}") from None
    return saved["state"]


def _check_trainer_state(saved: dict, path: str, epoch_on_disk: int, model, fresh: str) -> None:
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
        raise ValueError(f"{path!r}: {field} {problem}; the trainer state was edited or damaged: {fresh}")

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


# ---- the loop ------------------------------------------------------------------------------------------------------------
def train(
    recipe: Recipe,
    train_set: torch.utils.data.Dataset,
    eval_set: torch.utils.data.Dataset,
    options: RunOptions | None = None,
    *,
    feature_extractor: ASTFeatureExtractor | None = None,
) -> dict:
    """Fine-tune on `train_set`, evaluating on `eval_set` after each epoch; returns the run's summary.

    Datasets yield dicts {"waveform" (N,), "target" (C,), "index"} (ClipDataset, SyntheticDataset).
    Writes `options.output_dir/{last,best}` (and `averaged` with weight averaging), each a Hugging
    Face checkpoint with its preprocessor_config.json and training_info.json, and `history.json`.
    The summary holds the per-epoch history, the best epoch and its metrics, and the trained
    `model` (the weight-averaged one when averaging is on) with its `feature_extractor`.

    Everything that can be checked without training is checked first: the options, the label
    list (two classes at least), and the output directory (see `_prepare_output_dir`).
    """
    options = options or RunOptions()
    device = _resolve_device(options.device)
    world = Distributed.setup(device)
    device = _resolve_device(options.device, world)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    precision = _resolve_precision(options.precision, device)
    _check_recipe(recipe, world, options)
    labels = tuple(train_set.labels)
    if tuple(eval_set.labels) != labels:
        raise ValueError("the training and evaluation sets have different label lists; give both the same classes")
    if len(labels) < 2:
        raise ValueError(f"the training set has {len(labels)} class ({', '.join(map(repr, labels))}): a classifier "
                         "needs at least two; add clips of another class (another sub-folder, or rows in the manifest)")
    id2label = getattr(train_set, "id2label", None) or {i: str(name) for i, name in enumerate(labels)}
    multi_label = bool(recipe.multi_label if recipe.multi_label is not None else train_set.multi_label)
    loss_kind = loss_function(recipe, multi_label)
    main_metric = "mAP" if multi_label else "accuracy"

    if world.is_main:
        _prepare_output_dir(options.output_dir, options.resume, options.overwrite)
    world.barrier()

    torch.manual_seed(options.seed)  # the random initialisation (DDP then copies rank 0's weights to all)
    model = build_model(recipe, id2label, multi_label, options.init, options.attn_implementation).to(device)
    if options.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if feature_extractor is None:
        feature_extractor = build_feature_extractor(recipe, train_set, train_set.sampling_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, betas=recipe.betas)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "fp16")

    state = {"epoch": 0, "step": 0, "history": [], "best": None, "wa": None, "wa_count": 0}
    label_names = [id2label[i] for i in range(len(id2label))]
    if options.overwrite and world.is_main:  # only now: --init may have named a checkpoint of the old run
        _clear_previous_run(options.output_dir)
    saved = None
    if options.resume:
        if world.is_main:  # finish any save an interruption cut short; then every rank reads the state
            for name in CHECKPOINTS:
                _finish_save(os.path.join(options.output_dir, name))
        world.barrier()
        saved = _load_trainer_state(options.output_dir, model, optimizer, scaler, recipe, label_names)
    if saved is not None:
        state = saved
        if world.is_main:
            print(f"resuming {options.output_dir} after epoch {state['epoch']} (step {state['step']})")
    elif options.resume and world.is_main:
        print(f"nothing to resume in {options.output_dir} (no complete last/ checkpoint): starting from epoch 1")

    ddp_model = model
    if world.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)

    train_loader, eval_loader, per_epoch = _data_loaders(recipe, train_set, eval_set, feature_extractor, options, world)

    show = options.progress and world.is_main
    epochs = tqdm(range(state["epoch"] + 1, recipe.epochs + 1), desc="epochs", initial=state["epoch"],
                  total=recipe.epochs, disable=not show)
    for epoch in epochs:
        started = time.time()
        for part in per_epoch:
            part.set_epoch(epoch)
        torch.manual_seed(options.seed * 100_003 + epoch)  # dropout draws: the same after a resume
        steps = tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not show)
        train_loss, lr, skipped = _train_one_epoch(ddp_model, steps, optimizer, scaler, recipe, options, state, epoch,
                                                   device, precision, loss_kind, world)
        if recipe.wa_start and recipe.wa_start <= epoch <= recipe.wa_end:
            _update_average(state, model)
        state["epoch"] = epoch
        if world.is_main:
            metrics = evaluate(model, eval_loader, device, precision, loss_kind)
            record = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "seconds": time.time() - started,
                      "skipped_files": skipped,
                      **{f"eval_{k}": v for k, v in metrics.items() if k != "confusion_matrix"}}
            state["history"].append(record)
            if state["best"] is None or metrics[main_metric] > state["best"]["metrics"][main_metric]:
                state["best"] = {"epoch": epoch, "metrics": metrics}
                _save_checkpoint(model, feature_extractor, os.path.join(options.output_dir, "best"), epoch)
            _save_checkpoint(model, feature_extractor, os.path.join(options.output_dir, "last"), epoch, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "state": state, "recipe": recipe.to_dict(), "labels": label_names,
            })
            _write_json(os.path.join(options.output_dir, HISTORY_FILE), state["history"])
            tqdm.write(_log_line(record, recipe.epochs, main_metric))
            if (versus := compare_with_reference(recipe, epoch, record)) is not None:  # is this run normal?
                tqdm.write(versus)
        world.barrier()  # the other ranks wait for rank 0's evaluation and checkpoint

    summary = {"history": state["history"], "best": state["best"], "output_dir": options.output_dir,
               "main_metric": main_metric, "labels": label_names,
               "model": model, "feature_extractor": feature_extractor}
    if state["wa"] is not None:  # every rank ends with the averaged weights; rank 0 scores and saves them
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state["wa"].items()})
        if world.is_main:
            metrics = evaluate(model, eval_loader, device, precision, loss_kind)
            _save_checkpoint(model, feature_extractor, os.path.join(options.output_dir, "averaged"), state["epoch"])
            summary["averaged"] = {"epochs": [recipe.wa_start, recipe.wa_end], "metrics": metrics}
            tqdm.write(f"weight-averaged model (epochs {recipe.wa_start}-{recipe.wa_end}): "
                       f"{main_metric} {metrics[main_metric]:.4f} -> {os.path.join(options.output_dir, 'averaged')}")
    world.barrier()
    return summary


def _data_loaders(recipe: Recipe, train_set, eval_set, feature_extractor, options: RunOptions, world: Distributed):
    """The training and evaluation loaders, and the training pieces whose draws change each epoch (set_epoch)."""
    # Data: a per-rank share of each global batch. DistributedSampler(num_replicas=1) is a plain
    # seeded shuffle, so the single-process run sees the same global batches as a multi-process one.
    per_rank_batch = recipe.batch_size // world.world_size
    train_data = MixupDataset(train_set, recipe.mixup, seed=options.seed)
    if recipe.balanced:
        if not hasattr(train_set, "targets"):
            raise ValueError("balanced sampling needs a dataset that lists its labels per clip (ClipDataset)")
        weights = balanced_weights(train_set.targets, len(train_set.labels))
        sampler = WeightedDistributedSampler(weights, num_replicas=world.world_size, rank=world.rank, seed=options.seed)
    else:
        sampler = torch.utils.data.DistributedSampler(
            train_data, num_replicas=world.world_size, rank=world.rank, shuffle=True, seed=options.seed
        )
    train_collate = Collator(feature_extractor, train=True, freqm=recipe.freqm, timem=recipe.timem, noise=recipe.noise, seed=options.seed)
    train_loader = torch.utils.data.DataLoader(
        train_data, batch_size=per_rank_batch, sampler=sampler, collate_fn=train_collate, num_workers=options.num_workers
    )
    eval_loader = torch.utils.data.DataLoader(
        eval_set, batch_size=max(per_rank_batch, 1) * 2, shuffle=False, collate_fn=Collator(feature_extractor),
        num_workers=options.num_workers,
    )
    return train_loader, eval_loader, (sampler, train_data, train_collate)


def _train_one_epoch(ddp_model, steps, optimizer, scaler, recipe: Recipe, options: RunOptions, state: dict, epoch: int,
                     device: str, precision: str, loss_kind: str, world: Distributed) -> tuple[float, float | None, int]:
    """One pass over the training batches; returns the mean training loss, the last learning rate and
    the number of unusable clips dropped from this epoch's batches (summed over all ranks)."""
    ddp_model.train()
    total_loss, batches, micro, lr = 0.0, 0, 0, None
    dropped = torch.zeros((), dtype=torch.int64)
    num_batches = len(steps)
    for i, batch in enumerate(steps):
        dropped += batch["dropped"]  # counted by the Collator: worker processes' dataset counts never reach here
        if "input_values" not in batch:  # every clip of this batch was unusable (already warned)
            continue
        lr = learning_rate(recipe, state["step"], epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro += 1
        # The epoch's last batch closes its accumulation even when incomplete, so that its backward
        # runs outside no_sync and the gradients gathered so far are averaged across ranks too.
        last_micro = micro % options.grad_accum == 0 or i == num_batches - 1
        # DDP averages gradients across ranks on backward; skip that on all but the last micro-batch.
        sync = ddp_model.no_sync() if (world.world_size > 1 and not last_micro) else contextlib.nullcontext()
        with sync:
            with _autocast(device, precision):
                logits = ddp_model(batch["input_values"].to(device)).logits
            loss = compute_loss(logits, batch["targets"].to(device), loss_kind)
            scaler.scale(loss / options.grad_accum).backward()
        loss_value = loss.item()  # the step's one device sync: the check, the epoch mean and the progress bar share it
        if not math.isfinite(loss_value):
            _diverged(epoch, state["step"], loss_value, precision)
        if last_micro:
            _optimizer_step(optimizer, scaler, state, epoch, loss_value, precision)
            micro = 0
        total_loss += loss_value
        batches += 1
        steps.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
    if micro:  # only when the epoch's last batch was entirely unusable: drop the unsynchronised rest
        optimizer.zero_grad(set_to_none=True)
    if world.world_size > 1:  # rank 0 logs the whole epoch's count
        dropped = dropped.to(device)
        dist.all_reduce(dropped)
    return total_loss / max(batches, 1), lr, int(dropped.item())


def _optimizer_step(optimizer, scaler, state: dict, epoch: int, loss: float, precision: str) -> None:
    # With fp16 the scaler skips steps whose gradients overflowed and halves its scale; a scale
    # that keeps falling means the gradients are inf/NaN at any scale: the run has diverged.
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    state["step"] += 1
    if precision == "fp16" and scaler.get_scale() < 1e-4:
        _diverged(epoch, state["step"], loss, precision)


def _update_average(state: dict, model) -> None:
    """Weight averaging (the original's "wa"): a running mean of the end-of-epoch weights."""
    weights = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    state["wa_count"] += 1
    if state["wa"] is None:
        state["wa"] = weights
    else:
        for k, v in weights.items():
            state["wa"][k] += (v - state["wa"][k]) / state["wa_count"]


def _diverged(epoch: int, step: int, loss: float, precision: str):
    hint = (
        "fp16's range is too small for this run: use --precision bf16 (or fp32), or a lower --lr"
        if precision == "fp16" else "lower --lr, raise --warmup-steps, or check the data for NaN features"
    )
    raise RuntimeError(f"training diverged at epoch {epoch}, step {step}: loss is {loss} ({precision}); {hint}")


def _log_line(record: dict, epochs: int, main_metric: str) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"train loss {record['train_loss']:.4f}",
             f"eval loss {record['eval_loss']:.4f}", f"accuracy {record['eval_accuracy']:.4f}",
             f"mAP {record['eval_mAP']:.4f}", f"mAUC {record['eval_mAUC']:.4f}", f"d' {record['eval_d_prime']:.3f}"]
    if record["lr"] is not None:
        parts.append(f"lr {record['lr']:.2e}")
    parts.append(f"{record['seconds']:.0f} s")
    if record["skipped_files"]:
        parts.append(f"{record['skipped_files']} unusable clips skipped")
    return "  ".join(parts)


def _check_recipe(recipe: Recipe, world: Distributed, options: RunOptions) -> None:
    if recipe.batch_size < 1 or recipe.epochs < 1 or not (math.isfinite(recipe.lr) and recipe.lr > 0):
        raise ValueError(f"batch_size ({recipe.batch_size}), epochs ({recipe.epochs}) and lr ({recipe.lr}) must be "
                         "positive (and lr finite)")
    if not (math.isfinite(recipe.lr_decay) and recipe.lr_decay > 0) or not (
            math.isfinite(recipe.weight_decay) and recipe.weight_decay >= 0):
        raise ValueError(f"lr_decay ({recipe.lr_decay}) must be positive and weight_decay ({recipe.weight_decay}) "
                         "non-negative, both finite")
    if recipe.batch_size % world.world_size:
        raise ValueError(
            f"the global batch_size {recipe.batch_size} does not split evenly over {world.world_size} processes: "
            f"use a multiple of {world.world_size}"
        )
    if options.grad_accum < 1:
        raise ValueError(f"grad_accum must be at least 1, got {options.grad_accum}")
    if recipe.lr_decay_every < 1:
        raise ValueError(f"lr_decay_every must be at least 1 epoch, got {recipe.lr_decay_every}")
    if recipe.wa_start and not 1 <= recipe.wa_start <= recipe.wa_end:
        raise ValueError(f"weight averaging needs 1 <= wa_start ({recipe.wa_start}) <= wa_end ({recipe.wa_end})")
    _check_norm(recipe.norm_mean, recipe.norm_std)


def _check_norm(mean: float | None, std: float | None) -> None:
    """The front end's statistics: both given (finite, std > 0) or both None (computed on the training set)."""
    if (mean is None) != (std is None):
        given, missing = ("norm_std", "norm_mean") if mean is None else ("norm_mean", "norm_std")
        raise ValueError(
            f"--{given.replace('_', '-')} needs --{missing.replace('_', '-')}: the features are normalised with "
            "both; give the dataset's log-mel mean and std together, or neither to compute both on the training set"
        )
    if mean is not None and not math.isfinite(mean):
        raise ValueError(f"--norm-mean must be a finite number, got {mean}")
    if std is not None and not (math.isfinite(std) and std > 0):
        raise ValueError(f"--norm-std must be a positive, finite number, got {std}: it divides the features")


# ---- the `ast-min train` command ---------------------------------------------------------------------------------------
# Recipe fields a user may override, with their help text; the type comes from the recipe's default.
_RECIPE_OPTIONS = {
    "max_length": "frames per clip (10 ms each); longer clips are cut, shorter ones padded",
    "num_mel_bins": "mel bins of the log-mel front end (the model's input height)",
    "norm_mean": "mean of the dataset's log-mel features (default: the recipe's, else computed on the training set)",
    "norm_std": "standard deviation of the dataset's log-mel features (as --norm-mean)",
    "loss": "ce (softmax cross-entropy), bce (sigmoid per class) or auto (bce for multi-label data)",
    "lr": "peak learning rate of Adam",
    "epochs": "number of passes over the training set",
    "batch_size": "global batch size (split across torchrun processes; times --grad-accum per optimiser step)",
    "weight_decay": "Adam's (L2) weight decay",
    "warmup_steps": "optimiser steps of linear learning-rate warm-up (0: none)",
    "lr_decay_start": "MultiStepLR: the first epoch after which the learning rate decays",
    "lr_decay_every": "MultiStepLR: decay again every this many epochs",
    "lr_decay": "MultiStepLR: the factor applied at each decay",
    "freqm": "SpecAugment: largest frequency-mask width in mel bins (0: off)",
    "timem": "SpecAugment: largest time-mask width in frames (0: off)",
    "mixup": "probability that a training clip is mixed with another (waveform mixup, lambda ~ Beta(10, 10))",
    "wa_start": "weight averaging: first epoch (1-based) whose weights are averaged (0: off)",
    "wa_end": "weight averaging: last epoch averaged",
    "train_size": "synthetic data only: number of training clips",
    "eval_size": "synthetic data only: number of evaluation clips",
}


_MODEL_OPTIONS = {
    "hidden_size": "width D of the transformer",
    "num_hidden_layers": "number of transformer blocks",
    "num_attention_heads": "attention heads per block (must divide --hidden-size)",
    "intermediate_size": "width of each block's MLP (usually 4 x --hidden-size)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ast-min train`."""
    parser.description = (
        "Fine-tune an Audio Spectrogram Transformer. Start from a --recipe (the original paper's settings, or "
        "'synthetic' for the embedded model) and override any of its hyper-parameters. Data is a folder with "
        "one sub-folder per class, or a CSV/JSON manifest; without --data the synthetic set is generated. "
        "Run under `torchrun --nproc_per_node N` to train on N processes (DistributedDataParallel)."
    )
    parser.epilog = "recipes: " + "; ".join(f"{r.name}: {r.description} (expected: {r.expected})" for r in RECIPES.values())
    data = parser.add_argument_group("data")
    data.add_argument("--recipe", default="synthetic", choices=sorted(RECIPES), help="hyper-parameter preset")
    data.add_argument("--data", help="training data: a class-folder tree, or a .csv/.json manifest (default: the synthetic set)")
    data.add_argument("--eval-data", help="evaluation data in the same form (required with --data)")
    data.add_argument("--class-labels", help="class_labels_indices.csv (index,mid,display_name) giving the label list of a manifest")
    data.add_argument("--synthetic-seed", type=int, default=0,
                      help="seed of the generated training set; the evaluation set uses this + 1")
    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", default="runs/ast-min", help="where last/, best/ (and averaged/) checkpoints and history.json go")
    run.add_argument("--init", help="starting checkpoint: a Hugging Face directory or hub id, or an original-repo .pth "
                     "(default: random initialisation of the recipe's model size)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --output-dir after its newest complete checkpoint (last/)")
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh in an --output-dir that holds an earlier run: its checkpoints and history.json "
                     "are replaced, other files kept (without --resume or --overwrite a non-empty --output-dir is refused)")
    run.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="mixed precision: bf16 autocast, or fp16 autocast with a gradient scaler; auto: bf16 on CUDA, else fp32")
    run.add_argument("--grad-accum", type=int, default=1, help="batches whose gradients are accumulated per optimiser step")
    run.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    run.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes that load and mix clips")
    run.add_argument("--attn-implementation", default="auto", choices=ATTN_IMPLEMENTATIONS,
                     help="attention backend; auto: triton on CUDA when available, else sdpa")
    run.add_argument("--threads", type=int, default=None,
                     help="CPU threads per process for torch (default: torch's choice, all cores); on a machine "
                     "shared with other jobs, 1 avoids the thread oversubscription that can make training several times slower")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    run.add_argument("--gradient-checkpointing", action="store_true",
                     help="recompute each block's activations during backward instead of storing them: less memory "
                     "for longer clips or larger batches, at the cost of about one more forward pass")
    hyper = parser.add_argument_group("hyper-parameters (default: the recipe's)")
    for name, help_text in _RECIPE_OPTIONS.items():
        default = getattr(Recipe(), name)
        kind = str if name == "loss" else float if isinstance(default, float) or default is None else int
        hyper.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=help_text)
    hyper.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                       help="draw training clips with class-balancing weights, with replacement (the AudioSet-full recipe)")
    hyper.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None,
                       help="add noise and roll the frames by up to 10 (the Speech Commands recipe)")
    size = parser.add_argument_group("model size when training from scratch (default: the recipe's; ignored with --init)")
    for name, help_text in _MODEL_OPTIONS.items():
        size.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=help_text)


def _datasets(args, recipe: Recipe):
    if args.data is None:
        if args.eval_data is not None:
            raise ValueError("--eval-data needs --data (without --data the synthetic set is used for both)")
        if recipe.train_size < 1 or recipe.eval_size < 1:  # 0: a recipe for real data, or a size given as 0
            raise ValueError(f"give --data and --eval-data, or for the synthetic set --train-size and --eval-size "
                             f"of at least 1 (recipe {recipe.name!r} with these options: {recipe.train_size} and "
                             f"{recipe.eval_size})")
        return (SyntheticDataset(recipe.train_size, seed=args.synthetic_seed, num_frames=recipe.max_length, **recipe.synthetic),
                SyntheticDataset(recipe.eval_size, seed=args.synthetic_seed + 1, num_frames=recipe.max_length,
                                 **recipe.synthetic))
    if args.eval_data is None:
        raise ValueError("--data needs --eval-data: a held-out folder or manifest to pick the best epoch on")

    def load(path, labels=None):
        if os.path.isdir(path):
            return ClipDataset.from_folder(path, labels=labels)
        return ClipDataset.from_manifest(path, class_labels=args.class_labels, labels=labels)

    train_set = load(args.data)
    eval_set = load(args.eval_data, labels=list(train_set.labels))
    return train_set, eval_set


def run(args: argparse.Namespace) -> int:
    """`ast-min train`: build the recipe, the data and the run, train, and print where the model went."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    recipe = get_recipe(args.recipe)
    overrides = {name: getattr(args, name) for name in [*_RECIPE_OPTIONS, "noise", "balanced"] if getattr(args, name) is not None}
    model_overrides = {name: getattr(args, name) for name in _MODEL_OPTIONS if getattr(args, name) is not None}
    if (args.norm_mean is None) != (args.norm_std is None):  # one of them, with the recipe's other: refused
        _check_norm(args.norm_mean, args.norm_std)
    recipe = recipe.replace(**overrides, model={**recipe.model, **model_overrides})
    train_set, eval_set = _datasets(args, recipe)
    options = RunOptions(
        output_dir=args.output_dir, init=args.init, seed=args.seed, precision=args.precision,
        grad_accum=args.grad_accum, device=args.device, num_workers=args.num_workers, resume=args.resume,
        overwrite=args.overwrite, attn_implementation=args.attn_implementation, progress=not args.no_progress,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    try:
        summary = train(recipe, train_set, eval_set, options)
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print(interrupted_message(args, recipe.epochs), file=sys.stderr)
        return 130  # 128 + SIGINT, the shell's convention
    if summary["best"] is not None and int(os.environ.get("RANK", "0")) == 0:
        best = summary["best"]
        print(f"best epoch {best['epoch']}: {summary['main_metric']} {best['metrics'][summary['main_metric']]:.4f} "
              f"-> {os.path.join(args.output_dir, 'best')}")
    return 0


def interrupted_message(args: argparse.Namespace, epochs: int) -> str:
    """What Ctrl-C left in --output-dir, and the command that resumes the run."""
    argv = list(getattr(args, "argv", None) or ["train", "--output-dir", args.output_dir])
    argv = [a for a in argv if a != "--overwrite"] + ([] if "--resume" in argv else ["--resume"])
    command = "ast-min " + shlex.join(argv)
    last = os.path.join(args.output_dir, "last")
    saved = max((e for e in map(_complete_epoch, _copies(last)) if e is not None), default=None)
    if saved is None:
        return f"ast-min train: interrupted before the first epoch was saved; nothing to keep. To start again:\n  {command}"
    return (f"ast-min train: interrupted; {last} holds epoch {saved} of {epochs} (best/ the best so far). "
            f"To continue from there:\n  {command}")
