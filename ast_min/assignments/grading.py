"""What a grader is made of: tests, the student's functions called under guard, comparisons that explain.

A grader module defines `GRADER = Grader(...)`, registers its tests with `@GRADER.test(...)` in the
order they run (shape checks, a worked example, hypothesis properties, edge cases: partial work
earns partial credit), and lists its known mistakes in `MISTAKES`. A test receives a `Context`:

    ctx.call(name, *args)   the student's function, with the honour-code guard armed
    ctx.inputs = {...}      the current inputs, quoted by every failure message
    ctx.compare(got, expected, what, atol=, rtol=, variants=, hints=, derive=)
                            close enough, or a `Fail` naming the inputs, the first mismatching
                            index, expected and got, and a hint when a known mistake, or a wrong
                            answer derived from the solution (`diagnosis`), reproduces `got`
    ctx.prove(strategy, check)
                            a hypothesis property, derandomised by the grading seed, no database;
                            a failure is reported on the shrunk counterexample

The tests run only inside the grading process (`runner.py`); the command's own process reads the
test list and limits, and never calls the student's code.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


class Fail(AssertionError):
    """A test's verdict with an explanation for the student (an AssertionError, so hypothesis shrinks it)."""


class NotWritten(Fail):
    """The student's function still raises the starter's NotImplementedError."""


class HonourCode(Fail):
    """The student's function called a library entry point it was meant to write itself."""


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: its name, the hint shown when a student's output equals it, and how to make it.

    `mutation` = (old, new) turns the instructor's solution into a submission with exactly this
    mistake, and `test` is the grader's test that must name it (the tests apply the mutation and
    check); `old` occurs once in the source.
    """

    name: str
    hint: str
    mutation: tuple[str, str]
    test: str


@dataclass
class TestCase:
    name: str
    points: int
    function: Callable[["Context"], None]
    time_limit: float


@dataclass
class Grader:
    """One assignment's tests. `forbidden`: dotted names of library entry points a graded function must not call."""

    assignment: str
    forbidden: tuple[str, ...]
    time_limit: float = 20.0  # seconds per test, unless the test says otherwise
    memory_limit: int | None = 3 << 30  # bytes of address space the grading process may add; None: no cap
    tests: list[TestCase] = field(default_factory=list)
    setup: Callable[[], None] | None = None  # runs in the grading process before the student's file loads
    env: dict[str, str] = field(default_factory=dict)  # environment of the grading process

    def test(self, name: str, points: int = 1, time_limit: float | None = None):
        def register(function):
            self.tests.append(TestCase(name, points, function, time_limit or self.time_limit))
            return function

        return register


# ---- the honour-code guard ------------------------------------------------------------------------


class Guard:
    """Records calls into forbidden entry points while a graded function runs.

    `arm` replaces each forbidden module attribute (a function, or a class's __init__ and forward)
    by a wrapper that notes the call when the guard is active, before the student's file is
    imported, so `from ast_min.features import mel_filterbank` binds the wrapper too. Outside a
    graded call (the grader computing its expected values) the wrappers only pass through.
    """

    def __init__(self):
        self.active = False
        self.calls: list[str] = []

    def _wrap(self, function, name: str):
        guard = self

        def wrapper(*args, **kwargs):
            if guard.active:
                guard.calls.append(name)
            return function(*args, **kwargs)

        wrapper.__wrapped__ = function
        wrapper.__name__ = getattr(function, "__name__", name)
        wrapper.__doc__ = getattr(function, "__doc__", None)
        return wrapper

    def arm(self, forbidden: tuple[str, ...]) -> None:
        from importlib import import_module

        for dotted in forbidden:
            module_name, _, attribute = dotted.rpartition(".")
            try:  # a whole module: every function and class it defines
                module = import_module(dotted)
                names = [
                    n for n, v in vars(module).items()
                    if callable(v) and getattr(v, "__module__", "").startswith(dotted) and not n.startswith("__")
                ]
            except ImportError:
                module, names = import_module(module_name), [attribute]
            for name in names:
                value = getattr(module, name)
                label = f"{module.__name__}.{name}"
                if isinstance(value, type):
                    for method in ("__init__", "forward"):
                        if method in vars(value):
                            setattr(value, method, self._wrap(vars(value)[method], f"{label}.{method}"))
                elif callable(value):
                    setattr(module, name, self._wrap(value, label))


