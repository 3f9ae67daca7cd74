"""Assignment `triton_backward`: what its starter promises is what its grader checks.

tests/test_assignments.py proves for every assignment, this one included, that the instructor's
solution scores full marks within its budget, the starter zero, and each known mistake its hint.
Here: the one-pass alternative the starter allows (atomic dQ) scores full marks too, a backward
computed by torch instead of the kernels is refused, and the starter and chapter point at each other.
"""

from __future__ import annotations

from pathlib import Path

from ast_min.assignments import get
from ast_min.assignments.graders.triton_backward import T_KERNELS
from ast_min.assignments.runner import grade
from ast_min.assignments.starter import make_starter

EXAMPLES = 6
SOURCE = get("triton_backward").source.read_text()

ONE_PASS = '''@triton.jit
def one_pass_kernel(Q, K, V, DO, LSE, DELTA, DQ, DK, DV, N, sm_scale, CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr):
    """FlashAttention-2's single pass: one program per key block; dQ gathered with atomic adds (DQ starts at 0)."""
    keys = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    head = tl.program_id(1).to(tl.int64)
    d = tl.arange(0, HEAD_DIM)
    kv_ptrs = head * N * HEAD_DIM + keys[:, None] * HEAD_DIM + d[None, :]
    k = tl.load(K + kv_ptrs, mask=keys[:, None] < N, other=0.0)
    v = tl.load(V + kv_ptrs, mask=keys[:, None] < N, other=0.0)
    grad_k = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    grad_v = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    for first in range(0, N, BLOCK_M):
        queries = first + tl.arange(0, BLOCK_M)
        q_ptrs = head * N * HEAD_DIM + queries[:, None] * HEAD_DIM + d[None, :]
        q = tl.load(Q + q_ptrs, mask=queries[:, None] < N, other=0.0)
        g = tl.load(DO + q_ptrs, mask=queries[:, None] < N, other=0.0)
        row_lse = tl.load(LSE + head * N + queries, mask=queries < N, other=0.0)
        row_delta = tl.load(DELTA + head * N + queries, mask=queries < N, other=0.0)
        scores = tl.dot(q, tl.trans(k), out_dtype=ACC) * sm_scale
        scores = tl.where(keep_mask(queries, keys, N, CAUSAL), scores, -1.0e30)
        probs = tl.exp(scores - row_lse[:, None])
        grad_v += tl.dot(tl.trans(probs.to(g.dtype)), g, out_dtype=ACC)
        grad_s = probs * (tl.dot(g, tl.trans(v), out_dtype=ACC) - row_delta[:, None]) * sm_scale
        grad_k += tl.dot(tl.trans(grad_s.to(q.dtype)), q, out_dtype=ACC)
        tl.atomic_add(DQ + q_ptrs, tl.dot(grad_s.to(k.dtype), k, out_dtype=ACC), mask=queries[:, None] < N)
    tl.store(DK + kv_ptrs, grad_k.to(DK.dtype.element_ty), mask=keys[:, None] < N)
    tl.store(DV + kv_ptrs, grad_v.to(DV.dtype.element_ty), mask=keys[:, None] < N)


def flash_attention_backward(do, q, k, v, o, lse, causal=False, sm_scale=None, BLOCK_M=16, BLOCK_N=16):
    B, H, N, Dh = q.shape
    scale = 1.0 / math.sqrt(Dh) if sm_scale is None else sm_scale
    do, q, k, v, o, lse = (t.contiguous() for t in (do, q, k, v, o, lse))
    delta = attention_delta(o, do, BLOCK_M)
    dq = torch.zeros_like(q)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    one_pass_kernel[(triton.cdiv(N, BLOCK_N), B * H)](q, k, v, do, lse, delta, dq, dk, dv, N, scale, CAUSAL=causal,
                                                      HEAD_DIM=Dh, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, ACC=acc_type(q))
    return dq, dk, dv


'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / get("triton_backward").filename
    path.write_text(text)
    return path


def test_the_one_pass_backward_with_atomic_dq_scores_full_marks(tmp_path):
    start = SOURCE.index("@triton.jit\ndef dkdv_kernel(")
    end = SOURCE.index("# %% [markdown]\n# Try your kernels here")
    report = grade("triton_backward", write(tmp_path, SOURCE[:start] + ONE_PASS + SOURCE[end:]), max_examples=EXAMPLES)
    failed = [f"{t.name}: {t.output}" for t in report.tests if t.score != t.max_score]
    assert not failed and report.score == report.max_score > 0, "\n".join(failed)


def test_a_backward_computed_by_torch_is_refused(tmp_path):
    body_start = SOURCE.index('    """FlashAttention-2\'s backward: dq, dk, dv')
    body_end = SOURCE.index("# %% [markdown]\n# Try your kernels here")
    by_torch = '''    """The gradients by plain torch: right, but not what the assignment asks."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = q @ k.transpose(-2, -1) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    p = torch.exp(s - lse[..., None])
    ds = p * (do @ v.transpose(-2, -1) - (do * o).sum(-1, keepdim=True))
    return scale * ds @ k, scale * ds.transpose(-2, -1) @ q, p.transpose(-2, -1) @ do


'''
    (result,) = grade("triton_backward", write(tmp_path, SOURCE[:body_start] + by_torch + SOURCE[body_end:]),
                      max_examples=EXAMPLES, only=[T_KERNELS]).tests
    assert result.score == 0 and "ran torch's bmm, exp, sum" in result.output, result.output


def test_the_starter_states_the_structure_and_points_back_to_the_chapter():
    starter = make_starter(SOURCE, "triton_backward")
    assert 'section 5, "The backward pass"' in starter or ', "The backward pass"' in starter
    assert "**split** backward" in starter and "tl.atomic_add" in starter  # the choice, and the alternative
    for kernel in ("delta_kernel", "keep_mask", "dkdv_kernel", "dq_kernel"):
        assert f"def {kernel}(" in starter
    assert starter.count("raise NotImplementedError") == SOURCE.count("### BEGIN SOLUTION") == 6
