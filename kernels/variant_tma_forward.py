"""A Hopper forward: the same FlashAttention-2 loop, with tiles loaded through tensor descriptors (TMA).

The "standard" forward builds a pointer for every element of a tile and issues cp.async copies
(LDGSTS); each thread computes addresses and masks. A tensor descriptor (`tl.make_tensor_descriptor`)
describes the (N, Dh) matrix of one (batch, head) once — base, shape, strides, tile shape — and a
load of tile (start_n, 0) becomes one TMA instruction (UTMALDG) issued for the whole tile by the
Tensor Memory Accelerator of sm_90 and later, which also fills rows past N and columns past Dh with
zeros (so no load masks). On older GPUs Triton lowers the same code to ordinary loads.

TMA's rules, which the launcher checks: the tile rows must be contiguous (head-dim stride 1, which the
launcher guarantees by copying otherwise), and the base address and the row stride must be multiples
of 16 bytes (the model's q/k/v views are: rows of 3·H·Dh elements). Descriptors made inside a kernel
need a little global scratch memory, which Triton asks for through `triton.set_allocator`.

Registered as the forward variant "tma": kernels.flash_attention(..., forward="tma").

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from ast_min.kernels import cost, tiles, tuning, variants
from ast_min.kernels.tiles import (
    INTERPRETER, LN2, LOG2E, NEG_LARGE, common_meta, head_base, key_block_bounds, tile_ptrs, unit_last_stride,
)
from ast_min.kernels.variant_standard import _fwd_args


@triton.jit
def _attn_fwd_tma_step(
    acc, l_i, m_i, q,  # running state of this query block, and its Q tile (BLOCK_M, BLOCK_D)
    k_desc, v_desc,  # descriptors of this (batch, head)'s (N, Dh) K and V
    start_n, offs_m, N_CTX, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):
    """One online-softmax step, as in fused_attention._attn_fwd_step; the loads need no masks."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k = k_desc.load([start_n, 0])  # (BLOCK_N, BLOCK_D), zeros past N and past Dh
    v = v_desc.load([start_n, 0])  # (BLOCK_N, BLOCK_D)
    s = tl.dot(q, tl.trans(k), input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE) * qk_scale  # (BLOCK_M, BLOCK_N)
    if MASKED:
        keep = (offs_n < N_CTX)[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, NEG_LARGE)
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=INPUT_PRECISION, out_dtype=ACC_DTYPE)
    return acc, l_i, m_new


@triton.jit
def _attn_fwd_tma(
    Q, K, V, O, LSE,
    q_strides, k_strides, v_strides, o_strides,
    H, N_CTX, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """O and LSE for one block of BLOCK_M query rows of one (batch, head): fused_attention._attn_fwd with TMA loads."""
    tl.static_assert(BLOCK_D >= HEAD_DIM, "the head-dim tile must cover the head dim (BLOCK_D >= HEAD_DIM)")
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)
    off_h = (off_bh % H).to(tl.int64)
    # One descriptor per (batch, head) matrix: shape (N, Dh), row stride from the tensor, unit column stride.
    q_desc = tl.make_tensor_descriptor(head_base(Q, q_strides, off_b, off_h), shape=[N_CTX, HEAD_DIM],
                                       strides=[q_strides[2], 1], block_shape=[BLOCK_M, BLOCK_D])
    k_desc = tl.make_tensor_descriptor(head_base(K, k_strides, off_b, off_h), shape=[N_CTX, HEAD_DIM],
                                       strides=[k_strides[2], 1], block_shape=[BLOCK_N, BLOCK_D])
    v_desc = tl.make_tensor_descriptor(head_base(V, v_strides, off_b, off_h), shape=[N_CTX, HEAD_DIM],
                                       strides=[v_strides[2], 1], block_shape=[BLOCK_N, BLOCK_D])
    O = head_base(O, o_strides, off_b, off_h)
    LSE += off_bh.to(tl.int64) * N_CTX

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = q_desc.load([start_m, 0])  # (BLOCK_M, BLOCK_D)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC_DTYPE)
    l_i = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC_DTYPE)

    full_hi, hi = key_block_bounds(start_m, N_CTX, CAUSAL, BLOCK_M, BLOCK_N)
    for start_n in range(0, full_hi, BLOCK_N):
        acc, l_i, m_i = _attn_fwd_tma_step(acc, l_i, m_i, q, k_desc, v_desc, start_n, offs_m, N_CTX, qk_scale,
                                           BLOCK_N, False, CAUSAL, INPUT_PRECISION, ACC_DTYPE)
    for start_n in range(full_hi, hi, BLOCK_N):
        acc, l_i, m_i = _attn_fwd_tma_step(acc, l_i, m_i, q, k_desc, v_desc, start_n, offs_m, N_CTX, qk_scale,
                                           BLOCK_N, True, CAUSAL, INPUT_PRECISION, ACC_DTYPE)

    acc = acc / l_i[:, None]
    row_ok = offs_m < N_CTX
    tile_ok = row_ok[:, None] & (offs_d < HEAD_DIM)[None, :]
    tl.store(tile_ptrs(O, o_strides, offs_m, offs_d), acc.to(O.dtype.element_ty), mask=tile_ok)
    tl.store(LSE + offs_m, ((m_i + tl.math.log2(l_i)) * LN2).to(LSE.dtype.element_ty), mask=row_ok)


