"""An analytic cost model of the attention kernels: FLOPs, HBM bytes, intensity, roofline time.

Each kernel is counted the way its loops run (FlashAttention, Dao et al. 2022, §3.1 "IO complexity";
roofline: Williams, Waterman & Patterson 2009):

- Bytes: every tile a program loads is counted as read from HBM, once per program that loads it. So
  a forward program (one query block) reads its Q rows once and *every* key block it visits: K and V
  are re-read once per query block, which is what makes the block size matter. Masked-out elements
  (rows past N, padded head-dim columns) are not loaded and not counted. Caches that serve a second
  program's K reads from L2 make the real traffic lower: this is the no-reuse bound, the one a kernel
  must beat by tiling, not by luck.
- FLOPs: only the block matmuls (tl.dot, 2·m·n·k each) on the tiles as launched, padding included
  (a 64-wide head dim in a 64-wide tile wastes nothing; Dh 80 in a 128-wide tile wastes 37.5 %). The
  softmax's exponentials and the rescaling are O(N²) scalar work, not counted.
- Roofline time: max(FLOPs / peak FLOP/s, bytes / peak bandwidth) on each card, from the published
  dense peaks (spec sheets cited in kernels/NOTES.md). A kernel that reaches it is perfect; real
  kernels stay well short of the compute peak (the softmax's exponentials, the masking and the
  pipeline's fill and drain are not free), so read it as a floor, not a forecast.

`useful_flops` is the convention benchmarks report TFLOP/s in (forward 4·B·H·N²·Dh, halved for causal;
backward 2.5x the forward), so measured TFLOP/s and the model's compare directly.

Shape legend: B batch, H heads, N tokens, Dh head dim; BM, BN the query and key block sizes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    """Published dense peaks of one GPU: FLOP/s per matmul operand kind, and HBM bytes/s."""

    name: str
    flops: dict  # operand kind ("fp16", "bf16", "tf32", "fp32", "fp64") -> FLOP/s
    bandwidth: float  # bytes/s


# NVIDIA's data sheets, dense (no sparsity) tensor-core peaks; fp32 "ieee" runs on the CUDA cores.
A100 = Card("A100 SXM4 80GB", {"fp16": 312e12, "bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12, "fp64": 19.5e12}, 2.039e12)
H100 = Card("H100 SXM5", {"fp16": 989.4e12, "bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12, "fp64": 66.9e12}, 3.35e12)
CARDS = (A100, H100)


@dataclass(frozen=True)
class Problem:
    """One attention call: (B, H, N, Dh) inputs of `element_bytes` each, causal or not."""

    B: int
    H: int
    N: int
    Dh: int
    dtype: str = "bf16"  # "fp16", "bf16", "fp32" (IEEE), "tf32" (fp32 inputs, TF32 matmuls), "fp64"
    causal: bool = False

    @property
    def element_bytes(self) -> int:
        return {"fp16": 2, "bf16": 2, "fp32": 4, "tf32": 4, "fp64": 8}[self.dtype]

    @property
    def stat_bytes(self) -> int:
        """Bytes of one LSE / delta entry: fp32, fp64 for fp64 inputs."""
        return 8 if self.dtype == "fp64" else 4

    @property
    def block_d(self) -> int:
        """The head-dim tile width: next power of two, at least 16 (as the launcher picks it)."""
        return max(16, 1 << (self.Dh - 1).bit_length())

    def useful_flops(self, passes: str = "forward") -> float:
        """The benchmark convention: forward 4·B·H·N²·Dh (half if causal); backward 2.5x that."""
        f = 4.0 * self.B * self.H * self.N**2 * self.Dh * (0.5 if self.causal else 1.0)
        return {"forward": f, "backward": 2.5 * f, "forward+backward": 3.5 * f}[passes]


@dataclass(frozen=True)
class Cost:
    flops: float  # block-matmul FLOPs as launched (tiles, padding included)
    bytes: float  # HBM bytes read + written, no reuse across programs

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    @property
    def intensity(self) -> float:
        """FLOP per byte."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def roofline_seconds(self, card: Card, dtype: str) -> float:
        return max(self.flops / card.flops[dtype], self.bytes / card.bandwidth)

    def bound(self, card: Card, dtype: str) -> str:
        return "compute" if self.flops / card.flops[dtype] >= self.bytes / card.bandwidth else "memory"


def _blocks(n: int, block: int):
    """(start, rows) of each block of `block` rows covering range(n); the last may be partial."""
    return [(start, min(block, n - start)) for start in range(0, n, block)]


def _keys_seen_by_query_block(p: Problem, start_m: int, block_m: int) -> int:
    # Causal: keys 0..min(start_m + BM, N) (the diagonal block's keys are loaded whole, then masked).
    return min(start_m + block_m, p.N) if p.causal else p.N


