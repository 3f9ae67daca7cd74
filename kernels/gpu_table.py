"""`python -m ast_min.kernels.gpu_table`: every GPU figure the notes and the chapters quote, in one run.

    python -m ast_min.kernels.gpu_table                                   # on a CUDA machine, from a checkout
    python -m ast_min.kernels.gpu_table --render gpu_table.json --out t.md   # the table again, from a raw file

On a machine with a CUDA GPU it runs, in this order, meant to take under 8 minutes (the table says whether it did):

1. **the kernels** at AST's attention shape (B 64, H 12, N 1214, Dh 64), bf16 and fp16: every registered
   forward and backward variant (`triton` is the default pair, `triton-<name>` each other variant),
   forward and forward+backward, against each backend of torch's SDPA and eager attention, with the
   agreement of each output with SDPA in fp32 (kernels/bench.py does the timing);
2. **AST-Base end to end**, batch 64, bf16: ast-min with each attention backend (eager, sdpa, triton)
   against transformers (sdpa, eager), one set of weights, forward and forward+backward; the logits are
   compared with transformers' before anything is timed (ast_min.bench.model builds the pair);
3. **the GPU tests**, `pytest tests/test_kernels.py -k gpu`, in a subprocess: the kernels at AST's shape
   in fp16, bf16 and fp32, head dims 16 to 128, and every GPU block configuration run with its own warps
   and stages (the interpreter ignores both). Its exit status and its counts are checked: a run that
   crashed, failed, or selected no test is reported as FAILED, never as a table without a result.

It writes the raw measurements (gpu_table.json, beside this file) and the table rendered from them
(GPU_TABLE.md, beside this file): the date, the card, the driver, CUDA, torch, triton and transformers
versions, the commit, then one section per part, and a verdict on top. `kernels/NOTES.md` points to
that table, and chapters 03 and 05 print it. `--render` turns a raw file back into the table: that is
how the table's format is tested on machines without a GPU. Without CUDA (and without `--render`) the
command refuses in one line and writes nothing.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
TABLE_PATH = HERE / "GPU_TABLE.md"
RAW_PATH = HERE / "gpu_table.json"
FORMAT = 1  # the raw file's format version; render() refuses others

AST_ATTENTION = dict(B=64, H=12, N=1214, Dh=64)  # AST-Base at batch 64: 12 heads, 12 x 101 patches + 2 tokens
KERNEL_DTYPES = ("bf16", "fp16")
MODEL_BATCH, MODEL_DTYPE = 64, "bf16"
MODEL_BACKENDS = {"ast-min": ("eager", "sdpa", "triton"), "transformers": ("sdpa", "eager")}
GPU_TESTS = ("tests/test_kernels.py", "-k", "gpu")  # every test of the file whose name says it needs a GPU
BUDGET_S = 480.0  # the whole run's target; going over it is reported, not a failure
TESTS_TIMEOUT_S = 1200.0  # a hung test run is stopped and reported as such, whatever the budget

# A kernel output agrees with SDPA in fp32 when |O - O_ref| <= bound · max|v| (|O| <= max|v|: O averages
# rows of v). The kernel rounds P to the input dtype before P V, and O once more when it is stored: two
# roundings of 2^-11 (fp16) or 2^-8 (bf16) relative, each; twice that again leaves a margin for the
# fp32 accumulation. tests/test_kernels.py argues the same bounds.
# (fp32, which the CPU run of the tests uses: IEEE fp32 against fp32 SDPA, a few ulps of each sum.)
AGREEMENT = {"fp16": 4 * 2**-11, "bf16": 4 * 2**-8, "fp32": 2e-5}
# ast-min's logits agree with transformers' (same weights) within this fraction of their largest
# magnitude: ast_min.bench.model's bounds (bf16 rounds every activation to 8 bits; tests check they match).
MODEL_AGREEMENT = {"bf16": 0.25, "fp16": 0.05, "fp32": 1e-3}

UNMEASURED = """# GPU table

