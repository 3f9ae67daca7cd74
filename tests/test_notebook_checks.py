"""The chapters' checks can fail: each is run on an empty, partial or crashed computation and must raise.

tests/test_notebooks.py runs every chapter top to bottom, so it proves that the checks pass on the real
computation. That says nothing about a check that would pass on *anything*: an `all(...)` over a dict
that came out empty because a subprocess crashed, an `allclose` of two empty lists, a `zip` that
silently stops at the shorter side. Here each such check cell is taken from the chapter's source (by
a line only it contains), given inputs that simulate the failure, and executed on its own: it must
raise AssertionError. A positive control runs the same cell on good inputs, so a cell that raises on
everything would fail here too.

The crashed-subprocess case is real: the cell runs a stand-in interpreter (a shell script) that exits
with an error, prints half a report, or reports nothing.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import types
from pathlib import Path

import jupytext
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def chapter_cell(chapter: str, marker: str) -> str:
    """The source of the one code cell of notebooks/<chapter>.py that contains `marker`."""
    notebook = jupytext.read(NOTEBOOKS / f"{chapter}.py")
    cells = [c.source for c in notebook.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"{chapter}: {len(cells)} code cells contain {marker!r}; the test needs exactly one"
    return cells[0]


def run_cell(source: str, namespace: dict) -> dict:
    exec(compile(source, "<chapter cell>", "exec"), namespace)  # noqa: S102 - the repository's own chapter
    return namespace


# ---- chapter 05: the interpreter check runs in a subprocess ----------------------------------------


def fake_python(tmp_path: Path, stdout: str, status: int) -> str:
    """An executable that ignores its arguments, prints `stdout` and exits with `status`: a stand-in interpreter."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{stdout}'\necho 'Traceback (most recent call last): boom' >&2\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def registry(*names):
    return types.SimpleNamespace(variants=lambda pass_: [types.SimpleNamespace(name=n) for n in names])


def run_interpreter_check(executable: str, names=("split", "fused")) -> dict:
    source = chapter_cell("05_kernel_lab", "subprocess.run(")
    namespace = {"json": json, "os": os, "subprocess": subprocess, "sys": types.SimpleNamespace(executable=executable),
                 "variants": registry(*names)}
    return run_cell(source, namespace)


def report(errors: dict, same_bits=True) -> str:
    return json.dumps({"errors": errors, "same_bits_with_1_and_8_warps": same_bits}) + "\n"


@pytest.mark.parametrize("stdout, status, message", [
    ("", 1, "exit status 1"),  # crashed before printing anything
    (report({"split": 1e-7, "fused": 1e-7}), 1, "exit status 1"),  # printed a report, then crashed
    ("", 0, "printed nothing"),  # exited cleanly having checked nothing
    (report({}), 0, "one result per variant"),  # no variant ran
    (report({"split": 1e-7}), 0, "one result per variant"),  # one variant silently skipped
    (report({"split": 1e-7, "fused": 3e-2}), 0, "fused"),  # a variant that is wrong
    (report({"split": 1e-7, "fused": 1e-7}, same_bits=False), 0, "1 and 8 warps"),  # the warp claim contradicted
    (json.dumps({"errors": {"split": 1e-7, "fused": 1e-7}}) + "\n", 0, "1 and 8 warps"),  # the warp check never ran
], ids=["crash", "crash-after-report", "empty", "no-variant", "partial", "wrong", "warps-differ", "warps-unchecked"])
def test_chapter05_interpreter_check_fails_on_a_crashed_or_partial_run(tmp_path, stdout, status, message):
    with pytest.raises(AssertionError, match=message):
        run_interpreter_check(fake_python(tmp_path, stdout, status))


def test_chapter05_interpreter_check_fails_when_no_variant_is_registered(tmp_path):
    with pytest.raises(AssertionError, match="no backward variant"):
        run_interpreter_check(fake_python(tmp_path, "", 0), names=())


def test_chapter05_interpreter_check_passes_a_complete_good_report(tmp_path):
    namespace = run_interpreter_check(fake_python(tmp_path, report({"split": 1e-7, "fused": 2e-7}), 0))
    assert namespace["errors"] == {"split": 1e-7, "fused": 2e-7}


def test_chapter05_interpreter_check_fails_on_a_really_crashed_interpreter():
    # The real interpreter and the cell's own script, asked for a variant that does not exist: it
    # reports "split", then flash_attention raises and the process exits 1 half way through.
    import sys

    source = chapter_cell("05_kernel_lab", "subprocess.run(")
    namespace = {"json": json, "os": os, "subprocess": subprocess, "sys": sys, "variants": registry("split", "no-such-variant")}
    with pytest.raises(AssertionError, match="exit status 1") as failure:
        run_cell(source, namespace)
    assert "no-such-variant" in str(failure.value)  # the message carries the subprocess's own error


