"""Block sizes for the fused-attention kernels: autotuned on GPUs, pinned in the interpreter.

This is the architecture-specific part, kept apart from the teaching kernels in `fused_attention.py`.

GPU candidates (chosen for Hopper/Ampere, head dims 16..128; see NOTES.md for the reasoning):
- forward: a query block of 64 or 128 rows stays in registers while key blocks of 32..128 stream past.
- dQ: the same query blocks, against key blocks of 16..64.
- dK/dV (and the one-pass backward): the transpose, key blocks of 64..128 rows against query blocks
  of 16..64.
The causal split of the loops needs the outer block to be a multiple of the inner one; every
candidate obeys that. Configurations that exceed a card's shared memory are skipped by the autotuner
(it catches the compiler's OutOfResources).

Interpreter: autotuning would run every configuration through the (slow) interpreter, so one small
configuration is pinned; its small blocks make tests with N of a few dozen cross several block
boundaries (full blocks, the diagonal and the masked tail all get exercised).

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import triton

# Tuning is keyed by the problem's compile-time shape; tensor dtypes are added by the autotuner itself.
TUNING_KEY = ["N_CTX", "HEAD_DIM", "CAUSAL", "INPUT_PRECISION"]

DELTA_BLOCK_M = 64  # rows per program of the tiny delta = rowsum(dO * O) kernel; memory-bound, not tuned


def _configs(blocks: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in blocks]


# (BLOCK_M, BLOCK_N, num_warps, num_stages). Every GPU candidate must compile for sm_80 and sm_90
# without spilling registers and within shared memory at AST's shape (`python -m ast_min.kernels.inspect` shows
# it; tests/test_kernels_lab.py enforces it); kernels/NOTES.md ("Static inspection") records, dated,
# which candidates were dropped for spilling. Four warps holding a 128-row fp32 accumulator plus the
# S/P tile sit at the 255-register ceiling on Ampere, where mma.sync keeps every accumulator in registers.
FORWARD_GPU = _configs([
    (128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (64, 32, 4, 4), (128, 128, 8, 2),
])
BACKWARD_DKDV_GPU = _configs([
    (32, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 2), (16, 64, 4, 4), (64, 128, 8, 2),
])
BACKWARD_DQ_GPU = _configs([
    (128, 32, 8, 3), (128, 64, 8, 3), (64, 16, 4, 4), (64, 32, 8, 3),
])

FORWARD_INTERPRETER = _configs([(32, 16, 4, 1)])
BACKWARD_DKDV_INTERPRETER = _configs([(16, 32, 4, 1)])
BACKWARD_DQ_INTERPRETER = _configs([(32, 16, 4, 1)])

# The one-pass backward (variant_fused_backward.py) holds dK/dV's tiles and adds a dQ tile per step:
# more live registers than dK/dV, so fewer candidates survive the no-spill rule.
BACKWARD_FUSED_GPU = _configs([
    (32, 128, 8, 3), (32, 64, 4, 3), (16, 64, 4, 4), (16, 128, 8, 3),
])
BACKWARD_FUSED_INTERPRETER = _configs([(16, 32, 4, 1)])


def autotune(kernel, configs: list[triton.Config], reset_to_zero: list[str] | None = None):
    """`kernel` wrapped in triton.autotune over `configs` (a GPU list, or an interpreter's pinned one).

    The autotuner runs a kernel once per candidate: safe for kernels that write their outputs whole;
    a kernel that accumulates into a buffer (atomic adds) names it in `reset_to_zero`, which the
    autotuner zeroes before every trial and once more before the real run.
    """
    return triton.autotune(configs, key=TUNING_KEY, reset_to_zero=reset_to_zero)(kernel)
