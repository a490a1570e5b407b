"""The one JSON reader for every document the gate and the operator commands read.

A run's JSON files are input from disk like any other: anyone with write access can
replace them. Whatever they hold, reading ends in a value or a typed error, never
in a traceback, a hang or a huge allocation:

- not a regular file (a symlink, a FIFO, a device): UnsafeArtifact (11), never opened
  through the link, never blocked on;
- larger than ``max_bytes``, not UTF-8, not JSON, nested deeper than ``max_depth``, an
  integer longer than ``max_int_digits`` digits, or a top-level value that is not of
  the ``expect``-ed type: HealthFailed (9).

Imports nothing heavy: ``health`` and ``runs`` stay free of TensorFlow and MLflow.
"""
from __future__ import annotations

import json
import os
import re
import stat
from itertools import accumulate
from pathlib import Path
from typing import Any, Optional

from spline_lstm.core.errors import HealthFailed, UnsafeArtifact

MAX_BYTES = 16 << 20  # the largest document a run writes (metrics with a long history) is ~100 KiB
MAX_DEPTH = 64  # a run's documents nest 5 levels deep
MAX_INT_DIGITS = 40  # every integer a run writes fits in 64 bits (20 digits)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class _TooLong(ValueError):
    pass


def read_json(path: Path, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_int_digits: int = MAX_INT_DIGITS, expect: Optional[type] = dict) -> Any:
    """The parsed document at ``path``; raises HealthFailed or UnsafeArtifact (see module doc)."""
    path = Path(path)
    return parse_json(_read_regular(path, max_bytes), path.name, max_depth=max_depth,
                      max_int_digits=max_int_digits, expect=expect)


def parse_json(data: bytes, name: str, *, max_depth: int = MAX_DEPTH, max_int_digits: int = MAX_INT_DIGITS,
               expect: Optional[type] = dict) -> Any:
    """``read_json`` on bytes already in memory; ``name`` is what error messages call them."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HealthFailed(f"{name} is not valid JSON (not UTF-8 at byte {exc.start})") from None
    depth = nesting_depth(text)
    if depth > max_depth:
        raise HealthFailed(f"{name} is not valid JSON (nested {depth} levels deep; at most {max_depth} allowed)")

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > max_int_digits:
            raise _TooLong(f"an integer of {len(digits.lstrip('-'))} digits; at most {max_int_digits} allowed")
        return int(digits)

    try:
        doc = json.loads(text, parse_int=parse_int)
    except _TooLong as exc:
        raise HealthFailed(f"{name} is not valid JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        raise HealthFailed(f"{name} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise HealthFailed(f"{name} is not valid JSON ({type(exc).__name__})") from None
    if expect is not None and not isinstance(doc, expect):
        raise HealthFailed(f"{name} is not a JSON {_TYPE_NAMES.get(expect, expect.__name__)} "
                           f"(found {_TYPE_NAMES.get(type(doc), type(doc).__name__)})")
    return doc


_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def nesting_depth(text: str) -> int:
    """How deep brackets nest outside strings, found without recursion (a document
    200 000 levels deep must be refused, not crash the parser)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of a regular file, opened without following a final symlink
    and without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HealthFailed(f"{path.name} does not exist ({path})") from None
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeArtifact(f"{path} is a symlink (to {os.readlink(path)}); refused") from None
        raise HealthFailed(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise HealthFailed(f"{path} is a directory, not a JSON file")
        if not stat.S_ISREG(mode):
            raise UnsafeArtifact(f"{path} is not a regular file (a FIFO, socket or device); refused")
        chunks, size = [], 0
        while size <= max_bytes:
            block = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
    except OSError as exc:
        raise HealthFailed(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise HealthFailed(f"{path.name} is larger than {max_bytes} bytes; refused")
    return b"".join(chunks)
