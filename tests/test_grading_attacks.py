"""Attacks on `ast-min assignment grade`, each graded in one real `grade` call beside honest submissions.

Each attacking submission is the instructor's `mel` solution wrapped so that its functions answer
only if the attack worked (otherwise they raise NotImplementedError), or, where the attack is a
lie about wrong answers, a submission whose "twin" without the attack is graded in the same call:
the attacker must score exactly what it earned (nothing, or its twin's score, test by test). Every
test also checks that the honest submissions keep full marks in every output (the terminal's JSON
lines and the CSV), that no file of the instructor's changed (the seed, the other files in their
folder, the submissions, ast-min's own files), and that no process of any submission is still
running when `grade` returns.

CI runs as root, so these run behind the real boundary: a fresh user id per submission, hard
limits, and bubblewrap's namespaces when it works on the machine.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import ast_min
from ast_min.assignments import get, sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the boundary's user ids and limits need root (CI runs as root)")

REPO = Path(__file__).resolve().parents[1]
MEL = get("mel").source.read_text()
REAL = MEL.replace("def mel_filterbank(", "def _real_mel_filterbank(").replace("def log_mel(", "def _real_log_mel(")
GATED = '''

def mel_filterbank(*args, **kwargs):
    if attack():
        return _real_mel_filterbank(*args, **kwargs)
    raise NotImplementedError("the attack did not work")


def log_mel(*args, **kwargs):
    if attack():
        return _real_log_mel(*args, **kwargs)
    raise NotImplementedError("the attack did not work")
'''
ZEROS = '''

def mel_filterbank(num_mel_bins=128, *, fft_length=512, dtype=torch.float64, **kwargs):
    attack()
    return wrap(torch.zeros(fft_length // 2 + 1, num_mel_bins, dtype=dtype))


def log_mel(power, filterbank):
    attack()
    return wrap(torch.zeros(*power.shape[:-1], filterbank.shape[-1], dtype=power.dtype))
'''


def gated(attack_code: str) -> str:
    """A submission that answers correctly only if `attack()` (defined by `attack_code`) returns True."""
    return REAL + "\n\n" + attack_code + GATED


def snapshot(*roots: Path) -> dict[str, str]:
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def submission_processes(marker: str = "") -> list[str]:
    """Processes of any submission: a fresh grading user id, or the attack's marker on their command line."""
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            uid = sandbox._uid_of(int(pid))
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if uid is not None and _fresh(uid):
            left.append(f"{pid} (uid {uid})")
        elif marker and marker.encode() in cmdline:
            left.append(f"{pid} ({cmdline[:80]!r})")
    return left


def _grading_uid(path: Path) -> bool:
    try:
        uid = path.lstat().st_uid
    except OSError:
        return False
    return _fresh(uid)


def _fresh(uid: int) -> bool:
    """Whether `uid` is one the sandbox draws for submissions."""
    low, count = sandbox._id_range()
    return low <= uid < low + count


