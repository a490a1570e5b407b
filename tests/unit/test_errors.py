"""The exit codes (spline_lstm.core.errors, docs/exit-codes.md): one code per name, every exception
mapped by ``classify``, and ``error_line`` always one line."""
from __future__ import annotations

import errno
import os
import re
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from spline_lstm.core import errors
from spline_lstm.core.errors import (EXIT_CODES, ConfigInvalid, HealthFailed, InputInvalid, Interrupted,
                                     ModelUnskilled, RunIdConflict, RunIdInvalid, RunIdMismatch,
                                     SplineLSTMError, StorageError, TrackingFailed, TrainingFailed,
                                     UnsafeArtifact, classify, error_line, find_typed, one_line)

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md"
DOCUMENTED = {m[2]: int(m[1]) for m in re.finditer(r"^\| (\d+) \| `([A-Z_]+)` \|", DOCS.read_text(), re.M)}
TYPED = [ConfigInvalid, RunIdInvalid, RunIdConflict, InputInvalid, StorageError, TrainingFailed,
         TrackingFailed, HealthFailed, RunIdMismatch, UnsafeArtifact, ModelUnskilled, Interrupted]


def test_exit_codes_are_the_documented_table():
    assert EXIT_CODES == DOCUMENTED


def test_codes_and_names_are_unique():
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)


@pytest.mark.parametrize("cls", TYPED, ids=lambda c: c.__name__)
def test_each_typed_error_carries_its_contract_code(cls):
    err = cls("boom")
    assert isinstance(err, SplineLSTMError)
    assert EXIT_CODES[err.name] == err.code
    assert classify(err) is err


@pytest.mark.parametrize("cls", TYPED, ids=lambda c: c.__name__)
def test_a_typed_error_wrapped_by_another_exception_is_found(cls):
    inner = cls("the real reason")
    try:
        try:
            raise inner
        except SplineLSTMError as exc:
            raise RuntimeError("wrapper") from exc
    except RuntimeError as outer:
        assert find_typed(outer) is inner
        assert classify(outer) is inner


def test_a_typed_error_in_the_implicit_context_is_found_too():
    inner = InputInvalid("in context")
    try:
        try:
            raise inner
        except InputInvalid:
            raise ValueError("while handling")
    except ValueError as outer:
        assert classify(outer) is inner


def test_a_cyclic_cause_chain_terminates():
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert find_typed(a) is None
    assert classify(a).code == 1


def test_an_omegaconf_error_is_config_invalid_naming_the_key():
    cfg = OmegaConf.structured({"training": {"epochs": 1}})
    OmegaConf.set_struct(cfg, True)
    with pytest.raises(Exception) as info:
        cfg.training.nope = 3
    err = classify(info.value)
    assert isinstance(err, ConfigInvalid) and err.code == 2
    assert "training.nope" in str(err)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EIO, errno.EEXIST,
                                  errno.ENOTDIR, errno.EISDIR, errno.EPERM, errno.EDQUOT])
def test_disk_errors_are_storage_errors_naming_the_file(code):
    err = classify(OSError(code, os.strerror(code), "/some/file"))
    assert isinstance(err, StorageError) and err.code == 6
    assert "/some/file" in str(err) and os.strerror(code) in str(err)


def test_a_file_gone_while_writing_is_a_storage_error():
    """A missing input is refused as INPUT_INVALID where it is read; an ENOENT that reaches
    classify is a path gone under the package's own files: a storage failure (layout)."""
    err = classify(FileNotFoundError(errno.ENOENT, "No such file", "/x"))
    assert type(err) is StorageError and err.code == 6 and "/x" in str(err)


@pytest.mark.parametrize("exc", [ValueError("bad\nvalue"), KeyError("k"), ZeroDivisionError("x"), RuntimeError("")])
def test_anything_else_is_unexpected_with_its_type_named(exc):
    err = classify(exc)
    assert type(err) is SplineLSTMError and err.code == 1 and err.name == "UNEXPECTED"
    assert str(err).startswith(type(exc).__name__ + ":")
    assert "\n" not in str(err)


@pytest.mark.parametrize("text,shown", [("", "SIGINT"), ("SIGTERM", "SIGTERM"), ("SIGINT", "SIGINT")])
def test_keyboard_interrupt_is_interrupted_130_naming_the_signal(text, shown):
    err = classify(KeyboardInterrupt(text))
    assert isinstance(err, Interrupted) and err.code == 130 and shown in str(err)


def test_the_signal_handler_raises_a_keyboard_interrupt_named_after_the_signal():
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        errors.interrupt_on_signal(signal.SIGTERM, None)


def test_error_line_format_and_log_path():
    assert error_line(HealthFailed("sha256 mismatch")) == "ERROR [HEALTH_FAILED] sha256 mismatch"
    assert error_line(SplineLSTMError("x"), "/tmp/a.log") == "ERROR [UNEXPECTED] x (log: /tmp/a.log)"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=2000), st.sampled_from(TYPED))
def test_error_line_is_always_one_bounded_line(message, cls):
    line = error_line(cls(message))
    assert "\n" not in line and "\r" not in line
    assert line.startswith(f"ERROR [{cls.name}]")
    assert len(line) <= len(f"ERROR [{cls.name}] ") + 600


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=1000), st.integers(min_value=10, max_value=500))
def test_one_line_collapses_whitespace_and_respects_its_limit(text, limit):
    out = one_line(text, limit)
    assert len(out) <= limit
    assert not any(ch in out for ch in "\n\t\r")
    if len(" ".join(text.split())) <= limit:
        assert out == " ".join(text.split())
    else:
        assert out.endswith("...")


def test_signals_deferred_holds_a_signal_until_the_block_ends():
    reached = []
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
        with errors.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the signal")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is not None


def test_signals_deferred_without_a_signal_raises_nothing_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with errors.signals_deferred():
        errors.raise_if_signalled()
    assert signal.getsignal(signal.SIGTERM) is before
