"""The repository is self-contained, and its install instructions are the ones CI runs.

A reader who clones ast-min must find every document the code, tests, notebooks and docs cite: these
tests scan every text file in the repository (whatever exists when they run, so new files are
covered without editing this one) for citations of repository paths and check that each resolves.
What counts as a citation:

- a Markdown link `[text](target)` in a `.md` file, resolved against that file's folder (and, when it
  has a `#fragment` into a Markdown file, the fragment must be one of that file's headings);
- a file or folder path whose first component is a top-level entry of the repository
  (`docs/DESIGN.md`, `kernels/NOTES.md`, `notebooks/01_log_mel_spectrogram.py`, `ast_min/data/`),
  resolved against the root; a file path needs a suffix, a folder path a trailing slash;
- a path starting with `../`, resolved against the citing file's folder;
- a bare document name in capitals (`NOTES.md`): next to the citing file, at the root, or the only
  file of that name in the repository (a reader finds it), never one of several.

Not citations: paths into other projects (`src/dataloader.py` of the original repository, which
does not start with one of our top-level entries), patterns (`notebooks/05_*.py`), lower-case
output names (`table.md`), and paths git ignores (`*.ipynb`, `bench-*.txt`: generated, not kept).
This file is not scanned: its strings are counter-examples for the checker.

The last tests tie the README's install command to `.ci/run` and to `constraints.txt`, and run its
main command as typed.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".sh", ".yml", ".yaml", ".rst"}
SKIP_DIRS = {".git", ".venv", ".venv-ci", ".venv-latest", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}

MARKDOWN_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
PATH_TOKEN = re.compile(r"[\w./*{}<>~+-]+")
NOT_A_PATH = re.compile(r"[*{}<>~]|://|\.\.\.")  # patterns, placeholders, URLs, ellipses
BARE_DOCUMENT = re.compile(r"[A-Z][A-Z0-9_-]*\.md")  # DESIGN.md, NOTES.md; lower-case names are outputs
THIS_FILE = Path(__file__).resolve()  # its strings are deliberate counter-examples, not citations


def repository_files() -> list[Path]:
    """Every file of the checkout that git would track: tracked ones and new, not-ignored ones."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        files = [ROOT / name for name in out.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist): walk it
        files = [p for p in ROOT.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in files if p.is_file())


def is_text(path: Path) -> bool:
    """A file whose citations are checked: a known text suffix, or a script with a #! line."""
    if path.suffix in TEXT_SUFFIXES:
        return True
    if path.suffix == "":
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    return False


FILES = repository_files()
TEXT_FILES = [p for p in FILES if is_text(p) and p.resolve() != THIS_FILE]
TOP_LEVEL = {p.relative_to(ROOT).parts[0] for p in FILES}


