"""Fine-tuning presets: the original AST recipes (YuanGongND/ast egs/*/run*.sh) and the synthetic set.

Each `Recipe` holds the hyper-parameters of one published run, so a user with the data and the GPUs
knows what to type and what to expect (`expected` quotes the paper: Gong, Chung & Glass,
Interspeech 2021, tables 1-3). Command-line options override any field that has a help text
(`ast-min train --recipe esc50 --data esc50.json --lr 1e-4`); `Recipe.validate` refuses values no
run can use.

    recipe             lr      epochs batch freqm timem mixup frames  decay (start, every, x)  paper
    audioset-full      1e-5    5      12    48    192   0.5   1024    2, 1, 0.5                0.459 mAP
    audioset-balanced  5e-5    25     12    48    192   0.5   1024    10, 5, 0.5               0.347 mAP
    esc50              1e-5    25     48    24    96    0     512     5, 1, 0.85               95.6 %
    speechcommands     2.5e-4  30     128   48    48    0.6   128     5, 1, 0.85               98.1 %
    synthetic          2e-3    50     16    8     16    0     128     20, 1, 0.9               (ast-min's default model)

The ESC-50 learning rate assumes the AudioSet-pretrained start (the paper's 95.6 %); from an
ImageNet-only start the original uses 1e-4 (88.7 %).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from ast_min.features import AUDIOSET_MEAN, AUDIOSET_STD

# The normalisation statistics the original recipes use: (mean, std) of each dataset's log-mel features.
AUDIOSET_STATS = (AUDIOSET_MEAN, AUDIOSET_STD)
ESC50_STATS = (-6.6268077, 5.358466)
SPEECHCOMMANDS_STATS = (-6.845978, 5.5654526)
LOSSES = ("auto", "ce", "bce")


def option(default, help: str, **kwargs):
    """A Recipe field that is also an `ast-min train` option (`--name-with-dashes`), with its help text."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a fine-tuning run; every field with a help text is also an `ast-min train` option."""

    name: str = "custom"
    description: str = ""
    expected: str = ""  # the published result this recipe reproduces
    # data and front end
    max_length: int = option(1024, "frames per clip (10 ms each); longer clips are cut, shorter ones padded")
    num_mel_bins: int = option(128, "mel bins of the log-mel front end (the model's input height)")
    norm_mean: float | None = option(
        None, "mean of the dataset's log-mel features (default: the recipe's, else computed on the training set)")
    norm_std: float | None = option(None, "standard deviation of the dataset's log-mel features (as --norm-mean)")
    multi_label: bool | None = None  # None: decided by the data (any file with two labels)
    loss: str = option("auto", "ce (softmax cross-entropy), bce (sigmoid per class) or auto (bce for multi-label data)")
    # optimisation (Adam, as the original)
    lr: float = option(1e-5, "peak learning rate of Adam")
    epochs: int = option(25, "number of passes over the training set")
    batch_size: int = option(
        12, "global batch size (split across torchrun processes; times --grad-accum per optimiser step)")
    weight_decay: float = option(5e-7, "Adam's (L2) weight decay")
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = option(0, "optimiser steps of linear learning-rate warm-up (0: none)")
    lr_decay_start: int = option(5, "MultiStepLR: the first epoch after which the learning rate decays")
    lr_decay_every: int = option(1, "MultiStepLR: decay again every this many epochs")
    lr_decay: float = option(0.85, "MultiStepLR: the factor applied at each decay")
    # augmentation
    freqm: int = option(0, "SpecAugment: largest frequency-mask width in mel bins (0: off)")
    timem: int = option(0, "SpecAugment: largest time-mask width in frames (0: off)")
    mixup: float = option(
        0.0, "probability that a training clip is mixed with another (waveform mixup, lambda ~ Beta(10, 10))")
    balanced: bool = option(
        False, "draw training clips with class-balancing weights, with replacement (the AudioSet-full recipe)")
    noise: bool = option(False, "add noise and roll the frames by up to 10 (the Speech Commands recipe)")
    # averaging of the weights of epochs wa_start..wa_end (1-based, inclusive); 0 disables
    wa_start: int = option(0, "weight averaging: first epoch (1-based) whose weights are averaged (0: off)")
    wa_end: int = option(0, "weight averaging: last epoch averaged")
    # the model when starting from scratch (ignored with --init)
    model: dict = field(default_factory=dict)
    # the synthetic recipe's data sizes, and the synthetic set's options (SyntheticDataset keywords)
    train_size: int = option(0, "synthetic data only: number of training clips")
    eval_size: int = option(0, "synthetic data only: number of evaluation clips")
    synthetic: dict = field(default_factory=dict)

    def replace(self, **changes) -> "Recipe":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, processes: int = 1) -> None:
        """Refuse hyper-parameters no run can use, naming the field; `processes`: torchrun's world size."""
        if self.batch_size < 1 or self.epochs < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"batch_size ({self.batch_size}), epochs ({self.epochs}) and lr ({self.lr}) must be "
                             "positive (and lr finite)")
        if not (math.isfinite(self.lr_decay) and self.lr_decay > 0) or not (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"lr_decay ({self.lr_decay}) must be positive and weight_decay ({self.weight_decay}) "
                             "non-negative, both finite")
        if self.batch_size % processes:
            raise ValueError(f"the global batch_size {self.batch_size} does not split evenly over {processes} "
                             f"processes: use a multiple of {processes}")
        if self.lr_decay_every < 1:
            raise ValueError(f"lr_decay_every must be at least 1 epoch, got {self.lr_decay_every}")
        if self.wa_start and not 1 <= self.wa_start <= self.wa_end:
            raise ValueError(f"weight averaging needs 1 <= wa_start ({self.wa_start}) <= wa_end ({self.wa_end})")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be 'auto', 'ce' or 'bce', got {self.loss!r}")
        check_norm_stats(self.norm_mean, self.norm_std)


