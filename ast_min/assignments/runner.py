"""Run a grader on a submission in a separate, limited process, so no student bug can stop the grading.

The command's process (`grade`) starts a grading process (`python -m ast_min.assignments.runner`)
that loads the grader and then the student's file, and runs the tests one after another, reporting
each start and result as a JSON line on a pipe of its own (the student's prints go to a log). The
grading process has an address-space limit (`resource.setrlimit(RLIMIT_AS)`), so a huge allocation
fails inside it as an error for that test; each test has a time limit, enforced from outside: a test
that runs past it, or a process that dies (a crash, `os._exit`), is marked failed with the reason,
and a fresh grading process carries on from the next test. `sys.exit` and every exception in the
student's code are caught where they happen, as that test's failure.

Shape of a report (also what `ast-min assignment check --json` prints):
    {"assignment", "score", "max_score", "tests": [{"name", "score", "max_score", "output"}]}
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
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


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # The grading process must import this ast_min whatever its working directory.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")  # one thread: grading time does not depend on the machine's load
    env.update(extra)
    return env


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
        raise FileNotFoundError(f"no submission at {path}: give the student's {name}.py or the folder holding it")
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


def _run_child(name, path, seed, max_examples, pending, limits, grader, workdir) -> list[TestResult]:
    """Run the pending tests in one grading process; return the results it produced before finishing or failing."""
    read_fd, write_fd = os.pipe()
    log = open(os.path.join(workdir, "log.txt"), "w+")
    job = {"assignment": name, "submission": str(path.resolve()), "seed": seed, "examples": max_examples,
           "tests": pending, "fd": write_fd}
    process = subprocess.Popen(
        [sys.executable, "-m", "ast_min.assignments.runner", json.dumps(job)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
        cwd=workdir, env=_child_env(grader.env),
    )
    os.close(write_fd)
    results, current, buffer = [], None, b""
    deadline = time.monotonic() + LOAD_TIME_LIMIT
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            events = selector.select(timeout=max(remaining, 0)) if remaining > 0 else []
            if not events:  # time is up: for the current test, or for loading the file
                process.kill()
                process.wait()
                if current is None:
                    return _all_failed(pending, limits, f"loading your file took more than {LOAD_TIME_LIMIT:.0f} s "
                                       "(is there a long computation or an endless loop outside the functions?)")
                limit = limits[current].time_limit
                results.append(TestResult(current, 0, limits[current].points,
                                          f"time limit: stopped after {limit:g} s (an endless loop, or far too slow)"))
                return results
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:  # the process ended
                process.wait()
                if current is None and not results and len(pending) > 0:
                    if process.returncode == 0:
                        return results  # nothing left to do
                    return _all_failed(pending, limits, "the grading process died while loading your file "
                                       f"(exit status {process.returncode}){_tail(log)}")
                if current is not None:
                    results.append(TestResult(current, 0, limits[current].points,
                                              f"the grading process died during this test (exit status "
                                              f"{process.returncode}: a crash, os._exit or the memory limit){_tail(log)}"))
                return results
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                event = json.loads(line)
                if event["event"] == "load_error":
                    process.wait()
                    return _all_failed(pending, limits, event["output"])
                if event["event"] == "start":
                    current = event["test"]
                    deadline = time.monotonic() + limits[current].time_limit
                elif event["event"] == "result":
                    results.append(TestResult(event["test"], event["score"], event["max_score"], event["output"]))
                    current = None
                    deadline = time.monotonic() + LOAD_TIME_LIMIT
    finally:
        selector.close()
        os.close(read_fd)
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def _all_failed(tests, limits, message) -> list[TestResult]:
    return [TestResult(t, 0, limits[t].points, message) for t in tests]


def _tail(log, lines: int = 6) -> str:
    log.flush()
    log.seek(0)
    text = log.read().strip().splitlines()[-lines:]
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


def child_main(job: dict) -> int:
    out = os.fdopen(job["fd"], "w", buffering=1)

    def send(**event):
        out.write(json.dumps(event) + "\n")

    import torch

    from ast_min.assignments.grading import GUARD, Context, Fail

    torch.set_num_threads(1)
    grader = get(job["assignment"]).grader().GRADER
    if grader.setup is not None:
        grader.setup()
    GUARD.arm(grader.forbidden)
    if sys.platform.startswith("linux"):
        _limit_memory(grader.memory_limit)
    try:
        student = _load_submission(job["submission"])
    except BaseException as e:  # SyntaxError, ImportError, sys.exit, anything at the top level
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else ""
        send(event="load_error", output=f"your file could not be loaded: {type(e).__name__}: {e}{where}; "
             "fix it so that `python NAME.py` runs, then check again")
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


if __name__ == "__main__":
    sys.exit(child_main(json.loads(sys.argv[1])))