def github_anchors(markdown: str) -> set[str]:
    """The `#fragment` of each heading, as GitHub derives it: lower case, punctuation dropped, spaces -> '-'."""
    anchors, seen, in_fence = set(), {}, False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def resolve_link(source: Path, target: str) -> str | None:
    """None if a Markdown link from `source` resolves, else what is wrong with it."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
        return None
    path_part, _, fragment = target.partition("#")
    path = (source.parent / path_part).resolve() if path_part else source
    if not path.exists():
        return f"link to {target!r}: no such file"
    if fragment and path.suffix == ".md" and fragment not in github_anchors(path.read_text(encoding="utf-8")):
        return f"link to {target!r}: {path.name} has no heading with that anchor"
    return None


def is_ignored(path: Path) -> bool:
    """Whether git ignores `path`: a generated output (`*.ipynb`, `bench-*.txt`, `runs/`), not a document."""
    try:
        result = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(path)], cwd=ROOT, timeout=60)
    except OSError:  # no git: nothing counts as ignored
        return False
    return result.returncode == 0


def resolve_path_token(source: Path, token: str) -> str | None:
    """None if `token` is no citation of ours or resolves; else what is wrong with it."""
    token = token.rstrip(".,;:")
    token = token.removeprefix("./")
    if not token or NOT_A_PATH.search(token) or token.startswith("/"):
        return None
    first, last = token.split("/")[0], token.rstrip("/").split("/")[-1]
    if first == "..":
        candidates = [source.parent / token]
    elif "/" in token and first in TOP_LEVEL and ("." in last or token.endswith("/")):
        candidates = [ROOT / token]  # a file (it has a suffix) or a folder (trailing slash) of ours
    elif BARE_DOCUMENT.fullmatch(token):
        candidates = [source.parent / token, ROOT / token]
        same_name = [p for p in FILES if p.name == token]
        if len(same_name) > 1 and not any(c.exists() for c in candidates):
            return f"cites {token!r}, which is ambiguous ({len(same_name)} files have that name): give its folder"
        candidates += same_name  # one document of that name anywhere: a reader finds it
    else:
        return None
    if any(c.exists() for c in candidates) or is_ignored(candidates[0]):
        return None
    return f"cites {token!r}, which is not in the repository"


def unresolved_citations() -> list[str]:
    problems = []
    for path in TEXT_FILES:
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT)
        for lineno, line in enumerate(text.splitlines(), start=1):
            if path.suffix == ".md":
                for target in MARKDOWN_LINK.findall(line):
                    if (problem := resolve_link(path, target)) is not None:
                        problems.append(f"{rel}:{lineno}: {problem}")
                line = MARKDOWN_LINK.sub(" ", line)  # a link's target is checked once, above
            for token in PATH_TOKEN.findall(line):
                if (problem := resolve_path_token(path, token)) is not None:
                    problems.append(f"{rel}:{lineno}: {problem}")
    return problems


def test_the_scan_sees_the_documents_and_the_code():
    # Guards the scan itself: a broken file listing would make the next test pass vacuously.
    names = {str(p.relative_to(ROOT)) for p in TEXT_FILES}
    assert {"README.md", "CONTRIBUTING.md", "docs/DESIGN.md", "pyproject.toml", ".ci/run"} <= names, names
    assert any(n.startswith("ast_min/") and n.endswith(".py") for n in names), names
    assert any(n.startswith("notebooks/") for n in names), names


def test_every_cited_document_is_in_the_repository():
    problems = unresolved_citations()
    assert not problems, f"{len(problems)} citation(s) do not resolve:\n" + "\n".join(problems)


def test_the_citation_check_catches_what_it_should():
    # The resolver on known cases, so a regex change cannot silently stop checking.
    source = ROOT / "ast_min" / "features.py"
    assert resolve_path_token(source, "NO_SUCH_DOC.md") is not None  # bare, and nowhere in the repository
    assert resolve_path_token(source, "DESIGN.md") is None  # bare, but docs/DESIGN.md is the only one
    assert resolve_path_token(source, "docs/DESIGN.md") is None
    assert resolve_path_token(ROOT / "kernels" / "bench.py", "NOTES.md") is None  # next to the citing file
    assert resolve_path_token(source, "../outside/DESIGN.md") is not None
    assert resolve_path_token(source, "docs/NO_SUCH_FILE.md") is not None
    assert resolve_path_token(source, "src/dataloader.py") is None  # another project's path: not ours to check
    assert resolve_path_token(source, "notebooks/05_*.py") is None  # a pattern
    assert resolve_path_token(source, "notebooks/01_log_mel_spectrogram.ipynb") is None  # git-ignored output
    assert resolve_path_token(source, "ast_min/no_such_folder/") is not None
    assert resolve_path_token(source, "table.md") is None  # a lower-case name: an output file
    assert resolve_link(ROOT / "README.md", "docs/DESIGN.md#the-transformer") is None
    assert resolve_link(ROOT / "README.md", "docs/DESIGN.md#no-such-heading") is not None
    assert resolve_link(ROOT / "README.md", "https://example.org/x.md") is None


def test_github_anchors_follow_githubs_rule():
    text = "# A `code` title: with punctuation\n```\n# not a heading\n```\n## Twice\n## Twice\n"
    assert github_anchors(text) == {"a-code-title-with-punctuation", "twice", "twice-1"}


def test_nothing_cites_notes_outside_the_repository():
    outside = ("../" + "shared", "/work/" + "shared")  # split so this file does not match itself
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in TEXT_FILES
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if any(o in line for o in outside)
    ]
    assert not hits, "cites notes that are not in the repository:\n" + "\n".join(hits)


# ---- the install command ---------------------------------------------------------------------------


def readme_first_block() -> list[str]:
    """The commands of the README's first bash block, comments removed: install, test, the main job."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README.md has no ```bash block"
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def readme_commands() -> tuple[str, str]:
    """The README's first two commands (install, test), from its first bash block."""
    commands = readme_first_block()
    assert len(commands) >= 2, f"README's first bash block needs an install and a test command, has {commands}"
    return commands[0], commands[1]


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    install, test = readme_commands()
    ci_lines = {line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()}
    assert install in ci_lines, f".ci/run does not run the README's install command {install!r}"
    assert test in ci_lines, f".ci/run does not run the README's test command {test!r}"
    assert "-c constraints.txt" in install, f"the README's install does not use the lock file: {install!r}"