**Not measured yet.** No machine with a CUDA GPU has run `python -m ast_min.kernels.gpu_table` on this
version of ast-min. Run it there, from a checkout (it runs the GPU tests of `tests/test_kernels.py`):
it replaces this file with the dated table, and writes the raw measurements beside it. Until then the
evidence is the interpreter's correctness checks, the static inspection and the cost model
(kernels/NOTES.md).
"""


# --------------------------------------------------------------------------------------------------
# Reading the table (what kernels/NOTES.md and the chapters use)
# --------------------------------------------------------------------------------------------------


def read_table(path: pathlib.Path = TABLE_PATH) -> str:
    """The current table: measured and dated, or the line saying it is not measured yet."""
    return path.read_text() if path.exists() else UNMEASURED


def load_raw(path: pathlib.Path = RAW_PATH) -> dict | None:
    """The raw measurements behind the table, or None when no GPU run has been recorded."""
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------------------------------
# Rendering (pure: raw dict -> markdown); tested on a recorded sample without a GPU
# --------------------------------------------------------------------------------------------------


def forward_flops(B: int, H: int, N: int, Dh: int) -> float:
    """Useful FLOPs of one attention forward: Q Kᵀ and P V, 2·N²·Dh each, per (batch, head)."""
    return 4.0 * B * H * N**2 * Dh


def kernel_providers(raw: dict) -> list[str]:
    """The kernel providers the run had to measure: the default pair and every other registered variant."""
    return raw["expected_providers"]


def problems(raw: dict) -> list[str]:
    """Everything that makes this run's table not a result: failures, disagreements, missing rows."""
    out = []
    rows = raw.get("kernels", [])
    for dtype in raw["kernel_dtypes"]:
        for provider in kernel_providers(raw):
            found = [r for r in rows if r["dtype"] == dtype and r["provider"] == provider]
            if not found:
                out.append(f"kernels: no {dtype} row for {provider}")
                continue
            r = found[0]
            if r.get("note"):
                out.append(f"kernels: {provider} {dtype} did not run: {r['note']}")
            elif not r["max_err"] <= AGREEMENT[dtype] * r["max_abs_v"]:  # `not <=`: a NaN error fails too
                out.append(f"kernels: {provider} {dtype} differs from SDPA by {r['max_err']:.3g}, over "
                           f"{AGREEMENT[dtype]:.3g} x max|v| = {AGREEMENT[dtype] * r['max_abs_v']:.3g}")
    tests = raw.get("tests") or {}
    if tests.get("error"):
        out.append(f"GPU tests: {tests['error']}")
    elif tests.get("returncode") != 0 or tests.get("failed", 0) or tests.get("errors", 0) or not tests.get("passed", 0):
        out.append(f"GPU tests: exit status {tests.get('returncode')}, {tests.get('passed', 0)} passed, "
                   f"{tests.get('failed', 0)} failed, {tests.get('errors', 0)} errors")
    model = raw.get("model", [])
    for implementation, backends in raw["model_backends"].items():
        for backend in backends:
            found = [r for r in model if r["implementation"] == implementation and r["attention"] == backend]
            if not found:
                out.append(f"AST-Base: no row for {implementation} with {backend} attention")
            elif found[0].get("note") and "out of memory" not in found[0]["note"]:
                out.append(f"AST-Base: {implementation} with {backend} attention did not run: {found[0]['note']}")
            elif "max_abs_diff" in found[0] and not (found[0]["max_abs_diff"]
                                                     <= MODEL_AGREEMENT[raw["model_dtype"]] * found[0]["logits_max"]):
                out.append(f"AST-Base: {implementation} with {backend} attention disagrees with transformers "
                           f"(max |logit difference| {found[0]['max_abs_diff']:.3g})")
    return out


