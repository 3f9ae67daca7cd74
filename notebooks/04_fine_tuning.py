# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Fine-tuning an AST
#
# Chapters 01–03 built the front end, the model and its attention kernel. This chapter trains one,
# the way the original recipes do (Gong, Chung & Glass 2021, section 3; YuanGongND/ast
# `src/traintest.py`), on a dataset that needs no download: ast-min's synthetic sound events.
#
# 1. the data: ten kinds of generated sounds, each drawn from its own seeded generator,
# 2. augmentation: SpecAugment masks and waveform mixup, by hand and by `ast_min.data`,
# 3. the learning-rate schedule: warm-up, then MultiStepLR decay,
# 4. a short fine-tuning run on the CPU, with loss and accuracy curves,
# 5. evaluation: accuracy, mAP, AUC and d′, and the confusion matrix,
# 6. where the trained model looks: the [CLS] token's attention over the spectrogram.
#
# Shape legend: N samples, T frames, F mel bins, C classes, f × t patch grid, L tokens.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import ast_min
from ast_min import metrics
from ast_min.data import SyntheticDataset, mixup, spec_augment, synthetic
from ast_min.recipes import get_recipe
from ast_min.train import RunOptions, learning_rate, train

torch.manual_seed(0)
# The matrices of a tiny model are small: one thread wastes nothing, and on a CPU shared with other
# jobs it avoids OpenMP threads spinning while they wait for each other (minutes instead of seconds).
torch.set_num_threads(1)
FRAMES, BINS = 64, 64  # 0.65-s clips and 64 mel bins keep this chapter under two minutes on a CPU

# %% [markdown]
# ## 1 · The synthetic sound events
#
# `SyntheticDataset(size, seed)` makes clip `i` from `numpy.random.default_rng([seed, i])`: the
# same clip on every machine, in any order, and a held-out set is just another seed. Classes
# cycle with the index, so ten consecutive clips hold one of each. Each clip draws its event's
# frequency, duration, onset and level, and a white-noise background at 10–30 dB SNR.

# %%
train_set = SyntheticDataset(600, seed=0, num_frames=FRAMES)
eval_set = SyntheticDataset(100, seed=1, num_frames=FRAMES)
extractor = ast_min.ASTFeatureExtractor(num_mel_bins=BINS, max_length=FRAMES, do_normalize=False)

fig, axes = plt.subplots(2, 5, figsize=(14, 5), sharey=True)
for i, ax in enumerate(axes.flat):
    item = train_set[i]
    image = extractor([item["waveform"]], sampling_rate=16000, return_tensors="pt").input_values[0]  # (T, F)
    ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma")
    ax.set_title(synthetic.CLASSES[int(item["target"].argmax())])
fig.supxlabel("frame (10 ms)")
fig.supylabel("mel bin")
plt.tight_layout()

# Determinism, checked: the same (seed, index) gives the same samples.
assert np.array_equal(SyntheticDataset(600, seed=0, num_frames=FRAMES)[7]["waveform"], train_set[7]["waveform"])

# %% [markdown]
# The model sees these images normalised by the training set's own statistics, as the original
# recipes do for each dataset (`compute_norm_stats`: the mean over clips of each clip's mean and
# standard deviation), then `(x - mean) / (2 std)`.

# %%
mean, std = ast_min.compute_norm_stats([train_set[i]["waveform"] for i in range(0, 600, 6)], num_mel_bins=BINS, max_length=FRAMES)
images = torch.stack([extractor([train_set[i]["waveform"]], sampling_rate=16000, return_tensors="pt").input_values[0] for i in range(0, 600, 6)])
by_hand = images.double().mean(dim=(1, 2)).mean().item(), images.double().std(dim=(1, 2)).mean().item()
print(f"mean {mean:.4f}, std {std:.4f}")
assert np.allclose((mean, std), by_hand, atol=1e-4)

# %% [markdown]
# ## 2 · Augmentation
#
# **SpecAugment** (Park et al. 2019) hides one band of mel bins and one run of frames, each of a
# width drawn uniformly below `freqm` / `timem`, so the model cannot lean on any single band or
# moment. Below, one mask by hand and by `spec_augment`, from the same random generator.

# %%
normalised = ast_min.ASTFeatureExtractor(num_mel_bins=BINS, max_length=FRAMES, mean=mean, std=std)
features = normalised([train_set[1]["waveform"]], sampling_rate=16000, return_tensors="pt").input_values[0]  # (T, F)
masked, fmask, tmask = spec_augment(features, np.random.default_rng(3), freqm=24, timem=24)

