"""From dataset items to training batches: mixup, features, SpecAugment, noise and roll.

The order follows the original recipe (src/dataloader.py): mixup on waveforms, then log-mel
features and normalisation, then the masks, then noise and roll. Each clip's random draws come
from its own generator, `default_rng([seed, epoch, index, stage])`, never from a shared stream, so
a clip is augmented identically however the data is batched, split across processes, or resumed.

Shape legend: B clips, N samples, T frames (`max_length`), F mel bins, C classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ast_min.data.augment import draw_mixup_weight, mixup, noise_and_roll, spec_augment
from ast_min.features import samples_for_frames

if TYPE_CHECKING:  # for the annotations only
    from ast_min.recipes import Recipe

# The `stage` part of a clip's generator seed, one per random step, so adding a step never shifts another's draws.
_MIXUP, _MASKS, _NOISE = 0, 1, 2


def clip_rng(seed: int, epoch: int, index: int, stage: int) -> np.random.Generator:
    """The generator for one clip's augmentation step in one epoch."""
    return np.random.default_rng([seed, epoch, index, stage])


class MixupDataset(torch.utils.data.Dataset):
    """A dataset whose items are, with probability `mixup`, mixed with another random item.

    `set_epoch(e)` (as with DistributedSampler) changes the draws from one epoch to the next.
    With `mixup=0` it passes items through untouched.
    """

    def __init__(self, dataset, mixup: float = 0.0, alpha: float = 10.0, seed: int = 0):
        if not 0.0 <= mixup <= 1.0:
            raise ValueError(f"mixup is a probability in [0, 1], got {mixup}")
        self.dataset, self.mixup, self.alpha, self.seed, self.epoch = dataset, mixup, alpha, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict | None:
        item = self.dataset[index]
        if item is None or self.mixup == 0.0:
            return item
        rng = clip_rng(self.seed, self.epoch, index, _MIXUP)
        if rng.random() >= self.mixup:
            return item
        other = self.dataset[int(rng.integers(0, len(self.dataset)))]
        if other is None:  # the partner was unusable (already warned and counted): no mix
            return item
        waveform, target = mixup(item["waveform"], item["target"], other["waveform"], other["target"], draw_mixup_weight(rng, self.alpha))
        return {**item, "waveform": waveform, "target": target}


class Collator:
    """Turns a list of items into a batch {"input_values" (B, T, F), "targets" (B, C), "index" (B,), "dropped"}.

    Items that are None (unusable files) are dropped and counted in "dropped": the count travels
    with the batch because DataLoader workers each hold their own copy of the dataset, so only the
    batches reach the training loop. A batch whose every item was unusable is just {"dropped": n}.
    Waveforms are cut to the samples that `max_length` frames need before the front end runs (the
    rest would be truncated anyway).
    With `train=True` the recipe's SpecAugment masks (`freqm`, `timem`) and noise + roll are applied.
    """

    def __init__(self, feature_extractor, *, train: bool = False, freqm: int = 0, timem: int = 0,
                 noise: bool = False, seed: int = 0):
        self.feature_extractor, self.train = feature_extractor, train
        self.freqm, self.timem, self.noise, self.seed, self.epoch = freqm, timem, noise, seed, 0
        self.num_samples = samples_for_frames(feature_extractor.max_length)
        # The original masks the log-mel *before* normalising, with 0; the masks here act on the
        # normalised features, so they fill with where that 0 lands: (0 - mean) / (2 std).
        normalized = getattr(feature_extractor, "do_normalize", False)
        self.mask_value = -feature_extractor.mean / (2 * feature_extractor.std) if normalized else 0.0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, items: list[dict | None]) -> dict:
        readable = [item for item in items if item is not None]
        dropped = len(items) - len(readable)
        if not readable:
            return {"dropped": dropped}
        items = readable
        waveforms = [item["waveform"][: self.num_samples] for item in items]
        features = self.feature_extractor(
            waveforms, sampling_rate=self.feature_extractor.sampling_rate, return_tensors="pt"
        ).input_values  # (B, T, F)
        features = torch.as_tensor(features, dtype=torch.float32)
        if self.train and (self.freqm or self.timem or self.noise):
            clips = []
            for item, clip in zip(items, features):
                if self.freqm or self.timem:
                    rng = clip_rng(self.seed, self.epoch, item["index"], _MASKS)
                    clip = spec_augment(clip, rng, self.freqm, self.timem, value=self.mask_value)[0]
                if self.noise:
                    clip = noise_and_roll(clip, clip_rng(self.seed, self.epoch, item["index"], _NOISE))
                clips.append(clip)
            features = torch.stack(clips)
        return {
            "input_values": features,
            "targets": torch.from_numpy(np.stack([item["target"] for item in items])),
            "index": torch.tensor([item["index"] for item in items]),
            "dropped": dropped,
        }


