"""The one JSON reader (spline_lstm.core.jsonio), property-based: whatever a file holds,
``read_json`` returns the document or raises HealthFailed / UnsafeArtifact; nothing
else, and it writes nothing."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spline_lstm.core.errors import HealthFailed, UnsafeArtifact
from spline_lstm.core.jsonio import MAX_DEPTH, nesting_depth, parse_json, read_json

pytestmark = pytest.mark.unit

TYPED = (HealthFailed, UnsafeArtifact)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 60), max_value=10 ** 60),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=40)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.fixture
def folder():
    with tempfile.TemporaryDirectory(prefix="jsonio-") as d:
        yield Path(d)


@PROPERTY
@given(data=st.binary(max_size=2000))
def test_random_bytes_give_a_document_or_a_typed_error(folder: Path, data: bytes):
    path = folder / "doc.json"
    path.write_bytes(data)
    try:
        doc = read_json(path)
    except TYPED:
        return
    finally:
        assert sorted(os.listdir(folder)) == ["doc.json"]  # reading writes nothing
    assert isinstance(doc, dict)


@PROPERTY
@given(doc=documents)
def test_random_documents_round_trip_or_fail_typed(folder: Path, doc):
    path = folder / "doc.json"
    path.write_text(json.dumps(doc))
    try:
        got = read_json(path, expect=None)
    except TYPED as exc:
        assert "not valid JSON" in str(exc)  # only the digit limit refuses a well-formed document
        assert "digits" in str(exc)
        return
    assert _same(got, doc)


@PROPERTY
@given(depth=st.integers(min_value=0, max_value=300_000), opener=st.sampled_from("[{"),
       closed=st.booleans())
def test_any_nesting_depth_is_refused_typed_or_read(folder: Path, depth: int, opener: str, closed: bool):
    text = '{"a": ' * depth + "1" + "}" * depth if opener == "{" else "[" * depth + ("]" * depth if closed else "")
    path = folder / "doc.json"
    path.write_text(text)
    try:
        read_json(path, expect=None)
    except TYPED:
        return
    assert depth <= MAX_DEPTH


@PROPERTY
@given(text=st.text(max_size=300))
def test_depth_scan_ignores_brackets_in_strings(text: str):
    doc = json.dumps({"s": text + "[[[{{{"})
    assert nesting_depth(doc) == 1


@pytest.mark.parametrize("data, fragment", [
    (b"[1, 2]", "not a JSON object (found array)"),
    (b'"text"', "not a JSON object (found string)"),
    (b"null", "not a JSON object (found null)"),
    (b'{"n": ' + b"9" * 400 + b"}", "an integer of 400 digits"),
    (b'{"n": -' + b"9" * 5000 + b"}", "an integer of 5000 digits"),  # beyond Python's own int-str limit too
    (b"[" * 200_000, "nested 200000 levels deep"),
    (b"\xef\xbb\xbf{}", "not valid JSON"),  # a UTF-8 BOM
    (b"\xff\xfe{", "not UTF-8"),
    (b"", "not valid JSON"),
    (b'{"a": 1} {"b": 2}', "not valid JSON"),
])
def test_hostile_documents_fail_with_9(data: bytes, fragment: str):
    with pytest.raises(HealthFailed) as caught:
        parse_json(data, "x.json")
    assert fragment in str(caught.value) and str(caught.value).startswith("x.json ")


def test_size_limit_reads_no_further(folder: Path):
    path = folder / "big.json"
    path.write_bytes(b'{"pad": "' + b"x" * 5000 + b'"}')
    with pytest.raises(HealthFailed, match="larger than 1000 bytes"):
        read_json(path, max_bytes=1000)


def test_special_files_are_unsafe_and_never_block(folder: Path):
    fifo = folder / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeArtifact, match="not a regular file"):
        read_json(fifo)
    link = folder / "link.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(UnsafeArtifact, match="is a symlink"):
        read_json(link)
    with pytest.raises(HealthFailed, match="does not exist"):
        read_json(folder / "absent.json")
    with pytest.raises(HealthFailed, match="is a directory"):
        read_json(folder)
