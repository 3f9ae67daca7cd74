"""`ast-min assignment`: list, start and check assignments (students); grade and export them (instructors).

    ast-min assignment list
    ast-min assignment start NAME [--dir DIR]
    ast-min assignment check NAME [--dir DIR] [--json]
    ast-min assignment grade NAME SUBMISSION... [--seed-file FILE] [--csv FILE] [--gradescope FILE] [--json] [--similarity]
    ast-min assignment similar NAME SUBMISSION... [--json] [--threshold T]   (instructors: the copy check)
    ast-min assignment autograder NAME --seed-file FILE [--dir DIR] [--overwrite] [--wheel FILE]
    ast-min assignment solution NAME [--dir DIR]      (instructors: the source, solutions included)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from ast_min.assignments import ASSIGNMENTS, get
from ast_min.assignments.starter import make_starter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the assignments, one a line, with their chapter and graded functions")
    start = sub.add_parser("start", help="write the starter NAME.py (never overwrites)")
    start.add_argument("name", metavar="NAME")
    start.add_argument("--dir", default=".", help="folder to write NAME.py in (default: the current folder)")
    check = sub.add_parser("check", help="grade your DIR/NAME.py; exit status 0 only at full marks")
    check.add_argument("name", metavar="NAME")
    check.add_argument("--dir", default=".", help="folder holding NAME.py (default: the current folder)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    grade = sub.add_parser("grade", help="grade students' submissions, with hidden cases drawn from a secret")
    grade.add_argument("name", metavar="NAME")
    grade.add_argument("submissions", metavar="SUBMISSION", nargs="+",
                       help="a student's NAME.py (triton: triton_kernels.py), or a folder holding it")
    grade.add_argument("--seed-file", metavar="FILE",
                       help="a file (readable by you only) holding the secret that draws property-test cases "
                            "students never ran")
    grade.add_argument("--seed", nargs="?", action=_Gone, help=argparse.SUPPRESS, message=SEED_GONE)
    grade.add_argument("--csv", help="write one row per submission and test to this file")
    grade.add_argument("--gradescope", help="write Gradescope's results.json (one submission) to this file")
    grade.add_argument("--json", action="store_true", help="print one JSON object per submission")
    grade.add_argument("--similarity", action="store_true",
                       help="then run the copy check on the submissions, as `similar` does (default threshold)")
    similar = sub.add_parser("similar", help="the copy check: pairs of submissions, and each against ast-min's own "
                             "code and the instructor source, that share code after renaming and reformatting")
    similar.add_argument("name", metavar="NAME")
    similar.add_argument("submissions", metavar="SUBMISSION", nargs="+",
                         help="a student's NAME.py (triton: triton_kernels.py), or a folder holding it")
    similar.add_argument("--threshold", type=float, default=None,
                         help="report pairs scoring above this, in [0, 1] (default: similarity.THRESHOLD, 0.5)")
    similar.add_argument("--json", action="store_true",
                         help='print {"pairs": [{"a", "b", "score", "matches": [[a_first, a_last, b_first, b_last]]}]}')
    bundle = sub.add_parser("autograder", help="write a Gradescope autograder bundle (setup.sh, run_autograder, "
                                               "a wheel of this ast-min)")
    bundle.add_argument("name", metavar="NAME")
    bundle.add_argument("--dir", default=".", help="folder to write NAME-autograder/ in (default: the current folder)")
    bundle.add_argument("--seed-file", metavar="FILE", help="the file holding the secret for hidden cases (copied into "
                                                            "the bundle, readable by root only once set up)")
    bundle.add_argument("--seed", nargs="?", action=_Gone, help=argparse.SUPPRESS, message=SEED_GONE)
    bundle.add_argument("--spec", nargs="?", action=_Gone, help=argparse.SUPPRESS, message=SPEC_GONE)
    bundle.add_argument("--overwrite", action="store_true", help="replace an existing NAME-autograder/")
    bundle.add_argument("--wheel", metavar="FILE", help="the ast-min wheel to ship (default: built from the folder "
                                                        "this ast-min was installed from)")
    solution = sub.add_parser("solution", help="write the instructor source of NAME (solutions included)")
    solution.add_argument("name", metavar="NAME")
    solution.add_argument("--dir", default=".", help="folder to write NAME_solution.py in")


def seed_of(secret: str) -> int:
    """A hypothesis seed from any string: the same secret always draws the same hidden cases."""
    return int.from_bytes(hashlib.sha256(secret.encode()).digest()[:8], "little")


def read_secret(path: str | os.PathLike) -> str:
    """The secret in a seed file (one trailing newline dropped): any text, "-x" included."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 16)
    except FileNotFoundError:
        raise FileNotFoundError(f"--seed-file {path}: no such file; write the secret to it (readable by you only: "
                                "chmod 600)") from None
    secret = text[:-1] if text.endswith("\n") else text
    if not secret:
        raise ValueError(f"--seed-file {path} is empty: write the secret to it")
    return secret


