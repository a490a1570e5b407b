"""Folder roots as absolute paths: pure, touches no disk."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spline_lstm.core.errors import ConfigInvalid


def absolute_root(key: str, value: Any) -> Path:
    """``value`` as an absolute, normalised path (relative to the launch directory);
    refuses an empty value and the filesystem root. Touches no disk."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise ConfigInvalid(f"{key}: must not be empty; name a folder for the run's files (e.g. outputs)")
    if "\x00" in text:
        raise ConfigInvalid(f"{key}: contains a NUL byte")
    path = Path(os.path.normpath(Path(text).expanduser().absolute()))
    if path == Path(path.anchor):
        raise ConfigInvalid(f"{key}: the filesystem root {path} cannot hold run files; name a folder")
    return path
