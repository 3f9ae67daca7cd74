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
import json
import math
import os
import subprocess
import sys

# This chapter compiles kernels for real GPUs (no GPU needed to compile): Triton must NOT be in
# interpreter mode when the kernel module is imported. The correctness check at the end runs the
# interpreter in a separate process instead.
os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning

import triton  # noqa: E402

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
# thread may have: tight, but it need not spill. With 8 warps (256 threads) each of those per-thread
# shares halves; section 4 checks what the compiler does with that.
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
# That is why the launcher (`tiles.unit_last_stride`) copies any input whose head-dim
# stride is not 1: one copy of an unusual layout is cheaper than running the generic code.

# %%
assert not real.error and not generic.error, (real.error, generic.error)  # a failed compile reports zeros everywhere
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
    print(f"BM {bm:3d}: {c.flops / 1e9:6.2f} GFLOP, {c.bytes / 1e6:6.1f} MB, {c.intensity:5.1f} FLOP/byte (tiles), "
          f"{AST.useful_flops() / c.bytes:5.1f} useful FLOP/byte, roofline H100 {c.roofline_seconds(cost.H100, 'bf16') * 1e6:5.0f} µs "
          f"({c.bound(cost.H100, 'bf16')}-bound, no reuse)")
print("programs per SM on H100:", real.programs_per_sm, f"(limited by {real.limited_by})")
c128, c64 = cost.forward(AST, 128, 64), cost.forward(AST, 64, 64)
assert 1.7 < c64.bytes / c128.bytes < 1.9
kv_kb = 2 * AST.N * AST.Dh * AST.element_bytes / 1e3  # one (clip, head)'s K and V
print(f"one (clip, head)'s K and V: {kv_kb:.0f} kB, re-read by {-(-AST.N // 128)} query blocks at BM 128")

# %% [markdown]
# Two intensities are printed per row. The first is the cost model's: FLOPs the tensor cores execute
# on whole tiles (padding included: 10 query blocks of 128 rows against 19 key blocks of 64 for
# N = 1214) over bytes that include the LSE. The second divides the *useful* FLOPs, 4·B·H·N²·Dh, the
# ones benchmarks count; chapter 03 (section 6) computes that one by hand and derives the first from
# it exactly. Neither is wrong: compare a measured TFLOP/s with the useful one, a roofline time with
# the tile one.
#
# So the 128-row block is the one worth keeping, and a spill would be the price of its register
# appetite. The model assumes no reuse of K and V between programs; one head's K and V (printed
# above) fit many times in an H100's L2, so on the card the kernel should be closer to compute-bound
# than this bound says. Only a measurement can settle that.
#
# ## 4. Change one thing: 8 warps
#
# **Prediction:** the same blocks with 8 warps give each thread half of every tile it held with 4, so
# the register count should roughly halve, for the code a real launch runs and for the generic code
# alike; the generic code would then stop spilling. (Occupancy need not improve: a program of 256
# threads at half the registers takes as much of the SM's register file as one of 128 at the full count.)

# %%
config8 = next(i for i, c in enumerate(tuning.FORWARD_GPU) if inspect.config_label(c) == "128x64 w8 s3")
real8 = inspect.inspect_one("standard", "forward", 0, config8, AST, 90)
generic8 = inspect.inspect_one("standard", "forward", 0, config8, AST, 90, unit_stride=False)
print(inspect.format_table([real, real8, generic, generic8]))
for name, four, eight in (("real launch", real, real8), ("generic stride", generic, generic8)):
    print(f"{name:>14}: {four.registers} -> {eight.registers} registers ({eight.registers / four.registers:.0%}), "
          f"spill {four.spill_store_bytes} -> {eight.spill_store_bytes} B, programs per SM {four.programs_per_sm} -> {eight.programs_per_sm}")

# %% [markdown]
# Half right. The code a real launch runs does halve (checked tightly below). The generic code stops
# spilling, but its register count barely moves. What did the compiler do with the room?
#
# `ptxas` reports the registers it *allocated*, not the fewest the code needs. The most a thread may
# have is still 255 with 256 threads per program (65,536 registers per SM / 256 = 256), the same
# limit as with 128 threads, and below that limit ptxas is free to keep values live — addresses, masks,
# loaded values waiting for the tensor cores — rather than recompute them when they are needed again.
# At 4 warps the generic code wanted more than 255 and spilled the excess to local memory; at 8 it
# fits, and ptxas spends what is left on keeping values. To measure the *need*, cap the registers:
# `triton.Config(..., maxnreg=...)` passes a limit to ptxas. **Prediction:** capped at about half of
# the 4-warp count plus its spill, the generic 8-warp code compiles without spilling, and executes more
# instructions (the recomputations the spare registers had saved).