class Graded:
    """One `grade` call on named submissions (in order), with the instructor's files around it."""

    def __init__(self, tmp_path: Path, submissions: dict[str, str], outputs: Path | None = None, marker: str = ""):
        self.instructor = tmp_path / "instructor"
        self.instructor.mkdir()
        self.secret = "SECRET-" + secrets.token_hex(8)
        self.seed = self.instructor / "seed"
        self.seed.write_text(self.secret + "\n")
        self.seed.chmod(0o600)
        (self.instructor / "notes.txt").write_text("the instructor's own file\n")
        self.outputs = outputs or self.instructor
        self.csv_path = self.outputs / "grades.csv"
        self.folders = {}
        for name, text in submissions.items():
            folder = tmp_path / "submissions" / name
            folder.mkdir(parents=True)
            (folder / "mel.py").write_text(text)
            self.folders[name] = folder
        self.marker = marker

    def run(self, watch_memory: bool = False, **expect_paths) -> "Graded":
        protected = [self.instructor, REPO / "ast_min", REPO / "kernels"] + [self.folders[n] for n in self.folders]
        self.before = snapshot(*protected)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "ast_min.cli", "assignment", "grade", "mel",
                   *[str(f) for f in self.folders.values()], "--seed-file", str(self.seed), "--json",
                   "--csv", str(self.csv_path)]
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.peak_kb = 0
        if watch_memory:  # the grade process's peak resident memory, read while it runs
            while process.poll() is None:
                try:
                    status = Path(f"/proc/{process.pid}/status").read_text()
                    self.peak_kb = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
                except (OSError, StopIteration):
                    pass
                time.sleep(0.05)
        self.stdout, self.stderr = process.communicate(timeout=600)
        self.returncode = process.returncode
        assert self.returncode == 0, self.stderr[-3000:]
        self.seconds = time.monotonic() - started
        self.leftover = submission_processes(self.marker)
        self.left_files = [str(p) for root in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(root)
                           for p in Path(root).iterdir() if _grading_uid(p)]
        self.after = snapshot(*protected)
        self.lines = self.stdout.splitlines()
        self.json = {}
        for line in self.lines:
            record = json.loads(line)  # every line grade prints is one of its JSON records
            self.json[Path(record["submission"]).name] = record
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.csv = {}
        for row in rows:
            self.csv.setdefault(Path(row["submission"]).name, []).append(row)
        return self

    def tests(self, name: str) -> dict[str, float]:
        return {t["name"]: t["score"] for t in self.json[name]["tests"]}

    def check(self, honest: list[str], attackers: dict[str, object]) -> None:
        """attackers: name -> 0 (earned nothing) or the name of its twin (earned exactly the twin's scores)."""
        assert self.returncode == 0, self.stderr[-3000:]
        assert len(self.lines) == len(self.folders), self.stdout[-3000:]  # nothing printed but the grades
        assert set(self.json) == set(self.folders), self.stdout[-3000:]
        for name in honest:
            record = self.json[name]
            assert record["score"] == record["max_score"] > 0, record
            assert all(float(r["score"]) == float(r["max_score"]) for r in self.csv[name]), self.csv[name]
        for name, earned in attackers.items():
            got = self.tests(name)
            expected = {t: 0 for t in got} if earned == 0 else self.tests(earned)
            assert got == expected, (got, expected, self.json[name])
            assert sum(float(r["score"]) for r in self.csv[name]) == sum(expected.values()), self.csv[name]
        changed = {p for p in set(self.before) | set(self.after) if self.before.get(p) != self.after.get(p)}
        assert changed <= {str(self.csv_path)}, f"files changed by grading: {sorted(changed)}"
        assert not self.leftover, f"still running after grade returned: {self.leftover}"
        assert not self.left_files, f"left in the shared temporary folders: {self.left_files}"
        assert self.secret not in self.stdout + self.stderr + self.csv_path.read_text()

    def outputs_of(self, name: str) -> str:
        return "\n".join(t["output"] for t in self.json[name]["tests"])


def test_forged_results_on_every_channel_score_nothing(tmp_path):
    # The old pipe carried pickled results: forged ones (scores of 1000, NaN, unknown tests, an object
    # whose unpickling runs code) are written on every file descriptor, on stdout, and to the
    # terminal of any process it can reach.
    pwned = tmp_path / "pwned"
    attack = f'''
import glob, json, os, pickle, struct


class Evil:
    def __reduce__(self):
        return (os.system, ("touch {pwned}",))


def attack():
    forged = [
        pickle.dumps({{"event": "result", "test": "mel_filterbank: shape (K, F) and dtype", "score": 1000,
                      "max_score": 1, "output": "passed"}}),
        pickle.dumps(Evil()),
        json.dumps({{"event": "result", "test": "no such test", "score": "lots"}}).encode(),
        json.dumps({{"event": "result", "test": "log_mel: shape (..., T, F)", "score": float("nan")}}).encode(),
        struct.pack("<QI", 2**62, 2) + b"{{}}",
        struct.pack("<QI", 60, 52) + json.dumps({{"id": 2, "value": 1000.0, "buffers": []}}).encode().ljust(52),
    ]
    for fd in range(1024):
        for payload in forged:
            try:
                os.write(fd, payload + b"\\n")
            except OSError:
                pass
    print(json.dumps({{"submission": "honest", "score": 0, "max_score": 11, "tests": []}}))
    print("honest: 0/11")
    for terminal in glob.glob("/proc/*/fd/[12]"):
        try:
            with open(terminal, "w") as f:
                f.write("honest: 0/11\\n")
        except OSError:
            pass
    return False
'''
    graded = Graded(tmp_path, {"honest": MEL, "attacker": gated(attack)}).run()
    graded.check(["honest"], {"attacker": 0})
    assert not pwned.exists(), "a pickled object of the submission's ran in the grader"


