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
# Every AST layer computes, for each of its 12 heads, attention over L = 1214 tokens:
#
# $$O = \mathrm{softmax}(S)\,V, \qquad S = \tfrac{1}{\sqrt{d}}\,Q K^\top \quad (Q, K, V \in \mathbb{R}^{N\times d},\ d = 64).$$
#
# This chapter:
# 1. counts bytes and FLOPs to show why the textbook computation is limited by memory, not arithmetic;
# 2. derives the *online softmax* recurrence (Milakov & Gimelshein 2018) and checks it numerically;
# 3. builds the blockwise algorithm of FlashAttention-2 (Dao 2023) by hand, then compares it with
#    `kernels.blockwise_attention`, ast-min's plain-torch reference;
# 4. runs the Triton kernel `kernels.flash_attention` — forward *and* backward — through Triton's CPU
#    interpreter and compares it with `torch.nn.functional.scaled_dot_product_attention`;
# 5. says what changes on a GPU.
#
# Shapes: B batch, H heads, N tokens, Dh (= d) head dim.

# %%
import os

# Triton kernels run on the CPU only through Triton's interpreter, which must be chosen before the
# kernel module is imported (`kernels` imports it on first use).
os.environ.setdefault("TRITON_INTERPRET", "1")

import math

import torch
import torch.nn.functional as F

import kernels
from ast_min import ASTConfig

torch.manual_seed(0)

# %% [markdown]
# ## 1. Why N x N attention is memory-bound
#
# Take AST-Base's real shape from its config (`sequence_length` = 12 x 101 patches + 2 tokens).
# The textbook computation writes S (N x N per head) to memory, reads it for the softmax, writes P,
# and reads P again for P V. A fused kernel reads Q, K, V once and writes O once.

# %%
config = ASTConfig()
B, H, N, Dh = 1, config.num_attention_heads, config.sequence_length, config.head_dim
bytes_per_el = 2  # fp16 / bf16
flops = 4 * B * H * N**2 * Dh  # two matmuls (Q Kᵀ and P V), 2·N²·Dh FLOPs each, per head
bytes_qkvo = 4 * B * H * N * Dh * bytes_per_el  # read Q, K, V; write O
bytes_scores = 4 * B * H * N * N * bytes_per_el  # write S, read S, write P, read P
print(f"N = {N}, H = {H}, Dh = {Dh}: {flops / 1e9:.2f} GFLOP per layer and clip")
print(f"unfused: {(bytes_qkvo + bytes_scores) / 1e6:.1f} MB moved -> {flops / (bytes_qkvo + bytes_scores):.0f} FLOP/byte")
print(f"fused:   {bytes_qkvo / 1e6:.1f} MB moved -> {flops / bytes_qkvo:.0f} FLOP/byte")
# An H100 SXM does ~989 TFLOP/s (dense fp16/bf16) over ~3.35 TB/s of HBM: a kernel needs ~295 FLOP per
# byte to be limited by arithmetic rather than by memory.
ridge = 989e12 / 3.35e12
print(f"H100 ridge point: {ridge:.0f} FLOP/byte")
assert flops / (bytes_qkvo + bytes_scores) < ridge < flops / bytes_qkvo

# %% [markdown]
# The unfused version sits at ~30 FLOP/byte, an order of magnitude below the ridge: the card waits on
# memory (and the softmax itself does ~5 FLOPs per 4 bytes it moves). The fused one is ~600 FLOP/byte:
# arithmetic-bound, which is where we want to be. Fusing needs one trick: a softmax that can be computed
# while the keys stream past, a block at a time.
#
# ## 2. The online softmax
#
# For one query row with scores $s_1..s_N$, softmax needs $m = \max_j s_j$ (for stability) and
# $\ell = \sum_j e^{s_j - m}$. Split the keys into blocks. After blocks $1..j$ keep $m_j$ and
# $\ell_j = \sum_{i \le j\text{-th block}} e^{s_i - m_j}$. A new block with scores $x$ gives
#
# $$m_{j+1} = \max(m_j, \max x), \qquad \ell_{j+1} = \ell_j\, e^{m_j - m_{j+1}} + \sum e^{x - m_{j+1}},$$
#
# because every term summed so far was relative to $m_j$ and must now be relative to $m_{j+1}$:
# $e^{s - m_j} \cdot e^{m_j - m_{j+1}} = e^{s - m_{j+1}}$. At the end $\log\ell + m$ is the
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
# ## 3. Blockwise attention, by hand
#
# FlashAttention-2's forward (Algorithm 1): for each block of query rows, stream the key/value blocks,
# keeping per row the running max `m`, sum `l` and unnormalised output `acc`. The log-sum-exp
# `m + log l` is saved: the backward pass uses it to recompute P = exp(S - LSE) without storing it.

