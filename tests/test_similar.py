"""The copy check separates copies from independent work.

Fixtures in tests/similar/: for `flash` and `mel`, two solutions written independently of each other,
of the instructor's source and of ast-min's code (same algorithm, different hands: explicit tiles
vs FlashAttention-1's loop order; one triangle at a time vs numpy broadcasting; each scores full
marks, which the last test checks), and two copies disguised by hand (renamed, re-wrapped,
commented, independent statements swapped): one of ast-min's own code, one of a classmate's. On
top, `disguise` makes copies mechanically: every name the code binds renamed, comments added,
argument lists re-wrapped, independent assignments swapped.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import random
import subprocess
import sys
import tokenize
from importlib import import_module
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ast_min.assignments import get, similarity
from ast_min.assignments.similarity import THRESHOLD, check, fingerprint, tiles

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "similar"
INDEPENDENT = {"flash": ("flash_by_loops", "flash_keys_outer"), "mel": ("mel_per_filter", "mel_broadcast")}


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.py").read_text()


def disguise(source: str, keep: tuple[str, ...], seed: int = 0) -> str:
    """A copy as a copier makes it: every name the code binds renamed (the graded functions keep theirs),
    a comment on some lines, long argument lists wrapped one per line, the first two of any pair of
    adjacent independent assignments swapped."""
    import ast

    rng = random.Random(seed)
    tree = ast.parse(source)
    rename = sorted(similarity._bound(tree) - similarity._imported(tree) - set(keep))
    names = {n: f"{rng.choice(['my', 'the', 'tmp', 'val'])}_{i}_{rng.randrange(99)}" for i, n in enumerate(rename)}
    out, previous = [], ""
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        text = tok.string
        if tok.type == tokenize.NAME and previous != "." and text in names:
            text = names[text]
        out.append((tok.type, text))
        previous = tok.string
    renamed = tokenize.untokenize(out)
    lines = []
    for line in renamed.splitlines():
        stripped = line.lstrip()
        if "(" in line and line.count(",") >= 3 and not stripped.startswith(("def ", "@", '"', "'")) \
                and line.rstrip().endswith(")") and "lambda" not in line and "#" not in line:  # re-wrap a call
            head, _, rest = line.partition("(")
            indent = " " * (len(line) - len(stripped) + 4)
            lines.append(head + "(\n" + indent + rest.replace(", ", ",\n" + indent))
        else:
            lines.append(line + ("  # checked it myself" if stripped and rng.random() < 0.3 and not stripped.startswith(
                ('"', "'", "#")) and not line.rstrip().endswith(("\\", ",", "(")) else ""))
    return "\n".join(lines) + "\n"


def library_source(assignment: str) -> str:
    """ast-min's own functions of an assignment, pasted into one file as a copier would."""
    parts, imports = [], set()
    for dotted in similarity.LIBRARY[assignment]:
        module_name, _, name = dotted.rpartition(".")
        target = getattr(import_module(module_name), name)
        module_source = inspect.getsource(import_module(module_name))
        imports |= {line for line in module_source.splitlines() if line.startswith(("import ", "from "))
                    and "__future__" not in line}
        parts.append(inspect.getsource(target))
    return "\n".join(sorted(imports)) + "\n\n\n" + "\n\n".join(parts)


def scores(pairs) -> dict[frozenset, float]:
    return {frozenset((p.a, p.b)): p.score for p in pairs}


@pytest.mark.parametrize("assignment", sorted(INDEPENDENT))
def test_copies_are_flagged_and_independent_solutions_are_not(assignment):
    a, b = INDEPENDENT[assignment]
    keep = get(assignment).functions
    submissions = [(a, fixture(a)), (b, fixture(b)), ("copy of " + a, disguise(fixture(a), keep, 1)),
                   ("copy of ast-min", disguise(library_source(assignment), keep, 2))]
    if assignment == "flash":
        submissions += [("by hand from ast-min", fixture("flash_copied_from_ast_min")),
                        ("by hand from " + a, fixture("flash_copied_from_classmate"))]
    pairs, problems = check(assignment, submissions, threshold=-1.0)
    assert not problems, problems
    score = scores(pairs)
    flagged = [(a, "copy of " + a), ("copy of ast-min", "ast-min")]
    if assignment == "flash":
        flagged += [("by hand from ast-min", "ast-min"), (a, "by hand from " + a)]
    for x, y in flagged:
        assert score[frozenset((x, y))] > THRESHOLD, (x, y, score[frozenset((x, y))])
    for x, y in [(a, b), (a, "ast-min"), (b, "ast-min"), (a, "instructor"), (b, "instructor")]:
        assert score[frozenset((x, y))] < THRESHOLD, (x, y, score[frozenset((x, y))])
    reported = check(assignment, submissions)[0]  # the default threshold reports exactly the copies' pairs
    assert {frozenset((p.a, p.b)) for p in reported} >= {frozenset(f) for f in flagged}
    assert not {frozenset((p.a, p.b)) for p in reported} & {frozenset((a, b)), frozenset((a, "ast-min")),
                                                            frozenset((b, "ast-min"))}


