"""ast-min grading worker: the untrusted side of grading, and the wire format both sides speak.

The worker is the only process that runs a student's code. It is started by `sandbox.py` as its
own program, `python -I -c <this file's source> JOB`, under its own user id when grading as root,
and it never imports ast-min: only the standard library, numpy and torch (and what the student's
file imports, e.g. triton). It

1. lowers its own resource limits, hard = soft (CPU seconds, file size, open files, processes,
   core dumps, stack; and, once torch is imported and warmed up, the address space), so that
   nothing it later runs can raise them again;
2. makes `import ast_min` give a stand-in whose every function refuses to run (the honour code:
   graded code is the student's own), and wraps the forbidden torch entry points so that a call
   made inside a graded function is reported;
3. loads the student's file and then answers requests, one at a time: call a function (or an
   object it returned earlier) on the arguments sent, or read an attribute of such an object.

Everything crosses as plain data in length-prefixed frames that cannot execute anything when read:

    frame  = u64 length (little-endian) | u32 header length | header (JSON, UTF-8) | buffers
    header = {..., "buffers": [byte length of each buffer]}

A value in a header is JSON null, a boolean, a number, a string, or a one-kind object:
{"list": [...]}, {"tuple": [...]}, {"dict": [[key, value], ...]}, {"float": "nan" | "inf" |
"-inf"}, {"tensor": i, "dtype", "shape"} and {"ndarray": i, "dtype", "shape"} whose bytes are
buffer i (little-endian, C order), {"torch_dtype": name}, {"device": name}; a worker's object that
is none of these stays in the worker and crosses as {"handle": id, "type": name}; the grading side
may send {"remote": id} (such an object) and {"build": name, "data": value} (an object the worker
builds from plain data, e.g. a model from its settings and weights). `Decoder` checks every value it
reads (kinds, dtypes, shapes against the bytes, depth, counts, each buffer used once), so a reply
is data of a known size or an error, never code.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import traceback

# ---- the wire format ----------------------------------------------------------------------------------

MAX_HEADER = 1 << 20  # bytes of JSON in one frame: descriptions, not data
MAX_DEPTH = 32  # nesting of lists, tuples and dicts
MAX_NODES = 100_000  # values in one frame
MAX_TEXT = 64 << 10  # characters of one string
MAX_DIMS = 32  # dimensions of one array
TENSOR_DTYPES = ("float64", "float32", "float16", "bfloat16", "complex128", "complex64",
                 "int64", "int32", "int16", "int8", "uint8", "bool")
ARRAY_DTYPES = ("float64", "float32", "float16", "complex128", "complex64", "int64", "int32", "int16", "int8",
                "uint64", "uint32", "uint16", "uint8", "bool")
_FRAME = struct.Struct("<QI")


class WireError(ValueError):
    """A frame or value that breaks the format or its limits."""


class Unsendable(WireError):
    """A value with no plain-data form (the worker keeps such objects as handles)."""


def _little(name: str):
    import numpy as np

    return np.dtype(name).newbyteorder("<") if np.dtype(name).itemsize > 1 else np.dtype(name)


class Encoder:
    """Turns a value into a header tree and a list of buffers.

    objects(value) -> tree | None describes values of other kinds (handles, shipped objects);
    max_bytes bounds the buffers' total.
    """

    def __init__(self, objects=None, max_bytes: int | None = None):
        self.objects = objects
        self.max_bytes = max_bytes
        self.buffers: list = []
        self.nbytes = 0
        self.nodes = 0

    def _buffer(self, data) -> int:
        view = memoryview(data).cast("B")
        self.nbytes += view.nbytes
        if self.max_bytes is not None and self.nbytes > self.max_bytes:
            raise WireError(f"more than {self.max_bytes >> 20} MB of data")
        self.buffers.append(view)
        return len(self.buffers) - 1

    def encode(self, value, depth: int = 0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise WireError(f"more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise WireError(f"nested more than {MAX_DEPTH} deep")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            value = float(value)
            return value if value == value and abs(value) != float("inf") else {"float": repr(value)}
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise WireError(f"a string of more than {MAX_TEXT} characters")
            return str(value)
        torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
        if torch is not None and isinstance(value, torch.Tensor):
            return self._tensor(torch, value)
        if np is not None and isinstance(value, np.ndarray):
            return self._array(np, value)
        if np is not None and isinstance(value, np.generic):
            return self.encode(value.item(), depth)
        if torch is not None and isinstance(value, torch.dtype):
            return {"torch_dtype": str(value).replace("torch.", "")}
        if torch is not None and isinstance(value, torch.device):
            return {"device": str(value)}
        if isinstance(value, tuple):
            return {"tuple": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, list):
            return {"list": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        described = self.objects(value) if self.objects is not None else None
        if described is None:
            raise Unsendable(f"a {type(value).__name__} has no plain-data form")
        return described

    def _tensor(self, torch, t):
        t = t.detach()
        if type(t) is not torch.Tensor:
            t = t.as_subclass(torch.Tensor)
        if t.layout != torch.strided:
            raise Unsendable(f"a {t.layout} tensor: send a dense one")
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in TENSOR_DTYPES:
            raise Unsendable(f"a tensor of dtype {dtype}")
        t = t.to("cpu").resolve_conj().resolve_neg().contiguous()
        data = t.view(torch.int16) if dtype == "bfloat16" else t
        array = data.numpy()
        node = {"tensor": self._buffer(array.reshape(-1).view("uint8") if array.size else b""),
                "dtype": dtype, "shape": list(t.shape)}
        return node

    def _array(self, np, a):
        dtype = a.dtype.name
        if dtype not in ARRAY_DTYPES:
            raise Unsendable(f"a numpy array of dtype {a.dtype}")
        shape = list(a.shape)  # (np.ascontiguousarray would make a 0-d array 1-d)
        a = np.ascontiguousarray(a.astype(_little(dtype), copy=False))
        return {"ndarray": self._buffer(a.reshape(-1).view("uint8") if a.size else b""), "dtype": dtype,
                "shape": shape}


class Decoder:
    """Turns a header tree and its buffers back into values, checking everything; WireError if anything is off.

    objects(node) -> value reads the kinds beyond plain data that this side accepts ("handle" on the
    grading side; "remote" and "build" in the worker); any other kind is an error.
    """

    PLAIN = {"list", "tuple", "dict", "float", "tensor", "ndarray", "torch_dtype", "device"}

    def __init__(self, buffers: list, objects=None, object_kinds: frozenset = frozenset()):
        self.buffers = buffers
        self.used: set[int] = set()
        self.objects = objects
        self.object_kinds = object_kinds
        self.nodes = 0

    def decode(self, node, depth: int = 0):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise WireError(f"more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise WireError(f"nested more than {MAX_DEPTH} deep")
        if node is None or isinstance(node, (bool, float)):
            return node
        if isinstance(node, int):
            if abs(node) >= 1 << 64:
                raise WireError("an integer of more than 64 bits")
            return node
        if isinstance(node, str):
            if len(node) > MAX_TEXT:
                raise WireError(f"a string of more than {MAX_TEXT} characters")
            return node
        if not isinstance(node, dict) or not node:
            raise WireError(f"a value of unknown form ({type(node).__name__})")
        kind = next(iter(node))
        if kind in self.object_kinds and self.objects is not None:
            return self.objects(node, self, depth)
        if kind not in self.PLAIN:
            raise WireError(f"a value of unknown kind {kind!r}")
        if kind in ("list", "tuple"):
            items = self._only(node, {kind})[kind]
            if not isinstance(items, list):
                raise WireError(f"a {kind} that is not a list")
            values = [self.decode(v, depth + 1) for v in items]
            return values if kind == "list" else tuple(values)
        if kind == "dict":
            pairs = self._only(node, {"dict"})["dict"]
            if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise WireError("a dict that is not a list of pairs")
            out = {}
            for k, v in pairs:
                key = self.decode(k, depth + 1)
                if not (key is None or isinstance(key, (bool, int, float, str))):
                    raise WireError("a dict key that is not a number or a string")
                out[key] = self.decode(v, depth + 1)
            return out
        if kind == "float":
            text = self._only(node, {"float"})["float"]
            if text not in ("nan", "inf", "-inf"):
                raise WireError(f"a float written as {text!r}")
            return float(text)
        if kind == "torch_dtype":
            import torch

            name = self._only(node, {"torch_dtype"})["torch_dtype"]
            if name not in TENSOR_DTYPES:
                raise WireError(f"an unknown torch dtype {name!r}")
            return getattr(torch, name)
        if kind == "device":
            import torch

            name = self._only(node, {"device"})["device"]
            if not isinstance(name, str) or name.split(":")[0] not in ("cpu", "cuda"):
                raise WireError(f"an unknown device {name!r}")
            return torch.device(name)
        return self._array_node(node, kind)

    @staticmethod
    def _only(node: dict, keys: set) -> dict:
        if set(node) != keys:
            raise WireError(f"a value with fields {sorted(node)}, expected {sorted(keys)}")
        return node

    def _array_node(self, node: dict, kind: str):
        import numpy as np

        self._only(node, {kind, "dtype", "shape"})
        index, dtype, shape = node[kind], node["dtype"], node["shape"]
        allowed = TENSOR_DTYPES if kind == "tensor" else ARRAY_DTYPES
        if dtype not in allowed:
            raise WireError(f"an array of dtype {dtype!r}")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.buffers):
            raise WireError("an array without its data")
        if index in self.used:
            raise WireError("two arrays sharing one buffer")
        self.used.add(index)
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise WireError(f"an array of shape {shape!r}")
        storage = "int16" if dtype == "bfloat16" else "uint8" if dtype == "bool" else dtype
        count = 1
        for d in shape:
            count *= d
        data = self.buffers[index]
        if count * np.dtype(storage).itemsize != len(data):
            raise WireError(f"an array of shape {tuple(shape)} and dtype {dtype} with {len(data)} bytes of data")
        array = np.frombuffer(data, dtype=_little(storage), count=count).reshape(shape).astype(storage, copy=True)
        if dtype == "bool":  # any nonzero byte is True: a bool array never holds another value
            array = array.astype(bool)
        if kind == "ndarray":
            return array
        import torch

        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def pack(header: dict, buffers: list) -> list:
    """The frame for `header` and `buffers` as a list of byte strings (header["buffers"] is filled in)."""
    header = {**header, "buffers": [memoryview(b).nbytes for b in buffers]}
    text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER:
        raise WireError(f"a description of more than {MAX_HEADER >> 20} MB")
    total = 4 + len(text) + sum(header["buffers"])
    return [_FRAME.pack(total, len(text)), text, *buffers]


def unpack(body: memoryview | bytes) -> tuple[dict, list]:
    """(header, buffers) from a frame's body (everything after the u64 length); WireError if malformed."""
    body = memoryview(body)
    if len(body) < 4:
        raise WireError("a frame too short for its header length")
    (size,) = struct.unpack_from("<I", body)
    if size > MAX_HEADER or 4 + size > len(body):
        raise WireError("a frame whose header does not fit")

    def refuse(token):
        raise WireError(f"the JSON token {token} (floats travel as {{'float': ...}})")

    try:
        header = json.loads(bytes(body[4 : 4 + size]).decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError) as e:
        raise WireError(f"a header that is not JSON ({str(e)[:100]})") from None
    if not isinstance(header, dict) or not isinstance(header.get("buffers"), list):
        raise WireError("a header that is not an object with a buffer list")
    lengths = header["buffers"]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths):
        raise WireError("buffer lengths that are not sizes")
    if 4 + size + sum(lengths) != len(body):
        raise WireError("buffer lengths that do not add up to the frame")
    buffers, at = [], 4 + size
    for n in lengths:
        buffers.append(body[at : at + n])
        at += n
    return header, buffers


