"""Differential diagnosis: name a wrong answer by the standard mistake that reproduces it.

When a student's output differs from the reference, the grader derives a family of standard wrong
answers from the instructor's solution itself, the same way for every assignment, and names the one
the student's output equals. Three sources of derived variants, cheapest first:

- the reference output transformed (`output_variants`): two axes swapped, the flattening order of
  a dimension changed (row- vs column-major over a factorisation of its size, after 0, 1 or 2
  leading entries such as [CLS] and [DIST]), doubled or halved, one slice short along a dimension;
- the solution called with changed arguments (`boundary_variants`): two arguments of the same kind
  swapped (two integers, two tensors of one shape), a flag flipped, a given optional argument
  ignored (its default used), a tensor argument read in the other flattening order;
- the solution's own code changed at one place (`source_variants`), inside its solution blocks
  (the lines a student writes) of the graded function and the functions it reaches: a reduction
  (mean, sum, max, softmax, norm, ...) over another axis; a transpose left out; a multiplication or
  division by a factor left out, applied twice or inverted, or its result doubled or halved; a
  `+ 1` / `- 1` left out, a slice bound or a floor division one off, a comparison strict instead
  of non-strict (or the reverse: the causal diagonal); two arguments of a call or two entries of a
  tuple swapped (the axes of a launch grid, the size and step of an unfold); a tensor flattened in
  the other order; a log in another base, an exp in base 2, a floor max(x, eps) written as x + eps
  or left out; the computation in a lower precision (float16/bfloat16 for float32, float32 for
  float64, a dtype conversion left out); an accumulation `+=` written as `=`; a step, a branch, a
  term or an argument left out; a variable used where one it is computed from (or into) belongs.
  In a Triton kernel, index arithmetic (pointer offsets, masks) gets the off-by-one and swap edits
  but no scale, term or variable edits: those are slips of values.

A variant is named only when it reproduces the student's output, within the test's tolerance, on
the counterexample *and* on a second input (`second`, or the same arguments with every floating
tensor redrawn), so a coincidence on one small input is never reported. Hand-written known
mistakes (a grader's `MISTAKES`, given to `compare` as `variants`, a function of the same
arguments) are confirmed the same way and take precedence; derived ones are tried in the order of
`ORDER`, local slips first.

The solution's variants run in a forked process with a time budget: a changed kernel may read or
write out of bounds (Triton's interpreter does not check), loop for long or crash, and none of
that may touch the grading; one that does costs only itself. Variants of a function that cannot
reach the compared output (nothing in the dK/dV kernel changes dQ) are skipped, after one run of
the solution with that function emptied. Only the student's own function is called in the grading
process, through `ctx.call`, with plain data.
"""

from __future__ import annotations

import ast
import copy
import inspect
import itertools
import math
import os
import pickle
import select
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import torch

from ast_min.assignments import get
from ast_min.assignments.starter import solution_ranges

# The classes of derived mistakes, as hints name them (docs/TEACHING.md's table counts them).
KINDS = {
    "axes": "two axes swapped, or a transpose left out",
    "reduction_axis": "a reduction over another axis",
    "scale": "a scale factor missing, applied twice, inverted, doubled or halved",
    "off_by_one": "a size, bound or mask off by one (strict vs non-strict)",
    "swapped_arguments": "two arguments of the same kind swapped",
    "flatten_order": "a tensor flattened in the other order",
    "log_eps": "another log base, or an epsilon added instead of a floor (or left out)",
    "precision": "a lower precision of computation or accumulation",
    "left_out": "a step, a branch, an accumulation or a given argument left out",
    "wrong_variable": "one variable used where another belongs",
}

# The order in which a source's variants are tried (the first that reproduces is named): single,
# local slips before edits that rewire the computation, which coincide with more wrong answers.
ORDER = ("reduction_axis", "axes", "scale", "off_by_one", "precision", "log_eps", "flatten_order", "left_out",
         "swapped_arguments", "wrong_variable")
DEFAULT_SECONDS = 10.0  # time for deriving variants after a failure; graders of slow code give more


@dataclass(frozen=True)
class Call:
    """How the output under comparison was produced, so that variants of the reference can be derived.

    assignment, function: the student's graded function (the instructor source defines the same one).
    args, kwargs: exactly what the student's function received (plain data: tensors, numbers, ...).
    pick: the compared part of the function's result (an index into a returned tuple), or None.
    second: (args, kwargs) of a second input; default: `args`/`kwargs` with floating tensors redrawn.
    axes: names of the compared output's dimensions, for messages ("K", "F"), or None.
    seconds: the time budget for deriving variants.
    """

    assignment: str
    function: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    pick: int | None = None
    second: tuple[tuple, dict] | None = None
    axes: tuple[str, ...] | None = None
    seconds: float = DEFAULT_SECONDS


@dataclass(frozen=True)
class Variant:
    """One derived wrong answer: its class, what it changes in words, and how to make it.

    `how` is plain data: ("output", op, ...), ("boundary", op, ...) or ("source", node index,
    edit). `line` is the line of the instructor source it changes (0 for the other two).
    """

    kind: str
    text: str
    how: tuple
    line: int = 0
    function: str = ""  # the solution's function it changes ("" for output and call variants)


@dataclass(frozen=True)
class Finding:
    name: str  # the mistake's name ("derived: KIND" for derived ones)
    text: str  # the hint
    errors: tuple[float, float]  # max |student - variant| on the counterexample and on the second input


