"""The kernel lab: the cost model, static inspection and the variant registry, against independent counts.

References: the cost model's bytes and FLOPs are compared with what the kernels actually do, counted
by instrumenting Triton's CPU interpreter (every masked-in element a kernel loads, stores or adds
atomically, every tl.dot's 2·m·n·k) on small shapes; the benchmark FLOP convention with
torch.utils.flop_counter. The inspection's spill detector is checked on code known to spill, and its
two sources (ptxas' report, the SASS listing) against each other. The compile test runs the real
compiler for sm_80 and sm_90 on every autotune config of every registered kernel.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

import contextlib
import json
import ast
import os
import subprocess
import sys

import pytest
import torch
from triton.runtime import interpreter

from ast_min import kernels
from ast_min.kernels import cost, fused_attention, inspect, tuning, variants


# ---- the cost model against the interpreter's own count ------------------------------------------


@contextlib.contextmanager
def counting_interpreter():
    """Count the bytes every kernel launch moves and the matmul FLOPs it does, element by element."""
    counts = {"bytes": 0, "flops": 0}
    builder = interpreter.InterpreterBuilder
    load, store, dot, rmw = (builder.create_masked_load, builder.create_masked_store, builder.create_dot,
                             builder.create_atomic_rmw)

    def nbytes(mask, dtype):
        return int(mask.data.sum()) * dtype.primitive_bitwidth // 8

    def counted_load(self, ptrs, mask, other, *a):
        counts["bytes"] += nbytes(mask, ptrs.get_element_ty())
        return load(self, ptrs, mask, other, *a)

    def counted_store(self, ptrs, value, mask, *a):
        counts["bytes"] += nbytes(mask, ptrs.get_element_ty())
        return store(self, ptrs, value, mask, *a)

    def counted_dot(self, a, b, d, *args):
        counts["flops"] += 2 * a.data.shape[-2] * a.data.shape[-1] * b.data.shape[-1]
        return dot(self, a, b, d, *args)

    def counted_rmw(self, op, ptr, val, mask, *a):
        counts["bytes"] += 2 * nbytes(mask, ptr.get_element_ty())  # read-modify-write
        return rmw(self, op, ptr, val, mask, *a)

    patches = dict(create_masked_load=counted_load, create_masked_store=counted_store, create_dot=counted_dot,
                   create_atomic_rmw=counted_rmw)
    for name, fn in patches.items():
        setattr(builder, name, fn)
    try:
        yield counts
    finally:
        for name, fn in zip(patches, (load, store, dot, rmw)):
            setattr(builder, name, fn)


def interpreter_block(configs):
    return configs[0].kwargs["BLOCK_M"], configs[0].kwargs["BLOCK_N"]


@pytest.mark.parametrize("n", [37, 64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cost_model_counts_what_the_kernels_load_store_and_multiply(n, causal, dtype):
    # N 37 leaves partial tails for the 16- and 32-row blocks; 64 divides them. Two heads share the grid.
    # Dh 24 is padded to a 32-wide tile: the model must count the padded matmul, not the useful one.
    B, H, Dh = 1, 2, 24
    p = cost.Problem(B, H, n, Dh, {torch.float32: "fp32", torch.float16: "fp16"}[dtype], causal)
    g = torch.Generator().manual_seed(n)
    q, k, v, do = (torch.randn(B, H, n, Dh, generator=g).to(dtype) for _ in range(4))  # contiguous: no copies
    with counting_interpreter() as fwd:
        o, lse = fused_attention.attention_forward(q, k, v, causal, 0.2, "ieee")
    model = cost.forward(p, *interpreter_block(tuning.FORWARD_INTERPRETER))
    assert (fwd["bytes"], fwd["flops"]) == (model.bytes, model.flops), f"forward: counted {fwd}, model {model}"

    split = (cost.delta(p) + cost.backward_dkdv(p, *interpreter_block(tuning.BACKWARD_DKDV_INTERPRETER))
             + cost.backward_dq(p, *interpreter_block(tuning.BACKWARD_DQ_INTERPRETER)))
    fused = cost.delta(p) + cost.backward_fused(p, *interpreter_block(tuning.BACKWARD_FUSED_INTERPRETER))
    for name, model in (("split", split), ("fused", fused)):
        with counting_interpreter() as bwd:
            variants.get("backward", name).run(do, q, k, v, o, lse, causal, 0.2, "ieee")
        assert (bwd["bytes"], bwd["flops"]) == (model.bytes, model.flops), f"{name} backward: counted {bwd}, model {model}"


def test_useful_flops_follow_torch_flop_counter():
    # The benchmark convention (4·B·H·N²·Dh forward) is what torch counts for q kᵀ and p v.
    from torch.utils.flop_counter import FlopCounterMode

    p = cost.Problem(2, 3, 50, 16, "fp32")
    q, k, v = (torch.randn(2, 3, 50, 16, dtype=torch.float64) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        kernels.attention_math(q, k, v)
    assert counter.get_total_flops() == p.useful_flops("forward")


def test_ast_forward_intensity_matches_the_count_by_hand():
    # Useful FLOPs over bytes with K and V re-read per query block: the BLOCK_M lever, worked by hand:
    # per (batch, head) 4·1214²·64 FLOPs over 2·1214·64·2 (Q, O) + 4·1214 (LSE) + 2·nb·1214·64·2 (K, V)
    # bytes, nb = 10 query blocks of 128 or 19 of 64.
    p = cost.Problem(1, 1, 1214, 64, "bf16")
    for block_m, nb in ((128, 10), (64, 19)):
        by_hand = 4 * 1214**2 * 64 / (2 * 1214 * 64 * 2 + 4 * 1214 + 2 * nb * 1214 * 64 * 2)
        assert p.useful_flops() / cost.forward(p, block_m, 64).bytes == pytest.approx(by_hand, rel=1e-12)


def test_roofline_picks_the_binding_limit():
    c = cost.Cost(flops=989.4e12, bytes=1.0)  # one second of H100 bf16 compute, no traffic
    assert c.roofline_seconds(cost.H100, "bf16") == pytest.approx(1.0) and c.bound(cost.H100, "bf16") == "compute"
    c = cost.Cost(flops=1.0, bytes=2.039e12)  # one second of A100 bandwidth
    assert c.roofline_seconds(cost.A100, "fp16") == pytest.approx(1.0) and c.bound(cost.A100, "fp16") == "memory"


# ---- the registry --------------------------------------------------------------------------------


def test_registry_finds_variant_files_and_defaults():
    names = {(v.pass_, v.name) for v in variants.variants()}
    assert {("forward", "standard"), ("forward", "tma"), ("backward", "split"), ("backward", "fused")} <= names
    folder = os.path.dirname(kernels.__file__)
    for name in (f for f in os.listdir(folder) if f.startswith("variant_") and f.endswith(".py")):
        # discovery imports each such file; it must call variants.register at its top level
        tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
        calls = [node.value for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
        assert any(ast.unparse(c.func) == "variants.register" for c in calls), f"{name} registers no variant"
    for v in variants.variants():
        assert v.kernels, f"{v.name} registers no kernels for inspection"
        for spec in v.kernels:
            assert spec.configs, f"{v.name}/{spec.name} has no configs"


# ---- static inspection ---------------------------------------------------------------------------


def test_occupancy_follows_cudas_rules():
    a100 = inspect.ARCHS[80]
    # 64 registers x 256 threads: 16384 registers per program, 4 programs = 2048 threads, full on both counts.
    assert inspect.occupancy(a100, 64, 8, 0)[0] == 4
    # 24 registers x 128 threads: registers would allow 21 programs, threads 2048 / 128 = 16.
    assert inspect.occupancy(a100, 24, 4, 0) == (16, "threads")
    # one-warp programs: 64 by threads, but an SM holds at most 32 resident programs.
    assert inspect.occupancy(a100, 16, 1, 0) == (32, "program slots")
    # 255 registers round up to 256 per thread: 8192 per warp, 8 warps per SM, 2 four-warp programs.
    assert inspect.occupancy(a100, 255, 4, 0) == (2, "registers")
    # 80 KiB + the reserved 1 KiB of shared memory: two fit in A100's 164 KiB, not three.
    assert inspect.occupancy(a100, 32, 4, 80 * 1024) == (2, "shared memory")


def _run_inspect(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile for real GPUs
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out = tmp_path / "inspect.json"
    result = subprocess.run([sys.executable, "-m", "ast_min.kernels.inspect", "--json", str(out), *args],
                            capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


def test_every_gpu_config_of_every_kernel_compiles_without_spills_within_shared_memory(tmp_path):
    # The real compiler (ptxas) for A100 and H100, every registered kernel x autotune config, at
    # AST's shape, causal and not, specialised as the launcher's call is. bf16 only, to keep CI's
    # time: fp16 compiles to the same tiles and instructions but for the conversions
    # (`python -m ast_min.kernels.inspect --dtype fp16` shows it).
    stdout, reports = _run_inspect(tmp_path, "--arch", "80,90", "--dtype", "bf16")
    expected = {}
    for v in variants.variants():  # each kernel once, for the architectures its variant targets
        for spec in v.kernels:
            expected.setdefault(spec.name, len(spec.configs) * len({80, 90} & set(v.archs)) * 2)
    assert len(reports) == sum(expected.values()), "a kernel or config was not compiled"
    problems = [p for r in reports for p in inspect.Report(**{k: v for k, v in r.items() if k not in ("spills", "fits")}).problems()]
    assert not problems, "configs that should not ship:\n" + "\n".join(problems)
    for r in reports:  # the tensor-core path the card has; tiles loaded by cp.async, or TMA where asked for
        assert r["mma"] == ("HGMMA" if r["arch"] == 90 else "HMMA") or r["kernel"] == "delta", r
        assert (r["utmaldg"] > 0) == ("TMA" in r["kernel"]), r
        assert r["kernel"] == "delta" or r["ldgsts"] + r["utmaldg"] > 0, r
    assert "| standard | forward |" in stdout and "roofline" in stdout


def test_spill_detector_sees_the_generic_stride_code_spill():
    # Without the head-dim stride known to be 1, the 128x64 4-warp forward is the code that spills on
    # H100 (and loads element by element, no cp.async); with it (the launcher's guarantee) it must not.
    config = next(i for i, c in enumerate(tuning.FORWARD_GPU) if inspect.config_label(c) == "128x64 w4 s3")
    generic = _inspect_in_subprocess(config, unit_stride=False)
    unit = _inspect_in_subprocess(config, unit_stride=True)
    assert generic["spill_store_bytes"] > 0 and generic["stl"] > 0, generic  # ptxas and SASS agree
    assert generic["ldgsts"] == 0 and unit["ldgsts"] > 0, (generic, unit)
    assert not unit["spill_store_bytes"] and unit["stl"] == unit["ldl"] == 0, unit


def _inspect_in_subprocess(config_index, unit_stride):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    code = ("import dataclasses, json; from ast_min.kernels import inspect, cost\n"
            f"r = inspect.inspect_one('standard', 'forward', 0, {config_index}, "
            f"cost.Problem(dtype='bf16', **inspect.AST_SHAPE), 90, unit_stride={unit_stride})\n"
            "print(json.dumps(dataclasses.asdict(r)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- torch.compile through the custom op ---------------------------------------------------------


def test_custom_ops_pass_torch_opcheck():
    # torch.library.opcheck runs each op for real and under fake tensors and compares schemas, output
    # shapes, dtypes and strides (a fake that promises another layout than the kernel writes fails),
    # and checks the autograd registration. Inputs: views of one projection, as the model passes them.
    from ast_min.kernels import custom_op

    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(1, 20, 3, 2, 16, generator=g, dtype=torch.float64)
    q, k, v = (qkv[:, :, i].transpose(1, 2).requires_grad_() for i in range(3))
    torch.library.opcheck(custom_op.flash_attention_forward, (q, k, v, False, 0.25, "", "standard", "split"))
    o, lse = custom_op.flash_attention_forward(q, k, v, True, 0.25, "", "tma", "fused")
    do = torch.randn(o.shape, generator=g, dtype=torch.float64)
    torch.library.opcheck(custom_op.flash_attention_backward, (do, q.detach(), k.detach(), v.detach(), o.detach(), lse,
                                                               True, 0.25, "", "fused"))


def test_torch_compile_fullgraph_model_with_triton_attention_matches_eager():
    # fullgraph=True raises on any graph break, so compiling at all is the "no break" check; the values
    # are compared with the same model run eagerly with torch's SDPA attention (an independent kernel).
    # aot_eager traces through Dynamo and AOTAutograd (fake tensors, the backward graph) without
    # needing a C++ toolchain for Inductor's CPU code.
    from ast_min import ASTConfig, ASTForAudioClassification

    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=32, max_length=48, patch_size=16, frequency_stride=16, time_stride=16, num_labels=3)
    g = torch.Generator().manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)  # far from uniform attention
    x = torch.randn(2, 48, 32, generator=g)
    labels = torch.tensor([0, 2])

    def run(fn, backend):
        model.set_attn_implementation(backend)
        model.zero_grad()
        out = fn(x, labels=labels)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    logits_ref, grads_ref = run(model, "sdpa")
    torch._dynamo.reset()
    logits, grads = run(torch.compile(model, fullgraph=True, backend="aot_eager"), "triton")
    # IEEE fp32 kernels against SDPA: ~1e-6 per call, amplified by the LayerNorm gains (see test_kernels.py).
    err = (logits - logits_ref).abs().max().item()
    assert err <= 1e-4 * max(1.0, logits_ref.abs().max().item()), f"logits differ by {err:.3g}"
    for name, ref in grads_ref.items():
        err = (grads[name] - ref).abs().max().item()
        assert err <= 1e-4 * max(1.0, ref.abs().max().item()), f"grad of {name} differs by {err:.3g}"


@pytest.mark.parametrize("argv, message", [
    (["--dtype", "fp8"], "unknown dtype ['fp8']; choose among"),
    (["--arch", "abc"], "--arch 'abc': give compute capabilities as numbers"),
    (["--arch", "75"], "unknown arch [75]"),
    (["--jobs", "-1"], "--jobs -1: give a number of compile processes"),
])
def test_inspect_refuses_bad_options_in_one_line_before_compiling(argv, message, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # inspect compiles for GPUs; the checks come first
    assert inspect.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
