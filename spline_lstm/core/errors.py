"""Typed failures and the exit-code contract (docs/exit-codes.md), mapped in one place.

Every expected failure is one of these exceptions; ``launch.py`` and every
``python -m spline_lstm`` subcommand turn them into an exit code and a single
``ERROR [NAME] message`` line on stderr. Anything else is a bug (exit 1).
"""
from __future__ import annotations

import dataclasses
import difflib
import errno
import re
import signal
import threading
from contextlib import contextmanager
from typing import Iterator, List, Optional


class SplineLSTMError(Exception):
    """Base of all expected failures; ``code`` is the process exit code."""

    code = 1
    name = "UNEXPECTED"


class ConfigInvalid(SplineLSTMError):
    code, name = 2, "CONFIG_INVALID"


class RunIdInvalid(SplineLSTMError):
    code, name = 3, "RUN_ID_INVALID"


class RunIdConflict(SplineLSTMError):
    code, name = 4, "RUN_ID_CONFLICT"


class InputInvalid(SplineLSTMError):
    code, name = 5, "INPUT_INVALID"


class StorageError(SplineLSTMError):
    code, name = 6, "STORAGE_ERROR"


class TrainingFailed(SplineLSTMError):
    code, name = 7, "TRAINING_FAILED"


class TrackingFailed(SplineLSTMError):
    code, name = 8, "TRACKING_FAILED"


class HealthFailed(SplineLSTMError):
    code, name = 9, "HEALTH_FAILED"


class RunIdMismatch(SplineLSTMError):
    code, name = 10, "RUN_ID_MISMATCH"


class UnsafeArtifact(SplineLSTMError):
    code, name = 11, "UNSAFE_ARTIFACT"


class ModelUnskilled(SplineLSTMError):
    """The strict quality gate: the files are whole, but the model does not beat the best
    baseline by ``gate.min_improvement_pct`` (the run is sealed as evidence, never passes)."""

    code, name = 12, "MODEL_UNSKILLED"


class Interrupted(SplineLSTMError):
    code, name = 130, "INTERRUPTED"


EXIT_CODES = {
    cls.name: cls.code
    for cls in (SplineLSTMError, ConfigInvalid, RunIdInvalid, RunIdConflict, InputInvalid,
                StorageError, TrainingFailed, TrackingFailed, HealthFailed, RunIdMismatch,
                UnsafeArtifact, ModelUnskilled, Interrupted)
}
EXIT_CODES["OK"] = 0


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def find_typed(exc: BaseException) -> Optional[SplineLSTMError]:
    """The first of our typed errors in an exception's cause chain (Hydra and
    OmegaConf wrap what resolvers and callbacks raise)."""
    for e in _chain(exc):
        if isinstance(e, SplineLSTMError):
            return e
    return None


def classify(exc: BaseException) -> SplineLSTMError:
    """Map any exception to a typed error: ours as they are, Hydra/OmegaConf
    composition errors to CONFIG_INVALID, disk errors to STORAGE_ERROR, the
    rest to UNEXPECTED."""
    if isinstance(exc, KeyboardInterrupt):  # its message names the signal (see ``interrupt_on_signal``)
        return Interrupted(f"interrupted ({str(exc) or 'SIGINT'}); no canonical file is left half-written")
    typed = find_typed(exc)
    if typed is not None:
        return typed
    for e in _chain(exc):
        mod = type(e).__module__ or ""
        if mod.startswith(("omegaconf", "hydra")):
            return ConfigInvalid(_config_message(exc))
    for e in _chain(exc):
        kind = storage_kind(e)
        if kind is not None:
            return StorageError(storage_message(e, kind))
    err = SplineLSTMError(f"{type(exc).__name__}: {one_line(str(exc))}")
    return err


