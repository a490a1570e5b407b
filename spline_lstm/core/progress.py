"""A progress line with an ETA for long work (training epochs, backtest folds, a sweep's
jobs), on a terminal only.

It is written straight to the terminal (stderr), never through logging: the run log is
uploaded to MLflow, and the progress of a run is not part of its record. Off when stderr
is not a TTY (CI, a pipe, a file) or when the caller says so (``training.verbose=0``)."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def eta(elapsed: float, done: int, total: int) -> Optional[float]:
    """Seconds left at the pace so far; None before the first step."""
    if done <= 0 or total <= 0:
        return None
    return elapsed / done * max(0, total - done)


def line(what: str, done: int, total: int, elapsed: float, note: str = "") -> str:
    """``epoch 3/20 [###-------] 12 s, ETA 1 min 08 s  loss 0.12``."""
    width = 20
    filled = int(width * min(done, total) / total) if total else 0
    left = eta(elapsed, done, total)
    text = (f"{what} {done}/{total} [{'#' * filled}{'-' * (width - filled)}] {duration(elapsed)}"
            + (f", ETA {duration(left)}" if left is not None and done < total else ""))
    return f"{text}  {note}" if note else text


class Progress:
    """One line rewritten in place (``\\r``) as the work goes on; a newline once it ends."""

    def __init__(self, what: str, total: int, enabled: bool = True, stream: Optional[TextIO] = None):
        self.what, self.total = what, int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled) and self.total > 0 and _is_tty(self.stream)
        self.started = time.monotonic()
        self._open = False

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        try:
            self.stream.write("\r" + line(self.what, done, self.total, time.monotonic() - self.started, note)
                              + "\x1b[K")
            self.stream.flush()
            self._open = True
        except (OSError, ValueError):
            self.enabled = False

    def close(self) -> None:
        if self.enabled and self._open:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._open = False