# ---- plain-data helpers ------------------------------------------------------------------------------------------


def as_tensor(value, pick: int | None = None):
    """The compared part of a function's result as a float64 CPU tensor (numbers and tuples of numbers too), or None."""
    if pick is not None:
        try:
            value = value[pick]
        except (TypeError, IndexError, KeyError):
            return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64)
    try:
        if isinstance(value, (int, float)) or (isinstance(value, (tuple, list)) and value and
                                               all(isinstance(v, (int, float)) for v in value)):
            return torch.tensor(value if isinstance(value, (tuple, list)) else [value], dtype=torch.float64)
    except (TypeError, ValueError):
        return None
    return None


def close(got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    """Elementwise |got - expected| <= atol + rtol |expected|, NaNs equal, infinities of one sign equal."""
    both_nan = got.isnan() & expected.isnan()
    same_inf = got.isinf() & (got == expected)
    return both_nan | same_inf | ((got - expected).abs() <= atol + rtol * expected.abs())


def max_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        return math.inf
    if got.numel() == 0:
        return 0.0
    agree = (got.isnan() & expected.isnan()) | (got.isinf() & (got == expected))
    return float((got - expected).abs().masked_fill(agree, 0.0).nan_to_num(math.inf).max())


def reproduces(got, variant, atol: float, rtol: float) -> bool:
    return got is not None and variant is not None and got.shape == variant.shape and bool(
        close(got, variant, atol, rtol).all())


def clone(value):
    """A deep copy of plain data, tensors cloned (the student's function may write into its inputs)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clone(v) for v in value)
    return value


def redraw(value, generator: torch.Generator):
    """The same plain data with every floating tensor redrawn: same shape, dtype, device and range of values.

    Non-negative tensors (powers, probabilities) stay non-negative; integer and boolean tensors
    (indices, masks), numbers and strings are kept, so every size and flag stays as it was.
    """
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or value.numel() == 0:
            return value.clone()
        v = value.detach().cpu().to(torch.float64)
        finite = v[v.isfinite()]
        if finite.numel() == 0:
            return value.clone()
        if bool((finite >= 0).all()):
            new = torch.rand(v.shape, generator=generator, dtype=torch.float64) * float(finite.max())
        else:
            std = float(finite.std()) if finite.numel() > 1 else 1.0
            new = torch.randn(v.shape, generator=generator, dtype=torch.float64) * (std or 1.0) + float(finite.mean())
        return new.to(value.dtype).to(value.device)
    if isinstance(value, dict):
        return {k: redraw(v, generator) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redraw(v, generator) for v in value)
    return value


def second_input(call: Call, seed: int) -> tuple[tuple, dict]:
    if call.second is not None:
        return call.second
    g = torch.Generator().manual_seed(seed % 2**63 + 1)
    return redraw(call.args, g), redraw(call.kwargs, g)


# ---- variants of the output and of the call -------------------------------------------------------------------------


LEADING = (0, 1, 2)  # entries a flattened grid may follow ([CLS] and [DIST] before the patch tokens)


def _factorisations(size: int):
    """(lead, a, b): the last size - lead entries of a dimension seen as an a x b grid, a, b >= 2."""
    for lead in LEADING:
        n = size - lead
        for a in range(2, n):
            if n % a == 0 and n // a >= 2:
                yield lead, a, n // a


def _after(lead: int) -> str:
    return f" after the first {lead}" if lead else ""


def _reflatten(t: torch.Tensor, d: int, lead: int, a: int) -> torch.Tensor:
    """Entries lead.. of dim d, read as (a, b) row-major, rewritten column-major."""
    head, grid = t.narrow(d, 0, lead), t.narrow(d, lead, t.shape[d] - lead)
    b = grid.shape[d] // a
    return torch.cat([head, grid.unflatten(d, (a, b)).transpose(d, d + 1).flatten(d, d + 1)], dim=d)


def _axis(i: int, names) -> str:
    return f"{names[i]} (dim {i})" if names and i < len(names) else f"dim {i}"


def output_variants(shape: tuple[int, ...], names=None) -> list[Variant]:
    """Transforms of the reference output of this shape: axes swapped, flattening order, factor 2, one slice short."""
    out = []
    n = len(shape)
    for i, j in itertools.combinations(range(n), 2):
        if shape[i] > 1 or shape[j] > 1:
            out.append(Variant("axes", f"your output is the expected one with {_axis(i, names)} and {_axis(j, names)} "
                               "swapped (a transpose)", ("output", "swap", i, j)))
    for d in range(n):
        for lead, a, b in _factorisations(shape[d]):
            out.append(Variant("flatten_order", f"along {_axis(d, names)} your values{_after(lead)} are the expected ones "
                               f"read as a {a} x {b} block in the other order (row- vs column-major)",
                               ("output", "flatten", d, lead, a)))
    out.append(Variant("scale", "your output is twice the expected one", ("output", "times", 2.0)))
    out.append(Variant("scale", "your output is half the expected one", ("output", "times", 0.5)))
    return out


def short_variants(shape: tuple[int, ...], got_shape: tuple[int, ...], names=None) -> list[Variant]:
    """The expected output one slice short along the one dimension where `got` is one shorter."""
    if len(shape) != len(got_shape):
        return []
    diff = [d for d in range(len(shape)) if shape[d] != got_shape[d]]
    if len(diff) != 1 or shape[diff[0]] != got_shape[diff[0]] + 1:
        return []
    d = diff[0]
    return [Variant("off_by_one", f"your output is one short along {_axis(d, names)}: its {end} slice is missing",
                    ("output", "short", d, end)) for end in ("last", "first")]


def apply_output(op: tuple, reference: torch.Tensor) -> torch.Tensor:
    kind = op[1]
    if kind == "swap":
        return reference.transpose(op[2], op[3])
    if kind == "flatten":
        return _reflatten(reference, op[2], op[3], op[4])
    if kind == "times":
        return reference * op[2]
    if kind == "short":
        d, end = op[2], op[3]
        n = reference.shape[d]
        return reference.narrow(d, 0, n - 1) if end == "last" else reference.narrow(d, 1, n - 1)
    raise ValueError(op)


def _kind_of(value):
    if isinstance(value, bool):
        return ("bool",)
    if isinstance(value, int):
        return ("int",)
    if isinstance(value, float):
        return ("float",)
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    return None


def boundary_variants(function: Callable, args: tuple, kwargs: dict) -> list[Variant]:
    """The solution called with two same-kind arguments swapped, a flag flipped, or a given optional argument ignored."""
    try:
        signature = inspect.signature(function)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return []
    given = dict(bound.arguments)
    names = list(given)
    out = []
    for a, b in itertools.combinations(names, 2):
        ka, kb = _kind_of(given[a]), _kind_of(given[b])
        if ka is not None and ka == kb and ka != ("bool",):
            out.append(Variant("swapped_arguments", f"`{function.__name__}` behaves as if `{a}` and `{b}` were swapped",
                               ("boundary", "swap", a, b)))
    for name in names:
        value = given[name]
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            for d in range(value.dim()):
                for lead, a, b in _factorisations(value.shape[d]):
                    out.append(Variant("flatten_order", f"`{function.__name__}` reads `{name}` along dim {d}"
                                       f"{_after(lead)} as a {a} x {b} block in the other order (row- vs column-major)",
                                       ("boundary", "reflatten", name, d, lead, a)))
    for name in names:
        value, default = given[name], signature.parameters[name].default
        if isinstance(value, bool):
            out.append(Variant("left_out" if value else "swapped_arguments",
                               f"`{function.__name__}` behaves as if `{name}` were {not value}"
                               + (" (it is ignored)" if value else ""), ("boundary", "flip", name)))
        elif default is not inspect.Parameter.empty and default is None and value is not None:
            out.append(Variant("left_out", f"`{function.__name__}` ignores the given `{name}` and uses its default "
                               f"(as if `{name}=None`)", ("boundary", "default", name)))
    return out


def apply_boundary(op: tuple, function: Callable, args: tuple, kwargs: dict):
    bound = inspect.signature(function).bind(*args, **kwargs)
    given = bound.arguments
    if op[1] == "swap":
        given[op[2]], given[op[3]] = given[op[3]], given[op[2]]
    elif op[1] == "flip":
        given[op[2]] = not given[op[2]]
    elif op[1] == "default":
        given[op[2]] = None
    elif op[1] == "reflatten":
        given[op[2]] = _reflatten(given[op[2]], op[3], op[4], op[5])
    return function(*bound.args, **bound.kwargs)


# ---- variants of the solution's source -----------------------------------------------------------------------------------

REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "softmax", "log_softmax", "logsumexp", "norm", "std",
              "var", "cumsum", "cummax", "prod", "argmax", "argmin", "nansum", "median"}
TRANSPOSES = {"transpose", "permute", "swapaxes", "swapdims", "movedim", "trans", "t"}
RESHAPES = {"reshape", "view", "flatten"}
CONVERSIONS = {"to", "float", "double", "half", "type"}
FLOORS = {"clamp_min", "maximum", "clamp", "clip", "max"}
LOWER = {  # dtype attribute -> the lower precisions a mistake would use
    "float64": ("float32",), "double": ("float32",), "float32": ("float16", "bfloat16"), "float": ("float16",),
}
DIM_AXES = (0, 1, 2, 3, -1, -2, -3)


def _int_constant(node) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) is int:
        return -node.operand.value
    return None


def _callee(node: ast.Call) -> str | None:
    f = node.func.value if isinstance(node.func, ast.Subscript) else node.func  # kernel[grid](...): the kernel
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _short(node, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reachable(tree: ast.Module, function: str) -> list[ast.FunctionDef]:
    """The module-level functions `function` calls or names, transitively, itself first."""
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    order, todo = [], [function]
    while todo:
        name = todo.pop(0)
        if name not in defs or defs[name] in order:
            continue
        order.append(defs[name])
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    return order


def _related_names(fn: ast.FunctionDef) -> dict[str, set[str]]:
    """name -> the names it is computed from and the names computed from it (one assignment away).

    A variable mistaken for another is nearly always one of these (the LayerNorm's input for its
    output, the old running maximum for the new one), which keeps this family of variants small.
    """
    related: dict[str, set[str]] = {}
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            stored = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            read = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            for a in stored:
                for b in read - {a}:
                    related.setdefault(a, set()).add(b)
                    related.setdefault(b, set()).add(a)
    return related


def _sites(tree: ast.Module, function: str, ranges: list[tuple[int, int]]):
    """Yield (node index in ast.walk order, node, enclosing function) for nodes inside solution blocks."""
    index = {id(n): i for i, n in enumerate(ast.walk(tree))}
    for fn in _reachable(tree, function):
        for node in ast.walk(fn):
            line = getattr(node, "lineno", None)
            if line is not None and any(b < line < e for b, e in ranges):
                yield index[id(node)], node, fn


def source_variants(source: str, function: str) -> list[Variant]:
    """Every single-place change of the solution blocks of `function` and what it reaches, as `Variant`s."""
    tree = ast.parse(source)
    ranges = [(b + 1, e + 1) for b, e in solution_ranges(source)]  # 1-based lines of the BEGIN/END markers
    out: list[Variant] = []

    def add(kind, fn, text, i, edit, node):
        if kind in VALUE_KINDS and id(node) in index:
            return  # a factor, a term or a variable of index arithmetic: its slips are the off-by-one edits
        out.append(Variant(kind, f"in `{fn.name}`, {text}", ("source", i, edit), node.lineno, fn.name))

    index = set()
    for fn in _reachable(tree, function):
        if _is_kernel(fn):
            index |= _index_arithmetic(fn)
    for i, node, fn in _sites(tree, function, ranges):
        if isinstance(node, ast.Call):
            name = _callee(node)
            method = isinstance(node.func, ast.Attribute)
            # a reduction over another axis: the dim/axis keyword, or the positional dim
            if name in REDUCTIONS:
                slots = [("kw", k.arg) for k in node.keywords if k.arg in ("dim", "axis")]
                position = 0 if method and not _is_module_call(node) else 1
                if not slots and len(node.args) > position:
                    slots = [("arg", position)]
                for slot in slots:
                    current = _int_constant(_slot_node(node, slot))
                    if current is None:
                        continue
                    for d in DIM_AXES:
                        if d != current:
                            add("reduction_axis", fn, f"the `{name}` runs over dim {d} where dim {current} is meant "
                                f"(`{_short(node)}`)", i, ("dim", slot, d), node)
            if name in TRANSPOSES and method:
                add("axes", fn, f"the `{name}` of `{_short(node)}` is left out", i, ("receiver",), node)
            if name == "trans" and not method or (name == "trans" and _is_module_call(node)):
                if node.args:
                    add("axes", fn, f"the transpose `{_short(node)}` is left out", i, ("first_arg",), node)
            if name in RESHAPES and method:
                for pair in ((-1, -2), (1, 2), (0, 1)):
                    add("flatten_order", fn, f"`{_short(node)}` flattens its input with dims {pair[0]} and {pair[1]} "
                        "in the other order", i, ("transpose_receiver", pair), node)
            if name in CONVERSIONS and method and not _is_module_call(node):
                add("precision", fn, f"the conversion `{_short(node)}` is left out: the computation stays in the "
                    "input's dtype", i, ("receiver",), node)
            if name in ("log", "log10", "log2", "log1p"):
                for other in ("log", "log10", "log2"):
                    if other != name:
                        add("log_eps", fn, f"`{other}` where `{name}` is meant (`{_short(node)}`)", i,
                            ("rename", other), node)
            if name in ("exp", "exp2"):
                other = "exp2" if name == "exp" else "exp"
                add("log_eps", fn, f"`{other}` where `{name}` is meant (`{_short(node)}`)", i, ("rename", other), node)
            if name in FLOORS and _floor_operands(node) is not None:
                x, eps = _floor_operands(node)
                add("log_eps", fn, f"`{_short(x)} + {_short(eps)}` where the floor `{_short(node)}` is meant",
                    i, ("floor_plus",), node)
                add("log_eps", fn, f"the floor `{_short(node)}` is left out", i, ("floor_drop",), node)
            if name in ("triu", "tril"):
                for slot in [("kw", k.arg) for k in node.keywords if k.arg == "diagonal"] or (
                        [("arg", 0 if method else 1)] if len(node.args) > (0 if method else 1) else []):
                    current = _int_constant(_slot_node(node, slot))
                    if current is not None:
                        for d in (current - 1, current + 1):
                            add("off_by_one", fn, f"`{name}` with diagonal {d} where {current} is meant (the mask "
                                "is off by one)", i, ("dim", slot, d), node)
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            for a, b in itertools.combinations(range(len(positional)), 2):
                if _same_kind(positional[a], positional[b]):
                    add("swapped_arguments", fn, f"arguments `{_short(positional[a], 30)}` and "
                        f"`{_short(positional[b], 30)}` of `{name}` are swapped", i, ("swap_args", a, b), node)
            if len(positional) >= 3 and len(positional) == len(node.args):
                add("left_out", fn, f"the last argument `{_short(positional[-1], 30)}` of `{name}` is left out (its "
                    "default is used)", i, ("drop_last_arg",), node)
            for k, keyword in enumerate(node.keywords):
                if keyword.arg is not None and keyword.arg not in ("dim", "axis", "keepdim", "dtype", "device",
                                                                   "generator", "mask", "other"):
                    add("left_out", fn, f"the argument `{keyword.arg}={_short(keyword.value, 30)}` of `{name}` is "
                        "left out (its default is used)", i, ("drop_keyword", k), node)
        elif isinstance(node, ast.BinOp):
            if isinstance(node.op, (ast.Mult, ast.Div)):
                op = "*" if isinstance(node.op, ast.Mult) else "/"
                right = _short(node.right, 30)
                add("scale", fn, f"the factor `{op} {right}` in `{_short(node)}` is left out", i, ("left",), node)
                if isinstance(node.op, ast.Mult):
                    add("scale", fn, f"the factor `{_short(node.left, 30)}` in `{_short(node)}` is left out", i,
                        ("right",), node)
                add("scale", fn, f"the factor `{op} {right}` in `{_short(node)}` is applied twice", i, ("twice",), node)
                add("scale", fn, f"`{_short(node)}` is inverted: {'/' if op == '*' else '*'} where {op} is meant", i,
                    ("invert",), node)
                for factor, word in ((2.0, "doubled"), (0.5, "halved")):
                    add("scale", fn, f"`{_short(node)}` is {word}", i, ("times", factor), node)
            elif isinstance(node.op, (ast.Add, ast.Sub)):
                sign = "+" if isinstance(node.op, ast.Add) else "-"
                for side, other in (("right", node.right), ("left", node.left)):
                    if side == "left" and isinstance(node.op, ast.Sub):
                        continue  # dropping the left operand of a - b leaves b, not -b: no student writes that
                    kept = ("left",) if side == "right" else ("right",)
                    if _int_constant(other) is not None:
                        add("off_by_one", fn, f"the `{sign} {_short(other)}` in `{_short(node)}` is left out", i,
                            kept, node)
                    elif not isinstance(other, ast.Constant):
                        add("left_out", fn, f"the term `{_short(other, 40)}` of `{_short(node)}` is left out", i,
                            kept, node)
            elif isinstance(node.op, ast.FloorDiv):
                for delta in (1, -1):
                    add("off_by_one", fn, f"`{_short(node)}` is one {'more' if delta > 0 else 'less'}", i,
                        ("plus", delta), node)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            swap = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}.get(type(node.ops[0]))
            if swap is not None:
                symbol = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
                add("off_by_one", fn, f"`{symbol[swap]}` where `{symbol[type(node.ops[0])]}` is meant in "
                    f"`{_short(node)}` (strict vs non-strict)", i, ("compare", swap.__name__), node)
        elif isinstance(node, ast.Slice):
            for bound in ("lower", "upper"):
                if getattr(node, bound) is not None:
                    for delta in (1, -1):
                        add("off_by_one", fn, f"the slice `{_short(node)}` has its {bound} bound one "
                            f"{'more' if delta > 0 else 'less'}", i, ("slice", bound, delta), node)
        elif isinstance(node, ast.Tuple) and isinstance(node.ctx, ast.Load) and 2 <= len(node.elts) <= 5:
            for a, b in itertools.combinations(range(len(node.elts)), 2):
                if _same_kind(node.elts[a], node.elts[b]):
                    add("swapped_arguments", fn, f"the entries `{_short(node.elts[a], 30)}` and `{_short(node.elts[b], 30)}`"
                        f" of `{_short(node)}` are swapped", i, ("swap_elts", a, b), node)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr in LOWER \
                and node.value.id in ("torch", "np", "numpy", "tl"):
            for lower in LOWER[node.attr]:
                add("precision", fn, f"`{node.value.id}.{lower}` where `{node.value.id}.{node.attr}` is meant "
                    "(a lower precision)", i, ("attr", lower), node)
        elif isinstance(node, ast.IfExp):
            add("left_out", fn, f"`{_short(node)}` always takes `{_short(node.body, 40)}`", i, ("ifexp", "body"), node)
            add("left_out", fn, f"`{_short(node)}` always takes `{_short(node.orelse, 40)}`", i, ("ifexp", "orelse"),
                node)
        elif isinstance(node, ast.AugAssign):
            add("left_out", fn, f"`{_short(node)}` overwrites instead of accumulating (`=` for `{_op(node.op)}=`)", i,
                ("augassign",), node)
        elif isinstance(node, ast.If) and not node.orelse:
            add("left_out", fn, f"the `if {_short(node.test, 40)}:` block is left out", i, ("pass",), node)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if any(isinstance(n, ast.Name) and n.id == target for n in ast.walk(node.value)):
                add("left_out", fn, f"the step `{_short(node)}` is left out", i, ("pass",), node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            related = _related_names(fn)
            for side in ("left", "right"):
                operand = getattr(node, side)
                if isinstance(operand, ast.Name):
                    for other in sorted(related.get(operand.id, ())):
                        if _defined_before(fn, other, node.lineno):
                            add("wrong_variable", fn, f"`{other}` is used where `{operand.id}` belongs in "
                                f"`{_short(node)}`", i, ("rename_operand", side, other), node)
    return sorted(out, key=lambda v: (ORDER.index(v.kind), v.line))


VALUE_KINDS = ("scale", "left_out", "wrong_variable")  # edits of values, not of indices
INDEX_CALLS = {"arange", "program_id", "num_programs", "cdiv"}
POINTER_CALLS = {"load", "store", "atomic_add", "atomic_max", "atomic_min", "atomic_xchg", "atomic_cas"}


def _is_kernel(fn: ast.FunctionDef) -> bool:
    """A @triton.jit function: its integer arithmetic is mostly pointer offsets."""
    return any(ast.unparse(d).split("(")[0].endswith("jit") for d in fn.decorator_list)


def _index_arithmetic(fn: ast.FunctionDef) -> set[int]:
    """ids of the nodes that compute indices: from arange/program_id results, or inside a load's or store's pointer and mask."""
    names: set[str] = set()
    changed = True
    while changed:  # names assigned from index expressions, to a fixpoint
        changed = False
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and _mentions_index(node.value, names):
                for target in node.targets:  # names only: a subscript store writes values
                    for n in ([target] if isinstance(target, ast.Name) else getattr(target, "elts", [])):
                        if isinstance(n, ast.Name) and n.id not in names:
                            names.add(n.id)
                            changed = True
            elif isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id not in names:
                names.add(node.target.id)  # a loop counter
                changed = True
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.BinOp) and _mentions_index(node, names):
            out.add(id(node))
        if isinstance(node, ast.Call) and _callee(node) in POINTER_CALLS:
            for part in node.args[:1] + [k.value for k in node.keywords if k.arg in ("mask", "other")]:
                out |= {id(n) for n in ast.walk(part)}
    return out


def _mentions_index(node, names: set[str]) -> bool:
    """Does `node` compute with indices? What a subscript selects and what a load reads are values, not indices."""
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.Subscript):
        return _mentions_index(node.value, names)
    if isinstance(node, ast.Call):  # index functions, arithmetic on their results, or else a value
        if _callee(node) in INDEX_CALLS:
            return True
        if _callee(node) == "to" and isinstance(node.func, ast.Attribute):  # an index cast (to int64) stays one
            return _mentions_index(node.func.value, names)
        if _callee(node) not in ("min", "max", "minimum", "maximum", "int", "abs", "len"):
            return False
        return any(_mentions_index(a, names) for a in node.args)
    return any(_mentions_index(child, names) for child in ast.iter_child_nodes(node))


def _same_kind(a, b) -> bool:
    """Two expressions a student could swap: different, and both constants, both containers or both computed."""
    def kind(node):
        if isinstance(node, ast.Constant) or _int_constant(node) is not None:
            return "constant"
        if isinstance(node, (ast.Tuple, ast.List, ast.Dict, ast.Set, ast.Starred, ast.Lambda)):
            return type(node).__name__
        return "computed"

    return kind(a) == kind(b) and ast.dump(a) != ast.dump(b)


def _op(op) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}.get(type(op), "?")


def _is_module_call(node: ast.Call) -> bool:
    """torch.mean(x, 1), np.sum(x, 0), tl.max(x, 1), F.softmax(x, -1): the tensor is the first argument."""
    f = node.func
    return isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in (
        "torch", "np", "numpy", "tl", "F", "math")


def _slot_node(node: ast.Call, slot):
    if slot[0] == "kw":
        return next(k.value for k in node.keywords if k.arg == slot[1])
    return node.args[slot[1]]


def _floor_operands(node: ast.Call):
    """(x, eps) of clamp_min(x, eps), x.clamp_min(eps), np.maximum(x, eps), clamp(x, min=eps); else None."""
    name = _callee(node)
    method = isinstance(node.func, ast.Attribute) and not _is_module_call(node)
    args = ([node.func.value] if method else []) + list(node.args)
    if name in ("clamp", "clip"):
        lower = next((k.value for k in node.keywords if k.arg == "min"), args[1] if len(args) > 1 else None)
        return (args[0], lower) if args and lower is not None and not (
            len(args) > 2 or any(k.arg == "max" for k in node.keywords)) else None
    if name in ("clamp_min", "maximum") or (name == "max" and isinstance(node.func, ast.Name)):
        return (args[0], args[1]) if len(args) == 2 and not node.keywords else None
    return None


def _defined_before(fn: ast.FunctionDef, name: str, line: int) -> bool:
    if name in [a.arg for a in fn.args.args + fn.args.kwonlyargs]:
        return True
    return any(isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id == name and n.lineno < line
               for n in ast.walk(fn))


def apply_source(source: str, index: int, edit: tuple) -> str:
    """`source` with the edit applied at the node `index` (ast.walk order), unparsed."""
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    node = nodes[index]
    parents = {id(child): parent for parent in nodes for child in ast.iter_child_nodes(parent)}
    new = _edit(node, edit)
    if new is not node:
        _replace(parents[id(node)], node, new)
    return ast.unparse(ast.fix_missing_locations(tree))


def _edit(node, edit):
    op = edit[0]
    if op == "dim":
        slot, d = edit[1], edit[2]
        value = ast.Constant(d) if d >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-d))
        if slot[0] == "kw":
            next(k for k in node.keywords if k.arg == slot[1]).value = value
        else:
            node.args[slot[1]] = value
        return node
    if op == "receiver":
        return node.func.value
    if op == "first_arg":
        return node.args[0]
    if op == "transpose_receiver":
        a, b = edit[1]
        node.func.value = ast.Call(ast.Attribute(node.func.value, "transpose", ast.Load()),
                                   [_const(a), _const(b)], [])
        return node
    if op == "rename":
        if isinstance(node.func, ast.Attribute):
            node.func.attr = edit[1]
        else:
            node.func.id = edit[1]
        return node
    if op == "floor_plus":
        x, eps = _floor_operands(node)
        return ast.BinOp(x, ast.Add(), eps)
    if op == "floor_drop":
        return _floor_operands(node)[0]
    if op == "swap_args":
        a, b = edit[1], edit[2]
        node.args[a], node.args[b] = node.args[b], node.args[a]
        return node
    if op == "drop_last_arg":
        del node.args[-1]
        return node
    if op == "drop_keyword":
        del node.keywords[edit[1]]
        return node
    if op == "left":
        return node.left
    if op == "right":
        return node.right
    if op == "twice":
        return ast.BinOp(copy.deepcopy(node), node.op, copy.deepcopy(node.right))
    if op == "invert":
        node.op = ast.Div() if isinstance(node.op, ast.Mult) else ast.Mult()
        return node
    if op == "times":
        return ast.BinOp(node, ast.Mult(), ast.Constant(edit[1]))
    if op == "plus":
        return ast.BinOp(node, ast.Add(), _const(edit[1]))
    if op == "compare":
        node.ops = [getattr(ast, edit[1])()]
        return node
    if op == "slice":
        bound = getattr(node, edit[1])
        setattr(node, edit[1], ast.BinOp(bound, ast.Add(), _const(edit[2])))
        return node
    if op == "swap_elts":
        a, b = edit[1], edit[2]
        node.elts[a], node.elts[b] = node.elts[b], node.elts[a]
        return node
    if op == "attr":
        node.attr = edit[1]
        return node
    if op == "ifexp":
        return getattr(node, edit[1])
    if op == "augassign":
        return ast.Assign([ast.Name(node.target.id, ast.Store()) if isinstance(node.target, ast.Name) else
                           node.target], node.value, lineno=node.lineno)
    if op == "pass":
        return ast.Pass()
    if op == "rename_operand":
        setattr(node, edit[1], ast.Name(edit[2], ast.Load()))
        return node
    raise ValueError(edit)


def _const(v: int):
    return ast.Constant(v) if v >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-v))


def _replace(parent, old, new) -> None:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return
        if isinstance(value, list):
            for k, item in enumerate(value):
                if item is old:
                    value[k] = new
                    return


# ---- running the variants -------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def instructor_source(assignment: str) -> str:
    return get(assignment).source.read_text()


@lru_cache(maxsize=None)
def all_source_variants(assignment: str, function: str) -> tuple[Variant, ...]:
    return tuple(source_variants(instructor_source(assignment), function))


_MODULES: dict[str, Any] = {}
_FOLDER: list[str] = []


def load_module(source: str, tag: str):
    """Import `source` as a fresh module from a real file (Triton's jit reads a kernel's source from its file)."""
    if not _FOLDER:
        _FOLDER.append(tempfile.mkdtemp(prefix="ast-min-variants-"))
    key = f"_ast_min_variant_{tag}_{abs(hash(source)):x}"
    if key in _MODULES:
        return _MODULES[key]
    import importlib.util

    path = os.path.join(_FOLDER[0], key + ".py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    # Variants run on CPU copies of the inputs, in a forked process: their kernels go through Triton's
    # interpreter even on a CUDA machine (@triton.jit reads the variable when it decorates), and the
    # fork never touches the GPU the grading process holds.
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before
    _MODULES[key] = module
    return module


def run_variant(variant: Variant, call: Call, args: tuple, kwargs: dict, reference: torch.Tensor | None):
    """The variant's output (float64, CPU) on these arguments; `reference`: the solution's output there (output variants)."""
    how = variant.how
    if how[0] == "output":
        return None if reference is None else apply_output(how, reference)
    if how[0] == "boundary":
        function = getattr(load_module(instructor_source(call.assignment), call.assignment), call.function)
        return as_tensor(apply_boundary(how, function, clone(args), clone(kwargs)), call.pick)
    source = apply_source(instructor_source(call.assignment), how[1], how[2])
    function = getattr(load_module(source, call.assignment), call.function)
    return as_tensor(function(*clone(args), **clone(kwargs)), call.pick)


def solution_output(call: Call, args: tuple, kwargs: dict):
    function = getattr(load_module(instructor_source(call.assignment), call.assignment), call.function)
    return as_tensor(function(*clone(args), **clone(kwargs)), call.pick)


def derived_variants(call: Call, expected_shape: tuple, got_shape: tuple) -> list[Variant]:
    """Every derived variant for this call, cheapest first: output transforms, the call's arguments, the source."""
    function = getattr(load_module(instructor_source(call.assignment), call.assignment), call.function)
    return (output_variants(expected_shape, call.axes) + short_variants(expected_shape, got_shape, call.axes)
            + boundary_variants(function, call.args, call.kwargs)
            + list(all_source_variants(call.assignment, call.function)))


def _on_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def _search(call, variants, got, expected, first, second, atol, rtol, send):
    """In the forked process: check the solution reproduces `expected`, then report each variant that reproduces `got`.

    Sends ("base", ok) once, then (k, error on the first input, output on the second input) for each
    variant k that reproduces `got` on the first input, and (k, None, None) for the others.
    """
    import warnings

    warnings.simplefilter("ignore")
    # torch.empty gives NaN here, so an output a changed kernel never writes is NaN, as in the
    # student's run when the grader asks for the same (graders/triton.py), not stale memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        reference = solution_output(call, *first)
    except Exception:
        reference = None
    ok = reference is not None and reproduces(reference, expected, atol, rtol)
    send("base", ok, None)
    if not ok:
        return
    inert = _inert_functions(call, variants, reference, first)
    reference2 = None
    for k, variant in enumerate(variants):
        if variant.function in inert:
            send(k, None, None)
            continue
        try:
            out = run_variant(variant, call, *first, reference)
            if not reproduces(got, out, atol, rtol):
                send(k, None, None)
                continue
            if variant.how[0] == "output" and reference2 is None:
                reference2 = solution_output(call, *second)
            send(k, max_error(got, out), run_variant(variant, call, *second, reference2))
        except Exception:  # a variant that cannot run on these inputs is no candidate
            send(k, None, None)


def _inert_functions(call: Call, variants, reference, first) -> set[str]:
    """The solution's functions whose changes cannot reach the compared output: emptied, they leave it as it was.

    (Nothing in the dK/dV kernel can change dQ.) One run per function; a function whose emptying
    fails or changes the output is kept.
    """
    source = instructor_source(call.assignment)
    tree = ast.parse(source)
    inert = set()
    for name in sorted({v.function for v in variants if v.function and v.function != call.function}):
        emptied = copy.deepcopy(tree)
        for node in emptied.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                node.body = [node.body[0], ast.Pass()] if _is_docstring(node.body[0]) else [ast.Pass()]
        try:
            function = getattr(load_module(ast.unparse(ast.fix_missing_locations(emptied)), call.assignment),
                               call.function)
            out = as_tensor(function(*clone(first[0]), **clone(first[1])), call.pick)
        except Exception:
            continue
        if out is not None and out.shape == reference.shape and bool(
                ((out == reference) | (out.isnan() & reference.isnan())).all()):
            inert.add(name)
    return inert


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _forked(search_args, start: int, deadline: float):
    """Run `_search` from variant `start` in a forked process; yield its messages as they come, until `deadline`."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the grader
        try:
            os.close(read)
            # The grading process's torch may have started its intra-op thread pool, which a forked
            # child cannot use (its threads are not copied): one thread, no pool
            torch.set_num_threads(1)
            call, variants, got, expected, first, second, atol, rtol = search_args

            def send(k, error, out):
                data = pickle.dumps((k if k == "base" else k + start, error, out))
                os.write(write, struct.pack("<Q", len(data)) + data)

            _search(call, variants[start:], got, expected, first, second, atol, rtol, send)
        except BaseException:
            pass
        finally:
            os._exit(0)
    os.close(write)
    buffer = b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read], [], [], remaining)[0]:
                return
            chunk = os.read(read, 1 << 20)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 8:
                size = struct.unpack("<Q", buffer[:8])[0]
                if len(buffer) < 8 + size:
                    break
                yield pickle.loads(buffer[8 : 8 + size])
                buffer = buffer[8 + size :]
    finally:
        os.close(read)
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def find(
    call: Call,
    got: torch.Tensor,
    expected: torch.Tensor,
    atol: float,
    rtol: float,
    student: Callable[[tuple, dict], Any],
    known: Callable[..., dict] | None,
    hints: dict[str, str],
    seed: int,
) -> Finding | None:
    """The first hand-written, then derived, variant that reproduces `got` here and on a second input; None if none.

    student(args, kwargs) calls the student's function (through ctx.call) on the second input.
    """
    args2, kwargs2 = second_input(call, seed)
    got2: list = []

    def student_second():
        if not got2:
            try:
                got2.append(as_tensor(student(clone(args2), clone(kwargs2)), call.pick))
            except Exception:  # the student's function fails on the second input: nothing can be confirmed
                got2.append(None)
        return got2[0]

    if known is not None:  # hand-written mistakes first
        first = known(*clone(call.args), **clone(call.kwargs))
        second = None
        for name, variant in first.items():
            v1 = variant.detach().cpu().to(torch.float64)
            if not reproduces(got, v1, atol, rtol):
                continue
            if second is None:
                second = known(*clone(args2), **clone(kwargs2))
            v2 = second.get(name)
            g2 = student_second()
            if v2 is not None and reproduces(g2, v2.detach().cpu().to(torch.float64), atol, rtol):
                base = name.split("#")[0]
                return Finding(base, hints[base], (max_error(got, v1), max_error(g2, v2.detach().cpu().double())))

    variants = derived_variants(call, tuple(expected.shape), tuple(got.shape))
    first, second = (_on_cpu(call.args), _on_cpu(call.kwargs)), (_on_cpu(args2), _on_cpu(kwargs2))
    deadline = time.monotonic() + call.seconds
    start = 0
    while start < len(variants) and time.monotonic() < deadline:
        last = start - 1
        for k, error, out2 in _forked((call, variants, got, expected, first, second, atol, rtol), start, deadline):
            if k == "base":
                if not error:  # the solution does not reproduce the reference here: its variants mean nothing
                    return None
                continue
            last = k
            if out2 is None:
                continue
            g2 = student_second()
            if reproduces(g2, out2, atol, rtol):
                variant = variants[k]
                return Finding(f"derived: {variant.kind}", variant.text + ".", (error, max_error(g2, out2)))
        start = last + 2  # past the variant that crashed or hung its process
    return None


def describe(finding: Finding) -> str:
    """The hint line, with the evidence that its variant reproduces the student's output."""
    return (f"\n  hint ({finding.name}): {finding.text}"
            f"\n  (this mistake reproduces your output here and on a second input: max differences "
            f"{finding.errors[0]:.2g} and {finding.errors[1]:.2g})")
