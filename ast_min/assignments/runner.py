"""Grade a submission: the grader's tests run here, the student's code only in a worker across a trust boundary.

This process (the command's own, `check` or `grade`) owns everything that decides a grade:
hypothesis and its seed, the references, the comparisons, the hints, the scores and the output
files. The student's file is loaded only in a worker (`sandbox.py` starts it, `worker.py` is its
program), which evaluates the graded functions on the arguments it is sent and returns plain data
that `grading.Context` checks before any comparison. When a test ends because the student's code
ran out of time, died or broke the protocol, the worker is killed and a fresh one serves the next
test; a file that does not load fails every test with the reason.

Time: each call of the student's code has a limit, so does the student's code in one test (calls
and reloads together) and the whole submission. `check` uses each test's own limit
(`Grader.time_limit`); `grade` first grades the instructor's solution in the same sandbox with the
same seed (`calibrate`: a grade of the reference that must reach full marks, or the grading
environment is broken) and derives every limit from its times, FACTOR times as long with a floor:
a call gets max(CALL_FLOOR, FACTOR x the reference's slowest call in that test), a test's calls
max(TEST_FLOOR, FACTOR x the reference's), loading the file max(LOAD_FLOOR, FACTOR x the
reference's), and the whole submission max(SUBMISSION_FLOOR, FACTOR x the reference's total).

Shape of a report (also what `ast-min assignment check --json` prints):
    {"assignment", "score", "max_score", "tests": [{"name", "score", "max_score", "output"}]}
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ast_min.assignments import get
from ast_min.assignments import worker as wire
from ast_min.assignments.grading import Context, Fail, RemoteObject, Stopped, failure
from ast_min.assignments.sandbox import STARTUP_LIMIT, Lost, Sandbox, TimeUp, WorkerSettings, make_base, remove_base

DEFAULT_EXAMPLES = 30  # hypothesis examples per property test
LOAD_TIME_LIMIT = 60.0  # check: seconds to load the student's file (Python and torch are loaded before it)
FACTOR = 10.0  # grade: every limit is this many times the instructor's solution's time ...
CALL_FLOOR = 2.0  # ... but at least this for one call (a fresh process's first torch call, a loaded machine),
TEST_FLOOR = 10.0  # this for one test's calls,
LOAD_FLOOR = 10.0  # this to load the file,
SUBMISSION_FLOOR = 20.0  # and this for the whole submission: a file whose every function hangs is done in about this
MAX_REPLY = 64 << 20  # bytes of data in one reply of the student's code
OUTPUT_LIMIT = 4000  # characters of one test's output


@dataclass
class TestResult:
    name: str
    score: float
    max_score: float
    output: str


@dataclass
class Report:
    assignment: str
    submission: str
    tests: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0
    student_seconds: float = 0.0  # the student's code: loads, calls, and restarts after its failures
    load_seconds: float = 0.0
    timing: dict = field(default_factory=dict)  # test name -> {"max_call", "calls"} seconds

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    @property
    def full_marks(self) -> bool:
        """Every point earned, and some point to earn: a report of no tests (an empty `only`) is not full marks."""
        return self.max_score > 0 and self.score == self.max_score

    def to_dict(self) -> dict:
        return {
            "assignment": self.assignment,
            "score": self.score,
            "max_score": self.max_score,
            "tests": [asdict(t) for t in self.tests],
        }


@dataclass(frozen=True)
class Limits:
    call: float  # seconds for one call of the student's code
    test: float  # seconds of the student's code in one test


@dataclass(frozen=True)
class Budgets:
    tests: dict
    load: float
    submission: float
    rule: str  # how they were set, for messages

    def for_test(self, name: str) -> Limits:
        return self.tests[name]


def static_budgets(grader, time_limit: float | None = None) -> Budgets:
    """`check`'s limits: each test's own (or `time_limit` for all), no limit on the whole."""
    tests = {t.name: Limits(time_limit or t.time_limit, time_limit or t.time_limit) for t in grader.tests}
    return Budgets(tests, LOAD_TIME_LIMIT, float("inf"), "the test's own limit")


def budgets_from(reference: Report) -> Budgets:
    """`grade`'s limits, from the instructor's solution's times (module docstring)."""
    tests = {name: Limits(max(CALL_FLOOR, FACTOR * t["max_call"]), max(TEST_FLOOR, FACTOR * t["calls"]))
             for name, t in reference.timing.items()}
    return Budgets(tests, max(LOAD_FLOOR, FACTOR * reference.load_seconds),
                   max(SUBMISSION_FLOOR, FACTOR * reference.student_seconds),
                   f"{FACTOR:g} x the instructor's solution's time, at least the floor")


