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
# 4. one attention head, then a whole transformer block,
# 5. the full model loaded from a checkpoint, down to the logits,
# 6. where the [CLS] token looks: its attention over the spectrogram, and attention rollout.
#
# Shape legend: B batch, T frames, F mel bins, f × t patch grid, P = f·t patches, L = P + 2 tokens,
# D hidden size, H heads, Dh head dim.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

import ast_min
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
plt.colorbar()
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
# Drawn on the first few frames and all bins, every patch of the first three columns: the overlaps
# show as the darker bands where two outlines cross.

# %%
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(x[0, : 2 * st_ + p + st_].T, origin="lower", aspect="auto", cmap="gray")  # three columns and a margin
colors = plt.cm.tab10.colors
for j in range(3):
    for i in range(f):
        ax.add_patch(Rectangle((j * st_ - 0.5, i * sf_ - 0.5), p, p, fill=False, lw=1.5, color=colors[(i + j) % 10]))
ax.set_xlabel("frame")
ax.set_ylabel("mel bin")
ax.set_title(f"{p} x {p} patches, stride ({sf_}, {st_}): each overlaps its neighbours by ({p - sf_}, {p - st_})")
plt.show()

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
    ax.imshow(sim, origin="lower", aspect="auto", cmap="viridis")
    ax.plot(j, i, "r+", ms=12)
    ax.set_title(f"cosine similarity to cell ({i}, {j})")
    ax.set_xlabel("time patch")
axes[0].set_ylabel("frequency patch")
plt.show()

# %% [markdown]
# ## 4 · One attention head, then a block
#
# A block is pre-norm: `x + Attn(LN(x))`, then `x + MLP(LN(x))`. In attention (Vaswani et al.
# 2017, eq. 1) every token's query is compared with every token's key,
# `softmax(q kᵀ / √Dh)`, and the result weights the values. Head `h` owns the slice
# `[h·Dh, (h+1)·Dh)` of the projections.

# %%
block = model.audio_spectrogram_transformer.layers[0]
attn = block.attention
H, Dh = config.num_attention_heads, config.head_dim
z = F.layer_norm(h0, (config.hidden_size,), block.layernorm_before.weight, block.layernorm_before.bias, config.layer_norm_eps)
torch.testing.assert_close(z, block.layernorm_before(h0))

h = min(3, H - 1)  # one head
sl = slice(h * Dh, (h + 1) * Dh)
q = z @ attn.query.weight[sl].T + attn.query.bias[sl]  # (B, L, Dh)
k = z @ attn.key.weight[sl].T + attn.key.bias[sl]
v = z @ attn.value.weight[sl].T + attn.value.bias[sl]
scores = q @ k.transpose(1, 2) / Dh**0.5  # (B, L, L)
probs = scores.softmax(dim=-1)  # each row: how much one token attends to every token
head_out = probs @ v  # (B, L, Dh)

_, maps = attn(z, "eager", output_attentions=True)  # (B, H, L, L)
torch.testing.assert_close(probs, maps[:, h], atol=1e-6, rtol=1e-5)
print("head", h, "attention", tuple(probs.shape), "rows sum to 1:", torch.allclose(probs.sum(-1), torch.ones(1)))

# %% [markdown]
# All heads side by side, then the output projection, give the module's output; the backends
# (`eager`, `sdpa`, and the Triton kernel on a GPU) all compute this same function.

# %%
heads = []
for hh in range(H):
    s = slice(hh * Dh, (hh + 1) * Dh)
    qh, kh, vh = (z @ lin.weight[s].T + lin.bias[s] for lin in (attn.query, attn.key, attn.value))
    heads.append((qh @ kh.transpose(1, 2) / Dh**0.5).softmax(-1) @ vh)  # (B, L, Dh)
attended = torch.cat(heads, dim=-1) @ attn.output.weight.T + attn.output.bias  # (B, L, D)
torch.testing.assert_close(heads[h], head_out)
for backend in ("eager", "sdpa"):
    torch.testing.assert_close(attended, attn(z, backend)[0], atol=1e-4, rtol=1e-4)

# the rest of the block: residual, LayerNorm, MLP with exact (erf) GELU, residual
x1 = h0 + attended
mlp_in = block.layernorm_after(x1)
x2 = x1 + (F.gelu(mlp_in @ block.mlp.fc1.weight.T + block.mlp.fc1.bias) @ block.mlp.fc2.weight.T + block.mlp.fc2.bias)
torch.testing.assert_close(x2, block(h0, "eager")[0], atol=1e-4, rtol=1e-4)
print("block 0 by hand == ast_min's Block")

# %% [markdown]
# ## 5 · The whole model, down to the logits
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
# ## 6 · Where does [CLS] look?
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

fig, axes = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
extent = [0, config.max_length, 0, config.num_mel_bins]
axes[0].imshow(x[0].T, origin="lower", aspect="auto", cmap="magma", extent=extent)
axes[0].set_title("spectrogram")
for ax, m, title in [(axes[1], last_cls, "[CLS] attention, last layer"), (axes[2], rollout_cls, "attention rollout")]:
    ax.imshow(x[0].T, origin="lower", aspect="auto", cmap="gray", extent=extent)
    ax.imshow(m, origin="lower", aspect="auto", cmap="jet", alpha=0.5, extent=extent)
    ax.set_title(title)
axes[2].set_xlabel("frame")
plt.show()

# %% [markdown]
# With trained weights the rollout concentrates on the sound events (the clicks, the tone onset);
# with random weights it is diffuse. Chapter 03 fine-tunes a model, so you can compare.