rng = np.random.default_rng(3)  # the same draws, by hand: width ~ U{0..max-1}, start anywhere it fits
f_width = int(rng.integers(0, 24)); f_start = int(rng.integers(0, BINS - f_width))
t_width = int(rng.integers(0, 24)); t_start = int(rng.integers(0, FRAMES - t_width))
by_hand = features.clone()
by_hand[:, f_start : f_start + f_width] = 0.0
by_hand[t_start : t_start + t_width, :] = 0.0
assert torch.equal(masked, by_hand) and (f_start, f_width, t_start, t_width) == (fmask.start, fmask.width, tmask.start, tmask.width)

# %% [markdown]
# **Mixup** (Zhang et al. 2018) as the AST recipes use it mixes *waveforms*, not spectrograms:
# `λ·x + (1 − λ)·y` with `λ ~ Beta(10, 10)` (close to half and half), and the labels with the same
# weights, so the target says "60 % chirp, 40 % noise".

# %%
x, y = train_set[1], train_set[3]  # a rising chirp and white noise
lam = 0.6
mixed, target = mixup(x["waveform"], x["target"], y["waveform"], y["target"], lam)
by_hand = lam * (x["waveform"] - x["waveform"].mean()) + (1 - lam) * (y["waveform"] - y["waveform"].mean())
assert np.allclose(mixed, by_hand, atol=1e-6) and np.isclose(target.sum(), 1.0)
print({synthetic.CLASSES[c]: round(float(target[c]), 2) for c in np.flatnonzero(target)})

fig, axes = plt.subplots(1, 4, figsize=(15, 3), sharey=True)
for ax, image, title in zip(axes, [features, masked, *normalised([y["waveform"], mixed], sampling_rate=16000, return_tensors="pt").input_values],
                            ["rising chirp", "SpecAugment", "white noise", f"mixup, λ = {lam}"]):
    ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma")
    ax.set_title(title)
plt.tight_layout()

# %% [markdown]
# ## 3 · The learning-rate schedule
#
# Adam (weight decay 5e-7, betas 0.95 / 0.999), a linear warm-up, then the original's
# `MultiStepLR`: from epoch `lr_decay_start` on, multiply by `lr_decay` every `lr_decay_every`
# epochs. Here the AudioSet-balanced recipe (1000 warm-up steps; halve every 5 epochs after 10),
# by hand against `learning_rate`.