SEED_GONE = ("is gone: a secret on the command line can be read by every process on the machine "
             "(/proc/PID/cmdline); write it to a file only you can read (chmod 600) and give --seed-file FILE")
SPEC_GONE = "is gone: the bundle carries a wheel of the ast-min installed here (give another with --wheel FILE)"


class _Gone(argparse.Action):
    """An option that was removed: refused as it is parsed, with the reason and what replaces it.

    nargs="?" so that a value that looks like an option (`--seed -x`) still reaches this message."""

    def __init__(self, *args, message: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.message = message

    def __call__(self, parser, namespace, values, option_string=None):
        raise argparse.ArgumentError(self, self.message)


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "start": _start, "check": _check, "grade": _grade,
            "autograder": _autograder, "solution": _solution, "similar": _similar}[args.action](args)


def _list(args) -> int:
    width = max(len(a.name) for a in ASSIGNMENTS.values())
    for a in ASSIGNMENTS.values():
        print(f"{a.name:<{width}} {Path(a.chapter).stem:<32} {', '.join(a.functions)}")
    return 0


def _start(args) -> int:
    assignment = get(args.name)
    folder = Path(args.dir)
    target = folder / assignment.filename
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _write_new(target, make_starter(assignment.source.read_text(), assignment.name))
    except FileExistsError:
        raise FileExistsError_(
            f"{target} already exists, and start never overwrites your work: check it with "
            f"`ast-min assignment check {assignment.name} --dir {folder}`, or to start afresh move it away "
            f"(e.g. mv {target} {target}.old) and run start again"
        ) from None
    print(f"{assignment.name}: {assignment.summary} (taught in {assignment.chapter})")
    print(f"wrote {target}: open it in an editor, or as a notebook in JupyterLab with jupytext (Open With > Notebook);")
    print(f"write the functions that raise NotImplementedError, then run: ast-min assignment check {assignment.name}"
          + ("" if str(folder) == "." else f" --dir {folder}"))
    return 0


class FileExistsError_(ValueError):
    """Printed as one line by the CLI (it catches ValueError), like ast-min's other refusals."""


def _write_new(path: Path, text: str) -> None:
    """Create `path` and write `text`; FileExistsError if anything is there, even a dangling link.

    Exclusive creation (mode "x") rather than a check before writing: nothing between the check and
    the write can put a file there, and a link is never written through.
    """
    with open(path, "x") as f:
        f.write(text)


def _submission(name: str, given: str | os.PathLike) -> Path:
    filename = get(name).filename
    path = Path(given)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"no {path}: start the assignment with `ast-min assignment start {name}` "
            "(or give --dir, the folder holding your file)" if path.name == filename else f"no file {path}"
        )
    return path


def _print_report(report) -> None:
    for t in report.tests:
        mark = "ok  " if t.score == t.max_score else "FAIL"
        print(f"{mark} {t.score:g}/{t.max_score:g}  {t.name}")
        if t.score != t.max_score or t.output != "passed":
            for line in t.output.splitlines():
                print(f"{'':<{12}}{line}")
    print(f"total: {report.score:g}/{report.max_score:g}" + (" (full marks)" if report.full_marks else ""))


