"""Fine-tuning: the original AST training loop (YuanGongND/ast src/traintest.py), readable in one sitting.

    for epoch:                                   # 1-based, as the original logs them
        for batch (mixup -> log-mel -> SpecAugment -> noise/roll, see data/pipeline.py):
            lr = base * warmup(step) * decay ** (MultiStepLR milestones passed)
            loss = CE(softmax) or BCE(sigmoid per class) of the logits  / grad_accum
            backward (fp16: through a GradScaler); every grad_accum batches: Adam step
        evaluate -> accuracy, mAP, mean AUC, d'     (metrics.py)
        save last/ (+ trainer state, to resume) and best/ in the Hugging Face format
        average the weights of epochs wa_start..wa_end (the original's "wa")

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
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as nnf
from tqdm.auto import tqdm

from ast_min.data import Collator, MixupDataset, WeightedDistributedSampler, balanced_weights
from ast_min.metrics import compute_metrics, confusion_matrix
from ast_min.recipes import RECIPES, Recipe, get_recipe
from ast_min.reference import compare_with_reference

if TYPE_CHECKING:  # for the type hints only: importing the model here would slow down `import ast_min.train`
    from ast_min import ASTFeatureExtractor, ASTForAudioClassification

STATE_FILE = "trainer_state.pt"


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
    attn_implementation: str = "auto"
    progress: bool = True


def _resolve_device(name: str, dist_info: Distributed | None = None) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist_info is not None and dist_info.world_size > 1:
        name = f"cuda:{dist_info.local_rank}"
    return name


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
    from ast_min import ASTConfig, ASTForAudioClassification

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


def build_feature_extractor(recipe: Recipe, dataset, sampling_rate: int = 16000, max_clips: int = 2000):
    """The front end with the recipe's statistics, or the training set's own (`compute_norm_stats`)."""
    from ast_min import ASTFeatureExtractor

    mean, std = recipe.norm_mean, recipe.norm_std
    if mean is None or std is None:
        mean, std = dataset_norm_stats(dataset, recipe, sampling_rate, max_clips)
    return ASTFeatureExtractor(
        sampling_rate=sampling_rate, num_mel_bins=recipe.num_mel_bins, max_length=recipe.max_length,
        do_normalize=True, mean=float(mean), std=float(std),
    )


def dataset_norm_stats(dataset, recipe: Recipe, sampling_rate: int = 16000, max_clips: int = 2000) -> tuple[float, float]:
    """Mean and std of the un-normalised log-mel features of (up to `max_clips` evenly spaced) clips."""
    from ast_min import compute_norm_stats

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
        if "input_values" not in batch:  # every clip of this batch was unreadable
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
def _save_model(model, feature_extractor, directory: str, extra_files: dict | None = None) -> None:
    """Write a Hugging Face checkpoint directory atomically: into a temporary one, then rename.

    An interruption mid-save leaves the previous checkpoint intact (resume never reads half a file).
    """
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    feature_extractor.save_pretrained(tmp)
    for name, obj in (extra_files or {}).items():
        torch.save(obj, os.path.join(tmp, name))
    old = directory + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(directory):
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


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
    Face checkpoint with its preprocessor_config.json, and `history.json`. The summary holds the
    per-epoch history, the best epoch and its metrics, and the trained `model` (the weight-averaged
    one when averaging is on) with its `feature_extractor`.
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
    id2label = getattr(train_set, "id2label", None) or {i: str(name) for i, name in enumerate(labels)}
    multi_label = bool(recipe.multi_label if recipe.multi_label is not None else train_set.multi_label)
    loss_kind = loss_function(recipe, multi_label)
    main_metric = "mAP" if multi_label else "accuracy"

    torch.manual_seed(options.seed)  # the random initialisation (DDP then copies rank 0's weights to all)
    model = build_model(recipe, id2label, multi_label, options.init, options.attn_implementation).to(device)
    if feature_extractor is None:
        feature_extractor = build_feature_extractor(recipe, train_set, train_set.sampling_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, betas=recipe.betas)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "fp16")

    state = {"epoch": 0, "step": 0, "history": [], "best": None, "wa": None, "wa_count": 0}
    state_path = os.path.join(options.output_dir, "last", STATE_FILE)
    if options.resume and os.path.isfile(state_path):
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
        if world.is_main:
            print(f"resuming {options.output_dir} after epoch {state['epoch']} (step {state['step']})")
    elif options.resume and world.is_main:
        print(f"nothing to resume in {options.output_dir}: starting from epoch 1")

    ddp_model = model
    if world.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)

    train_loader, eval_loader, per_epoch = _data_loaders(recipe, train_set, eval_set, feature_extractor, options, world)

    if world.is_main:
        os.makedirs(options.output_dir, exist_ok=True)
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
                _save_model(model, feature_extractor, os.path.join(options.output_dir, "best"))
            _save_model(model, feature_extractor, os.path.join(options.output_dir, "last"), {
                STATE_FILE: {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict(), "state": state, "recipe": recipe.to_dict()},
            })
            with open(os.path.join(options.output_dir, "history.json"), "w") as f:
                json.dump(state["history"], f, indent=2)
            tqdm.write(_log_line(record, recipe.epochs, main_metric))
            if (versus := compare_with_reference(recipe, epoch, record)) is not None:  # is this run normal?
                tqdm.write(versus)
        world.barrier()  # the other ranks wait for rank 0's evaluation and checkpoint

    summary = {"history": state["history"], "best": state["best"], "output_dir": options.output_dir,
               "main_metric": main_metric, "labels": [id2label[i] for i in range(len(id2label))],
               "model": model, "feature_extractor": feature_extractor}
    if state["wa"] is not None:  # every rank ends with the averaged weights; rank 0 scores and saves them
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state["wa"].items()})
        if world.is_main:
            metrics = evaluate(model, eval_loader, device, precision, loss_kind)
            _save_model(model, feature_extractor, os.path.join(options.output_dir, "averaged"))
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
    the number of unreadable clips dropped from this epoch's batches (summed over all ranks)."""
    ddp_model.train()
    total_loss, batches, micro, lr = 0.0, 0, 0, None
    dropped = torch.zeros((), dtype=torch.int64)
    num_batches = len(steps)
    for i, batch in enumerate(steps):
        dropped += batch["dropped"]  # counted by the Collator: worker processes' dataset counts never reach here
        if "input_values" not in batch:  # every clip of this batch was unreadable (already warned)
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
    if micro:  # only when the epoch's last batch was entirely unreadable: drop the unsynchronised rest
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
        parts.append(f"{record['skipped_files']} unreadable clips skipped")
    return "  ".join(parts)


