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
# Chapters 01–03 built the front end, the model and its attention kernel. This chapter fine-tunes a
# *trained* model on a new task, the way AST itself was made (Gong, Chung & Glass 2021, section 2.2:
# start from pretrained weights, replace the head, adapt the position embeddings to the new input):
#
# 1. the starting point: ast-min's embedded default model (`ast_min/default_model`), and a new task
#    — new labels, shorter clips;
# 2. adapting the model by hand: a new head, position embeddings cut to the new patch grid;
# 3. the data and its augmentation: normalisation, SpecAugment (and its fill value), mixup;
# 4. the checks a practitioner runs before training: the loss at initialisation, overfitting one
#    batch, a learning-rate range test;
# 5. a training loop written here (forward, loss, backward, clipping, step, warm-up, AMP where
#    available), next to the library's `train()`, which it reproduces;
# 6. evaluation: accuracy, AUC, the confusion matrix, and what the pretrained start bought;
# 7. where the fine-tuned model looks: attention maps, rollout and gradient-weighted relevance, and the
#    sanity checks a saliency measure must pass before its maps mean anything;
# 8. (optional) the real AudioSet checkpoint, if you have it locally.
#
# Everything trains on a CPU. Shape legend: B clips, T frames, F mel bins,
# C classes, f × t patch grid, L = f·t + 2 tokens, H heads.

# %%
import copy
import itertools
import math
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import ast_min
from ast_min import metrics
from ast_min.checkpoint import adapt_position_embeddings
from ast_min.data import Collator, SyntheticDataset, mixup, spec_augment
from ast_min.recipes import get_recipe
from ast_min.train import RunOptions, learning_rate, train

SEED = 0
torch.manual_seed(SEED)
# The matrices of a tiny model are small: one thread wastes nothing, and on a CPU shared with other
# jobs it avoids OpenMP threads spinning while they wait for each other.
torch.set_num_threads(1)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# %% [markdown]
# ## 1 · The starting point and the new task
#
# The package ships a tiny AST trained on ast-min's synthetic sound events (generated, seeded clips:
# no download). Its config says what it was trained for; nothing below assumes a number of classes.

# %%
DEFAULT_MODEL = Path(ast_min.__file__).parent / "default_model"
pretrained = ast_min.ASTForAudioClassification.from_pretrained(DEFAULT_MODEL)
old = pretrained.config
print(f"{old.num_labels} classes: {list(old.id2label.values())}")
print(f"input {old.max_length} frames x {old.num_mel_bins} mel bins -> {old.frequency_out_dimension} x {old.time_out_dimension} patches, "
      f"D = {old.hidden_size}, {old.num_hidden_layers} layers, {old.num_attention_heads} heads, "
      f"{sum(p.numel() for p in pretrained.parameters()):,} parameters")
assert pretrained.classifier.dense.out_features == old.num_labels

# %% [markdown]
# The new task: sort the same kinds of sounds into coarser classes — steady **tonal** sounds,
# **noise**, and **pulsed** sounds (clicks, pips) — from clips of 96 frames (0.97 s), shorter than the
# clips the model was trained on (its `max_length`, printed above). The grouping names every one of the
# synthetic classes, so there are exactly three. Note what kind of task this is: new labels for the
# very sounds the model was trained on (section 6 comes back to what that means for the comparison with
# training from scratch).

# %%
GROUPS = {"pure_tone": "tonal", "rising_chirp": "tonal", "falling_chirp": "tonal", "am_tone": "tonal",
          "harmonic_stack": "tonal", "square_wave": "tonal", "white_noise": "noise", "pink_noise": "noise",
          "click_train": "pulsed", "tone_bursts": "pulsed"}
FRAMES, BINS = 96, old.num_mel_bins


class Regrouped(torch.utils.data.Dataset):
    """Synthetic clips with their labels mapped to the coarse groups: items {"waveform", "target" (C,), "index"}."""

    fine_labels = SyntheticDataset.labels
    labels = tuple(sorted(set(GROUPS.values())))
    sampling_rate = SyntheticDataset.sampling_rate
    multi_label = False

    def __init__(self, size: int, seed: int):
        self.clips = SyntheticDataset(size, seed=seed, num_frames=FRAMES)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        item = self.clips[index]
        fine = self.fine_labels[int(item["target"].argmax())]
        target = np.zeros(len(self.labels), dtype=np.float32)
        target[self.labels.index(GROUPS[fine])] = 1.0
        return {**item, "target": target, "fine": fine}


train_set, eval_set = Regrouped(320, seed=100), Regrouped(150, seed=101)  # new seeds: clips the model never saw
id2label = dict(enumerate(Regrouped.labels))
C = len(id2label)
counts = np.sum([eval_set[i]["target"] for i in range(len(eval_set))], axis=0)
print(id2label, "held-out clips per class:", dict(zip(Regrouped.labels, counts.astype(int))))
assert set(GROUPS) == set(SyntheticDataset.labels), "every synthetic class must be given a group"
assert counts.sum() == len(eval_set) and FRAMES < old.max_length