def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def render(raw: dict) -> str:
    """The markdown table of one run's raw measurements."""
    if raw.get("format") != FORMAT:
        raise ValueError(f"gpu_table: raw format {raw.get('format')!r} is not {FORMAT}; re-run the command to record it anew")
    m = raw["machine"]
    lines = ["# GPU table", "",
             f"Measured {raw['date']} by `{raw['command']}` in {_minutes(raw['seconds'])} "
             f"({'within' if raw['seconds'] <= raw['budget_seconds'] else 'OVER'} its {_minutes(raw['budget_seconds'])} budget), on {m['card']} "
             f"(sm_{m['capability']}), driver {m['driver']}, CUDA {m['cuda']}; torch {m['torch']}, triton {m['triton']}, "
             f"transformers {m['transformers']}, ast-min {m['ast_min']} (commit {m['commit']}), Python {m['python']}.", ""]
    found = problems(raw)
    if found:
        lines += ["**Verdict: FAILED.** These parts are not results:", ""] + [f"- {p}" for p in found] + [""]
    else:
        lines += ["**Verdict: every check passed** (kernel outputs agree with SDPA, the GPU tests pass, the "
                  "models agree with transformers).", ""]

    shape = raw["kernel_shape"]
    flops = forward_flops(**shape)
    lines += [f"## Kernels at AST's attention shape (B {shape['B']}, H {shape['H']}, N {shape['N']}, Dh {shape['Dh']})", "",
              "| dtype | provider | fwd ms | fwd TFLOP/s | fwd vs SDPA best | fwd+bwd ms | fwd+bwd TFLOP/s "
              "| fwd+bwd vs SDPA best | max abs err vs SDPA fp32 | cost-model roofline µs, fwd / fwd+bwd |",
              "|" + "---|" * 10]
    for dtype in raw["kernel_dtypes"]:
        rows = [r for r in raw["kernels"] if r["dtype"] == dtype]
        sdpa = [r for r in rows if r["provider"].startswith("sdpa") and r.get("fwd_ms")]
        best = {key: min((r[key] for r in sdpa), default=None) for key in ("fwd_ms", "fwdbwd_ms")}
        for r in rows:
            if r.get("note"):
                lines.append(f"| {dtype} | {r['provider']} | {r['note']} |" + " |" * 7)
                continue
            ratio = {key: (best[key] / r[key] if best[key] else None) for key in best}
            model_us = r.get("model_us")
            lines.append(
                f"| {dtype} | {r['provider']} | {r['fwd_ms']:.3f} | {flops / r['fwd_ms'] / 1e9:.1f} | "
                f"{_cell(ratio['fwd_ms'], '.2f')}{'x' if ratio['fwd_ms'] else ''} | {r['fwdbwd_ms']:.3f} | "
                f"{3.5 * flops / r['fwdbwd_ms'] / 1e9:.1f} | {_cell(ratio['fwdbwd_ms'], '.2f')}{'x' if ratio['fwdbwd_ms'] else ''} | "
                f"{r['max_err']:.1e} | {'' if not model_us else f'{model_us[0]:.1f} / {model_us[1]:.1f}'} |")
    lines += ["", "TFLOP/s: forward 4·B·H·N²·Dh, forward+backward 3.5 times that (kernels/bench.py's convention). "
              "vs SDPA best: the fastest SDPA backend's time over this row's (above 1: faster than SDPA). The "
              "roofline is the cost model's floor (kernels/cost.py) at the block sizes the autotuner chose.", ""]

    tests = raw["tests"]
    lines += ["## GPU tests", ""]
    if tests.get("error"):
        lines.append(f"`{tests['command']}`: **{tests['error']}**")
    else:
        lines.append(f"`{tests['command']}`: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                     f"{tests.get('errors', 0)} errors, {tests.get('skipped', 0)} skipped in {tests['seconds']:.0f} s "
                     f"(exit status {tests['returncode']}).")
    lines.append("")

    model_flops = raw["model_forward_flops_per_clip"] * raw["model_batch"]
    depth = "" if raw["model_layers"] == 12 else f" ({raw['model_layers']} of its 12 layers)"
    lines += [f"## AST-Base end to end{depth}, batch {raw['model_batch']}, {raw['model_dtype']}", "",
              "| model | attention | forward ms | forward TFLOP/s | clips/s | fwd+bwd ms | max abs logit difference vs transformers (sdpa) |",
              "|" + "---|" * 7]
    for r in raw["model"]:
        if r.get("note"):
            lines.append(f"| {r['implementation']} | {r['attention']} | {r['note']} |" + " |" * 4)
            continue
        lines.append(f"| {r['implementation']} | {r['attention']} | {r['fwd_ms']:.1f} | {model_flops / r['fwd_ms'] / 1e9:.1f} | "
                     f"{raw['model_batch'] / r['fwd_ms'] * 1e3:.0f} | {_cell(r.get('fwdbwd_ms'), '.1f')} | {r['max_abs_diff']:.2g} |")
    lines += ["", f"Forward FLOPs per clip: {raw['model_forward_flops_per_clip'] / 1e9:.0f} GFLOP (ast_min.bench.model's "
              "count: projections, attention, MLP). Forward+backward: one backward of the mean squared logit.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Measuring (CUDA only)
# --------------------------------------------------------------------------------------------------


def _command_output(argv: list[str], cwd=None) -> str:
    """A one-line answer of a helper program, or 'unknown (why)': its failure is recorded, not hidden."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({argv[0]}: {type(e).__name__})"
    if result.returncode != 0 or not result.stdout.strip():
        return f"unknown ({argv[0]} exit status {result.returncode})"
    return result.stdout.strip().splitlines()[0]


def machine(repo: pathlib.Path, device: str = "cuda") -> dict:
    import importlib.metadata

    import torch
    import triton

    try:
        import transformers

        transformers_version = transformers.__version__
    except ImportError:
        transformers_version = "not installed"
    try:
        ast_min_version = importlib.metadata.version("ast-min")
    except importlib.metadata.PackageNotFoundError:
        ast_min_version = "unknown"
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        card, capability = torch.cuda.get_device_name(), f"{major}{minor}"
        driver = _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    else:  # the CPU smoke run of the tests: the same record, naming what it ran on
        card, capability, driver = f"CPU ({platform.machine()})", "-", "-"
    return {
        "card": card, "capability": capability, "driver": driver,
        "cuda": torch.version.cuda, "torch": torch.__version__, "triton": triton.__version__,
        "transformers": transformers_version, "ast_min": ast_min_version, "python": platform.python_version(),
        "commit": _command_output(["git", "rev-parse", "--short", "HEAD"], cwd=repo),
    }


def measure_kernels(shape: dict = AST_ATTENTION, dtypes=KERNEL_DTYPES, device: str = "cuda") -> tuple[list[str], list[dict]]:
    """Every provider at one attention shape in each dtype: kernels/bench.py's rows, as plain data."""
    import torch

    from ast_min.kernels import bench, variants

    fns = bench.providers(device)
    major, minor = torch.cuda.get_device_capability() if device == "cuda" else (10, 0)
    # Each variant not a default is its own provider; one made for newer cards only (TMA: sm_90) is
    # expected where it can run, and reported "n/a" elsewhere. (The interpreter runs them all.)
    expected = ["triton"] + [f"triton-{v.name}" for v in variants.variants()
                             if v.name != variants.DEFAULTS[v.pass_] and min(v.archs) <= 10 * major + minor]
    rows = []
    for dtype in dtypes:
        for r in bench.bench_one(bench.Shape("AST", **shape), bench.DTYPES[dtype], device, fns):
            rows.append({"dtype": dtype, "provider": r["provider"], "fwd_ms": r.get("fwd_ms"), "fwdbwd_ms": r.get("fwdbwd_ms"),
                         "max_err": r.get("max_err"), "max_abs_v": r.get("max_abs_v"),
                         "model_us": list(r["model_us"]) if "model_us" in r else None, "note": r.get("note", "")})
            print(f"  kernels {dtype} {r['provider']}: " + (r.get("note") or f"fwd {r['fwd_ms']:.3f} ms, fwd+bwd {r['fwdbwd_ms']:.3f} ms"),
                  flush=True)
    return expected, rows


def measure_model(batch: int = MODEL_BATCH, dtype: str = MODEL_DTYPE, backends: dict = MODEL_BACKENDS,
                  layers: int = 12, device: str = "cuda", timer=None) -> tuple[float, list[dict]]:
    """AST-Base (`layers` encoder layers): ast-min per attention backend against transformers, one set of weights."""
    import torch

    from ast_min.bench.model import build, forward_flops as model_flops
    from ast_min.kernels import bench

    timer = timer or bench.time_ms  # triton.testing.do_bench's median on a GPU
    ours, reference = build(layers, torch.device(device), "sdpa")
    ours.to(bench.DTYPES[dtype])
    reference.to(bench.DTYPES[dtype])
    x = torch.randn(batch, ours.config.max_length, ours.config.num_mel_bins, device=device, dtype=bench.DTYPES[dtype])
    with torch.inference_mode():
        reference_logits = reference(x).logits.float()
    rows = []
    for implementation, model in (("transformers", reference), ("ast-min", ours)):
        for backend in backends[implementation]:
            row = {"implementation": implementation, "attention": backend}
            try:
                model.set_attn_implementation(backend)
                with torch.inference_mode():
                    logits = model(x).logits.float()
                row["max_abs_diff"] = (logits - reference_logits).abs().max().item()
                row["logits_max"] = reference_logits.abs().max().item()

                def forward(model=model):
                    with torch.inference_mode():
                        model(x)

                def forward_backward(model=model):
                    model.zero_grad(set_to_none=True)
                    model(x).logits.float().square().mean().backward()

                row["fwd_ms"] = timer(forward, device)
                row["fwdbwd_ms"] = timer(forward_backward, device)
            except torch.cuda.OutOfMemoryError:
                row["note"] = "out of memory"
            except (RuntimeError, ValueError) as e:
                row["note"] = f"error: {str(e).splitlines()[0][:80]}"
            model.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.empty_cache()
            print(f"  AST-Base {implementation} {backend}: " + (row.get("note") or f"fwd {row['fwd_ms']:.1f} ms"), flush=True)
            rows.append(row)
    return model_flops(ours.config), rows


_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def pytest_counts(output: str) -> dict:
    """The counts in pytest's last summary line ('2 failed, 15 passed, 60 deselected in 55.2s')."""
    summary = next((line for line in reversed(output.strip().splitlines()) if re.search(r"\bin [\d.]+s\b", line)), "")
    counts = {}
    for number, word in _PYTEST_COUNT.findall(summary):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def run_gpu_tests(repo: pathlib.Path, timeout: float) -> dict:
    """`pytest tests/test_kernels.py -k gpu` in a subprocess; its exit status and counts, never assumed."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GPU_TESTS]
    shown = "python -m pytest -q " + " ".join(GPU_TESTS)
    if not (repo / GPU_TESTS[0]).exists():
        return {"command": shown, "error": f"{GPU_TESTS[0]} not found under {repo}: run from a checkout, or pass --repo"}
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": shown, "error": f"timed out after {timeout:.0f} s (a hang?)"}
    return {"command": shown, "returncode": result.returncode, "seconds": time.perf_counter() - start,
            "tail": result.stdout[-3000:] + result.stderr[-2000:], **pytest_counts(result.stdout)}


def measure(repo: pathlib.Path, budget_s: float = BUDGET_S, *, device: str = "cuda", kernel_shape: dict = AST_ATTENTION,
            kernel_dtypes=KERNEL_DTYPES, model_batch: int = MODEL_BATCH, model_layers: int = 12,
            model_backends: dict = MODEL_BACKENDS, model_timer=None) -> dict:
    """Run the three parts and return the raw record render() reads. The defaults are the GPU table's;
    the keyword arguments exist so that a test can run the whole pipeline small, on a CPU."""
    start = time.perf_counter()
    print("1/3 the kernels at AST's shape ...", flush=True)
    expected, kernel_rows = measure_kernels(kernel_shape, kernel_dtypes, device)
    print("2/3 AST-Base end to end ...", flush=True)
    flops_per_clip, model_rows = measure_model(model_batch, MODEL_DTYPE if device == "cuda" else "fp32", model_backends,
                                               model_layers, device, model_timer)
    print(f"3/3 the GPU tests ({time.perf_counter() - start:.0f} s of the {budget_s:.0f} s budget used so far) ...", flush=True)
    tests = run_gpu_tests(repo, TESTS_TIMEOUT_S)
    return {
        "format": FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m ast_min.kernels.gpu_table",
        "machine": machine(repo, device),
        "seconds": time.perf_counter() - start,
        "budget_seconds": budget_s,
        "kernel_shape": dict(kernel_shape),
        "kernel_dtypes": list(kernel_dtypes),
        "expected_providers": expected,
        "kernels": kernel_rows,
        "tests": tests,
        "model_batch": model_batch,
        "model_dtype": MODEL_DTYPE if device == "cuda" else "fp32",
        "model_layers": model_layers,
        "model_backends": {k: list(v) for k, v in model_backends.items()},
        "model_forward_flops_per_clip": flops_per_clip,
        "model": model_rows,
    }


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def _write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a crash mid-write leaves the previous table, not half of a new one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ast_min.kernels.gpu_table", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=TABLE_PATH, help="the table (default: GPU_TABLE.md beside this file)")
    parser.add_argument("--raw", type=pathlib.Path, default=RAW_PATH, help="the raw measurements (default: gpu_table.json beside it)")
    parser.add_argument("--render", type=pathlib.Path, default=None, metavar="RAW.json",
                        help="render this raw file instead of measuring (no GPU needed)")
    parser.add_argument("--repo", type=pathlib.Path, default=HERE.parent, help="the checkout whose tests/ to run (default: this one)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="the run's target time in seconds, reported against (default: 480)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    prog = parser.prog

    if args.render is not None:
        try:
            raw = json.loads(args.render.read_text())
            text = render(raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"{prog}: cannot render {args.render}: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        _write(args.out, text + "\n")
        print(f"{prog}: wrote {args.out}")
        return 1 if problems(raw) else 0

    import torch

    if not torch.cuda.is_available():
        print(f"{prog}: needs a CUDA GPU and torch sees none (torch.cuda.is_available() is False); run it on a "
              "machine with one, or use --render RAW.json to re-render recorded measurements", file=sys.stderr)
        return 2
    from ast_min import kernels

    if not kernels.TRITON_AVAILABLE:
        print(f"{prog}: triton is not installed: the kernels cannot run (pip install triton)", file=sys.stderr)
        return 2
    raw = measure(args.repo.resolve(), args.budget_s)
    _write(args.raw, json.dumps(raw, indent=1) + "\n")
    text = render(raw)
    _write(args.out, text + "\n")
    print(f"\n{text}\nwritten to {args.out} (raw measurements: {args.raw})")
    if raw["seconds"] > args.budget_s:
        print(f"{prog}: the run took {_minutes(raw['seconds'])}, over the {args.budget_s:.0f} s budget", file=sys.stderr)
    found = problems(raw)
    for p in found:
        print(f"{prog}: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
