"""Start, watch and clean up grading workers: the trusted side's half of the boundary.

A `Sandbox` holds one submission: when grading as root, a fresh user id that no account and no
file on the machine has (so the submission can read only what every user may read, and can signal
and trace only its own processes), a private folder (mode 700, owned by that id) holding nothing
but a copy of the submission, and the workers started for it. `close()` kills every process of
the submission, however it was started (double-forked, setsid, stopped), and removes every file it
left in the private folder and in the machine's shared temporary folders.

Each `Worker` is `worker.py` run as `python -I -c SOURCE JOB` in its own session, with the
requests on its stdin, the replies on a pipe of its own, and its stdout and stderr read into a
bounded tail (what the student's code prints is never parsed). When bubblewrap (`bwrap`) works on
the machine, the worker also runs in new namespaces (mount, process, network, IPC) seeing only
the system's and Python's folders (read-only, ast-min's own package hidden) and its private folder:
no network, no other process, no instructor file. `isolation()` says which of these applies.

Every wait has a deadline: a reply that does not come in time raises `TimeUp`, a worker that ends
raises `Lost`, and a malformed or oversized reply raises `worker.WireError`.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import random
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ast_min.assignments import worker as wire

WORKER_SOURCE = Path(wire.__file__).read_text()
FIRST_UID = 1_800_000_000  # fresh user ids are drawn above this, where no distribution allocates accounts
OUTPUT_TAIL = 8 << 10  # bytes of a worker's stdout/stderr kept for messages; the rest is counted, not kept
STARTUP_LIMIT = 120.0  # seconds for Python and torch to start in a worker (the grader's own code, not the student's)
FILE_LIMIT = 64 << 20  # bytes: the largest file a submission may write
OPEN_FILES = 256
PROCESSES = 64  # processes and threads of one submission's user id (as root)
MAX_SUBMISSION = 4 << 20  # bytes of a submitted file: a NAME.py is a few KB
SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")


class TimeUp(Exception):
    """The worker did not answer within its deadline (it has been killed)."""


class Lost(Exception):
    """The worker ended (a crash, os._exit, a signal, a limit) before it answered."""

    def __init__(self, status: int | None, output: str):
        super().__init__(f"exit status {status}")
        self.status, self.output = status, output


def is_root() -> bool:
    return os.geteuid() == 0


# ---- isolation ---------------------------------------------------------------------------------------------------

_BWRAP: dict = {}


def isolation() -> str:
    """'bubblewrap' (namespaces), 'user' (root: a fresh user id and limits) or 'none' (limits only: not root)."""
    if bwrap_usable():
        return "bubblewrap"
    return "user" if is_root() else "none"


def bwrap_usable() -> bool:
    """Whether bubblewrap is installed and can start a sandboxed Python here (checked once)."""
    if "usable" not in _BWRAP:
        _BWRAP["usable"], _BWRAP["why"] = _probe_bwrap()
    return _BWRAP["usable"]


def bwrap_problem() -> str:
    bwrap_usable()
    return _BWRAP["why"]


def _probe_bwrap() -> tuple[bool, str]:
    if os.environ.get("AST_MIN_NO_BWRAP"):
        return False, "AST_MIN_NO_BWRAP is set"
    if shutil.which("bwrap") is None:
        return False, "bwrap is not installed"
    folder = Path(_tempdir()) / "probe"
    folder.mkdir()
    uid = _fresh_id() if is_root() else None
    try:
        if uid is not None:
            os.chown(folder, uid, uid)
        command = _command(str(folder), uid, True, [sys.executable, "-I", "-S", "-c", "import sys"])
        try:
            done = subprocess.run(command, capture_output=True, timeout=60, start_new_session=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            return False, lines[-1] if lines else f"exit status {done.returncode}"
        return True, ""
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


# Run as root inside bubblewrap's namespaces: become the submission's user id, then start the worker.
# Dropping the user id clears every capability; the worker then forbids gaining privileges by exec.
_BECOME = "import os, sys\nu = int(sys.argv[1])\nos.setgroups([])\nos.setgid(u)\nos.setuid(u)\nos.execv(sys.argv[2], sys.argv[2:])"


def _command(folder: str, uid: int | None, bwrap: bool, inner: list[str]) -> list[str]:
    """The command line that runs `inner` for a submission: directly, or in bubblewrap (as `uid`, when given)."""
    if not bwrap:
        return inner
    if not is_root():  # bubblewrap makes its namespaces from an unprivileged user namespace
        return _bwrap_prefix(folder, privileged=False) + inner
    become = [] if uid is None else [sys.executable, "-I", "-S", "-c", _BECOME, str(uid)]
    return _bwrap_prefix(folder, privileged=True) + become + inner


def _bwrap_prefix(folder: str, privileged: bool) -> list[str]:
    """bubblewrap's arguments: new namespaces, the system and Python read-only, ast-min hidden, `folder` writable.

    As root bubblewrap needs no user namespace (and must not make one: its root would map to the
    real root); it binds Python's folders even when they sit in a private home (pyenv, conda), and
    the submission's user id is taken inside (`_BECOME`).
    """
    if privileged:
        args = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--die-with-parent", "--new-session"]
    bound = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc"]
    for system in bound:
        args += ["--ro-bind-try", system, system]
    # a private /tmp (and /dev/shm) first: Python's folders may sit under /tmp and are bound over it
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(256 << 20), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(256 << 20), "--tmpfs", "/dev/shm"]
    made: set[str] = {"/tmp", "/dev", "/proc"}

    def parents(path: str) -> list[str]:  # folders bubblewrap would otherwise make private (mode 700)
        out = []
        for parent in reversed(Path(path).parents):
            p = str(parent)
            if p != "/" and p not in made and not _inside(p, bound):
                made.add(p)
                out += ["--perms", "0755", "--dir", p]
        return out

    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), *_python_path(),
                          *_link_folders(sys.executable)}):
        if not _inside(prefix, bound):
            args += parents(prefix) + ["--ro-bind", prefix, prefix]
            bound.append(prefix)
    hidden: list[str] = []
    for library in library_folders():  # ast-min itself, when it is installed inside a folder shown above
        if _inside(library, bound) and not _inside(library, hidden):
            args += ["--tmpfs", library]
            hidden.append(library)
    if os.path.exists("/dev/nvidiactl"):  # a CUDA device: the triton grader's kernels run on it
        for device in sorted(os.listdir("/dev")):
            if device.startswith("nvidia"):
                args += ["--dev-bind-try", f"/dev/{device}", f"/dev/{device}"]
        args += ["--ro-bind-try", "/sys", "/sys"]
    args += parents(folder) + ["--bind", folder, folder, "--chdir", folder, "--"]
    return args


def _link_folders(path: str) -> list[str]:
    """The folders of every link on the way from `path` to the file it names (a venv's python -> ... -> the real one)."""
    folders = []
    for _ in range(40):
        folders.append(os.path.realpath(os.path.dirname(path)))
        if not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return folders


def _python_path() -> list[str]:
    """The folders on the worker's module path (`python -I`: the standard library, site-packages, .pth entries)."""
    if "path" not in _BWRAP:
        done = subprocess.run([sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
                              capture_output=True, text=True, timeout=60)
        paths = json.loads(done.stdout) if done.returncode == 0 else []
        _BWRAP["path"] = [os.path.realpath(p) for p in paths if p and os.path.isdir(p)]
    return _BWRAP["path"]


def _inside(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def unreachable_python() -> str | None:
    """A file the worker's Python needs that other users cannot read (as root without bubblewrap), or None."""
    import numpy
    import torch

    for path in (os.path.realpath(sys.executable), os.path.join(sys.prefix, "pyvenv.cfg"), torch.__file__,
                 numpy.__file__, os.__file__):
        if os.path.exists(path) and not others_can_read(path):
            return path
    return None


def library_folders() -> list[str]:
    """The folders of ast-min's own code (the package, and its kernels when they live apart)."""
    import ast_min
    import ast_min.kernels

    return sorted({os.path.realpath(p) for p in list(ast_min.__path__) + list(ast_min.kernels.__path__)})


def others_can_read(path: str | os.PathLike) -> bool:
    """Whether a user with no relation to the owner can read `path` (every folder above it searchable)."""
    path = os.path.realpath(path)
    try:
        mode = os.stat(path).st_mode
        if not mode & (stat.S_IROTH if not stat.S_ISDIR(mode) else stat.S_IROTH | stat.S_IXOTH):
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def _tempdir() -> str:
    """A fresh folder under the system's temporary folder that other users may pass through but not list."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="ast-min-grading-")
    os.chmod(folder, 0o711 if is_root() else 0o700)
    return folder


# ---- fresh user ids ---------------------------------------------------------------------------------------------


def _fresh_id() -> int:
    """A user id (and the group id of the same number) that no account, group or process has."""
    used = _process_uids()
    low, count = _id_range()
    for _ in range(1000):
        uid = low + random.SystemRandom().randrange(count)
        if uid in used:
            continue
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid
    raise RuntimeError("no free user id found for a submission")


def _id_range() -> tuple[int, int]:
    """Where fresh ids are drawn: above FIRST_UID, or, in a container that maps fewer ids (a user namespace
    of 65536, say), the upper half of what it maps, below nobody's 65534."""
    top = 0
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _, count = (int(x) for x in line.split())
                top = max(top, inside + count)
    except (OSError, ValueError):
        top = 1 << 32
    if top >= FIRST_UID + (1 << 24):
        return FIRST_UID, 1 << 24
    high = min(top, 65534)
    return high // 2, high - high // 2


def _process_uids() -> set[int]:
    uids = set()
    for pid in _pids():
        uid = _uid_of(pid)
        if uid is not None:
            uids.add(uid)
    return uids


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _uid_of(pid: int) -> int | None:
    """The real user id of a live (not zombie) process, None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    if fields.get("State", "").strip().startswith("Z"):
        return None
    return int(fields["Uid"].split()[0])


def _credentials(uid: int | None) -> dict:
    if uid is None:
        return {"start_new_session": True}
    return {"user": uid, "group": uid, "extra_groups": [], "start_new_session": True}


# ---- a worker --------------------------------------------------------------------------------------------------


class Worker:
    """One running worker: send a request, get its reply by a deadline."""

    def __init__(self, process: subprocess.Popen, requests: int, replies: int, output: int, max_reply: int):
        self.process = process
        self.requests, self.replies, self.output = requests, replies, output
        self.max_reply = max_reply
        self.tail = bytearray()
        self.printed = 0  # bytes the student's code wrote to stdout and stderr
        self.pending = bytearray()
        self.next_id = 0
        self.dead = False
        self.memory_capped = False  # whether the kernel limits its address space (Linux)
        try:
            self.pidfd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            self.pidfd = None
        for fd in (requests, replies, output):
            os.set_blocking(fd, False)

    def exchange(self, header: dict, buffers: list, deadline: float) -> tuple[dict, list]:
        """Send one request and return its reply's (header, buffers); TimeUp, Lost or WireError otherwise."""
        if self.dead:
            raise Lost(self.process.returncode, self.output_tail())
        self._refuse_unasked()
        self.next_id += 1
        header = {**header, "id": self.next_id}
        request = b"".join(bytes(c) for c in wire.pack(header, buffers))
        reply = self._round_trip(request, deadline)
        if reply[0].get("id") != self.next_id:
            raise wire.WireError("a reply to a request that was not made")
        return reply

    def wait_ready(self, deadline: float) -> dict:
        header, _ = self._round_trip(b"", deadline)
        if not header.get("ready"):
            raise wire.WireError("the worker did not start properly")
        self.memory_capped = header.get("memory_capped") is True
        return header

    def _refuse_unasked(self) -> None:
        """Bytes on the reply channel when nothing was asked: a forged reply, refused with the worker."""
        if self.pending:
            raise wire.WireError("the worker sent data nobody asked for")
        try:
            extra = os.read(self.replies, 1)
        except BlockingIOError:
            return
        if extra:
            raise wire.WireError("the worker sent data nobody asked for")

    def _round_trip(self, request: bytes, deadline: float) -> tuple[dict, list]:
        out = memoryview(request)
        reply = bytearray()
        expected = None
        while True:
            if expected is not None and len(reply) >= 8 + expected:
                if len(reply) > 8 + expected:
                    raise wire.WireError("the worker sent data nobody asked for")
                return wire.unpack(memoryview(reply)[8:])
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise TimeUp()
            readers = [self.replies, self.output] + ([self.pidfd] if self.pidfd is not None else [])
            readable, writable, _ = select.select(readers, [self.requests] if out else [], [], min(left, 0.5))
            if self.output in readable:
                self._drain_output()
            if out and self.requests in writable:
                try:
                    out = out[os.write(self.requests, out) :]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, OSError):
                    self._lost()
            if self.replies in readable:
                try:
                    chunk = os.read(self.replies, 1 << 20)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    self._lost()
                if chunk:
                    reply += chunk
                    if expected is None and len(reply) >= 8:
                        (expected,) = struct.unpack_from("<Q", reply)
                        if expected > self.max_reply + wire.MAX_HEADER:
                            self.kill()
                            raise wire.WireError(f"a reply of {expected} bytes, over the limit of "
                                                 f"{self.max_reply >> 20} MB")
                    continue
            if (self.pidfd is not None and self.pidfd in readable) or (self.pidfd is None and self.process.poll() is not None):
                if self.replies not in readable:
                    self._lost()

    def _lost(self):
        self.kill()
        raise Lost(self.process.returncode, self.output_tail())

    def _drain_output(self, until: float | None = None) -> None:
        while True:
            try:
                chunk = os.read(self.output, 1 << 16)
            except BlockingIOError:
                if until is None or time.monotonic() > until:
                    return
                select.select([self.output], [], [], max(0.0, min(0.05, until - time.monotonic())))
                continue
            except OSError:
                return
            if not chunk:
                return
            self.printed += len(chunk)
            self.tail += chunk
            del self.tail[:-OUTPUT_TAIL]

    def output_tail(self, lines: int = 6) -> str:
        text = self.tail.decode(errors="replace").strip().splitlines()[-lines:]
        return "\n".join(line[:300] for line in text)

    def kill(self) -> None:
        """SIGKILL the worker's whole session; reap it. Idempotent."""
        if self.dead:
            return
        self.dead = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.kill()
        except ProcessLookupError:
            pass
        self.process.wait()
        self._drain_output(until=time.monotonic() + 0.2)
        for fd in (self.requests, self.replies, self.output) + ((self.pidfd,) if self.pidfd is not None else ()):
            try:
                os.close(fd)
            except OSError:
                pass


# ---- a submission's sandbox ---------------------------------------------------------------------------------


@dataclass
class WorkerSettings:
    """What a worker is started with: the grader's environment and forbidden names, and its limits."""

    env: dict
    forbidden: tuple
    memory: int | None  # bytes of address space above what Python, torch and the warm-up map; None: no cap
    cpu_seconds: int
    max_reply: int


class Sandbox:
    """One submission's user id, private folder and workers; `close()` leaves nothing of it behind."""

    def __init__(self, submission: Path, filename: str, base: str, isolate: bool = True):
        """isolate: as root, run the submission as a fresh user id (`grade`); False: as the caller (`check`)."""
        self.root = is_root() and isolate
        self.bwrap = bwrap_usable()
        if self.root and not self.bwrap:
            private = unreachable_python()
            if private is not None:
                raise RuntimeError(
                    f"submissions cannot run as another user here: {private} is not readable by other users (a "
                    "folder above it is private); install bubblewrap (it shows Python to the sandbox), or grade "
                    "with a Python that every user can read"
                )
        self.uid = _fresh_id() if self.root else None
        self.token = secrets.token_hex(8)
        self.folder = Path(base) / f"submission-{self.token}"
        self.folder.mkdir(mode=0o700)
        self.file = self.folder / filename
        data = read_submission(submission)
        with open(self.file, "xb") as f:
            f.write(data)
        if self.uid is not None:
            os.chown(self.folder, self.uid, self.uid)
            os.chown(self.file, self.uid, self.uid)
        self.workers: list[Worker] = []

    def start(self, settings: WorkerSettings, deadline: float) -> Worker:
        """A new worker, ready for requests (torch imported, limits set); raises Lost or TimeUp if it does not start."""
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        output_r, output_w = os.pipe()
        limits = {"RLIMIT_CPU": max(1, int(settings.cpu_seconds)), "RLIMIT_FSIZE": FILE_LIMIT,
                  "RLIMIT_NOFILE": OPEN_FILES, "RLIMIT_CORE": 0}
        if self.uid is not None:  # counts every process of the user id: only a fresh one makes it the submission's own
            limits["RLIMIT_NPROC"] = PROCESSES
        job = {"limits": limits, "replies": replies_w, "memory": settings.memory, "forbidden": list(settings.forbidden),
               "max_reply": settings.max_reply}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.folder), "TMPDIR": str(self.folder),
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "USER": "student", "LOGNAME": "student",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0", "AST_MIN_GRADING": self.token, **settings.env}
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        command = _command(str(self.folder), self.uid, self.bwrap,
                           [sys.executable, "-I", "-c", WORKER_SOURCE, json.dumps(job)])
        # bubblewrap starts as this process's user (root takes the submission's id inside); otherwise
        # the worker is started as the submission's user id directly
        credentials = _credentials(None if self.bwrap else self.uid)
        try:
            process = subprocess.Popen(command, stdin=requests_r, stdout=output_w, stderr=output_w,
                                       pass_fds=(replies_w,), cwd=self.folder, env=env, close_fds=True,
                                       **credentials)
        except BaseException:
            for fd in (requests_w, replies_r, output_r):
                os.close(fd)
            raise
        finally:
            for fd in (requests_r, replies_w, output_w):
                os.close(fd)
        worker = Worker(process, requests_w, replies_r, output_r, settings.max_reply)
        self.workers.append(worker)
        worker.wait_ready(deadline)
        return worker

    def kill_all(self) -> None:
        """Kill every process of the submission (its workers and anything they started)."""
        for worker in self.workers:
            worker.kill()
        self.workers = []
        if self.uid is not None:
            _kill_user(self.uid)
        else:
            _kill_marked(self.token)

    def close(self) -> None:
        """Kill every process of the submission and remove every file it left."""
        self.kill_all()
        if self.uid is not None:
            _remove_files_of(self.uid)
        shutil.rmtree(self.folder, ignore_errors=True)


# Started as root, becomes `uid` and sends SIGKILL to every process it may signal: exactly those of `uid`.
# (Becoming the user in-process, not by exec, so that a Python in a private home folder serves too.)
_KILL_ALL = "import os, signal, sys\nu = int(sys.argv[1])\nos.setgroups([])\nos.setgid(u)\nos.setuid(u)\nos.kill(-1, signal.SIGKILL)"


def _kill_user(uid: int) -> None:
    """SIGKILL every process of `uid`, from a process of that uid (kill(-1) reaches exactly those), until none is left."""
    for attempt in range(50):
        if not any(_uid_of(pid) == uid for pid in _pids()):
            return
        subprocess.run([sys.executable, "-I", "-S", "-c", _KILL_ALL, str(uid)], cwd="/", env={}, close_fds=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.02 * attempt)
    raise RuntimeError(f"processes of user id {uid} survive SIGKILL")


def _kill_marked(token: str) -> None:
    """Without root: SIGKILL the processes that still carry the submission's marker in their environment."""
    marker = f"AST_MIN_GRADING={token}".encode()
    for _ in range(5):
        found = False
        for pid in _pids():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker not in f.read().split(b"\0"):
                        continue
                os.kill(pid, signal.SIGKILL)
                found = True
            except (OSError, ProcessLookupError):
                continue
        if not found:
            return
        time.sleep(0.05)


def _remove_files_of(uid: int, roots=SHARED_TEMP, limit: int = 100_000) -> None:
    """Remove what `uid` left in the shared temporary folders (never following a link)."""
    seen = 0
    stack = [r for r in roots if os.path.isdir(r)]
    while stack and seen < limit:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid:
                try:
                    if stat.S_ISDIR(info.st_mode):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    pass
            elif stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:  # another shared folder inside
                stack.append(entry.path)


def read_submission(path: str | os.PathLike) -> bytes:
    """The submitted file's bytes; never through a symbolic link (as root it could name any file), at most MAX_SUBMISSION.

    ValueError naming the problem otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link: submit the file itself") from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = f.read(MAX_SUBMISSION + 1)
    if len(data) > MAX_SUBMISSION:
        raise ValueError(f"{path} is larger than {MAX_SUBMISSION >> 20} MB: submit the assignment's .py file only")
    return data


def make_base() -> str:
    """The folder that holds one grading's private folders (removed by `remove_base`)."""
    return _tempdir()


def remove_base(base: str) -> None:
    shutil.rmtree(base, ignore_errors=True)


__all__ = ["Lost", "Sandbox", "TimeUp", "Worker", "WorkerSettings", "bwrap_problem", "isolation", "is_root",
           "make_base", "others_can_read", "remove_base"]
