"""Static inspection: what the compiler made of each kernel, on any machine, no GPU needed.

    python -m ast_min.kernels.inspect                         # every variant's kernels x configs, AST's shape
    python -m ast_min.kernels.inspect --arch 90 --dtype bf16 --json inspect.json
    python -m ast_min.kernels.inspect --variant fused --causal

Triton compiles for a CUDA target without a GPU (`triton.compile(ASTSource(...), target=GPUTarget(...))`)
and its wheel ships NVIDIA's `ptxas`, `cuobjdump` and `nvdisasm`. For every registered variant's
kernels (kernels/variants.py) and every autotune config (kernels/tuning.py) this compiles the kernel
exactly as the launcher's call would specialise it (the same arguments go through Triton's own
binder: an integer 1 becomes a constant, pointers and strides divisible by 16 are marked so, which is
what lets loads vectorise), then reads:

- registers per thread, and spills (ptxas' "spill stores/loads" bytes; STL/LDL instructions in SASS)
- shared memory per program (Triton's dynamic allocation + static), and whether it fits the card
- occupancy: programs per SM as limited by registers, shared memory and threads (CUDA's occupancy
  rules: registers allocated per warp in units of 256, 1 KiB of shared memory reserved per program)
- the tensor-core instructions (HMMA on Ampere, HGMMA = wgmma on Hopper, UTCHMMA = tcgen05 on
  Blackwell) and their count
- how global loads are issued: LDG (through registers), LDGSTS (cp.async, straight to shared
  memory, what Triton's software pipelining uses), UTMALDG (TMA, Hopper's tensor descriptors)

and puts the cost model (kernels/cost.py) beside each row. Results are cached on disk keyed by
everything that changes the compiled code (Triton's own source hash of the kernel, target, options).

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from ast_min.kernels import cost, variants

# AST's attention call: 12 heads of 64 over N = 12 x 101 patches + [CLS] + [DIST] = 1214 tokens (128 mel
# bins x 1024 frames, 16 x 16 patches at stride 10). B only scales the cost model's totals.
AST_SHAPE = dict(B=8, H=12, N=1214, Dh=64)


@dataclass(frozen=True)
class Arch:
    """Per-SM limits of one compute capability (CUDA C++ Programming Guide, "Technical Specifications
    per Compute Capability")."""

    capability: int
    card: str
    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    threads_per_sm: int = 2048
    programs_per_sm: int = 32  # "maximum number of resident blocks per SM"
    smem_per_sm: int = 0  # bytes usable by programs, per SM
    smem_per_program: int = 0  # the most one program may allocate
    smem_reserved_per_program: int = 1024  # the system's share of each block, sm_80 and later


DTYPES = ("fp16", "bf16", "fp32", "tf32")  # the operand kinds a GPU launch of the kernels takes (--dtype)

ARCHS = {
    80: Arch(80, "A100", smem_per_sm=164 * 1024, smem_per_program=163 * 1024),
    90: Arch(90, "H100", smem_per_sm=228 * 1024, smem_per_program=227 * 1024),
    100: Arch(100, "B200", smem_per_sm=228 * 1024, smem_per_program=227 * 1024),
}


@dataclass
class Report:
    """What one compile produced. `error` is set (and the rest zero) when compilation failed."""

    variant: str
    kernel: str
    config: str
    arch: int
    dtype: str
    causal: bool
    num_warps: int = 0
    registers: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    stack_bytes: int = 0
    stl: int = 0
    ldl: int = 0
    shared_bytes: int = 0
    mma: str = ""
    mma_count: int = 0
    instructions: int = 0  # every SASS instruction of the kernel, NOPs included
    ldg: int = 0
    ldgsts: int = 0
    utmaldg: int = 0
    programs_per_sm: int = 0
    limited_by: str = ""
    error: str = ""
    model_gflop: float = 0.0
    model_mb: float = 0.0
    model_a100_us: float = 0.0
    model_h100_us: float = 0.0

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0 or self.stl > 0 or self.ldl > 0

    @property
    def fits(self) -> bool:
        return self.shared_bytes <= ARCHS[self.arch].smem_per_program

    def problems(self) -> list[str]:
        """What makes this config unfit to ship: a compile error, a spill, shared memory over the card's limit."""
        where = f"{self.variant}/{self.kernel} {self.config} sm_{self.arch} {self.dtype}{' causal' if self.causal else ''}"
        out = []
        if self.error:
            out.append(f"{where}: compile error: {self.error}")
        if self.spills:
            out.append(f"{where}: spills {self.spill_store_bytes} B stored / {self.spill_load_bytes} B loaded per thread "
                       f"({self.stl} STL, {self.ldl} LDL) at {self.registers} registers")
        if not self.error and not self.fits:
            out.append(f"{where}: needs {self.shared_bytes} B of shared memory, over the "
                       f"{ARCHS[self.arch].smem_per_program} B a program may use on {ARCHS[self.arch].card}")
        return out


def _tool(name: str) -> str:
    import triton

    return str(pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def sm100_supported() -> bool:
    """Does the shipped ptxas know sm_100 (Blackwell)?"""
    try:
        out = subprocess.run([_tool("ptxas"), "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "sm_100" in out


def config_label(config) -> str:
    k = config.kwargs
    blocks = "x".join(str(k[b]) for b in ("BLOCK_M", "BLOCK_N") if b in k) or "fixed"
    cap = f" r{config.maxnreg}" if getattr(config, "maxnreg", None) else ""  # a register cap given to ptxas
    return f"{blocks} w{config.num_warps} s{config.num_stages}{cap}"


def occupancy(arch: Arch, registers: int, num_warps: int, shared_bytes: int) -> tuple[int, str]:
    """(programs per SM, the limiting resource) by CUDA's occupancy rules."""
    regs_per_warp = -(-max(registers, 1) * 32 // 256) * 256  # allocated per warp, in units of 256
    by_regs = (arch.regs_per_sm // regs_per_warp) // num_warps
    by_threads = arch.threads_per_sm // (32 * num_warps)
    smem = shared_bytes + arch.smem_reserved_per_program
    by_smem = arch.smem_per_sm // smem if shared_bytes <= arch.smem_per_program else 0
    limits = {"registers": by_regs, "threads": by_threads, "shared memory": by_smem, "program slots": arch.programs_per_sm}
    limit = min(limits, key=limits.get)
    return limits[limit], limit


_PTXAS_USAGE = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def _sass_counts(cubin: bytes) -> dict:
    """Opcode counts from nvdisasm's listing of the cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
        path = f.name
    try:
        sass = subprocess.run([_tool("nvdisasm"), "-c", path], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", path], capture_output=True, text=True,
                               check=True).stdout
    finally:
        os.unlink(path)
    counts: dict[str, int] = {}
    for line in sass.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    shared = re.search(r"SHARED:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    counts["_static_shared"] = int(shared.group(1)) if shared else 0
    counts["_stack"] = int(stack.group(1)) if stack else 0
    return counts


def compile_kernel(spec: variants.KernelSpec, config, problem: cost.Problem, arch: int,
                   unit_stride: bool = True) -> tuple[object, str]:
    """Compile spec.fn with `config` for sm_`arch` as the launcher would call it; returns (CompiledKernel, ptxas log).

    unit_stride=False compiles the generic code a launch with unknown head-dim strides would get: every
    stride a runtime integer (no constant 1, no divisibility hint), the code the launcher avoids by
    handing the kernels tensors whose last stride is 1.
    """
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    args, meta = spec.launch_args(problem)
    kwargs = {**meta, **config.all_kwargs()}
    # Triton's own binder: the same specialisation (constants, divisibility) a real launch computes.
    binder = create_function_from_signature(spec.fn.signature, spec.fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = spec.fn._pack_args(backend, options, bound, specialization, options)
    if not unit_stride:  # tuple elements (the strides) lose their specialisation
        for path in [p for p in constexprs if len(p) == 2]:
            del constexprs[path]
        for path in [p for p in attrs if len(p) == 2]:
            attrs[path] = []
        signature = {k: tuple("i32" for _ in v) if isinstance(v, tuple) else v for k, v in signature.items()}
    log = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True  # ptxas' -v report (registers, spills), printed by Triton
        knobs.compilation.always_compile = True  # a cached kernel would skip ptxas and its report
        compiled = triton.compile(ASTSource(spec.fn, signature, constexprs, attrs), target=target,
                                  options=options.__dict__)
    return compiled, log.getvalue()


CACHE_FORMAT = "2"  # the Report's fields; a new field makes every cached report stale


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "ast-min" / "kernels-inspect"


def _cache_key(spec, config, problem, arch) -> str:
    import triton

    parts = [CACHE_FORMAT, triton.__version__, spec.fn.cache_key, repr(sorted(config.all_kwargs().items())), repr(problem), str(arch)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def inspect_one(variant: str, pass_: str, kernel_index: int, config_index: int, problem: cost.Problem, arch: int,
                use_cache: bool = True, unit_stride: bool = True) -> Report:
    """Compile one (kernel, config) for one target and read what came out."""
    spec = variants.get(pass_, variant).kernels[kernel_index]
    return inspect_config(variant, pass_, kernel_index, spec.configs[config_index], problem, arch, use_cache, unit_stride)


def inspect_config(variant: str, pass_: str, kernel_index: int, config, problem: cost.Problem, arch: int,
                   use_cache: bool = True, unit_stride: bool = True) -> Report:
    """`inspect_one` for any triton.Config, listed or not (another warp count, a register cap `maxnreg`)."""
    spec = variants.get(pass_, variant).kernels[kernel_index]
    report = Report(variant, spec.name, config_label(config), arch, problem.dtype, problem.causal, num_warps=config.num_warps)
    cache = _cache_dir() / f"{_cache_key(spec, config, problem, arch)}{'' if unit_stride else '-generic'}.json"
    if use_cache and cache.exists():
        cached = json.loads(cache.read_text())
        report = Report(**cached)
    else:
        try:
            compiled, log = compile_kernel(spec, config, problem, arch, unit_stride)
        except Exception as e:  # noqa: BLE001 - any compiler failure is a finding to report, not a crash
            report.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        else:
            counts = _sass_counts(compiled.asm["cubin"])
            used = _PTXAS_USAGE.findall(log)
            spill = _PTXAS_SPILL.findall(log)
            report.registers = int(used[-1]) if used else 0
            if spill:
                report.stack_bytes, report.spill_store_bytes, report.spill_load_bytes = map(int, spill[-1])
            report.stl, report.ldl = counts.get("STL", 0), counts.get("LDL", 0)
            report.shared_bytes = int(compiled.metadata.shared) + counts["_static_shared"]
            # Tensor-core instructions by generation: tcgen05 (Blackwell), wgmma (Hopper), mma.sync (Ampere).
            kind = next((k for k in ("UTCHMMA", "UTCQMMA", "HGMMA", "HMMA") if counts.get(k)), "-")
            report.mma, report.mma_count = kind, counts.get(kind, 0)
            report.instructions = sum(n for op, n in counts.items() if not op.startswith("_"))
            report.ldg, report.ldgsts, report.utmaldg = counts.get("LDG", 0), counts.get("LDGSTS", 0), counts.get("UTMALDG", 0)
        if use_cache:
            with contextlib.suppress(OSError):  # a read-only home only costs the next run its compiles
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(dataclasses.asdict(report)))
    if not report.error:
        report.programs_per_sm, report.limited_by = occupancy(ARCHS[arch], report.registers, report.num_warps,
                                                              report.shared_bytes)
    if spec.cost is not None:
        c = spec.cost(problem, config.kwargs)
        report.model_gflop, report.model_mb = c.flops / 1e9, c.bytes / 1e6
        report.model_a100_us = c.roofline_seconds(cost.A100, problem.dtype) * 1e6
        report.model_h100_us = c.roofline_seconds(cost.H100, problem.dtype) * 1e6
    return report


def jobs(pass_: str | None, variant: str | None, archs, dtypes, causals, shape=AST_SHAPE) -> list[tuple]:
    """Every (variant, pass, kernel, config, problem, arch) to compile; a kernel shared by two variants once."""
    out = []
    seen = set()
    for v in variants.variants(pass_):
        if variant and v.name != variant:
            continue
        for ki, spec in enumerate(v.kernels):
            if spec.name in seen:
                continue
            seen.add(spec.name)
            for ci in range(len(spec.configs)):
                for arch in archs:
                    if arch not in v.archs and arch != 100:
                        continue
                    for dtype in dtypes:
                        for causal in causals:
                            out.append((v.name, v.pass_, ki, ci, cost.Problem(dtype=dtype, causal=causal, **shape), arch))
    return out


def run_all(job_list: list[tuple], workers: int | None = None, use_cache: bool = True) -> list[Report]:
    """Inspect every job, in `workers` processes (compiles are single-threaded and independent)."""
    workers = workers or max(1, min(len(job_list), os.cpu_count() or 1))
    if workers == 1:
        return [inspect_one(*j, use_cache=use_cache) for j in job_list]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(inspect_one, *j, use_cache=use_cache) for j in job_list]
        return [f.result() for f in futures]


def format_table(reports: list[Report]) -> str:
    head = ("| variant | kernel | config | sm | dtype | causal | regs | spill B (st/ld) | STL/LDL | smem KiB | "
            "programs/SM (limit) | MMA | LDG / LDGSTS / UTMALDG | model GFLOP | model MB | roofline µs A100 / H100 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        if r.error:
            cells = [r.variant, r.kernel, r.config, r.arch, r.dtype, "yes" if r.causal else "no", f"ERROR: {r.error}"] + [""] * 9
        else:
            cells = [r.variant, r.kernel, r.config, r.arch, r.dtype, "yes" if r.causal else "no", r.registers,
                     f"{r.spill_store_bytes}/{r.spill_load_bytes}", f"{r.stl}/{r.ldl}",
                     f"{r.shared_bytes / 1024:.1f}" + ("" if r.fits else " OVER"),
                     f"{r.programs_per_sm} ({r.limited_by})", f"{r.mma} x{r.mma_count}", f"{r.ldg} / {r.ldgsts} / {r.utmaldg}",
                     f"{r.model_gflop:.2f}", f"{r.model_mb:.1f}", f"{r.model_a100_us:.0f} / {r.model_h100_us:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def cost_table(shape=AST_SHAPE, dtype: str = "bf16", causal: bool = False) -> str:
    """The cost model for every registered variant's kernels at each of its configs' block sizes."""
    rows = []
    seen = set()
    for v in variants.variants():
        for spec in v.kernels:
            if spec.cost is None:
                continue
            for config in spec.configs:
                blocks = tuple(config.kwargs.get(b) for b in ("BLOCK_M", "BLOCK_N"))
                key = (spec.name, blocks)
                if key in seen:
                    continue
                seen.add(key)
                p = cost.Problem(dtype=dtype, causal=causal, **shape)
                label = f"{v.pass_} {v.name}: {spec.name} " + ("x".join(map(str, blocks)) if blocks[0] else "")
                rows.append((label.strip(), p, spec.cost(p, config.kwargs)))
    return cost.table(rows)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m ast_min.kernels.inspect", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="80,90", help="comma-separated compute capabilities: 80, 90, 100 (if ptxas knows it)")
    parser.add_argument("--dtype", default="bf16", help=f"comma-separated among {', '.join(DTYPES)}")
    parser.add_argument("--causal", action="store_true", help="only the causal problem (default: both)")
    parser.add_argument("--non-causal", action="store_true", help="only the non-causal problem")
    parser.add_argument("--pass", dest="pass_", choices=variants.PASSES, default=None)
    parser.add_argument("--variant", default=None, help="one registered variant's name")
    parser.add_argument("--jobs", type=int, default=None, help="compile processes (default: one per CPU)")
    parser.add_argument("--no-cache", action="store_true", help="recompile instead of reading cached results")
    parser.add_argument("--json", default=None, help="also write every report to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("ast_min.kernels.inspect compiles for GPUs: unset TRITON_INTERPRET", file=sys.stderr)
        return 2
    try:
        archs = [int(a) for a in args.arch.split(",")]
    except ValueError:
        print(f"--arch {args.arch!r}: give compute capabilities as numbers, e.g. 80,90", file=sys.stderr)
        return 2
    if 100 in archs and not sm100_supported():
        print("the shipped ptxas does not know sm_100: skipping it", file=sys.stderr)
        archs.remove(100)
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        print(f"unknown arch {unknown}; choose among {sorted(ARCHS)}", file=sys.stderr)
        return 2
    causals = [True] if args.causal else [False] if args.non_causal else [False, True]
    dtypes = [d.strip() for d in args.dtype.split(",")]
    if not set(dtypes) <= set(DTYPES):
        print(f"unknown dtype {sorted(set(dtypes) - set(DTYPES))}; choose among {list(DTYPES)}", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 0:  # (0, like no --jobs, means one process per CPU)
        print(f"--jobs {args.jobs}: give a number of compile processes, or 0 for one per CPU", file=sys.stderr)
        return 2
    job_list = jobs(args.pass_, args.variant, archs, dtypes, causals)
    if not job_list:
        print("nothing to inspect (unknown variant?)", file=sys.stderr)
        return 2
    print(f"compiling {len(job_list)} kernels (cached results are reused)...", file=sys.stderr)
    reports = run_all(job_list, args.jobs, use_cache=not args.no_cache)
    shape = ", ".join(f"{k} {v}" for k, v in AST_SHAPE.items())
    print(f"# ast_min.kernels.inspect: AST's shape ({shape}), q/k/v views of one projection\n")
    print(format_table(reports))
    for dtype in dtypes:
        for causal in causals:
            print(f"\n## cost model, {dtype}{', causal' if causal else ''} (no reuse of K/V across programs)\n")
            print(cost_table(dtype=dtype, causal=causal))
    bad = [p for r in reports for p in r.problems()]
    if bad:
        print("\n## configs that should not ship\n" + "\n".join(f"- {b}" for b in bad))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dataclasses.asdict(r) | {"spills": r.spills, "fits": r.fits} for r in reports], f, indent=1)
        print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
