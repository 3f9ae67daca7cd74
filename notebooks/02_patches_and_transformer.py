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
# # 02 · From a log-mel image to logits, by hand
#
# Chapter 01 turned audio into a log-mel spectrogram `input_values` of shape (T, F): T frames of
# F mel bins (the sizes are printed below, from the model's config).
# This chapter follows that image through the Audio Spectrogram Transformer (Gong, Chung & Glass,
# *AST: Audio Spectrogram Transformer*, Interspeech 2021, section 2), building each piece by hand
# and checking it against `ast_min` before moving on:
#
# 1. cutting the spectrogram into overlapping square patches (stride smaller than the patch),
# 2. projecting each patch — by `unfold` and a matrix product, and by the convolution checkpoints store,
# 3. the [CLS] and distillation tokens and the position embeddings on the f × t patch grid,
# 4. AST's central idea: starting from an ImageNet vision transformer (DeiT), by collapsing its RGB
#    patch kernel to one channel and fitting its position grid to the spectrogram's,
# 5. attention, from the weights up: LayerNorm, the linear maps, the heads, the softmax, GELU —
#    a whole transformer block,
# 6. the full model loaded from a checkpoint, down to the logits,
# 7. where the [CLS] token looks: its attention over the spectrogram, and attention rollout.
#
# Shape legend: B batch, T frames, F mel bins, f × t patch grid, P = f·t patches, L = P + 2 tokens,
# D hidden size, H heads, Dh head dim.

# %%
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

import ast_min
from ast_min import kernels
from ast_min.checkpoint import adapt_position_embeddings
from ast_min.model import patchify

torch.manual_seed(0)
torch.set_grad_enabled(False)  # inference only in this chapter

# %% [markdown]
# ## A model to look at
#
# We need weights. We build a model with AST-Base's geometry — `ASTConfig`'s defaults: the input
# size, patch size and strides (hence the patch grid), the width and the number of heads — but only
# a few layers and freshly initialised (random) weights, save it as a Hugging Face checkpoint and
# load it back, exactly as a downloaded checkpoint would be. (The package's small trained default
# model is cut down to a smaller input, so its grid would not be AST's.) Everything below holds for
# any weights; only the pictures are more telling with trained ones.

# %%
n_layers = 4  # AST-Base has 12; a few keep this chapter fast on a CPU
random_model = ast_min.ASTForAudioClassification(ast_min.ASTConfig(num_hidden_layers=n_layers, num_labels=10))
checkpoint = Path(tempfile.mkdtemp()) / f"ast-random-{n_layers}-layers"
random_model.save_pretrained(checkpoint)  # ViT's random initialisation

model = ast_min.ASTForAudioClassification.from_pretrained(checkpoint, attn_implementation="eager")
config = model.config
assert config.max_length == ast_min.ASTConfig().max_length  # AST-Base's input ...
assert config.num_mel_bins == ast_min.ASTConfig().num_mel_bins
print(f"input (T, F) = ({config.max_length}, {config.num_mel_bins}); "
      f"D = {config.hidden_size}, H = {config.num_attention_heads} heads, {config.num_hidden_layers} layers")

# %% [markdown]
# ## The input: a synthetic sound and its log-mel image
#
# A rising chirp, a steady tone that starts half way, and three clicks — shapes that are easy
# to spot in a spectrogram. The feature extractor (chapter 01) gives the normalised log-mel image.

# %%
extractor = ast_min.ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)  # AudioSet's statistics
sr = extractor.sampling_rate
t = np.arange(int(8.0 * sr)) / sr
sound = 0.3 * np.sin(2 * np.pi * (200 * t + 300 * t**2))  # chirp, 200 Hz rising
sound += 0.2 * np.sin(2 * np.pi * 1000 * t) * (t > 4)  # tone from 4 s
for c in (1.0, 2.5, 6.0):  # clicks
    sound[int(c * sr) : int(c * sr) + 80] += 0.8
