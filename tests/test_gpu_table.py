"""`python -m ast_min.kernels.gpu_table` on a machine without a GPU: it refuses, and its table-writing works.

The measuring half needs CUDA; what can be tested anywhere is tested here: the refusal (one line, no
file written), the rendering of a recorded sample of the raw format (tests/data/gpu_table_sample.json,
written by hand: a sample of the format, not a measurement) with every derived number recomputed here
from the raw one, the verdict on raw files that record a failure (each must say FAILED), the GPU-test
runner on real pytest subprocesses that fail, select nothing or pass, and that the table committed in
kernels/ is exactly what the command renders from its raw file (or the "not measured" text, when there
is none), so no number in it can be typed by hand.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ast_min.kernels import gpu_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).with_name("data") / "gpu_table_sample.json"


@pytest.fixture
def raw():
    return json.loads(SAMPLE.read_text())


def table_rows(text: str, section: str) -> list[list[str]]:
    """The body rows of the markdown table under `## section...`, as lists of stripped cells."""
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in rows[1:]]  # rows[0]: the header


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the command would measure")
def test_refuses_in_one_line_without_a_gpu_and_writes_nothing(tmp_path, capsys):
    out, raw_out = tmp_path / "table.md", tmp_path / "raw.json"
    assert gpu_table.main(["--out", str(out), "--raw", str(raw_out)]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "--render" in err and err.count("\n") == 1, err
    assert not out.exists() and not raw_out.exists()


def test_renders_the_recorded_sample_with_every_derived_number_recomputed(raw):
    text = gpu_table.render(raw)
    m = raw["machine"]
    for fact in (raw["date"], m["card"], f"driver {m['driver']}", f"CUDA {m['cuda']}", f"torch {m['torch']}",
                 f"triton {m['triton']}", f"transformers {m['transformers']}", f"commit {m['commit']}"):
        assert fact in text, fact
    assert "Verdict: every check passed" in text and "within its 8 min 0 s budget" in text
    assert "OVER its" in gpu_table.render({**raw, "seconds": raw["budget_seconds"] + 1})  # reported, not hidden

    B, H, N, Dh = (raw["kernel_shape"][k] for k in ("B", "H", "N", "Dh"))
    flops = 4 * B * H * N * N * Dh  # Q Kᵀ and P V, 2·N²·Dh each per (batch, head)
    rows = table_rows(text, "Kernels")
    assert len(rows) == len(raw["kernels"])
    for cells, r in zip(rows, raw["kernels"], strict=True):
        assert cells[:2] == [r["dtype"], r["provider"]]
        sdpa = [x for x in raw["kernels"] if x["dtype"] == r["dtype"] and x["provider"].startswith("sdpa")]
        assert float(cells[3]) == pytest.approx(flops / (r["fwd_ms"] * 1e-3) / 1e12, abs=0.05)
        assert float(cells[6]) == pytest.approx(3.5 * flops / (r["fwdbwd_ms"] * 1e-3) / 1e12, abs=0.05)
        assert float(cells[4].rstrip("x")) == pytest.approx(min(x["fwd_ms"] for x in sdpa) / r["fwd_ms"], abs=0.005)
        assert float(cells[7].rstrip("x")) == pytest.approx(min(x["fwdbwd_ms"] for x in sdpa) / r["fwdbwd_ms"], abs=0.005)
    tests = raw["tests"]
    assert f"{tests['passed']} passed, 0 failed, 0 errors" in text and f"exit status {tests['returncode']}" in text

    model_rows = table_rows(text, "AST-Base")
    assert len(model_rows) == len(raw["model"])
    for cells, r in zip(model_rows, raw["model"], strict=True):
        assert cells[:2] == [r["implementation"], r["attention"]]
        if "note" in r:
            assert cells[2] == r["note"]
        else:
            clip_flops = raw["model_forward_flops_per_clip"] * raw["model_batch"]
            assert float(cells[3]) == pytest.approx(clip_flops / (r["fwd_ms"] * 1e-3) / 1e12, abs=0.05)
            assert float(cells[4]) == pytest.approx(raw["model_batch"] / (r["fwd_ms"] * 1e-3), abs=0.5)


def _fail_tests(raw):
    raw["tests"].update(returncode=1, failed=2, passed=19)


def _no_tests(raw):
    raw["tests"].update(returncode=5, passed=0)


def _tests_crashed(raw):
    raw["tests"] = {"command": raw["tests"]["command"], "error": "timed out after 1200 s (a hang?)"}


def _variant_missing(raw):
    raw["kernels"] = [r for r in raw["kernels"] if r["provider"] != "triton-fused"]


def _variant_crashed(raw):
    row = next(r for r in raw["kernels"] if r["provider"] == "triton" and r["dtype"] == "bf16")
    row.update(note="n/a: RuntimeError", fwd_ms=None, fwdbwd_ms=None, max_err=None)


def _variant_wrong(raw):
    next(r for r in raw["kernels"] if r["provider"] == "triton-fused" and r["dtype"] == "fp16")["max_err"] = 0.5


def _variant_nan(raw):
    next(r for r in raw["kernels"] if r["provider"] == "triton" and r["dtype"] == "fp16")["max_err"] = float("nan")


def _model_disagrees(raw):
    next(r for r in raw["model"] if r["attention"] == "triton")["max_abs_diff"] = 1.5


def _model_missing(raw):
    raw["model"] = [r for r in raw["model"] if r["attention"] != "triton"]


@pytest.mark.parametrize("break_it, message", [
    (_fail_tests, "GPU tests: exit status 1"), (_no_tests, "0 passed"), (_tests_crashed, "timed out"),
    (_variant_missing, "no bf16 row for triton-fused"), (_variant_crashed, "triton bf16 did not run"),
    (_variant_wrong, "triton-fused fp16 differs"), (_variant_nan, "triton fp16 differs"),
    (_model_disagrees, "disagrees with transformers"), (_model_missing, "no row for ast-min with triton"),
], ids=lambda x: getattr(x, "__name__", "")[1:] or None)
def test_a_run_that_failed_or_checked_nothing_is_rendered_as_failed(raw, break_it, message, tmp_path):
    broken = copy.deepcopy(raw)
    break_it(broken)
    text = gpu_table.render(broken)
    assert "Verdict: FAILED" in text and message in text, text[:2000]
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(broken))
    assert gpu_table.main(["--render", str(path), "--out", str(tmp_path / "t.md")]) == 1  # and the command says so


def test_render_command_writes_the_sample_table(raw, tmp_path):
    out = tmp_path / "t.md"
    assert gpu_table.main(["--render", str(SAMPLE), "--out", str(out)]) == 0
    assert out.read_text() == gpu_table.render(raw) + "\n"


def test_render_refuses_another_format_in_one_line(raw, tmp_path, capsys):
    path = tmp_path / "raw.json"
    path.write_text(json.dumps({**raw, "format": 99}))
    assert gpu_table.main(["--render", str(path), "--out", str(tmp_path / "t.md")]) == 2
    err = capsys.readouterr().err
    assert "format 99" in err and err.count("\n") == 1


def test_the_committed_table_is_the_render_of_its_raw_measurements():
    # Either no GPU run is recorded and the table says so, or the table is exactly what the command
    # renders from the recorded raw file: no figure in it can have been typed in by hand.
    recorded = gpu_table.load_raw()
    committed = gpu_table.TABLE_PATH.read_text()
    if recorded is None:
        assert committed == gpu_table.UNMEASURED
    else:
        assert committed == gpu_table.render(recorded) + "\n"


@pytest.mark.parametrize("summary, counts", [
    ("21 passed, 66 deselected in 96.30s", {"passed": 21, "deselected": 66}),
    ("2 failed, 19 passed, 66 deselected in 90.01s (0:01:30)", {"failed": 2, "passed": 19, "deselected": 66}),
    ("1 error in 3.2s", {"errors": 1}),
    ("no tests ran in 0.01s", {}),
])
def test_pytest_summary_is_parsed(summary, counts):
    assert gpu_table.pytest_counts("collected 87 items\n\n" + summary + "\n") == counts


def _repo_with_kernel_tests(tmp_path, body: str) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_kernels.py").write_text(body)
    return tmp_path


@pytest.mark.parametrize("body, expect", [
    ("def test_gpu_one():\n    assert True\n\ndef test_gpu_two():\n    assert 1 == 2\n", dict(returncode=1, passed=1, failed=1)),
    ("def test_cpu_only():\n    assert True\n", dict(returncode=5, passed=0)),
    ("import no_such_module\n\ndef test_gpu_one():\n    pass\n", dict(returncode=2, errors=1)),
    ("def test_gpu_one():\n    assert True\n", dict(returncode=0, passed=1)),
], ids=["one-fails", "none-selected", "collection-error", "passes"])
def test_gpu_test_runner_reports_real_pytest_runs(tmp_path, body, expect):
    result = gpu_table.run_gpu_tests(_repo_with_kernel_tests(tmp_path, body), timeout=120)
    assert {k: result.get(k, 0) for k in expect} == expect, result
    raw = json.loads(SAMPLE.read_text())
    raw["tests"] = result
    assert ("Verdict: FAILED" in gpu_table.render(raw)) == (expect["returncode"] != 0)


def test_gpu_test_runner_without_a_checkout_says_so(tmp_path):
    result = gpu_table.run_gpu_tests(tmp_path, timeout=60)
    assert "not found" in result["error"] and "--repo" in result["error"]


def test_the_commands_test_selection_holds_every_test_marked_gpu():
    # The command runs `-k gpu`; every test that needs CUDA carries the `gpu` marker. The first set must
    # hold the second, and neither may be empty (a selection of nothing would pass as "0 failed").
    def collect(*selection):
        result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 "tests/test_kernels.py", *selection], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return {line for line in result.stdout.splitlines() if "::" in line}

    marked, selected = collect("-m", "gpu"), collect(*gpu_table.GPU_TESTS[1:])
    assert marked and marked <= selected, marked - selected
    assert any(re.search(r"test_every_gpu_block_config_is_correct", t) for t in selected)


def test_model_agreement_bounds_are_the_model_benchmarks():
    from ast_min.bench import model

    assert {name: gpu_table.MODEL_AGREEMENT[name] for name in ("bf16", "fp16", "fp32")} == {
        "bf16": model.AGREE[torch.bfloat16], "fp16": model.AGREE[torch.float16], "fp32": model.AGREE[torch.float32]}


def test_the_whole_pipeline_runs_small_on_a_cpu_and_its_record_renders(tmp_path):
    # The measuring code itself, end to end, at toy sizes: the kernels through the interpreter at a
    # tiny shape, one layer of AST-Base at batch 1 in fp32, a stand-in test file that passes. Its raw
    # record must be what render() reads (the sample above is hand-written: this is the real thing).
    import time

    def once(fn, device):
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    repo = _repo_with_kernel_tests(tmp_path, "def test_gpu_one():\n    assert True\n")
    raw = gpu_table.measure(repo, 120, device="cpu", kernel_shape=dict(B=1, H=2, N=37, Dh=16), kernel_dtypes=("fp16",),
                            model_batch=1, model_layers=1, model_backends={"ast-min": ("eager", "sdpa"), "transformers": ("sdpa",)},
                            model_timer=once)
    raw = json.loads(json.dumps(raw))  # what the command writes and reads back
    assert set(raw["expected_providers"]) >= {"triton", "triton-fused"}
    text = gpu_table.render(raw)
    assert "Verdict: every check passed" in text, gpu_table.problems(raw)
    assert len(table_rows(text, "Kernels")) == len(raw["kernels"]) and len(table_rows(text, "AST-Base")) == 3
