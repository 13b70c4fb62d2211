"""Property-based fuzzing (hypothesis, derandomized) of the two readers of untrusted bytes: the
episode-record reader and the wire codec. Either the input is accepted or the project's own clear
error is raised (StoreError / WireError), and no input makes the decoder allocate without bound."""

from __future__ import annotations

import json
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mibot_eval.errors import StoreError
from mibot_eval.results.store import read_records

msgpack = pytest.importorskip("msgpack", reason="the serve extra")
from mibot_eval.serving import codec  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20)
MSGPACK = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=50)
    | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30)


def _read(data: bytes) -> list:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "episodes.jsonl"
        path.write_bytes(data)
        try:
            return list(read_records(path))
        except StoreError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            return []


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_record_reader_on_random_bytes(lines) -> None:
    _read(b"\n".join(lines))


@FUZZ
@given(st.lists(JSON, max_size=6), st.booleans())
def test_record_reader_on_random_json(values, torn) -> None:
    data = "".join(json.dumps(v) + "\n" for v in values).encode()
    if torn:
        data += b'{"key": "s/0/0", "succ'
    for record in _read(data):
        assert isinstance(record["key"], str) and isinstance(record["success"], bool)


def _parse(data: bytes) -> None:
    from mibot_eval.serving.server import PolicyServer

    server = PolicyServer(object(), {"name": "x", "hash": "h"})
    try:
        server._parse(data)
    except codec.WireError as exc:
        assert str(exc)


@FUZZ
@given(st.binary(max_size=512))
def test_wire_codec_on_random_bytes(data) -> None:
    try:
        codec.unpack(data, codec.REQUEST_LIMITS)
    except codec.WireError:
        pass
    _parse(data)


@FUZZ
@given(MSGPACK, st.integers(0, 255), st.binary(max_size=64))
def test_wire_codec_on_random_messages(value, ext_code, ext_payload) -> None:
    message = {"type": "infer", "id": 1, "requests": [value, {"images": {"v": msgpack.ExtType(
        ext_code % 128, ext_payload)}, "state": value}]}
    _parse(msgpack.packb(message, use_bin_type=True))
    _parse(msgpack.packb(value, use_bin_type=True))


@pytest.mark.parametrize("header", [
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 billion elements
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xdb\xff\xff\xff\xff",  # str32
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xc9\xff\xff\xff\xff\x01",  # ext32
    b"\x91" * 50_000 + b"\xc0",  # 50,000 nested arrays
])
def test_length_bombs_are_refused_without_allocating(header) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(codec.WireError):
            codec.unpack(header + b"\x00" * 16, codec.REQUEST_LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
