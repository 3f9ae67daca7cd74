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
# # Assignment `patches` · Overlapping patches of any size and strides, and the patch embedding
#
# Chapter 02 (`notebooks/02_patches_and_transformer.py`, §[Patches] and
# §[Patch embedding: a linear layer, or a convolution]) cuts AST's 16 x 16 patches every 10 bins
# and 10 frames. Here you do it for **any** patch size p and strides, on a batch of spectrograms
# (B, T, F), in the layout `ast_min.model.patchify` uses:
#
# 1. `grid_size(num_frames, num_mel_bins, patch_size, frequency_stride, time_stride)`: the patch
#    grid (f, t), f = (F - p) // sf + 1 rows along frequency, t = (T - p) // st + 1 columns along time.
# 2. `patchify(input_values, patch_size, frequency_stride, time_stride)`: (B, T, F) -> (B, f*t, p*p).
#    Patch (i, j) covers mel bins [i*sf, i*sf + p) and frames [j*st, j*st + p). Patches are ordered
#    **frequency-major** (index i*t + j), and each patch is flattened frequency-major too (element
#    (bin b, frame c) of the patch at b*p + c), the order of a Conv2d weight (D, 1, p, p) over the
#    image (B, 1, F, T).
# 3. `patch_embed(input_values, weight, bias, frequency_stride, time_stride)`: (B, P, D), the
#    convolution with kernel `weight` (D, 1, p, p) and strides (sf, st), as patchify + matmul.
#
# torch only; the grader refuses code that calls ast-min's model or a convolution. Then run
# `ast-min assignment check patches`.
#
# Shape legend: B batch, T frames, F mel bins, p patch size, f x t patch grid, P = f*t, D hidden size.

# %%
import torch


# %%
def grid_size(num_frames: int, num_mel_bins: int, patch_size: int, frequency_stride: int, time_stride: int) -> tuple[int, int]:
    """The patch grid (f, t): rows along frequency, columns along time."""
    ### BEGIN SOLUTION
    f = (num_mel_bins - patch_size) // frequency_stride + 1
    t = (num_frames - patch_size) // time_stride + 1
    return f, t
    ### END SOLUTION


# %%
def patchify(input_values: torch.Tensor, patch_size: int, frequency_stride: int, time_stride: int) -> torch.Tensor:
    """(B, T, F) -> (B, f*t, p*p): patches in frequency-major order, each flattened frequency-major."""
    ### BEGIN SOLUTION
    spectrogram = input_values.transpose(1, 2)  # (B, F, T)
    patches = spectrogram.unfold(1, patch_size, frequency_stride)  # (B, f, T, p)
    patches = patches.unfold(2, patch_size, time_stride)  # (B, f, t, p_freq, p_time)
    B, f, t = patches.shape[:3]
    return patches.reshape(B, f * t, patch_size * patch_size)  # (B, P, p*p)
    ### END SOLUTION


# %%
def patch_embed(
    input_values: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, frequency_stride: int, time_stride: int
) -> torch.Tensor:
    """(B, T, F) -> (B, P, D): the strided convolution with `weight` (D, 1, p, p), as patchify + matmul."""
    ### BEGIN SOLUTION
    p = weight.shape[-1]
    patches = patchify(input_values, p, frequency_stride, time_stride)  # (B, P, p*p)
    return patches @ weight.reshape(weight.shape[0], p * p).T + bias  # (B, P, D)
    ### END SOLUTION


# %% [markdown]
# Try your functions here before checking (this cell runs in the notebook, not when graded).

# %%
if __name__ == "__main__":
    x = torch.arange(2 * 6 * 5, dtype=torch.float64).reshape(2, 6, 5)  # (B, T, F)
    print(grid_size(6, 5, 3, 2, 3), patchify(x, 3, 2, 3).shape)
