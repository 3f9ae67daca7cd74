"""The Gradescope autograder bundle, end to end as far as a machine without containers allows.

`ast-min assignment autograder` writes the bundle (a wheel of this ast-min, setup.sh,
run_autograder, the secret); its setup.sh runs against a fake /autograder tree (AUTOGRADER_ROOT)
without apt (AST_MIN_SKIP_APT) and with a virtual environment that already sees this machine's
packages, so that only ast-min itself is installed, from the bundled wheel and no index; then
run_autograder grades an honest and a forging submission the way Gradescope would, writing
results.json over a symbolic link an earlier run left there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from ast_min.assignments import get

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setup.sh and grading as Gradescope does need root")
REPO = Path(__file__).resolve().parents[1]


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ast_min.cli", "assignment", *args], capture_output=True, text=True,
                          env=env)


def test_the_bundle_installs_its_wheel_and_grades_as_gradescope_does(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("-x\n")  # a secret that looks like an option
    secret.chmod(0o600)
    refused = cli("autograder", "mel", "--dir", str(tmp_path), "--seed", "-x")
    assert refused.returncode == 2 and "--seed-file" in refused.stderr, refused.stderr
    made = cli("autograder", "mel", "--dir", str(tmp_path), "--seed-file", str(secret))
    assert made.returncode == 0, made.stderr
    bundle = tmp_path / "mel-autograder"
    again = cli("autograder", "mel", "--dir", str(tmp_path), "--seed-file", str(secret))
    assert again.returncode == 2 and "--overwrite" in again.stderr, again.stderr
    (built,) = (bundle / "wheels").glob("ast_min-*.whl")
    given = Path(shutil.copy2(built, tmp_path / built.name))
    (bundle / "setup.sh").write_text("changed\n")
    replaced = cli("autograder", "mel", "--dir", str(tmp_path), "--seed-file", str(secret), "--overwrite",
                   "--wheel", str(given))
    assert replaced.returncode == 0, replaced.stderr
    assert (bundle / "setup.sh").read_text().startswith("#!/usr/bin/env bash")
    assert (bundle / "seed").read_text() == "-x" and (bundle / "seed").stat().st_mode & 0o077 == 0
    (wheel,) = (bundle / "wheels").glob("ast_min-*.whl")
    assert wheel.read_bytes() == given.read_bytes()

    # the fake /autograder: in a folder every user can pass through, as /autograder is
    root = Path(tempfile.mkdtemp(prefix="ast-min-autograder-"))
    try:
        root.chmod(0o755)
        shutil.copytree(bundle, root / "source")
        (root / "submission").mkdir()
        (root / "results").mkdir()
        # the environment setup.sh makes already sees this machine's packages (a path entry): no index needed
        subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
        site = subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "00-this-machine.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AST_MIN_SKIP_APT": "1", "AST_MIN_PYTHON": sys.executable}
        env.pop("PYTHONPATH", None)
        setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], capture_output=True, text=True, env=env,
                               cwd=root)
        assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
        installed = subprocess.run([str(root / "venv" / "bin" / "python"), "-I", "-c",
                                    "import ast_min, importlib.metadata as m; print(ast_min.__file__); "
                                    "print(m.distribution('ast-min').read_text('direct_url.json'))"],
                                   capture_output=True, text=True, check=True).stdout.splitlines()
        assert installed[0].startswith(site), installed  # the bundle's copy, not this checkout
        assert wheel.name in installed[1], installed  # installed from the bundled wheel
        package = Path(installed[0]).parent
        assert package.stat().st_mode & 0o077 == 0 and (root / "source").stat().st_mode & 0o077 == 0

        victim = tmp_path / "victim.txt"
        victim.write_text("precious\n")
        results = root / "results" / "results.json"
        results.symlink_to(victim)
        forging = get("mel").source.read_text() + (
            "\n\nimport os\n\n\ndef mel_filterbank(*a, **k):\n    for fd in range(64):\n        try:\n"
            "            os.write(fd, b'{\"score\": NaN, \"tests\": []}')\n        except OSError:\n            pass\n"
            "    raise NotImplementedError('forged')\n")
        for text, full in ((get("mel").source.read_text(), True), (forging, False)):
            (root / "submission" / "mel.py").write_text(text)
            run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                                 env=env, cwd=root)
            assert run.returncode == 0, run.stderr[-3000:]
            assert not results.is_symlink() and victim.read_text() == "precious\n"
            report = json.loads(results.read_text())  # strict JSON: Gradescope's parser refuses NaN
            json.dumps(report, allow_nan=False)
            maximum = sum(t["max_score"] for t in report["tests"])
            assert maximum == 11 and (report["score"] == maximum) == full, report
            assert {"name", "score", "max_score", "output"} <= set(report["tests"][0])

        # grading that cannot happen (no mel.py in the submission) still leaves valid results
        (root / "submission" / "mel.py").unlink()
        (root / "submission" / "notes.txt").write_text("wrong file\n")
        run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                             env=env, cwd=root)
        report = json.loads(results.read_text())
        assert report["score"] == 0 and "mel.py" in report["output"], report
    finally:
        shutil.rmtree(root, ignore_errors=True)
