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
# # 03 · FlashAttention in Triton
#
# Every AST layer computes, for each of its 12 heads, attention over N = 1214 tokens:
#
# $$O = \mathrm{softmax}(S)\,V, \qquad S = \tfrac{1}{\sqrt{d}}\,Q K^\top \quad (Q, K, V \in \mathbb{R}^{N\times d},\ d = 64).$$
#
# This chapter writes that computation as a GPU kernel in Triton, from the first line of Triton on:
#
# 1. **Triton from zero**: a vector add, a fused row softmax and a tiled matmul, each checked against torch;
# 2. **the online softmax** (Milakov & Gimelshein 2018), the trick that lets attention stream over keys;
# 3. **blockwise attention by hand** in torch, and a picture of the tiling;
# 4. **a minimal FlashAttention forward in Triton**, written here and checked against ast-min's kernel
#    `ast_min.kernels.flash_attention` and torch's SDPA; then the real kernel's source;
# 5. **the backward pass**: derived; its two arrangements, the split kernels and FlashAttention-2's one
#    pass, each by hand in torch and as kernels; and what each costs;
# 6. **the IO analysis**: bytes, FLOPs, a roofline, and what FlashAttention-2 changed;
# 7. what changes on a GPU.
#
# Everything runs on the CPU through Triton's *interpreter*, which executes a kernel with numpy, one
# program at a time: exact for fp32/fp16/fp64, slow, and silent about speed.
#
# Papers: FlashAttention (Dao, Fu, Ermon, Rudra & Ré, NeurIPS 2022) and FlashAttention-2 (Dao, 2023).
# Shapes: B batch, H heads, N tokens, Dh (= d) head dim.

# %%
import os

# Triton kernels run on the CPU only through Triton's interpreter, which must be chosen before triton
# decorates any kernel, so before `import triton` and before `ast_min.kernels` first imports its Triton module.
os.environ.setdefault("TRITON_INTERPRET", "1")

import inspect
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ast_min import kernels
from ast_min import ASTConfig
from ast_min.kernels import cost, fused_attention, tiles, tuning, variants

torch.manual_seed(0)
torch.set_num_threads(1)  # tiny matrices: extra threads only spin on a shared CPU
config = ASTConfig()  # AST-Base: the shape every number below is computed for

# %% [markdown]
# ## 1 · Triton from zero
#
# ### 1.1 A vector add
#
# A Triton kernel is a Python function compiled for the GPU. It is launched on a *grid* of programs;
# each program handles one block of the data, and finds out which by `tl.program_id`. Inside, values
# are whole blocks (`tl.arange(0, BLOCK)` is the vector 0..BLOCK-1), and `tl.load` / `tl.store` take a
# block of *pointers*. A block size is a `tl.constexpr`: known at compile time (so the compiler can lay
# the block out in registers), and a power of two. When n is not a multiple of BLOCK, the last program
# would read past the end: the `mask` turns those lanes off.

# %%
@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)  # which block this program owns
    offsets = pid * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) element indices
    mask = offsets < n  # the tail block: lanes past the end load nothing and store nothing
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)


def add(x: torch.Tensor, y: torch.Tensor, block: int = 256) -> torch.Tensor:
    out = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), block),)  # one program per block, the last one partial
    add_kernel[grid](x, y, out, x.numel(), BLOCK=block)
    return out


x, y = torch.randn(1000), torch.randn(1000)
print(f"1000 elements, BLOCK 256: {triton.cdiv(1000, 256)} programs, the last one masked to {1000 - 3 * 256} lanes")
assert torch.equal(add(x, y), x + y)

# %% [markdown]
# ### 1.2 A fused row softmax
#
# `torch.softmax` on a GPU is already one kernel, but written out in tensor operations softmax reads
# and writes the matrix several times (max, subtract, exp, sum, divide). Fused, one program owns one
# row: it loads the row once, keeps it in registers, and writes the result once. The row is padded to
# a power of two; the padding lanes load `-inf`, so they add `exp(-inf) = 0` to the sum.

