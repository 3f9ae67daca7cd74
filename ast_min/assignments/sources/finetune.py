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
# # Assignment `finetune` · Fine-tune the embedded model on new labels and a new clip length, by hand
#
# Chapter 04 (`notebooks/04_fine_tuning.py`, §[The data] and §[The training loop]) trains with
# `ast_min.train`. Here you write the pieces yourself and the grader runs them on
# ast-min's embedded default model (`ast_min/default_model`, trained on the synthetic sound events):
# it gets a new label set (four coarse kinds of sound, `LABELS` below) and shorter clips (64 frames
# instead of the model's own length), and must reach 85 % held-out accuracy.
#
# 1. `fill_value(mean, std)`: the value SpecAugment writes into masked cells of *normalised*
#    features. The original recipe masks the log-mel with 0 before normalising by
#    (x - mean) / (2 std); give the normalised value of that 0.
# 2. `apply_masks(features, freq_start, freq_width, time_start, time_width, value)`: a copy of the
#    (T, F) features with mel bins [freq_start, freq_start + freq_width) and frames
#    [time_start, time_start + time_width) set to `value` (the input stays untouched).
# 3. `adapt_positions(position_embeddings, old_grid, new_grid)`: (1, 2 + f*t, D) learned position
#    embeddings for the patch grid old_grid = (f, t) -> (1, 2 + f'*t', D) for new_grid, by the
#    original repository's rule: keep the two token rows; along time, then along frequency, cut a
#    shorter axis from the middle (start = old // 2 - new // 2) and bilinearly interpolate a longer
#    one (`torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`) on the grid
#    seen as a (1, D, f, t) image. The grid rows are frequency-major (index i*t + j).
# 4. `new_head(model, labels)`: give the model a fresh classifier for `labels` (LayerNorm then
#    Linear(D, C), small initial weights so that the loss at initialisation is close to ln C),
#    and set `model.config = model.config.replace(id2label=...)`. Return the model.
# 5. `train(model, features, labels, fill, seconds)`: your training loop (optimiser, batches,
#    SpecAugment with `apply_masks` and `fill`, cross-entropy), finishing within `seconds` on one
#    CPU thread. `model(x).logits` gives (B, C). Leave the model in eval mode.
#
# The grader adapts the model's position embeddings with your `adapt_positions`, calls your
# `new_head` (and checks the loss at initialisation), then your `train` (budget 60 s, one thread),
# and measures accuracy on held-out clips. Do not call `ast_min.train`, the library's
# `adapt_position_embeddings`, `spec_augment` or `from_pretrained`: they are what you write here.
# Then run `ast-min assignment check finetune`.
#
# Shape legend: N clips, T frames, F mel bins, f x t patch grid, D hidden size, C labels.

# %%
import time

import numpy as np
import torch
import torch.nn.functional as F

# The new label set: the synthetic sound classes grouped into four kinds.
LABELS = ("tonal", "sweep", "noise", "harmonic")


# %%
def fill_value(mean: float, std: float) -> float:
    """The normalised value of an un-normalised log-mel 0, under (x - mean) / (2 std)."""
    ### BEGIN SOLUTION
    return -mean / (2 * std)
    ### END SOLUTION


# %%
def apply_masks(features, freq_start, freq_width, time_start, time_width, value):
    """(T, F) -> masked copy: bins [freq_start, +freq_width) and frames [time_start, +time_width) set to value."""
    ### BEGIN SOLUTION
    out = features.clone()
    out[:, freq_start : freq_start + freq_width] = value
    out[time_start : time_start + time_width, :] = value
    return out
    ### END SOLUTION


# %%
def adapt_positions(position_embeddings, old_grid, new_grid):
    """(1, 2 + f*t, D) for old_grid (f, t) -> (1, 2 + f'*t', D) for new_grid: cut from the middle, or interpolate."""
    ### BEGIN SOLUTION
    (f, t), (nf, nt) = old_grid, new_grid
    D = position_embeddings.shape[2]
    tokens, grid = position_embeddings[:, :2], position_embeddings[:, 2:]
    grid = grid.transpose(1, 2).reshape(1, D, f, t)  # (1, D, f, t)
    if nt < t:
        start = t // 2 - nt // 2
        grid = grid[..., start : start + nt]
    elif nt > t:
        grid = F.interpolate(grid, size=(f, nt), mode="bilinear", align_corners=False)
    if nf < f:
        begin = f // 2 - nf // 2
        grid = grid[:, :, begin : begin + nf, :]
    elif nf > f:
        grid = F.interpolate(grid, size=(nf, nt), mode="bilinear", align_corners=False)
    return torch.cat([tokens, grid.reshape(1, D, nf * nt).transpose(1, 2)], dim=1)
    ### END SOLUTION


# %%
def new_head(model, labels):
    """A fresh LayerNorm + Linear(D, len(labels)) head and the new labels in model.config; returns the model."""
    ### BEGIN SOLUTION
    D = model.config.hidden_size
    head = torch.nn.Sequential(torch.nn.LayerNorm(D, eps=model.config.layer_norm_eps), torch.nn.Linear(D, len(labels)))
    torch.nn.init.trunc_normal_(head[1].weight, std=0.02)
    torch.nn.init.zeros_(head[1].bias)
    model.classifier = head
    model.config = model.config.replace(id2label=dict(enumerate(labels)))
    return model
    ### END SOLUTION


# %%
def train(model, features, labels, fill, seconds=60.0):
    """Fine-tune `model` on features (N, T, F) and labels (N,) within `seconds`; returns the model, in eval mode."""
    ### BEGIN SOLUTION
    started = time.monotonic()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    T, Fbins = features.shape[1:]
    model.train()
    for epoch in range(8):
        for batch in torch.randperm(len(features)).split(16):
            if time.monotonic() - started > 0.8 * seconds:
                break
            masked = []
            for i in batch.tolist():
                fw, tw = int(rng.integers(0, 8)), int(rng.integers(0, 8))
                fs, ts = int(rng.integers(0, Fbins - fw + 1)), int(rng.integers(0, T - tw + 1))
                masked.append(apply_masks(features[i], fs, fw, ts, tw, fill))
            loss = F.cross_entropy(model(torch.stack(masked)).logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
    ### END SOLUTION


# %% [markdown]
# Try your functions here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    print(fill_value(-4.27, 4.57))
    print(apply_masks(torch.zeros(4, 3), 1, 1, 2, 1, 9.0))
