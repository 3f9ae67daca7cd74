"""Differential diagnosis: a wrong answer nobody listed is named by the standard mistake that reproduces it, never by one that does not.

Each student mistake below is written the way a student would write it (not by the diagnosis's
own edit), into the instructor's solution; the graded submission must fail the named test with a
hint of the mistake's class, and with the evidence that the variant reproduces the output on the
counterexample and on a second input. The classes are the ones docs/TEACHING.md counts; every
class appears on every assignment where it has a natural form among these cases or the known
mistakes of tests/test_assignments.py. The unit tests then prove the rule itself: no hint without
reproduction on the second input, known mistakes first, and a variant that crashes or hangs its
process costs the diagnosis that variant only.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import time
import types

import pytest
import torch

from ast_min.assignments import diagnosis, get
from ast_min.assignments.diagnosis import Call
from ast_min.assignments.grading import Context, Fail
from ast_min.assignments.runner import grade

EXAMPLES = 8
EVIDENCE = re.compile(r"this mistake reproduces your output here and on a second input: max differences (\S+) and (\S+)\)")

# (assignment, test, [(old, new), ...] written as a student would, the hint expected)
STUDENT_MISTAKES = [
    # a reduction over another axis
    ("framing", "remove_dc: every frame's mean is removed",
     [("return frames - frames.mean(dim=-1, keepdim=True)", "return frames - frames.mean(0)")], "derived: reduction_axis"),
    # two axes swapped: a transpose left out
    ("attention", "split_heads and merge_heads: heads by view and transpose, any sizes",
     [("return x.transpose(1, 2).reshape(B, L, H * Dh)", "return x.reshape(B, L, H * Dh)")], "derived: axes"),
    ("triton_backward", "flash_attention_backward: B = 1, H = 2, N = 24, Dh = 16, float64",
     [("scores = tl.dot(q, tl.trans(k), out_dtype=ACC) * sm_scale", "scores = tl.dot(q, k, out_dtype=ACC) * sm_scale")],
     "derived: axes"),
    # a scale factor missing
    ("framing", "hanning_window: Kaldi's symmetric window for any length",
     [("return 0.5 - 0.5 * torch.cos(", "return 0.5 - torch.cos(")], "derived: scale"),
    ("mel", "mel_filterbank: AST's 128 bins at 16 kHz, empty filter included",  # an FFT-bin frequency formula
     [("np.arange(fft_length // 2 + 1) * sampling_rate / fft_length",
       "np.arange(fft_length // 2 + 1) * (sampling_rate / 2) / fft_length")], "derived: scale"),
    ("flash", "blockwise_attention_backward equals autograd for any sizes, blocks, causal or not",  # dK without the scale
     [("dk[:, :, cols] += scale * ds.transpose(-2, -1) @ q[:, :, rows]", "dk[:, :, cols] += ds.transpose(-2, -1) @ q[:, :, rows]")],
     "derived: scale"),
    ("triton_backward", "flash_attention_backward: B = 1, H = 2, N = 24, Dh = 16, float64",
     [("    dq = dq * sm_scale\n", "")], "derived: scale"),
    # off by one: a slice bound, and the causal mask hiding the diagonal
    ("finetune", "apply_masks: bands and frames set to the value, input untouched",
     [("out[:, freq_start : freq_start + freq_width] = value", "out[:, freq_start : freq_start + freq_width + 1] = value")],
     "derived: off_by_one"),
    ("flash", "blockwise_attention equals softmax(S) V for any sizes, blocks, causal or not",
     [('s = s.masked_fill(cols[None, :] > rows[:, None], float("-inf"))',
       's = s.masked_fill(cols[None, :] >= rows[:, None], float("-inf"))')], "derived: off_by_one"),
    ("triton_backward", "flash_attention_backward: causal, N = 21 (a ragged last block), float64",
     [("keep = keep & (cols[None, :] <= rows[:, None])", "keep = keep & (cols[None, :] < rows[:, None])")],
     "derived: off_by_one"),
    # two arguments of the same kind swapped
    ("patches", "grid_size: (f, t) for any size and strides",
     [("f = (num_mel_bins - patch_size) // frequency_stride + 1\n    t = (num_frames - patch_size) // time_stride + 1",
       "f = (num_mel_bins - patch_size) // time_stride + 1\n    t = (num_frames - patch_size) // frequency_stride + 1")],
     "derived: swapped_arguments"),
    ("triton", "flash_attention_forward: B = 1, H = 3, N = 24, Dh = 16, float32",  # the launch grid's axes
     [("grid = (triton.cdiv(N, BLOCK_M), B * H)", "grid = (B * H, triton.cdiv(N, BLOCK_M))")], "derived: swapped_arguments"),
    # flattening order: a position grid read time-major
    ("finetune", "adapt_positions equals the original rule for any grids",
     [("grid = grid.transpose(1, 2).reshape(1, D, f, t)", "grid = grid.transpose(1, 2).reshape(1, D, t, f).transpose(2, 3)")],
     "derived: flatten_order"),
    # another log base
    ("mel", "log_mel: log(max(power @ bank, eps)) for any energies",
     [("torch.clamp_min(power @ filterbank, floor).log()", "torch.log2(torch.clamp_min(power @ filterbank, floor))")],
     "derived: log_eps"),
    # a lower precision of accumulation (results converted back, so only the values tell)
    ("flash", "blockwise_attention: float16 and bfloat16 inputs, float32 accumulation and results",
     [("acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32\n    q, k, v = q.to",
       "acc_dtype = q.dtype\n    q, k, v = q.to"),
      ("        lse[:, :, rows] = m + torch.log(l)\n    return o, lse", "        lse[:, :, rows] = m + torch.log(l)\n    return o.float(), lse.float()")],
     "derived: precision"),
    # a step, a term or a given argument left out
    ("attention", "block equals AST's pre-norm block for any B, L, D, H and eps",
     [('after = F.layer_norm(x, (D,), weights["layernorm_after.weight"], weights["layernorm_after.bias"], eps)',
       'after = F.layer_norm(x, (D,), weights["layernorm_after.weight"], weights["layernorm_after.bias"])')],
     "derived: left_out"),
    ("patches", "patch_embed equals the convolution for any sizes",
     [("return patches @ weight.reshape(weight.shape[0], p * p).T + bias", "return patches @ weight.reshape(weight.shape[0], p * p).T")],
     "derived: left_out"),
    ("triton", "flash_attention_forward equals softmax(S) V for any N, Dh, blocks and sm_scale",  # sm_scale ignored
     [("scale = 1.0 / math.sqrt(Dh) if sm_scale is None else sm_scale", "scale = 1.0 / math.sqrt(Dh)")], "derived: left_out"),
    ("flash", "blockwise_attention_backward equals autograd for any sizes, blocks, causal or not",  # no causal mask
     [("            if causal:\n                p = p.masked_fill(cols[None, :] > rows[:, None], 0.0)\n", "")], "derived: left_out"),
    # one variable for another: the residual taken from the normalised input
    ("attention", "block equals AST's pre-norm block for any B, L, D, H and eps",
     [("x = x + self_attention(before, weights, num_heads)", "x = before + self_attention(before, weights, num_heads)")],
     "derived: wrong_variable"),
]


def submission(tmp_path, name: str, edits) -> str:
    source = get(name).source.read_text()
    for old, new in edits:
        assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {name}'s source"
        source = source.replace(old, new)
    path = tmp_path / get(name).filename
    path.write_text(source)
    return path


@pytest.mark.parametrize("name, test, edits, hint", STUDENT_MISTAKES,
                         ids=[f"{n}-{h.split(': ')[1]}-{i}" for i, (n, _, _, h) in enumerate(STUDENT_MISTAKES)])
def test_a_mistake_nobody_listed_is_named_by_the_variant_that_reproduces_it(name, test, edits, hint, tmp_path):
    (result,) = grade(name, submission(tmp_path, name, edits), max_examples=EXAMPLES, only=[test]).tests
    assert result.score == 0, result.output
    assert f"hint ({hint})" in result.output, result.output
    assert result.output.count("hint (") == 1, result.output
    evidence = EVIDENCE.search(result.output)
    assert evidence, result.output
    assert "first mismatch" in result.output or "should have shape" in result.output, result.output


def test_the_stride_swap_is_named_as_such_never_as_one_short(tmp_path):
    """On the shrunk counterexample the swap equals the hand-written `grid_missing_plus_one#2` variant;
    on the second input it does not, so that hint is withheld and the derived swap is named."""
    edits = STUDENT_MISTAKES[10][2]
    assert "frequency_stride + 1" in edits[0][0]
    for seed in (0, 1, 2):
        (result,) = grade("patches", submission(tmp_path, "patches", edits), seed=seed, max_examples=EXAMPLES,
                          only=["grid_size: (f, t) for any size and strides"]).tests
        assert "grid_missing_plus_one" not in result.output, result.output
        assert "hint (derived: swapped_arguments): `grid_size` behaves as if `frequency_stride` and `time_stride` " \
               "were swapped" in result.output, result.output


# ---- the rule, in the grading process's own terms ---------------------------------------------------------------------


def grid_swapped(T, F, p, sf, st):
    return (F - p) // st + 1, (T - p) // sf + 1


def test_no_hint_unless_the_variant_reproduces_the_second_input_too():
    from ast_min.assignments.graders import patches

    counterexample = (1, 2, 1, 1, 2)  # where the swap and "one short" coincide
    got = torch.tensor(grid_swapped(*counterexample), dtype=torch.float64)
    assert torch.equal(got, patches.grid_variants(*counterexample)["grid_missing_plus_one#2"].double())
    call = Call("patches", "grid_size", counterexample, second=((40, 31, 3, 2, 5), {}))
    expected = torch.tensor([2.0, 1.0])

    def find(student_second):
        return diagnosis.find(call, got, expected, 0.0, 0.0, student=lambda a, kw: student_second(*a, **kw),
                              known=patches.grid_variants, hints=patches.HINTS, seed=0)

    named = find(grid_swapped)
    assert named is not None and named.name == "derived: swapped_arguments", named
    # a student whose output matches both on the counterexample, but neither elsewhere: no hint at all
    assert find(lambda *a: (7, 7)) is None


def test_known_mistakes_come_before_derived_ones():
    """Leaving out flash's softmax scale is also a derived `scale` variant; the hand-written hint wins."""
    from ast_min.assignments.graders import flash

    q, k, v = flash.qkv(3, 1, 1, 9, 4)
    kwargs = dict(causal=False, sm_scale=None, block_m=4, block_n=4)
    call = Call("flash", "blockwise_attention", (q, k, v), kwargs, pick=0)
    unscaled = lambda q, k, v, **kw: flash.attention_math(q, k, v, False, 1.0)  # noqa: E731
    got = unscaled(q, k, v)[0]
    expected = flash.attention_math(q, k, v, False, 0.5)[0]
    found = diagnosis.find(call, got, expected, 1e-10, 1e-10, student=lambda a, kw: unscaled(*a, **kw),
                           known=flash.o_variants, hints=flash.HINTS, seed=0)
    assert found is not None and found.name == "no_scale", found
    without_known = diagnosis.find(call, got, expected, 1e-10, 1e-10, student=lambda a, kw: unscaled(*a, **kw),
                                   known=None, hints={}, seed=0)
    assert without_known is not None and without_known.name == "derived: scale", without_known