def check_norm_stats(mean: float | None, std: float | None) -> None:
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


def option_fields() -> list:
    """The Recipe fields that are `ast-min train` options: those with a help text, in the order declared."""
    return [f for f in fields(Recipe) if "help" in f.metadata]


RECIPES: dict[str, Recipe] = {
    "audioset-full": Recipe(
        name="audioset-full",
        description="AudioSet full (~2M clips, 527 classes), from ImageNet DeiT-B/384, class-balanced sampling",
        expected="0.459 mAP (single model, weight-averaged; 0.485 ensemble)",
        max_length=1024, norm_mean=AUDIOSET_STATS[0], norm_std=AUDIOSET_STATS[1], multi_label=True,
        lr=1e-5, epochs=5, batch_size=12, warmup_steps=1000, lr_decay_start=2, lr_decay_every=1, lr_decay=0.5,
        freqm=48, timem=192, mixup=0.5, balanced=True, wa_start=1, wa_end=5,
    ),
    "audioset-balanced": Recipe(
        name="audioset-balanced",
        description="AudioSet balanced (~20k clips, 527 classes), from ImageNet DeiT-B/384",
        expected="0.347 mAP (single model)",
        max_length=1024, norm_mean=AUDIOSET_STATS[0], norm_std=AUDIOSET_STATS[1], multi_label=True,
        lr=5e-5, epochs=25, batch_size=12, warmup_steps=1000, lr_decay_start=10, lr_decay_every=5, lr_decay=0.5,
        freqm=48, timem=192, mixup=0.5, wa_start=6, wa_end=25,
    ),
    "esc50": Recipe(
        name="esc50",
        description="ESC-50 (2,000 5-s clips, 50 classes, 5-fold cross-validation), from the AudioSet-finetuned AST",
        expected="95.6 % accuracy (mean of 5 folds, AudioSet + ImageNet start)",
        max_length=512, norm_mean=ESC50_STATS[0], norm_std=ESC50_STATS[1], multi_label=False,
        lr=1e-5, epochs=25, batch_size=48, lr_decay_start=5, lr_decay_every=1, lr_decay=0.85,
        freqm=24, timem=96, mixup=0.0,
    ),
    "speechcommands": Recipe(
        name="speechcommands",
        description="Speech Commands V2 (105k 1-s clips, 35 classes), from ImageNet DeiT-B/384",
        expected="98.1 % accuracy (test set)",
        max_length=128, norm_mean=SPEECHCOMMANDS_STATS[0], norm_std=SPEECHCOMMANDS_STATS[1], multi_label=False,
        loss="bce",  # one word per clip, but the original trains it with BCE
        lr=2.5e-4, epochs=30, batch_size=128, lr_decay_start=5, lr_decay_every=1, lr_decay=0.85,
        freqm=48, timem=48, mixup=0.6, noise=True,
    ),
    "synthetic": Recipe(
        name="synthetic",
        description="ast-min's synthetic sound events (10 classes + 'other', 1.3-s clips in realistic recording "
        "conditions), a tiny AST from scratch on the CPU",
        expected=">= 95 % accuracy on the ten classes of a freshly seeded held-out set",
        max_length=128, num_mel_bins=64, multi_label=False,
        lr=2e-3, epochs=50, batch_size=16, warmup_steps=50, lr_decay_start=20, lr_decay_every=1, lr_decay=0.9,
        freqm=8, timem=16, mixup=0.0,
        # A tiny AST (~0.1 M parameters), so the default model trains on one CPU thread and ships in under a megabyte.
        model=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
        # 600 training clips a class: with short clips among them the set needs more clips than a set of
        # full-length ones to keep the ten classes at 95 % held out (the README's default-model section).
        train_size=6600, eval_size=550,
        # the `other` class (none of the ten), realistic recording conditions, and 15 % of the clips shorter
        # than the window (a short file reaches the model padded): see ast_min.data.synthetic
        synthetic=dict(other=True, realistic=True, short=0.15),
    ),
}


def get_recipe(name: str) -> Recipe:
    """The preset called `name`; a clear error lists the others."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]
