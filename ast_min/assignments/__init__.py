"""Self-grading assignments: the student writes a piece of ast-min, a grader checks it against the library.

Each assignment has one instructor source, `sources/<name>.py` (a jupytext py:percent notebook whose
solutions sit between `### BEGIN SOLUTION` and `### END SOLUTION` lines), from which the student's
starter is generated (`starter.py`), and one grader, `graders/<name>.py`, whose tests run in the
grading process (`runner.py`) while the student's file runs only in a separate, limited worker
(`sandbox.py`, `worker.py`) that answers with checked plain data. docs/TEACHING.md describes the
design, its threat model and the Gradescope bundle (`autograder.py`), and lists every known mistake
the graders recognise; `diagnosis.py` names the wrong answers nobody listed, and `similarity.py` is
the instructors' copy check.

    framing          chapter 01  frame_signal, remove_dc, pre_emphasis, hanning_window, prepare_frames
    mel              chapter 01  mel_filterbank, log_mel
    patches          chapter 02  grid_size, patchify, patch_embed
    attention        chapter 02  split_heads, merge_heads, self_attention, block
    flash            chapter 03  online_softmax, blockwise_attention, blockwise_attention_backward
    triton           chapter 03  softmax, flash_attention_forward (Triton kernels, CPU interpreter)
    triton_backward  chapter 03  attention_delta, flash_attention_backward (delta, dK/dV and dQ kernels)
    finetune         chapter 04  fill_value, apply_masks, adapt_positions, new_head, train
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "sources"


@dataclass(frozen=True)
class Assignment:
    """What the command line needs to know about an assignment without importing its grader."""

    name: str
    chapter: str  # the notebook that teaches it
    functions: tuple[str, ...]  # the graded functions, in the order the tests use them
    summary: str
    filename: str = ""  # the student's file; default NAME.py

    def __post_init__(self):
        if not self.filename:
            object.__setattr__(self, "filename", f"{self.name}.py")

    @property
    def source(self) -> Path:
        """The instructor source, solutions included: never hand this file out."""
        return SOURCES / f"{self.name}.py"

    def grader(self):
        """The grader module (imports torch and the library; only the grading process imports it, never a worker)."""
        return import_module(f"ast_min.assignments.graders.{self.name}")


ASSIGNMENTS: dict[str, Assignment] = {
    a.name: a
    for a in (
        Assignment(
            "framing",
            "notebooks/01_log_mel_spectrogram.py",
            ("frame_signal", "remove_dc", "pre_emphasis", "hanning_window", "prepare_frames"),
            "Kaldi framing: snip_edges, DC removal, pre-emphasis, the symmetric Hann window",
        ),
        Assignment(
            "mel",
            "notebooks/01_log_mel_spectrogram.py",
            ("mel_filterbank", "log_mel"),
            "the mel filterbank and the log-mel step, for any bin count, rate and band",
        ),
        Assignment(
            "patches",
            "notebooks/02_patches_and_transformer.py",
            ("grid_size", "patchify", "patch_embed"),
            "overlapping patches of any size and strides; the patch embedding as unfold + matmul",
        ),
        Assignment(
            "attention",
            "notebooks/02_patches_and_transformer.py",
            ("split_heads", "merge_heads", "self_attention", "block"),
            "multi-head self-attention and a pre-norm block from a checkpoint's raw weights",
        ),
        Assignment(
            "flash",
            "notebooks/03_flash_attention_in_triton.py",
            ("online_softmax", "blockwise_attention", "blockwise_attention_backward"),
            "the online softmax and FlashAttention-2 forward and backward in torch, no N x N tensor",
        ),
        Assignment(
            "triton",
            "notebooks/03_flash_attention_in_triton.py",
            ("softmax", "flash_attention_forward"),
            "a row-softmax kernel and the fused-attention forward kernel in Triton (runs on the CPU)",
            # not triton.py: a file of that name would shadow the triton package it imports
            filename="triton_kernels.py",
        ),
        Assignment(
            "triton_backward",
            "notebooks/03_flash_attention_in_triton.py",
            ("attention_delta", "flash_attention_backward"),
            "FlashAttention-2's backward in Triton: the delta, dK/dV and dQ kernels (runs on the CPU)",
        ),
        Assignment(
            "finetune",
            "notebooks/04_fine_tuning.py",
            ("fill_value", "apply_masks", "adapt_positions", "new_head", "train"),
            "fine-tune the embedded model on a new label set and clip length, training loop by hand",
        ),
    )
}


def get(name: str) -> Assignment:
    """The assignment called `name`, or a ValueError listing the names there are."""
    try:
        return ASSIGNMENTS[name]
    except KeyError:
        raise ValueError(
            f"no assignment called {name!r}; the assignments are {', '.join(ASSIGNMENTS)} "
            "(ast-min assignment list describes them)"
        ) from None


__all__ = ["ASSIGNMENTS", "Assignment", "get"]