# %% [markdown]
# ## 2 · Adapting the model, by hand
#
# Two things change. **The head**: the old `Linear(D → C_old)` scores classes that no longer exist;
# a new `Linear(D → C)` starts from the initialisation a fresh model would get. **The positions**:
# 96 frames give a shorter patch grid, and the learned position embeddings were laid out on the old
# one. AST's rule (the original `src/models/ast_models.py`, in `adapt_position_embeddings`): a shorter
# axis is *cut from the middle*, a longer one is bilinearly *interpolated*. Everything else — the
# patch projection, the tokens, every block — is copied unchanged.

# %%
new_config = old.replace(max_length=FRAMES, id2label=id2label)
(f0, t0), (f1, t1) = (old.frequency_out_dimension, old.time_out_dimension), (new_config.frequency_out_dimension, new_config.time_out_dimension)
print(f"patch grid {f0} x {t0} -> {f1} x {t1}")

torch.manual_seed(SEED)
adapted = ast_min.ASTForAudioClassification(new_config)  # a fresh model: its head is the new head
state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("classifier.")}
pos = state["audio_spectrogram_transformer.embeddings.position_embeddings"]  # (1, 2 + f0·t0, D)
grid = pos[0, 2:].reshape(f0, t0, -1)  # (f0, t0, D): patches are frequency-major
start = t0 // 2 - t1 // 2
by_hand = torch.cat([pos[0, :2], grid[:, start : start + t1].reshape(f1 * t1, -1)])[None]  # (1, 2 + f1·t1, D)
assert torch.equal(by_hand, adapt_position_embeddings(pos, (f0, t0), (f1, t1)))
state["audio_spectrogram_transformer.embeddings.position_embeddings"] = by_hand
missing = adapted.load_state_dict(state, strict=False).missing_keys
head = sorted(k for k in adapted.state_dict() if k.startswith("classifier."))
assert head and sorted(missing) == head, missing  # exactly the head was not copied, and it exists

# The library does the same in one call: from_pretrained(..., max_length=, id2label=).
library = ast_min.ASTForAudioClassification.from_pretrained(DEFAULT_MODEL, max_length=FRAMES, id2label=id2label)
assert list(adapted.state_dict()) == list(library.state_dict()), "the two models name different tensors"
for (name, a), (_, b) in zip(adapted.state_dict().items(), library.state_dict().items(), strict=True):
    if not name.startswith("classifier.dense"):  # the new head is random in both: only its shape must agree
        assert torch.equal(a, b), name
    assert a.shape == b.shape, name
print("by hand == from_pretrained(max_length, id2label), apart from the random new head")

# %% [markdown]
# What the position embeddings look like before and after: each cell's colour is the cosine
# similarity of that patch position's embedding to one reference position (the middle of the grid).
# Cutting keeps the embeddings it keeps exactly; interpolating makes new ones between old neighbours,
# which preserves meaning only as far as neighbouring embeddings are alike. For comparison, the last
# panel interpolates to a *longer* clip.

# %%
def similarity_map(position_embeddings, f, t, ref):
    grid = position_embeddings[0, 2:].reshape(f, t, -1)  # (f, t, D)
    return F.cosine_similarity(grid, grid[ref][None, None], dim=-1)  # (f, t)