# Storage failures by what they mean, not by a list of numbers: the errno names of each
# category are looked up in the ``errno`` module (a name this platform lacks is skipped).
STORAGE_CATEGORIES = {
    "capacity": ("ENOSPC", "EDQUOT", "EFBIG", "EMFILE", "ENFILE", "EMLINK"),
    "permission": ("EACCES", "EPERM", "EROFS", "ETXTBSY"),
    "device": ("EIO", "ENXIO", "ENODEV", "ESTALE", "EREMOTEIO", "ENOLCK", "EXDEV", "EUCLEAN"),
    "layout": ("EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "ELOOP", "ENAMETOOLONG", "ENOENT"),
}
_STORAGE_SUBCLASSES = {PermissionError: "permission", FileExistsError: "layout", NotADirectoryError: "layout",
                       IsADirectoryError: "layout", FileNotFoundError: "layout"}
_NOT_STORAGE = (ConnectionError, TimeoutError, BlockingIOError, ChildProcessError, ProcessLookupError,
                InterruptedError)  # the network (tracking, 8) and processes, not a disk
_HINTS = {"EFBIG": "the file size limit was reached (ulimit -f, or the filesystem's largest file)",
          "ENOSPC": "the disk is full (df -h)", "EDQUOT": "the disk quota is used up (quota -s)",
          "EMFILE": "too many open files in this process (ulimit -n)", "ENFILE": "too many open files on the "
          "system", "EROFS": "the filesystem is read-only", "EIO": "the device reported an I/O error"}


def _errno_category() -> dict:
    found = {}
    for kind, names in STORAGE_CATEGORIES.items():
        for name in names:
            if hasattr(errno, name):
                found.setdefault(getattr(errno, name), kind)
    return found


_ERRNO_CATEGORY = _errno_category()


def storage_kind(exc: BaseException) -> Optional[str]:
    """The storage category of an OSError (capacity, permission, device, layout), or None
    when it is not a storage failure (not an OSError, a network or process error). An
    OSError subclass counts by its class, any other by its errno's category."""
    if not isinstance(exc, OSError) or isinstance(exc, _NOT_STORAGE):
        return None
    for cls, kind in _STORAGE_SUBCLASSES.items():
        if isinstance(exc, cls):
            return kind
    return _ERRNO_CATEGORY.get(exc.errno) if isinstance(exc.errno, int) else None


def storage_message(exc: OSError, kind: Optional[str] = None) -> str:
    name = errno.errorcode.get(exc.errno, "") if isinstance(exc.errno, int) else ""
    what = exc.strerror or one_line(str(exc)) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    hint = _HINTS.get(name)
    return f"{what}{where} ({name or kind}{'; ' + hint if hint else ''})"


def interrupt_on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """SIGINT / SIGTERM handler: a KeyboardInterrupt named after the signal."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


_pending_signal: List[str] = []


def raise_if_signalled() -> None:
    """Raise the KeyboardInterrupt that a signal deferred by ``signals_deferred`` stands for."""
    if _pending_signal:
        raise KeyboardInterrupt(_pending_signal[0])


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Inside the block SIGINT / SIGTERM only record themselves; the block's end
    raises them as KeyboardInterrupt, and so does ``raise_if_signalled``, which a
    Keras callback calls between batches. For work that must not be cut midway: a
    TensorFlow step (an exception raised while one was under way has crashed the
    process with a glibc heap abort instead of exiting 130), or a run's claim and
    its MLflow start. A second signal raises at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def record(signum, frame):
        if _pending_signal:
            interrupt_on_signal(signum, frame)
        _pending_signal.append(signal.Signals(signum).name)

    _pending_signal.clear()
    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pending = _pending_signal[:]
        _pending_signal.clear()
    if pending:
        raise KeyboardInterrupt(pending[0])


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config_message(exc: BaseException) -> str:
    """Name the offending key: OmegaConf errors carry ``full_key``."""
    for e in _chain(exc):
        key = getattr(e, "full_key", None)
        msg = getattr(e, "msg", None) or str(e)
        if key:
            first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
            kind = getattr(e, "object_type", None)  # a misspelt key: the closest key of its section
            if "not in" in first and isinstance(kind, type) and dataclasses.is_dataclass(kind):
                close = difflib.get_close_matches(key.rsplit(".", 1)[-1], [f.name for f in dataclasses.fields(kind)], n=1)
                if close:
                    first += f"; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?"
            return f"{key}: {one_line(first)}"
    first = str(exc).strip().splitlines()
    return one_line(_hydra_hint(first) if first else type(exc).__name__)


def _hydra_hint(lines: List[str]) -> str:
    """Hydra's first line, with the help its further lines give kept on that one line:
    the options of a group whose option was misspelt (the closest first), and how to
    sweep a comma list given without ``-m``."""
    head = lines[0].strip()
    rest = [ln.strip() for ln in lines[1:]]
    if "Available options" in " ".join(rest):
        start = next(i for i, ln in enumerate(rest) if ln.startswith("Available options")) + 1
        options = []
        for ln in rest[start:]:
            if not ln or ln.endswith(":"):
                break
            if not ln.endswith("_schema"):  # the typed schema registered in the group, not a choice
                options.append(ln)
        wanted = re.search(r"Could not find '(?:[^']*/)?([^'/]+)'", head)
        close = difflib.get_close_matches(wanted.group(1), options, n=1) if wanted else []
        return (f"{head}; " + (f"did you mean {close[0]!r}? " if close else "")
                + f"available: {', '.join(options)}")
    if head.startswith("Ambiguous value for argument"):
        return (f"{head}: to sweep over the values add -m (--multirun); as a list write key=[a,b], "
                "as a string key='a,b'")
    return head


def error_line(err: SplineLSTMError, log_path: Optional[str] = None) -> str:
    line = f"ERROR [{err.name}] {one_line(str(err), 600)}"
    if log_path:
        line += f" (log: {log_path})"
    return line