def balanced_weights(targets: list[list[int]], num_classes: int) -> torch.Tensor:
    """Per-clip sampling weights that even out class frequencies (the original's gen_weight_file.py).

    Each label weighs 1000 / (its clip count + 0.01); a clip weighs the sum of its labels' weights,
    so clips of rare classes are drawn more often. Returns (num_clips,) float64.
    """
    counts = np.zeros(num_classes)
    for row in targets:
        counts[row] += 1
    label_weight = 1000.0 / (counts + 0.01)
    return torch.tensor([label_weight[row].sum() for row in targets], dtype=torch.float64)


class WeightedDistributedSampler(torch.utils.data.Sampler):
    """`WeightedRandomSampler` (with replacement) that splits its draws across processes.

    Each epoch draws `len(weights)` indices from the seeded generator (seed + epoch, like
    DistributedSampler), identically on every rank; rank r then takes draws r, r + world, ...
    so the ranks' shares of a global batch together are the single-process batch.
    """

    def __init__(self, weights: torch.Tensor, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if weights.ndim != 1 or not (weights >= 0).all() or not weights.sum() > 0:
            raise ValueError("sampling weights must be a 1-D tensor of non-negative numbers, not all zero")
        self.weights, self.num_replicas, self.rank, self.seed, self.epoch = weights, num_replicas, rank, seed, 0
        self.num_samples = -(-len(weights) // num_replicas)  # ceil: every rank takes the same number

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.num_samples * self.num_replicas, replacement=True, generator=generator)
        return iter(draws[self.rank :: self.num_replicas].tolist())


def loaders(recipe: Recipe, train_set, eval_set, feature_extractor, *, seed: int = 0, num_workers: int = 0,
            rank: int = 0, world_size: int = 1):
    """The training and evaluation DataLoaders of one process, and the training pieces whose draws
    change each epoch (call their `set_epoch` at the start of every epoch).

    Each of `world_size` processes takes a `batch_size / world_size` share of every global batch.
    DistributedSampler(num_replicas=1) is a plain seeded shuffle, so a single-process run sees the
    same global batches as a multi-process one.
    """
    per_rank_batch = recipe.batch_size // world_size
    train_data = MixupDataset(train_set, recipe.mixup, seed=seed)
    if recipe.balanced:
        if not hasattr(train_set, "targets"):
            raise ValueError("balanced sampling needs a dataset that lists its labels per clip (ClipDataset)")
        weights = balanced_weights(train_set.targets, len(train_set.labels))
        sampler = WeightedDistributedSampler(weights, num_replicas=world_size, rank=rank, seed=seed)
    else:
        sampler = torch.utils.data.DistributedSampler(train_data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    train_collate = Collator(feature_extractor, train=True, freqm=recipe.freqm, timem=recipe.timem, noise=recipe.noise, seed=seed)
    train_loader = torch.utils.data.DataLoader(
        train_data, batch_size=per_rank_batch, sampler=sampler, collate_fn=train_collate, num_workers=num_workers
    )
    eval_loader = torch.utils.data.DataLoader(
        eval_set, batch_size=max(per_rank_batch, 1) * 2, shuffle=False, collate_fn=Collator(feature_extractor),
        num_workers=num_workers,
    )
    return train_loader, eval_loader, (sampler, train_data, train_collate)