def _check(args) -> int:
    from ast_min.assignments.runner import grade

    assignment = get(args.name)
    report = grade(assignment.name, _submission(assignment.name, args.dir))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    return 0 if report.full_marks else 1


def _grade(args) -> int:
    from ast_min.assignments import runner, sandbox

    assignment = get(args.name)
    if args.gradescope and len(args.submissions) != 1:
        raise ValueError("--gradescope writes one results.json: give exactly one SUBMISSION")
    for option, target in (("--csv", args.csv), ("--gradescope", args.gradescope)):
        if target and Path(target).is_dir():
            raise ValueError(f"{option} {target} is a folder: give a file name")
    if args.csv and not Path(args.csv).absolute().parent.is_dir():  # checked before minutes of grading
        raise ValueError(f"--csv {args.csv}: the folder {Path(args.csv).absolute().parent} does not exist: create it first")
    # every submission found before minutes of grading, not a missing 30th after 29 graded and unsaved
    submissions = [(given, _submission(assignment.name, given)) for given in args.submissions]
    seed = seed_of(read_secret(args.seed_file) if args.seed_file else "0")
    for note in _isolation_notes(args.seed_file, [path for _, path in submissions]):
        print(f"note: {note}", file=sys.stderr)
    reports, interrupted = [], False
    base = sandbox.make_base()
    try:
        # the instructor's solution first, in the same sandbox with the same seed: it must score full marks,
        # and its times set every limit
        budgets = runner.calibrate(assignment.name, seed=seed, base=base, isolate=True)
        for given, path in submissions:
            try:
                report = runner.grade(assignment.name, path, seed=seed, budgets=budgets, base=base, isolate=True)
            except (ValueError, OSError, RuntimeError) as e:  # this submission only: the others are still graded
                report = _not_graded(assignment.name, path, f"{type(e).__name__}: {e}")
            reports.append((given, report))
            if args.json:
                print(json.dumps({"submission": given, **report.to_dict(), "seconds": round(report.seconds, 1)}))
            else:
                print(f"{given}: {report.score:g}/{report.max_score:g}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sandbox.remove_base(base)
    # written once grading is over, by this process alone: nothing a submission ran is left to touch them
    if args.csv:
        _write_atomically(Path(args.csv), _csv_text(assignment.name, reports))
    if args.gradescope and reports:
        _write_atomically(Path(args.gradescope), _gradescope_text(reports[0][1]))
    if args.similarity and not interrupted:
        _print_similarity(assignment.name, submissions, None, args.json)
    if interrupted:
        print(f"interrupted: {len(reports)} of {len(submissions)} submissions graded and written", file=sys.stderr)
        return 130
    return 0


def _similar(args) -> int:
    assignment = get(args.name)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold {args.threshold:g}: a similarity score is in [0, 1]; give a value in that range")
    submissions = [(given, _submission(assignment.name, given)) for given in args.submissions]
    _print_similarity(assignment.name, submissions, args.threshold, args.json)
    return 0


def _print_similarity(name: str, submissions, threshold: float | None, as_json: bool) -> None:
    from ast_min.assignments import similarity

    threshold = similarity.THRESHOLD if threshold is None else threshold
    from ast_min.assignments.sandbox import read_submission

    # read as text and tokenized, never run; no link followed, and no file larger than a submission may be
    sources = [(str(given), read_submission(path).decode("utf-8", errors="replace")) for given, path in submissions]
    pairs, problems = similarity.check(name, sources, threshold)
    for problem in problems:
        print(problem, file=sys.stderr)
    if as_json:
        print(json.dumps({"pairs": [p.to_dict() for p in pairs]}))
    else:
        print(f"copy check of {len(sources)} submission(s), with ast-min and the instructor source "
              f"(pairs scoring above {threshold:g}; lines a~b):")
        print(similarity.format_pairs(pairs))


def _isolation_notes(seed_file: str | None, submissions: list[Path]) -> list[str]:
    """What the instructor should know about how the submissions are kept apart here (printed once)."""
    from ast_min.assignments import sandbox

    kind = sandbox.isolation()
    if kind == "none":
        return ["not running as root, so the submissions run with your own rights (they can read and change your "
                "files, the seed file included); to grade code you do not trust, run grade as root, or use the "
                "autograder bundle (ast-min assignment autograder) in a container"]
    if kind == "bubblewrap":
        return []
    if seed_file and sandbox.others_can_read(seed_file):
        raise ValueError(f"--seed-file {seed_file} is readable by every user, so the submissions could read the "
                         f"secret: chmod 600 {seed_file}")
    notes = [f"bubblewrap is not usable here ({sandbox.bwrap_problem()}): each submission runs as a fresh user id "
             "with hard limits, and can read every file that all users may read"]
    for folder in sandbox.library_folders():
        if sandbox.others_can_read(folder):
            notes.append(f"ast-min's own files ({folder}) are readable by every user, so a submission could run the "
                         f"library's code instead of its own: chmod -R go-rwx {folder} (the autograder bundle's setup "
                         "does), or install bubblewrap")
    if len(submissions) > 1:
        for path in submissions:
            if sandbox.others_can_read(path):
                notes.append(f"{path} is readable by every user, so the other submissions graded with it could read "
                             "it: keep the submissions in a folder only you can read (chmod 700)")
    return notes


def _not_graded(name: str, path: Path, reason: str):
    """A report of zeros for a submission that could not be graded at all, with the reason on every test."""
    from ast_min.assignments.runner import Report, TestResult

    grader = get(name).grader().GRADER
    return Report(name, str(path), [TestResult(t.name, 0, t.points, f"not graded: {reason}"[:2000]) for t in grader.tests])


def _csv_text(name: str, reports) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["submission", "assignment", "test", "score", "max_score", "output"])
    for given, report in reports:
        for t in report.tests:
            writer.writerow([given, name, t.name, t.score, t.max_score, t.output])
    return out.getvalue()


