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
# # Assignment `attention` · Multi-head self-attention and a pre-norm block, from raw weights
#
# Chapter 02 (`notebooks/02_patches_and_transformer.py`, §[Attention, from the weights up])
# computes one head by hand and then calls the library. Here you write the whole layer
# from the raw weight tensors of a Hugging Face AST checkpoint, named as in its layer
# `audio_spectrogram_transformer.encoder.layer.{i}.` (Linear weights are (out, in): y = x W^T + b):
#
#     attention.attention.query.weight / .bias      (D, D), (D,)
#     attention.attention.key.weight / .bias
#     attention.attention.value.weight / .bias
#     attention.output.dense.weight / .bias          the output projection
#     layernorm_before.weight / .bias                (D,): LayerNorm before attention
#     intermediate.dense.weight / .bias              (4D, D): MLP, first layer, then exact (erf) GELU
#     output.dense.weight / .bias                    (D, 4D): MLP, second layer
#     layernorm_after.weight / .bias                 (D,): LayerNorm before the MLP
#
# 1. `split_heads(x, num_heads)`: (B, L, D) -> (B, H, L, Dh), head h holding features
#    [h*Dh, (h+1)*Dh): a view then a transpose.
# 2. `merge_heads(x)`: (B, H, L, Dh) -> (B, L, D), the inverse.
# 3. `self_attention(x, weights, num_heads)`: (B, L, D) -> (B, L, D): project q, k, v, split heads,
#    softmax(q k^T / sqrt(Dh)) v per head, merge, output projection.
# 4. `block(x, weights, num_heads, eps=1e-12)`: a pre-norm block, x + Attn(LN(x)), then
#    x + MLP(LN(x)) (LayerNorm with eps, over the last dimension).
#
# torch only (`torch.nn.functional.layer_norm`, `softmax` and `gelu` are fine); the grader refuses
# code that calls ast-min's model or torch's fused attention. Then run
# `ast-min assignment check attention`.
#
# Shape legend: B batch, L tokens, D hidden size, H heads, Dh = D / H.

# %%
import math

import torch
import torch.nn.functional as F


# %%
def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, H, L, Dh)."""
    ### BEGIN SOLUTION
    B, L, D = x.shape
    return x.view(B, L, num_heads, D // num_heads).transpose(1, 2)
    ### END SOLUTION


# %%
def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, Dh) -> (B, L, H*Dh)."""
    ### BEGIN SOLUTION
    B, H, L, Dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * Dh)
    ### END SOLUTION


# %%
def self_attention(x: torch.Tensor, weights: dict[str, torch.Tensor], num_heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, L, D): multi-head self-attention with the checkpoint's weights."""
    ### BEGIN SOLUTION
    def linear(t, name):
        return t @ weights[name + ".weight"].T + weights[name + ".bias"]

    q = split_heads(linear(x, "attention.attention.query"), num_heads)  # (B, H, L, Dh)
    k = split_heads(linear(x, "attention.attention.key"), num_heads)
    v = split_heads(linear(x, "attention.attention.value"), num_heads)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    attended = scores.softmax(dim=-1) @ v  # (B, H, L, Dh)
    return linear(merge_heads(attended), "attention.output.dense")
    ### END SOLUTION


# %%
def block(x: torch.Tensor, weights: dict[str, torch.Tensor], num_heads: int, eps: float = 1e-12) -> torch.Tensor:
    """(B, L, D) -> (B, L, D): x + Attn(LN(x)), then x + MLP(LN(x))."""
    ### BEGIN SOLUTION
    D = x.shape[-1]
    before = F.layer_norm(x, (D,), weights["layernorm_before.weight"], weights["layernorm_before.bias"], eps)
    x = x + self_attention(before, weights, num_heads)
    after = F.layer_norm(x, (D,), weights["layernorm_after.weight"], weights["layernorm_after.bias"], eps)
    hidden = F.gelu(after @ weights["intermediate.dense.weight"].T + weights["intermediate.dense.bias"])
    return x + hidden @ weights["output.dense.weight"].T + weights["output.dense.bias"]
    ### END SOLUTION


# %% [markdown]
# Try your functions here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    x = torch.randn(1, 5, 8)
    print(split_heads(x, 2).shape, torch.equal(merge_heads(split_heads(x, 2)), x))
