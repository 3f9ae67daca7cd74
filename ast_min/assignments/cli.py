"""`ast-min assignment`: list, start and check assignments (students); grade and export them (instructors).

    ast-min assignment list
    ast-min assignment start NAME [--dir DIR]
    ast-min assignment check NAME [--dir DIR] [--json]
    ast-min assignment grade NAME SUBMISSION... [--seed SECRET] [--csv FILE] [--gradescope FILE] [--similarity]
    ast-min assignment similar NAME SUBMISSION... [--json] [--threshold T]   (instructors: the copy check)
    ast-min assignment autograder NAME [--dir DIR] [--seed SECRET]
    ast-min assignment solution NAME [--dir DIR]      (instructors: the source, solutions included)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shlex
import stat
import sys
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
    grade = sub.add_parser("grade", help="grade students' submissions, with hidden cases drawn from --seed")
    grade.add_argument("name", metavar="NAME")
    grade.add_argument("submissions", metavar="SUBMISSION", nargs="+",
                       help="a student's NAME.py (triton: triton_kernels.py), or a folder holding it")
    grade.add_argument("--seed", default="0", help="a secret: draws property-test cases students never ran")
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
    bundle = sub.add_parser("autograder", help="write a Gradescope autograder bundle (setup.sh, run_autograder)")
    bundle.add_argument("name", metavar="NAME")
    bundle.add_argument("--dir", default=".", help="folder to write the bundle in (default: the current folder)")
    bundle.add_argument("--seed", default="0", help="the secret for hidden cases, stored in the bundle")
    bundle.add_argument("--spec", default="ast-min",
                        help="what setup.sh pip-installs: the ast-min your class uses (a wheel's URL, "
                             "git+https://...@COMMIT); default: ast-min")
    solution = sub.add_parser("solution", help="write the instructor source of NAME (solutions included)")
    solution.add_argument("name", metavar="NAME")
    solution.add_argument("--dir", default=".", help="folder to write NAME_solution.py in")


def seed_of(secret: str) -> int:
    """A hypothesis seed from any string: the same secret always draws the same hidden cases."""
    return int.from_bytes(hashlib.sha256(secret.encode()).digest()[:8], "little")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "start": _start, "check": _check, "grade": _grade,
            "autograder": _autograder, "solution": _solution, "similar": _similar}[args.action](args)


def _list(args) -> int:
    for a in ASSIGNMENTS.values():
        print(f"{a.name:<10} {Path(a.chapter).stem:<32} {', '.join(a.functions)}")
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
    print(f"total: {report.score:g}/{report.max_score:g}" + (" (full marks)" if report.score == report.max_score else ""))


def _check(args) -> int:
    from ast_min.assignments.runner import grade

    assignment = get(args.name)
    report = grade(assignment.name, _submission(assignment.name, args.dir))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    return 0 if report.score == report.max_score else 1


def _grade(args) -> int:
    from ast_min.assignments.runner import grade

    assignment = get(args.name)
    if args.gradescope and len(args.submissions) != 1:
        raise ValueError("--gradescope writes one results.json: give exactly one SUBMISSION")
    if args.csv and not Path(args.csv).absolute().parent.is_dir():  # checked before minutes of grading
        raise ValueError(f"--csv {args.csv}: the folder {Path(args.csv).absolute().parent} does not exist: create it first")
    # every submission found before minutes of grading, not a missing 30th after 29 graded and unsaved
    submissions = [(given, _submission(assignment.name, given)) for given in args.submissions]
    reports = []
    for given, path in submissions:
        report = grade(assignment.name, path, seed=seed_of(args.seed))
        reports.append((given, report))
        if args.json:
            print(json.dumps({"submission": given, **report.to_dict()}))
        else:
            print(f"{given}: {report.score:g}/{report.max_score:g}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["submission", "assignment", "test", "score", "max_score", "output"])
            for given, report in reports:
                for t in report.tests:
                    writer.writerow([given, assignment.name, t.name, t.score, t.max_score, t.output])
    if args.similarity:
        _print_similarity(assignment.name, submissions, None, args.json)
    if args.gradescope:
        report = reports[0][1]
        results = {
            "score": report.score,
            "execution_time": round(report.seconds, 1),
            "tests": [{"name": t.name, "score": t.score, "max_score": t.max_score, "output": t.output}
                      for t in report.tests],
        }
        Path(args.gradescope).parent.mkdir(parents=True, exist_ok=True)
        Path(args.gradescope).write_text(json.dumps(results, indent=1))
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
    sources = [(str(given), Path(path).read_text(errors="replace")) for given, path in submissions]
    pairs, problems = similarity.check(name, sources, threshold)
    for problem in problems:
        print(problem, file=sys.stderr)
    if as_json:
        print(json.dumps({"pairs": [p.to_dict() for p in pairs]}))
    else:
        print(f"copy check of {len(sources)} submission(s), with ast-min and the instructor source "
              f"(pairs scoring above {threshold:g}; lines a~b):")
        print(similarity.format_pairs(pairs))


SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
apt-get update && apt-get install -y python3 python3-pip libsndfile1
# ast-min exactly as the class installed it (`ast-min assignment autograder --spec` wrote it here):
pip3 install {spec}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: the student's files are in /autograder/submission.
set -uo pipefail
cd /autograder/source
ast-min assignment grade {name} /autograder/submission --seed "$(cat seed.txt)" \\
    --gradescope /autograder/results/results.json
"""


def _autograder(args) -> int:
    assignment = get(args.name)
    folder = Path(args.dir) / f"{assignment.name}-autograder"
    folder.mkdir(parents=True, exist_ok=True)
    setup = SETUP_SH.format(spec=shlex.quote(args.spec))
    for name, text in (("setup.sh", setup), ("run_autograder", RUN_AUTOGRADER.format(name=assignment.name))):
        path = folder / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (folder / "seed.txt").write_text(args.seed + "\n")
    print(f"wrote {folder}/ (setup.sh, run_autograder, seed.txt): zip its contents and upload the zip as the "
          f"autograder of `{assignment.name}`; setup.sh installs {args.spec!r} (change it with --spec)")
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
