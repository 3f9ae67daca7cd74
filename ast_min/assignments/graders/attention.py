"""Grader of `attention`: heads by view/transpose, multi-head self-attention and a pre-norm block from raw weights.

Expected values come from `ast_min.model.Block` (tested equal to transformers' ASTLayer) loaded with
the same weights, in float64 with eager attention. Tolerance 1e-9: a few matmuls over D <= 48
features and a softmax round at ~1e-15 relative; every mistake below changes outputs by orders of
magnitude more, the smallest being tanh GELU, which differs from erf GELU by 1.7e-5 at x = 0.5 and
by at most 4.7e-4 (near |x| = 2.7) for the activations of order 1 that these weights produce.

Shape legend: B batch, L tokens, D hidden size, H heads, Dh head dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from ast_min import model
from ast_min.assignments.diagnosis import Call, clone
from ast_min.assignments.grading import Grader, Mistake
from ast_min.config import ASTConfig

GRADER = Grader("attention", forbidden=(
    "ast_min.model", "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention",
))
TOL = dict(atol=1e-9, rtol=1e-9)
T_SPLIT, T_WORKED, T_ATTN, T_BLOCK = (
    "split_heads and merge_heads: heads by view and transpose, any sizes",
    "self_attention: 2 heads over 4 tokens of 8 features",
    "self_attention equals AST's for any B, L, D, H",
    "block equals AST's pre-norm block for any B, L, D, H and eps",
)

MISTAKES = [
    Mistake("no_scale", "you left out the 1/sqrt(Dh) scale of the scores: softmax(q k^T / sqrt(Dh)) v",
            ("scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])", "scores = q @ k.transpose(-2, -1)"),
            T_WORKED),
    Mistake("softmax_over_queries", "your softmax runs over the queries (dim -2); each query's weights over the "
            "keys must sum to 1: softmax over the last dimension",
            ("scores.softmax(dim=-1)", "scores.softmax(dim=-2)"), T_ATTN),
    Mistake("heads_without_transpose", "you reshaped (B, L, D) straight to (B, H, L, Dh), which mixes tokens "
            "into heads; view it as (B, L, H, Dh) and then transpose(1, 2)",
            ("return x.view(B, L, num_heads, D // num_heads).transpose(1, 2)",
             "return x.reshape(B, num_heads, L, D // num_heads)"), T_SPLIT),
    Mistake("post_norm", "this is a post-norm block, LN(x + Attn(x)); AST's blocks are pre-norm: x + Attn(LN(x)), "
            "then x + MLP(LN(x))",
            ("    x = x + self_attention(before, weights, num_heads)\n",
             "    x = F.layer_norm(x + self_attention(x, weights, num_heads), (D,), "
             "weights['layernorm_before.weight'], weights['layernorm_before.bias'], eps)\n"),
            T_BLOCK),
    Mistake("tanh_gelu", "you used the tanh approximation of GELU; AST's MLP uses the exact one, "
            "0.5 x (1 + erf(x / sqrt 2)) (F.gelu's default)",
            ('F.gelu(after @ weights["intermediate.dense.weight"].T + weights["intermediate.dense.bias"])',
             'F.gelu(after @ weights["intermediate.dense.weight"].T + weights["intermediate.dense.bias"], '
             'approximate="tanh")'), T_BLOCK),
]
HINTS = {m.name: m.hint for m in MISTAKES}


def _modules(layer: model.Block) -> dict[str, torch.nn.Module]:
    """The block's modules under their checkpoint names (`audio_spectrogram_transformer.encoder.layer.{i}.`)."""
    a = layer.attention
    return {
        "attention.attention.query": a.query, "attention.attention.key": a.key, "attention.attention.value": a.value,
        "attention.output.dense": a.output, "layernorm_before": layer.layernorm_before,
        "intermediate.dense": layer.mlp.fc1, "output.dense": layer.mlp.fc2, "layernorm_after": layer.layernorm_after,
    }


def block_from(weights: dict[str, torch.Tensor], H: int, eps: float = 1e-12) -> model.Block:
    """A float64 AST block holding these checkpoint-named weights."""
    D = weights["layernorm_before.weight"].shape[0]
    config = ASTConfig(hidden_size=D, num_attention_heads=H, intermediate_size=weights["intermediate.dense.bias"].shape[0],
                       layer_norm_eps=eps)
    layer = model.Block(config).double()
    with torch.no_grad():
        for name, module in _modules(layer).items():
            for w in ("weight", "bias"):
                getattr(module, w).copy_(weights[f"{name}.{w}"])
    return layer


def reference_block(D: int, H: int, seed: int, eps: float = 1e-12) -> tuple[model.Block, dict[str, torch.Tensor]]:
    """A float64 AST block with random weights (biases and LayerNorms too), and its checkpoint-named tensors."""
    config = ASTConfig(hidden_size=D, num_attention_heads=H, intermediate_size=4 * D, layer_norm_eps=eps)
    layer = model.Block(config).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (1.0 / math.sqrt(p.shape[-1])))
        for norm in (layer.layernorm_before, layer.layernorm_after):
            norm.weight.add_(1.0)
    weights = {f"{n}.{w}": getattr(m, w).detach().clone() for n, m in _modules(layer).items() for w in ("weight", "bias")}
    return layer, weights