def write_all(fd: int, chunks: list) -> None:
    """Write every chunk to a blocking fd."""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view:
            view = view[os.write(fd, view) :]


def read_frame(fd: int) -> tuple[dict, list] | None:
    """One frame from a blocking fd (the worker's request channel); None at the end of the stream."""
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    (total,) = struct.unpack("<Q", head)
    body = _read_exactly(fd, total)
    if body is None:
        return None
    return unpack(body)


def _read_exactly(fd: int, n: int) -> bytearray | None:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, min(n - len(out), 1 << 20))
        if not chunk:
            return None
        out += chunk
    return out


def student_frame(exc: BaseException, filename: str | None) -> str:
    """' (line N of your file: code)' for the deepest traceback frame in `filename`, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if filename and f.filename == filename]
    if not frames:
        return ""
    f = frames[-1]
    return f" (line {f.lineno} of your file: {f.line})"


# ---- the honour code inside the worker ----------------------------------------------------------------


def error_report(e: BaseException, calls: list, filename: str | None) -> dict:
    """What went wrong in a graded call, as plain data for the grading side's message."""
    if calls:
        return {"kind": "honour", "calls": sorted(set(calls))[:20]}
    if isinstance(e, NotImplementedError):
        return {"kind": "not_written", "message": _text(e)}
    if isinstance(e, SystemExit):
        return {"kind": "exit", "message": _text(e.code)}
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in _text(e)):
        return {"kind": "memory", "message": _text(e).splitlines()[0] if _text(e) else ""}
    return {"kind": "exception", "type": type(e).__name__[:80], "message": _text(e), "where": student_frame(e, filename)}