# %%
need4 = generic.registers + generic.spill_store_bytes // 4  # what the 4-warp code wanted: its registers and the 4-byte words it spilled
cap = 8 * math.ceil(need4 / 2 / 8) + 8  # half of that, in ptxas' per-thread allocation unit of 8, plus one unit
capped_config = triton.Config(dict(tuning.FORWARD_GPU[config8].kwargs), num_warps=8, num_stages=3, maxnreg=cap)
capped8 = inspect.inspect_config("standard", "forward", 0, capped_config, AST, 90, unit_stride=False)
print(inspect.format_table([generic8, capped8]))
print(f"generic stride, 8 warps: {generic8.registers} registers as compiled, {generic8.instructions} instructions; "
      f"capped at {cap}: {capped8.registers} registers, spill {capped8.spill_store_bytes} B, {capped8.instructions} instructions")

reports = {"real": real, "real, 8 warps": real8, "generic": generic, "generic, 8 warps": generic8, "generic, 8 warps, capped": capped8}
assert not any(r.error for r in reports.values()), {k: r.error for k, r in reports.items() if r.error}  # zeros are no result
# The real launch: half of every share, and the count halves (+10 % for what each thread holds once, whatever its share).
assert real8.registers <= 0.55 * real.registers and not real8.spills, (real.registers, real8.registers)
# The generic code: its count did NOT halve ...
assert generic.spills and not generic8.spills and generic8.registers > 0.9 * generic.registers, (generic, generic8)
# ... although it needs far fewer: capped, it compiles without a spill, and the room had saved instructions.
assert capped8.registers <= cap and not capped8.spills, capped8
assert capped8.instructions > generic8.instructions, (capped8.instructions, generic8.instructions)

# %% [markdown]
# So the prediction holds for the need and fails for the count: a register count read off `ptxas` is an
# upper bound on what the code requires, and a config change that "does not lower the registers" may
# still have removed the pressure. The same rule decides occupancy, though: at the allocated count the
# generic 8-warp program takes the whole register file, one program per SM (the table above).
#
# %% [markdown]
# ## 5. Check correctness: the interpreter
#
# A change to a kernel is not done until it passes the same tests as the original. In the lab, the
# cheapest check is one call against torch's SDPA in Triton's CPU interpreter (run in a separate
# process, because this notebook imported the kernels in compile mode). Here: a strided head dim
# (which the launcher now copies) and every registered backward variant.
#
# Know what this check cannot see. The interpreter runs each program with numpy, one after another:
# it ignores `num_warps` and `num_stages`, and the launcher pins one small configuration for it
# (`tuning.FORWARD_INTERPRETER`), whatever the GPU list says. So it checks the *algorithm* at that
# configuration's block sizes, not the 8-warp change of section 4 — the script below shows it, by
# running one block shape with 1 and with 8 warps and comparing the bits. What does check a warp
# change: compiling it (section 4 did; a layout the compiler cannot build fails there), and running it
# on a GPU. `tests/test_kernels.py::test_every_gpu_block_config_is_correct` pins each GPU configuration
# in turn; on a GPU it runs with that configuration's own warps and stages, and
# `python -m ast_min.kernels.gpu_table` runs it there.