# ---- chapter 05: a compile that failed reports zeros, which must not pass for "fewer registers" -----


def _report(config, registers, spill=0, instructions=2000, error=""):
    from ast_min.kernels import inspect

    return inspect.Report("standard", "forward", config, 90, "bf16", False, num_warps=8 if "w8" in config else 4,
                          registers=registers, spill_store_bytes=spill, stl=spill // 4, ldl=spill // 4,
                          instructions=instructions, error=error)


def run_warps_check(real, real8, generic, generic8, capped8):
    import math

    import triton

    from ast_min.kernels import tuning

    source = chapter_cell("05_kernel_lab", "capped8 = inspect.inspect_config(")
    stub = types.SimpleNamespace(inspect_config=lambda *a, **k: capped8, format_table=lambda reports: "")
    config8 = next(i for i, c in enumerate(tuning.FORWARD_GPU) if c.num_warps == 8)
    return run_cell(source, {"inspect": stub, "tuning": tuning, "triton": triton, "math": math, "AST": None, "config8": config8,
                             "real": real, "real8": real8, "generic": generic, "generic8": generic8})


def test_chapter05_warp_check_passes_the_compilers_answer():
    run_warps_check(_report("w4", 225), _report("w8", 110), _report("w4", 255, spill=152, instructions=2500),
                    _report("w8", 252, instructions=2176), _report("w8 r160", 160, instructions=2232))


@pytest.mark.parametrize("broken", ["real8", "capped8", "all"])
def test_chapter05_warp_check_fails_when_a_compile_failed(broken):
    good = dict(real=_report("w4", 225), real8=_report("w8", 110), generic=_report("w4", 255, spill=152, instructions=2500),
                generic8=_report("w8", 252, instructions=2176), capped8=_report("w8 r160", 160, instructions=2232))
    failed = {k: _report(v.config, 0, instructions=0, error="CompilationError: out of resources") for k, v in good.items()
              if broken in (k, "all")}
    with pytest.raises(AssertionError, match="zeros are no result|CompilationError"):
        run_warps_check(**{**good, **failed})


# ---- chapter 04: comparisons of runs, models and maps ------------------------------------------------


@pytest.mark.parametrize("hand, library", [([], []), ([0.5, 0.4, 0.3, 0.2], [0.5, 0.4, 0.3]), ([0.5] * 4, [0.9] * 4)],
                         ids=["both-empty", "an-epoch-missing", "different"])
def test_chapter04_training_comparison_fails_on_empty_partial_or_different_runs(hand, library):
    source = chapter_cell("04_fine_tuning", "allclose([], []) is True")
    with pytest.raises(AssertionError):
        run_cell(source, {"np": np, "EPOCHS": 4, "DEVICE": "cpu", "hand_epoch_losses": hand, "library_losses": library, "weight_gap": 0.0})


def test_chapter04_training_comparison_passes_equal_runs():
    source = chapter_cell("04_fine_tuning", "allclose([], []) is True")
    run_cell(source, {"np": np, "EPOCHS": 4, "DEVICE": "cpu", "hand_epoch_losses": [0.5, 0.4, 0.3, 0.2],
                      "library_losses": [0.5, 0.4, 0.3, 0.2], "weight_gap": 1e-6})


def _adaptation_namespace(model_class):
    import ast_min
    import torch

    from ast_min.checkpoint import adapt_position_embeddings

    default = Path(ast_min.__file__).parent / "default_model"
    pretrained = ast_min.ASTForAudioClassification.from_pretrained(default)
    return {"old": pretrained.config, "pretrained": pretrained, "SEED": 0, "torch": torch, "FRAMES": 96,
            "id2label": {0: "noise", 1: "pulsed", 2: "tonal"}, "DEFAULT_MODEL": default,
            "adapt_position_embeddings": adapt_position_embeddings,
            "ast_min": types.SimpleNamespace(ASTForAudioClassification=model_class)}


def test_chapter04_adaptation_check_passes_the_real_models():
    import ast_min

    run_cell(chapter_cell("04_fine_tuning", "exactly the head was not copied"), _adaptation_namespace(ast_min.ASTForAudioClassification))


def test_chapter04_adaptation_check_fails_when_the_library_model_holds_nothing():
    import ast_min
    import torch

    class Empty(ast_min.ASTForAudioClassification):  # the library's model came back without its tensors
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return torch.nn.Module()

    with pytest.raises(AssertionError, match="different tensors"):
        run_cell(chapter_cell("04_fine_tuning", "exactly the head was not copied"), _adaptation_namespace(Empty))