def op_recorder(watch):
    """A context noting which of the torch operations named in `watch` (aten names: "mm", "exp") run inside it.

    Evidence from inside the student's process, which that process could switch off: it tells an
    honest student that a computation meant for a kernel ran in torch, and is no defence
    (docs/TEACHING.md, "Threat model"). With nothing to watch it records nothing.
    """
    import contextlib
    import types

    if not watch:
        return contextlib.nullcontext(types.SimpleNamespace(ops=set()))
    from torch.utils._python_dispatch import TorchDispatchMode

    names = frozenset(watch)

    class OpRecorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in names:
                self.ops.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    return OpRecorder()


class HonourCodeCall(Exception):
    """Raised by ast-min's stand-in: graded code runs without ast-min."""


class Guard:
    """Notes calls into forbidden entry points while a graded function runs.

    Torch's entry points (e.g. torch.nn.functional.scaled_dot_product_attention) are wrapped before
    the student's file is imported, so `from torch.nn.functional import ...` binds the wrapper; a
    class has its __init__ and forward wrapped. ast-min itself is not there to call (`NoAstMin`).
    This is a teaching aid inside the student's own process, not a boundary: code determined to
    reach torch's fused kernels another way can (docs/TEACHING.md, "Threat model").
    """

    def __init__(self):
        self.active = False
        self.calls: list[str] = []

    def note(self, name: str) -> None:
        if self.active:
            self.calls.append(name)

    def _wrap(self, function, name: str):
        guard = self

        def wrapper(*args, **kwargs):
            guard.note(name)
            return function(*args, **kwargs)

        wrapper.__wrapped__ = function
        wrapper.__name__ = getattr(function, "__name__", name)
        wrapper.__doc__ = getattr(function, "__doc__", None)
        return wrapper

    def arm(self, forbidden) -> None:
        from importlib import import_module

        for dotted in forbidden:
            module_name, _, attribute = dotted.rpartition(".")
            try:  # a whole module: every function and class it defines
                module = import_module(dotted)
                names = [n for n, v in vars(module).items()
                         if callable(v) and getattr(v, "__module__", "").startswith(dotted) and not n.startswith("__")]
            except ImportError:
                try:
                    module, names = import_module(module_name), [attribute]
                except ImportError:
                    continue
            for name in names:
                value = getattr(module, name, None)
                label = f"{module.__name__}.{name}"
                if isinstance(value, type):
                    for method in ("__init__", "forward"):
                        if method in vars(value):
                            setattr(value, method, self._wrap(vars(value)[method], f"{label}.{method}"))
                elif callable(value):
                    setattr(module, name, self._wrap(value, label))


