"""Run a grader on a submission in a separate, limited process, so no student bug can stop the grading.

The command's process (`grade`) starts a grading process (forked from a multiprocessing
forkserver that has imported torch once) that loads the grader and then the student's file, and
runs the tests one after another, reporting each start and result on a pipe of its own (the
student's prints go to a log). The grading process has an address-space limit (`resource.setrlimit(RLIMIT_AS)`), so a huge allocation
fails inside it as an error for that test; each test has a time limit, enforced from outside: a test
that runs past it, or a process that dies (a crash, `os._exit`), is marked failed with the reason,
and a fresh grading process carries on from the next test. `sys.exit` and every exception in the
student's code are caught where they happen, as that test's failure.

Shape of a report (also what `ast-min assignment check --json` prints):
    {"assignment", "score", "max_score", "tests": [{"name", "score", "max_score", "output"}]}
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ast_min.assignments import get

LOAD_TIME_LIMIT = 120.0  # seconds to import torch, the grader and the student's file
DEFAULT_EXAMPLES = 30  # hypothesis examples per property test


@dataclass(frozen=True)
class _Limit:
    points: int
    time_limit: float


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

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    def to_dict(self) -> dict:
        return {
            "assignment": self.assignment,
            "score": self.score,
            "max_score": self.max_score,
            "tests": [asdict(t) for t in self.tests],
        }


def grade(
    name: str,
    submission: str | os.PathLike,
    seed: int = 0,
    max_examples: int | None = None,
    only: list[str] | None = None,
    time_limit: float | None = None,
) -> Report:
    """Grade `submission` (a student's NAME.py) against assignment `name`; never raises for the student's bugs.

    seed: draws the property tests' examples (the same seed, the same cases). max_examples: per
    property test (default DEFAULT_EXAMPLES). only: run just these tests. time_limit: replaces every
    test's own limit (the tests of the grader itself use a short one).
    """
    assignment = get(name)
    path = Path(submission)
    if not path.is_file():
        raise FileNotFoundError(f"no submission at {path}: give the student's {assignment.filename}")
    grader = assignment.grader().GRADER
    limits = {t.name: _Limit(t.points, time_limit or t.time_limit) for t in grader.tests}
    unknown = set(only or ()) - set(limits)
    if unknown:
        raise ValueError(f"{name} has no test called {', '.join(map(repr, sorted(unknown)))}")
    report = Report(name, str(path))
    pending = [t.name for t in grader.tests if only is None or t.name in only]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ast-min-grading-") as workdir:
        while pending:
            done = _run_child(name, path, seed, max_examples or DEFAULT_EXAMPLES, pending, limits, grader, workdir)
            for result in done:
                report.tests.append(result)
                pending.remove(result.name)
    order = {t.name: i for i, t in enumerate(grader.tests)}
    report.tests.sort(key=lambda t: order[t.name])
    report.seconds = time.perf_counter() - started
    return report


def _context(assignment: str, forbidden: tuple[str, ...]):
    """Grading processes fork from a server that has imported torch, the grader and the modules its guard wraps once.

    The server itself never runs torch code, so it has no threads to break by forking. It is started
    by the first grade of this process, with that assignment's modules (and EXTRA_PRELOAD); later
    grades of other assignments import theirs in each grading process. Not the triton grader: it
    asks torch about CUDA at import, and a process that has touched CUDA must not fork.
    """
    global _CONTEXT
    if _CONTEXT is None:
        modules = ["torch", "numpy", "hypothesis", "ast_min.assignments.grading"]
        if assignment != "triton":
            modules.append(f"ast_min.assignments.graders.{assignment}")
            modules += [m for m in forbidden if _is_module(m)]
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(modules + [m for m in EXTRA_PRELOAD if m not in modules])
    return _CONTEXT


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


_CONTEXT = None
EXTRA_PRELOAD: list[str] = []  # more modules for the forkserver (the tests add every grader)


def _run_child(name, path, seed, max_examples, pending, limits, grader, workdir) -> list[TestResult]:
    """Run the pending tests in one grading process; return the results it produced before finishing or failing."""
    log_path = os.path.join(workdir, "log.txt")
    job = {"assignment": name, "submission": str(path.resolve()), "seed": seed, "examples": max_examples,
           "tests": pending, "log": log_path, "cwd": workdir}
    ctx = _context(name, grader.forbidden)
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=child_main, args=(job, sender), daemon=True)
    # multiprocessing would re-run the caller's main script in the grading process (a notebook's,
    # an instructor's script without a __main__ guard, '<stdin>'): hand it an empty main module instead.
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        process.start()
    finally:
        sys.modules["__main__"] = main
    sender.close()
    results, current = [], None
    deadline = time.monotonic() + LOAD_TIME_LIMIT
    try:
        while True:
            if not receiver.poll(max(deadline - time.monotonic(), 0)):  # time is up
                process.kill()
                process.join()
                if current is None:
                    if results:  # between tests: the next test is what hung
                        return results
                    return _all_failed(pending, limits, f"loading your file took more than {LOAD_TIME_LIMIT:.0f} s "
                                       "(is there a long computation or an endless loop outside the functions?)")
                limit = limits[current].time_limit
                results.append(TestResult(current, 0, limits[current].points,
                                          f"time limit: stopped after {limit:g} s (an endless loop, or far too slow)"))
                return results
            try:
                event = receiver.recv()
            except EOFError:  # the process ended
                process.join()
                if current is not None:
                    results.append(TestResult(current, 0, limits[current].points,
                                              f"the grading process died during this test (exit status "
                                              f"{process.exitcode}: a crash, os._exit or the memory limit){_tail(log_path)}"))
                elif not results:  # it died before any test: never start it again
                    return _all_failed(pending, limits, "the grading process died while loading your file "
                                       f"(exit status {process.exitcode}){_tail(log_path)}")
                return results
            if event["event"] == "load_error":
                return _all_failed(pending, limits, event["output"])
            if event["event"] == "start":
                current = event["test"]
                deadline = time.monotonic() + limits[current].time_limit
            elif event["event"] == "result":
                results.append(TestResult(event["test"], event["score"], event["max_score"], event["output"]))
                current = None
                deadline = time.monotonic() + LOAD_TIME_LIMIT
                if len(results) == len(pending):
                    return results
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()


def _all_failed(tests, limits, message) -> list[TestResult]:
    return [TestResult(t, 0, limits[t].points, message) for t in tests]


def _tail(log_path: str, lines: int = 6) -> str:
    try:
        with open(log_path, errors="replace") as log:
            text = log.read().strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("\n  last output:\n    " + "\n    ".join(text)) if text else ""


# ---- the grading process ------------------------------------------------------------------------------


def _load_submission(path: str):
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    return module


def _limit_memory(extra_bytes: int) -> None:
    """Cap the address space at what the process maps now plus `extra_bytes`: a bigger allocation fails, it does not swap."""
    import resource

    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = mapped + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def child_main(job: dict, connection) -> int:
    """The grading process: load the grader, arm the guard, limit memory, load the file, run the tests."""
    os.chdir(job["cwd"])  # files the student's code writes land in a scratch folder
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)  # the student's prints go to the log, quoted when the process dies
    os.dup2(log, 2)

    def send(**event):
        connection.send(event)

    import torch

    from ast_min.assignments.grading import GUARD, Context, Fail

    torch.set_num_threads(1)
    grader = get(job["assignment"]).grader().GRADER
    os.environ.update(grader.env)
    if grader.setup is not None:
        grader.setup()
    GUARD.arm(grader.forbidden)
    if sys.platform.startswith("linux") and grader.memory_limit is not None:
        _limit_memory(grader.memory_limit)
    try:
        student = _load_submission(job["submission"])
    except BaseException as e:  # SyntaxError (its text names the file and line), ImportError, sys.exit, ...
        send(event="load_error", output=f"your file could not be loaded: {type(e).__name__}: {e}; "
             f"fix it so that `python {Path(job['submission']).name}` runs, then check again")
        return 0
    ctx = Context(student, job["seed"], job["examples"])
    tests = {t.name: t for t in grader.tests}
    for name in job["tests"]:
        test = tests[name]
        send(event="start", test=name)
        ctx.inputs, ctx.notes = {}, []
        try:
            test.function(ctx)
            score, output = test.points, "passed" + "".join(f"\n  {n}" for n in ctx.notes)
        except Fail as e:
            score, output = 0, str(e)
        except MemoryError:
            score, output = 0, "ran out of memory (the grader's limit): is something far larger than it should be?"
        except BaseException as e:  # a bug in the grader, or something the student's code set off outside a call
            score, output = 0, f"{type(e).__name__}: {e}"
        send(event="result", test=name, score=score, max_score=test.points, output=output)
    return 0