# %%
recipe = get_recipe("audioset-balanced")
steps_per_epoch = 20_000 // recipe.batch_size  # AudioSet balanced: ~20k clips
epochs = np.arange(1, recipe.epochs + 1)
by_hand = [recipe.lr * min(1, (s + 1) / 1000) * 0.5 ** max(0, (e - 1 - 10) // 5 + 1) for e in epochs for s in [(e - 1) * steps_per_epoch]]
library = [learning_rate(recipe, (e - 1) * steps_per_epoch, e) for e in epochs]
assert np.allclose(by_hand, library)
plt.figure(figsize=(6, 2.5))
steps = np.arange(0, 3000, 10)
plt.plot(steps, [learning_rate(recipe, s, 1 + s // steps_per_epoch) for s in steps])
plt.xlabel("optimiser step"); plt.ylabel("lr"); plt.title("warm-up (first epochs)")
plt.figure(figsize=(6, 2.5))
plt.step(epochs, library, where="post"); plt.xlabel("epoch"); plt.ylabel("lr"); plt.title("MultiStepLR decay")

# %% [markdown]
# ## 4 · Fine-tuning on the CPU
#
# A tiny AST (64 wide, 2 layers, 4 heads: ~0.1 M parameters) from random weights, twelve epochs on
# 600 clips. `train` writes `best/` and `last/` Hugging Face checkpoints each epoch (with the
# feature extractor's `preprocessor_config.json`) and returns the history.

# %%
recipe = get_recipe("synthetic").replace(
    model=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    max_length=FRAMES, num_mel_bins=BINS, norm_mean=mean, norm_std=std,
    epochs=12, batch_size=16, lr=2e-3, warmup_steps=25, lr_decay_start=8, lr_decay=0.7, freqm=8, timem=8,
)
run_dir = Path(tempfile.mkdtemp()) / "run"
summary = train(recipe, train_set, eval_set, RunOptions(output_dir=str(run_dir), seed=0, progress=False))
print(f"{sum(p.numel() for p in summary['model'].parameters()):,} parameters")

# %%
history = summary["history"]
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3))
left.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], "o-", label="train")
left.plot([h["epoch"] for h in history], [h["eval_loss"] for h in history], "o-", label="held out")
left.set_xlabel("epoch"); left.set_ylabel("cross-entropy"); left.legend()
right.plot([h["epoch"] for h in history], [h["eval_accuracy"] for h in history], "o-")
right.set_xlabel("epoch"); right.set_ylabel("held-out accuracy"); right.set_ylim(0, 1)
assert history[-1]["train_loss"] < history[0]["train_loss"]
print(sorted(p.name for p in run_dir.iterdir()))

# %% [markdown]
# ## 5 · Evaluation
#
# The paper's metrics, computed by hand and by `ast_min.metrics` (which calls scikit-learn, as the
# original does): accuracy of the top class; per-class average precision (mAP) and ROC AUC; and
# d′ = √2 · Φ⁻¹(AUC), the distance between two unit Gaussians whose ROC has that area.

# %%
model = ast_min.ASTForAudioClassification.from_pretrained(run_dir / "best").eval()
front_end = ast_min.ASTFeatureExtractor.from_pretrained(run_dir / "best")
clips = [eval_set[i] for i in range(len(eval_set))]
with torch.no_grad():
    logits = model(front_end([c["waveform"] for c in clips], sampling_rate=16000, return_tensors="pt").input_values).logits
targets = np.stack([c["target"] for c in clips])
scores = torch.softmax(logits, -1).numpy()

accuracy = np.mean(scores.argmax(1) == targets.argmax(1))
# AUC of one class by hand: the chance that a random positive outranks a random negative.
pos, neg = scores[targets[:, 0] == 1, 0], scores[targets[:, 0] == 0, 0]
auc0 = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
from sklearn.metrics import roc_auc_score  # noqa: E402

assert np.isclose(auc0, roc_auc_score(targets[:, 0], scores[:, 0]))
result = metrics.compute_metrics(scores, targets)
assert np.isclose(result["accuracy"], accuracy)
print({k: round(v, 3) for k, v in result.items()})

matrix = metrics.confusion_matrix(scores, targets)
by_hand = np.zeros((10, 10), int)
for t, p in zip(targets.argmax(1), scores.argmax(1)):
    by_hand[t, p] += 1
assert np.array_equal(matrix, by_hand)
plt.figure(figsize=(5.5, 5))
plt.imshow(matrix, cmap="Blues")
plt.xticks(range(10), synthetic.CLASSES, rotation=90); plt.yticks(range(10), synthetic.CLASSES)
plt.xlabel("predicted"); plt.ylabel("true"); plt.title("confusion matrix, held-out clips")
for (i, j), v in np.ndenumerate(matrix):
    if v:
        plt.text(j, i, v, ha="center", va="center", fontsize=8)

# %% [markdown]
# Twelve epochs on 600 short clips get part of the way. `ast-min train --recipe synthetic` trains
# the model the package ships (`ast_min/default_model`) with this same architecture on 3,000
# 1.3-s clips for 60 epochs; `ast-min classify` uses it when no checkpoint is given.
#
# ## 6 · Where the model looks
#
# The eager attention backend can return every layer's attention maps (B, H, L, L). The [CLS]
# token (position 0) pools the clip; its attention over the f × t patches, averaged over heads,
# shows which parts of the spectrogram the classification reads. We look inside the model just
# trained (its best epoch); the shipped model loads the same way from `ast_min/default_model`.

# %%
model = ast_min.ASTForAudioClassification.from_pretrained(run_dir / "best", attn_implementation="eager").eval()
config = model.config
clip = SyntheticDataset(10, seed=7, num_frames=config.max_length)[1]  # a rising chirp
x = front_end([clip["waveform"]], sampling_rate=16000, return_tensors="pt").input_values  # (1, T, F)
with torch.no_grad():
    out = model(x, output_attentions=True)
last = out.attentions[-1][0]  # (H, L, L), softmax rows
assert torch.allclose(last.sum(-1), torch.ones(()), atol=1e-5)  # each row a probability distribution
f, t = config.frequency_out_dimension, config.time_out_dimension
cls_to_patches = last[:, 0, 2:].mean(0).reshape(f, t)  # (f, t): patches are frequency-major
print("predicted:", config.id2label[int(out.logits.argmax())], "| true:", synthetic.CLASSES[int(clip["target"].argmax())])

fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
top.imshow(x[0].T, origin="lower", aspect="auto", cmap="magma", extent=(0, config.max_length, 0, config.num_mel_bins))
top.set_ylabel("mel bin")
# Each patch covers 16 bins/frames starting every 10: draw the grid of patch starts.
bottom.imshow(cls_to_patches, origin="lower", aspect="auto", cmap="viridis",
              extent=(0, t * config.time_stride, 0, f * config.frequency_stride))
bottom.set_xlabel("frame"); bottom.set_ylabel("mel bin (patch start)")
bottom.set_title("[CLS] attention over the patches, last layer, mean of heads")
plt.tight_layout()