def _key_blocks_seen(p: Problem, start_m: int, block_m: int, block_n: int) -> int:
    return -(-_keys_seen_by_query_block(p, start_m, block_m) // block_n)


def _queries_seen_by_key_block(p: Problem, start_n: int) -> int:
    # Causal: queries start_n..N (the query loop starts at the key block's diagonal).
    return p.N - start_n if p.causal else p.N


def _query_blocks_seen(p: Problem, start_n: int, block_m: int) -> int:
    return -(-_queries_seen_by_key_block(p, start_n) // block_m)


def forward(p: Problem, block_m: int, block_n: int) -> Cost:
    """The forward kernel: per query block, Q in, K and V for every key block visited, O and LSE out."""
    row = p.Dh * p.element_bytes
    flops = nbytes = 0.0
    for start_m, rows in _blocks(p.N, block_m):
        nbytes += rows * row * 2 + rows * p.stat_bytes  # Q in, O out, LSE out
        nbytes += 2 * _keys_seen_by_query_block(p, start_m, block_m) * row  # K and V, re-read per query block
        flops += _key_blocks_seen(p, start_m, block_m, block_n) * 2 * (2.0 * block_m * block_n * p.block_d)
    return Cost(p.B * p.H * flops, p.B * p.H * nbytes)


def delta(p: Problem) -> Cost:
    """delta = rowsum(dO ∘ O): O and dO in, one number per row out; no matmul."""
    return Cost(0.0, p.B * p.H * p.N * (2 * p.Dh * p.element_bytes + p.stat_bytes))


def backward_dkdv(p: Problem, block_m: int, block_n: int) -> Cost:
    """dK/dV: per key block, K and V in, Q, dO, LSE, delta for every query block visited, dK and dV out.

    Four block matmuls per visited query block: Sᵀ, dV += Pᵀ dO, dPᵀ, dK += dSᵀ Q.
    """
    row = p.Dh * p.element_bytes
    flops = nbytes = 0.0
    for start_n, keys in _blocks(p.N, block_n):
        nbytes += keys * row * 4  # K, V in; dK, dV out
        nbytes += _queries_seen_by_key_block(p, start_n) * (2 * row + 2 * p.stat_bytes)
        flops += _query_blocks_seen(p, start_n, block_m) * 4 * (2.0 * block_m * block_n * p.block_d)
    return Cost(p.B * p.H * flops, p.B * p.H * nbytes)


def backward_dq(p: Problem, block_m: int, block_n: int) -> Cost:
    """dQ: per query block, Q, dO, LSE, delta in, K and V for every key block visited, dQ out.

    Three block matmuls per visited key block: S, dP, dQ += dS K.
    """
    row = p.Dh * p.element_bytes
    flops = nbytes = 0.0
    for start_m, rows in _blocks(p.N, block_m):
        nbytes += rows * (3 * row + 2 * p.stat_bytes)  # Q, dO in; dQ out; LSE, delta in
        nbytes += 2 * _keys_seen_by_query_block(p, start_m, block_m) * row
        flops += _key_blocks_seen(p, start_m, block_m, block_n) * 3 * (2.0 * block_m * block_n * p.block_d)
    return Cost(p.B * p.H * flops, p.B * p.H * nbytes)


def backward_fused(p: Problem, block_m: int, block_n: int) -> Cost:
    """The one-pass backward: dK/dV's loop, plus an atomic add of each dQ tile into an fp32 buffer.

    Five block matmuls per visited query block (dK/dV's four and dQ += dS K). Each atomic add is a
    read-modify-write of stat-width (fp32/fp64) values, counted as one read and one write. The
    buffer's zero fill and final scale-and-cast run outside the kernel: see `dq_epilogue`.
    """
    row = p.Dh * p.element_bytes
    acc_row = p.Dh * p.stat_bytes
    flops = nbytes = 0.0
    for start_n, keys in _blocks(p.N, block_n):
        nbytes += keys * row * 4
        queries = _queries_seen_by_key_block(p, start_n)
        nbytes += queries * (2 * row + 2 * p.stat_bytes + 2 * acc_row)
        flops += _query_blocks_seen(p, start_n, block_m) * 5 * (2.0 * block_m * block_n * p.block_d)
    return Cost(p.B * p.H * flops, p.B * p.H * nbytes)


def dq_epilogue(p: Problem) -> Cost:
    """The fused backward's torch-side passes over its fp32 dQ buffer: zero fill, then scale, cast and store."""
    acc_row = p.Dh * p.stat_bytes
    return Cost(0.0, p.B * p.H * p.N * (acc_row + 2 * acc_row + acc_row + p.Dh * p.element_bytes))


def table(rows: list[tuple[str, Problem, Cost]]) -> str:
    """A markdown table: kernel, FLOPs, bytes, intensity and roofline time on each card."""
    head = "| kernel | GFLOP (tiles) | MB (HBM, no reuse) | FLOP/byte | " + " | ".join(
        f"roofline µs {c.name.split()[0]} (bound)" for c in CARDS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, p, c in rows:
        cells = [name, f"{c.flops / 1e9:.2f}", f"{c.bytes / 1e6:.2f}", f"{c.intensity:.0f}"]
        cells += [f"{c.roofline_seconds(card, p.dtype) * 1e6:.1f} ({c.bound(card, p.dtype)})" for card in CARDS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
