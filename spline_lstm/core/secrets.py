"""Credentials never land on disk: masking after interpolation, passwords moved to the environment.

A tracking password can arrive on the command line, in a YAML file, through
``${oc.env:...}`` or in ``MLFLOW_TRACKING_URI``. Whatever the way, once the URI is
resolved its password goes to ``MLFLOW_TRACKING_PASSWORD`` (where MLflow reads
it) and every value the project writes (config, params, tags, metadata, Hydra's
records, logs) goes through ``mask_text``/``mask_obj`` first: a ``user:pass@``
in any URI and the known password itself, wherever it appears, become ``***``.
"""
from __future__ import annotations

import logging
import re
import traceback
import urllib.parse
from typing import Any, List, Optional, Tuple

from spline_lstm.core import environment
from spline_lstm.core.errors import TrackingFailed

MASKED = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; user:pass@ is masked regardless
_USERINFO = re.compile(r"(?<=://)([^/:@\s]+):([^/@\s]*)@")


def mask_uri(uri: str) -> str:
    """Hide the password of ``scheme://user:pass@host`` URIs."""
    return _USERINFO.sub(rf"\1:{MASKED}@", uri)


def known_secrets() -> List[str]:
    """The password MLflow was handed, as written and URL-encoded / decoded, longest first."""
    value = environment.read(environment.MLFLOW_PASSWORD) or ""
    if len(value) < MIN_SECRET_LENGTH or value == MASKED:
        return []
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.unquote(value)}
    return sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def mask_text(text: str) -> str:
    """Any text after interpolation: URI userinfo and every known password masked."""
    text = mask_uri(text)
    for secret in known_secrets():
        text = text.replace(secret, MASKED)
    return text


def mask_obj(obj: Any) -> Any:
    """A copy of a nested dict / list / tuple with every string masked (keys too)."""
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, dict):
        return {mask_obj(k): mask_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(mask_obj(v) for v in obj)
    return obj


def hide_passwords(args: List[str]) -> List[str]:
    """Move a URI password out of command-line overrides into MLFLOW_TRACKING_PASSWORD.

    Called before Hydra sees the command line, so the password never reaches the
    composed config, Hydra's .hydra/ records, sweep logs, params or metadata."""
    hidden = []
    for arg in args:
        match = _USERINFO.search(arg)
        if match and match.group(2) != MASKED:
            environment.write(environment.MLFLOW_USERNAME, match.group(1))
            environment.write(environment.MLFLOW_PASSWORD, match.group(2))
            arg = mask_uri(arg)
        hidden.append(arg)
    return hidden


def take_credentials(uri: str) -> Tuple[str, Optional[str]]:
    """``(uri without user:pass@, user)``; the password is handed to MLflow via the environment."""
    match = _USERINFO.search(uri)
    if not match:
        return uri, None
    user, password = match.group(1), match.group(2)
    if password == MASKED:
        if not environment.read(environment.MLFLOW_PASSWORD):
            raise TrackingFailed(f"tracking.uri {mask_uri(uri)!r} has a masked password and "
                                 f"{environment.MLFLOW_PASSWORD} is not set; export it or put the password in the URI")
    else:
        environment.write(environment.MLFLOW_PASSWORD, password)
    environment.write(environment.MLFLOW_USERNAME, user)
    return _USERINFO.sub("", uri, count=1), user


class MaskingFilter(logging.Filter):
    """Masks a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


def mask_logs(*loggers: logging.Logger) -> None:
    """Put a ``MaskingFilter`` on every handler of these loggers (root by default); idempotent."""
    for logger in loggers or (logging.getLogger(),):
        for handler in logger.handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())
