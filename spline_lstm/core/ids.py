"""Run and sweep identifiers: the one rule for a valid run_id and how new ids are made (docs/concepts.md#run_id)."""
from __future__ import annotations

import functools
import re
import secrets
import time
from typing import Any, Optional

from spline_lstm.core import environment
from spline_lstm.core.errors import RunIdInvalid

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # the whole string: fullmatch


def validate_run_id(run_id: Any) -> str:
    """docs/concepts.md#run_id: 1-128 of [A-Za-z0-9._-], not starting with '.' or '-', no '..'."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        shown = repr(run_id)[:80]
        raise RunIdInvalid(
            f"run_id {shown} is invalid: use 1-128 characters of [A-Za-z0-9._-], "
            "not starting with '.' or '-', without '..'")
    return run_id


def new_run_id(prefix: str, salt: Optional[int] = None) -> str:
    """``<prefix>-<YYYYmmdd-HHMMSS>-<4 hex>`` (docs/concepts.md#run_id). ``salt`` (Hydra's job
    number) is added to a random base drawn once per process tree, so two jobs of one
    sweep never get the same id, even in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    if salt is None:
        return f"{prefix}-{stamp}-{secrets.token_hex(2)}"
    base = int(current_sweep_id()[-4:], 16)
    return f"{prefix}-{stamp}-{(base + salt) % 0x10000:04x}"


def new_sweep_id() -> str:
    return new_run_id("sweep")


def current_sweep_id() -> str:
    """One sweep id per process tree: launch.py sets it before Hydra starts and sweep
    workers inherit it. Composing a config elsewhere (tests, ``--cfg``) only reads it:
    without one, a fixed id for this process, never written to the environment (a
    child process started later must not inherit a sweep id it did not launch)."""
    return environment.read(environment.SWEEP_ID) or _process_sweep_id()


@functools.lru_cache(maxsize=None)
def _process_sweep_id() -> str:
    return new_sweep_id()