def test_matches_name_the_copied_lines():
    source = fixture("flash_by_loops")
    copy = fixture("flash_copied_from_classmate")
    (pair,) = [p for p in check("flash", [("a", source), ("b", copy)])[0] if {p.a, p.b} == {"a", "b"}]
    backward_a = source.splitlines().index(next(l for l in source.splitlines() if l.startswith("def blockwise_attention_backward")))
    backward_b = copy.splitlines().index(next(l for l in copy.splitlines() if l.startswith("def blockwise_attention_backward")))
    assert any(a1 <= backward_a + 5 and a2 >= backward_a + 10 and b1 <= backward_b + 5 and b2 >= backward_b + 10
               for a1, a2, b1, b2 in pair.matches), pair.matches
    for a1, a2, b1, b2 in pair.matches:
        assert 1 <= a1 <= a2 <= len(source.splitlines()) and 1 <= b1 <= b2 <= len(copy.splitlines())


@pytest.mark.parametrize("seed", range(4))
def test_renaming_reformatting_and_reordering_leave_the_fingerprint_unchanged(seed):
    keep = get("flash").functions
    original = fingerprint(fixture("flash_keys_outer"), keep, "a").tokens
    assert fingerprint(disguise(fixture("flash_keys_outer"), keep, seed), keep, "b").tokens == original
    swapped = fixture("flash_keys_outer").replace(
        "    m = None\n    s = None\n", "    s = None\n    m = None\n")  # independent: one canonical order
    assert swapped != fixture("flash_keys_outer")
    assert fingerprint(swapped, keep, "c").tokens == original
    dependent = "def f(x):\n    y = x + 1\n    z = y * 2\n    return z\n"
    reordered = "def f(x):\n    z = y * 2\n    y = x + 1\n    return z\n"  # another program: kept apart
    assert fingerprint(dependent, ("f",), "d").tokens != fingerprint(reordered, ("f",), "e").tokens


@settings(max_examples=40, derandomize=True)
@given(st.lists(st.sampled_from("abcdefghij"), min_size=0, max_size=60),
       st.lists(st.sampled_from("abcdefghij"), min_size=similarity.K + similarity.W - 1, max_size=40),
       st.lists(st.sampled_from("abcdefghij"), min_size=0, max_size=60), st.integers(0, 30))
def test_winnowing_finds_every_shared_run_of_k_plus_w_minus_1_tokens(before, shared, after, offset):
    """Schleimer et al.'s guarantee: a run of at least K + W - 1 equal tokens shares a fingerprint, so it is tiled."""
    a = before + shared + after
    b = ["z"] * offset + shared + ["y"] * 5
    found = tiles(a, b)
    covered = {j + n_ for _, j, n in found for n_ in range(n)}
    assert set(range(offset, offset + len(shared))) <= covered, (found, offset, len(shared))


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ast_min.cli", "assignment", *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_cli_similar_prints_the_pairs_and_its_json_has_the_documented_shape(tmp_path):
    for folder, name in (("alice", "flash_by_loops"), ("bob", "flash_copied_from_classmate"),
                         ("carol", "flash_keys_outer"), ("dave", "flash_copied_from_ast_min")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "flash.py").write_text(fixture(name))
    (tmp_path / "erin").mkdir()
    (tmp_path / "erin" / "flash.py").write_text("def blockwise_attention(:\n")
    out = cli("similar", "flash", "alice", "bob", "carol", "dave", "erin", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "erin: not compared, Python cannot parse it" in out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"pairs"}
    for pair in report["pairs"]:
        assert set(pair) == {"a", "b", "score", "matches"} and 0.0 <= pair["score"] <= 1.0
        assert all(len(m) == 4 and all(isinstance(x, int) for x in m) for m in pair["matches"])
    found = [{p["a"], p["b"]} for p in report["pairs"]]
    assert found[:1] == [{"alice", "bob"}] and {"dave", "ast-min"} in found and {"carol", "ast-min"} not in found
    assert [p["score"] for p in report["pairs"]] == sorted((p["score"] for p in report["pairs"]), reverse=True)
    text = cli("similar", "flash", "alice", "bob", "--threshold", "0.9", cwd=tmp_path)
    assert text.returncode == 0 and "alice  ~  bob" in text.stdout and "lines " in text.stdout, text.stdout
    bad = cli("similar", "flash", "alice", "--threshold", "1.5", cwd=tmp_path)
    assert bad.returncode == 2 and "--threshold 1.5" in bad.stderr and "[0, 1]" in bad.stderr


def test_grade_with_similarity_adds_the_report(tmp_path):
    for folder, name in (("alice", "mel_per_filter"), ("bob", "mel_broadcast")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mel.py").write_text(fixture(name))
    (tmp_path / "mallory").mkdir()
    (tmp_path / "mallory" / "mel.py").write_text(disguise(fixture("mel_per_filter"), get("mel").functions, 5))
    out = cli("grade", "mel", "alice", "bob", "mallory", "--similarity", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "alice: 11/11" in out.stdout and "bob: 11/11" in out.stdout  # the independent solutions are solutions
    assert "copy check of 3 submission(s)" in out.stdout and "alice  ~  mallory" in out.stdout, out.stdout
    assert "bob  ~" not in out.stdout and "~  bob" not in out.stdout