# %%
BACKWARDS = [v.name for v in variants.variants("backward")]  # every registered backward variant
check = r"""
import json, sys
import torch, torch.nn.functional as F
from ast_min import kernels
from ast_min.kernels import fused_attention, tuning
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, 2, 37, 64, generator=g)[..., ::2].requires_grad_() for _ in range(3))  # head-dim stride 2
do = torch.randn(1, 2, 37, 32, generator=g)
ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
ref_grads = torch.autograd.grad(ref, (q, k, v), do.double())
errors = {}
for backward in sys.argv[1:]:
    o = kernels.flash_attention(q, k, v, backward=backward)
    grads = torch.autograd.grad(o, (q, k, v), do)
    errors[backward] = max([(o - ref).abs().max().item()] + [(a - b).abs().max().item() for a, b in zip(grads, ref_grads, strict=True)])
outputs = {}
for warps in (1, 8):  # one block shape, two warp counts: the interpreter cannot tell them apart
    fused_attention._attn_fwd_tuned = tuning.autotune(fused_attention._attn_fwd, tuning._configs([(32, 16, warps, 1)]))
    outputs[warps] = kernels.flash_attention(q.detach(), k.detach(), v.detach())
print(json.dumps({"errors": errors, "same_bits_with_1_and_8_warps": torch.equal(outputs[1], outputs[8])}))
"""
result = subprocess.run([sys.executable, "-c", check, *BACKWARDS], capture_output=True, text=True,
                        env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
print(result.stdout, result.stderr[-2000:])
# A check that crashed printed nothing (or half) of what is parsed below: its exit status comes first,
# then every variant must have reported, so an empty or partial report cannot pass.
assert BACKWARDS, "no backward variant is registered: nothing to check"
assert result.returncode == 0, f"the interpreter check failed (exit status {result.returncode}):\n{result.stderr[-3000:]}"
lines = result.stdout.strip().splitlines()
assert lines, "the interpreter check exited cleanly but printed nothing"
report = json.loads(lines[-1])
errors = report.get("errors", {})
assert sorted(errors) == sorted(BACKWARDS), f"expected one result per variant {BACKWARDS}, got {result.stdout!r}"
# IEEE fp32 against float64: rounding of order 1e-6 at these sizes (tests/test_kernels.py argues 2e-5).
assert all(e < 2e-5 for e in errors.values()), errors
# The interpreter does not see num_warps: the same block shape gives the same bits with 1 warp and 8.
assert report.get("same_bits_with_1_and_8_warps") is True, f"1 and 8 warps: not shown identical in the interpreter: {report}"

# %% [markdown]
# ## 6. The pictures: what each configuration costs the SM, and where the variants sit
#
# Every forward configuration the autotuner may pick (`tuning.FORWARD_GPU`), compiled for sm_90 as a
# real launch specialises it, and the three generic-stride compiles of sections 2 and 4: registers per
# thread (the dashed line is the 255 limit), bytes spilled per thread, and programs per SM with the
# resource that limits them.

# %%
import matplotlib.pyplot as plt  # noqa: E402

listed = [inspect.inspect_one("standard", "forward", 0, i, AST, 90) for i in range(len(tuning.FORWARD_GPU))]
reports = listed + [generic, generic8, capped8]
labels = [r.config for r in listed] + [f"generic {r.config}" for r in (generic, generic8, capped8)]
colours = ["tab:blue"] * len(listed) + ["tab:orange"] * 3
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharex=True)
panels = [("registers per thread", [r.registers for r in reports]), ("spill stores, bytes per thread", [r.spill_store_bytes for r in reports]),
          ("programs per SM", [r.programs_per_sm for r in reports])]
for ax, (title, values) in zip(axes, panels, strict=True):
    ax.bar(range(len(reports)), values, color=colours)
    ax.set_title(title)
    ax.set_xticks(range(len(reports)), labels, rotation=60, ha="right", fontsize=8)
axes[0].axhline(inspect.ARCHS[90].max_regs_per_thread, color="k", ls="--", lw=1, label="255: a thread's limit")
axes[0].legend(fontsize=8, loc="lower left")
for x, r in enumerate(reports):  # what limits occupancy, written on each bar
    axes[2].text(x, r.programs_per_sm + 0.05, r.limited_by.split()[0], ha="center", va="bottom", fontsize=7, rotation=90)
axes[2].set_ylim(0, max(r.programs_per_sm for r in reports) + 1.5)
axes[1].legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:orange")],
               ["as a real launch compiles it (head-dim stride 1)", "generic strides (sections 2 and 4)"], fontsize=8)
fig.suptitle("forward kernel, sm_90, bf16, AST's shape: static inspection (no GPU)")
plt.tight_layout()
assert tuning.FORWARD_GPU and len(listed) == len(tuning.FORWARD_GPU)
assert not any(r.error or r.spills for r in listed), [r.config for r in listed if r.error or r.spills]  # what tests/test_kernels_lab.py enforces

