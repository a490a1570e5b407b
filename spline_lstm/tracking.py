"""MLflow tracking: one MLflow run per pipeline run, named and tagged with run_id.

The default store is embedded (SQLite under outputs_dir), created once in the
parent process before any job starts, and probed before training so an
unreachable or read-only store fails fast (TRACKING_FAILED) with nothing
written. ``tracking.enabled=false`` (``tracking=none``) swaps in a no-op tracker
and never imports MLflow.
"""
from __future__ import annotations

import logging
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional

from spline_lstm.config import PathsConfig, TrackingConfig
from spline_lstm.errors import TrackingFailed

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000


@dataclass(frozen=True)
class Store:
    uri: str
    artifact_location: str
    experiment: str

    @property
    def display_uri(self) -> str:
        return mask_uri(self.uri)


def mask_uri(uri: str) -> str:
    """Hide the password of ``scheme://user:pass@host`` URIs."""
    return re.sub(r"(?<=://)([^/:@]+):([^/@]*)@", r"\1:***@", uri)


def resolve_store(tracking: TrackingConfig, paths: PathsConfig) -> Store:
    """Absolute URIs so the UI and sweep workers may start from any directory."""
    outputs = Path(paths.outputs_dir).absolute()
    uri = tracking.uri or f"sqlite:///{outputs / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        uri = f"sqlite:///{Path(rel).absolute()}"
    if "://" not in uri:
        raise TrackingFailed(f"tracking.uri {mask_uri(uri)!r} is not a URI (file stores are not "
                             "supported); use sqlite:///path/mlflow.db or http://host:port")
    loc = tracking.artifact_location or str(outputs / "mlartifacts")
    if "://" not in loc:
        loc = Path(loc).absolute().as_uri()
    return Store(uri, loc, tracking.experiment)


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def preflight(store: Store) -> None:
    """Find an unreachable / unwritable store before any work, without MLflow."""
    uri = store.uri
    if uri.startswith("sqlite:"):
        path = Path(urllib.parse.urlparse(uri).path)
        if uri.startswith("sqlite:////"):
            path = Path("/" + uri[len("sqlite:////"):])
        where = f"tracking store {store.display_uri}"
        if path.exists():
            if not path.is_file():
                raise TrackingFailed(f"{where}: {path} is not a file")
            try:
                con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
                try:
                    con.execute("PRAGMA schema_version").fetchone()
                    con.execute("BEGIN IMMEDIATE")
                    con.execute("ROLLBACK")
                finally:
                    con.close()
            except sqlite3.DatabaseError as exc:
                raise TrackingFailed(f"{where}: cannot write {path}: {exc}") from exc
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingFailed(f"{where}: cannot create {path.parent}: {exc.strerror}") from exc
            if not os.access(path.parent, os.W_OK):
                raise TrackingFailed(f"{where}: {path.parent} is not writable")
    elif uri.startswith(("http://", "https://")):
        probe = uri.rstrip("/") + "/health"
        try:
            urllib.request.urlopen(probe, timeout=5).read(64)
        except urllib.error.HTTPError:
            pass  # the server answered: reachable
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingFailed(f"tracking server {store.display_uri} is unreachable: {reason}") from exc