def test_the_readme_main_command_runs_on_the_embedded_default(capsys, monkeypatch):
    # The README's third command is the main job, with no download: run it as typed, in-process, from
    # the root (its paths are relative to a checkout).
    commands = readme_first_block()
    assert len(commands) >= 3, f"README's first bash block needs install, test and the main job, has {commands}"
    argv = shlex.split(commands[2])
    assert argv[:2] == ["ast-min", "classify"] and "--checkpoint" not in argv, commands[2]
    from ast_min.cli import main

    monkeypatch.chdir(ROOT)
    code = main(argv[1:])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "default model" in out, f"the embedded default model is not named:\n{out}"
    clip = Path(argv[-1]).stem  # the examples are named after their class: the top label must be that class
    top = out.splitlines()[1].split()
    assert top[1] == clip, f"README's example {argv[-1]} comes out as {top[1]!r}:\n{out}"


def test_the_documented_reference_comparison_is_what_the_code_prints():
    # docs/COMMANDS.md's "Is my run normal?" example quotes the committed reference run's figures: recompute
    # each line from the run's own figures in it, so a retrained default model cannot leave it stale.
    from ast_min.run_check import compare_with_reference

    lines = [line for line in (ROOT / "docs" / "COMMANDS.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("vs reference, epoch ")]
    assert lines, "docs/COMMANDS.md shows no 'vs reference' line"
    names = {"train loss": "train_loss", "eval loss": "eval_loss", "accuracy": "eval_accuracy", "mAP": "eval_mAP"}
    for line in lines:
        epoch = int(re.match(r"vs reference, epoch (\d+):", line).group(1))
        run = {names[name]: float(value) for name, value in re.findall(r"(train loss|eval loss|accuracy|mAP) ([\d.]+) \(", line)}
        printed = compare_with_reference("synthetic", epoch, run)
        assert printed == line, f"docs/COMMANDS.md:\n{line}\nthe code prints:\n{printed}"


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.marker, f"not an exact pin: {line!r}"
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def installed_requirements() -> list[Requirement]:
    """What the README's install asks for on this platform: the dependencies and the `dev` extra, with
    the extras `dev` names of the project itself (`ast-min[onnx]`) replaced by their requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    own, env = canonicalize_name(project["name"]), default_environment()
    reqs, pending, done = [Requirement(r) for r in project["dependencies"]], ["dev"], set()
    while pending:
        extra = pending.pop()
        if extra in done:
            continue
        done.add(extra)
        for req in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(req.name) == own:
                pending.extend(req.extras)
            else:
                reqs.append(req)
    return [r for r in reqs if r.marker is None or r.marker.evaluate({**env, "extra": "dev"})]


def test_the_lock_file_pins_everything_the_readme_installs():
    pins = constraint_pins()
    missing = [str(r) for r in installed_requirements() if canonicalize_name(r.name) not in pins]
    assert not missing, f"constraints.txt does not pin {missing}: regenerate it (python tools/update_constraints.py)"
    unsatisfiable = [f"{r} vs =={pins[canonicalize_name(r.name)]}" for r in installed_requirements()
                     if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not unsatisfiable, f"pins outside pyproject.toml's ranges: {unsatisfiable}"


def test_the_readme_and_the_lock_file_pin_the_same_torch():
    install, _ = readme_commands()
    readme_torch = re.search(r"torch==([\w.+]+)", install)
    assert readme_torch, f"the README's install command pins no torch version: {install!r}"
    assert constraint_pins()["torch"] == readme_torch.group(1), (
        f"README installs torch=={readme_torch.group(1)}, constraints.txt pins torch=={constraint_pins()['torch']}"
    )


def test_every_torch_pin_in_the_repository_is_the_locked_one():
    # The README's install line is copied into CONTRIBUTING.md and into both branches of .ci/run (only
    # one of which the CI test above reads): a torch upgrade that misses one copy fails here.
    locked = constraint_pins()["torch"]
    stale = [
        f"{p.relative_to(ROOT)}:{n}: torch=={version}"
        for p in TEXT_FILES
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        for version in re.findall(r"torch==([\w.+]+)", line)
        if version != locked
    ]
    assert not stale, f"torch pins other than constraints.txt's torch=={locked}:\n" + "\n".join(stale)


def test_update_constraints_pins_what_pip_sees_installed(tmp_path):
    # pip reads the installed metadata with its own code: an independent view of what is installed.
    out = tmp_path / "constraints.txt"
    subprocess.run([sys.executable, str(ROOT / "tools" / "update_constraints.py"), "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=120)
    listed = subprocess.run([sys.executable, "-m", "pip", "list", "--format", "json"],
                            check=True, capture_output=True, text=True, timeout=120).stdout
    pip_versions = {canonicalize_name(d["name"]): d["version"].split("+")[0] for d in json.loads(listed)}
    pins = {}
    for line in out.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    wrong = {n: (v, pip_versions.get(n)) for n, v in pins.items() if pip_versions.get(n) != v}
    assert not wrong, f"pinned vs pip's installed version: {wrong}"
    direct = {canonicalize_name(r.name) for r in installed_requirements()}
    assert direct <= set(pins), f"direct requirements missing from the generated file: {direct - set(pins)}"
    assert "ast-min" not in pins, "the project itself must not be pinned"


def test_contributings_sub_command_is_one_module_and_one_entry(tmp_path, capsys, monkeypatch):
    """The "Add a sub-command" example of CONTRIBUTING.md, as written there, works once its COMMANDS entry is added."""
    import numpy as np
    import soundfile
    import transformers

    from ast_min import cli

    section = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8").split("## Add a sub-command")[1].split("\n## ")[0]
    module, entry = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    name, target, help_text = re.search(r'"(\w+)": \("(ast_min\.commands\.\w+)", "(.*?)"\)', entry).groups()
    assert module.splitlines()[0].endswith(f"ast_min/commands/: {target.rsplit('.', 1)[1]}.py"), "module and entry differ"
    (tmp_path / "example_command.py").write_text(module, encoding="utf-8")  # where the test can import it from
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, name, ("example_command", help_text))
    clip = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", clip, 16000, subtype="FLOAT")
    assert cli.main([name, str(tmp_path / "a.wav")]) == 0
    printed = np.array(capsys.readouterr().out.split(), dtype=float)
    # transformers' extractor without normalisation: the same log-mel frames, then padding after the clip's 98
    theirs = transformers.ASTFeatureExtractor(do_normalize=False)(clip, sampling_rate=16000, return_tensors="np")
    expected = theirs["input_values"][0][: 1 + (16000 - 400) // 160].mean(axis=0)
    np.testing.assert_allclose(printed, expected, atol=0.01)  # printed to 2 decimals; float32 rounding is far below
    assert cli.main([name, str(tmp_path / "missing.wav")]) == 2  # its errors are one line, like every command's
    assert capsys.readouterr().err.startswith(f"ast-min {name}: error: ")