# %%
def blockwise_by_hand(q, k, v, block_m=16, block_n=16):
    """q, k, v: (N, Dh) for one head. Returns O (N, Dh) and LSE (N,)."""
    n, d = q.shape
    scale = d**-0.5
    o, lse = torch.empty_like(q), torch.empty(n, dtype=q.dtype)
    for i in range(0, n, block_m):
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
        o[i : i + block_m] = acc / l[:, None]
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
# The backward pass recomputes P block by block from the saved LSE and uses
# delta = rowsum(dO ∘ O): dV = Pᵀ dO, dS = P ∘ (dO Vᵀ − delta), dQ = scale · dS K, dK = scale · dSᵀ Q.

# %%
do = torch.randn_like(q)
grads = kernels.blockwise_attention_backward(do, q, k, v, o_lib, lse_lib, block_m=16, block_n=16)
q_, k_, v_ = (t.clone().requires_grad_() for t in (q, k, v))
grads_autograd = torch.autograd.grad(F.scaled_dot_product_attention(q_, k_, v_), (q_, k_, v_), do)
for name, g, g_ref in zip("qkv", grads, grads_autograd):
    print(f"d{name}: blockwise vs autograd(SDPA) max diff {(g - g_ref).abs().max().item():.1e}")
    assert torch.allclose(g, g_ref, atol=1e-12)

# %% [markdown]
# ## 4. The Triton kernel, through the interpreter
#
# `kernels/fused_attention.py` is the same loop as a Triton program per (query block, batch x head):
# the docstring of `_attn_fwd` has the pseudo-code. Two GPU details show up in it: scores are kept in
# base 2 (log2 e is folded into the scale so each exponential is one `exp2`), and P is cast to the
# input dtype before the P V matmul, so fp16 / bf16 inputs use tensor cores for both matmuls.
#
# The interpreter executes the kernel with numpy, tile by tile, so it is slow: tiny shapes here. The
# q, k, v below are views of one fused projection, as in the model (non-contiguous strides).

# %%
B, H, N, Dh = 2, 3, 53, 32  # 53: a prime, so every block size leaves a masked tail
qkv = torch.randn(B, N, 3, H, Dh)
q, k, v = (qkv[:, :, i].transpose(1, 2).requires_grad_() for i in range(3))  # (B, H, N, Dh) views
o, lse = kernels.flash_attention(q, k, v, return_lse=True)
do = torch.randn_like(o)
dq, dk, dv = torch.autograd.grad(o, (q, k, v), do)

q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
o_ref = F.scaled_dot_product_attention(q64, k64, v64)
refs = torch.autograd.grad(o_ref, (q64, k64, v64), do.double())
print(f"O:   max |triton - SDPA(float64)| = {(o - o_ref).abs().max().item():.1e}")
lse_err = (lse - torch.logsumexp(q64 @ k64.mT / Dh**0.5, -1)).abs().max().item()
print(f"LSE: max |triton - logsumexp|     = {lse_err:.1e}")
assert lse_err < 2e-5
for name, g, g_ref in zip("qkv", (dq, dk, dv), refs):
    print(f"d{name}:  max |triton - SDPA autograd| = {(g - g_ref).abs().max().item():.1e}")
    assert torch.allclose(g.double(), g_ref, atol=2e-5)
assert torch.allclose(o.double(), o_ref, atol=2e-5)

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
# ## 5. On a GPU
#
# Without the interpreter the same code compiles to PTX. What changes:
# - **Autotuning** (`kernels/tuning.py`) picks block sizes, warps and pipeline stages per shape; the
#   interpreter pins one small configuration instead.
# - **TF32**: for fp32 inputs `tl.dot` would use TF32 tensor cores (~1e-3 relative error);
#   `flash_attention(..., input_precision="ieee")` asks for exact fp32, and the default follows
#   `torch.get_float32_matmul_precision()`.
# - **bf16** works on GPUs only: the interpreter's matmul treats bf16 bit patterns as integers.
# - **Occupancy**: AST at batch 1 launches 12 heads x ⌈1214 / 128⌉ = 120 programs, fewer than an
#   H100's 132 SMs; larger batches fill the card.
#
# `python -m kernels.bench` times this kernel against SDPA's flash, cuDNN and memory-efficient
# backends and eager attention; `kernels/NOTES.md` holds the table. This project has not yet run it
# on a GPU, so NOTES.md lists predictions, not measurements.

# %%
programs = lambda batch, block_m=128: batch * config.num_attention_heads * math.ceil(config.sequence_length / block_m)  # noqa: E731
print({batch: programs(batch) for batch in (1, 8, 64)})
assert programs(1) < 132 <= programs(8)