def ensure_store(store: Store) -> str:
    """Create the schema and the experiment if missing; returns the experiment id.

    Called once in the parent process (Hydra on_run_start / on_multirun_start)
    so parallel jobs never race to create a fresh SQLite schema."""
    preflight(store)
    _quiet_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=store.uri)
        exp = client.get_experiment_by_name(store.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(store.experiment, artifact_location=store.artifact_location)
        except MlflowException:
            exp = client.get_experiment_by_name(store.experiment)  # created concurrently
            if exp is None:
                raise
            return exp.experiment_id
    except TrackingFailed:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise TrackingFailed(f"tracking store {store.display_uri} failed: {msg}") from exc


class Tracker:
    """One MLflow run; every call is batched and failure-typed."""

    enabled = True

    def __init__(self, store: Store):
        self.store = store
        self.experiment_id: Optional[str] = None
        self.mlflow_run_id: Optional[str] = None
        self._client = None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise TrackingFailed(f"MLflow {what} failed on {self.store.display_uri}: {msg}") from exc

    def start(self, run_id: str, tags: Dict[str, str], params: Dict[str, object]) -> None:
        self.experiment_id = ensure_store(self.store)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.store.uri)
        run = self._call("create_run", self._client.create_run, self.experiment_id,
                         run_name=run_id, tags={"run_id": run_id, **tags})
        self.mlflow_run_id = run.info.run_id
        items = []
        for key, value in params.items():
            text = str(value)
            if len(text) > MAX_PARAM_LENGTH:
                log.warning("param %s is %d characters; truncated to MLflow's limit of %d",
                            key, len(text), MAX_PARAM_LENGTH)
                text = text[:MAX_PARAM_LENGTH]
            items.append(Param(key, text))
        for i in range(0, len(items), 100):
            self._call("log_batch", self._client.log_batch, self.mlflow_run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Dict[str, float], step: int = 0) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))]
        for i in range(0, len(items), 1000):
            self._call("log_batch", self._client.log_batch, self.mlflow_run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._call("set_tags", self._client.log_batch, self.mlflow_run_id,
                   tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, files: Iterable[tuple]) -> None:
        """``files``: (local path, artifact sub-folder or None)."""
        for path, sub in files:
            path = Path(path)
            if path.is_dir():
                self._call("log_artifacts", self._client.log_artifacts, self.mlflow_run_id, str(path), sub)
            elif path.exists():
                self._call("log_artifact", self._client.log_artifact, self.mlflow_run_id, str(path), sub)

    def end(self, status: str) -> None:
        if self._client is not None and self.mlflow_run_id is not None:
            self._call("set_terminated", self._client.set_terminated, self.mlflow_run_id, status)

    def info(self) -> Dict[str, Optional[str]]:
        return {"tracking_uri": self.store.display_uri, "experiment": self.store.experiment,
                "experiment_id": self.experiment_id, "mlflow_run_id": self.mlflow_run_id}


class NullTracker:
    """tracking=none: the pipeline and the gate run, MLflow is never imported."""

    enabled = False
    mlflow_run_id = None

    def start(self, run_id, tags, params):
        pass

    def log_metrics(self, metrics, step=0):
        pass

    def set_tags(self, tags):
        pass

    def log_artifacts(self, files):
        pass

    def end(self, status):
        pass

    def info(self):
        return {"tracking_uri": None, "experiment": None, "experiment_id": None, "mlflow_run_id": None}


def find_runs(store: Store, run_id: str) -> list:
    """MLflow runs tagged with our run_id."""
    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    exp = client.get_experiment_by_name(store.experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], filter_string=f"tags.run_id = '{run_id}'")


def mark_health(store: Store, run_id: str, mlflow_run_id: Optional[str], passed: bool) -> None:
    """Tag the gate verdict; a failed gate turns the MLflow run FAILED."""
    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    ids = [mlflow_run_id] if mlflow_run_id else [r.info.run_id for r in find_runs(store, run_id)]
    for rid in ids:
        client.set_tag(rid, "health", "PASS" if passed else "FAIL")
        if not passed:
            client.set_terminated(rid, "FAILED")


def tag_runs(store: Store, run_id: str, tags: Dict[str, str]) -> int:
    """Set tags on every MLflow run of a run_id (quarantine); returns how many."""
    from mlflow.tracking import MlflowClient

    runs = find_runs(store, run_id)
    client = MlflowClient(tracking_uri=store.uri)
    for run in runs:
        for k, v in tags.items():
            client.set_tag(run.info.run_id, k, str(v))
    return len(runs)
