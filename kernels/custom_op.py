"""The kernels as PyTorch custom operators, so that `torch.compile` sees one opaque op, not Python to trace.

`torch.compile(model, fullgraph=True)` cannot trace into a Triton launcher (autotuning, Python-side
buffer allocation) nor into an autograd.Function's custom backward without graph breaks. Registered
with `torch.library.custom_op`, the forward and the backward are each one node in the graph; their
"fake" implementations tell the compiler the output shapes, dtypes and strides without running
anything, and `register_autograd` wires the backward op to the forward's saved tensors.

The fakes must promise exactly what the real ops return: the launchers allocate fresh contiguous
(B, H, N, Dh) outputs (whatever the inputs' strides) and a contiguous (B, H, N) LSE in float32
(float64 for float64 inputs), and so do the fakes. A mismatch would make compiled code read the
real output with the wrong strides.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import torch

from ast_min.kernels import variants


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("ast_min::flash_attention_forward", mutates_args=())
def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, sm_scale: float,
                            input_precision: str, forward: str, backward: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, LSE) by the registered forward variant `forward`. q, k, v (B, H, N, Dh), checked by the caller.

    input_precision: "ieee", "tf32", or "" to follow torch.get_float32_matmul_precision() when it runs.
    `backward` names the backward variant the gradient will use (kept for the autograd context).
    """
    variants.get("backward", backward)  # fail now, naming the registered variants, not at backward time
    o, lse = variants.get("forward", forward).run(q, k, v, causal, sm_scale, input_precision or None)
    return o, lse


@flash_attention_forward.register_fake
def _(q, k, v, causal, sm_scale, input_precision, forward, backward):
    B, H, N, Dh = q.shape
    return q.new_empty((B, H, N, Dh)), q.new_empty((B, H, N), dtype=_stat_dtype(q.dtype))


@torch.library.custom_op("ast_min::flash_attention_backward", mutates_args=())
def flash_attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                             lse: torch.Tensor, causal: bool, sm_scale: float, input_precision: str,
                             backward: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dQ, dK, dV) by the registered backward variant `backward`; all (B, H, N, Dh) but lse (B, H, N)."""
    dq, dk, dv = variants.get("backward", backward).run(do, q, k, v, o, lse, causal, sm_scale, input_precision or None)
    return dq, dk, dv


@flash_attention_backward.register_fake
def _(do, q, k, v, o, lse, causal, sm_scale, input_precision, backward):
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, causal, sm_scale, input_precision, _forward, backward = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse)
    ctx.causal, ctx.sm_scale, ctx.input_precision, ctx.backward = causal, sm_scale, input_precision, backward
    ctx.mark_non_differentiable(lse)


def _backward(ctx, do, _dlse):
    q, k, v, o, lse = ctx.saved_tensors
    if torch.is_grad_enabled() and any(t.requires_grad for t in (do, q, k, v)):
        # create_graph=True: the backward kernels are not themselves differentiable, and a custom op's
        # gradients would silently come back without a graph; refuse here, where the user asked for one.
        raise RuntimeError("flash_attention: double backward (create_graph=True) is not supported: the backward "
                           "kernels are not themselves differentiable (once_differentiable); use attn_implementation "
                           "'sdpa' or 'eager' for higher-order gradients")
    dq, dk, dv = flash_attention_backward(do, q, k, v, o, lse, ctx.causal, ctx.sm_scale, ctx.input_precision,
                                          ctx.backward)
    return dq, dk, dv, None, None, None, None, None


flash_attention_forward.register_autograd(_backward, setup_context=_setup_context)