class _Refused:
    """ast-min's stand-in for any attribute: calling it is noted and refused."""

    def __init__(self, name: str, guard: Guard):
        self._name, self._guard = name, guard

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _Refused(f"{self._name}.{attribute}", self._guard)

    def __call__(self, *args, **kwargs):
        self._guard.calls.append(self._name)
        raise HonourCodeCall(f"{self._name} is ast-min's own implementation; graded code runs without ast-min")

    def __repr__(self) -> str:
        return f"<{self._name}: not available to graded code>"


def no_ast_min(guard: Guard):
    """A meta-path finder that answers every `import ast_min...` with a module of refusing stand-ins."""
    import importlib.abc
    import importlib.util
    import types

    class Module(types.ModuleType):
        def __getattr__(self, attribute):
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            return _Refused(f"{self.__name__}.{attribute}", guard)

    class NoAstMin(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "ast_min" or fullname.startswith("ast_min."):
                return importlib.util.spec_from_loader(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            return Module(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    return NoAstMin()


# ---- the worker ----------------------------------------------------------------------------------------


def _set_limits(limits: dict, strict: bool) -> None:
    """Each limit with hard = soft: a process can lower a hard limit but never raise it again.

    strict (Linux, where grading is done): a limit that cannot be set stops the worker; elsewhere
    (a student's `check` on another system) the limits that system has are set.
    """
    import resource

    for name, value in limits.items():
        try:
            which = getattr(resource, name)
            _, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
        except (AttributeError, ValueError, OSError):
            if strict:
                raise


def _mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def _warm_up(torch) -> None:
    """Touch what a first graded call would (BLAS, autograd, the allocator) before the address space is measured."""
    for dtype in (torch.float64, torch.float32):
        a = torch.randn(64, 64, dtype=dtype, requires_grad=True)
        (a @ a).softmax(-1).sum().backward()
    torch.arange(10).unfold(0, 3, 2).clone()


class Worker:
    def __init__(self, job: dict):
        self.job = job
        self.requests, self.replies = job["requests"], job["replies"]
        self.guard = Guard()
        self.handles: dict[int, object] = {}
        self.builders: dict[str, object] = {}
        self.student = None
        self.filename = None

    # -- replies
    def send(self, header: dict, buffers: list = ()) -> None:
        write_all(self.replies, pack(header, list(buffers)))

    def send_value(self, request_id, value) -> None:
        encoder = Encoder(objects=self._handle, max_bytes=self.job["max_reply"])
        try:
            tree = encoder.encode(value)
        except WireError as e:
            self.send({"id": request_id, "error": {"kind": "unsendable", "type": type(value).__name__,
                                                   "message": str(e)}})
            return
        self.send({"id": request_id, "value": tree}, encoder.buffers)

    def _handle(self, value):
        key = len(self.handles) + 1
        self.handles[key] = value
        return {"handle": key, "type": type(value).__name__[:80]}

    def _objects(self, node, decoder: Decoder, depth: int):
        kind = next(iter(node))
        if kind == "remote":
            key = Decoder._only(node, {"remote"})["remote"]
            if key not in self.handles:
                raise WireError(f"no object {key!r} here")
            return self.handles[key]
        Decoder._only(node, {"build", "data"})
        builder = self.builders.get(node["build"])
        if builder is None:
            raise WireError(f"nothing builds {node['build']!r} here")
        return builder(decoder.decode(node["data"], depth + 1))

    # -- requests
    def load(self, request: dict) -> None:
        import importlib.util
        import types

        for name, source in request.get("modules", {}).items():  # the grader's own helper modules
            module = types.ModuleType(name)
            module.__file__ = f"<{name}>"
            sys.modules[name] = module
            exec(compile(source, f"<{name}>", "exec"), module.__dict__)
            self.builders.update(getattr(module, "BUILDERS", {}))
        path = request["path"]
        self.filename = path
        spec = importlib.util.spec_from_file_location("submission", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["submission"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as e:  # SyntaxError (its text names the file and line), ImportError, sys.exit, ...
            self.send({"id": request.get("id"), "error": {"kind": "load", "type": type(e).__name__[:80],
                                                          "message": _text(e), "where": student_frame(e, path)}})
            return
        self.student = module
        self.send({"id": request.get("id"), "loaded": True})

    def call(self, request: dict, buffers: list) -> None:
        request_id = request.get("id")
        try:
            decoder = Decoder(buffers, self._objects, frozenset({"remote", "build"}))
            target = request["target"]
            if "function" in target:
                function = getattr(self.student, target["function"], None)
                if not callable(function):
                    self.send({"id": request_id, "error": {"kind": "no_function"}})
                    return
            else:
                function = self.handles[target["handle"]]
            args = decoder.decode(request["args"])
            kwargs = decoder.decode(request["kwargs"])
        except (KeyError, WireError) as e:
            self.send({"id": request_id, "error": {"kind": "protocol", "message": str(e)}})
            return
        self._seed(request.get("seed", 0))
        import torch

        watch = request.get("watch", [])
        if not (isinstance(watch, list) and all(isinstance(w, str) for w in watch)):
            self.send({"id": request_id, "error": {"kind": "protocol", "message": "watch: a list of op names"}})
            return
        self.guard.calls.clear()
        self.guard.active = True
        try:
            with torch.set_grad_enabled(bool(request.get("grad", True))), op_recorder(watch) as seen:
                if "attribute" in request:
                    result = getattr(function, request["attribute"])
                else:
                    result = function(*args, **kwargs)
            if watch:
                result = {"result": result, "ops": sorted(seen.ops)}
        except BaseException as e:
            self.guard.active = False
            self.send({"id": request_id, "error": error_report(e, self.guard.calls, self.filename)})
            return
        finally:
            self.guard.active = False
        if self.guard.calls:
            self.send({"id": request_id, "error": {"kind": "honour", "calls": sorted(set(self.guard.calls))[:20]}})
            return
        self.send_value(request_id, result)

    def keep(self, request: dict, buffers: list) -> None:
        """Build an object the grading side sent (e.g. a model) and keep it here; the reply is its handle."""
        try:
            value = Decoder(buffers, self._objects, frozenset({"remote", "build"})).decode(request["value"])
        except (KeyError, WireError) as e:
            self.send({"id": request.get("id"), "error": {"kind": "protocol", "message": str(e)}})
            return
        self.send({"id": request.get("id"), "value": self._handle(value)})

    @staticmethod
    def _seed(seed: int) -> None:
        """The same draws for the same grading: torch's, numpy's and random's generators, from the grading side's value."""
        import random

        import numpy as np
        import torch

        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def serve(self) -> None:
        while True:
            try:
                frame = read_frame(self.requests)
            except (OSError, WireError):
                return
            if frame is None:
                return
            request, buffers = frame
            op = request.get("op")
            if op == "load":
                self.load(request)
            elif op == "call":
                self.call(request, buffers)
            elif op == "keep":
                self.keep(request, buffers)
            else:
                self.send({"id": request.get("id"), "error": {"kind": "protocol", "message": f"unknown op {op!r}"}})


def _text(value, limit: int = 4000) -> str:
    """str(value), cut to `limit` characters (the grading side cuts again: this only saves sending it)."""
    try:
        text = str(value)
    except BaseException:  # a student's exception whose __str__ fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _no_new_privileges() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): no program this process runs gains rights by exec (set-user-id files stay inert)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    linux = sys.platform.startswith("linux")
    if linux:
        _no_new_privileges()
    _set_limits(job["limits"], strict=linux)
    # the channels move out of the way: the student's input() reads nothing, and fds 0..2 are ordinary
    requests, replies = os.dup(0), os.dup(job["replies"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if job["replies"] not in (0, 1, 2):
        os.close(job["replies"])
    job["requests"], job["replies"] = requests, replies
    sys.stdin = open(os.devnull)

    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    _warm_up(torch)
    capped = False
    if job.get("memory") is not None and linux:  # from here on, at most `memory` more bytes of address space
        import resource

        cap = _mapped_bytes() + job["memory"]
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        capped = True
    worker = Worker(job)
    sys.meta_path.insert(0, no_ast_min(worker.guard))
    worker.guard.arm(job.get("forbidden", ()))
    # sent before anything of the student's runs: the grading side may rely on what it says
    worker.send({"ready": True, "memory_capped": capped, "started": time.time()})
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
