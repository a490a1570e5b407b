"""Where runs are tracked: one MLflow store or server, its experiment and who logs to it."""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from spline_lstm.core.secrets import mask_uri


@dataclass(frozen=True)
class Store:
    uri: str  # without credentials: MLflow reads them from MLFLOW_TRACKING_USERNAME/PASSWORD
    artifact_location: Optional[str]  # None: the server's (mlflow-artifacts:/ with --serve-artifacts)
    experiment: str
    user: Optional[str] = None

    @property
    def display_uri(self) -> str:
        if not self.user:
            return mask_uri(self.uri)
        scheme, rest = self.uri.split("://", 1)
        return f"{scheme}://{self.user}:***@{rest}"

    @property
    def sqlite_path(self) -> Optional[Path]:
        if not self.uri.startswith("sqlite:"):
            return None
        if self.uri.startswith("sqlite:////"):
            return Path("/" + self.uri[len("sqlite:////"):])
        return Path(urllib.parse.urlparse(self.uri).path)