def _gradescope_text(report) -> str:
    """Gradescope's results.json: scores are this process's own numbers, texts JSON-escaped."""
    results = {
        "score": float(report.score),
        "execution_time": round(report.seconds, 1),
        "tests": [{"name": t.name, "score": float(t.score), "max_score": float(t.max_score), "output": t.output}
                  for t in report.tests],
    }
    return json.dumps(results, indent=1, allow_nan=False) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` all-or-nothing: a fresh temporary file in the same folder renamed over it.

    The rename replaces whatever is at `path`, a symbolic link included, and never writes through it.
    """
    folder = path.absolute().parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _autograder(args) -> int:
    from ast_min.assignments.autograder import write_bundle

    assignment = get(args.name)
    if not args.seed_file:
        raise ValueError("give --seed-file FILE: the secret that draws the hidden cases (a file readable by you only)")
    secret = read_secret(args.seed_file)
    folder = Path(args.dir) / f"{assignment.name}-autograder"
    try:
        wheel = write_bundle(assignment.name, folder, secret, overwrite=args.overwrite, wheel=args.wheel)
    except FileExistsError as e:
        raise FileExistsError_(str(e)) from None
    print(f"wrote {folder}/ (setup.sh, run_autograder, seed, requirements.txt, wheels/{wheel.name}): zip its contents "
          f"and upload the zip as the autograder of `{assignment.name}` (docs/TEACHING.md, \"The autograder bundle\"); "
          "the seed in it is your secret: keep the zip private")
    return 0


def _solution(args) -> int:
    assignment = get(args.name)
    target = Path(args.dir) / f"{assignment.name}_solution.py"
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    try:
        _write_new(target, assignment.source.read_text())
    except FileExistsError:
        raise FileExistsError_(f"{target} already exists: move it away first") from None
    print(f"wrote {target}: the instructor source, solutions included; do not hand it out")
    return 0


if __name__ == "__main__":  # python -m ast_min.assignments.cli ...
    parser = argparse.ArgumentParser(prog="ast-min assignment")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
