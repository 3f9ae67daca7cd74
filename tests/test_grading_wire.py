"""The wire format between the grader and the student's process: plain data both ways, every reply checked.

Values round-trip exactly (tensors of every dtype sent, arrays, numbers with NaN and infinities,
strings, nested lists, tuples and dicts); anything that is not a well-formed frame of known kinds
with consistent sizes is refused with a WireError, before any of it becomes a value. Nothing in a
frame is ever executed: there is no pickle anywhere to unpickle.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_min.assignments import worker as wire


def round_trip(value, object_kinds=frozenset(), objects=None):
    encoder = wire.Encoder()
    tree = encoder.encode(value)
    frame = b"".join(bytes(c) for c in wire.pack({"value": tree}, encoder.buffers))
    (total,) = struct.unpack_from("<Q", frame)
    assert total == len(frame) - 8
    header, buffers = wire.unpack(frame[8:])
    return wire.Decoder(buffers, objects, object_kinds).decode(header["value"])


def decode(header: dict, buffers: list[bytes] = (), **kw):
    """Decode a hand-made header and buffers through the real framing (what a forging process could send)."""
    frame = b"".join(bytes(c) for c in wire.pack(header, list(buffers)))
    parsed, views = wire.unpack(frame[8:])
    return wire.Decoder(views, **kw).decode(parsed["value"])


def tensor_bytes(t: torch.Tensor) -> bytes:
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def same(a, b) -> bool:
    """Equal in type, dtype, shape and every bit (so NaNs compare equal to themselves)."""
    if isinstance(a, torch.Tensor):
        return (type(b) is torch.Tensor and a.dtype == b.dtype and a.shape == b.shape
                and tensor_bytes(a) == tensor_bytes(b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


TORCH_DTYPES = [getattr(torch, name) for name in wire.TENSOR_DTYPES]
shapes = st.lists(st.integers(0, 4), max_size=4)


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    shape = draw(shapes)
    raw = torch.randint(0, 256, (int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size(),),
                        generator=torch.Generator().manual_seed(draw(st.integers(0, 2**16))), dtype=torch.uint8)
    if dtype == torch.bool:  # a bool's byte is 0 or 1 (other bytes: test_bool_arrays_hold_only_true_and_false)
        return (raw % 2).to(torch.bool).reshape(shape)
    return raw.view(dtype).reshape(shape)  # every bit pattern, NaNs and infinities included


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(
    st.one_of(scalars, tensors(), st.builds(lambda t: t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy(),
                                            tensors())),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-5, 5)), inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=200)
@given(values)
def test_plain_data_round_trips_exactly(value):
    assert same(value, round_trip(value))


def test_a_tensor_subclass_crosses_as_its_values_only():
    class Liar(torch.Tensor):
        pass

    got = round_trip(torch.arange(6.0).reshape(2, 3).as_subclass(Liar))
    assert type(got) is torch.Tensor and torch.equal(got, torch.arange(6.0).reshape(2, 3))


def test_objects_cross_only_where_the_receiver_accepts_them():
    class Model:
        pass

    with pytest.raises(wire.Unsendable):
        round_trip(Model())
    with pytest.raises(wire.WireError, match="unknown kind"):  # the grading side never accepts "build" or "remote"
        decode({"value": {"build": "anything", "data": None}})
    with pytest.raises(wire.WireError, match="unknown kind"):
        decode({"value": {"handle": 1, "type": "x"}})  # nor handles, unless it says so
    seen = []
    decode({"value": {"handle": 1, "type": "x"}}, objects=lambda node, d, depth: seen.append(node),
           object_kinds=frozenset({"handle"}))
    assert seen == [{"handle": 1, "type": "x"}]


BYTES8 = bytes(8)


@pytest.mark.parametrize("header, buffers, match", [
    ({"value": {"tensor": 0, "dtype": "float64", "shape": [2]}}, [BYTES8], "8 bytes of data"),
    ({"value": {"tensor": 0, "dtype": "float64", "shape": [2**40, 2**40]}}, [BYTES8], "bytes of data"),
    ({"value": {"tensor": 0, "dtype": "object", "shape": [1]}}, [BYTES8], "dtype"),
    ({"value": {"ndarray": 0, "dtype": "V8", "shape": [1]}}, [BYTES8], "dtype"),
    ({"value": {"tensor": 0, "dtype": "float64", "shape": [-1]}}, [BYTES8], "shape"),
    ({"value": {"tensor": 1, "dtype": "float64", "shape": [1]}}, [BYTES8], "without its data"),
    ({"value": {"list": [{"tensor": 0, "dtype": "float64", "shape": [1]},
                         {"tensor": 0, "dtype": "float64", "shape": [1]}]}}, [BYTES8], "sharing one buffer"),
    ({"value": {"tensor": 0, "dtype": "float64", "shape": [1], "evil": 1}}, [BYTES8], "fields"),
    ({"value": {"pickle": "gASVDAAAAAAAAACMCGJ1aWx0aW5zlC4="}}, [], "unknown kind"),
    ({"value": [1, 2]}, [], "unknown form"),
    ({"value": {"float": "1e999999"}}, [], "float written"),
    ({"value": 2**70}, [], "64 bits"),
    ({"value": {"torch_dtype": "Tensor"}}, [], "torch dtype"),
    ({"value": {"device": "meta"}}, [], "device"),
    ({"value": {"dict": [[{"list": []}, 1]]}}, [], "dict key"),
    ({"value": "x" * (wire.MAX_TEXT + 1)}, [], "string"),
])
def test_malformed_values_are_refused(header, buffers, match):
    with pytest.raises(wire.WireError, match=match):
        decode(header, buffers)


def test_depth_and_size_limits_are_enforced_both_ways():
    deep = None
    for _ in range(wire.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested"):
        round_trip(deep)
    node = None
    for _ in range(wire.MAX_DEPTH + 2):
        node = {"list": [node]}
    with pytest.raises(wire.WireError, match="nested"):
        decode({"value": node})
    with pytest.raises(wire.WireError, match="values"):
        round_trip([0] * (wire.MAX_NODES + 1))
    with pytest.raises(wire.WireError, match="MB of data"):
        wire.Encoder(max_bytes=1 << 20).encode(torch.zeros(1 << 18, dtype=torch.float64))


def frame_body(header_text: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<I", len(header_text)) + header_text + data


@pytest.mark.parametrize("body, match", [
    (frame_body(b'{"value": NaN, "buffers": []}'), "JSON token"),
    (frame_body(b'{"value": 1, "buffers": [4]}', b"12"), "add up"),
    (frame_body(b'{"value": 1, "buffers": [-2]}'), "sizes"),
    (frame_body(b'[1, 2, 3]'), "object with a buffer list"),
    (frame_body(b'{"value": 1'), "not JSON"),
    (frame_body(b"\xff\xfe"), "not JSON"),
    (frame_body(b"[" * 200_000 + b"]" * 200_000), "not JSON"),
    (struct.pack("<I", 1 << 30) + b"{}", "does not fit"),
    (b"\x01", "too short"),
])
def test_malformed_frames_are_refused(body, match):
    with pytest.raises(wire.WireError, match=match):
        wire.unpack(body)


def test_bool_arrays_hold_only_true_and_false():
    got = decode({"value": {"tensor": 0, "dtype": "bool", "shape": [3]}}, [bytes([0, 2, 255])])
    assert got.tolist() == [False, True, True] and torch.equal(got.int(), torch.tensor([0, 1, 1], dtype=torch.int32))
    assert json.loads(json.dumps({"a": 1})) == {"a": 1}  # the header is JSON, nothing more
