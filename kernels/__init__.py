"""ast_min.kernels: a fused-attention (FlashAttention-2) Triton kernel, and its pure-torch blockwise reference.

This package knows nothing of AST: it takes q, k, v of shape (B, H, N, Dh) (B batch, H heads,
N tokens, Dh head dim). Read in this order:

    flash.py            flash_attention(), the differentiable entry point every caller uses
    reference.py        the algorithm in plain torch loops (online softmax, blockwise backward)
    fused_attention.py  the same algorithm as Triton kernels, with a checking launcher
    tiles.py            what every kernel shares: tile pointers, constants, buffers, launch settings
    variant_*.py        the ways to compute a pass: "standard" forward and "split" backward (the kernels
                        above), the one-pass "fused" backward, the "tma" forward
    variants.py         the registry every variant joins; tests, inspect and bench read it
    custom_op.py        the kernels as torch.library custom ops (autograd, torch.compile)
    tuning.py           block sizes: autotuned on GPUs, pinned in the interpreter
    cost.py             the analytic cost model: FLOPs, HBM bytes, roofline time
    inspect.py          `python -m ast_min.kernels.inspect`: what the compiler made of each kernel, no GPU needed
    bench.py            `python -m ast_min.kernels.bench`: the variants vs torch SDPA vs eager attention

`from ast_min import kernels` works without triton (macOS, for instance): TRITON_AVAILABLE is then False and
`flash_attention` raises a RuntimeError saying so. The Triton module is imported on first use, so
TRITON_INTERPRET=1 (for CPU tensors) may be set any time before the first call.

The folder sits at the repository's top level but is installed as `ast_min.kernels`: the import name
`kernels` belongs to Hugging Face's package, which transformers requires. A Python started in the
repository root would still find this folder first under that name, so it then loads Hugging Face's
package in its place (docs/DESIGN.md, "Where the kernels live").
"""

if __name__ == "kernels":
    # Imported under the top-level name: Python was started in the repository root, which puts this
    # folder first on sys.path. That name belongs to Hugging Face's package (transformers imports it),
    # so load that one from the rest of sys.path; an import statement returns what sys.modules holds.
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _spec = importlib.machinery.PathFinder.find_spec(
        "kernels", [p for p in sys.path if os.path.abspath(p or os.curdir) != _root])
    if _spec is None or _spec.loader is None:
        raise ImportError(
            "this folder is ast-min's kernels: import it as `ast_min.kernels`. The name `kernels` belongs "
            "to Hugging Face's package, which is not installed (pip install kernels)", name="kernels")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["kernels"] = _module
    _spec.loader.exec_module(_module)
else:
    from ast_min.kernels.flash import TRITON_AVAILABLE, flash_attention
    from ast_min.kernels.reference import attention_math, blockwise_attention, blockwise_attention_backward

    __all__ = [
        "TRITON_AVAILABLE",
        "flash_attention",
        "attention_math",
        "blockwise_attention",
        "blockwise_attention_backward",
    ]
