# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · The kernel lab: why does this config spill, and what does it cost?
#
# Chapter 03 built the FlashAttention kernel and checked it on the CPU. This chapter is the loop a
# kernel experimenter runs, on a machine **without a GPU**, on one real question:
#
# > Compiled for an H100, the forward kernel with 128-row query blocks, 64-key blocks, 4 warps and
# > 3 pipeline stages was reported to use all 255 registers and to spill to local memory, and to
# > load its tiles without cp.async. Why, and does it matter?
#
# The loop: **predict** (on paper) → **inspect** what the compiler made (`ast_min.kernels.inspect`) →
# **model** the cost (`ast_min.kernels.cost`) → **change** one thing → **check** correctness (the
# interpreter) → **read the GPU table** if one was measured. Every prediction below is labelled as
# one, and written before the cell that checks it.
#
# Shapes: B batch, H heads, N tokens, Dh head dim; BM, BN the query and key block sizes.

# %%
import os
import subprocess
import sys

# This chapter compiles kernels for real GPUs (no GPU needed to compile): Triton must NOT be in
# interpreter mode when the kernel module is imported. The correctness check at the end runs the
# interpreter in a separate process instead.
os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning

from ast_min.kernels import cost, inspect, tuning, variants  # noqa: E402

AST = cost.Problem(dtype="bf16", **inspect.AST_SHAPE)  # AST's attention call: 12 heads x 1214 tokens x 64
print(AST)

# %% [markdown]
# ## 1. Predict, on paper
#
# One program of the forward kernel holds, per thread (4 warps = 128 threads), for BM = 128 and
# Dh = 64 in fp32: the output accumulator acc (128 x 64 / 128 = 64 registers), the score tile
# S = Q Kᵀ (128 x 64 / 128 = 64), its exponentials P (another 64 before they are cast), and on
# Ampere the Q tile as matmul operand. **Prediction:** around 200 or more registers of the 255 a
# thread may have: tight, but it need not spill. With 8 warps every per-thread share halves.
#
# **Prediction about the loads:** cp.async (LDGSTS) copies 4, 8 or 16 contiguous bytes from global to
# shared memory. It needs to know that consecutive head-dim elements are adjacent in memory, i.e. that
# the head-dim stride is 1. If the compiler cannot know that, it must load each 2-byte element on its
# own, through registers (LDG), which also costs registers.

# %% [markdown]
# ## 2. Inspect what the compiler made
#
# `ast_min.kernels.inspect` compiles a kernel for sm_90 through Triton's own argument binder, so it gets the
# specialisation a real launch gets: an integer argument equal to 1 (the head-dim stride of the
# model's q, k, v) becomes a compile-time constant. `unit_stride=False` compiles the generic code
# instead, every stride a runtime integer: what you get if you hand the compiler strides it cannot
# see, which is how the spill was first reported.

# %%
config = next(i for i, c in enumerate(tuning.FORWARD_GPU) if inspect.config_label(c) == "128x64 w4 s3")
real = inspect.inspect_one("standard", "forward", 0, config, AST, 90)
generic = inspect.inspect_one("standard", "forward", 0, config, AST, 90, unit_stride=False)
print(inspect.format_table([real, generic]))
print("real launch   :", real.registers, "registers, spill", real.spill_store_bytes, "B, LDGSTS", real.ldgsts, ", LDG", real.ldg)
print("generic stride:", generic.registers, "registers, spill", generic.spill_store_bytes, "B, LDGSTS", generic.ldgsts, ", LDG", generic.ldg)

# %% [markdown]
# The generic code is the one that spills (STL/LDL instructions: registers saved to and reloaded from
# local memory) and loads every element with its own LDG; the code a real launch runs does neither.
# That is why the launcher (`fused_attention.unit_last_stride`) copies any input whose head-dim
# stride is not 1: one copy of an unusual layout is cheaper than running the generic code.

# %%
assert generic.spills and not real.spills, (generic, real)
assert real.ldgsts > 0 and generic.ldgsts == 0  # cp.async only when rows are known contiguous

# %% [markdown]
# ## 3. What would a spill cost, and what does the block size cost? The model
#
# Registers decide how many programs share an SM (occupancy); the inspection prints it. The cost
# model (`kernels/cost.py`) prices the *block size*: every program re-reads all of K and V, so the
# number of query blocks sets the HBM traffic, while the warp count changes neither FLOPs nor bytes.
#
# **Prediction:** halving BM from 128 to 64 nearly doubles the bytes (19 query blocks instead of 10
# re-read K and V) and so nearly halves the arithmetic intensity; the FLOPs barely move (only the
# padding of the last block changes).