GUARD = Guard()


# ---- formatting --------------------------------------------------------------------------------------


def describe(value: Any) -> str:
    """A short, readable description of a test input: tensors by shape and dtype (and values when tiny)."""
    if isinstance(value, torch.Tensor):
        text = f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).replace('torch.', '')}"
        if value.numel() <= 12:
            text += f", values={[round(float(x), 6) for x in value.detach().flatten().cpu()]}"
        return text + ")"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"{type(value).__name__} of {len(value)}"
    return repr(value)


def describe_inputs(inputs: dict) -> str:
    return ", ".join(f"{k}={describe(v)}" for k, v in inputs.items())


def _student_frame(exc: BaseException, submission: str | None) -> str:
    """' (line N of your file: code)' for the deepest traceback frame in the file `submission`, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == submission]
    if not frames:
        return ""
    f = frames[-1]
    return f" (line {f.lineno} of your file: {f.line})"


# ---- the context a test receives -------------------------------------------------------------------


class Context:
    """What a test can use: the student's module, the seed and example budget, checked calls and comparisons."""

    def __init__(self, student, seed: int, max_examples: int):
        self.student = student
        self.seed = seed
        self.max_examples = max_examples
        self.inputs: dict = {}  # the current example's inputs, for messages
        self.notes: list[str] = []  # lines a passing test reports (timings, measured values)

    def call(self, name: str, *args, **kwargs):
        """Call the student's `name` with the guard armed; turn every way it can go wrong into a `Fail`."""
        function = getattr(self.student, name, None)
        if not callable(function):
            raise Fail(f"your file defines no function `{name}`: keep the starter's `def {name}(...)` line")
        GUARD.calls.clear()
        GUARD.active = True
        try:
            result = function(*args, **kwargs)
        except NotImplementedError as e:
            raise NotWritten(f"`{name}` is not written yet: {e or 'it raises NotImplementedError'}") from None
        except (Fail, MemoryError):
            raise
        except SystemExit as e:
            raise Fail(f"`{name}` called sys.exit({e.code}); return a value instead") from None
        except Exception as e:  # the student's bug: say which, and where
            if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):
                raise Fail(f"`{name}` ran out of memory (the grader's limit): {str(e).splitlines()[0]}") from None
            where = _student_frame(e, getattr(self.student, "__file__", None))
            raise Fail(f"`{name}` raised {type(e).__name__}: {e}{where}") from None
        finally:
            GUARD.active = False
        if GUARD.calls:
            used = ", ".join(sorted(set(GUARD.calls)))
            raise HonourCode(
                f"honour code: `{name}` called {used}. ast-min's own implementation is public, so a graded "
                "function that calls it earns no points for this test: write the computation yourself."
            )
        return result

    def expect_tensor(self, got, what: str, shape: tuple | None = None) -> torch.Tensor:
        """`got` must be a tensor (of `shape`, when given)."""
        if not isinstance(got, torch.Tensor):
            raise Fail(f"{what} should be a torch.Tensor, got {type(got).__name__}{self.on_inputs()}")
        if shape is not None and tuple(got.shape) != tuple(shape):
            raise Fail(f"{what} should have shape {tuple(shape)}, got {tuple(got.shape)}{self.on_inputs()}")
        return got

    def on_inputs(self) -> str:
        return f"\n  inputs: {describe_inputs(self.inputs)}" if self.inputs else ""

    def compare(
        self,
        got,
        expected: torch.Tensor,
        what: str,
        *,
        atol: float = 1e-6,
        rtol: float = 1e-6,
        variants: dict[str, torch.Tensor] | Callable[..., dict[str, torch.Tensor]] | None = None,
        hints: dict[str, str] | None = None,
        derive: "diagnosis.Call | None" = None,
    ) -> None:
        """Pass when got ~ expected elementwise (|got - expected| <= atol + rtol |expected|, NaNs equal).

        On a failure the message names the inputs, the first mismatching index, expected and got,
        and a hint when a mistake reproduces `got`. With `derive` (how `got` was produced: the
        student's function and its arguments, `diagnosis.Call`), `variants` is a function of those
        arguments returning the known mistakes' outputs, and a mistake is named only when it
        reproduces the student's output here *and* on a second input; known mistakes come first,
        then the wrong answers `diagnosis` derives from the solution itself. Without `derive`,
        `variants` is a dict of outputs on these inputs only.
        """
        got = self.expect_tensor(got, what)
        got_cpu, exp_cpu = got.detach().cpu().to(torch.float64), expected.detach().cpu().to(torch.float64)
        if got_cpu.shape == exp_cpu.shape:
            close = _close(got_cpu, exp_cpu, atol, rtol)
            if bool(close.all()):
                return
        hint = self._hint(got_cpu, exp_cpu, variants, hints or {}, atol, rtol, derive)
        if got_cpu.shape != exp_cpu.shape:
            raise Fail(
                f"{what} should have shape {tuple(exp_cpu.shape)}, got {tuple(got_cpu.shape)}{self.on_inputs()}{hint}"
            )
        flat = int((~close).flatten().nonzero()[0])
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), exp_cpu.shape)) if exp_cpu.dim() else ()
        error = (got_cpu - exp_cpu).abs().nan_to_num(math.inf)
        raise Fail(
            f"{what} is wrong{self.on_inputs()}\n"
            f"  first mismatch at index {index}: expected {exp_cpu[index].item():.8g}, got {got_cpu[index].item():.8g}\n"
            f"  {int((~close).sum())} of {close.numel()} values differ; max |error| {error.max().item():.3g} "
            f"(tolerance {atol:g} + {rtol:g} |expected|){hint}"
        )

    def _hint(self, got, expected, variants, hints, atol, rtol, derive) -> str:
        if derive is None:  # outputs of known mistakes on these inputs only
            for name, variant in (variants or {}).items():
                variant = variant.detach().cpu().to(torch.float64)
                if variant.shape == got.shape and bool(_close(got, variant, atol, rtol).all()):
                    name = name.split("#")[0]  # "mistake#2": a second form of the same mistake
                    return f"\n  hint ({name}): {hints[name]}"
            return ""
        if not _reported_example():  # hypothesis is still shrinking: only the reported counterexample is diagnosed
            return ""
        from ast_min.assignments import diagnosis

        try:
            finding = diagnosis.find(
                derive, got, expected, atol, rtol,
                student=lambda args, kwargs: self.call(derive.function, *args, **kwargs),
                known=variants, hints=hints, seed=self.seed,
            )
        except Exception:  # a diagnosis that cannot finish leaves the verdict without a hint, never without a verdict
            return ""
        return diagnosis.describe(finding) if finding is not None else ""

    def prove(self, strategy, check: Callable[[Any], None], max_examples: int | None = None) -> None:
        """Run `check` on examples drawn from `strategy` (hypothesis), seeded by the grading seed, no database.

        `check` sets `ctx.inputs` and raises `Fail`; hypothesis shrinks a failure to a small
        counterexample and replays it last, so the `Fail` that propagates describes the shrunk inputs.
        """
        from hypothesis import HealthCheck, Phase, given, seed, settings

        @settings(
            max_examples=max_examples or self.max_examples,
            database=None,
            deadline=None,
            derandomize=False,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=False,
        )
        @seed(self.seed)
        @given(strategy)
        def run(example):
            self.inputs = {}
            check(example)

        try:
            run()
        except NotWritten:
            raise
        except Fail as e:
            raise Fail(f"property failed on the smallest counterexample found: {e}") from None
        except Exception as e:  # hypothesis's own complaints (flaky results, unsatisfiable draws)
            raise Fail(f"property check could not finish: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def _reported_example() -> bool:
    """False while hypothesis explores or shrinks; True on the example it reports, and outside hypothesis."""
    from hypothesis.control import current_build_context, currently_in_test_context

    return not currently_in_test_context() or current_build_context().is_final


def _close(got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    both_nan = got.isnan() & expected.isnan()
    same_inf = got.isinf() & (got == expected)
    return both_nan | same_inf | ((got - expected).abs() <= atol + rtol * expected.abs())