def test_patched_comparisons_score_what_the_wrong_answers_earn(tmp_path):
    # torch's, numpy's and math's comparisons patched, and the grader's own compare if importable:
    # zeros must still score what zeros score (the shape tests), as the twin without the patches does.
    attack = '''
import math

import numpy


def attack():
    torch.allclose = lambda *a, **k: True
    torch.isclose = lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool)
    torch.equal = lambda *a: True
    torch.Tensor.__sub__ = lambda a, b: torch.zeros_like(a)
    torch.Tensor.abs = lambda a: torch.zeros_like(a)
    torch.Tensor.__le__ = lambda a, b: torch.ones_like(a, dtype=torch.bool)
    numpy.allclose = lambda *a, **k: True
    math.isclose = lambda *a, **k: True
    try:
        import ast_min.assignments.grading as grading

        grading.Context.compare = lambda *a, **k: None
        grading._close = lambda got, expected, *a: torch.ones_like(got, dtype=torch.bool)
    except Exception:
        pass


def wrap(t):
    return t
'''
    twin = "import torch\n\n\ndef attack():\n    pass\n\n\ndef wrap(t):\n    return t\n" + ZEROS
    graded = Graded(tmp_path, {"honest": MEL, "twin": twin, "attacker": "import torch\n" + attack + ZEROS}).run()
    graded.check(["honest"], {"attacker": "twin"})
    assert sum(graded.tests("twin").values()) < graded.json["twin"]["max_score"]


def test_a_lying_tensor_subclass_scores_what_its_values_earn(tmp_path):
    attack = '''
class Liar(torch.Tensor):
    """Zero differences, every comparison true, whatever its values."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("sub", "__sub__", "__rsub__", "abs", "nan_to_num"):
            return torch.zeros(args[0].shape, dtype=torch.float64)
        if name in ("isclose", "eq", "__eq__", "le", "__le__", "ge", "__ge__"):
            return torch.ones(args[0].shape, dtype=torch.bool)
        if name in ("allclose", "equal"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


def attack():
    pass


def wrap(t):
    return t.as_subclass(Liar)
'''
    twin = "import torch\n\n\ndef attack():\n    pass\n\n\ndef wrap(t):\n    return t\n" + ZEROS
    graded = Graded(tmp_path, {"honest": MEL, "twin": twin, "attacker": "import torch\n" + attack + ZEROS}).run()
    graded.check(["honest"], {"attacker": "twin"})


def test_running_the_librarys_own_code_scores_nothing(tmp_path):
    # The honour-code guard was a hook in the student's process; now ast-min is simply not there:
    # not importable, and its files not readable (bubblewrap hides them; the bundle's setup makes
    # them root-only where bubblewrap cannot run).
    library = Path(ast_min.__file__).resolve().parent
    attack = f'''
import glob, importlib, sys


places = []


def attack():
    if not places:
        places.extend(["{library}/features.py", "{library}/features_fast.py"])
        for root in ("/work", "/root", "/opt", "/home", "/tmp", sys.prefix):
            places.extend(glob.glob(root + "/**/ast_min/features.py", recursive=True)[:5])
    for place in places:
        try:
            source = open(place).read()
        except OSError:
            continue
        namespace = {{"__name__": "copied"}}
        exec(compile(source, place, "exec"), namespace)
        return True
    try:
        features = importlib.import_module("ast_min.features")
        features.mel_filterbank(8)
        return True
    except Exception:
        return False
'''
    graded = Graded(tmp_path, {"honest": MEL, "attacker": gated(attack)}).run()
    if sandbox.bwrap_usable():
        graded.check(["honest"], {"attacker": 0})
    else:  # the library is readable here: grade must have said so before grading
        assert f"ast-min's own files ({library})" in graded.stderr or "not readable" in graded.stderr, graded.stderr