def calibrate(name: str, seed: int = 0, max_examples: int | None = None, only: list[str] | None = None,
              base: str | None = None, isolate: bool = True) -> Budgets:
    """Grade the instructor's solution as a submission; its times set the limits. RuntimeError unless full marks."""
    reference = grade(name, get(name).source, seed=seed, max_examples=max_examples, only=only, base=base,
                      isolate=isolate)
    failed = [t for t in reference.tests if t.score != t.max_score]
    if not reference.full_marks and not failed:
        raise RuntimeError(f"the instructor's solution of {name} was graded on no test: name some of its tests")
    if failed:
        first = failed[0].output.splitlines()[0] if failed[0].output else ""
        raise RuntimeError(
            f"the instructor's solution of {name} scores {reference.score:g}/{reference.max_score:g} in this grading "
            f"environment, so no grade would mean anything: {failed[0].name}: {first}"
        )
    return budgets_from(reference)


def grade(
    name: str,
    submission: str | os.PathLike,
    seed: int = 0,
    max_examples: int | None = None,
    only: list[str] | None = None,
    time_limit: float | None = None,
    budgets: Budgets | None = None,
    base: str | None = None,
    isolate: bool = False,
) -> Report:
    """Grade `submission` (a student's NAME.py) against assignment `name`; never raises for the student's doing.

    seed: draws the property tests' examples (the same seed, the same cases); it never reaches the
    worker. max_examples: per property test (default DEFAULT_EXAMPLES). only: run just these tests.
    time_limit: replaces every test's own limit (the grader's own tests use a short one).
    budgets: `calibrate`'s limits (`grade`); default: `static_budgets` (`check`). base: the folder
    for the submission's private folder (default: a fresh one, removed afterwards). isolate: as root,
    run the submission as a fresh user id (what `grade` does; `check` runs it as the caller, whose
    own code it is). RuntimeError if no worker can start at all (the machine, not the submission).
    """
    assignment = get(name)
    path = Path(submission)
    if not path.is_file():
        raise FileNotFoundError(f"no submission at {path}: give the student's {assignment.filename}")
    grader = assignment.grader().GRADER
    unknown = set(only or ()) - {t.name for t in grader.tests}
    if unknown:
        raise ValueError(f"{name} has no test called {', '.join(map(repr, sorted(unknown)))}")
    budgets = budgets or static_budgets(grader, time_limit)
    report = Report(name, str(path))
    started = time.perf_counter()
    own_base = base is None
    base = base or make_base()
    student = None
    try:
        student = Submission(grader, path, assignment.filename, seed, budgets, base, isolate)
        student.prepare()
        ctx = Context(student, seed, max_examples or DEFAULT_EXAMPLES)
        for test in grader.tests:
            if only is None or test.name in only:
                report.tests.append(_run_test(test, ctx, student, budgets))
    finally:
        if student is not None:
            student.close()
            report.student_seconds, report.load_seconds, report.timing = student.spent, student.loading, student.timing
        if own_base:
            remove_base(base)
    report.seconds = time.perf_counter() - started
    return report


def _run_test(test, ctx: Context, student: "Submission", budgets: Budgets) -> TestResult:
    if student.broken:
        return TestResult(test.name, 0, test.points, _cap(student.broken))
    if student.spent >= budgets.submission:
        return TestResult(test.name, 0, test.points, f"not run: your code used up the whole submission's time budget "
                          f"({budgets.submission:.0f} s, {budgets.rule}) in the tests before")
    student.begin(test.name)
    ctx.inputs, ctx.notes, ctx.last_failure = {}, [], None
    try:
        test.function(ctx)
        score, output = test.points, "passed" + "".join(f"\n  {n}" for n in ctx.notes)
    except Fail as e:
        score, output = 0, str(e)
    except Stopped as e:
        score, output = 0, str(e)
        if ctx.last_failure:
            output += f"\n  before that, the test had already failed (not shrunk to a smaller case): {ctx.last_failure}"
    except Exception as e:  # a bug in the grader, or a value of the student's that the grader's code choked on
        score, output = 0, f"{type(e).__name__}: {e}"
    return TestResult(test.name, score, test.points, _cap(output))


