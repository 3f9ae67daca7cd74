"""What every attention kernel and launcher shares: constants, tile pointers, buffers, launch settings.

The Triton helpers (`@triton.jit`, inlined into the kernels that call them) address the tiles of a
(B, H, N, Dh) tensor with any strides; the host helpers allocate the buffers a kernel writes and set
the compile-time parameters every kernel takes. `fused_attention.py` and each `variant_*.py` import
them from here, so a variant is written with the same vocabulary as the teaching kernel.

Shape legend: B batch, H heads, N tokens, Dh head dim; BLOCK_M query rows, BLOCK_N key rows and
BLOCK_D head-dim columns per tile.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# `@triton.jit` reads TRITON_INTERPRET when it decorates, i.e. when this module is imported.
INTERPRETER = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")

LOG2E = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) = exp2(x * log2(e))
LN2 = tl.constexpr(0.6931471805599453)  # ln(2): converts a base-2 log-sum-exp back to natural log
# The score given to masked (query, key) pairs: exp2 of it underflows to exactly 0, yet it is finite,
# so (NEG_LARGE - NEG_LARGE) is 0 and never NaN. Scores live in fp32 (or fp64) accumulators.
NEG_LARGE = tl.constexpr(-1.0e30)


@triton.jit
def key_block_bounds(start_m, N_CTX, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(full_hi, hi) for the query block at start_m: key blocks [0, full_hi) need no mask, [full_hi, hi) do.

    Causal: the masked ones are the diagonal blocks [start_m, start_m + BLOCK_M) (BLOCK_M is a multiple
    of BLOCK_N, so they align) and no key after them is seen; otherwise only the partial tail block.
    """
    tl.static_assert(BLOCK_M % BLOCK_N == 0, "the causal split needs BLOCK_M to be a multiple of BLOCK_N")
    if CAUSAL:
        full_hi = start_m
        hi = tl.minimum(start_m + BLOCK_M, N_CTX)
    else:
        full_hi = (N_CTX // BLOCK_N) * BLOCK_N
        hi = N_CTX
    return full_hi, hi


@triton.jit
def tile_ptrs(base, strides, offs_rows, offs_d):
    """Pointers to the (rows, head-dim) tile of a (B, H, N, Dh) tensor whose (batch, head) base is `base`."""
    return base + offs_rows[:, None] * strides[2] + offs_d[None, :] * strides[3]


@triton.jit
def tile_ptrs_t(base, strides, offs_rows, offs_d):
    """The same tile, transposed: (head-dim, rows). Loading through swapped strides costs no copy."""
    return base + offs_d[:, None] * strides[3] + offs_rows[None, :] * strides[2]


@triton.jit
def head_base(base, strides, off_b, off_h):
    """`base` advanced to the (batch, head) slice of a (B, H, N, Dh) tensor."""
    return base + off_b * strides[0] + off_h * strides[1]


# ---- host side --------------------------------------------------------------------------------


def new_buffer(shape, dtype, device) -> torch.Tensor:
    """Every buffer a kernel writes is allocated here (tests replace it to poison the buffers)."""
    return torch.empty(shape, dtype=dtype, device=device)


def unit_last_stride(t: torch.Tensor) -> torch.Tensor:
    """`t` itself if its head-dim stride is 1 (the model's q/k/v views are), else a contiguous copy.

    Triton specialises an integer argument equal to 1 into a constant: with the head-dim stride known
    to be 1 a tile row is contiguous, so loads vectorise and go straight to shared memory (cp.async /
    LDGSTS, pipelined). With an unknown stride every element is its own 2-byte load through registers;
    `python -m ast_min.kernels.inspect` shows that generic code needing more registers than the card has (it
    spills) for the larger tiles. One copy of an odd layout costs less than running that code.
    """
    return t if t.stride(-1) == 1 else t.contiguous()


def block_d(head_dim: int) -> int:
    # The head dim is the reduction side K of Q Kᵀ, and tl.dot needs K >= 16 for fp16/bf16 operands (8 for
    # fp32, 4 for fp64; the 16-bit minimum serves all). Non-powers of two: zero columns, filled by the loads.
    return max(16, triton.next_power_of_2(head_dim))


def acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def input_precision_for(dtype: torch.dtype, input_precision: str | None) -> str:
    # Only fp32 operands have a choice (TF32 tensor cores or exact IEEE fp32); others are exact.
    if dtype != torch.float32:
        return "ieee"
    if input_precision is not None:
        return input_precision
    # Follow torch's own fp32 matmul setting ("highest" is torch's default: no TF32).
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def common_meta(q: torch.Tensor, causal: bool, input_precision: str | None) -> dict:
    head_dim = q.shape[-1]
    return dict(HEAD_DIM=head_dim, BLOCK_D=block_d(head_dim), CAUSAL=causal,
                INPUT_PRECISION=input_precision_for(q.dtype, input_precision), ACC_DTYPE=acc_dtype(q.dtype))
