"""MLflow tracking: one MLflow run per pipeline run, named and tagged with run_id.

The default store is embedded (SQLite under outputs_dir), probed before
training so an unreachable or read-only store fails fast (TRACKING_FAILED) with
nothing written. MLflow itself runs in a helper process per run (``Tracker``);
a sweep creates the store once, in its parent, before any job starts. ``tracking.enabled=false`` (``tracking=none``) swaps in a no-op tracker
and never imports MLflow.
"""
from __future__ import annotations

import logging
import os
import re
import sqlite3
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional

from spline_lstm.errors import TrackingFailed
from spline_lstm.tracking_server import drop_duplicate_runs, http_env, is_http
from spline_lstm.tracking_server import preflight as preflight_server

if TYPE_CHECKING:
    from spline_lstm.config import PathsConfig, TrackingConfig

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000


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


MASKED = "***"
_USERINFO = re.compile(r"(?<=://)([^/:@\s]+):([^/@\s]*)@")


def mask_uri(uri: str) -> str:
    """Hide the password of ``scheme://user:pass@host`` URIs."""
    return _USERINFO.sub(rf"\1:{MASKED}@", uri)


def hide_passwords(args: List[str]) -> List[str]:
    """Move a URI password out of command-line overrides into MLFLOW_TRACKING_PASSWORD.

    Called before Hydra sees the command line, so the password never reaches the
    composed config, Hydra's .hydra/ records, sweep logs, params or metadata."""
    hidden = []
    for arg in args:
        match = _USERINFO.search(arg)
        if match and match.group(2) != MASKED:
            os.environ["MLFLOW_TRACKING_USERNAME"] = match.group(1)
            os.environ["MLFLOW_TRACKING_PASSWORD"] = match.group(2)
            arg = mask_uri(arg)
        hidden.append(arg)
    return hidden


def _take_credentials(uri: str) -> tuple:
    """``(uri without user:pass@, user)``; a password is handed to MLflow via the environment."""
    match = _USERINFO.search(uri)
    if not match:
        return uri, None
    user, password = match.group(1), match.group(2)
    if password == MASKED:
        if not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
            raise TrackingFailed(f"tracking.uri {mask_uri(uri)!r} has a masked password and "
                                 "MLFLOW_TRACKING_PASSWORD is not set; export it or put the password in the URI")
    else:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    os.environ["MLFLOW_TRACKING_USERNAME"] = user
    return _USERINFO.sub("", uri, count=1), user


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
    uri, user = _take_credentials(uri)
    loc = tracking.artifact_location or str(outputs / "mlartifacts")
    if is_http(uri):  # MLflow's timeouts/retries for the tracking helper; artifacts via the server by default
        os.environ.update(http_env(tracking))
        loc = tracking.artifact_location
    if loc and "://" not in loc:
        loc = Path(loc).absolute().as_uri()
    return Store(uri, loc, tracking.experiment, user)


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
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
                    version = con.execute("PRAGMA user_version").fetchone()[0]
                    con.execute(f"PRAGMA user_version = {int(version)}")  # a real write, same value
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
    elif is_http(uri):
        preflight_server(store)