def test_the_seed_cannot_be_read_by_a_submission(tmp_path):
    # The seed was on grade's command line: it is read from a root-only file now, and the worker never
    # receives it (only values derived from it by a one-way hash).
    attack_template = '''
import glob, os


def attack():
    found = []
    for path in glob.glob("/proc/*/cmdline") + glob.glob("/proc/*/environ") + ["{seed}"]:
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        if b"SECRET-" in data:
            found.append(data[data.index(b"SECRET-"):][:24].decode(errors="replace"))
    found += [v for v in os.environ.values() if "SECRET-" in v]
    if found:
        raise RuntimeError("found the seed: " + " ".join(found))
    return False
'''
    graded = Graded(tmp_path, {"honest": MEL, "attacker": "placeholder"})
    (graded.folders["attacker"] / "mel.py").write_text(gated(attack_template.format(seed=graded.seed)))
    graded.run()
    graded.check(["honest"], {"attacker": 0})
    assert "found the seed" not in graded.outputs_of("attacker")


def test_nothing_of_a_submission_outlives_its_grading(tmp_path):
    # A double-forked, session-leading daemon that ignores SIGTERM and SIGHUP, and twenty children,
    # all trying to rewrite the CSV while and after grading.
    marker = "ATTACK-" + secrets.token_hex(6)
    graded = Graded(tmp_path, {"honest": MEL, "attacker": "placeholder"}, marker=marker)
    daemon = (f"import time\nfor _ in range(600):\n    try:\n        open({str(graded.csv_path)!r}, 'w')"
              ".write('forged')\n    except OSError:\n        pass\n    time.sleep(0.1)\n")
    attack = f'''
import os, signal, subprocess, sys

started = []


def attack():
    if started:
        return False
    started.append(True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            os.execv(sys.executable, [sys.executable, "-c", {daemon!r}, "{marker}"])
        os._exit(0)
    os.wait()
    for _ in range(20):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", "{marker}"], start_new_session=True)
    return False
'''
    (graded.folders["attacker"] / "mel.py").write_text(gated(attack))
    graded.run()
    written = graded.csv_path.read_text()
    time.sleep(1.0)  # a survivor would have rewritten it by now
    assert graded.csv_path.read_text() == written
    graded.check(["honest"], {"attacker": 0})


def test_a_submission_cannot_steal_or_edit_another(tmp_path):
    # Graded between two honest submissions: it looks for theirs (their paths, the grader's private
    # folders, any mel.py it can find), would answer with a stolen copy, and tries to sabotage them
    # and to leave files for the next submission to trip over.
    graded = Graded(tmp_path, {"honest": MEL, "attacker": "placeholder", "honest2": MEL})
    others = [str(graded.folders[n] / "mel.py") for n in ("honest", "honest2")]
    attack = f'''
import glob, os

stolen = []


def attack():
    if stolen:
        return True
    mine = os.path.realpath(__file__)
    places = {others!r} + glob.glob("/tmp/ast-min-grading-*/*/mel.py") + glob.glob("../*/mel.py")
    for place in places:
        if os.path.realpath(place) == mine:
            continue
        try:
            source = open(place).read()
        except OSError:
            continue
        try:
            with open(place, "w") as f:
                f.write("raise SystemExit('sabotaged')\\n")
        except OSError:
            pass
        stolen.append(source)
        return True
    for trap in ("/tmp/sitecustomize.py", os.path.dirname(os.getcwd()) + "/sitecustomize.py", "/dev/shm/trap"):
        try:
            with open(trap, "w") as f:
                f.write("raise SystemExit('trapped')\\n")
        except OSError:
            pass
    return False
'''
    (graded.folders["attacker"] / "mel.py").write_text(gated(attack))
    graded.run()
    graded.check(["honest", "honest2"], {"attacker": 0})


def test_a_submission_cannot_stop_or_kill_the_grader(tmp_path):
    attack = '''
import os, signal


def attack():
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()] + [os.getppid()]:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                if pid != os.getpid():
                    os.kill(pid, sig)
            except OSError:
                pass
    try:
        os.kill(-1, signal.SIGSTOP)
    except OSError:
        pass
    return False
'''
    graded = Graded(tmp_path, {"attacker": gated(attack), "honest": MEL}).run()
    graded.check(["honest"], {"attacker": 0})


