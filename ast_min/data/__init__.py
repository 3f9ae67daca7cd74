"""Data for fine-tuning: datasets of audio files, the synthetic set, augmentation, batching.

    datasets.py   ClipDataset: a class-folder tree or a CSV / JSON manifest of audio files
    synthetic.py  SyntheticDataset: ten kinds of generated sound events, no download needed
    augment.py    mixup, SpecAugment masks, noise and roll (the original recipes' augmentation)
    pipeline.py   MixupDataset and Collator: items -> augmented, featurised batches; class-balanced sampling;
                  `loaders`, the DataLoaders of a training run
"""

from ast_min.data.augment import draw_mask, mixup, noise_and_roll, spec_augment
from ast_min.data.datasets import ClipDataset, read_class_labels
from ast_min.data.pipeline import Collator, MixupDataset, WeightedDistributedSampler, balanced_weights, loaders
from ast_min.data.synthetic import SyntheticDataset

__all__ = [
    "ClipDataset",
    "Collator",
    "MixupDataset",
    "SyntheticDataset",
    "WeightedDistributedSampler",
    "balanced_weights",
    "draw_mask",
    "loaders",
    "mixup",
    "noise_and_roll",
    "read_class_labels",
    "spec_augment",
]
