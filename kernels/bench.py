"""Benchmark: the fused-attention kernel vs torch SDPA's backends vs eager attention.

    python -m ast_min.kernels.bench                      # GPU: AST's shape and standard shapes, fp16 and bf16
    python -m ast_min.kernels.bench --shapes ast --dtypes bf16 --out results.md

On a GPU it times, with `triton.testing.do_bench` medians, the forward (under torch.no_grad, as at
inference: no autograd graph or saved activations) and the forward+backward of
- triton:     kernels.flash_attention (autotuned on first use; the tuning run is not timed)
- sdpa-flash, sdpa-cudnn, sdpa-efficient: torch.nn.functional.scaled_dot_product_attention pinned to
  each backend the card offers (one that refuses the inputs is reported "n/a")
- eager:      ast_min.kernels.reference.attention_math, softmax(q kᵀ · scale) v written out in torch
  (materialises the N x N matrix; it also returns the LSE, one more pass over that matrix)
at AST's shape (B in 1, 8, 64, 128; H 12; N 1214; Dh 64), at N 1280 (the next multiple of 128: the
same work without a masked tail, so the pair shows what masking costs), and at the standard shapes of
FlashAttention's own benchmarks (N 512..8192 with B·N = 16k tokens and H·Dh = 2048, Dh 64 and 128).

FLOPs: forward 4·B·H·N²·Dh (two matmuls of 2·N²·Dh per head); forward+backward 3.5x that (the
backward's five matmuls, one a recomputation, count 2.5x), as FlashAttention's benchmarks count.
The ratio column is SDPA's best backend time / this provider's time (> 1: faster than SDPA).
Beside each triton row, the cost model's roofline time (kernels/cost.py) at the block sizes the
autotuner chose: the floor the measurement can be compared with. Every registered backward variant
is its own provider ("triton" is the default, "triton-fused" the one-pass backward, ...).

On a CPU (no CUDA) the kernel runs through Triton's interpreter at a tiny shape: the command then
only shows that everything runs and agrees; its timings are meaningless.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ast_min import kernels  # imports no Triton module yet: TRITON_INTERPRET may still be set in main()
from ast_min.kernels import cost, variants
from ast_min.kernels.reference import attention_math

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Shape:
    label: str
    B: int
    H: int
    N: int
    Dh: int

    def forward_flops(self) -> float:
        return 4.0 * self.B * self.H * self.N**2 * self.Dh


def ast_shapes() -> list[Shape]:
    shapes = []
    for B in (1, 8, 64, 128):
        shapes.append(Shape("AST", B, 12, 1214, 64))
        shapes.append(Shape("AST, N padded to 1280 (no tail)", B, 12, 1280, 64))
    return shapes


def standard_shapes() -> list[Shape]:
    return [Shape("standard", 16384 // N, 2048 // Dh, N, Dh) for Dh in (64, 128) for N in (512, 1024, 2048, 4096, 8192)]


def eager_attention(q, k, v):
    return attention_math(q, k, v)[0]


def providers(device: str) -> dict:
    """name -> attention function (q, k, v) -> o. SDPA backends only on CUDA (on the CPU: SDPA's default).

    "triton" is the default kernels; every other registered variant is "triton-<name>" (the other
    pass keeps its default). A forward variant a card cannot run (TMA before Hopper) reports "n/a".
    """
    result = {"triton": lambda q, k, v: kernels.flash_attention(q, k, v)}
    for variant in variants.variants():
        if variant.name != variants.DEFAULTS[variant.pass_]:
            result[f"triton-{variant.name}"] = lambda q, k, v, kw={variant.pass_: variant.name}: kernels.flash_attention(
                q, k, v, **kw)
    if device == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def pinned(backend):
            def run(q, k, v):
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(q, k, v)
            return run

        result["sdpa-flash"] = pinned(SDPBackend.FLASH_ATTENTION)
        result["sdpa-cudnn"] = pinned(SDPBackend.CUDNN_ATTENTION)
        result["sdpa-efficient"] = pinned(SDPBackend.EFFICIENT_ATTENTION)
    else:
        result["sdpa"] = lambda q, k, v: F.scaled_dot_product_attention(q, k, v)
    result["eager"] = eager_attention
    return result


def _cpu_median_ms(fn, reps: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_ms(fn, device: str) -> float:
    if device == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    return _cpu_median_ms(fn)


def bench_one(shape: Shape, dtype: torch.dtype, device: str, attention_fns: dict) -> list[dict]:
    """Time every provider at one shape and dtype; each row also records the max |O - O_sdpa-reference| and max|v|."""
    g = torch.Generator().manual_seed(0)
    # q, k, v as views of one (B, N, 3, H, Dh) projection, like the model's
    qkv = torch.randn(shape.B, shape.N, 3, shape.H, shape.Dh, generator=g).to(device=device, dtype=dtype)
    q, k, v = (qkv[:, :, i].transpose(1, 2).requires_grad_() for i in range(3))  # (B, H, N, Dh) each
    do = torch.randn(shape.B, shape.H, shape.N, shape.Dh, generator=g).to(device=device, dtype=dtype)
    with torch.no_grad():
        reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    max_abs_v = v.detach().abs().max().item()  # |O| <= max|v|: the scale an agreement bound is relative to
    rows = []
    for name, fn in attention_fns.items():
        row = {"shape": shape, "dtype": dtype, "provider": name, "max_abs_v": max_abs_v}
        try:
            with torch.no_grad():
                row["max_err"] = (fn(q, k, v).float() - reference).abs().max().item()
            torch.autograd.grad(fn(q, k, v), (q, k, v), do)  # first use autotunes: keep it out of the timings

            def forward_only():
                with torch.no_grad():
                    return fn(q, k, v)

            row["fwd_ms"] = time_ms(forward_only, device)
            row["fwdbwd_ms"] = time_ms(lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), do), device)
            if name.startswith("triton"):
                row["model_us"] = model_microseconds(shape, dtype, name, device)
        except torch.cuda.OutOfMemoryError:
            row["note"] = "out of memory"
        except (RuntimeError, ValueError) as e:  # an SDPA backend or variant that refuses these inputs on this card
            row["note"] = "n/a: " + str(e).splitlines()[0][:60]
        if device == "cuda":
            torch.cuda.empty_cache()
        rows.append(row)
    sdpa_rows = [r for r in rows if r["provider"].startswith("sdpa") and "fwd_ms" in r]
    for key in ("fwd_ms", "fwdbwd_ms"):
        best = min((r[key] for r in sdpa_rows), default=None)
        for r in rows:
            if key in r and best is not None:
                r[key.replace("_ms", "_vs_sdpa")] = best / r[key]
    return rows


def model_card(device: str) -> cost.Card:
    """The cost model's card: this GPU if it is an A100, else H100 (also the CPU run's prediction)."""
    return cost.A100 if device == "cuda" and "A100" in torch.cuda.get_device_name() else cost.H100


def model_microseconds(shape: Shape, dtype: torch.dtype, provider: str, device: str) -> tuple[float, float]:
    """The roofline time (forward, forward+backward) of the triton provider at the configs autotuning chose."""
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype)
    if name is None:
        name = "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    p = cost.Problem(shape.B, shape.H, shape.N, shape.Dh, name)
    chosen = dict(variants.DEFAULTS)
    if "-" in provider:
        variant = provider.split("-", 1)[1]
        chosen[next(v.pass_ for v in variants.variants() if v.name == variant)] = variant
    fwd = variants.get("forward", chosen["forward"]).predicted_cost(p)
    bwd = variants.get("backward", chosen["backward"]).predicted_cost(p)
    card = model_card(device)
    return fwd.roofline_seconds(card, name) * 1e6, (fwd + bwd).roofline_seconds(card, name) * 1e6


def format_table(rows: list[dict], device: str = "cpu") -> str:
    card = model_card(device).name.split()[0]
    header = ("| shape | B | H | N | Dh | dtype | provider | fwd ms | fwd TFLOP/s | fwd vs SDPA best "
              "| fwd+bwd ms | fwd+bwd TFLOP/s | fwd+bwd vs SDPA best | max abs err vs SDPA fp32 "
              f"| model fwd / fwd+bwd µs ({card} roofline) |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    dtype_names = {v: k for k, v in DTYPES.items()}
    for r in rows:
        s = r["shape"]
        cells = [s.label, s.B, s.H, s.N, s.Dh, dtype_names.get(r["dtype"], str(r["dtype"])), r["provider"]]
        if "fwd_ms" in r:
            flops = s.forward_flops()
            cells += [f"{r['fwd_ms']:.3f}", f"{flops / r['fwd_ms'] / 1e9:.1f}", _ratio(r.get("fwd_vs_sdpa")),
                      f"{r['fwdbwd_ms']:.3f}", f"{3.5 * flops / r['fwdbwd_ms'] / 1e9:.1f}", _ratio(r.get("fwdbwd_vs_sdpa")),
                      f"{r['max_err']:.1e}"]
            cells.append("{:.1f} / {:.1f}".format(*r["model_us"]) if "model_us" in r else "")
        else:
            cells += [r.get("note", "")] + [""] * 7
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _ratio(x):
    return "" if x is None else f"{x:.2f}x"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m ast_min.kernels.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=["ast", "standard", "all"], default="all")
    parser.add_argument("--dtypes", default="fp16,bf16", help="comma-separated among fp16, bf16, fp32 (GPU)")
    parser.add_argument("--providers", default=None, help="comma-separated subset of the provider names")
    parser.add_argument("--out", default="bench-kernels.txt", help="file the markdown table is written to (bench-*.txt is git-ignored)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        # The interpreter must be chosen before the kernel module is imported (kernels imports it lazily).
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if not kernels.TRITON_AVAILABLE:
        print("triton is not installed: nothing to benchmark", file=sys.stderr)
        return 2
    try:
        dtypes = [DTYPES[d.strip()] for d in args.dtypes.split(",")]
    except KeyError as e:
        print(f"unknown dtype {e}; use a comma-separated list among {sorted(DTYPES)}", file=sys.stderr)
        return 2
    fns = providers(device)
    if args.providers:
        unknown = set(args.providers.split(",")) - set(fns)
        if unknown:
            print(f"unknown providers {sorted(unknown)}; choose among {sorted(fns)}", file=sys.stderr)
            return 2
        fns = {k: v for k, v in fns.items() if k in args.providers.split(",")}

    if device == "cuda":
        shapes = {"ast": ast_shapes(), "standard": standard_shapes(), "all": ast_shapes() + standard_shapes()}[args.shapes]
        title = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    else:
        shapes = [Shape("tiny (CPU interpreter)", 1, 2, 70, 16)]
        dtypes = [torch.float32, torch.float16]  # the interpreter cannot do bf16 matmuls
        title = "CPU, Triton interpreter: TIMINGS ARE MEANINGLESS (correctness smoke run only)"
        print(f"no CUDA device: running the Triton interpreter at a tiny shape; {title.split(': ')[1]}")

    rows = []
    for shape in shapes:
        for dtype in dtypes:
            new_rows = bench_one(shape, dtype, device, fns)
            rows += new_rows
            print("\n".join(format_table(new_rows, device).splitlines()[2:]), flush=True)  # progress, no header

    table = format_table(rows, device)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(args.out, "w") as f:
        f.write(f"# kernels.bench: {title}, {stamp}\n\n{table}\n")
    print(f"\n{table}\n\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