_attn_fwd_tma_tuned = tuning.autotune(_attn_fwd_tma, tuning.FORWARD_INTERPRETER if INTERPRETER else tuning.FORWARD_GPU)


def _scratch(size: int, alignment: int, stream):
    """Global memory Triton asks for to build tensor descriptors inside kernels."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def attention_forward_tma(q, k, v, causal: bool, sm_scale: float, input_precision: str | None):
    """Launch the TMA forward. q, k, v: (B, H, N, Dh), checked. Returns O (B, H, N, Dh), LSE (B, H, N)."""
    B, H, N, Dh = q.shape
    q, k, v = (unit_last_stride(t) for t in (q, k, v))
    if q.is_cuda:
        if torch.cuda.get_device_capability(q.device)[0] < 9:
            raise ValueError("flash_attention: forward='tma' needs a Hopper or newer GPU (TMA); use forward='standard'")
        for name, t in (("q", q), ("k", k), ("v", v)):
            if t.data_ptr() % 16 or (t.stride(2) * t.element_size()) % 16:
                raise ValueError(f"flash_attention: forward='tma' needs {name}'s base address and row stride to be "
                                 "multiples of 16 bytes (TMA's rule); use forward='standard' or a contiguous tensor")
        triton.set_allocator(_scratch)
    o = tiles.new_buffer((B, H, N, Dh), q.dtype, q.device)
    lse = tiles.new_buffer((B, H, N), torch.float64 if q.dtype == torch.float64 else torch.float32, q.device)
    if o.numel() == 0:
        return o, lse
    grid = lambda meta: (triton.cdiv(N, meta["BLOCK_M"]), B * H)  # noqa: E731
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        _attn_fwd_tma_tuned[grid](q, k, v, o, lse, q.stride(), k.stride(), v.stride(), o.stride(),
                                  H, N, sm_scale * LOG2E.value, **common_meta(q, causal, input_precision))
    return o, lse


TMA_FORWARD_KERNEL = variants.KernelSpec("forward (TMA)", _attn_fwd_tma, tuning.FORWARD_GPU, _fwd_args,
                                         lambda p, c: cost.forward(p, c["BLOCK_M"], c["BLOCK_N"]), _attn_fwd_tma_tuned)

variants.register(variants.Variant(
    "tma", "forward", attention_forward_tma, (TMA_FORWARD_KERNEL,),
    "the standard forward with K/V/Q tiles loaded by TMA through tensor descriptors (Hopper and newer)",
    archs=(90,)))