def test_chapter04_adaptation_check_fails_when_nothing_was_left_out():
    import ast_min

    class CopiedEverything(ast_min.ASTForAudioClassification):  # as if the old head had been loaded too
        def load_state_dict(self, state, strict=True):
            result = super().load_state_dict(state, strict=False)
            return types.SimpleNamespace(missing_keys=[], unexpected_keys=result.unexpected_keys)

    with pytest.raises(AssertionError):
        run_cell(chapter_cell("04_fine_tuning", "exactly the head was not copied"), _adaptation_namespace(CopiedEverything))


def _map_helpers() -> dict:
    import torch.nn.functional as F

    return run_cell(chapter_cell("04_fine_tuning", "def mean_correlation("), {"np": np, "F": F, "cfg": None})


def test_chapter04_map_correlation_refuses_an_empty_stack():
    helpers = _map_helpers()
    with pytest.raises(AssertionError):
        helpers["mean_correlation"](np.zeros((0, 5, 9)), np.zeros((0, 5, 9)))


def _comparison(trained, randoms, salience):
    helpers = _map_helpers()
    namespace = {"np": np, "maps": {"relevance": (trained, randoms)}, "inputs_only": {"salience": salience},
                 "mean_correlation": helpers["mean_correlation"]}
    return run_cell(chapter_cell("04_fine_tuning", "follows the salient patches"), namespace)


def test_chapter04_comparison_passes_a_map_that_follows_the_salience():
    g = np.random.default_rng(0)
    salience = g.standard_normal((8, 5, 9))
    namespace = _comparison(salience + 0.5 * g.standard_normal(salience.shape), [g.standard_normal(salience.shape) for _ in range(3)], salience)
    assert namespace["more"]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the NaN correlations under test
@pytest.mark.parametrize("case", ["constant-maps", "no-random-model", "no-clips"])
def test_chapter04_comparison_fails_on_empty_or_degenerate_maps(case):
    g = np.random.default_rng(0)
    salience = g.standard_normal((8, 5, 9))
    trained, randoms = salience.copy(), [g.standard_normal(salience.shape) for _ in range(3)]
    if case == "constant-maps":  # a crashed relevance that came back as zeros: correlations are NaN
        trained = np.zeros_like(salience)
    elif case == "no-random-model":
        randoms = []
    else:
        trained, randoms, salience = trained[:0], [r[:0] for r in randoms], salience[:0]
    with pytest.raises((AssertionError, ValueError)):
        _comparison(trained, randoms, salience)


# ---- chapter 02: the sanity check of the random model's maps -----------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # a constant map's correlation is NaN
def test_chapter02_sanity_check_fails_on_a_degenerate_map_and_passes_the_input():
    source = chapter_cell("02_patches_and_transformer", "the random model's rollout is mostly the input's loudness")
    g = np.random.default_rng(0)
    patch_mean = g.standard_normal((12, 101))
    salience = patch_mean + 0.3 * g.standard_normal(patch_mean.shape)
    run_cell(source, {"np": np, "last_cls": g.standard_normal(patch_mean.shape), "rollout_cls": patch_mean + 0.1 * g.standard_normal(patch_mean.shape),
                      "patch_mean": patch_mean, "salience": salience})
    for broken in (np.zeros_like(patch_mean), g.standard_normal(patch_mean.shape)):  # a crashed map; a map unrelated to the input
        with pytest.raises(AssertionError):
            run_cell(source, {"np": np, "last_cls": broken, "rollout_cls": broken, "patch_mean": patch_mean, "salience": salience})


# ---- chapter 03: gradients compared variant by variant, none silently dropped ------------------------


def _backward_cell(blockwise_attention_backward):
    import torch
    import torch.nn.functional as F

    from ast_min import kernels

    q, k, v, do = (torch.randn(1, 1, 40, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(4))
    stub = types.SimpleNamespace(attention_math=kernels.attention_math, blockwise_attention_backward=blockwise_attention_backward)
    return run_cell(chapter_cell("03_flash_attention_in_triton", "def one_pass_backward_by_hand("),
                    {"torch": torch, "F": F, "kernels": stub, "q": q, "k": k, "v": v, "do": do})


def test_chapter03_backward_check_passes_the_library():
    from ast_min import kernels

    _backward_cell(kernels.blockwise_attention_backward)


def test_chapter03_backward_check_fails_when_a_gradient_is_missing():
    from ast_min import kernels

    with pytest.raises(ValueError, match="zip"):  # zip(..., strict=True): a missing dV is an error, not a shorter loop
        _backward_cell(lambda *a, **kw: kernels.blockwise_attention_backward(*a, **kw)[:2])
