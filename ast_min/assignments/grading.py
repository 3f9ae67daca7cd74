"""What a grader is made of: tests, the student's functions called across the boundary, comparisons that explain.

A grader module defines `GRADER = Grader(...)`, registers its tests with `@GRADER.test(...)` in the
order they run (shape checks, a worked example, hypothesis properties, edge cases: partial work
earns partial credit), and lists its known mistakes in `MISTAKES`. A test receives a `Context`:

    ctx.call(name, *args)   the student's function, run in the worker (`runner.py`, `worker.py`) on
                            a copy of the arguments; what comes back is plain data (tensors, arrays,
                            numbers, strings, and lists, tuples and dicts of them) the grading side
                            has checked, or a `RemoteObject` standing for an object that stays in
                            the worker; every way the call can go wrong is a `Fail`
    ctx.remote(obj)         an object of a kind the grader ships (`Grader.shipped`), rebuilt in the
                            worker; the `RemoteObject` returned can be passed to `ctx.call`
    with ctx.memory_limit(n): calls in the block run in a fresh worker that may map at most n more
                            bytes than Python and torch do: a property of *how* the student computes
    ctx.inputs = {...}      the current inputs, quoted by every failure message
    ctx.compare(got, expected, what, atol=, rtol=, variants=, hints=, derive=)
                            close enough, or a `Fail` naming the inputs, the first mismatching
                            index, expected and got, and a hint when a known mistake, or a wrong
                            answer derived from the solution (`diagnosis`), reproduces `got`
    ctx.prove(strategy, check)
                            a hypothesis property, derandomised by the grading seed, no database;
                            a failure is reported on the shrunk counterexample

The tests run in the trusted grading process: hypothesis, the seed, the references, the
comparisons, the hints and the scores never meet the student's code, which sees only the
arguments of its own calls.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ast_min.assignments import worker as wire


class Fail(AssertionError):
    """A test's verdict with an explanation for the student (an AssertionError, so hypothesis shrinks it)."""


class NotWritten(Fail):
    """The student's function still raises the starter's NotImplementedError."""


class HonourCode(Fail):
    """The student's function called a library entry point it was meant to write itself."""


class OutOfMemory(Fail):
    """The student's function needed more memory than the worker may map."""


class Stopped(BaseException):
    """The test cannot go on (time is up, the worker died or sent garbage): not shrunk, not retried.

    A BaseException, so that hypothesis lets it through at once instead of calling the student's
    code again to shrink it.
    """


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
    """One assignment's tests.

    forbidden: dotted names of library entry points a graded function must not call (ast-min's own
    are absent from the worker altogether; torch's are watched there). time_limit: seconds of the
    student's code per test for `check` (`grade` derives its limits from the instructor's solution).
    memory_limit: bytes of address space a worker may map beyond Python, torch and a warm-up; None:
    no cap. env: the worker's environment. shipped: {class: function(obj) -> (builder, plain data)}
    for objects `ctx.remote` sends; worker_modules: dotted names of self-contained modules (standard
    library, numpy and torch only) run in the worker before the student's file, whose BUILDERS dict
    rebuilds shipped objects.
    """

    assignment: str
    forbidden: tuple[str, ...]
    time_limit: float = 20.0
    memory_limit: int | None = 3 << 30
    tests: list[TestCase] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    shipped: dict[type, Callable[[Any], tuple[str, Any]]] = field(default_factory=dict)
    worker_modules: tuple[str, ...] = ()

    def test(self, name: str, points: int = 1, time_limit: float | None = None):
        def register(function):
            self.tests.append(TestCase(name, points, function, time_limit or self.time_limit))
            return function

        return register


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


def failure(name: str, error: dict) -> Fail:
    """The `Fail` for a graded call that went wrong, from the worker's report (plain data, checked here)."""
    kind = error.get("kind") if isinstance(error, dict) else None

    def text(key: str, limit: int = 2000) -> str:
        value = str(error.get(key, ""))
        return value if len(value) <= limit else value[:limit] + f"... [{len(value) - limit} more characters]"

    if kind == "no_function":
        return Fail(f"your file defines no function `{name}`: keep the starter's `def {name}(...)` line")
    if kind == "not_written":
        return NotWritten(f"`{name}` is not written yet: {text('message') or 'it raises NotImplementedError'}")
    if kind == "exit":
        return Fail(f"`{name}` called sys.exit({text('message', 100)}); return a value instead")
    if kind == "memory":
        return OutOfMemory(f"`{name}` ran out of memory (the grader's limit): {text('message', 300)}")
    if kind == "honour":
        calls = error.get("calls") if isinstance(error.get("calls"), list) else []
        used = ", ".join(str(c)[:120] for c in calls[:20])
        return HonourCode(
            f"honour code: `{name}` called {used}. ast-min's own implementation is public, so a graded "
            "function that calls it earns no points for this test: write the computation yourself."
        )
    if kind == "unsendable":
        return Fail(f"`{name}` returned something that cannot be sent back for grading ({text('message', 300)}): "
                    "return tensors, numbers, or tuples and lists of them")
    if kind == "exception":
        return Fail(f"`{name}` raised {text('type', 80)}: {text('message')}{text('where', 600)}")
    return Fail(f"`{name}` failed in a way the grader does not know ({str(kind)[:80]})")