def test_a_hint_is_only_computed_for_the_example_hypothesis_reports(monkeypatch):
    """While hypothesis shrinks, a failed comparison costs no diagnosis; the reported example gets one."""
    from hypothesis import given, settings, strategies as st

    calls = []
    monkeypatch.setattr(diagnosis, "find", lambda *a, **kw: calls.append(1))
    student = types.SimpleNamespace(f=lambda x: x + 1)
    ctx = Context(student, 0, 5)

    @settings(max_examples=20, database=None, derandomize=True)
    @given(st.integers(0, 1000))
    def run(n):
        x = torch.tensor([float(n)])
        ctx.compare(ctx.call("f", x), x, "f", atol=0, rtol=0, derive=Call("framing", "remove_dc", (x,)))

    with pytest.raises(Fail):
        run()
    assert len(calls) == 1  # the final replay only, not every shrinking step


def test_a_variant_that_crashes_or_hangs_costs_only_itself(monkeypatch):
    """Variants run in a forked process: an abort (a changed kernel writing out of bounds) or an endless
    loop loses that variant, and the diagnosis goes on with the next one within its budget."""
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    call = Call("framing", "remove_dc", (x,), axes=("T", "L"), seconds=20)
    crash = diagnosis.Variant("left_out", "crashes", ("test", "crash"))
    hang = diagnosis.Variant("left_out", "hangs", ("test", "hang"))
    halve = diagnosis.Variant("scale", "your output is half the expected one", ("output", "times", 0.5))
    run_variant = diagnosis.run_variant

    def patched(variant, *args):
        if variant.how == ("test", "crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        if variant.how == ("test", "hang"):
            time.sleep(3600)
        return run_variant(variant, *args)

    monkeypatch.setattr(diagnosis, "run_variant", patched)
    monkeypatch.setattr(diagnosis, "derived_variants", lambda *a: [crash, halve])
    expected = x - x.mean(-1, keepdim=True)
    found = diagnosis.find(call, expected * 0.5, expected, 1e-12, 1e-12,
                           student=lambda a, kw: 0.5 * (a[0] - a[0].mean(-1, keepdim=True)), known=None, hints={}, seed=0)
    assert found is not None and found.text.startswith("your output is half"), found
    monkeypatch.setattr(diagnosis, "derived_variants", lambda *a: [hang, halve])
    started = time.monotonic()
    found = diagnosis.find(Call("framing", "remove_dc", (x,), seconds=3), expected * 0.5, expected, 1e-12, 1e-12,
                           student=lambda a, kw: 0.5 * (a[0] - a[0].mean(-1, keepdim=True)), known=None, hints={}, seed=0)
    assert found is None and time.monotonic() - started < 15


# ---- the derived variants themselves --------------------------------------------------------------------------------

SNIPPET = '''
import torch


def f(x, y, scale, n):
    ### BEGIN SOLUTION
    centred = x - x.mean(dim=-1, keepdim=True)
    z = centred * scale + y[: n + 1].sum()
    if scale > 1:
        z = z + 1
    total = 0
    total += z.sum()
    w = torch.log(torch.clamp_min(z.abs(), 1e-6)).to(torch.float64)
    return w.transpose(0, 1).reshape(-1) + total + (n - 1) // 2
    ### END SOLUTION
'''


def test_every_class_of_source_variant_is_derived_and_each_is_one_valid_edit():
    variants = diagnosis.source_variants(SNIPPET, "f")
    kinds = {v.kind for v in variants}
    assert kinds == set(diagnosis.KINDS), set(diagnosis.KINDS) - kinds
    lines = SNIPPET.splitlines()
    first, last = lines.index("    ### BEGIN SOLUTION") + 2, lines.index("    ### END SOLUTION")  # 1-based
    original = ast.dump(ast.parse(SNIPPET))
    for v in variants:
        changed = diagnosis.apply_source(SNIPPET, *v.how[1:])
        assert ast.dump(ast.parse(changed)) != original, v.text  # an edit, and still Python
        assert v.text.startswith("in `f`, ")
        assert first <= v.line <= last, v  # inside the solution block, never outside it


def test_variants_of_the_output_and_of_the_call():
    reference = torch.arange(24.0).reshape(2, 3, 4)
    texts = [v.text for v in diagnosis.output_variants((2, 3, 4), ("B", "T", "F"))]
    assert torch.equal(diagnosis.apply_output(("output", "swap", 1, 2), reference), reference.transpose(1, 2))
    column_major = diagnosis.apply_output(("output", "flatten", 2, 0, 2), reference)
    assert torch.equal(column_major[0, 0], torch.tensor([0.0, 2.0, 1.0, 3.0]))
    with_tokens = diagnosis.apply_output(("output", "flatten", 2, 2, 2), torch.arange(6.0).reshape(1, 1, 6))
    assert with_tokens.flatten().tolist() == [0.0, 1.0, 2.0, 4.0, 3.0, 5.0]  # two leading entries kept
    assert "your output is the expected one with B (dim 0) and T (dim 1) swapped (a transpose)" in texts

    def g(a: torch.Tensor, b: torch.Tensor, stride_a: int, stride_b: int, causal: bool = False, scale=None):
        return a

    names = [v.text for v in diagnosis.boundary_variants(g, (torch.zeros(2, 2), torch.ones(2, 2), 1, 2),
                                                         dict(causal=True, scale=0.5))]
    assert "`g` behaves as if `a` and `b` were swapped" in names
    assert "`g` behaves as if `stride_a` and `stride_b` were swapped" in names
    assert any("`causal` were False" in n for n in names) and any("ignores the given `scale`" in n for n in names)


def test_the_second_input_keeps_every_size_and_flag_and_the_range_of_values():
    x = torch.rand(3, 5, dtype=torch.float64)
    args = (x, torch.randn(4, dtype=torch.float32), torch.arange(3), 7, True, {"w": torch.randn(2, 2)})
    second = diagnosis.redraw(args, torch.Generator().manual_seed(0))
    assert [type(a) for a in second] == [type(a) for a in args] and second[3:5] == (7, True)
    assert second[0].shape == x.shape and second[0].dtype == x.dtype and bool((second[0] >= 0).all())
    assert not torch.equal(second[0], x) and second[1].dtype == torch.float32
    assert torch.equal(second[2], args[2])  # indices are kept
    assert second[5]["w"].shape == (2, 2) and not torch.equal(second[5]["w"], args[5]["w"])
