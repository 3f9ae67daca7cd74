"""The registry of kernel variants: one place where the tests, `ast_min.kernels.inspect` and `ast_min.kernels.bench` find them.

A variant is one way to compute a pass (the forward, or the backward) of attention. It lives in a
file of its own, `kernels/variant_<name>.py`, which calls `register(Variant(...))` when imported;
`discover()` imports every such file (`variant_standard.py` registers the defaults, the "standard"
forward and "split" backward of `fused_attention.py`), so adding a file is all it takes to have the variant checked against
float64 and SDPA by the interpreter tests, compiled and tabulated by `python -m ast_min.kernels.inspect`,
costed by `ast_min.kernels.cost`, and timed by `python -m ast_min.kernels.bench`. kernels/NOTES.md walks through it.

This module imports no triton: `from ast_min import kernels` works without it.

Shape legend: B batch, H heads, N tokens, Dh head dim.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

PASSES = ("forward", "backward")


@dataclass(frozen=True)
class KernelSpec:
    """One Triton kernel of a variant, as `ast_min.kernels.inspect` compiles it.

    Attributes:
        name: shown in tables, e.g. "dK/dV".
        fn: the @triton.jit function (not the autotuned wrapper).
        configs: the GPU autotune list (triton.Config); kernels with fixed blocks give one.
        launch_args: problem -> (positional args, keyword constexprs) exactly as the launcher passes
            them, minus the autotuned ones (BLOCK_M, BLOCK_N, warps, stages). Pointer arguments are
            meta-device tensors of the right dtype and strides: the compiler only reads their dtype,
            alignment and the integer specialisation of the strides.
        cost: (problem, config kwargs) -> ast_min.kernels.cost.Cost, or None for no model.
        tuned: the autotuned wrapper the launcher calls, whose `best_config` (after a run) tells
            `ast_min.kernels.bench` which block sizes to cost; None for kernels launched with fixed blocks.
    """

    name: str
    fn: object
    configs: list
    launch_args: Callable
    cost: Callable | None = None
    tuned: object = None

    def chosen_config(self):
        """The config the autotuner picked at the last launch, else the first candidate."""
        return getattr(self.tuned, "best_config", None) or self.configs[0]


@dataclass(frozen=True)
class Variant:
    """One registered way to compute a pass.

    Attributes:
        name: what users pass, e.g. flash_attention(..., backward="fused").
        pass_: "forward" or "backward".
        run: the launcher. forward: (q, k, v, causal, sm_scale, input_precision) -> (O, LSE);
            backward: (do, q, k, v, o, lse, causal, sm_scale, input_precision) -> (dq, dk, dv).
        kernels: the Triton kernels it launches, for inspection.
        summary: one line for tables and errors.
        archs: compute capabilities (80 = Ampere, 90 = Hopper) it is meant for; inspect compiles
            it for these, and the launcher may refuse other cards.
        extra_cost: problem -> ast_min.kernels.cost.Cost of work done outside the kernels (torch ops), or None.
    """

    name: str
    pass_: str
    run: Callable
    kernels: tuple = field(default_factory=tuple)
    summary: str = ""
    archs: tuple = (80, 90)
    extra_cost: Callable | None = None

    def predicted_cost(self, problem):
        """The cost model's total for one call at `problem`, at the configs the autotuner last chose."""
        from ast_min.kernels import cost

        total = self.extra_cost(problem) if self.extra_cost else cost.Cost(0.0, 0.0)
        for spec in self.kernels:
            if spec.cost is not None:
                total = total + spec.cost(problem, spec.chosen_config().kwargs)
        return total


_REGISTRY: dict[tuple[str, str], Variant] = {}


def register(variant: Variant) -> Variant:
    """Add `variant` to the registry (re-registering a name replaces it: re-imports are harmless)."""
    if variant.pass_ not in PASSES:
        raise ValueError(f"variant {variant.name!r}: pass_ must be one of {PASSES}, got {variant.pass_!r}")
    _REGISTRY[(variant.pass_, variant.name)] = variant
    return variant


_DISCOVERED = False


def discover() -> None:
    """Import every kernels/variant_*.py file (once), so that each registers itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    # The files beside this one (importing the package for its __path__ would import this module's importers)
    for module in pkgutil.iter_modules([os.path.dirname(os.path.abspath(__file__))]):
        if module.name.startswith("variant_"):
            importlib.import_module(f"{__package__}.{module.name}")
    _DISCOVERED = True  # only now: a module that failed to import is tried again, not silently missing


def variants(pass_: str | None = None) -> list[Variant]:
    """Every registered variant (of one pass, if given), default first, after discovery."""
    discover()
    found = [v for (p, _), v in _REGISTRY.items() if pass_ in (None, p)]
    return sorted(found, key=lambda v: (PASSES.index(v.pass_), v.name not in DEFAULTS.values(), v.name))


DEFAULTS = {"forward": "standard", "backward": "split"}


def get(pass_: str, name: str) -> Variant:
    """The registered variant `name` of `pass_`; a ValueError naming the registered ones otherwise."""
    discover()
    try:
        return _REGISTRY[(pass_, name)]
    except KeyError:
        names = sorted(n for p, n in _REGISTRY if p == pass_)
        raise ValueError(f"flash_attention: unknown {pass_} variant {name!r}; registered: {names}") from None


# ---- stand-in arguments for inspection -----------------------------------------------------------

_TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "tf32": "float32", "fp64": "float64"}


def problem_tensors(p) -> dict:
    """Meta-device tensors with the dtypes and strides a launch at problem `p` (ast_min.kernels.cost.Problem) sees.

    q, k, v are views of one (B, N, 3, H, Dh) projection, as the model passes them; O, dO and the
    gradients are contiguous (B, H, N, Dh); LSE and delta contiguous (B, H, N). Meta tensors report
    data pointer 0, i.e. 16-byte aligned, as CUDA allocations (256-byte aligned) and the model's q/k/v
    views (offsets of H·Dh elements) are.
    """
    import torch

    dtype = getattr(torch, _TORCH_DTYPES[p.dtype])
    stat = torch.float64 if p.dtype == "fp64" else torch.float32
    qkv = torch.empty(p.B, p.N, 3, p.H, p.Dh, dtype=dtype, device="meta")
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, N, Dh) views
    full = lambda dt=dtype: torch.empty(p.B, p.H, p.N, p.Dh, dtype=dt, device="meta")  # noqa: E731
    rows = lambda: torch.empty(p.B, p.H, p.N, dtype=stat, device="meta")  # noqa: E731
    return dict(q=q, k=k, v=v, o=full(), do=full(), dq=full(), dk=full(), dv=full(), dq_acc=full(stat),
                lse=rows(), delta=rows())


def problem_meta(p) -> dict:
    """The compile-time parameters every attention kernel takes, for problem `p`, as the launcher sets them."""
    import triton.language as tl

    return dict(HEAD_DIM=p.Dh, BLOCK_D=p.block_d, CAUSAL=p.causal,
                INPUT_PRECISION="tf32" if p.dtype == "tf32" else "ieee",
                ACC_DTYPE=tl.float64 if p.dtype == "fp64" else tl.float32)