class RemoteObject:
    """An object that stays in the worker (the student's model, say): attributes and calls are requests to it.

    Reading an attribute or calling it runs the student's code in the worker, within the current
    test's time limits, and returns plain data or another RemoteObject.
    """

    def __init__(self, student, handle: int, type_name: str, label: str):
        object.__setattr__(self, "_student", student)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_label", label)

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return self._student.request({"handle": self._handle}, (), {}, f"{self._label}.{attribute}", attribute=attribute)

    def __setattr__(self, attribute, value):
        raise AttributeError(f"{self._label} lives in the student's process: it cannot be changed from the grader")

    def __call__(self, *args, **kwargs):
        return self._student.request({"handle": self._handle}, args, kwargs, f"{self._label}(...)")

    def __repr__(self) -> str:
        return f"<{self._type} in the student's process>"


def type_name(value) -> str:
    return value._type if isinstance(value, RemoteObject) else type(value).__name__


class InProcess:
    """Calls a student module in this very process: only for the graders' own unit tests, never for grading.

    Results and errors take the same forms (a Fail with the same message) as across the boundary.
    """

    def __init__(self, module):
        self.module = module

    def call(self, name: str, args, kwargs, watch: tuple[str, ...] = ()):
        function = getattr(self.module, name, None)
        if not callable(function):
            raise failure(name, {"kind": "no_function"})
        try:
            with wire.op_recorder(list(watch)) as seen:
                result = function(*args, **kwargs)
        except BaseException as e:
            raise failure(name, wire.error_report(e, [], getattr(self.module, "__file__", None))) from None
        return {"result": result, "ops": sorted(seen.ops)} if watch else result

    def remote(self, value):
        return value

    @contextlib.contextmanager
    def memory_limit(self, extra_bytes: int):
        yield


# ---- the context a test receives -------------------------------------------------------------------


class Context:
    """What a test can use: the student's functions (across the boundary), the seed and example budget, comparisons.

    `student` is the runner's view of a submission (calls go to its worker) or, in the graders' own
    unit tests, a module (called in this process).
    """

    def __init__(self, student, seed: int, max_examples: int):
        self.student = student if hasattr(student, "call") and hasattr(student, "remote") else InProcess(student)
        self.seed = seed
        self.max_examples = max_examples
        self.inputs: dict = {}  # the current example's inputs, for messages
        self.notes: list[str] = []  # lines a passing test reports (timings, measured values)
        self.last_failure: str | None = None  # the latest Fail, reported if a property is stopped mid-shrink

    def call(self, name: str, *args, **kwargs):
        """Call the student's `name` in the worker; turn every way it can go wrong into a `Fail`."""
        return self.student.call(name, args, kwargs)

    def call_watching(self, ops, name: str, *args, **kwargs) -> tuple[Any, list[str]]:
        """As `call`, and which of the torch operations `ops` (aten names: "mm", "exp", ...) the call ran.

        The operations are noted inside the student's process: evidence for an honest student, not
        a defence (docs/TEACHING.md, "Threat model")."""
        reply = self.student.call(name, args, kwargs, watch=tuple(ops))
        if (not isinstance(reply, dict) or set(reply) != {"result", "ops"} or not isinstance(reply["ops"], list)
                or not all(isinstance(op, str) and op in ops for op in reply["ops"])):
            raise Fail(f"`{name}`: the grader could not read which operations it ran")
        return reply["result"], reply["ops"]

    def remote(self, value) -> RemoteObject:
        """Send `value` (of a class in `Grader.shipped`) to the worker; the result stands for the copy there."""
        return self.student.remote(value)

    def memory_limit(self, extra_bytes: int):
        """`with ctx.memory_limit(n):` calls inside run in a fresh worker capped at n bytes above its start."""
        return self.student.memory_limit(extra_bytes)

    def expect_tensor(self, got, what: str, shape: tuple | None = None) -> torch.Tensor:
        """`got` must be a tensor (of `shape`, when given)."""
        if not isinstance(got, torch.Tensor):
            raise Fail(f"{what} should be a torch.Tensor, got {type_name(got)}{self.on_inputs()}")
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
        from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings

        @settings(
            max_examples=max_examples or self.max_examples,
            database=None,
            deadline=None,
            derandomize=False,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=False,
            verbosity=Verbosity.quiet,  # hypothesis would print the seed on the instructor's terminal
        )
        @seed(self.seed)
        @given(strategy)
        def run(example):
            self.inputs = {}
            try:
                check(example)
            except Fail as e:
                self.last_failure = str(e)
                raise

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
