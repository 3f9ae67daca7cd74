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