# %%
@triton.jit
def softmax_kernel(x_ptr, out_ptr, n_cols, stride_row, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride_row + cols, mask=cols < n_cols, other=float("-inf"))
    x = x - tl.max(x, axis=0)  # subtracting the max keeps exp from overflowing; softmax is unchanged
    e = tl.exp(x)
    tl.store(out_ptr + row * stride_row + cols, e / tl.sum(e, axis=0), mask=cols < n_cols)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Row softmax of a contiguous (rows, cols) matrix: one program per row."""
    out = torch.empty_like(x)
    softmax_kernel[(x.shape[0],)](x, out, x.shape[1], x.stride(0), BLOCK=triton.next_power_of_2(x.shape[1]))
    return out


scores = torch.randn(37, config.sequence_length) * 4  # 37 rows of AST-length score vectors
err = (softmax(scores) - torch.softmax(scores, dim=-1)).abs().max().item()
print(f"{config.sequence_length} columns padded to {triton.next_power_of_2(config.sequence_length)} lanes; max |triton - torch| = {err:.1e}")
assert err < 1e-6  # fp32 probabilities <= 1: a few ulps of rounding at most

# %% [markdown]
# A whole row must fit in one program's registers: fine for 1214 scores, hopeless for a long context.
# Attention's rows are exactly such softmax rows; section 2 removes the "whole row" requirement.
#
# ### 1.3 A tiled matmul with `tl.dot`
#
# `tl.dot(a, b)` multiplies two blocks on the tensor cores. A program owns one BLOCK_M x BLOCK_N tile of
# C and walks along K, a BLOCK_K slice at a time; the pointers are built from the *strides*, so any
# layout (a transposed view, a slice) works without a copy. The masks handle edges as before,
# filling with 0 (which adds nothing to a dot product).

# %%
@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)  # fp32 accumulator, whatever the inputs
    for k0 in range(0, K, BLOCK_K):
        a = tl.load(a_ptr + rows[:, None] * stride_am + (k0 + ks)[None, :] * stride_ak,
                    mask=(rows[:, None] < M) & ((k0 + ks)[None, :] < K), other=0.0)  # (BLOCK_M, BLOCK_K)
        b = tl.load(b_ptr + (k0 + ks)[:, None] * stride_bk + cols[None, :] * stride_bn,
                    mask=((k0 + ks)[:, None] < K) & (cols[None, :] < N), other=0.0)  # (BLOCK_K, BLOCK_N)
        acc += tl.dot(a, b)
    tl.store(c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn, acc.to(c_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


def matmul(a: torch.Tensor, b: torch.Tensor, block_m=32, block_n=32, block_k=16) -> torch.Tensor:
    (M, K), N = a.shape, b.shape[1]
    c = torch.empty(M, N, dtype=a.dtype)
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))  # a 2-D grid: one program per tile of C
    matmul_kernel[grid](a, b, c, M, N, K, *a.stride(), *b.stride(), *c.stride(),
                        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return c


a, b = torch.randn(100, 70).half(), torch.randn(90, 70).half().T  # b: a transposed view, strides (1, 70)
c = matmul(a, b)
ref = a.double() @ b.double()
err = ((c.double() - ref).abs() / ref.abs().clamp(min=1)).max().item()
print(f"fp16 (100 x 70) @ (70 x 90), b a strided view: max relative error {err:.1e} (fp16 output: 2^-11 = {2**-11:.1e})")
# One rounding of C to fp16 is at most half an ulp, 2^-11 relative; the fp32 accumulation over K = 70
# adds at most ~70 · 2^-24 relative to sum |a b|, well under 1e-4.
assert err < 2**-11 + 1e-4

# %% [markdown]
# **Which side of a `tl.dot` must be at least 16.** A tensor-core instruction multiplies fixed-size
# tiles: on Ampere and Hopper one `mma` consumes 16 fp16 values per row along the reduction dimension
# K (`mma.m16n8k16`). Triton's compiler checks that side when it compiles `tl.dot` for an NVIDIA GPU.
# The minimum (M, N, K) it asks its backend for, per operand type, is printed below: M and N may be as
# small as 1 (a thin tile is padded inside the instruction, which wastes part of it but is allowed);
# only K has a real minimum, 16 for fp16/bf16 (8 for fp32, 4 for fp64). The interpreter does not
# check: it multiplies with numpy. So a kernel that passes in the interpreter with BLOCK_K = 8 can
# still fail to compile for the GPU in fp16.

# %%
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import min_dot_size  # noqa: E402

minimum = min_dot_size(GPUTarget("cuda", 90, 32))  # Hopper (sm_90); the rule is the same for sm_80
for dtype in (tl.float16, tl.bfloat16, tl.float32):
    print(f"tl.dot on {dtype}: (M, N, K) >= {minimum(dtype, dtype)}")
assert minimum(tl.float16, tl.float16) == minimum(tl.bfloat16, tl.bfloat16) == (1, 1, 16)  # only K is bounded
assert torch.allclose(matmul(a.float(), b.float(), block_k=8), a.float() @ b.float(), atol=1e-4)  # the interpreter runs it anyway

# %% [markdown]
# Then why are *all* the attention kernels' blocks at least 16? Because in those kernels every block
# size is the K of some product. The head-dim tile BLOCK_D is the K of Q Kᵀ; the key block BLOCK_N is
# the K of P V (the sum over keys); in the backward, the query block BLOCK_M is the K of dV += Pᵀ dO
# and dK += dSᵀ Q (sums over queries). Below, each kernel's products with the block that is their K,
# checked over every GPU configuration in `kernels/tuning.py`; head dims below 16 are padded to 16
# (`tiles.block_d`).

# %%
K_SIDE = {  # kernel -> {its tl.dot product: the block that is that product's reduction side K}
    "forward": {"S = Q Kᵀ": "BLOCK_D", "acc += P V": "BLOCK_N"},
    "dK/dV (and the one-pass backward)": {"Sᵀ = K Qᵀ": "BLOCK_D", "dV += Pᵀ dO": "BLOCK_M",
                                          "dPᵀ = V dOᵀ": "BLOCK_D", "dK += dSᵀ Q": "BLOCK_M"},
    "dQ": {"S = Q Kᵀ": "BLOCK_D", "dP = dO Vᵀ": "BLOCK_D", "dQ += dS K": "BLOCK_N"},
}
GPU_CONFIGS = {"forward": tuning.FORWARD_GPU, "dK/dV (and the one-pass backward)": tuning.BACKWARD_DKDV_GPU + tuning.BACKWARD_FUSED_GPU,
               "dQ": tuning.BACKWARD_DQ_GPU}
for kernel, products in K_SIDE.items():
    sides = sorted(set(products.values()) - {"BLOCK_D"})
    smallest = {side: min(c.kwargs[side] for c in GPU_CONFIGS[kernel]) for side in sides}
    print(f"{kernel:>34}: " + ", ".join(f"{p} (K = {side})" for p, side in products.items()) + f"; smallest GPU {smallest}")
    assert GPU_CONFIGS[kernel] and min(smallest.values()) >= minimum(tl.float16, tl.float16)[2]
assert tiles.block_d(8) == 16 and tiles.block_d(64) == 64

# %% [markdown]
# ## 2 · The online softmax
#
# Attention needs, for each query row with scores $s_1..s_N$, the softmax of the whole row. The fused
# softmax above held the row in registers. FlashAttention instead streams the keys past a block of
# queries, keeping only a running maximum $m$ (for stability) and a running sum
# $\ell = \sum e^{s - m}$. After blocks $1..j$, a new block of scores $x$ gives
#
# $$m_{j+1} = \max(m_j, \max x), \qquad \ell_{j+1} = \ell_j\, e^{m_j - m_{j+1}} + \sum e^{x - m_{j+1}},$$
#
# because every term summed so far was relative to $m_j$ and must now be relative to $m_{j+1}$:
# $e^{s - m_j} \cdot e^{m_j - m_{j+1}} = e^{s - m_{j+1}}$. At the end $m + \log\ell$ is the
# log-sum-exp. The same rescaling applies to the running output $\sum_i e^{s_i - m} v_i$.

# %%
s = torch.randn(1000, dtype=torch.float64) * 5
m, l = -math.inf, 0.0
for block in s.split(64):
    m_new = max(m, block.max().item())
    l = l * math.exp(m - m_new) + torch.exp(block - m_new).sum().item()
    m = m_new
print(f"online: {m + math.log(l):.12f}   torch.logsumexp: {torch.logsumexp(s, 0).item():.12f}")
assert abs((m + math.log(l)) - torch.logsumexp(s, 0).item()) < 1e-12

# %% [markdown]
# The picture of one query row streaming past 8 key blocks of 16 keys. Its scores drift upwards (as a
# row's do when the relevant keys come late), so the running maximum $m$ jumps several times. Left:
# the scores and the running maximum after each block. Middle: the running sum $\ell$ after each block,
# split into the old sum *rescaled* by $\alpha = e^{m_j - m_{j+1}}$ (dark) and the new block's
# $\sum e^{x - m_{j+1}}$ (light); the dots are $\alpha$ (right axis), 1 whenever the maximum did not
# move. Right: the running output $acc / \ell$ for one value column, after each block, against exact
# attention over the keys seen so far: thanks to the rescaling the running state is, at every step,
# exactly the softmax over the prefix — nothing is approximate until the end.

# %%
g_row = torch.Generator().manual_seed(3)
n_blocks, width = 8, 16
row = torch.randn(n_blocks * width, dtype=torch.float64, generator=g_row) * 1.5 + torch.linspace(0, 6, n_blocks * width, dtype=torch.float64)
values = torch.randn(n_blocks * width, dtype=torch.float64, generator=g_row)  # one column of V
m, l, acc = -math.inf, 0.0, 0.0
trace = []  # per block: m, alpha, the rescaled old sum, the new block's sum, acc / l
for j, (x, vx) in enumerate(zip(row.split(width), values.split(width), strict=True)):
    m_new = max(m, x.max().item())
    alpha = math.exp(m - m_new)  # exp(-inf) = 0 on the first block: nothing to rescale yet
    fresh = torch.exp(x - m_new)
    l, acc = l * alpha + fresh.sum().item(), acc * alpha + (fresh * vx).sum().item()
    trace.append(dict(m=m_new, alpha=alpha, old=l - fresh.sum().item(), new=fresh.sum().item(), out=acc / l))
    m = m_new
    seen = slice(0, (j + 1) * width)  # exact attention over the keys seen so far
    assert abs(acc / l - (torch.softmax(row[seen], 0) * values[seen]).sum().item()) < 1e-12
assert abs(m + math.log(l) - torch.logsumexp(row, 0).item()) < 1e-12
assert sum(t["alpha"] < 1 for t in trace[1:]) >= 2  # the maximum moved more than once: a picture worth drawing

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 3.6))
keys = torch.arange(len(row))
left.plot(keys, row, ".", ms=4, label="scores s")
left.hlines([t["m"] for t in trace], [j * width - 0.5 for j in range(n_blocks)], [(j + 1) * width - 0.5 for j in range(n_blocks)],
            color="crimson", lw=2, label="running max m after the block")
for j in range(1, n_blocks):
    left.axvline(j * width - 0.5, color="0.8", lw=0.8, zorder=0)
left.set(xlabel="key index (8 blocks of 16)", ylabel="score", title="one query row, streamed block by block")
left.legend(fontsize=8)
blocks = range(1, n_blocks + 1)
middle.bar(blocks, [t["old"] for t in trace], color="tab:blue", label="old sum · α (rescaled)")
middle.bar(blocks, [t["new"] for t in trace], bottom=[t["old"] for t in trace], color="lightskyblue", label="new block's sum")
middle.set(xlabel="after block j", ylabel="ℓ (relative to the current max)", title="the running sum, rescaled")
middle.legend(fontsize=8, loc="upper left", framealpha=0.9)
middle.set_ylim(0, 1.35 * max(t["old"] + t["new"] for t in trace))  # room for the legend
twin = middle.twinx()
twin.plot(blocks[1:], [t["alpha"] for t in trace[1:]], "o", color="crimson")  # block 1 has no old sum to rescale
twin.set_ylabel("α = exp(m_old − m_new)", color="crimson"); twin.set_ylim(0, 1.35)
right.plot(blocks, [t["out"] for t in trace], "o-", label="acc / ℓ, running")
right.axhline((torch.softmax(row, 0) * values).sum().item(), color="k", ls=":", label="exact output, all keys")
right.set(xlabel="after block j", ylabel="output (one value column)", title="the running output")
right.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# ## 3 · Blockwise attention, by hand
#
# FlashAttention-2's forward (Algorithm 1): for each block of query rows, stream the key/value blocks,
# keeping per row the running max `m`, sum `l` and unnormalised output `acc`; divide by `l` once at
# the end. The log-sum-exp `m + log l` is saved: the backward pass uses it to recompute
# P = exp(S - LSE) without storing P.

# %%
def blockwise_by_hand(q, k, v, block_m=16, block_n=16):
    """q, k, v: (N, Dh) for one head. Returns O (N, Dh) and LSE (N,)."""
    n, d = q.shape
    scale = d**-0.5
    o, lse = torch.empty_like(q), torch.empty(n, dtype=q.dtype)
    for i in range(0, n, block_m):  # one Triton program per query block
        qi = q[i : i + block_m]  # (Bm, Dh)
        m = torch.full((len(qi),), -math.inf, dtype=q.dtype)
        l = torch.zeros(len(qi), dtype=q.dtype)
        acc = torch.zeros(len(qi), d, dtype=q.dtype)
        for j in range(0, n, block_n):
            sij = qi @ k[j : j + block_n].T * scale  # (Bm, Bn): the only scores ever held
            m_new = torch.maximum(m, sij.max(dim=1).values)
            p = torch.exp(sij - m_new[:, None])
            alpha = torch.exp(m - m_new)
            l = l * alpha + p.sum(dim=1)
            acc = acc * alpha[:, None] + p @ v[j : j + block_n]
            m = m_new
        o[i : i + block_m] = acc / l[:, None]  # FlashAttention-2: normalise once, at the end
        lse[i : i + block_m] = m + torch.log(l)
    return o, lse


q, k, v = (torch.randn(1, 1, 50, 16, dtype=torch.float64) for _ in range(3))
o_hand, lse_hand = blockwise_by_hand(q[0, 0], k[0, 0], v[0, 0])
o_lib, lse_lib = kernels.blockwise_attention(q, k, v, block_m=16, block_n=16)
o_sdpa = F.scaled_dot_product_attention(q, k, v)
print("hand vs kernels.blockwise_attention:", (o_hand - o_lib[0, 0]).abs().max().item())
print("hand vs SDPA:                       ", (o_hand - o_sdpa[0, 0]).abs().max().item())
assert torch.allclose(o_hand, o_lib[0, 0], atol=1e-12) and torch.allclose(lse_hand, lse_lib[0, 0], atol=1e-12)
assert torch.allclose(o_hand, o_sdpa[0, 0], atol=1e-12)

# %% [markdown]
# N = 50 is not a multiple of 16: Python slicing quietly shortened the last block. A GPU kernel loads
# fixed-size tiles, so it must *mask*: keys past N get a score of -1e30 (finite: with -inf, a row whose
# every key is masked would compute exp(-inf - (-inf)) = NaN), and rows past N are not stored.
#
# The figure shows the tiling at AST's N = 1214 with the GPU forward's 128-row query blocks and
# 64-key blocks (and, left, a toy N). One program owns one strip of query rows (outlined) and reads
# every key block along it; the last key block is partly past N and masked; the last query block's
# rows past N are computed on padding and never stored.

# %%
def tiling_picture(ax, n, block_m, block_n, program):
    n_rows, n_cols = triton.cdiv(n, block_m) * block_m, triton.cdiv(n, block_n) * block_n
    image = torch.zeros(n_rows, n_cols)  # 0: scores of real (query, key) pairs
    image[:, n:] = 1  # keys past N: score set to -1e30 (masked)
    image[n:, :] = 2  # query rows past N: computed on padding, never stored
    ax.imshow(image, cmap=plt.matplotlib.colors.ListedColormap(["#cfe3f5", "#f4a261", "#bbbbbb"]),
              vmin=0, vmax=2, interpolation="nearest", extent=(0, n_cols, n_rows, 0))
    for r in range(0, n_rows + 1, block_m):
        ax.axhline(r, color="k", lw=0.5)
    for c in range(0, n_cols + 1, block_n):
        ax.axvline(c, color="k", lw=0.3)
    ax.add_patch(plt.Rectangle((0, program * block_m), n_cols, block_m, fill=False, ec="crimson", lw=2.5))
    tail = n - (n_cols - block_n)
    ax.set_title(f"N = {n}, BLOCK_M = {block_m}, BLOCK_N = {block_n}\n"
                 f"{n_rows // block_m} x {n_cols // block_n} tiles; last key block: {tail} of {block_n} keys real")
    ax.set_xlabel("key index"); ax.set_ylabel("query index")


fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
tiling_picture(left, 53, 32, 16, program=1)
tiling_picture(right, config.sequence_length, 128, 64, program=3)
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#cfe3f5", "#f4a261", "#bbbbbb")]
fig.legend(handles, ["computed", "masked key (score -1e30)", "padding row (not stored)"], loc="lower center", ncol=3)
fig.suptitle("one program (outlined) = one query block; it streams every key block")
plt.tight_layout(rect=(0, 0.06, 1, 1))
n_key_blocks = triton.cdiv(config.sequence_length, 64)
assert config.sequence_length % 64 != 0 and config.sequence_length - (n_key_blocks - 1) * 64 < 64  # a masked tail exists

# %% [markdown]
# ## 4 · FlashAttention's forward in Triton
#
# ### 4.1 A minimal kernel, written here
#
# The blockwise loop above, as a Triton program. Everything new is how a program finds its data:
#
# - **program id -> query block**: axis 0 of the grid is the query block (`start_m = program_id(0) *
#   BLOCK_M`), axis 1 the (batch, head) pair; so the grid is (⌈N / BLOCK_M⌉, B·H).
# - **pointer arithmetic with strides**: element (b, h, n, d) of a (B, H, N, Dh) tensor is at
#   `base + b·stride_b + h·stride_h + n·stride_n + d·stride_d`. The program first moves the base
#   pointer to its (b, h), then builds a (BLOCK_N, Dh) block of pointers from two `arange`s. Kᵀ is
#   loaded transposed just by swapping which index goes down the rows: no copy.
# - **the masked tail**: keys at or past N load as 0 and get score -1e30; rows past N are not stored.
# - **the exp2 trick**: the GPU's fast exponential is base 2. Since $e^x = 2^{x \log_2 e}$, fold
#   $\log_2 e$ into the softmax scale once; then every exponential is an `exp2`, and the running max
#   and sum are in base-2 units. The saved LSE is converted back: $\mathrm{LSE} = (m_2 + \log_2 \ell)\ln 2$.
# - **the saved LSE**: one number per row, all the backward needs to rebuild P.
#
# This minimal kernel assumes a power-of-two Dh of at least 16 and no causal mask; ast-min's kernel
# lifts those limits.

# %%
@triton.jit
def flash_forward_minimal(Q, K, V, O, LSE,
                          stride_b, stride_h, stride_n, stride_d,  # shared by q, k, v, o (contiguous here)
                          H, N, qk_scale,  # qk_scale = scale · log2(e)
                          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M  # this program's query block
    bh = tl.program_id(1)  # this program's (batch, head)
    base = (bh // H) * stride_b + (bh % H) * stride_h
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N
    q = tl.load(Q + base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d, mask=row_ok[:, None], other=0.0)

    m = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (base-2 units)
    l = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp2(s - m)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running unnormalised output
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        key_ok = offs_n < N
        kT = tl.load(K + base + offs_d[:, None] * stride_d + offs_n[None, :] * stride_n, mask=key_ok[None, :], other=0.0)  # (Dh, BLOCK_N)
        v = tl.load(V + base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d, mask=key_ok[:, None], other=0.0)  # (BLOCK_N, Dh)
        s = tl.dot(q, kT) * qk_scale  # (BLOCK_M, BLOCK_N) scores, base-2 units
        s = tl.where(key_ok[None, :], s, -1.0e30)  # the masked tail
        m_new = tl.maximum(m, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m - m_new)
        l = l * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new
    tl.store(O + base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d, acc / l[:, None], mask=row_ok[:, None])
    tl.store(LSE + bh * N + offs_m, (m + tl.math.log2(l)) * 0.6931471805599453, mask=row_ok)  # natural log


def flash_minimal(q, k, v, block_m=128, block_n=64):
    """q, k, v: contiguous (B, H, N, Dh) fp32. Returns O (B, H, N, Dh), LSE (B, H, N)."""
    B, H, N, Dh = q.shape
    o, lse = torch.empty_like(q), torch.empty(B, H, N)
    grid = (triton.cdiv(N, block_m), B * H)
    flash_forward_minimal[grid](q, k, v, o, lse, *q.stride(), H, N, Dh**-0.5 * math.log2(math.e),
                                HEAD_DIM=Dh, BLOCK_M=block_m, BLOCK_N=block_n)
    return o, lse


# AST's own attention shape for one clip and one head: N = 1214 (no block divides it), Dh = 64.
q, k, v = (torch.randn(1, 1, config.sequence_length, config.head_dim) for _ in range(3))
o_min, lse_min = flash_minimal(q, k, v)
o_ref, lse_ref = kernels.attention_math(q.double(), k.double(), v.double())
print(f"N = {config.sequence_length}: max |minimal - float64 math| O {(o_min - o_ref).abs().max().item():.1e}, "
      f"LSE {(lse_min - lse_ref).abs().max().item():.1e}")
assert torch.allclose(o_min.double(), o_ref, atol=1e-5) and torch.allclose(lse_min.double(), lse_ref, atol=1e-5)

# The same kernel against ast-min's, at a size the interpreter runs in a second (both mask a tail).
qs, ks, vs = (torch.randn(2, 3, 83, 64) for _ in range(3))
o_small, lse_small = flash_minimal(qs, ks, vs, block_m=32, block_n=16)
o_lib, lse_lib = kernels.flash_attention(qs, ks, vs, return_lse=True)
print(f"minimal vs kernels.flash_attention: O {(o_small - o_lib).abs().max().item():.1e}, LSE {(lse_small - lse_lib).abs().max().item():.1e}")
assert torch.allclose(o_small, o_lib, atol=1e-5) and torch.allclose(lse_small, lse_lib, atol=1e-5)

# %% [markdown]
# ### 4.2 The real kernel
#
# ast-min's forward is the same program, with three additions: head dims that are not a power of two
# (padded inside the kernel), an optional causal mask, and the key loop split in two, so only the
# blocks that need a mask (the tail; the diagonal if causal) pay for a `tl.where`. Its pointer
# arithmetic lives in three small helpers that every kernel (forward, backward and each variant) shares,
# in `kernels/tiles.py`: `head_base` moves a tensor's base pointer to one (batch, head), `tile_ptrs`
# builds the (rows, head-dim) block of pointers, and `tile_ptrs_t` the same block transposed (how Kᵀ is
# loaded with no copy). Three constants: `LOG2E` and `LN2` convert between natural and base-2 logarithms
# (the exp2 trick and the saved LSE), and `NEG_LARGE` is the finite score of a masked pair. The
# sources, printed from the module so this page cannot drift from it:

# %%
print(f"LOG2E = {tiles.LOG2E.value!r}, LN2 = {tiles.LN2.value!r}, NEG_LARGE = {tiles.NEG_LARGE.value!r}")
assert math.isclose(tiles.LOG2E.value, math.log2(math.e), rel_tol=1e-15)
assert math.isclose(tiles.LOG2E.value * tiles.LN2.value, 1.0, rel_tol=1e-15)
assert 2.0**tiles.NEG_LARGE.value == 0.0  # exp2 of a masked score underflows to exactly 0 ...
assert tiles.NEG_LARGE.value - tiles.NEG_LARGE.value == 0.0  # ... and, being finite, never makes a NaN
for fn in (tiles.head_base, tiles.tile_ptrs, tiles.tile_ptrs_t,
           tiles.key_block_bounds, fused_attention._attn_fwd_step, fused_attention._attn_fwd):
    print(inspect.getsource(fn.fn))  # .fn: the Python function under the @triton.jit wrapper

# %% [markdown]
# ## 5 · The backward pass
#
# With $P = \mathrm{softmax}(S)$ row by row and $O = PV$, the chain rule gives
# $dV = P^\top dO$ and $dP = dO\,V^\top$. The softmax's Jacobian for one row is
# $\partial P_{ij} / \partial S_{ik} = P_{ij}(\delta_{jk} - P_{ik})$, so
#
# $$dS_{ik} = \sum_j dP_{ij} P_{ij} (\delta_{jk} - P_{ik}) = P_{ik}\big(dP_{ik} - \textstyle\sum_j P_{ij}\, dP_{ij}\big).$$
#
# The row sum $\Delta_i = \sum_j P_{ij} dP_{ij}$ would need a whole row of P — which we never hold.
# But it equals something cheap:
#
# $$\Delta_i = \sum_j P_{ij} \sum_d dO_{id} V_{jd} = \sum_d dO_{id} \sum_j P_{ij} V_{jd} = \sum_d dO_{id}\, O_{id} = \mathrm{rowsum}(dO \circ O)_i,$$
#
# an N x d computation done once, before the blocks. Then $dQ = \text{scale}\cdot dS\,K$ and
# $dK = \text{scale} \cdot dS^\top Q$, and within a tile $P = \exp(S - \mathrm{LSE})$ is recomputed
# from the saved LSE. First the identity, numerically:

# %%
q, k, v, do = (torch.randn(1, 1, 70, 16, dtype=torch.float64) for _ in range(4))
scale = 16**-0.5
p = torch.softmax(q @ k.mT * scale, dim=-1)
o = p @ v
dp = do @ v.mT
delta_from_p = (p * dp).sum(-1)  # needs all of P
delta_from_o = (do * o).sum(-1)  # needs only O and dO
assert torch.allclose(delta_from_p, delta_from_o, atol=1e-12)
print(f"rowsum(P∘dP) - rowsum(dO∘O): {(delta_from_p - delta_from_o).abs().max().item():.1e}")

# %% [markdown]
# ### 5.1 Two ways to organise the loops
#
# The backward produces three gradients with different owners. dK and dV of a key row sum over every
# query row; dQ of a query row sums over every key row. A program that owns a key block can keep its
# dK and dV private, but its contributions to dQ land on *every* query block's rows, which every other
# key block's program also writes. There are two answers, and ast-min has both:
#
# - **split** (`flash_attention(..., backward="split")`, the default, and what the model's `triton`
#   backend uses): two kernels. The dK/dV kernel has one program per key block that streams the query
#   blocks; the dQ kernel has one program per query block that streams the key blocks. No program
#   writes another's rows, so no atomics — but both recompute S = Q Kᵀ and dP = dO Vᵀ for every tile.
# - **one pass** (`backward="fused"`, FlashAttention-2's Algorithm 2, Dao 2023): one program per key
#   block does everything in one loop and *adds* its share of each dQ tile into a shared fp32 buffer
#   with atomic adds. S and dP are computed once.
#
# Both, by hand (one head), and checked against autograd through SDPA and against
# `kernels.blockwise_attention_backward`:

# %%
def split_backward_by_hand(do, q, k, v, o, lse, block_m=16, block_n=16):
    """All (N, Dh) for one head but lse (N,). Returns dq, dk, dv: two loop nests, no shared writes."""
    n, d = q.shape
    scale = d**-0.5
    delta = (do * o).sum(-1)  # (N,)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j in range(0, n, block_n):  # the dK/dV kernel: one program per key block
        kj, vj = k[j : j + block_n], v[j : j + block_n]
        for i in range(0, n, block_m):
            p = torch.exp(q[i : i + block_m] @ kj.T * scale - lse[i : i + block_m, None])  # (Bm, Bn), recomputed
            dv[j : j + block_n] += p.T @ do[i : i + block_m]
            ds = p * (do[i : i + block_m] @ vj.T - delta[i : i + block_m, None])
            dk[j : j + block_n] += scale * ds.T @ q[i : i + block_m]
    for i in range(0, n, block_m):  # the dQ kernel: one program per query block
        for j in range(0, n, block_n):
            p = torch.exp(q[i : i + block_m] @ k[j : j + block_n].T * scale - lse[i : i + block_m, None])  # again
            ds = p * (do[i : i + block_m] @ v[j : j + block_n].T - delta[i : i + block_m, None])  # dP again
            dq[i : i + block_m] += scale * ds @ k[j : j + block_n]
    return dq, dk, dv


def one_pass_backward_by_hand(do, q, k, v, o, lse, block_m=16, block_n=16):
    """The same gradients in one loop nest; dq is shared by every key block (the kernel adds atomically)."""
    n, d = q.shape
    scale = d**-0.5
    delta = (do * o).sum(-1)  # (N,)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j in range(0, n, block_n):  # one program per key block
        kj, vj = k[j : j + block_n], v[j : j + block_n]
        for i in range(0, n, block_m):
            p = torch.exp(q[i : i + block_m] @ kj.T * scale - lse[i : i + block_m, None])  # (Bm, Bn), once
            dv[j : j + block_n] += p.T @ do[i : i + block_m]
            ds = p * (do[i : i + block_m] @ vj.T - delta[i : i + block_m, None])
            dk[j : j + block_n] += scale * ds.T @ q[i : i + block_m]
            dq[i : i + block_m] += scale * ds @ kj  # another program's rows: tl.atomic_add in the kernel
    return dq, dk, dv


o, lse = kernels.attention_math(q, k, v)
library = kernels.blockwise_attention_backward(do, q, k, v, o, lse, block_m=16, block_n=16)
q_, k_, v_ = (t.clone().requires_grad_() for t in (q, k, v))
autograd = torch.autograd.grad(F.scaled_dot_product_attention(q_, k_, v_), (q_, k_, v_), do)
for by_hand in (split_backward_by_hand, one_pass_backward_by_hand):
    grads = by_hand(do[0, 0], q[0, 0], k[0, 0], v[0, 0], o[0, 0], lse[0, 0])
    for name, g, g_lib, g_ref in zip("qkv", grads, library, autograd, strict=True):
        print(f"{by_hand.__name__:>26}, d{name}: vs autograd(SDPA) {(g - g_ref[0, 0]).abs().max().item():.1e}, "
              f"vs kernels.blockwise_attention_backward {(g - g_lib[0, 0]).abs().max().item():.1e}")
        assert torch.allclose(g, g_ref[0, 0], atol=1e-12) and torch.allclose(g, g_lib[0, 0], atol=1e-12)

# %% [markdown]
# What the one pass saves, counted: per (query block, key block) pair the split nests do 7 matrix
# products (4 in the dK/dV loop, 3 in the dQ loop, two of them repeats), the one pass 5. torch's own
# FLOP counter, run over both functions:

# %%
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

matmul_flops = {}
for by_hand in (split_backward_by_hand, one_pass_backward_by_hand):
    with FlopCounterMode(display=False) as counter:
        by_hand(do[0, 0], q[0, 0], k[0, 0], v[0, 0], o[0, 0], lse[0, 0])
    matmul_flops[by_hand.__name__] = counter.get_total_flops()
n_tok, d_head = q.shape[-2:]
per_product = 2 * n_tok * n_tok * d_head  # one product over every (query, key) pair, summed over all tiles
print({name: f"{value / per_product:g} products over all pairs" for name, value in matmul_flops.items()})
assert matmul_flops["split_backward_by_hand"] == 7 * per_product and matmul_flops["one_pass_backward_by_hand"] == 5 * per_product

# %% [markdown]
# ### 5.2 The split kernels
#
# Three launches (`attention_backward`): delta = rowsum(dO ∘ O), one program per block of rows; then
# the dK/dV kernel on a grid of (⌈N / BLOCK_N⌉, B·H) and the dQ kernel on (⌈N / BLOCK_M⌉, B·H). Each
# recomputes P from the saved LSE in the forward's base-2 units: the scores are s₂ = q·k·scale·log₂e,
# so P = exp(S − LSE) = exp2(s₂ − LSE·log₂e), and `lse2` is the LSE times `LOG2E`, loaded once per
# query block. The loops are split as the forward's are: unmasked blocks first, then the masked tail
# (and, causal, the diagonal). The same helpers as the forward's build every pointer.

# %%
s_tile = q[0, 0, :16] @ k[0, 0, :16].T * scale  # (16, 16) scores, natural units
lse2 = lse[0, 0, :16] * tiles.LOG2E.value
assert torch.allclose(torch.exp2(s_tile * tiles.LOG2E.value - lse2[:, None]), torch.exp(s_tile - lse[0, 0, :16, None]), rtol=1e-13)
for fn in (fused_attention._attn_bwd_delta, fused_attention._attn_bwd_dkdv_step, fused_attention._attn_bwd_dkdv,
           fused_attention._attn_bwd_dq_step, fused_attention._attn_bwd_dq):
    print(inspect.getsource(fn.fn))
print(inspect.getsource(fused_attention.attention_backward))

# %% [markdown]
# ### 5.3 The one-pass kernel (FlashAttention-2, Algorithm 2)
#
# `kernels/variant_fused_backward.py`: the dK/dV kernel's loop with one more product per step,
# dQ_i += dS K_j, added into global memory with `tl.atomic_add` because other programs add to the
# same rows. The launcher zeroes an fp32 buffer for those adds (fp64 for fp64 inputs: adding in the
# input's fp16 would round at every add), runs delta and the one kernel, then scales and casts the
# buffer to dQ. Two consequences: the autotuner, which runs the kernel once per candidate
# configuration, must zero the buffer before every trial (`reset_to_zero=["DQ"]`); and the atomic adds
# land in whatever order the programs reach them, so dQ's last bits can differ from run to run (the
# interpreter runs programs one after the other, so here they do not).

# %%
from ast_min.kernels import variant_fused_backward  # noqa: E402

for fn in (variant_fused_backward._attn_bwd_fused_step, variant_fused_backward._attn_bwd_fused):
    print(inspect.getsource(fn.fn))
print(inspect.getsource(variant_fused_backward.attention_backward_fused))

# %% [markdown]
# ### 5.4 Both, through `torch.autograd`, against SDPA
#
# Now the whole kernel, forward and both backwards, against SDPA in float64. The q, k, v below are
# laid out as in the model: each of its three separate linear maps (query, key, value) gives
# (B, N, H·Dh), viewed as (B, N, H, Dh) and transposed to (B, H, N, Dh) — non-contiguous views,
# which the kernel reads through their strides.

# %%
B, H, N, Dh = 2, 3, 53, 32  # 53: a prime, so every block size leaves a masked tail
q, k, v = (torch.randn(B, N, H * Dh).view(B, N, H, Dh).transpose(1, 2).requires_grad_() for _ in range(3))
assert not q.is_contiguous()
do = torch.randn(B, H, N, Dh)
q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
o_ref = F.scaled_dot_product_attention(q64, k64, v64)
refs = torch.autograd.grad(o_ref, (q64, k64, v64), do.double())
BACKWARDS = [variant.name for variant in variants.variants("backward")]
assert {"split", "fused"} <= set(BACKWARDS)
for backward in BACKWARDS:
    o, lse = kernels.flash_attention(q, k, v, return_lse=True, backward=backward)
    dq, dk, dv = torch.autograd.grad(o, (q, k, v), do)
    print(f"backward={backward!r}: O max |triton - SDPA(float64)| = {(o - o_ref).abs().max().item():.1e}")
    for name, g, g_ref in zip("qkv", (dq, dk, dv), refs, strict=True):
        print(f"    d{name}: max |triton - SDPA autograd| = {(g - g_ref).abs().max().item():.1e}")
        assert torch.allclose(g.double(), g_ref, atol=2e-5)
    assert torch.allclose(o.double(), o_ref, atol=2e-5)
lse_err = (lse - torch.logsumexp(q64 @ k64.mT / Dh**0.5, -1)).abs().max().item()
print(f"LSE: max |triton - logsumexp| = {lse_err:.1e}")
assert lse_err < 2e-5

# %% [markdown]
# Causal attention (for experimenters; AST does not use it) and fp16 run through the same kernel. In
# fp16, P is rounded to fp16 before P V, so the error is a few fp16 ulps (2^-11 ≈ 5e-4 relative).

# %%
qh, kh, vh = (t.detach().half() for t in (q, k, v))
o_causal = kernels.flash_attention(qh, kh, vh, causal=True)
o_causal_ref = F.scaled_dot_product_attention(qh.double(), kh.double(), vh.double(), is_causal=True)
err = (o_causal.double() - o_causal_ref).abs().max().item()
print(f"fp16 causal: max error {err:.1e} (|v| <= {vh.abs().max().item():.1f})")
assert err < 4 * 2**-11 * vh.abs().max().item()

# %% [markdown]
# Unsupported inputs are refused with a message that says what to do, before any kernel runs:

# %%
for bad in (torch.randn(1, 2, 5, 256), torch.randn(2, 5, 16)):
    try:
        kernels.flash_attention(bad, bad, bad)
    except ValueError as e:
        print("ValueError:", e)
    else:
        raise AssertionError(f"flash_attention accepted q of shape {tuple(bad.shape)}")

# %% [markdown]
# ### 5.5 What each costs, and when each wins
#
# The cost model (`kernels/cost.py`, section 6 explains its counts) prices both at AST's shape: batch
# 8, bf16, the same 64 x 64 blocks in every kernel so the comparison is like for like. FLOPs are the
# tile products as launched; bytes count every tile a program loads as read from HBM (no reuse
# between programs), and for the one pass each atomic add as a read and a write of an fp32 dQ tile.

# %%
P_AST = cost.Problem(8, config.num_attention_heads, config.sequence_length, config.head_dim, "bf16")
split_parts = {"delta": cost.delta(P_AST), "dK/dV": cost.backward_dkdv(P_AST, 64, 64), "dQ": cost.backward_dq(P_AST, 64, 64)}
fused_parts = {"delta": cost.delta(P_AST), "one pass (dK/dV + atomic dQ)": cost.backward_fused(P_AST, 64, 64),
               "dQ buffer: zero, scale, cast": cost.dq_epilogue(P_AST)}
split_total, fused_total = sum(split_parts.values(), cost.Cost(0, 0)), sum(fused_parts.values(), cost.Cost(0, 0))
rows = ([(f"split: {name}", P_AST, c) for name, c in split_parts.items()] + [("**split, total**", P_AST, split_total)]
        + [(f"fused: {name}", P_AST, c) for name, c in fused_parts.items()] + [("**fused, total**", P_AST, fused_total)])
print(cost.table(rows))
compute_us = {name: c.flops / cost.H100.flops["bf16"] * 1e6 for name, c in (("split", split_total), ("fused", fused_total))}
print(f"H100 at its bf16 peak, matmuls only: split {compute_us['split']:.0f} µs, fused {compute_us['fused']:.0f} µs")
dq_buffer = config.sequence_length * config.head_dim * 4  # one (clip, head)'s fp32 dQ accumulator
print(f"one (clip, head)'s fp32 dQ buffer: {dq_buffer / 1e3:.0f} kB; it receives {triton.cdiv(config.sequence_length, 64)} "
      f"atomic adds per element, one from each key block's program")
assert math.isclose(fused_total.flops / split_total.flops, 5 / 7)  # 5 products per tile pair instead of 7
assert fused_total.bytes > split_total.bytes  # ... paid in fp32 read-modify-writes of dQ

# %% [markdown]
# Read the two totals against each other:
#
# - **If the backward is compute-bound** — the re-reads of K, V and the dQ buffer are served by the L2
#   cache, as section 6 argues for the forward (one (clip, head)'s dQ buffer, printed above, is far
#   below an H100's 50 MB L2) — the one pass does 5/7 of the matmuls and should win, by less than
#   7/5, because its atomic adds are not free: up to ⌈N / BLOCK_N⌉ programs add into the same dQ tile.
# - **If every byte went to HBM** (the model's no-reuse bound), the split kernels would win: the one
#   pass moves more bytes, the fp32 read-modify-writes of dQ.
# - **Whatever the speed**, split gives bit-for-bit reproducible gradients and can be autotuned by
#   plain re-running; the one pass's dQ varies in its last bits from run to run and needs its buffer
#   zeroed before every tuning trial. That is why the model's `triton` backend uses split.
#
# Which one wins on a given card is a measurement: `python -m ast_min.kernels.gpu_table` times both
# (providers `triton` and `triton-fused`) against SDPA, and section 7 prints its table.
#
# **Your turn: the backward in Triton.** `ast-min assignment start triton_backward` hands you the
# backward kernels to write yourself (Triton's interpreter runs them on a CPU), and
# `ast-min assignment check triton_backward` grades them against autograd on inputs you did not choose.
# %% [markdown]
# ## 6 · The IO analysis
#
# A GPU runs out of one of two things: arithmetic (FLOP/s) or memory bandwidth (bytes/s from HBM). A
# kernel's *arithmetic intensity* (FLOPs per byte moved) decides which: below the card's *ridge
# point* peak FLOP/s ÷ bandwidth, it waits on memory. We count for AST-Base's real shape, in 2-byte
# (fp16/bf16) elements, one (clip, head):
#
# - FLOPs: $QK^\top$ and $PV$, $2N^2d$ each: $4N^2d$.
# - **Unfused** (textbook): read Q, K, V, write O ($4Nd$ elements) plus write S, read S, write P,
#   read P ($4N^2$).
# - **Fused, as if K and V were read once**: $4Nd$ elements.
# - **Fused, as the kernel actually reads**: each program holds one query block and streams *all* of
#   K and V, so K and V are read once per query block, ⌈N / BLOCK_M⌉ times:
#   $2Nd + 2Nd\,\lceil N / \text{BLOCK\_M} \rceil$. For large N that makes the intensity about
#   $4N^2 d / (4 N^2 d / \text{BLOCK\_M}) = \text{BLOCK\_M}$ FLOP per byte.

# %%
N, d = config.sequence_length, config.head_dim
bytes_per_element = 2
flops = 4 * N**2 * d
unfused = (4 * N * d + 4 * N * N) * bytes_per_element
read_once = 4 * N * d * bytes_per_element


def fused_bytes(block_m: int) -> int:
    """HBM bytes of the forward for one (clip, head) if every re-read of K and V went to HBM."""
    return (2 * N * d + 2 * N * d * triton.cdiv(N, block_m)) * bytes_per_element


intensity = {"unfused": flops / unfused, "fused, read once": flops / read_once}
intensity.update({f"fused, BLOCK_M {bm}": flops / fused_bytes(bm) for bm in (64, 128)})
for name, value in intensity.items():
    print(f"{name:>18}: {value:6.0f} FLOP/byte")
assert 100 < intensity["fused, BLOCK_M 128"] < 120 < 500 < intensity["fused, read once"]
# kernels/cost.py counts the forward the same way, block by block, and adds the LSE it writes (fp32, 4 bytes a row).
assert cost.forward(cost.Problem(1, 1, N, d, "bf16"), 128, 64).bytes == fused_bytes(128) + 4 * N

# %% [markdown]
# `kernels/cost.py` counts the same forward and gets a higher intensity (chapter 05 and
# `kernels/NOTES.md` print its number). Both are right: they count different FLOPs. Above, the FLOPs
# are the *useful* ones, 4N²d, the convention benchmarks report TFLOP/s in. The cost model counts what
# the tensor cores execute: whole tiles, padding included — ⌈N / BLOCK_M⌉·BLOCK_M query rows against
# ⌈N / BLOCK_N⌉·BLOCK_N keys — and its bytes add the LSE the kernel writes (fp32, 4 bytes a row). The
# two are related exactly:

# %%
model_forward = cost.forward(cost.Problem(1, 1, N, d, "bf16"), 128, 64)
padded_rows, padded_keys = triton.cdiv(N, 128) * 128, triton.cdiv(N, 64) * 64
padding, with_lse = padded_rows * padded_keys / N**2, fused_bytes(128) / model_forward.bytes
print(f"useful FLOPs over bytes without the LSE (above):   {intensity['fused, BLOCK_M 128']:.1f} FLOP/byte")
print(f"tile FLOPs over bytes with the LSE (kernels/cost.py): {model_forward.intensity:.1f} FLOP/byte"
      f" = {intensity['fused, BLOCK_M 128']:.1f} x {padding:.4f} (tiles: {padded_rows} x {padded_keys} for {N} x {N})"
      f" x {with_lse:.4f} (the LSE's bytes)")
assert math.isclose(model_forward.flops, flops * padding)
assert math.isclose(model_forward.intensity, intensity["fused, BLOCK_M 128"] * padding * with_lse)

# %% [markdown]
# Published peak numbers (dense fp16/bf16 tensor-core FLOP/s; HBM bandwidth; SXM parts): the A100
# 80 GB does 312 TFLOP/s over 2.04 TB/s, the H100 989 TFLOP/s over 3.35 TB/s. Their ridge points:

# %%
cards = {"A100 SXM": (312e12, 2.039e12), "H100 SXM": (989e12, 3.35e12)}
ridge = {name: peak / bandwidth for name, (peak, bandwidth) in cards.items()}
print({name: round(value) for name, value in ridge.items()})
kv_bytes = 2 * N * d * bytes_per_element
print(f"K and V of one (clip, head): {kv_bytes / 1e3:.0f} kB, re-read by {triton.cdiv(N, 128)} programs")
assert intensity["unfused"] < ridge["A100 SXM"] and intensity["fused, BLOCK_M 128"] < ridge["H100 SXM"] < intensity["fused, read once"]

# %% [markdown]
# So the numbers say: the unfused computation sits far below both ridges (memory-bound), and the fused
# kernel at BLOCK_M = 128 would also sit below the H100's ridge *if every re-read of K and V went to
# HBM* — yet FlashAttention-2 reaches 50–73 % of an A100's peak (Dao 2023). What keeps it
# compute-bound is the **L2 cache**: K and V of one (clip, head) are a few hundred kilobytes, and the
# programs that re-read them (all query blocks of one (clip, head), adjacent on grid axis 0, which the
# GPU schedules roughly in order) typically run at the same time. Their re-reads are then served by
# the 40–50 MB L2, not HBM, and HBM traffic comes close to the read-once count. A larger BLOCK_M raises
# the intensity too, but the query block and its accumulator must fit in registers: BLOCK_M is
# bounded by on-chip memory.
#
# That is FlashAttention's IO theorem (Dao et al. 2022, Theorem 2): with on-chip memory of M elements
# (d ≤ M ≤ Nd), it does $\Theta(N^2 d^2 / M)$ HBM accesses, against $\Theta(Nd + N^2)$ for the
# textbook computation. Our count is the same statement: a query block of BLOCK_M ≈ M/d rows gives
# $N/\text{BLOCK\_M}$ passes over $2Nd$ elements, $\approx 2N^2 d^2 / M$.
#
# The roofline: attainable FLOP/s = min(peak, bandwidth × intensity). The points are *predictions from
# these counts*, not measurements.

# %%
x = torch.logspace(0, 4, 200)
plt.figure(figsize=(8, 4.5))
for (name, (peak, bandwidth)), colour in zip(cards.items(), ("tab:blue", "tab:green")):
    plt.loglog(x, torch.minimum(torch.full_like(x, peak), bandwidth * x) / 1e12, color=colour, label=f"{name} (ridge {ridge[name]:.0f})")
    plt.axvline(ridge[name], color=colour, ls=":", lw=1)
for (name, value), marker in zip(intensity.items(), "oDs^"):
    plt.scatter([value], [min(cards["H100 SXM"][0], cards["H100 SXM"][1] * value) / 1e12], marker=marker, zorder=3,
                label=f"{name}: {value:.0f} FLOP/B (predicted)")
plt.xlabel("arithmetic intensity (FLOP per HBM byte)"); plt.ylabel("attainable TFLOP/s")
plt.title("roofline, AST attention forward (points: predictions on the H100 roof)")
plt.legend(fontsize=8); plt.grid(alpha=0.3, which="both")

# %% [markdown]
# **What FlashAttention-2 changed** (Dao 2023), all visible in the kernels above:
#
# - **Loop order and parallelism.** FlashAttention (2022) looped over key blocks outside and query
#   blocks inside, and parallelised over batch × heads only; FlashAttention-2 puts query blocks
#   outside, so each program owns its rows of O (no read-modify-write of O in HBM) and the grid also
#   spans the sequence: (⌈N / BLOCK_M⌉, B·H), as in `attention_forward`.
# - **Fewer non-matmul FLOPs.** The output is not rescaled by 1/ℓ at every step: `acc` stays
#   unnormalised and is divided once at the end (`acc / l_i`); only the running max rescales it.
# - **Only the LSE is saved** for the backward (one number per row), instead of both m and ℓ.
# - **Work partitioning inside a program**: warps split the query rows rather than the keys, so they
#   need not exchange partial results through shared memory.
#
# ## 7 · On a GPU
#
# Without the interpreter the same code compiles to PTX. What changes:
# - **Autotuning** (`kernels/tuning.py`) picks block sizes, warps and pipeline stages per shape; the
#   interpreter pins one small configuration instead (printed below).
# - **TF32**: for fp32 inputs `tl.dot` would use TF32 tensor cores (~1e-3 relative error);
#   `flash_attention(..., input_precision="ieee")` asks for exact fp32, and the default follows
#   `torch.get_float32_matmul_precision()`.
# - **bf16** works on GPUs only: the interpreter's matmul treats bf16 bit patterns as integers.
# - **Occupancy**: the grid is B·H x ⌈N / BLOCK_M⌉ programs; at batch 1 it may be smaller than the
#   card's number of SMs (132 on an H100 SXM), and larger batches fill the card.
#
# `python -m ast_min.kernels.gpu_table`, run once on a machine with a CUDA GPU, measures everything this
# chapter can only predict: both backwards and every other variant against SDPA at AST's shape in bf16 and
# fp16, the GPU tests, and AST-Base end to end. It writes one dated table (`kernels/GPU_TABLE.md`, the card,
# driver and versions on top), which the cell below prints, as it stands: measured, or saying that no GPU
# run is recorded yet. `kernels/NOTES.md` keeps the predictions it is to be compared with.

# %%
print("interpreter configs (BLOCK_M, BLOCK_N):", [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in tuning.FORWARD_INTERPRETER])
print("GPU forward candidates:", sorted({(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in tuning.FORWARD_GPU}))


def programs(batch: int, block_m: int = 128) -> int:
    return batch * config.num_attention_heads * triton.cdiv(config.sequence_length, block_m)


print({batch: programs(batch) for batch in (1, 8, 64)}, "programs at BLOCK_M 128 (H100 SXM: 132 SMs)")
assert programs(1) < 132 <= programs(8)
from ast_min.kernels import gpu_table  # noqa: E402

print(gpu_table.read_table())
measured = gpu_table.load_raw()
if measured is not None:  # the question of section 5.5, answered on the card the table was measured on
    for dtype in measured["kernel_dtypes"]:
        times = {r["provider"]: r["fwdbwd_ms"] for r in measured["kernels"] if r["dtype"] == dtype and not r["note"]}
        if {"triton", "triton-fused"} <= set(times):
            faster = "one pass (fused)" if times["triton-fused"] < times["triton"] else "split"
            print(f"{dtype}: forward+backward split {times['triton']:.3f} ms, one pass {times['triton-fused']:.3f} ms: {faster} wins")

# %% [markdown]
# ## Now you try
#
# - `ast-min assignment start flash`: write the blockwise forward and backward in torch (online
#   softmax, saved LSE, delta) and check them with `ast-min assignment check flash`.
# - `ast-min assignment start triton`: write a Triton kernel (through the interpreter) and check it
#   with `ast-min assignment check triton`.
# - `ast-min assignment start triton_backward`: write the backward kernels of section 5 in Triton, and
#   check them with `ast-min assignment check triton_backward`.
# - On your own: add a causal mask to `flash_forward_minimal` (which key blocks can a query block skip
#   entirely?), and recompute the arithmetic intensity of section 6 for BLOCK_M = 256 and for Dh = 128.
