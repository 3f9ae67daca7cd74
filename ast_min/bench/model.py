"""`python -m ast_min.bench model`: ms per clip of AST-Base, ast-min against transformers, in one run.

Both models hold the same weights (a transformers AST saved with `save_pretrained` and loaded by
ast-min), run the same input under `torch.inference_mode`, with the same attention backend (sdpa
unless `--attn` says otherwise for ast-min). Before timing each cell, the two outputs are
compared, so a fast wrong model cannot win. Each cell is timed `--repeats` times after a warm-up
run, the two models alternating, and the best time is kept (the machine's noise only ever adds
time).

Columns: ms per clip for ast-min and transformers, their ratio (transformers / ast-min: above 1
means ast-min is faster), and ast-min's achieved GFLOP/s (`forward_flops` below, printed
in the header) with its fraction of the matmul peak: --peak-fp32 / --peak-bf16 when given, else
measured at the start of each dtype's rows on this machine, with these threads (`matmul_peak`).

Run it on a quiet machine: the numbers are only as good as the cores are idle. `--layers 2
--repeats 1` makes a quick correctness run.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from ast_min.backends import ATTN_IMPLEMENTATIONS
from ast_min.config import ASTConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Outputs must agree before a cell is timed: float32 differs only by operation order; bf16/fp16
# round every activation to 8/11 mantissa bits, and two implementations round differently.
AGREE = {torch.float32: 1e-3, torch.bfloat16: 0.25, torch.float16: 0.05}


def forward_flops(config: ASTConfig) -> float:
    """FLOPs (2 per multiply-add) of one clip's forward pass, by arithmetic on the config.

    Patch projection 2*P*p*p*D; per layer: q, k, v, output projections 8*L*D^2, attention scores and
    weighted sum 4*L^2*D, MLP 4*L*D*I; head 2*D*C. AST-Base's L = 2 + 12 * 101 = 1214 tokens, six
    times ViT-B/16's 197 on a 224 x 224 image, make every term larger, the attention term quadratically.
    """
    c = config
    L, D, I = c.sequence_length, c.hidden_size, c.intermediate_size
    per_layer = 8 * L * D * D + 4 * L * L * D + 4 * L * D * I
    return 2.0 * c.num_patches * c.patch_size**2 * D + c.num_hidden_layers * per_layer + 2.0 * D * c.num_labels


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ast_min.bench model", description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the best is kept (default: 3)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12, AST-Base)")
    parser.add_argument("--attn", default="sdpa", choices=ATTN_IMPLEMENTATIONS, help="ast-min's backend")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-fp32", type=float, default=None, help="matmul peak, GFLOP/s, float32 (default: measured)")
    parser.add_argument("--peak-bf16", type=float, default=None, help="matmul peak, GFLOP/s, bf16/fp16 (default: measured)")
    return parser.parse_args(argv)


def best_times(fns, repeats: int) -> list[float]:
    """Best wall time of each function; runs are interleaved so that load from other processes
    hits every contender alike rather than whichever happened to run during a busy spell."""
    for fn in fns:
        fn()  # warm-up: allocator, oneDNN/cuBLAS kernel selection and weight packing
    times = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i] = min(times[i], time.perf_counter() - start)
    return times


def matmul_peak(dtype: torch.dtype, device: torch.device, sync, n: int = 2048) -> float:
    """GFLOP/s of an n x n matmul in `dtype`, best of 5: what the model's matmuls could reach here."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))

    def matmul():
        a @ b
        sync()

    (seconds,) = best_times([matmul], repeats=5)
    return 2 * n**3 / seconds / 1e9


def build(layers: int, device: torch.device, attn: str):
    """The same random AST-Base weights in transformers and in ast-min."""
    import transformers

    from ast_min.model import ASTForAudioClassification

    torch.manual_seed(0)
    config = transformers.ASTConfig(num_hidden_layers=layers, num_labels=527)
    reference = transformers.ASTForAudioClassification(config)
    with torch.no_grad():  # transformers zeroes the tokens and position embeddings: make them matter
        for p in reference.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    with tempfile.TemporaryDirectory() as d:
        reference.save_pretrained(d)
        ours = ASTForAudioClassification.from_pretrained(d, attn_implementation=attn)
    reference.set_attn_implementation("sdpa")
    return ours.to(device).eval(), reference.to(device).eval()


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ours, reference = build(args.layers, device, args.attn)
    flops = forward_flops(ours.config)
    print(f"AST ({args.layers} layers, {ours.config.sequence_length} tokens), {flops / 1e9:.0f} GFLOP per clip forward")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"ast-min attention: {args.attn}; transformers attention: sdpa; best of {args.repeats} runs\n")
    header = f"{'batch':>5} {'dtype':>9} {'ast-min ms/clip':>16} {'transformers ms/clip':>21} {'ratio':>6} {'GFLOP/s':>8} {'of peak':>8}"
    print(header)
    print("-" * len(header))
    slower, peaks = [], {}
    for name in args.dtypes:
        dtype = DTYPES[name]
        ours.to(dtype)
        reference.to(dtype)
        peak = args.peak_fp32 if dtype == torch.float32 else args.peak_bf16
        peak = peaks[name] = peak or matmul_peak(dtype, device, sync)
        for batch in args.batch_sizes:
            x = torch.randn(batch, ours.config.max_length, ours.config.num_mel_bins, device=device, dtype=dtype)
            with torch.inference_mode():
                a, b = ours(x).logits.float(), reference(x).logits.float()
                scale = b.abs().max().item() + 1e-6
                if not (a - b).abs().max().item() <= AGREE[dtype] * scale:
                    raise RuntimeError(f"ast-min and transformers disagree at batch {batch}, {name}: not timing")

                def run(model):
                    def go():
                        model(x)
                        sync()

                    return go

                t_ours, t_ref = (t / batch for t in best_times([run(ours), run(reference)], args.repeats))
            achieved = flops / t_ours / 1e9
            ratio = t_ref / t_ours
            if ratio < 1:
                slower.append((batch, name))
            print(f"{batch:>5} {name:>9} {1e3 * t_ours:>16.1f} {1e3 * t_ref:>21.1f} {ratio:>6.2f} {achieved:>8.1f} {achieved / peak:>8.0%}")
    print("\nmatmul peak, GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    if slower:
        print(f"\nast-min was slower in {slower} (noise on a busy machine shows as ratios just under 1)")
    return 0