# %% [markdown]
# The roofline of the variants, from the cost model at AST's shape, bf16, on an H100: each kernel and
# each variant's total at its first GPU configuration, placed by its intensity (tile FLOPs over HBM
# bytes, no reuse) under the roof min(peak, bandwidth × intensity). These are **predictions**: the
# no-reuse bound that tiling must beat. When the GPU table (section 7) holds measurements, they are
# drawn too, as measured TFLOP/s (useful FLOPs) at the same intensity.

# %%
from ast_min.kernels import gpu_table  # noqa: E402

card, kind = cost.H100, "bf16"
ridge = card.flops[kind] / card.bandwidth
x = [10 ** (i / 20) for i in range(20, 71)]  # 10 .. 3000 FLOP per byte
fig, ax = plt.subplots(figsize=(9, 5))
ax.loglog(x, [min(card.flops[kind], card.bandwidth * i) / 1e12 for i in x], color="k", lw=1.2, label=f"{card.name} roof (ridge {ridge:.0f} FLOP/B)")
ax.axvline(ridge, color="k", ls=":", lw=0.8)
points = {}
for variant in variants.variants():
    for spec in variant.kernels:
        c = spec.cost(AST, spec.configs[0].kwargs)
        if c.flops:
            points[f"{variant.name}: {spec.name}"] = (c, "o")
    if len(variant.kernels) > 1 or variant.extra_cost:  # a one-kernel variant's total is its kernel
        points[f"{variant.name} {variant.pass_}, total"] = (variant.predicted_cost(AST), "*")
for (name, (c, marker)), colour in zip(points.items(), plt.cm.tab10.colors * 2):
    ax.scatter([c.intensity], [min(card.flops[kind], card.bandwidth * c.intensity) / 1e12], marker=marker, s=80 if marker == "*" else 30,
               color=colour, zorder=3, label=f"{name}: {c.intensity:.0f} FLOP/B (prediction)")
measured = gpu_table.load_raw()
if measured is not None:  # measured points: useful TFLOP/s at the variant's modelled intensity
    shape = cost.Problem(dtype=kind, **measured["kernel_shape"])
    rows = {r["provider"]: r for r in measured["kernels"] if r["dtype"] == kind and not r["note"]}
    for provider, variant in (("triton", variants.get("forward", "standard")), ("triton-tma", variants.get("forward", "tma"))):
        if provider in rows:
            ax.scatter([variant.predicted_cost(shape).intensity], [shape.useful_flops() / (rows[provider]["fwd_ms"] * 1e-3) / 1e12],
                       marker="x", s=80, color="crimson", zorder=4, label=f"{variant.name} forward: measured, {measured['machine']['card']}")
ax.set(xlabel="arithmetic intensity (tile FLOPs per HBM byte, no reuse)", ylabel="TFLOP/s",
       title="attention kernels at AST's shape, bf16: cost-model predictions on the H100 roofline")
ax.set(xlim=(10, 3000), ylim=(10, 2000))
ax.legend(fontsize=7, loc="lower right"); ax.grid(alpha=0.3, which="both")
assert points and all(c.intensity < ridge for c, _ in points.values())  # every kernel left of the ridge in the no-reuse bound

# %% [markdown]
# Every point sits left of the ridge: under the no-reuse bound every kernel would wait on memory. On the
# card, the re-reads of K and V come from L2 instead (section 3), which moves each kernel right, towards
# the roof's flat part; by how much is exactly what a measurement shows.
#
# ## 7. Read the GPU table
#
# One command on a machine with a CUDA GPU, `python -m ast_min.kernels.gpu_table`, measures what this
# chapter can only predict: every variant against SDPA at AST's shape in bf16 and fp16, AST-Base end to
# end with each attention backend against transformers, and the GPU tests, including every block
# configuration run with its own warps and stages (the check section 5 could not make). It writes one
# dated table, card, driver and versions on top; here it is as it stands.

# %%
print(gpu_table.read_table())

# %% [markdown]
# ## Your turn
#
# The experimenter's loop is now yours: add a variant (`kernels/NOTES.md`, "How to add a kernel
# variant"), inspect it, cost it, test it. The course's Triton assignment starts from here:
#
#     ast-min assignment start triton
#
# and `ast-min assignment check triton` grades it; `ast-min assignment start triton_backward` goes on to
# the backward kernels of chapter 03, section 5 (`ast-min assignment check triton_backward`).
