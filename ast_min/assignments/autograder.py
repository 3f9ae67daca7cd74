"""The Gradescope autograder bundle: ast-min exactly as installed here, its setup, and the grading script.

`write_bundle` fills a new folder NAME-autograder/ with

    setup.sh          run once, as root, when Gradescope builds the image: a virtual environment in
                      $ROOT/venv with the dependencies pinned to the versions installed here
                      (requirements.txt) and ast-min from the bundled wheel (never from an index:
                      ast-min is not on PyPI, and the class must be graded by the version it used);
                      then ast-min's own files and the bundle are made readable by root only, since
                      the submissions run as other users
    run_autograder    run for every submission: `ast-min assignment grade NAME $ROOT/submission
                      --seed-file $ROOT/source/seed --gradescope $ROOT/results/results.json`, and a
                      valid results.json even if grading itself fails
    seed              the secret (root-only after setup); never on a command line
    requirements.txt  ast-min's dependencies and hypothesis, pinned
    wheels/           the wheel of the installed ast-min

ROOT is /autograder (Gradescope's layout); AUTOGRADER_ROOT moves it, and AST_MIN_SKIP_APT and
AST_MIN_PYTHON let the same scripts run outside a Gradescope image (docs/TEACHING.md).
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (written by
# `ast-min assignment autograder`; docs/TEACHING.md, "The autograder bundle").
set -euo pipefail
root="${{AUTOGRADER_ROOT:-/autograder}}"
source="$root/source"
if [ -z "${{AST_MIN_SKIP_APT:-}}" ]; then
    apt-get update
    apt-get install -y python3 python3-venv libsndfile1
    apt-get install -y bubblewrap || echo "bubblewrap is not available: submissions run as fresh user ids only"
fi
python="${{AST_MIN_PYTHON:-python3}}"
"$python" -m venv "$root/venv"
# CPU builds of torch (a Gradescope machine has no GPU); the versions this class used
"$root/venv/bin/pip" install --extra-index-url https://download.pytorch.org/whl/cpu -r "$source/requirements.txt"
# ast-min itself only from the bundled wheel, never from an index
"$root/venv/bin/pip" install --no-index --no-deps --force-reinstall "$source/wheels/{wheel}"
# Submissions run as other users: they may read Python and its packages, but not ast-min itself
# (the honour code), the bundle or the secret seed.
package="$("$root/venv/bin/python" -I -c 'import ast_min, os; print(os.path.dirname(ast_min.__file__))')"
chmod -R go-rwx "$package" "$source"
chmod go+rx "$root" "$root/venv"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this, as root, for every submission: the student's files are in $root/submission.
set -uo pipefail
root="${{AUTOGRADER_ROOT:-/autograder}}"
mkdir -p "$root/results"
log="$(mktemp)"
"$root/venv/bin/ast-min" assignment grade {name} "$root/submission" --seed-file "$root/source/seed" \\
    --gradescope "$root/results/results.json" 2>"$log"
status=$?
cat "$log" >&2
if [ "$status" -ne 0 ]; then
    # grading itself failed (a missing file, a broken image): Gradescope still gets valid results
    "$root/venv/bin/python" -I -c '
import json, os, sys
reason = open(sys.argv[2], errors="replace").read().strip().splitlines()[-1:] or ["unknown"]
text = json.dumps({{"score": 0, "output": "The autograder could not grade this submission: " + reason[0][:2000]}})
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.replace(tmp, sys.argv[1])
' "$root/results/results.json" "$log"
fi
rm -f "$log"
"""


def requirements() -> list[str]:
    """ast-min's dependencies for this platform and hypothesis (the graders use it), pinned to the installed versions."""
    names = ["hypothesis"]
    for requirement in metadata.requires("ast-min") or []:
        if "extra ==" in requirement:
            continue
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
        marker = requirement.split(";", 1)[1] if ";" in requirement else ""
        if marker and "linux" in marker and not sys.platform.startswith("linux"):
            continue
        names.append(name)
    pinned = []
    for name in sorted(set(names), key=str.lower):
        version = metadata.version(name).split("+")[0]  # 2.13.0+cpu: the index's own build of that version
        pinned.append(f"{name}=={version}")
    return pinned


def build_wheel(out: Path, wheel: str | None = None) -> Path:
    """The wheel of the installed ast-min: `wheel` if given, else built from the folder it was installed from."""
    out.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        source = Path(wheel)
        if not source.is_file() or not source.name.startswith("ast_min-") or source.suffix != ".whl":
            raise ValueError(f"--wheel {wheel}: give a file ast_min-VERSION-...whl")
        return Path(shutil.copy2(source, out / source.name))
    folder = _installed_from()
    if folder is None:
        raise ValueError("this ast-min was not installed from a folder on this machine, so no wheel can be built "
                         "from it: pass the wheel it was installed from with --wheel FILE")
    with tempfile.TemporaryDirectory() as build:
        # built from a copy: a build writes into its source folder (build/, *.egg-info), which is not ours
        copy = Path(build) / "source"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__"))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--wheel-dir", build, str(copy)], capture_output=True, text=True)
        built = sorted(Path(build).glob("ast_min-*.whl"))
        if done.returncode != 0 or not built:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise RuntimeError(f"building the wheel of {folder} failed ({last}): pass one with --wheel FILE")
        return Path(shutil.copy2(built[0], out / built[0].name))


def _installed_from() -> Path | None:
    """The local source folder of the ast-min running here: its checkout (an editable install), or the folder
    a regular install was made from (its direct_url.json), if that still exists."""
    import ast_min

    checkout = Path(ast_min.__file__).resolve().parent.parent
    if _is_source(checkout):
        return checkout
    for dist in metadata.distributions(name="ast-min"):
        text = dist.read_text("direct_url.json")
        url = json.loads(text).get("url", "") if text else ""
        if url.startswith("file://") and _is_source(Path(unquote(urlparse(url).path))):
            return Path(unquote(urlparse(url).path))
    return None


def _is_source(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and re.search(r'^name\s*=\s*"ast-min"', pyproject.read_text(), re.M) is not None


def write_bundle(name: str, folder: Path, secret: str, overwrite: bool = False, wheel: str | None = None) -> Path:
    """Write the bundle for assignment `name` into `folder` (NAME-autograder); returns the wheel's path."""
    if folder.exists() or folder.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{folder} already exists: give --overwrite to replace it, or another --dir")
        if folder.is_symlink() or not folder.is_dir():
            raise ValueError(f"{folder} is not a folder: move it away first")
        shutil.rmtree(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        built = build_wheel(staging / "wheels", wheel)
        files = {"setup.sh": SETUP_SH.format(wheel=built.name), "run_autograder": RUN_AUTOGRADER.format(name=name),
                 "requirements.txt": "\n".join(requirements()) + "\n"}
        for file, text in files.items():
            (staging / file).write_text(text)
        for script in ("setup.sh", "run_autograder"):
            path = staging / script
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        seed = staging / "seed"
        with open(seed, "x") as f:
            f.write(secret)
        seed.chmod(0o600)
        staging.chmod(0o755)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / "wheels" / built.name


__all__ = ["build_wheel", "requirements", "write_bundle"]