sound = sound.astype(np.float32)

x = extractor(sound, sampling_rate=sr, return_tensors="pt").input_values  # (1, T, F)
print("input_values", tuple(x.shape))

plt.figure(figsize=(12, 3))
plt.imshow(x[0].T, origin="lower", aspect="auto", cmap="magma")
plt.xlabel("frame (10 ms)")
plt.ylabel("mel bin")
plt.title(f"input_values: {len(sound) / sr:g} s of sound as {config.max_length} frames (padded or cut) x {config.num_mel_bins} mel bins")
plt.colorbar(label="input_values (normalised log-mel)")
plt.show()

# %% [markdown]
# ## 1 · Patches
#
# AST treats the spectrogram as an image with frequency as height: (B, 1, F, T). It cuts
# p × p patches every s_f bins and every s_t frames; the strides are smaller than the patch, so
# neighbouring patches overlap — the paper's ablation found that overlap helps (section 3.1.3;
# the model in section 2.1 overlaps by 6). The f × t grid size is plain arithmetic:

# %%
p, sf_, st_ = config.patch_size, config.frequency_stride, config.time_stride
print(f"{p} x {p} patches, strides ({sf_}, {st_}): neighbours overlap by {p - sf_} bins and {p - st_} frames")
f = (config.num_mel_bins - p) // sf_ + 1
t_ = (config.max_length - p) // st_ + 1
print(f"{f} x {t_} = {f * t_} patches, {f * t_ + 2} tokens")
assert (f, t_) == (config.frequency_out_dimension, config.time_out_dimension)

# %% [markdown]
# Drawn on the first few frames and all bins, every patch of the first three columns, each a
# translucent square: where two patches overlap their colours stack, so the overlaps show as the
# denser bands.

# %%
first_bin_left_out = (f - 1) * sf_ + p  # the last patch row covers bins up to here, exclusive
first_frame_left_out = (t_ - 1) * st_ + p  # the last patch column covers frames up to here, exclusive
fig, ax = plt.subplots(figsize=(7, 6))
image = ax.imshow(x[0, : 2 * st_ + p + st_].T, origin="lower", aspect="auto", cmap="gray")  # three columns and a margin
fig.colorbar(image, ax=ax, label="input_values")
colors = plt.cm.tab10.colors
for j in range(3):
    for i in range(f):
        ax.add_patch(Rectangle((j * st_ - 0.5, i * sf_ - 0.5), p, p, fc=colors[(i + j) % 10], alpha=0.3, ec=colors[(i + j) % 10], lw=1.5))
ax.axhspan(first_bin_left_out - 0.5, config.num_mel_bins - 0.5, fc="none", ec="red", hatch="///", lw=0)
ax.text(1, first_bin_left_out - 3, f"bins {first_bin_left_out}–{config.num_mel_bins - 1}: in no patch", color="red", fontsize=9, va="top",
        bbox=dict(fc="white", ec="none", alpha=0.8))
ax.set_xlabel("frame")
ax.set_ylabel("mel bin")
ax.set_title(f"{p} x {p} patches, stride ({sf_}, {st_}):\neach overlaps its neighbours by ({p - sf_}, {p - st_})")
plt.show()
print(f"left out of every patch: mel bins {first_bin_left_out}..{config.num_mel_bins - 1} and frames "
      f"{first_frame_left_out}..{config.max_length - 1}")

# %% [markdown]
# The grid does not reach the image's far edges. The last row of patches starts at bin (f − 1)·s_f and
# ends p bins later, short of the top (the hatched band above); the last column of patches ends short
# of the last frame the same way. Those bins and frames (printed above: the top of the frequency range,
# and the last 80 ms of the 10.24 s window) are in no patch, so the model never sees them: change them
# and not one output of the patch embedding moves.