# %%
for bm in (128, 64):
    c = cost.forward(AST, bm, 64)
    print(f"BM {bm:3d}: {c.flops / 1e9:6.2f} GFLOP, {c.bytes / 1e6:6.1f} MB, {c.intensity:5.1f} FLOP/byte, "
          f"roofline H100 {c.roofline_seconds(cost.H100, 'bf16') * 1e6:5.0f} µs ({c.bound(cost.H100, 'bf16')}-bound, no reuse)")
print("programs per SM on H100:", real.programs_per_sm, f"(limited by {real.limited_by})")
c128, c64 = cost.forward(AST, 128, 64), cost.forward(AST, 64, 64)
assert 1.7 < c64.bytes / c128.bytes < 1.9

# %% [markdown]
# So the 128-row block is the one worth keeping, and a spill would be the price of its register
# appetite. The model assumes no reuse of K and V between programs; one head's K and V (2 x 155 KB)
# fit many times in an H100's L2, so on the card the kernel should be closer to compute-bound than
# this bound says. Only a measurement can settle that.
#
# ## 4. Change one thing: 8 warps
#
# **Prediction:** the same blocks with 8 warps halve every per-thread share, so even the generic
# code fits in the registers, at the price of one program per SM where registers allowed two.

# %%
config8 = next(i for i, c in enumerate(tuning.FORWARD_GPU) if inspect.config_label(c) == "128x64 w8 s3")
generic8 = inspect.inspect_one("standard", "forward", 0, config8, AST, 90, unit_stride=False)
print(inspect.format_table([generic, generic8]))
assert not generic8.spills and generic8.registers < generic.registers

# %% [markdown]
# ## 5. Check correctness: the interpreter
#
# A change to a kernel is not done until it passes the same tests as the original. In the lab, the
# cheapest check is one call against torch's SDPA in Triton's CPU interpreter (run in a separate
# process, because this notebook imported the kernels in compile mode). Here: a strided head dim
# (which the launcher now copies) and every registered backward variant.

# %%
BACKWARDS = [v.name for v in variants.variants("backward")]  # every registered backward variant
check = r"""
import sys
import torch, torch.nn.functional as F
from ast_min import kernels
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, 2, 37, 64, generator=g)[..., ::2].requires_grad_() for _ in range(3))  # head-dim stride 2
do = torch.randn(1, 2, 37, 32, generator=g)
ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
ref_grads = torch.autograd.grad(ref, (q, k, v), do.double())
for backward in sys.argv[1:]:
    o = kernels.flash_attention(q, k, v, backward=backward)
    grads = torch.autograd.grad(o, (q, k, v), do)
    err = max([(o - ref).abs().max().item()] + [(a - b).abs().max().item() for a, b in zip(grads, ref_grads, strict=True)])
    print(backward, err)
"""
result = subprocess.run([sys.executable, "-c", check, *BACKWARDS], capture_output=True, text=True,
                        env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
print(result.stdout, result.stderr[-2000:])
# A check that crashed printed nothing (or half) of what is parsed below: its exit status comes first,
# then every variant must have reported, so an empty or partial report cannot pass.
assert BACKWARDS, "no backward variant is registered: nothing to check"
assert result.returncode == 0, f"the interpreter check failed (exit status {result.returncode}):\n{result.stderr[-3000:]}"
errors = {name: float(err) for name, err in (line.split() for line in result.stdout.splitlines())}
assert sorted(errors) == sorted(BACKWARDS), f"expected one line per variant {BACKWARDS}, got {result.stdout!r}"
# IEEE fp32 against float64: rounding of order 1e-6 at these sizes (tests/test_kernels.py argues 2e-5).
assert all(e < 2e-5 for e in errors.values()), errors

# %% [markdown]
# ## 6. Read the GPU table
#
# `kernels/NOTES.md` keeps the measured table (card, date, command). Until someone runs
# `python -m ast_min.kernels.bench` on a GPU it says so, and the inspection and the model above are the
# evidence. `ast_min.kernels.bench` prints the model's roofline time beside each measurement, so a run shows
# at once how far from the floor each kernel lands.

# %%
notes = open(os.path.join(os.path.dirname(cost.__file__), "NOTES.md")).read()
measurements = notes[notes.index("## Measurements"):]
print(measurements)

# %% [markdown]
# ## Your turn
#
# The experimenter's loop is now yours: add a variant (`kernels/NOTES.md`, "How to add a kernel
# variant"), inspect it, cost it, test it. The course's Triton assignment starts from here:
#
#     ast-min assignment start triton
#
# and `ast-min assignment check triton` grades it.