def attention_variants(x, weights, H) -> dict[str, torch.Tensor]:
    a = block_from(weights, H).attention
    B, L, D = x.shape

    def run(scale=True, dim=-1, transpose=True):
        def split(t):  # (B, L, D) -> (B, H, L, Dh); without the transpose, tokens mix into heads
            return t.view(B, L, H, D // H).transpose(1, 2) if transpose else t.reshape(B, H, L, D // H)

        q, k, v = split(a.query(x)), split(a.key(x)), split(a.value(x))
        s = q @ k.transpose(-2, -1) / (math.sqrt(D // H) if scale else 1.0)  # (B, H, L, L)
        return a.output((s.softmax(dim=dim) @ v).transpose(1, 2).reshape(B, L, D))

    with torch.no_grad():
        return {"no_scale": run(scale=False), "softmax_over_queries": run(dim=-2),
                "heads_without_transpose": run(transpose=False)}


def block_variants(x, weights, H, eps=1e-12) -> dict[str, torch.Tensor]:
    layer = block_from(weights, H, eps)
    with torch.no_grad():
        attn = lambda t: layer.attention(t, "eager")[0]  # noqa: E731
        post = layer.layernorm_before(x + attn(x))
        h = x + attn(layer.layernorm_before(x))
        tanh = h + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.layernorm_after(h)), approximate="tanh"))
        post = post + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.layernorm_after(post))))
    return {"post_norm": post, "tanh_gelu": tanh}


def split_variants(x, H) -> dict[str, torch.Tensor]:
    B, L, D = x.shape
    return {"heads_without_transpose": x.reshape(B, H, L, D // H)}


def tokens(seed, B, L, D):
    return torch.randn(B, L, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_attention(ctx, B, L, D, H, seed):
    layer, weights = reference_block(D, H, seed)
    x = tokens(seed, B, L, D)
    ctx.inputs = dict(x=x, num_heads=H, weights=f"random (seed {seed})")
    with torch.no_grad():
        expected = layer.attention(x, "eager")[0]
    ctx.compare(ctx.call("self_attention", x.clone(), weights, H), expected, "self_attention's output", **TOL,
                variants=attention_variants, hints=HINTS,
                derive=Call("attention", "self_attention", (x, weights, H), axes=("B", "L", "D")))


def check_block(ctx, B, L, D, H, seed, eps=None):
    """eps None: the default (1e-12), not passed."""
    layer, weights = reference_block(D, H, seed, 1e-12 if eps is None else eps)
    x = tokens(seed, B, L, D)
    ctx.inputs = dict(x=x, num_heads=H, weights=f"random (seed {seed})", **({} if eps is None else dict(eps=eps)))
    with torch.no_grad():
        expected = layer(x, "eager")[0]
    args = (x, weights, H) if eps is None else (x, weights, H, eps)
    ctx.compare(ctx.call("block", *clone(args)), expected, "block's output", **TOL, variants=block_variants,
                hints=HINTS, derive=Call("attention", "block", args, axes=("B", "L", "D")))


# (batch, tokens, heads, head dim, seed)
sizes = st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 4), st.integers(1, 8), st.integers(0, 2**16))


# ---- 1. shapes --------------------------------------------------------------------------------------------------


@GRADER.test(T_SPLIT, points=2)
def heads(ctx):
    def check(args):
        B, L, H, Dh, seed = args
        x = tokens(seed, B, L, H * Dh)
        ctx.inputs = dict(x=x, num_heads=H)
        expected = x.view(B, L, H, Dh).transpose(1, 2)
        ctx.compare(ctx.call("split_heads", x.clone(), H), expected, "split_heads' output", atol=0, rtol=0,
                    variants=split_variants, hints=HINTS,
                    derive=Call("attention", "split_heads", (x, H), axes=("B", "H", "L", "Dh")))
        ctx.inputs = dict(x=expected)
        ctx.compare(ctx.call("merge_heads", expected.clone()), x, "merge_heads' output", atol=0, rtol=0,
                    derive=Call("attention", "merge_heads", (expected,), axes=("B", "L", "D")))

    ctx.prove(sizes, check)


# ---- 2. the worked example ------------------------------------------------------------------------------------------


@GRADER.test(T_WORKED, points=2)
def worked(ctx):
    check_attention(ctx, 1, 4, 8, 2, 0)


# ---- 3. properties -----------------------------------------------------------------------------------------------------


@GRADER.test(T_ATTN, points=3)
def attention_property(ctx):
    ctx.prove(sizes, lambda a: check_attention(ctx, a[0], a[1], a[2] * a[3], a[2], a[4]))


@GRADER.test(T_BLOCK, points=3)
def block_property(ctx):
    # eps: the default (None: not passed), or one given, large enough to change the LayerNorm's output
    ctx.prove(st.tuples(sizes, st.sampled_from([None, 1e-5, 0.1, 1.0])),
              lambda a: check_block(ctx, a[0][0], a[0][1], a[0][2] * a[0][3], a[0][2], a[0][4], eps=a[1]))


# ---- 4. edge cases ------------------------------------------------------------------------------------------------------


@GRADER.test("edge: one token, one head, and one feature per head")
def edges(ctx):
    check_attention(ctx, 2, 1, 6, 3, 1)  # L = 1: the softmax is exactly 1
    check_block(ctx, 1, 5, 7, 1, 2)  # H = 1, a prime D
    check_block(ctx, 1, 3, 4, 4, 3)  # Dh = 1
