"""run_id validation (docs/concepts.md#run_id): what is accepted never leaves the artifacts dir."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spline_lstm.artifacts.layout import ARTIFACT_KINDS, RUN_ID_PATTERN, ArtifactLayout, validate_run_id
from spline_lstm.core.config import new_run_id
from spline_lstm.core.errors import RunIdInvalid

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("run_id", ["a", "smoke-fixture", "run_1", "_x", "9", "A.b-c_d", "x" * 128,
                                    "phase4-smoke-20240101-120000-abcd", "v1.2"])
def test_valid_run_ids_are_returned_unchanged(run_id):
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["", ".", "..", ".hidden", "-flag", "a/b", "../x", "a..b", "x" * 129,
                                    "a b", "a\nb", "a\\b", "tab\t", "ü", "a:b", "a*", "a$", "~", None, 12,
                                    b"bytes", ["a"]])
def test_invalid_run_ids_are_refused_with_code_3(run_id):
    with pytest.raises(RunIdInvalid) as info:
        validate_run_id(run_id)
    assert info.value.code == 3
    assert "1-128 characters" in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=140))
def test_any_text_is_either_a_safe_name_or_refused(text):
    try:
        validate_run_id(text)
    except RunIdInvalid:
        assert not RUN_ID_PATTERN.fullmatch(text) or ".." in text
        return
    assert 1 <= len(text) <= 128 and "/" not in text and ".." not in text
    assert text[0] not in ".-"
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", text)  # an accepted id is the pattern in full


@pytest.mark.parametrize("run_id", ["abc\n", "smoke-fixture\n"])
def test_a_trailing_newline_is_refused(run_id):
    with pytest.raises(RunIdInvalid):
        validate_run_id(run_id)


@settings(max_examples=60, deadline=None)
@given(st.from_regex(re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,40}", re.ASCII), fullmatch=True))
def test_every_path_of_a_valid_run_id_stays_under_the_artifacts_dir(run_id):
    if ".." in run_id:
        return
    root = ArtifactLayout(Path("/srv/artifacts"))
    paths = root.paths(validate_run_id(run_id))
    assert set(paths) == set(ARTIFACT_KINDS)
    for path in paths.values():
        assert path.resolve().is_relative_to("/srv/artifacts")
        assert run_id in str(path)


@pytest.mark.parametrize("prefix", ["run", "phase4-smoke", "a"])
def test_generated_run_ids_are_valid_and_shaped(prefix):
    rid = new_run_id(prefix)
    assert validate_run_id(rid) == rid
    head, date, clock, tail = rid.rsplit("-", 3)
    assert head == prefix and len(date) == 8 and len(clock) == 6 and re.fullmatch(r"[0-9a-f]{4}", tail)


def test_generated_run_ids_of_one_sweep_differ_by_job_number():
    ids = {new_run_id("job", salt) for salt in range(50)}
    assert len(ids) == 50