def _cap(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return text[:OUTPUT_LIMIT] + f"\n  ... [{len(text) - OUTPUT_LIMIT} more characters cut]"


def _module_source(dotted: str) -> str:
    spec = importlib.util.find_spec(dotted)
    return Path(spec.origin).read_text()


class Submission:
    """One submission behind the boundary: its sandbox, its current worker, and the time its code has used."""

    def __init__(self, grader, path: Path, filename: str, seed: int, budgets: Budgets, base: str, isolate: bool):
        self.grader, self.seed, self.budgets = grader, seed, budgets
        self.sandbox = Sandbox(path, filename, base, isolate)
        self.modules = {m: _module_source(m) for m in grader.worker_modules}
        self.memory = grader.memory_limit
        # ast-min's own entry points are simply absent from the worker; torch's are watched there
        self.forbidden = tuple(f for f in grader.forbidden if f != "ast_min" and not f.startswith("ast_min."))
        total = budgets.submission if budgets.submission != float("inf") else sum(
            budgets.tests[t.name].test for t in grader.tests)
        self.cpu_seconds = total + STARTUP_LIMIT
        self.worker = None
        self.started = False
        self.charge_restart = False  # the last worker died of the student's doing: its replacement's start is charged
        self.saved = None  # the ordinary worker, while a memory-capped one serves a `memory_limit` block
        self.in_memory_block = False
        self.broken: str | None = None  # why every remaining test fails (the file does not load)
        self.spent = 0.0
        self.loading = 0.0
        self.timing: dict = {}
        self.test: str | None = None
        self.test_spent = 0.0
        self.calls = 0

    # ---- the worker's life
    def prepare(self) -> None:
        """Start the first worker and load the file; a file that does not load marks every test (`broken`)."""
        try:
            self._ensure_worker()
        except Stopped:
            pass

    def close(self) -> None:
        self.sandbox.close()

    def begin(self, test: str) -> None:
        self.test, self.test_spent, self.calls = test, 0.0, 0
        self.timing[test] = {"max_call": 0.0, "calls": 0.0}

    def _charge(self, seconds: float) -> None:
        self.spent += seconds
        self.test_spent += seconds

    def _settings(self) -> WorkerSettings:
        return WorkerSettings(env=dict(self.grader.env), forbidden=self.forbidden, memory=self.memory,
                              cpu_seconds=int(self.cpu_seconds), max_reply=MAX_REPLY)

    def _ensure_worker(self) -> None:
        if self.worker is not None:
            return
        if self.broken:
            raise Stopped(self.broken)
        started = time.monotonic()
        if self.charge_restart and not self.in_memory_block:
            self.sandbox.kill_all()  # whatever the dead worker left running goes with it
        try:
            self.worker = self.sandbox.start(self._settings(), started + STARTUP_LIMIT)
        except (Lost, TimeUp, wire.WireError) as e:
            detail = getattr(e, "output", "") or str(e)
            if not self.started:  # nothing of the student's has run yet: the machine is at fault
                raise RuntimeError(f"the grading worker could not start ({type(e).__name__}: {detail})") from None
            self._break(f"the grading process could not be restarted after the previous test ({type(e).__name__}"
                        f"{': ' + detail if detail else ''})")
        if self.in_memory_block and not self.worker.memory_capped:
            self._drop_worker()
            self.charge_restart = False
            raise Stopped("this machine cannot limit a process's memory (the kernel's address-space limit is "
                          "Linux's), so this test cannot be checked here: it is checked when your work is graded")
        if self.charge_restart:
            self._charge(time.monotonic() - started)
            self.charge_restart = False
        self.started = True
        self._load()

    def _load(self) -> None:
        left = min(self.budgets.load, self.budgets.submission - self.spent)
        started = time.monotonic()
        try:
            header, _ = self.worker.exchange({"op": "load", "path": str(self.sandbox.file), "modules": self.modules},
                                             [], started + max(left, 0.0))
        except TimeUp:
            self._break(f"loading your file took more than {left:.0f} s (is there a long computation or an endless "
                        "loop outside the functions?)")
        except Lost as e:
            self._break(f"the grading process died while loading your file (exit status {e.status}){_last(e.output)}")
        except wire.WireError as e:
            self._break(f"the grading process sent something the grader cannot read while loading your file ({e})")
        finally:
            seconds = time.monotonic() - started
            self._charge(seconds)
            self.loading += seconds
        error = header.get("error")
        if error is not None:
            self._break(_load_message(error, self.sandbox.file.name))
        if not header.get("loaded"):
            self._break("the grading process did not confirm that your file loaded")

    def _break(self, message: str):
        self._drop_worker()
        self.broken = message
        raise Stopped(message)

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        self.worker = None
        self.charge_restart = True

    # ---- calls
    def call(self, name: str, args, kwargs, watch: tuple[str, ...] = ()):
        return self.request({"function": name}, args, kwargs, name, watch=watch)

    def remote(self, value) -> RemoteObject:
        return self._exchange({"op": "keep"}, {"value": value}, f"sending a {type(value).__name__}")

    @contextlib.contextmanager
    def memory_limit(self, extra_bytes: int):
        self.saved, self.worker, self.memory, self.in_memory_block = self.worker, None, extra_bytes, True
        try:
            yield
        finally:
            if self.worker is not None:
                self.worker.kill()
            self.worker, self.saved, self.memory = self.saved, None, self.grader.memory_limit
            self.in_memory_block = False

    def request(self, target: dict, args, kwargs, label: str, attribute: str | None = None, watch=()):
        header = {"op": "call", "target": target, "grad": torch.is_grad_enabled()}
        if attribute is not None:
            header["attribute"] = attribute
        if watch:
            header["watch"] = sorted(watch)
        return self._exchange(header, {"args": tuple(args), "kwargs": dict(kwargs)}, label)

    def _exchange(self, header: dict, values: dict, label: str):
        self._ensure_worker()
        worker = self.worker
        encoder = wire.Encoder()
        encoder.objects = lambda value: self._ship(value, encoder, worker)
        header = {**header, **{k: encoder.encode(v) for k, v in values.items()}}
        self.calls += 1
        header["seed"] = int.from_bytes(hashlib.sha256(f"{self.seed}|{self.test}|{self.calls}".encode()).digest()[:8],
                                        "little") >> 1  # the worker's generators: derived from the seed, never it
        limits = self.budgets.for_test(self.test)
        left, which = min((limits.call, "call"), (limits.test - self.test_spent, "test"),
                          (self.budgets.submission - self.spent, "submission"))
        if left <= 0:
            raise Stopped(self._time_message(label, which, limits))
        started = time.monotonic()
        try:
            reply, buffers = self.worker.exchange(header, encoder.buffers, started + left)
            value = self._decode(reply, buffers, label) if "error" not in reply else None
        except TimeUp:
            self._drop_worker()
            raise Stopped(self._time_message(label, which, limits)) from None
        except Lost as e:
            self._drop_worker()
            raise Stopped(f"the grading process died during `{label}` (exit status {e.status}: a crash, os._exit, "
                          f"a signal or a limit){_last(e.output)}") from None
        except wire.WireError as e:
            self._drop_worker()
            raise Stopped(f"`{label}` sent back something the grader cannot read ({e})") from None
        finally:
            seconds = time.monotonic() - started
            self._charge(seconds)
            timing = self.timing.setdefault(self.test, {"max_call": 0.0, "calls": 0.0})
            timing["max_call"] = max(timing["max_call"], seconds)
            timing["calls"] += seconds
        if "error" in reply:
            raise failure(label, reply["error"])
        return value

    def _decode(self, reply: dict, buffers: list, label: str):
        worker = self.worker

        def handle(node, decoder, depth):
            wire.Decoder._only(node, {"handle", "type"})
            if not isinstance(node["handle"], int) or not isinstance(node["type"], str):
                raise wire.WireError("a malformed handle")
            return RemoteObject(_Bound(self, worker), node["handle"], node["type"][:80], node["type"][:80])

        return wire.Decoder(buffers, handle, frozenset({"handle"})).decode(reply.get("value"))

    def _ship(self, value, encoder: wire.Encoder, worker):
        if isinstance(value, RemoteObject):
            bound = value._student
            if not isinstance(bound, _Bound) or bound.submission is not self or bound.worker is not worker:
                raise Stopped("an object from the student's process was used after that process ended")
            return {"remote": value._handle}
        for cls, to_plain in self.grader.shipped.items():
            if isinstance(value, cls):
                builder, data = to_plain(value)
                return {"build": builder, "data": encoder.encode(data)}
        return None

    def _time_message(self, label: str, which: str, limits: Limits) -> str:
        if which == "call":
            return (f"time limit: `{label}` ran for more than {limits.call:.3g} s ({self.budgets.rule}): an endless "
                    "loop, a wait, or far too slow")
        if which == "test":
            return (f"time limit: your code used up this test's {limits.test:.3g} s ({self.budgets.rule}) "
                    f"during `{label}`")
        return (f"time limit: your code used up the whole submission's {self.budgets.submission:.3g} s "
                f"({self.budgets.rule}) during `{label}`")


class _Bound:
    """A RemoteObject's way back to its worker: refused once that worker is gone."""

    def __init__(self, submission: Submission, worker):
        self.submission, self.worker = submission, worker

    def request(self, target, args, kwargs, label, attribute=None):
        if self.submission.worker is not self.worker or self.worker.dead:
            raise Stopped("an object from the student's process was used after that process ended")
        return self.submission.request(target, args, kwargs, label, attribute)


def _load_message(error: dict, filename: str) -> str:
    kind = str(error.get("type", ""))[:80] if isinstance(error, dict) else ""
    message = str(error.get("message", ""))[:2000] if isinstance(error, dict) else ""
    if kind == "HonourCodeCall":
        return (f"your file calls ast-min's own implementation while it loads ({message}): graded code runs "
                "without ast-min (torch, numpy and triton are there); write the computation yourself")
    return (f"your file could not be loaded: {kind}: {message}; fix it so that `python {filename}` runs, then "
            "check again")


def _last(output: str) -> str:
    return ("\n  last output:\n    " + "\n    ".join(output.splitlines())) if output else ""


__all__ = ["Budgets", "Report", "TestResult", "calibrate", "grade", "static_budgets"]
