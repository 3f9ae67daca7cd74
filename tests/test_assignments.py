"""The assignments grade what they claim: solutions get full marks, starters zero, known mistakes their hint.

Each proof grades a real file through the same worker, protocol and limits that students' files meet
(as `check` does: run as the caller; tests/test_grading_attacks.py grades as `grade` does, as root
behind a fresh user id).
To keep CI short, property tests draw few examples here (EXAMPLES), and each known mistake is
graded only on the test named to catch it (its hint must appear there); the full grader runs once
per assignment, on the instructor's solution, and that run must fit the assignment's budget.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ast_min.assignments import ASSIGNMENTS, get
from ast_min.assignments.runner import grade
from ast_min.assignments.starter import make_starter, solution_lines

EXAMPLES = 8  # hypothesis examples per property test in CI (students and instructors get 30)
# Seconds the whole grader may take on the reference solution on a 2-core machine, with EXAMPLES examples.
# Measured figures are in docs/TEACHING.md; these budgets leave room for a loaded CI machine.
BUDGET = {"framing": 60, "mel": 60, "patches": 60, "attention": 60, "flash": 90, "triton": 240, "finetune": 240}
NAMES = sorted(ASSIGNMENTS)


def mutated(name: str, old: str, new: str) -> str:
    source = get(name).source.read_text()
    assert source.count(old) == 1, f"the mutation's text occurs {source.count(old)} times in {name}'s source, not once"
    return source.replace(old, new)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / get(name).filename
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_scores_full_marks_within_budget(name):
    report = grade(name, get(name).source, max_examples=EXAMPLES)
    failed = [f"{t.name}: {t.output}" for t in report.tests if t.score != t.max_score]
    assert not failed, "\n".join(failed)
    assert report.max_score > 0 and report.score == report.max_score
    assert report.seconds < BUDGET[name], f"{name} took {report.seconds:.1f} s, over its {BUDGET[name]} s budget"


@pytest.mark.parametrize("name", NAMES)
def test_starter_scores_zero_with_a_friendly_message(name, tmp_path):
    starter = make_starter(get(name).source.read_text(), name)
    report = grade(name, write(tmp_path, name, starter), max_examples=EXAMPLES)
    assert report.score == 0, [(t.name, t.score) for t in report.tests if t.score]
    for t in report.tests:
        if t.max_score:  # a 0-point report (timing) has nothing to say about the starter
            assert "is not written yet" in t.output and f"ast-min assignment check {name}" in t.output, t.output


@pytest.mark.parametrize("name", NAMES)
def test_starter_contains_no_solution_line(name):
    source = get(name).source.read_text()
    starter = make_starter(source, name)
    starter_lines = {line.strip() for line in starter.splitlines()}
    hidden = solution_lines(source)
    assert hidden, f"{name}'s source has no solution block"
    leaked = [line for line in hidden if line in starter_lines]
    assert not leaked, f"solution lines in {name}'s starter: {leaked}"
    assert "### BEGIN SOLUTION" not in starter and "### END SOLUTION" not in starter
    assert starter.count("raise NotImplementedError") == source.count("### BEGIN SOLUTION")
    for function in get(name).functions:  # every graded function is stubbed, not deleted
        assert f"def {function}(" in starter


MISTAKES = [(name, m) for name in NAMES for m in get(name).grader().MISTAKES]


def test_every_assignment_knows_three_mistakes():
    for name in NAMES:
        assert len(get(name).grader().MISTAKES) >= 3, name


@pytest.mark.parametrize("name, mistake", MISTAKES, ids=[f"{n}-{m.name}" for n, m in MISTAKES])
def test_known_mistake_fails_and_is_named(name, mistake, tmp_path):
    submission = write(tmp_path, name, mutated(name, *mistake.mutation))
    report = grade(name, submission, max_examples=EXAMPLES, only=[mistake.test])
    (result,) = report.tests
    assert result.score == 0, f"{mistake.name} passed {result.name}"
    assert f"hint ({mistake.name})" in result.output, result.output
    # the evidence beside the hint: where the output differs (or, for the fresh head, the measured loss)
    evidence = ("first mismatch", "should have shape", "the loss at initialisation is")
    assert any(e in result.output for e in evidence), result.output


# ---- the grading process survives what students' code does ---------------------------------------------

FRAMING_TESTS = ["frame_signal: number of frames (snip_edges) and their samples", "hanning_window: shape and dtype"]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("while True:\n        pass", "time limit"),
        ("import os\n    os._exit(3)", "grading process died"),
        ("import sys\n    sys.exit(1)", "sys.exit"),
        ("return torch.empty(50 * 2**30, dtype=torch.uint8)", "memory"),
        ("from ast_min.features import frame_signal as f\n    return f(waveform, frame_length, frame_shift)",
         "honour code"),
    ],
    ids=["endless-loop", "crash", "sys-exit", "50GB", "honour-code"],
)
def test_a_broken_function_costs_only_its_own_tests(body, expected, tmp_path):
    source = get("framing").source.read_text()
    reference = "    if waveform.shape[-1] < frame_length:\n        return waveform.new_zeros(0, frame_length)\n"
    assert source.count(reference) == 1
    broken = source.replace(reference, f"    {body}\n" + reference)
    report = grade("framing", write(tmp_path, "framing", broken), max_examples=EXAMPLES, only=FRAMING_TESTS,
                   time_limit=8)
    frames, window = report.tests
    assert frames.score == 0 and expected in frames.output, frames.output
    assert window.score == window.max_score, window.output  # the other function is still graded


def test_calling_torch_fused_attention_is_refused_by_the_honour_code(tmp_path):
    from ast_min.assignments.graders.attention import T_WORKED

    cheat = mutated("attention", "    attended = scores.softmax(dim=-1) @ v  # (B, H, L, Dh)\n",
                    "    attended = F.scaled_dot_product_attention(q, k, v)\n")
    (result,) = grade("attention", write(tmp_path, "attention", cheat), only=[T_WORKED]).tests
    assert result.score == 0 and "honour code" in result.output, result.output
    assert "scaled_dot_product_attention" in result.output, result.output


def test_a_file_that_does_not_import_fails_every_test_with_the_reason(tmp_path):
    report = grade("framing", write(tmp_path, "framing", "import no_such_module_here\n"), only=FRAMING_TESTS)
    assert report.score == 0
    for t in report.tests:
        assert "could not be loaded" in t.output and "no_such_module_here" in t.output, t.output
        assert "`python framing.py` runs" in t.output, t.output


def test_an_error_names_the_line_of_the_students_file_not_the_librarys(tmp_path):
    import importlib.util

    import torch

    from ast_min.assignments.grading import Context, Fail

    path = tmp_path / "framing.py"
    path.write_text("import torch\n\n\ndef f(x):\n    return torch.nn.functional.layer_norm(x, (5,))\n")
    spec = importlib.util.spec_from_file_location("student_here", path)
    student = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(student)
    with pytest.raises(Fail) as failed:  # layer_norm raises below a frame of torch's own functional.py
        Context(student, 0, 1).call("f", torch.zeros(2, 3))
    assert "(line 5 of your file: return torch.nn.functional.layer_norm(x, (5,)))" in str(failed.value), failed.value


def test_a_wrong_return_type_inside_a_property_is_a_failed_property():
    import types

    from ast_min.assignments.grading import Context, Fail
    from ast_min.assignments.graders import patches

    student = types.SimpleNamespace(grid_size=lambda *args: 3)  # not a pair
    with pytest.raises(Fail) as failed:
        patches.grid(Context(student, 0, EXAMPLES))
    assert str(failed.value).startswith("property failed on the smallest counterexample"), failed.value
    assert "grid_size should return a pair" in str(failed.value), failed.value


def test_grading_is_deterministic_and_shows_the_shrunk_counterexample(tmp_path):
    # A window that is right only for even lengths: whether a draw catches it depends on the seed,
    # and the counterexample shown is always the smallest odd length hypothesis shrinks to.
    wrong = mutated("framing", "return 0.5 - 0.5 * torch.cos(2 * torch.pi * n / (length - 1))",
                    "return 0.5 - 0.5 * torch.cos(2 * torch.pi * n / (length - 1 + length % 2 * 1e-3))")
    path = write(tmp_path, "framing", wrong)
    test = ["hanning_window: Kaldi's symmetric window for any length"]
    first = grade("framing", path, seed=1, only=test, max_examples=EXAMPLES).tests[0]
    again = grade("framing", path, seed=1, only=test, max_examples=EXAMPLES).tests[0]
    assert first.output == again.output and first.score == 0
    assert "length=3" in first.output, first.output  # shrunk to the smallest odd length


# ---- the command line --------------------------------------------------------------------------------------


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "ast_min.cli", "assignment", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


def test_cli_list_start_never_overwrites_and_check_json(tmp_path):
    listed = cli("list")
    assert listed.returncode == 0
    for name in NAMES:
        assert any(line.startswith(name) for line in listed.stdout.splitlines()), listed.stdout
    assert cli("start", "framing", "--dir", str(tmp_path)).returncode == 0
    starter = (tmp_path / "framing.py").read_text()
    (tmp_path / "framing.py").write_text(starter + "# my work\n")
    again = cli("start", "framing", "--dir", str(tmp_path))
    assert again.returncode == 2 and "never overwrites" in again.stderr
    assert (tmp_path / "framing.py").read_text().endswith("# my work\n")
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "mel.py").symlink_to(elsewhere)  # a dangling link: start must not write through it
    linked = cli("start", "mel", "--dir", str(tmp_path / "linked"))
    assert linked.returncode == 2 and "never overwrites" in linked.stderr and not elsewhere.exists(), linked.stderr
    checked = cli("check", "framing", "--dir", str(tmp_path), "--json")
    assert checked.returncode == 1, checked.stderr
    result = json.loads(checked.stdout)
    assert set(result) == {"assignment", "score", "max_score", "tests"} and result["score"] == 0
    assert {"name", "score", "max_score", "output"} == set(result["tests"][0])


def test_cli_grade_writes_csv_and_gradescope_results(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "framing.py").write_text(get("framing").source.read_text())
    secret = tmp_path / "secret"
    secret.write_text("-x\n")  # any text is a secret, one that looks like an option too
    secret.chmod(0o600)
    nowhere = cli("grade", "framing", str(folder), "--csv", str(tmp_path / "no-such-folder" / "grades.csv"))
    assert nowhere.returncode == 2 and "does not exist: create it first" in nowhere.stderr, nowhere.stderr
    assert nowhere.stdout == "", "the --csv folder is checked before any grading"
    missing = cli("grade", "framing", str(folder), str(tmp_path / "bob"))
    assert missing.returncode == 2 and f"no file {tmp_path / 'bob'}" in missing.stderr, missing.stderr
    assert missing.stdout == "", "every submission is found before any grading"
    on_command_line = cli("grade", "framing", str(folder), "--seed", "secret")
    assert on_command_line.returncode == 2 and "--seed-file" in on_command_line.stderr, on_command_line.stderr
    assert on_command_line.stdout == "", "a secret on the command line is refused before any grading"
    out = cli("grade", "framing", str(folder), "--seed-file", str(secret), "--csv", str(tmp_path / "grades.csv"),
              "--gradescope", str(tmp_path / "results" / "results.json"))
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0
    rows = (tmp_path / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("submission,assignment,test,score") and len(rows) == 1 + len(results["tests"])
    assert cli("solution", "framing", "--dir", str(tmp_path)).returncode == 0
    assert "### BEGIN SOLUTION" in (tmp_path / "framing_solution.py").read_text()


def test_grade_says_once_how_submissions_are_kept_apart(monkeypatch, tmp_path):
    from ast_min.assignments import cli as assignment_cli, sandbox

    monkeypatch.setattr(sandbox, "isolation", lambda: "none")
    (note,) = assignment_cli._isolation_notes(None, [])
    assert "run with your own rights" in note and "ast-min assignment autograder" in note
    monkeypatch.setattr(sandbox, "isolation", lambda: "user")
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp())  # pytest's own folders are private: this one is not
    try:
        shared.chmod(0o755)
        secret = shared / "secret"
        secret.write_text("s")
        secret.chmod(0o644)
        with pytest.raises(ValueError, match="readable by every user"):  # a fresh user id could read it
            assignment_cli._isolation_notes(str(secret), [])
        secret.chmod(0o600)
        notes = assignment_cli._isolation_notes(str(secret), [])
        assert "fresh user id" in notes[0]
    finally:
        shutil.rmtree(shared)


def test_the_worker_rebuilds_the_model_the_grader_ships():
    # finetune's model crosses as settings and weights; the worker's self-contained definition must
    # compute what ast-min's does, or a student's fine-tuning would be graded on another model.
    import torch

    from ast_min.assignments import worker_model
    from ast_min.assignments.graders import finetune

    model = finetune.load_default().eval()
    builder, data = finetune.GRADER.shipped[type(model)](model)
    copy = worker_model.BUILDERS[builder](data).eval()
    x = torch.randn(3, model.config.max_length, model.config.num_mel_bins, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(x).logits, copy(x).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()
    changed = copy.config.replace(id2label={0: "a", 1: "b"})
    assert changed.num_labels == 2 and changed.hidden_size == model.config.hidden_size


@pytest.mark.parametrize("mask", ["torch.ones(N, N).triu(1)", "torch.ones(N, N, dtype=torch.bool).triu_(1)"],
                         ids=["float", "bool"])
def test_flash_refuses_a_full_n_by_n_mask(mask, tmp_path):
    # The memory limit is the kernel's, in the student's process: nothing there can switch it off.
    from ast_min.assignments.graders.flash import MEMORY_CAP, T_MEMORY

    wrong = mutated("flash", "        last_key = int(rows[-1]) + 1 if causal else N\n",
                    f"        last_key = int(rows[-1]) + 1 if causal else N\n        full = {mask}\n")
    (result,) = grade("flash", write(tmp_path, "flash", wrong), max_examples=EXAMPLES, only=[T_MEMORY]).tests
    assert result.score == 0 and f"needed more than {MEMORY_CAP >> 20} MB" in result.output, result.output


def test_teaching_doc_lists_every_known_mistake():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "TEACHING.md").read_text()
    missing = [f"{name}/{m.name}" for name, m in MISTAKES if f"| `{name}` | `{m.name}` |" not in doc]
    assert not missing, f"docs/TEACHING.md's known-mistake table lacks {missing}"


# ---- the eighth assignment, the chapters' sections, the paths the starters promise -----------------------------------

BUDGET["triton_backward"] = 120  # the interpreter runs three kernels per example


def test_list_shows_at_least_eight_assignments():
    listed = cli("list")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) >= 8, listed.stdout
    assert any(line.startswith("triton_backward") for line in listed.stdout.splitlines()), listed.stdout


def test_every_section_a_starter_cites_exists_in_its_chapter():
    from ast_min.assignments.starter import REFERENCE, chapter_sections, headings

    for name in NAMES:
        a = get(name)
        cited = REFERENCE.findall(a.source.read_text())
        assert cited, f"{name}'s source cites no section of {a.chapter}"
        sections = headings((Path(__file__).resolve().parents[1] / a.chapter).read_text())
        assert chapter_sections(a.chapter) == sections
        starter = make_starter(a.source.read_text(), name)
        for title in cited:
            assert title in sections, f"{name} cites {title!r}, which {a.chapter} does not have: {sections}"
            assert f'section {sections[title]}, "{title}"' in starter
        assert "§[" not in starter


def test_a_lost_section_title_stops_the_starter_with_the_titles_there_are():
    source = get("flash").source.read_text().replace("§[The online softmax]", "§[The offline softmax]")
    with pytest.raises(ValueError, match="cites section 'The offline softmax'.*2 The online softmax"):
        make_starter(source, "flash")


def test_the_installed_copy_of_the_chapters_sections_is_current():
    tool = Path(__file__).resolve().parents[1] / "tools" / "chapter_sections.py"
    checked = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_starters_state_no_run_times():
    """How long a check takes depends on the machine: a starter states budgets (limits), never durations."""
    for name in NAMES:
        starter = make_starter(get(name).source.read_text(), name)
        assert not re.search(r"\bminutes?\b|\b(about|takes?|in) (a|\d+) ?(s|seconds?)\b", starter), name


def test_triton_starter_masks_with_the_chapters_finite_value():
    starter = make_starter(get("triton").source.read_text(), "triton")
    assert "-1.0e30" in starter and "score of -inf" not in starter


def test_flash_with_float16_inputs_must_accumulate_and_return_float32(tmp_path):
    from ast_min.assignments.graders.flash import T_LOW

    wrong = mutated("flash", "acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32\n    q, k, v = q.to",
                    "acc_dtype = q.dtype\n    q, k, v = q.to")
    (result,) = grade("flash", write(tmp_path, "flash", wrong), max_examples=EXAMPLES, only=[T_LOW]).tests
    assert result.score == 0, result.output
    assert re.search(r"O should be torch.float32 for torch.(b?float16) inputs", result.output), result.output


def test_triton_with_a_given_sm_scale_is_graded(tmp_path):
    from ast_min.assignments.graders.triton import T_ATTN

    wrong = mutated("triton", "scale = 1.0 / math.sqrt(Dh) if sm_scale is None else sm_scale",
                    "scale = 1.0 / math.sqrt(Dh)")
    (result,) = grade("triton", write(tmp_path, "triton", wrong), max_examples=EXAMPLES, only=[T_ATTN]).tests
    assert result.score == 0 and "sm_scale=" in result.output, result.output


def test_train_must_leave_the_model_in_eval_mode():
    import types

    from ast_min.assignments.grading import Context, Fail
    from ast_min.assignments.graders import finetune
    from ast_min.checkpoint import adapt_position_embeddings

    source = types.ModuleType("finetune_solution")
    exec(compile(get("finetune").source.read_text(), "finetune_solution", "exec"), source.__dict__)
    student = types.SimpleNamespace(
        adapt_positions=adapt_position_embeddings, new_head=source.new_head,
        train=lambda model, *args: model.train(),  # no training at all, and the model left in training mode
    )
    with pytest.raises(Fail, match="leave it in eval mode"):
        finetune.training(Context(student, 0, EXAMPLES))


# head_large_init is judged by its measured effect (the loss at initialisation), not by a variant of an output
REPRODUCED = [(name, m) for name, m in MISTAKES if m.name != "head_large_init"]


@pytest.mark.parametrize("name, mistake", REPRODUCED, ids=[f"{n}-{m.name}" for n, m in REPRODUCED])
def test_every_known_mistakes_hint_reproduces_it_on_a_second_input(name, mistake, tmp_path):
    """A hint is shown only with the evidence that its variant equals the student's output twice."""
    submission = write(tmp_path, name, mutated(name, *mistake.mutation))
    (result,) = grade(name, submission, max_examples=EXAMPLES, only=[mistake.test]).tests
    lines = result.output.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.strip().startswith(f"hint ({mistake.name})")]
    evidence = re.match(r"\s*\(this mistake reproduces your output here and on a second input: max differences "
                        r"(\S+) and (\S+)\)$", lines[at + 1])
    assert evidence, result.output
    assert all(float(x) < 1e-3 for x in evidence.groups()), result.output


def test_a_report_of_no_tests_is_not_full_marks():
    # 0/0 would otherwise read as full marks (`check`'s exit status 0, calibrate's pass) on a run graded on nothing
    from ast_min.assignments.runner import Report, TestResult

    assert not Report("mel", "x.py").full_marks
    passed = Report("mel", "x.py", [TestResult("a", 2, 2, "passed"), TestResult("b", 0, 0, "reported")])
    assert passed.full_marks
    assert not Report("mel", "x.py", [TestResult("a", 1, 2, "partly")]).full_marks