# %%
x_edges = x.clone()
x_edges[:, first_frame_left_out:, :] += 5.0  # the frames past the last patch column
x_edges[:, :, first_bin_left_out:] += 5.0  # the bins above the last patch row
assert first_bin_left_out < config.num_mel_bins and first_frame_left_out < config.max_length  # AST-Base leaves edges out
assert torch.equal(model.audio_spectrogram_transformer.embeddings.patch_embeddings(x_edges),
                   model.audio_spectrogram_transformer.embeddings.patch_embeddings(x))
assert not torch.equal(x_edges, x)

# %% [markdown]
# `unfold(dim, size, step)` is exactly this cut: unfold frequency, then time, giving a
# (B, f, t, p, p) view; flattening patch rows first (frequency-major) numbers patch (i, j) as
# `i * t + j`. Check a few patches against slicing the spectrogram by hand:

# %%
spec = x.transpose(1, 2)  # (B, F, T)
patches = spec.unfold(1, p, sf_).unfold(2, p, st_)  # (B, f, t, p, p)
patches = patches.reshape(1, f * t_, p * p)  # (B, P, p*p)
for i, j in [(0, 0), (0, 1), (1, 0), (f - 1, t_ - 1), (f // 2, t_ // 2)]:
    by_hand = spec[0, i * sf_ : i * sf_ + p, j * st_ : j * st_ + p].reshape(-1)
    assert torch.equal(patches[0, i * t_ + j], by_hand)
assert torch.equal(patches, patchify(x, p, sf_, st_))  # ast_min.model.patchify does the same
print("patches", tuple(patches.shape))

# %% [markdown]
# ## 2 · Patch embedding: a linear layer, or a convolution
#
# Each flattened patch (p² numbers) is mapped to D by one shared linear layer. A convolution
# with a p × p kernel and stride (s_f, s_t) computes the same dot products in one call — that is
# how checkpoints store it (`projection.weight` of shape (D, 1, p, p)). Flattening the kernel
# the same way as the patches turns it into the linear layer's matrix:

# %%
pe = model.audio_spectrogram_transformer.embeddings.patch_embeddings
W = pe.projection.weight.flatten(1)  # (D, 1, p, p) -> (D, p*p)
print(f"patch embedding: {p * p} numbers per patch -> D = {W.shape[0]}")
by_unfold = patches @ W.T + pe.projection.bias  # (B, P, D)
by_conv = F.conv2d(spec.unsqueeze(1), pe.projection.weight, pe.projection.bias, stride=(sf_, st_))  # (B, D, f, t)
by_conv = by_conv.flatten(2).transpose(1, 2)  # (B, P, D), frequency-major like the patches
print("max |unfold - conv| =", (by_unfold - by_conv).abs().max().item())
torch.testing.assert_close(by_unfold, by_conv, atol=1e-4, rtol=1e-4)  # float32, sums of p*p products
torch.testing.assert_close(by_unfold, pe.forward_by_unfold(x))
torch.testing.assert_close(by_conv, pe(x))

# %% [markdown]
# ## 3 · Tokens and position embeddings
#
# AST starts from DeiT, which adds two learned tokens in front of the patches: [CLS] and a
# distillation token. AST keeps both and, at the end, averages their outputs. A transformer is
# blind to order, so each of the L positions gets a learned vector added — for the patches, one
# per cell of the f × t grid.

# %%
emb = model.audio_spectrogram_transformer.embeddings
B = x.shape[0]
tokens = torch.cat([emb.cls_token.expand(B, -1, -1), emb.distillation_token.expand(B, -1, -1), by_conv], dim=1)  # (B, L, D)
h0 = tokens + emb.position_embeddings
torch.testing.assert_close(h0, emb(x))
print("tokens", tuple(h0.shape))

# %% [markdown]
# The position embeddings of the patches, laid out on their f × t grid (its size printed below). Each panel colours
# every grid cell by how similar its embedding is (cosine) to one chosen cell's: in a trained model
# nearby cells look alike, which is what "position" has come to mean. (With random weights the
# panels are noise except for the chosen cell itself.)

# %%
grid = emb.position_embeddings[0, 2:].reshape(f, t_, -1)  # (f, t, D): row i, column j
print(f"position-embedding grid: {f} x {t_} cells of D = {grid.shape[-1]}")
fig, axes = plt.subplots(1, 3, figsize=(15, 2.5))
for ax, (i, j) in zip(axes, [(f // 6, t_ // 10), (f // 2, t_ // 2), (f - 1 - f // 6, t_ - 1 - t_ // 10)]):
    sim = F.cosine_similarity(grid, grid[i, j], dim=-1)  # (f, t)
    image = ax.imshow(sim, origin="lower", aspect="auto", cmap="viridis", vmin=-1, vmax=1)
    ax.plot(j, i, "r+", ms=12)
    ax.set_title(f"cosine similarity to cell ({i}, {j})")
    ax.set_xlabel("time patch")
axes[0].set_ylabel("frequency patch")
fig.colorbar(image, ax=axes, label="cosine similarity", pad=0.01)
plt.show()

# %% [markdown]
# ## 4 · From ImageNet to audio (paper section 2.2)
#
# AudioSet is small next to ImageNet, so AST does not start from random weights: it starts from DeiT
# (Touvron et al. 2021), a vision transformer trained on ImageNet at 384 × 384 pixels, with the same
# width, depth and heads as AST-Base and the same two tokens. Two of DeiT's tensors do not fit a
# spectrogram, and AST adapts them:
#
# - **The patch kernel** is (D, 3, 16, 16): one 16 × 16 filter per RGB channel. A spectrogram has one
#   channel. The paper's text says the three channels' weights are *averaged*; the original code
#   (`src/models/ast_models.py`) *sums* them. Summing is exactly "copy the spectrogram into all
#   three colour channels and run DeiT's kernel": the first layer sees what an RGB image of a grey
#   spectrogram would give. Averaging would give a third of that: the patch content a third as strong,
#   next to the bias and position embeddings, as DeiT was trained with. DeiT's stride is 16 (no
#   overlap); AST uses the same kernel with stride 10.
# - **The position embeddings** cover DeiT's 24 × 24 grid (384 / 16). AST's grid has fewer rows
#   (frequency patches) and many more columns (time patches): the time axis is bilinearly
#   interpolated to the new width, and the frequency axis is cut from the middle
#   (`adapt_position_embeddings`).
#
# No ImageNet weights are available offline here, so this section uses stand-ins of DeiT's shapes: a
# randomly initialised RGB kernel, and 2-D sine-cosine position embeddings (the fixed ones of MAE,
# He et al. 2022), smooth over the grid as learned embeddings are, so that the figures show what the
# adaptation does to a smooth grid. With the real DeiT weights the code is the same.

# %%
D = config.hidden_size
deit_image, deit_patch = 384, 16
deit_grid = deit_image // deit_patch  # 24 patches per side, stride 16
deit_kernel = torch.nn.init.trunc_normal_(torch.empty(D, 3, deit_patch, deit_patch), std=0.02)  # (D, RGB, 16, 16) stand-in
deit_bias = torch.zeros(D)

ast_kernel = deit_kernel.sum(dim=1, keepdim=True)  # (D, 1, 16, 16): the original code's rule
rgb_copy = spec.unsqueeze(1).expand(-1, 3, -1, -1)  # (B, 3, F, T): the spectrogram in all three channels
through_rgb = F.conv2d(rgb_copy, deit_kernel, deit_bias, stride=(sf_, st_))  # (B, D, f, t)
through_gray = F.conv2d(spec.unsqueeze(1), ast_kernel, deit_bias, stride=(sf_, st_))
torch.testing.assert_close(through_rgb, through_gray, atol=1e-4, rtol=1e-4)  # float32 sums of 3·256 products
averaged = F.conv2d(spec.unsqueeze(1), deit_kernel.mean(dim=1, keepdim=True), deit_bias, stride=(sf_, st_))
torch.testing.assert_close(averaged * 3, through_gray, atol=1e-4, rtol=1e-4)  # the paper's average: a third
assert ast_kernel.shape == pe.projection.weight.shape  # exactly the shape AST's patch projection stores
print(f"DeiT kernel {tuple(deit_kernel.shape)} -> AST kernel {tuple(ast_kernel.shape)}, stride 16 -> ({sf_}, {st_})")

# %%
def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """(n, dim): sines and cosines of position × geometric frequencies (Vaswani et al. 2017, section 3.5)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2) / (dim // 2))
    angles = torch.arange(n)[:, None] * omega[None]  # (n, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """(rows·cols, dim), row-major: half the channels encode the row, half the column."""
    r = sincos_1d(rows, dim // 2)[:, None].expand(rows, cols, dim // 2)
    c = sincos_1d(cols, dim // 2)[None, :].expand(rows, cols, dim // 2)
    return torch.cat([r, c], dim=-1).reshape(rows * cols, dim)


deit_pos = torch.cat([torch.zeros(2, D), sincos_2d(deit_grid, deit_grid, D)])[None]  # (1, 2 + 24·24, D)

# By hand, in the original's order: time (columns) first, then frequency (rows).
grid_img = deit_pos[:, 2:].transpose(1, 2).reshape(1, D, deit_grid, deit_grid)  # (1, D, rows = freq, cols = time)
assert t_ > deit_grid and f < deit_grid  # AST-Base: more time patches, fewer frequency patches than DeiT
wider = F.interpolate(grid_img, size=(deit_grid, t_), mode="bilinear", align_corners=False)  # (1, D, 24, t)
start = deit_grid // 2 - f // 2
cut = wider[:, :, start : start + f]  # (1, D, f, t): the middle rows
ast_pos = torch.cat([deit_pos[:, :2], cut.reshape(1, D, f * t_).transpose(1, 2)], dim=1)  # (1, 2 + f·t, D)
library_pos = adapt_position_embeddings(deit_pos, (deit_grid, deit_grid), (f, t_))
torch.testing.assert_close(ast_pos, library_pos)
assert ast_pos.shape == emb.position_embeddings.shape  # exactly the shape AST's embeddings store
print(f"position embeddings {tuple(deit_pos.shape)} ({deit_grid} x {deit_grid}) -> {tuple(ast_pos.shape)} ({f} x {t_})")

ref = (deit_grid // 2, deit_grid // 2)  # a reference cell in the middle of DeiT's grid ...
ref_after = (ref[0] - start, round((ref[1] + 0.5) * t_ / deit_grid - 0.5))  # ... and where it lands after
fig, (left, right) = plt.subplots(1, 2, figsize=(15, 3), gridspec_kw={"width_ratios": [1, 3.2]})
before = F.cosine_similarity(grid_img[0].permute(1, 2, 0), grid_img[0, :, ref[0], ref[1]], dim=-1)  # (24, 24)
after = F.cosine_similarity(cut[0].permute(1, 2, 0), cut[0, :, ref_after[0], ref_after[1]], dim=-1)  # (f, t)
left.imshow(before, origin="lower", cmap="viridis", vmin=-1, vmax=1); left.set_title(f"DeiT grid {deit_grid} x {deit_grid}")
left.axhspan(start - 0.5, start + f - 0.5, fill=False, ec="w", ls="--")  # the rows that are kept
image = right.imshow(after, origin="lower", aspect="auto", cmap="viridis", vmin=-1, vmax=1)
right.set_title(f"AST grid {f} x {t_}: rows cut, columns interpolated")
for ax in (left, right):
    ax.set_xlabel("time patch")
left.set_ylabel("frequency patch")
plt.tight_layout()
fig.colorbar(image, ax=(left, right), label="cosine similarity to the reference cell", pad=0.01)
plt.show()

# %% [markdown]
# Each panel colours a cell by its embedding's cosine similarity to one reference cell (the same
# point of the image before and after). The dashed band on the left marks the rows that are kept;
# on the right the same neighbourhood is stretched over about four times as many columns — nearby
# time patches now share nearly the same position vector, and fine-tuning on audio has to teach the
# model the new resolution.
#
# ## 5 · Attention, from the weights up
#
# A block is pre-norm: `x + Attn(LN(x))`, then `x + MLP(LN(x))`. Each piece, built from tensors and
# the block's weights, then compared with the library's module.
#
# **LayerNorm** normalises each token over its D features, then scales and shifts per feature:
# `(x − mean) / √(var + eps) · γ + β`, with the biased variance (÷ D) as the checkpoints were trained.

# %%
block = model.audio_spectrogram_transformer.layers[0]
attn = block.attention
H, Dh = config.num_attention_heads, config.head_dim
B, L = h0.shape[:2]


def layer_norm(x, norm):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased: divided by D
    return (x - mean) / torch.sqrt(var + config.layer_norm_eps) * norm.weight + norm.bias


z = layer_norm(h0, block.layernorm_before)  # (B, L, D)
torch.testing.assert_close(z, block.layernorm_before(h0), atol=1e-5, rtol=1e-5)

# %% [markdown]
# **The linear maps and the heads.** The model has three separate linear maps, query, key and value,
# each `z Wᵀ + b` from D to D. Head `h` owns the slice `[h·Dh, (h+1)·Dh)` of each output; instead of
# slicing H times, view the last axis as (H, Dh) and move the heads in front: (B, L, D) →
# (B, L, H, Dh) → (B, H, L, Dh). That is the layout `ast_min.kernels.flash_attention` takes, and `transpose`
# makes it without a copy (the strides change; chapter 03's kernel reads through them).

# %%
def linear(x, layer):
    return x @ layer.weight.T + layer.bias


def split_heads(x):
    return x.view(B, L, H, Dh).transpose(1, 2)  # (B, L, D) -> (B, H, L, Dh), a view


q, k, v = (split_heads(linear(z, layer)) for layer in (attn.query, attn.key, attn.value))  # (B, H, L, Dh) each
h = min(3, H - 1)  # one head: the view is the slice
torch.testing.assert_close(q[:, h], linear(z, attn.query)[..., h * Dh : (h + 1) * Dh])
torch.testing.assert_close(linear(z, attn.query), attn.query(z), atol=1e-5, rtol=1e-5)
print("q, k, v:", tuple(q.shape), "contiguous:", q.is_contiguous(), "strides:", q.stride())

# %% [markdown]
# **Scores and the softmax.** Every token's query meets every token's key, `q kᵀ / √Dh` (Vaswani et
# al. 2017, eq. 1), and each row goes through a softmax. Subtracting the row maximum first changes
# nothing mathematically (it cancels in the ratio) but keeps `exp` from overflowing.

# %%
def softmax(s):
    e = torch.exp(s - s.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


scores = q @ k.transpose(-2, -1) / Dh**0.5  # (B, H, L, L)
probs = softmax(scores)  # each row: how much one token attends to every token
torch.testing.assert_close(probs, torch.softmax(scores, dim=-1))
_, maps = attn(z, "eager", output_attentions=True)  # the module's own maps (B, H, L, L)
torch.testing.assert_close(probs, maps, atol=1e-6, rtol=1e-5)
heads = probs @ v  # (B, H, L, Dh)
torch.testing.assert_close(heads, kernels.attention_math(q, k, v)[0], atol=1e-5, rtol=1e-5)  # the kernels' reference, same layout
print("attention maps", tuple(probs.shape), "rows sum to 1:", torch.allclose(probs.sum(-1), torch.ones(1)))

# %% [markdown]
# The heads go back side by side — (B, H, L, Dh) → (B, L, H, Dh) → (B, L, D) — and the output
# projection mixes them. The backends (`eager`, `sdpa`, and the Triton kernel on a GPU) all compute
# this same function.

# %%
merged = heads.transpose(1, 2).reshape(B, L, D)  # (B, L, D); reshape copies, as the transpose is not contiguous
attended = linear(merged, attn.output)  # (B, L, D)
for backend in ("eager", "sdpa"):
    torch.testing.assert_close(attended, attn(z, backend)[0], atol=1e-4, rtol=1e-4)

# %% [markdown]
# **The MLP and GELU.** The rest of the block: a residual, a second LayerNorm, and an MLP
# `D → 4D → D` with the exact GELU, `x · Φ(x) = ½ x (1 + erf(x / √2))` (Hendrycks & Gimpel 2016),
# then the second residual.

# %%
def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


x1 = h0 + attended
u = linear(layer_norm(x1, block.layernorm_after), block.mlp.fc1)  # (B, L, 4D)
torch.testing.assert_close(gelu(u), F.gelu(u), atol=1e-6, rtol=1e-6)
x2 = x1 + linear(gelu(u), block.mlp.fc2)
torch.testing.assert_close(x2, block(h0, "eager")[0], atol=1e-4, rtol=1e-4)
print("block 0 by hand == ast_min's Block")

# %% [markdown]
# ## 6 · The whole model, down to the logits
#
# Stack the blocks, apply the final LayerNorm, average the [CLS] and distillation outputs
# (`pooler_output`), and the head (LayerNorm + Linear) gives one logit per label. AudioSet is
# multi-label, so its scores are `sigmoid(logits)`, one independent probability per class.

# %%
hidden = h0
for blk in model.audio_spectrogram_transformer.layers:
    hidden = blk(hidden, "eager")[0]
hidden = model.audio_spectrogram_transformer.layernorm(hidden)
pooled = (hidden[:, 0] + hidden[:, 1]) / 2  # (B, D)
logits = model.classifier.dense(model.classifier.layernorm(pooled))  # (B, num_labels)

out = model(x, output_attentions=True)
torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=1e-4)
print("logits", tuple(logits.shape), "top labels:",
      [config.id2label[i] for i in out.logits[0].sigmoid().argsort(descending=True)[:3].tolist()])

# %% [markdown]
# The same checkpoint through Hugging Face `transformers` (when it is installed) gives the same
# logits — ast-min reads and writes its checkpoint format.

# %%
try:
    import transformers
except ImportError:
    transformers = None
if transformers is not None:
    reference = transformers.ASTForAudioClassification.from_pretrained(checkpoint).eval()
    torch.testing.assert_close(reference(x).logits, out.logits, atol=1e-4, rtol=1e-4)
    print("transformers agrees")

# %% [markdown]
# ## 7 · Where does [CLS] look?
#
# `output_attentions=True` returns every layer's maps (B, H, L, L). Row 0 is the [CLS] token's
# attention; its entries 2.. are over the patches, so they fold back onto the f × t grid and
# can be drawn over the spectrogram. A single layer shows only one hop, so *attention rollout*
# (Abnar & Zuidema 2020) multiplies the layers' head-averaged maps, each mixed half-and-half with
# the identity to account for the residual connection, and reads the [CLS] row of the product.

# %%
maps = torch.stack(out.attentions)[:, 0].mean(1)  # (layers, L, L): batch 0, heads averaged
last_cls = maps[-1, 0, 2:].reshape(f, t_)  # (f, t)

L = config.sequence_length
rollout = torch.eye(L)
for A in maps:
    A_res = 0.5 * A + 0.5 * torch.eye(L)
    A_res = A_res / A_res.sum(-1, keepdim=True)
    rollout = A_res @ rollout
assert torch.allclose(rollout.sum(-1), torch.ones(L), atol=1e-4)  # still a distribution per token
rollout_cls = rollout[0, 2:].reshape(f, t_)

# Two maps computed from the input alone, no model: each patch's mean input value, and each patch's
# rise above its mel band's median over the clip (chapter 04's "salience": the band's steady background
# removed). Both on the same f x t grid.
patch_mean = patches[0].mean(dim=-1).reshape(f, t_)  # (f, t); `patches` is frequency-major, as the tokens are
above_band = x[0] - x[0].median(dim=0, keepdim=True).values  # (T, F): each bin above its median over time
salience = F.avg_pool2d(above_band.T[None, None], p, stride=(sf_, st_))[0, 0]  # (f, t)

fig, axes = plt.subplots(5, 1, figsize=(12, 12), sharex=True)
extent = [0, config.max_length, 0, config.num_mel_bins]
image = axes[0].imshow(x[0].T, origin="lower", aspect="auto", cmap="magma", extent=extent)
fig.colorbar(image, ax=axes[0], label="input_values", pad=0.01)
axes[0].set_title("spectrogram")
rows = [(last_cls, "[CLS] attention, last layer (random weights)", "attention weight"),
        (rollout_cls, "attention rollout (random weights)", "rollout weight"),
        (patch_mean, "input only: each patch's mean value", "mean input_values"),
        (salience, "input only: each patch's rise above its band's median (chapter 04's salience)", "input_values above median")]
for ax, (m, title, label) in zip(axes[1:], rows, strict=True):
    ax.imshow(x[0].T, origin="lower", aspect="auto", cmap="gray", extent=extent)
    image = ax.imshow(m, origin="lower", aspect="auto", cmap="jet", alpha=0.5, extent=extent)
    fig.colorbar(image, ax=ax, label=label, pad=0.01)
    ax.set_title(title)
axes[-1].set_xlabel("frame")
plt.show()

# %% [markdown]
# These weights are random, and yet the rollout traces the chirp and the tone. That is not the model
# knowing anything: it is the lesson of *sanity checks for saliency maps* (Adebayo, Gilmer, Muelly,
# Goodfellow, Hardt & Kim, NeurIPS 2018). A map meant to show what a model relies on must change when
# the model's weights are randomised; a map that survives randomisation reflects the input, not the
# model. Here the weights are random to begin with, so the test is simply: how much of each map is
# the input? Compare each with the two maps computed from the input alone:

# %%
def correlation(a, b):
    return float(np.corrcoef(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0, 1])


checks = {name: {"patch mean": correlation(m, patch_mean), "salience": correlation(m, salience)}
          for name, m in (("[CLS] attention, last layer", last_cls), ("attention rollout", rollout_cls))}
for name, values in checks.items():
    print(f"{name:>28}, random weights: correlation with the input-only maps " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
# The claim of this section, checked: the random model's rollout is mostly the input's loudness.
assert checks["attention rollout"]["patch mean"] > 0.7 and checks["attention rollout"]["salience"] > 0.5, checks

# %% [markdown]
# The rollout of a model that has learnt nothing is, to a large extent, a picture of the patches'
# loudness. So a rollout that "follows the sound" proves nothing about a model by itself; it has to
# do better than the same measure on random weights, and the measure has to pass the check above
# first. Chapter 04 fine-tunes a trained model, runs these checks on its attention maps, and compares
# the fine-tuned model with random weights using a measure that passes them.
#
# ## Now you try
#
# - `ast-min assignment start patches`: cut the spectrogram into overlapping patches and project them,
#   by unfold and by convolution, then `ast-min assignment check patches`.
# - `ast-min assignment start attention`: write multi-head attention from the weights (heads by
#   view/transpose to (B, H, L, Dh)), then `ast-min assignment check attention`.
# - On your own: change `frequency_stride` and `time_stride` to 16 (no overlap). How many tokens are
#   left, and how much less attention work (it grows with L²) does the model do?
