"""Measure how many automatically derived wrong answers each grader catches, and how many it names.

The derived wrong answers of an assignment are the one-place edits of its instructor source that
the diagnosis itself tries (`diagnosis.source_variants`: a reduction over another axis, a transpose
left out, a factor missing or doubled, an off-by-one, two arguments swapped, ..., in the solution
blocks of every graded function the grader diagnoses). Each is written out as a submission and
graded as a student's file is, through `runner.grade`; then:

- caught: it loses points (an edit that changes nothing on any input the grader draws is not);
- named: a failing test's hint names a mistake that reproduces it: exactly this edit, another edit
  of the same class, a known (hand-written) mistake, or a derived one of another class (another
  edit with the same outputs);
- caught by an error: it loses points because the function raises (or hangs, or crashes), and the
  message quotes the error and the line of the file: no comparison, so nothing to name;
- caught, unnamed: it loses points with a counterexample but no hint.

    python tools/derived_mistakes.py                          # every assignment, 40 sampled from each
    python tools/derived_mistakes.py --sample 0               # every derived wrong answer (hours)
    python tools/derived_mistakes.py --assignments mel flash --sample 20 --seed 1

It prints Markdown tables headed by the date, the machine and the command (docs/TEACHING.md shows
one run). The tests that only train (`finetune`'s head and training loop) are left out: their
verdicts are losses and accuracies, not comparisons that a diagnosis can name.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# tests whose verdict is not a comparison: left out of the measurement
SKIP_TESTS = {"finetune": ("new_head:", "train:"), "triton": ("timing",)}


def diagnosed_functions(name: str) -> list[str]:
    """The graded functions whose comparisons carry a diagnosis.Call (the others are judged otherwise)."""
    from ast_min.assignments import get

    grader = (ROOT / "ast_min" / "assignments" / "graders" / f"{name}.py").read_text()
    return [f for f in get(name).functions if re.search(rf'Call\(\s*"{name}",\s*"{f}"', grader)]


def derived(name: str):
    from ast_min.assignments import diagnosis

    seen = {}
    for function in diagnosed_functions(name):
        for variant in diagnosis.all_source_variants(name, function):
            seen.setdefault(variant.how, variant)
    return list(seen.values())


def outcome(variant, report) -> str:
    failed = [t for t in report.tests if t.score < t.max_score]
    if not failed:
        return "not caught"
    hints = [line for t in failed for line in t.output.splitlines() if line.strip().startswith("hint (")]
    if any(variant.text in h for h in hints):
        return "exactly"
    if any(f"hint (derived: {variant.kind})" in h for h in hints):
        return "same class"
    if any(not h.strip().startswith("hint (derived:") for h in hints):
        return "known mistake"
    if hints:
        return "other class"
    if any("is wrong" in t.output or "should have shape" in t.output for t in failed):
        return "unnamed"
    return "error"


def measure(name: str, sample: int, seed: int, examples: int, log) -> Counter:
    from ast_min.assignments import diagnosis, get
    from ast_min.assignments.runner import grade

    assignment = get(name)
    variants = derived(name)
    total = len(variants)
    if sample and sample < total:
        variants = random.Random(seed).sample(variants, sample)
    tests = [t.name for t in assignment.grader().GRADER.tests
             if not any(t.name.startswith(p) for p in SKIP_TESTS.get(name, ()))]
    counts = Counter(total=total)
    by_class: Counter = Counter()
    source = assignment.source.read_text()
    with tempfile.TemporaryDirectory(prefix="ast-min-derived-") as folder:
        path = Path(folder) / assignment.filename
        for n, variant in enumerate(variants, 1):
            path.write_text(diagnosis.apply_source(source, *variant.how[1:]))
            started = time.perf_counter()
            result = outcome(variant, grade(name, path, seed=seed, max_examples=examples, only=tests))
            counts["graded"] += 1
            counts[result] += 1
            by_class[(variant.kind, "graded")] += 1
            by_class[(variant.kind, result)] += 1
            log(f"{name} {n}/{len(variants)} {result:<13} {time.perf_counter() - started:5.1f}s  {variant.text}")
    counts.update({("class",) + k: v for k, v in by_class.items()})
    return counts


NAMED = ("exactly", "same class", "known mistake", "other class")


def table(results: dict[str, Counter]) -> str:
    rows = ["| assignment | derived | graded | caught | named | exactly this edit | same class | known mistake "
            "| other class | by an error | counterexample, unnamed |", "| --- | " + " | ".join(["---:"] * 10) + " |"]
    for name, c in results.items():
        caught = c["graded"] - c["not caught"]
        named = sum(c[k] for k in NAMED)
        rows.append(f"| `{name}` | {c['total']} | {c['graded']} | {caught} | {named} | {c['exactly']} | "
                    f"{c['same class']} | {c['known mistake']} | {c['other class']} | {c['error']} | {c['unnamed']} |")
    kinds = Counter()
    for c in results.values():
        for key, v in c.items():
            if isinstance(key, tuple) and key[0] == "class":
                kinds[key[1:]] += v
    rows += ["", "| class | graded | caught | named | by an error | counterexample, unnamed |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    from ast_min.assignments.diagnosis import KINDS

    for kind in KINDS:
        graded = kinds[(kind, "graded")]
        if graded:
            caught = graded - kinds[(kind, "not caught")]
            named = sum(kinds[(kind, k)] for k in NAMED)
            rows.append(f"| {kind} | {graded} | {caught} | {named} | {kinds[(kind, 'error')]} | "
                        f"{kinds[(kind, 'unnamed')]} |")
    return "\n".join(rows)


def main() -> int:
    from ast_min.assignments import ASSIGNMENTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS), choices=list(ASSIGNMENTS))
    parser.add_argument("--sample", type=int, default=40, help="derived wrong answers graded per assignment (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="draws the sample and the grading's property-test cases")
    parser.add_argument("--examples", type=int, default=8, help="hypothesis examples per property test")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.time()
    results = {name: measure(name, args.sample, args.seed, args.examples, log) for name in args.assignments}
    command = "python tools/derived_mistakes.py " + " ".join(sys.argv[1:])
    print(f"Measured {datetime.date.today().isoformat()} on {platform.machine()} Linux, {os.cpu_count()} cores "
          f"(Python {platform.python_version()}); `{command.strip()}`, {args.examples} examples per property, "
          f"{time.time() - started:.0f} s in all.\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