def test_outputs_replace_symbolic_links_and_never_follow_them(tmp_path):
    # The output folder is shared (world-writable, as /tmp is); a link waits at the CSV's name, and
    # the submission tries to put links there too. The grades must land in a regular file there,
    # and the files the links point to must stay as they were.
    shared = Path(tempfile.mkdtemp(prefix="ast-min-shared-"))
    try:
        shared.chmod(0o1777)
        victim, victim2 = tmp_path / "victim.txt", tmp_path / "victim2.txt"
        victim.write_text("precious\n")
        victim2.write_text("precious too\n")
        graded = Graded(tmp_path, {"honest": MEL, "attacker": "placeholder"}, outputs=shared)
        graded.csv_path.symlink_to(victim)
        attack = f'''
import os


def attack():
    for name in ("grades.csv", ".grades.csv.tmp", "grades.csv.tmp"):
        target = os.path.join({str(shared)!r}, name)
        try:
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink({str(victim2)!r}, target)
        except OSError:
            pass
    return False
'''
        (graded.folders["attacker"] / "mel.py").write_text(gated(attack))
        graded.run()
        assert not graded.csv_path.is_symlink() and graded.csv_path.is_file()
        assert victim.read_text() == "precious\n" and victim2.read_text() == "precious too\n"
        graded.check(["honest"], {"attacker": 0})
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_limits_cannot_be_lifted(tmp_path):
    # Hard limits equal the soft ones: raising any fails; 8 GB, 200 processes and a 1 GB file fail too.
    attack = """
import os, resource, signal, time

tried = []


def attack():
    if tried:
        return False
    tried.append(True)
    lifted = False
    for limit in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE"):
        try:
            resource.setrlimit(getattr(resource, limit), (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            lifted = True
        except (ValueError, OSError):
            pass
    try:
        big = torch.ones(8 << 30, dtype=torch.uint8)
        lifted = lifted or bool(big[-1] == 1)
    except (RuntimeError, MemoryError):
        pass
    children = 0
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(3600)
            os._exit(0)
        children += 1
    lifted = lifted or children >= 200
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with open("big.bin", "wb") as f:
            for _ in range(1024):
                f.write(b"x" * (1 << 20))
        lifted = True
    except OSError:
        pass
    return lifted
"""
    graded = Graded(tmp_path, {"honest": MEL, "attacker": gated(attack)}).run()
    graded.check(["honest"], {"attacker": 0})


def test_floods_are_cut_and_never_held(tmp_path):
    # 600 MB of output, a 50 MB exception message, a 100 MB answer and a 10-million-item list: outputs
    # stay a few KB per test, and grade itself never holds the flood (its peak memory is watched).
    attack = '''
import os

flooded = []


def attack():
    if not flooded:
        flooded.append(True)
        chunk = b"x" * (1 << 20)
        for _ in range(600):
            os.write(1, chunk)
        raise RuntimeError("y" * (50 << 20))
    return False


def mel_filterbank(*args, **kwargs):
    attack()
    return torch.zeros(100 << 20, dtype=torch.uint8)


def log_mel(power, filterbank):
    return [0] * 10_000_000
'''
    graded = Graded(tmp_path, {"honest": MEL, "attacker": "import torch\n" + attack}).run(watch_memory=True)
    graded.check(["honest"], {"attacker": 0})
    from ast_min.assignments.runner import OUTPUT_LIMIT

    for row in graded.csv["attacker"]:
        assert len(row["output"]) < OUTPUT_LIMIT + 200, len(row["output"])
    # the grade process itself (Python, torch, the grader) stays far below the 600 MB flood it never keeps
    assert graded.peak_kb < 600 << 10, f"grade's peak resident memory {graded.peak_kb >> 10} MB"


def test_stalls_cost_seconds_not_minutes(tmp_path):
    # Every function sleeps forever; another closes its channels and sleeps, then stalls each reload.
    # Each is graded 0 within 30 s, and the honest submission after them is graded in full.
    sleeper = "import time\n\n\ndef mel_filterbank(*a, **k):\n    time.sleep(10**6)\n\n\n" \
              "def log_mel(*a, **k):\n    time.sleep(10**6)\n"
    staller = '''import os, time

if os.path.exists("loaded-once"):
    time.sleep(10**6)
open("loaded-once", "w").close()


def mel_filterbank(*a, **k):
    os.closerange(0, 4096)
    time.sleep(10**6)


log_mel = mel_filterbank
'''
    graded = Graded(tmp_path, {"sleeper": sleeper, "staller": staller, "honest": MEL}).run()
    graded.check(["honest"], {"sleeper": 0, "staller": 0})
    for name in ("sleeper", "staller"):
        assert graded.json[name]["seconds"] < 30, graded.json[name]
        assert "time limit" in graded.outputs_of(name) or "took more than" in graded.outputs_of(name), \
            graded.outputs_of(name)