longer = adapt_position_embeddings(pos, (f0, t0), (f0, 2 * t0))  # (1, 2 + f0·2t0, D): interpolated
panels = [(similarity_map(pos, f0, t0, (f0 // 2, t0 // 2)), f"pretrained, {f0} x {t0}"),
          (similarity_map(by_hand, f1, t1, (f0 // 2, t0 // 2 - start)), f"cut to {f1} x {t1} ({FRAMES} frames)"),
          (similarity_map(longer, f0, 2 * t0, (f0 // 2, t0)), f"interpolated to {f0} x {2 * t0}")]
fig, axes = plt.subplots(1, 3, figsize=(15, 2.8), gridspec_kw={"width_ratios": [t0, t1, 2 * t0]})
for ax, (image, title) in zip(axes, panels, strict=True):
    shown = ax.imshow(image, origin="lower", cmap="viridis", vmin=-1, vmax=1)
    ax.set_title(title); ax.set_xlabel("time patch")
axes[0].set_ylabel("frequency patch")
plt.tight_layout()
fig.colorbar(shown, ax=axes, label="cosine similarity to the reference position", pad=0.01)
# The cut keeps the middle columns; the reference position keeps its similarity 1.
assert torch.allclose(panels[1][0], panels[0][0][:, start : start + t1])

# %% [markdown]
# ## 3 · The data
#
# The original recipes normalise each dataset by its own statistics (`compute_norm_stats`: the mean
# over clips of each clip's mean and standard deviation of the log-mel), then `(x - mean) / (2 std)`.

# %%
waveforms = [train_set[i]["waveform"] for i in range(0, len(train_set), 4)]
mean, std = ast_min.compute_norm_stats(waveforms, num_mel_bins=BINS, max_length=FRAMES)
raw_extractor = ast_min.ASTFeatureExtractor(num_mel_bins=BINS, max_length=FRAMES, do_normalize=False)
raw = raw_extractor(waveforms, sampling_rate=16000, return_tensors="pt").input_values.double()  # (B, T, F) log-mel
by_hand = raw.mean(dim=(1, 2)).mean().item(), raw.std(dim=(1, 2)).mean().item()
print(f"mean {mean:.4f}, std {std:.4f}")
assert np.allclose((mean, std), by_hand, atol=1e-4)
extractor = ast_min.ASTFeatureExtractor(num_mel_bins=BINS, max_length=FRAMES, mean=mean, std=std)

# %% [markdown]
# **SpecAugment** (Park et al. 2019) hides one band of mel bins and one run of frames, each of a
# width drawn uniformly below `freqm` / `timem`, so the model cannot lean on any single band or
# moment. Which value fills the mask? The original recipe masks the log-mel *before* normalising,
# with 0 (torchaudio's default). ast-min's training pipeline masks the *normalised* features, so to
# train the same way it fills with the value a log-mel of 0 becomes after normalisation:
# (0 − mean) / (2 std). That is not "silence": a log-mel of 0 (power 1) is louder than the average
# bin here, so the masks look like bright stripes. Filling the normalised features with 0 instead
# would mask with the *average* log-mel — a different augmentation from the one the published
# checkpoints were trained with. Below: the original's order by hand, against the library's
# `Collator`, which draws each clip's masks from its own generator `default_rng([seed, epoch, index, 1])`.

# %%
FREQM, TIMEM = 16, 24
collate = Collator(extractor, train=True, freqm=FREQM, timem=TIMEM, seed=SEED)
collate.set_epoch(1)
item = train_set[1]
batch = collate([item])  # the library: features, normalisation, masks

rng = np.random.default_rng([SEED, 1, item["index"], 1])  # stage 1: the masks (stage 0 is mixup, 2 noise)
f_width = int(rng.integers(0, FREQM)); f_start = int(rng.integers(0, BINS - f_width))
t_width = int(rng.integers(0, TIMEM)); t_start = int(rng.integers(0, FRAMES - t_width))
log_mel = raw_extractor([item["waveform"]], sampling_rate=16000, return_tensors="pt").input_values[0]  # (T, F)
masked = log_mel.clone()
masked[:, f_start : f_start + f_width] = 0.0  # the original: mask the log-mel with 0 ...
masked[t_start : t_start + t_width, :] = 0.0
masked = (masked - mean) / (2 * std)  # ... then normalise
fill = (0.0 - mean) / (2 * std)
print(f"masks: {f_width} bins from {f_start}, {t_width} frames from {t_start}; fill value {fill:.3f} (normalised), "
      f"feature mean {float(batch['input_values'].mean()):.3f}")
assert torch.allclose(batch["input_values"][0], masked, atol=1e-5)
assert math.isclose(collate.mask_value, fill, rel_tol=1e-9)
assert fill > 0  # log-mel 0 lies above this data's mean log-mel: the masks are brighter than average

normalised = extractor([item["waveform"]], sampling_rate=16000, return_tensors="pt").input_values[0]
zero_filled = spec_augment(normalised, np.random.default_rng([SEED, 1, item["index"], 1]), FREQM, TIMEM, value=0.0)[0]
fig, axes = plt.subplots(1, 3, figsize=(14, 3), sharey=True)
vmin, vmax = float(normalised.min()), float(normalised.max())
for ax, image, title in zip(axes, [normalised, batch["input_values"][0], zero_filled],
                            ["normalised features", f"pipeline: fill {fill:.2f} (= log-mel 0)", "fill 0 (= the mean log-mel)"], strict=True):
    shown = ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
    ax.set_title(title); ax.set_xlabel("frame")
axes[0].set_ylabel("mel bin")
plt.tight_layout()
fig.colorbar(shown, ax=axes, label="normalised log-mel", pad=0.01)

# %% [markdown]
# **Mixup** (Zhang et al. 2018) as the AST recipes use it mixes *waveforms*, not spectrograms. Each
# waveform first has its own mean removed (the original's data loader subtracts it; with different
# DC offsets the mix would otherwise carry a mixed offset), then `λ·(x − x̄) + (1 − λ)·(y − ȳ)` with
# `λ ~ Beta(10, 10)` (close to half and half), and the labels are mixed with the same weights. This
# chapter's runs leave mixup off (the task is small); the recipes for AudioSet use it.

# %%
x, y = train_set[1], train_set[3]
lam = 0.6
mixed, target = mixup(x["waveform"], x["target"], y["waveform"], y["target"], lam)
by_hand = lam * (x["waveform"] - x["waveform"].mean()) + (1 - lam) * (y["waveform"] - y["waveform"].mean())
assert np.allclose(mixed, by_hand, atol=1e-6) and np.allclose(target, lam * x["target"] + (1 - lam) * y["target"])
print(x["fine"], "+", y["fine"], "->", {id2label[c]: round(float(target[c]), 2) for c in np.flatnonzero(target)})

# %% [markdown]
# ## 4 · Checks before training
#
# The batches of every run below come from the same sampler and collator as the library's `train()`:
# a seeded shuffle per epoch (`DistributedSampler` with one replica), then features, normalisation and
# SpecAugment.

# %%
BATCH = 16


def make_loader(dataset, epoch, train=True):
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=train, seed=SEED)
    sampler.set_epoch(epoch)
    collate = Collator(extractor, train=train, freqm=FREQM if train else 0, timem=TIMEM if train else 0, seed=SEED)
    collate.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH if train else 2 * BATCH, sampler=sampler, collate_fn=collate)


first_batch = next(iter(make_loader(train_set, epoch=1)))
print({k: tuple(v.shape) for k, v in first_batch.items() if torch.is_tensor(v)})

# %% [markdown]
# **The loss at initialisation.** The new head is initialised with small weights, so its logits start
# near 0 and the softmax near uniform: the cross-entropy of any target should then be
# −log(1/C) = ln C. Much higher means the head starts confidently wrong (a bad initialisation or a
# scale bug); much lower means the labels leak.

# %%
with torch.no_grad():
    logits = adapted.eval()(first_batch["input_values"]).logits  # (B, C)
loss0 = F.cross_entropy(logits, first_batch["targets"]).item()
print(f"loss at init {loss0:.4f}, ln C = ln {C} = {math.log(C):.4f}; logit std {logits.std().item():.3f}")
assert abs(loss0 - math.log(C)) < 0.1  # logits of std s add about s²/2 to ln C; the head's init gives s well under 0.3

# %% [markdown]
# **Overfit one batch.** A model that cannot drive the loss on 16 fixed clips to ~0 has a bug in its
# loop (a detached loss, a frozen parameter, a learning rate of 0) — cheaper to find here than after
# an hour of training.

# %%
model = copy.deepcopy(adapted).train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
overfit = []
for step in range(80):
    loss = F.cross_entropy(model(first_batch["input_values"]).logits, first_batch["targets"])
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    overfit.append(loss.item())
print(f"one batch: loss {overfit[0]:.3f} -> {overfit[-1]:.4f} in {len(overfit)} steps")
assert overfit[-1] < 0.05 * overfit[0]  # twenty times below the start: memorised

# %% [markdown]
# **A learning-rate range test** (Smith 2017): train from the starting weights while the learning rate
# grows geometrically each step, and plot the loss against it. The loss falls once the rate is large
# enough to learn, then explodes when it is too large; a safe peak rate sits about ten times below the
# minimum of the (smoothed) curve.

# %%
model = copy.deepcopy(adapted).train()
optimizer = torch.optim.Adam(model.parameters(), lr=1.0, weight_decay=5e-7, betas=(0.95, 0.999))
rates = np.geomspace(1e-6, 1.0, 60)
range_losses = []
batches = itertools.chain.from_iterable(make_loader(train_set, epoch) for epoch in itertools.count(1))  # fresh batches
for lr in rates:
    batch = next(batches)
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = F.cross_entropy(model(batch["input_values"]).logits, batch["targets"])
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    range_losses.append(loss.item())
smooth = np.convolve(range_losses, np.ones(5) / 5, mode="valid")  # 5-step moving average
lr_at_min = rates[2:-2][np.argmin(smooth)]
LR = float(f"{lr_at_min / 10:.0e}")  # one significant digit
print(f"smoothed loss lowest at lr {lr_at_min:.1e}: peak lr for the runs below {LR:.0e}")
plt.figure(figsize=(6, 3))
plt.semilogx(rates, range_losses, ".", alpha=0.4, label="loss per step")
plt.semilogx(rates[2:-2], smooth, label="5-step mean")
plt.axvline(LR, color="k", ls=":", label=f"chosen peak lr {LR:.0e}")
plt.ylim(0, 3 * math.log(C)); plt.xlabel("learning rate"); plt.ylabel("cross-entropy"); plt.legend()
plt.tight_layout()
assert smooth[-1] > smooth.min()  # the loss rose again at the largest rates: the range covered the edge

# %% [markdown]
# ## 5 · The training loop
#
# One optimiser step, written out: the learning rate for this step (a linear warm-up, since Adam's
# early updates are noisy and a fresh head sends large gradients into pretrained layers), the forward
# pass under autocast when a GPU offers bf16 (AMP; fp16 would also need a `GradScaler` to keep small
# gradients from underflowing — `train()` has one), the loss in fp32, the backward pass, gradient
# clipping by the global norm, and the Adam step. Adam with weight decay 5e-7 and betas
# (0.95, 0.999) are the original recipes' settings. Each epoch reseeds torch as `train()` does, so
# the two runs below draw identically.

# %%
AMP_DTYPE = torch.bfloat16 if DEVICE == "cuda" and torch.cuda.is_bf16_supported() else None
EPOCHS, WARMUP = 4, 20


def fit(model, epochs=EPOCHS, lr=LR, warmup=WARMUP, max_grad_norm=None):
    """Train `model` in place; returns per-step records and per-epoch mean training losses."""
    model.to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-7, betas=(0.95, 0.999))
    step, steps, epoch_losses = 0, [], []
    for epoch in range(1, epochs + 1):
        torch.manual_seed(SEED * 100_003 + epoch)  # what train() does each epoch (dropout draws)
        model.train()
        losses = []
        for batch in make_loader(train_set, epoch):
            rate = lr * min(1.0, (step + 1) / warmup)  # linear warm-up, then constant (no decay in this short run)
            for group in optimizer.param_groups:
                group["lr"] = rate
            with torch.autocast(DEVICE, dtype=AMP_DTYPE or torch.float32, enabled=AMP_DTYPE is not None):
                logits = model(batch["input_values"].to(DEVICE)).logits  # (B, C)
            loss = F.cross_entropy(logits.float(), batch["targets"].to(DEVICE))  # soft targets allowed (mixup)
            loss.backward()
            # The global gradient norm; with a finite max_grad_norm the gradients are scaled down to it.
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps.append({"step": step, "epoch": epoch, "lr": rate, "loss": loss.item(), "grad_norm": norm.item()})
            losses.append(loss.item())
            step += 1
        epoch_losses.append(float(np.mean(losses)))
    return steps, epoch_losses


recipe = get_recipe("synthetic").replace(
    max_length=FRAMES, num_mel_bins=BINS, norm_mean=mean, norm_std=std, epochs=EPOCHS, batch_size=BATCH, lr=LR,
    warmup_steps=WARMUP, lr_decay_start=EPOCHS, freqm=FREQM, timem=TIMEM, mixup=0.0,
)
# The warm-up by hand equals the library's schedule for every step of the run.
steps_per_epoch = math.ceil(len(train_set) / BATCH)
assert all(math.isclose(LR * min(1.0, (s + 1) / WARMUP), learning_rate(recipe, s, 1 + s // steps_per_epoch))
           for s in range(EPOCHS * steps_per_epoch))

by_hand_model = copy.deepcopy(adapted)
steps, hand_epoch_losses = fit(by_hand_model)
print(f"{len(steps)} steps; epoch mean losses {[round(v, 4) for v in hand_epoch_losses]}")

# %% [markdown]
# The library's `train()` from the same starting weights: it loads them with `from_pretrained`
# (`RunOptions.init`), which keeps the head since the labels are the same, and runs the same
# schedule, batches and optimiser. It does not clip gradients (neither does the original recipe), so
# the hand-written loop ran with clipping off (`max_grad_norm=None`); the figure shows where a
# threshold of 1 would have cut in.

# %%
work = Path(tempfile.mkdtemp())
adapted.save_pretrained(work / "start")
extractor.save_pretrained(work / "start")
summary = train(recipe, train_set, eval_set, RunOptions(output_dir=str(work / "run"), init=str(work / "start"), seed=SEED,
                                                        progress=False), feature_extractor=extractor)
library_losses = [h["train_loss"] for h in summary["history"]]
print("library epoch losses:", [round(v, 4) for v in library_losses])
weight_gap = max((a.cpu() - b.cpu()).abs().max().item() for a, b in zip(by_hand_model.state_dict().values(), summary["model"].state_dict().values()))
print(f"largest weight difference after {len(steps)} steps: {weight_gap:.1e}")

# %%
# Same operations in the same order on the same data. On a CPU in fp32 that is the same arithmetic;
# a margin of float rounding (~1e-7 relative per step) compounded over the run is allowed. On a GPU,
# bf16 autocast and reductions whose order may vary let the runs drift apart by rounding, so there
# only the loss curves are compared, loosely.
assert len(hand_epoch_losses) == len(library_losses) == EPOCHS, (hand_epoch_losses, library_losses)  # allclose([], []) is True
if DEVICE == "cpu":
    assert np.allclose(hand_epoch_losses, library_losses, atol=1e-4) and weight_gap < 1e-3
else:
    assert np.allclose(hand_epoch_losses, library_losses, atol=5e-2)

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3))
left.plot([s["loss"] for s in steps], lw=0.8, label="hand-written loop, per step")
left.plot([(e + 0.5) * steps_per_epoch for e in range(EPOCHS)], library_losses, "o", label="train(), epoch means")
left.set_xlabel("step"); left.set_ylabel("cross-entropy"); left.legend()
right.semilogy([s["grad_norm"] for s in steps], lw=0.8)
right.axhline(1.0, color="k", ls=":", label="a clip threshold of 1")
right.set_xlabel("step"); right.set_ylabel("global gradient norm"); right.legend()
plt.tight_layout()
clipped = sum(s["grad_norm"] > 1.0 for s in steps)
print(f"{clipped} of {len(steps)} steps had a gradient norm above 1")

# %% [markdown]
# ## 6 · Evaluation
#
# The paper's metrics, by hand and by `ast_min.metrics` (which calls scikit-learn, as the original
# does): accuracy of the top class; per-class ROC AUC, here by its definition — the chance that a
# random positive outranks a random negative; and the confusion matrix, with the labels read from
# the fine-tuned model's config.

# %%
@torch.no_grad()
def scores_of(model, dataset):
    model.eval().to(DEVICE)
    logits, targets = [], []
    for batch in make_loader(dataset, epoch=0, train=False):
        logits.append(model(batch["input_values"].to(DEVICE)).logits.float().cpu())
        targets.append(batch["targets"])
    return torch.softmax(torch.cat(logits), -1).numpy(), torch.cat(targets).numpy()


model = summary["model"]
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
scores, targets = scores_of(model, eval_set)
accuracy = np.mean(scores.argmax(1) == targets.argmax(1))
pos, neg = scores[targets[:, 0] == 1, 0], scores[targets[:, 0] == 0, 0]
auc0 = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
result = metrics.compute_metrics(scores, targets)
from sklearn.metrics import roc_auc_score  # noqa: E402

assert np.isclose(auc0, roc_auc_score(targets[:, 0], scores[:, 0])) and np.isclose(result["accuracy"], accuracy)
assert np.isclose(result["accuracy"], summary["history"][-1]["eval_accuracy"])  # train()'s own evaluation agrees
print({k: round(v, 3) for k, v in result.items()})

matrix = metrics.confusion_matrix(scores, targets)
by_hand = np.zeros((len(labels), len(labels)), int)
for t, p in zip(targets.argmax(1), scores.argmax(1)):
    by_hand[t, p] += 1
assert np.array_equal(matrix, by_hand) and matrix.sum() == len(eval_set)  # every held-out clip, once
plt.figure(figsize=(4.8, 3.5))
plt.imshow(matrix, cmap="Blues")
plt.colorbar(label="held-out clips")
plt.xticks(range(len(labels)), labels); plt.yticks(range(len(labels)), labels)
plt.xlabel("predicted"); plt.ylabel("true"); plt.title(f"held-out confusion matrix, accuracy {accuracy:.1%}")
for (i, j), v in np.ndenumerate(matrix):
    plt.text(j, i, v, ha="center", va="center", color="k" if v < matrix.max() / 2 else "w")

# %% [markdown]
# **What the pretrained start bought.** The same loop, the same data and schedule, from random
# weights (the same architecture, freshly initialised). Two more numbers belong next to the two
# accuracies: the *majority-class baseline*, what answering the most frequent group for every clip
# scores on this held-out set (the groups are not balanced: most synthetic classes are tonal), and
# the remark that the comparison flatters the pretrained start. The new task regroups the very
# classes the default model was trained on, so its features already separate them; fine-tuning only
# has to read them out again under new names. On sounds it never learnt, a pretrained start buys less.

# %%
torch.manual_seed(SEED)
scratch = ast_min.ASTForAudioClassification(new_config)
scratch_steps, _ = fit(scratch)
scratch_scores, scratch_targets = scores_of(scratch, eval_set)
scratch_accuracy = np.mean(scratch_scores.argmax(1) == scratch_targets.argmax(1))
assert np.isclose(metrics.accuracy(scratch_scores, scratch_targets), scratch_accuracy)
majority = counts.max() / counts.sum()  # always answer the most frequent group
print(f"held-out accuracy after {EPOCHS} epochs: fine-tuned {accuracy:.1%}, from scratch {scratch_accuracy:.1%}, "
      f"always '{Regrouped.labels[int(counts.argmax())]}' (the majority class) {majority:.1%}")
print(f"from scratch is {scratch_accuracy - majority:+.1%} from the majority baseline, fine-tuned {accuracy - majority:+.1%}")
assert 0 < majority < 1 and accuracy > majority  # a fine-tuned model that cannot beat the constant answer learnt nothing
plt.figure(figsize=(6, 3))
plt.plot([s["loss"] for s in steps], lw=0.8, label="from the default model")
plt.plot([s["loss"] for s in scratch_steps], lw=0.8, label="from random weights")
plt.xlabel("step"); plt.ylabel("training loss"); plt.legend()

# %% [markdown]
# ## 7 · Where the fine-tuned model looks, and how to tell
#
# Chapter 02 drew attention maps and attention rollout (Abnar & Zuidema 2020) for a model with random
# weights, and found that they trace the sound anyway: a map that survives random weights reflects the
# input, not the model (Adebayo et al., NeurIPS 2018, "Sanity Checks for Saliency Maps"). So a
# fine-tuned model's map must be read against two things: the same measure on random weights, and
# maps computed from the input alone. Two measures, both computed here by hand:
#
# - **attention rollout**: multiply the layers' head-averaged maps, each mixed half-and-half with the
#   identity for the residual connection, and read the [CLS] row;
# - **gradient-weighted relevance** (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
#   Explainability"): weight each layer's attention by the gradient of the predicted class's logit
#   with respect to it, keep the positive part, average the heads, and accumulate R ← R + Ā R from the
#   identity; read the [CLS] row. Through the gradient it depends on the weights and on the class.

# %%
def rollout(attentions):
    """attentions: per layer (B, H, L, L). Returns (B, L, L): how much each token draws on each input token."""
    L = attentions[0].shape[-1]
    result = torch.eye(L).expand(attentions[0].shape[0], L, L)
    for A in attentions:
        A = 0.5 * A.mean(1) + 0.5 * torch.eye(L)  # heads averaged, residual path added
        result = (A / A.sum(-1, keepdim=True)) @ result
    return result


def relevance(net, features):
    """Gradient-weighted relevance of every token for the predicted class: (B, L, L), row 0 the [CLS] token's."""
    out = net(features, output_attentions=True)  # the eager backend's maps are in the autograd graph
    predicted = out.logits.argmax(-1)
    grads = torch.autograd.grad(out.logits.gather(1, predicted[:, None]).sum(), out.attentions)
    L = out.attentions[0].shape[-1]
    result = torch.eye(L).expand(len(features), L, L)
    for A, G in zip(out.attentions, grads, strict=True):
        result = result + (G * A).clamp(min=0).mean(1) @ result  # (B, L, L): heads averaged, positive part
    return result.detach()


cfg = model.config
eager = ast_min.ASTForAudioClassification.from_pretrained(work / "run" / "last", attn_implementation="eager").eval()
picks = [next(i for i in range(len(eval_set)) if eval_set[i]["fine"] == name) for name in ("click_train", "rising_chirp", "tone_bursts")]
x = extractor([eval_set[i]["waveform"] for i in picks], sampling_rate=16000, return_tensors="pt").input_values  # (3, T, F)
with torch.no_grad():
    out = eager(x, output_attentions=True)
    assert torch.allclose(out.logits, model.cpu()(x).logits, atol=1e-5)  # eager maps, same model as trained
R = rollout(out.attentions)
assert torch.allclose(R.sum(-1), torch.ones(()), atol=1e-5)  # each row still a distribution
Rel = relevance(eager, x)
f, t = cfg.frequency_out_dimension, cfg.time_out_dimension
extent = (0, cfg.max_length, 0, cfg.num_mel_bins)


def unit(m):
    """A map scaled to [0, 1] within its panel, so that one colour bar reads every panel."""
    m = m - m.min()
    return m / m.max() if m.max() > 0 else m


columns = 3 + cfg.num_attention_heads
fig, axes = plt.subplots(len(picks), columns, figsize=(18, 2.3 * len(picks)), layout="constrained")
for row, i in enumerate(picks):
    predicted = cfg.id2label[int(out.logits[row].argmax())]
    spectrogram = axes[row, 0].imshow(x[row].T, origin="lower", aspect="auto", cmap="magma", extent=extent)
    axes[row, 0].set_title(f"{eval_set[i]['fine']} -> {predicted}", fontsize=9)
    maps = [(R[row, 0, 2:], "rollout, [CLS]"), (Rel[row, 0, 2:], "relevance, [CLS]")]
    maps += [(out.attentions[-1][row, h, 0, 2:], f"last layer, head {h}") for h in range(cfg.num_attention_heads)]
    for column, (m, title) in enumerate(maps, start=1):
        panel = axes[row, column].imshow(unit(m.reshape(f, t)), origin="lower", aspect="auto", cmap="viridis", extent=extent, vmin=0, vmax=1)
        axes[row, column].set_title(title, fontsize=9)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(spectrogram, ax=axes[:, 0], location="left", label="input_values")
fig.colorbar(panel, ax=axes[:, 1:], label="map, scaled to 0–1 per panel")

# %% [markdown]
# Now the checks, on 48 held-out clips. For each measure, the maps of the fine-tuned model and of three
# independently initialised random models of the same shape; each number is the mean over clips of the
# correlation (Pearson, over the f × t patches) between two maps:
#
# 1. fine-tuned vs random weights: Adebayo's *model randomisation test* (low: the map must change when
#    the weights are randomised);
# 2. random vs another random initialisation (low: weights that learnt nothing should not agree on a
#    map; if they do, the input is drawing it);
# 3. and 4. random weights vs chapter 02's input-only maps, the patch mean and the *salience* (how far
#    each patch's features rise above their mel band's median over the clip: the band's steady
#    background removed) (low: a random model's map should not be a picture of the input).
#
# A measure passes when every one is below 0.2 in absolute value: under 4 % of one map's variance
# explained by the other. The verdicts are printed below the numbers; the comparison after them uses a
# measure that passes (the cell asserts it).

# %%
def pool(images):
    """(B, T, F) -> (B, f, t): each patch's mean, on the model's grid (frequency rows, as the tokens)."""
    return F.avg_pool2d(images.transpose(1, 2)[:, None], cfg.patch_size, stride=(cfg.frequency_stride, cfg.time_stride))[:, 0]


def patch_salience(features):
    """(B, T, F) -> (B, f, t): each patch's mean of the features above their band's median over time."""
    return pool(features - features.median(dim=1, keepdim=True).values)


def mean_correlation(maps_a, maps_b):
    """Mean over clips of the Pearson correlation of two (B, f, t) stacks of maps."""
    assert len(maps_a) == len(maps_b) > 0, (len(maps_a), len(maps_b))
    return float(np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(np.asarray(maps_a), np.asarray(maps_b), strict=True)]))


# %%
features = extractor([eval_set[i]["waveform"] for i in range(48)], sampling_rate=16000, return_tensors="pt").input_values
inputs_only = {"patch mean": pool(features), "salience": patch_salience(features)}
randoms = []
for seed in range(3):
    torch.manual_seed(SEED + seed)
    randoms.append(ast_min.ASTForAudioClassification(new_config).eval())
    randoms[-1].set_attn_implementation("eager")
measures = {
    "rollout": lambda net: rollout(net(features, output_attentions=True).attentions)[:, 0, 2:].reshape(-1, f, t).detach(),
    "relevance": lambda net: relevance(net, features)[:, 0, 2:].reshape(-1, f, t),
}
checks, maps = {}, {}
for name, measure in measures.items():
    trained_maps, random_maps = measure(eager), [measure(net) for net in randoms]
    maps[name] = (trained_maps, random_maps)
    checks[name] = {
        "fine-tuned vs random": np.mean([mean_correlation(trained_maps, r) for r in random_maps]),
        "random vs random": np.mean([mean_correlation(a, b) for a, b in itertools.combinations(random_maps, 2)]),
        **{f"random vs {k}": np.mean([mean_correlation(r, v) for r in random_maps]) for k, v in inputs_only.items()},
    }
passes = {name: all(abs(v) < 0.2 for v in c.values()) for name, c in checks.items()}
for name, c in checks.items():
    print(f"{name:>9}: " + ", ".join(f"{k} {v:+.2f}" for k, v in c.items()) + f"  -> {'passes' if passes[name] else 'fails'}")
assert passes["relevance"], checks["relevance"]  # the measure the comparison below uses

# %% [markdown]
# The comparison, with the measure that passes: does the fine-tuned model's relevance follow the
# salient patches more than random weights' does? The same number for each model: the mean over the
# clips of the correlation between its map and the salience. Treat the answer with care even so: a
# relevance map says which patches the predicted class's score depends on through attention, not
# *why*; a model may also read the gaps between events, which matter for telling pulsed sounds from
# steady ones (Jain & Wallace 2019, "Attention is not explanation", on reading attention as reasons).

# %%
trained_maps, random_maps = maps["relevance"]
following = {"fine-tuned": mean_correlation(trained_maps, inputs_only["salience"]),
             **{f"random weights #{k}": mean_correlation(r, inputs_only["salience"]) for k, r in enumerate(random_maps)}}
print("mean correlation of the relevance with the salience:", {k: round(v, 3) for k, v in following.items()})
more = following["fine-tuned"] > max(v for k, v in following.items() if k.startswith("random"))
print(f"the fine-tuned model's relevance follows the salient patches {'more' if more else 'no more'} than any random model's")
assert all(np.isfinite(v) for v in following.values()) and more, following

# %% [markdown]
# ## 8 · (Optional) the real AudioSet checkpoint
#
# If you have the released AST-Base checkpoint (`MIT/ast-finetuned-audioset-10-10-0.4593`, a Hugging
# Face directory) and `transformers`' test sample locally, point the environment variables
# `AST_MIN_REAL_CHECKPOINT` and `AST_MIN_REAL_SAMPLE` at them (the same ones the opt-in test reads):
# this cell then classifies the sample and draws its rollout over the 12 × 101 patch grid. Without
# them it is skipped; nothing is downloaded.

# %%
checkpoint_dir, sample = os.environ.get("AST_MIN_REAL_CHECKPOINT"), os.environ.get("AST_MIN_REAL_SAMPLE")
if checkpoint_dir and sample and os.path.exists(checkpoint_dir) and os.path.exists(sample):
    real = ast_min.ASTForAudioClassification.from_pretrained(checkpoint_dir, attn_implementation="eager").eval()
    real_extractor = ast_min.ASTFeatureExtractor.from_pretrained(checkpoint_dir)
    clip = real_extractor(ast_min.load_audio(sample), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        real_out = real(clip, output_attentions=True)
    # transformers' integration test for this checkpoint and sample quotes these first three logits.
    torch.testing.assert_close(real_out.logits[0, :3], torch.tensor([-0.8760, -7.0042, -8.6602]), atol=1e-4, rtol=0)
    probabilities = torch.sigmoid(real_out.logits[0])  # AudioSet is multi-label: a sigmoid per class
    for p, c in zip(*probabilities.topk(5)):
        print(f"{p:.3f}  {real.config.id2label[int(c)]}")
    rc = real.config
    real_rollout = rollout(real_out.attentions)[0, 0, 2:].reshape(rc.frequency_out_dimension, rc.time_out_dimension)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    shown = top.imshow(clip[0].T, origin="lower", aspect="auto", cmap="magma", extent=(0, rc.max_length, 0, rc.num_mel_bins))
    fig.colorbar(shown, ax=top, label="input_values")
    shown = bottom.imshow(real_rollout, origin="lower", aspect="auto", cmap="viridis", extent=(0, rc.max_length, 0, rc.num_mel_bins))
    fig.colorbar(shown, ax=bottom, label="rollout weight")
    bottom.set_title("attention rollout, [CLS] (run the checks of section 7 before reading it)"); bottom.set_xlabel("frame")
else:
    print("skipped: set AST_MIN_REAL_CHECKPOINT (a local MIT/ast-finetuned-audioset-10-10-0.4593 directory) and "
          "AST_MIN_REAL_SAMPLE (an audio file) to run this cell")

# %% [markdown]
# ## Now you try
#
# - `ast-min assignment start finetune`: write SpecAugment's fill value and masks, the position
#   embeddings for 64-frame clips, the new head and a training loop of your own, then
#   `ast-min assignment check finetune`.
# - Change `FRAMES` to 256: the position embeddings are then interpolated rather than cut. Does the
#   fine-tuned accuracy change?
# - Turn on mixup (`mixup=0.5` in the recipe, and a `MixupDataset` in `make_loader`) and compare the
#   held-out accuracy after the same number of epochs.
# - Repeat the learning-rate range test from random weights: where does its minimum move?
