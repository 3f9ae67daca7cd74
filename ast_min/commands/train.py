"""`ast-min train`: fine-tune an AST from a recipe, on class folders, a manifest or the synthetic set.

The work is `ast_min.train.train`; this module builds its inputs from the options (the recipe with
the hyper-parameters given, the datasets, the run options), prints where the best model went, and
on Ctrl-C says what was saved and the command that resumes the run. Every `Recipe` field with a
help text is an option (`--name-with-dashes`, its help from the field); booleans take `--no-NAME`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import torch

from ast_min import run_folder
from ast_min.backends import ATTN_IMPLEMENTATIONS
from ast_min.commands.options import check_max_length, checked
from ast_min.data import ClipDataset, SyntheticDataset
from ast_min.device import Distributed
from ast_min.recipes import RECIPES, check_norm_stats, get_recipe, option_fields
from ast_min.train import RunOptions, train

# The model's size when training from scratch: ASTConfig fields, not the recipe's (they go to recipe.model).
MODEL_OPTIONS = {
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
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--output-dir", default="runs/ast-min", help="where last/, best/ (and averaged/) checkpoints and history.json go")
    run_group.add_argument("--init", help="starting checkpoint: a Hugging Face directory or hub id, or an original-repo .pth "
                           "(default: random initialisation of the recipe's model size)")
    run_group.add_argument("--resume", action="store_true",
                           help="continue the run in --output-dir after its newest complete checkpoint (last/)")
    run_group.add_argument("--overwrite", action="store_true",
                           help="start afresh in an --output-dir that holds an earlier run: its checkpoints and history.json "
                           "are replaced, other files kept (without --resume or --overwrite a non-empty --output-dir is refused)")
    run_group.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    run_group.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                           help="mixed precision: bf16 autocast, or fp16 autocast with a gradient scaler; auto: bf16 on CUDA, else fp32")
    run_group.add_argument("--grad-accum", type=int, default=1, help="batches whose gradients are accumulated per optimiser step")
    run_group.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    run_group.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes that load and mix clips")
    run_group.add_argument("--attn-implementation", default="auto", choices=ATTN_IMPLEMENTATIONS,
                           help="attention backend; auto: triton on CUDA when available, else sdpa")
    run_group.add_argument("--threads", type=int, default=None,
                           help="CPU threads per process for torch (default: torch's choice, all cores); on a machine "
                           "shared with other jobs, 1 avoids the thread oversubscription that can make training several times slower")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    run_group.add_argument("--gradient-checkpointing", action="store_true",
                           help="recompute each block's activations during backward instead of storing them: less memory "
                           "for longer clips or larger batches, at the cost of about one more forward pass")
    hyper = parser.add_argument_group("hyper-parameters (default: the recipe's)")
    for field in option_fields():
        flag, default = f"--{field.name.replace('_', '-')}", field.default
        if isinstance(default, bool):
            hyper.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=field.metadata["help"])
            continue
        kind = str if isinstance(default, str) else float if isinstance(default, float) or default is None else int
        if field.name == "max_length":  # bounded while parsed, as `ast-min features --max-length`
            kind = checked(int, check_max_length)
        hyper.add_argument(flag, type=kind, default=None, help=field.metadata["help"])
    size = parser.add_argument_group("model size when training from scratch (default: the recipe's; ignored with --init)")
    for name, help_text in MODEL_OPTIONS.items():
        size.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=help_text)


def run(args: argparse.Namespace) -> int:
    """`ast-min train`: build the recipe, the data and the run, train, and print where the model went."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    recipe = get_recipe(args.recipe)
    overrides = {f.name: getattr(args, f.name) for f in option_fields() if getattr(args, f.name) is not None}
    model_overrides = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name) is not None}
    if (args.norm_mean is None) != (args.norm_std is None):  # one of them, with the recipe's other: refused
        check_norm_stats(args.norm_mean, args.norm_std)
    recipe = recipe.replace(**overrides, model={**recipe.model, **model_overrides})
    train_set, eval_set = _datasets(args, recipe)
    run_options = RunOptions(
        output_dir=args.output_dir, init=args.init, seed=args.seed, precision=args.precision,
        grad_accum=args.grad_accum, device=args.device, num_workers=args.num_workers, resume=args.resume,
        overwrite=args.overwrite, attn_implementation=args.attn_implementation, progress=not args.no_progress,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    main_process = Distributed.from_environment().is_main
    try:
        summary = train(recipe, train_set, eval_set, run_options)
    except KeyboardInterrupt:
        if main_process:
            print(interrupted_message(args, recipe.epochs), file=sys.stderr)
        return 130  # 128 + SIGINT, the shell's convention
    if summary["best"] is not None and main_process:
        best = summary["best"]
        print(f"best epoch {best['epoch']}: {summary['main_metric']} {best['metrics'][summary['main_metric']]:.4f} "
              f"-> {os.path.join(args.output_dir, 'best')}")
    return 0


def _datasets(args, recipe):
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


def interrupted_message(args: argparse.Namespace, epochs: int) -> str:
    """What Ctrl-C left in --output-dir (a save it cut short is finished first), and the command that resumes the run."""
    argv = list(getattr(args, "argv", None) or ["train", "--output-dir", args.output_dir])
    argv = [a for a in argv if a != "--overwrite"] + ([] if "--resume" in argv else ["--resume"])
    command = "ast-min " + shlex.join(argv)
    last = os.path.join(args.output_dir, "last")
    try:
        run_folder.finish_saves(args.output_dir)
    except (OSError, ValueError):  # a folder the run never got to check: report it as it is
        pass
    saved = run_folder.saved_epoch(last)
    if saved is None:
        return f"ast-min train: interrupted before the first epoch was saved; nothing to keep. To start again:\n  {command}"
    return (f"ast-min train: interrupted; {last} holds epoch {saved} of {epochs} (best/ the best so far). "
            f"To continue from there:\n  {command}")