def ensure_store(store: Store) -> str:
    """Create the schema and the experiment if missing; returns the experiment id.

    Called by the tracking helper, and once in a sweep's parent (Hydra on_multirun_start)
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


class MlflowRun:
    """One MLflow run through MlflowClient: every call batched and failure-typed.

    Lives in the tracking helper process (see ``Tracker``)."""

    def __init__(self, store: Store):
        self.store = store
        self.experiment_id: Optional[str] = None
        self.mlflow_run_id: Optional[str] = None
        self.ended = False
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
        if is_http(self.store.uri):  # a create_run retried across a server restart may exist twice
            self._call("search_runs", drop_duplicate_runs, self._client, self.experiment_id, run)
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

    def log_artifacts(self, files: Iterable[tuple]) -> None:
        """``files``: (local path, artifact sub-folder or None)."""
        for path, sub in files:
            path = Path(path)
            if path.is_dir():
                self._call("log_artifacts", self._client.log_artifacts, self.mlflow_run_id, str(path), sub)
            elif path.exists():
                self._call("log_artifact", self._client.log_artifact, self.mlflow_run_id, str(path), sub)

    def end(self, status: str) -> None:
        if self._client is not None and self.mlflow_run_id is not None and not self.ended:
            self._call("set_terminated", self._client.set_terminated, self.mlflow_run_id, status)
            self.ended = True

    def mark_health(self, passed: bool) -> None:
        if self._client is not None and self.mlflow_run_id is not None:
            self._call("set_tag", self._client.set_tag, self.mlflow_run_id, "health", "PASS" if passed else "FAIL")
            if not passed:
                self._call("set_terminated", self._client.set_terminated, self.mlflow_run_id, "FAILED")


def serve(requests=None, replies=None) -> None:
    """The tracking helper: one JSON request per line in, one JSON reply per line out.

    Ignores terminal signals (the launch process decides how a run ends); if the
    launch process vanishes (EOF) while its run is open, the run ends KILLED."""
    import json
    import signal
    import sys

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    requests = requests or sys.stdin
    replies = replies or sys.stdout
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    _quiet_mlflow()
    run: Optional[MlflowRun] = None
    for line in requests:
        msg = json.loads(line)
        op, reply = msg.pop("op"), {"ok": True}
        try:
            if op == "start":
                run = MlflowRun(Store(**msg.pop("store")))
                run.start(**msg)
            elif run is None:
                raise TrackingFailed(f"MLflow {op} before the run was created")
            else:
                getattr(run, op)(**msg)
            reply.update(experiment_id=run.experiment_id, mlflow_run_id=run.mlflow_run_id)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the launch process
            log.debug("tracking %s failed", op, exc_info=True)
            reply = {"ok": False, "error": str(exc) if isinstance(exc, TrackingFailed)
                     else f"MLflow {op} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    if run is not None and not run.ended:
        try:
            run.end("KILLED")
        except TrackingFailed:
            pass


class Tracker:
    """The pipeline's handle on its MLflow run, kept in a helper process.

    MLflow's import and store set-up (1-2 s of Python imports, ~90 MB) happen in a
    child process started right after the preflight, in parallel with preprocessing
    and the TensorFlow import; the training process never imports MLflow. Calls are
    queued without waiting; a failure surfaces as TrackingFailed at the next call,
    and ``end``/``info``/``mark_health`` wait for every queued call."""

    enabled = True

    def __init__(self, store: Store, log_path: Optional[Path] = None):
        import subprocess
        import sys

        self.store = store
        self.experiment_id: Optional[str] = None
        self.mlflow_run_id: Optional[str] = None
        self._pending = 0
        self._failure: Optional[str] = None
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root,
                                                                          os.environ.get("PYTHONPATH")])))
        err = open(log_path, "ab") if log_path else subprocess.DEVNULL  # its warnings join the run log
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "spline_lstm.tracking"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True)
        except OSError as exc:
            raise TrackingFailed(f"cannot start the tracking helper: {exc.strerror or exc}") from exc
        finally:
            if log_path:
                err.close()

    def _send(self, op: str, wait: bool = False, **args) -> None:
        import json

        if self._failure is None:
            try:
                self._proc.stdin.write((json.dumps({"op": op, **args}, default=str) + "\n").encode())
                self._proc.stdin.flush()
                self._pending += 1
            except OSError:
                self._failure = f"MLflow {op} failed on {self.store.display_uri}: the tracking helper exited"
        self._collect(block=wait)
        if self._failure is not None:
            raise TrackingFailed(self._failure)

    def _collect(self, block: bool) -> None:
        """Read the replies that are in (all of them if ``block``)."""
        import json
        import select

        while self._pending:
            if not block and not select.select([self._proc.stdout], [], [], 0)[0]:
                return
            line = self._proc.stdout.readline()
            if not line:
                self._pending = 0
                self._failure = self._failure or (f"MLflow tracking on {self.store.display_uri} failed: "
                                                  "the tracking helper exited (see the run log)")
                return
            self._pending -= 1
            reply = json.loads(line)
            if not reply["ok"]:
                self._failure = self._failure or reply["error"]
            else:
                self.experiment_id = reply.get("experiment_id") or self.experiment_id
                self.mlflow_run_id = reply.get("mlflow_run_id") or self.mlflow_run_id

    def start(self, run_id: str, tags: Dict[str, str], params: Dict[str, object]) -> None:
        self._send("start", store=asdict(self.store), run_id=run_id, tags=tags, params=params)

    def log_metrics(self, metrics: Dict[str, float], step: int = 0) -> None:
        self._send("log_metrics", metrics={k: float(v) for k, v in metrics.items() if v is not None}, step=step)

    def log_artifacts(self, files: Iterable[tuple]) -> None:
        self._send("log_artifacts", files=[(str(path), sub) for path, sub in files])

    def end(self, status: str) -> None:
        self._send("end", wait=True, status=status)

    def mark_health(self, passed: bool) -> None:
        self._send("mark_health", wait=True, passed=passed)

    def info(self) -> Dict[str, Optional[str]]:
        self._collect(block=True)
        return {"tracking_uri": self.store.display_uri, "experiment": self.store.experiment,
                "experiment_id": self.experiment_id, "mlflow_run_id": self.mlflow_run_id}

    def close(self) -> None:
        """Let the helper finish what is queued and exit."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=120)
        except Exception:  # noqa: BLE001 - never hang the launch on a stuck helper
            self._proc.kill()
        self._proc.stdout.close()


class NullTracker:
    """tracking=none: the pipeline and the gate run, MLflow is never imported."""

    enabled = False
    mlflow_run_id = None

    def start(self, run_id, tags, params):
        pass

    def log_metrics(self, metrics, step=0):
        pass

    def log_artifacts(self, files):
        pass

    def end(self, status):
        pass

    def mark_health(self, passed):
        pass

    def close(self):
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


def tag_runs(store: Store, run_id: str, tags: Dict[str, str]) -> int:
    """Set tags on every MLflow run of a run_id (quarantine); returns how many."""
    from mlflow.tracking import MlflowClient

    runs = find_runs(store, run_id)
    client = MlflowClient(tracking_uri=store.uri)
    for run in runs:
        for k, v in tags.items():
            client.set_tag(run.info.run_id, k, str(v))
    return len(runs)


# Opened by the pipeline, closed by the health gate after it tagged the verdict.
_OPEN: Dict[str, "Tracker"] = {}


def keep_open(run_id: str, tracker: "Tracker") -> None:
    _OPEN[run_id] = tracker


def take_open(run_id: str) -> Optional["Tracker"]:
    return _OPEN.pop(run_id, None)


if __name__ == "__main__":
    import sys

    serve()
    sys.stdout.flush()
    os._exit(0)  # every reply is out: skip tearing down MLflow and SQLAlchemy (~0.4 s)