def _check_recipe(recipe: Recipe, world: Distributed, options: RunOptions) -> None:
    if recipe.batch_size < 1 or recipe.epochs < 1 or recipe.lr <= 0:
        raise ValueError(f"batch_size ({recipe.batch_size}), epochs ({recipe.epochs}) and lr ({recipe.lr}) must be positive")
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
    run.add_argument("--resume", action="store_true", help="continue the run in --output-dir after its last finished epoch")
    run.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="mixed precision: bf16 autocast, or fp16 autocast with a gradient scaler; auto: bf16 on CUDA, else fp32")
    run.add_argument("--grad-accum", type=int, default=1, help="batches whose gradients are accumulated per optimiser step")
    run.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    run.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes that load and mix clips")
    run.add_argument("--attn-implementation", default="auto", choices=["auto", "eager", "sdpa", "triton"],
                     help="attention backend; auto: triton on CUDA when available, else sdpa")
    run.add_argument("--threads", type=int, default=None,
                     help="CPU threads per process for torch (default: torch's choice, all cores); on a machine "
                     "shared with other jobs, 1 avoids the thread oversubscription that can make training several times slower")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
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
    from ast_min.data import ClipDataset, SyntheticDataset

    if args.data is None:
        if args.eval_data is not None:
            raise ValueError("--eval-data needs --data (without --data the synthetic set is used for both)")
        if not recipe.train_size or not recipe.eval_size:
            raise ValueError(f"recipe {recipe.name!r} has no synthetic data sizes: give --data and --eval-data "
                             "(or --train-size and --eval-size for the synthetic set)")
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
    recipe = recipe.replace(**overrides, model={**recipe.model, **model_overrides})
    train_set, eval_set = _datasets(args, recipe)
    options = RunOptions(
        output_dir=args.output_dir, init=args.init, seed=args.seed, precision=args.precision,
        grad_accum=args.grad_accum, device=args.device, num_workers=args.num_workers, resume=args.resume,
        attn_implementation=args.attn_implementation, progress=not args.no_progress,
    )
    summary = train(recipe, train_set, eval_set, options)
    if summary["best"] is not None and int(os.environ.get("RANK", "0")) == 0:
        best = summary["best"]
        print(f"best epoch {best['epoch']}: {summary['main_metric']} {best['metrics'][summary['main_metric']]:.4f} "
              f"-> {os.path.join(args.output_dir, 'best')}")
    return 0
