"""A command's private temp folder: everything libraries put in the temp dir, gone at the end.

TensorFlow's autograph writes ``__autograph_generated_file*.py`` into the temp dir and
removes them only at interpreter exit (``atexit``), which ``launch.py`` skips for speed
(``os._exit``); other libraries (matplotlib, MLflow, joblib) leave files there when a
process is cut short. So each command runs with ``tempfile.tempdir`` and ``TMPDIR`` (for
its child processes: the MLflow helper, sweep workers) pointing at a folder of its own
inside the system temp dir, removed as the command ends, whatever its exit code.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from spline_lstm.core import environment

PREFIX = "spline-lstm-scratch-"
_system: Optional[str] = None


def system_tempdir() -> str:
    """The temp dir outside any scratch folder: for what must outlive the command (the
    log of an UNEXPECTED failure that happened outside any run, named in its error line)."""
    return _system or tempfile.gettempdir()


@contextmanager
def scratch_dir() -> Iterator[Optional[Path]]:
    """Run the block with a private temp folder (None, and the system's, if none can be made)."""
    global _system
    outer = tempfile.gettempdir()
    try:
        path = tempfile.mkdtemp(prefix=PREFIX, dir=outer)
    except OSError:
        yield None
        return
    before_dir, before_env, before_system = tempfile.tempdir, environment.read(environment.TMPDIR), _system
    _system = _system or outer
    tempfile.tempdir = path
    environment.write(environment.TMPDIR, path)
    try:
        yield Path(path)
    finally:
        tempfile.tempdir = before_dir
        if before_env is None:
            environment.clear(environment.TMPDIR)
        else:
            environment.write(environment.TMPDIR, before_env)
        _system = before_system
        shutil.rmtree(path, ignore_errors=True)
