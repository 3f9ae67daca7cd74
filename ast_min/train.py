"""Fine-tuning: the original AST training loop (YuanGongND/ast src/traintest.py), readable in one sitting.

    for epoch:                                   # 1-based, as the original logs them
        for batch (mixup -> log-mel -> SpecAugment -> noise/roll, see data/pipeline.py):
            lr = base * warmup(step) * decay ** (MultiStepLR milestones passed)
            loss = CE(softmax) or BCE(sigmoid per class) of the logits  / grad_accum
            backward (fp16: through a GradScaler); every grad_accum batches: Adam step
        evaluate -> accuracy, mAP, mean AUC, d'     (metrics.py)
        save last/ (+ trainer state, to resume) and best/ in the Hugging Face format
        average the weights of epochs wa_start..wa_end (the original's "wa")

Around the loop: the hyper-parameters and their checks (`recipes.Recipe`), the batches
(`data.loaders`), the run folder with its checkpoints, written all-or-nothing, and resuming
(`run_folder.py`), this process's device and rank (`device.py`), and the command line
(`commands/train.py`).

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

import contextlib
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as nnf
from tqdm.auto import tqdm

from ast_min import run_folder
from ast_min.config import ASTConfig
from ast_min.data import loaders
from ast_min.device import Distributed
from ast_min.extractor import ASTFeatureExtractor, compute_norm_stats
from ast_min.features import SAMPLING_RATE
from ast_min.metrics import compute_metrics, confusion_matrix
from ast_min.model import ASTForAudioClassification
from ast_min.recipes import Recipe
from ast_min.run_check import compare_with_reference


# ---- the schedule and the loss ---------------------------------------------------------------------------------------
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


def _precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16, fp16 or auto, got {precision!r}")
    return precision


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


# ---- model and front end ---------------------------------------------------------------------------------------------
def build_model(
    recipe: Recipe, id2label: dict[int, str], multi_label: bool, init: str | None, attn_implementation: str
) -> ASTForAudioClassification:
    """A fresh AST of `recipe.model`'s size, or a checkpoint adapted to the recipe's frames and labels."""
    problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    if init is None:
        model = ASTForAudioClassification(ASTConfig(**recipe.model, max_length=recipe.max_length, id2label=id2label,
                                                    num_mel_bins=recipe.num_mel_bins, problem_type=problem_type))
        model.set_attn_implementation(attn_implementation)
        return model
    # A different max_length adapts the position embeddings; a different label set gets a new head.
    model = ASTForAudioClassification.from_pretrained(init, attn_implementation=attn_implementation,
                                                      max_length=recipe.max_length, id2label=id2label)
    if model.config.num_mel_bins != recipe.num_mel_bins:
        raise ValueError(f"the checkpoint {init!r} takes {model.config.num_mel_bins} mel bins but the recipe gives "
                         f"{recipe.num_mel_bins}: pass --num-mel-bins {model.config.num_mel_bins}")
    model.config.problem_type = problem_type
    return model


def build_feature_extractor(recipe: Recipe, dataset, sampling_rate: int = SAMPLING_RATE, max_clips: int = 2000):
    """The front end with the recipe's statistics, or else those of (up to `max_clips` evenly spaced) training clips."""
    mean, std = recipe.norm_mean, recipe.norm_std
    if mean is None or std is None:
        items = [dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // max_clips))]
        waveforms = [item["waveform"] for item in items if item is not None]
        if not waveforms:
            raise ValueError("no readable clip to compute normalisation statistics from")
        mean, std = compute_norm_stats(waveforms, num_mel_bins=recipe.num_mel_bins, max_length=recipe.max_length,
                                       sampling_rate=sampling_rate)
    return ASTFeatureExtractor(
        sampling_rate=sampling_rate, num_mel_bins=recipe.num_mel_bins, max_length=recipe.max_length,
        do_normalize=True, mean=float(mean), std=float(std),
    )


# ---- evaluation --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: ASTForAudioClassification, loader: Iterable[dict], device: str,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
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
    list (two classes at least), and the output directory (`run_folder.prepare`).
    """
    options = options or RunOptions()
    world = Distributed.from_environment()
    device = world.device(options.device)
    world.join(device)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    precision = _precision(options.precision, device)
    recipe.validate(processes=world.world_size)
    if options.grad_accum < 1:
        raise ValueError(f"grad_accum must be at least 1, got {options.grad_accum}")
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
    output_dir = options.output_dir
    if world.is_main:
        run_folder.prepare(output_dir, options.resume, options.overwrite)
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
        run_folder.clear_previous_run(output_dir)
    if options.resume:
        if world.is_main:  # finish any save an interruption cut short; then every rank reads the state
            run_folder.finish_saves(output_dir)
        world.barrier()
        saved = run_folder.load_trainer_state(output_dir, model, optimizer, scaler, recipe, label_names)
        if saved is not None:
            state = saved
        if world.is_main:
            print(f"resuming {output_dir} after epoch {state['epoch']} (step {state['step']})" if saved is not None
                  else f"nothing to resume in {output_dir} (no complete last/ checkpoint): starting from epoch 1")

    ddp_model = model
    if world.world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)
    train_loader, eval_loader, per_epoch = loaders(recipe, train_set, eval_set, feature_extractor, seed=options.seed,
                                                   num_workers=options.num_workers, rank=world.rank, world_size=world.world_size)

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
                run_folder.save_checkpoint(model, feature_extractor, os.path.join(output_dir, "best"), epoch)
            run_folder.save_checkpoint(model, feature_extractor, os.path.join(output_dir, "last"), epoch, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "state": state, "recipe": recipe.to_dict(), "labels": label_names,
            })
            run_folder.write_history(output_dir, state["history"])
            tqdm.write(_log_line(record, recipe.epochs))
            if (versus := compare_with_reference(recipe, epoch, record)) is not None:  # is this run normal?
                tqdm.write(versus)
        world.barrier()  # the other ranks wait for rank 0's evaluation and checkpoint

    summary = {"history": state["history"], "best": state["best"], "output_dir": output_dir,
               "main_metric": main_metric, "labels": label_names,
               "model": model, "feature_extractor": feature_extractor}
    if state["wa"] is not None:  # every rank ends with the averaged weights; rank 0 scores and saves them
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state["wa"].items()})
        if world.is_main:
            metrics = evaluate(model, eval_loader, device, precision, loss_kind)
            run_folder.save_checkpoint(model, feature_extractor, os.path.join(output_dir, "averaged"), state["epoch"])
            summary["averaged"] = {"epochs": [recipe.wa_start, recipe.wa_end], "metrics": metrics}
            tqdm.write(f"weight-averaged model (epochs {recipe.wa_start}-{recipe.wa_end}): "
                       f"{main_metric} {metrics[main_metric]:.4f} -> {os.path.join(output_dir, 'averaged')}")
    world.barrier()
    return summary


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


def _log_line(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"train loss {record['train_loss']:.4f}",
             f"eval loss {record['eval_loss']:.4f}", f"accuracy {record['eval_accuracy']:.4f}",
             f"mAP {record['eval_mAP']:.4f}", f"mAUC {record['eval_mAUC']:.4f}", f"d' {record['eval_d_prime']:.3f}"]
    if record["lr"] is not None:
        parts.append(f"lr {record['lr']:.2e}")
    parts.append(f"{record['seconds']:.0f} s")
    if record["skipped_files"]:
        parts.append(f"{record['skipped_files']} unusable clips skipped")
    return "  ".join(parts)
