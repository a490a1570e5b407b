"""MLflow tracking, launcher side: the store, its one-time set-up, and the run's owner.

The default store is embedded (SQLite under outputs_dir), probed before training
so an unreachable or read-only store fails fast (TRACKING_FAILED) with nothing
written. Every process that touches a store creates or migrates it through
``ensure_store``, under an inter-process file lock beside it, so runs and sweeps
started together never race on a fresh schema. MLflow itself runs in a helper
process per run (``spline_lstm.tracking.helper``); ``Tracker`` is the one object
that owns the run, from ``start`` to the gate's verdict, and ends it itself if
the helper dies or hangs. ``tracking.enabled=false`` (``tracking=none``) swaps in
a no-op tracker and never imports MLflow. Credentials: ``spline_lstm.core.secrets``.
"""
from __future__ import annotations

import json
import logging
import os
import select
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Iterable, Optional

from spline_lstm.core import environment
from spline_lstm.core.config import REGISTRY_ALIAS, PathsConfig, TrackingConfig, is_http
from spline_lstm.core.errors import ConfigInvalid, TrackingFailed
from spline_lstm.core.secrets import mask_uri, take_credentials
from spline_lstm.tracking.server import http_env
from spline_lstm.tracking.server import preflight as preflight_server
from spline_lstm.tracking.store import Store

log = logging.getLogger(__name__)

WAIT_S = 90.0  # the longest the launcher waits for one reply of a live helper
FAIL_WAIT_S = 30.0  # ending a failed run: the helper may first wait out SQLite's 20 s busy timeout
INTERRUPT_WAIT_S = 2.0  # ending an interrupted run: SIGTERM -> exit 130 within 10 s
INIT_LOCK_WAIT_S = 120.0  # another process creating or migrating the same store
# MLflow 3's UI opens an experiment on the page its kind names (tag ``mlflow.experimentKind``):
# without it, a new experiment opens on the GenAI traces page; ours are model-training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
RUNBOOK_REPAIR = ("back up the store, then run `mlflow db upgrade URI` or move it aside "
                  "(runbook: 'Tracking store half-migrated')")


def resolve_store(tracking: TrackingConfig, paths: PathsConfig) -> Store:
    """Absolute URIs so the UI and sweep workers may start from any directory.

    ``tracking.uri`` null falls back to ``MLFLOW_TRACKING_URI``, then to the embedded
    store. A password in the URI moves to the environment, the URI keeps none."""
    if not (tracking.experiment or "").strip():
        raise ConfigInvalid("tracking.experiment: must not be empty (default: spline-lstm)")
    outputs = Path(paths.outputs_dir).absolute()
    from_env = not tracking.uri and bool(environment.read(environment.MLFLOW_URI))
    uri = tracking.uri or environment.read(environment.MLFLOW_URI) or f"sqlite:///{outputs / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        uri = f"sqlite:///{Path(rel).absolute()}"
    if "://" not in uri:
        raise TrackingFailed(f"tracking.uri {mask_uri(uri)!r} is not a URI (file stores are not "
                             "supported); use sqlite:///path/mlflow.db or http://host:port")
    uri, user = take_credentials(uri)
    if from_env:
        environment.write(environment.MLFLOW_URI, uri)  # the helper and MLflow inherit it without the password
    loc = tracking.artifact_location or str(outputs / "mlartifacts")
    if is_http(uri):  # MLflow's timeouts/retries for the tracking helper; artifacts via the server by default
        environment.write_all(http_env(tracking))
        loc = tracking.artifact_location
    if loc and "://" not in loc:
        loc = Path(loc).absolute().as_uri()
    return Store(uri, loc, tracking.experiment, user)


def quiet_mlflow() -> None:
    environment.write_defaults({environment.MLFLOW_HTTP_RETRIES: "0", environment.MLFLOW_HTTP_TIMEOUT: "15",
                                **environment.LIBRARY_DEFAULTS})
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def preflight(store: Store) -> None:
    """Find an unreachable / unwritable store before any work, without MLflow."""
    uri = store.uri
    path = store.sqlite_path
    if path is not None:
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


def half_migrated(path: Path) -> list:
    """Leftover ``_alembic_tmp_*`` tables of a migration that died half-way (none: healthy)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'")]
    finally:
        con.close()


def _repair_sqlite(store: Store) -> None:
    """Under the init lock: finish what a dead migration left behind, or refuse (8).

    A leftover ``_alembic_tmp_<table>`` is dropped when ``<table>`` still exists (the
    copy never replaced it) or renamed back when it does not; then a schema behind
    MLflow's head is migrated again."""
    path = store.sqlite_path
    if path is None or not path.exists() or path.stat().st_size == 0:
        return
    leftovers = half_migrated(path)
    where = f"tracking store {store.display_uri}"
    con = sqlite3.connect(str(path), timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for tmp in leftovers:
            original = tmp[len("_alembic_tmp_"):]
            log.warning("%s: a migration died half-way (%s left); repairing", where, tmp)
            sql = f'DROP TABLE "{tmp}"' if original in tables else f'ALTER TABLE "{tmp}" RENAME TO "{original}"'
            con.execute(sql)
        con.commit()
        if not tables - set(leftovers) - {"alembic_version"}:
            return  # empty: MLflow creates the schema
        version = (con.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0] \
            if "alembic_version" in tables else None
    except sqlite3.DatabaseError as exc:
        raise TrackingFailed(f"{where} is half-migrated and cannot be repaired ({exc}); "
                             f"{RUNBOOK_REPAIR.replace('URI', store.display_uri)}") from exc
    finally:
        con.close()
    from mlflow.store.db.utils import _get_latest_schema_revision, _upgrade_db

    if version == _get_latest_schema_revision():
        return
    import sqlalchemy

    log.warning("%s: schema version %s is not MLflow's %s; migrating", where, version,
                _get_latest_schema_revision())
    engine = sqlalchemy.create_engine(store.uri)
    try:
        if version is None:
            raise RuntimeError("MLflow tables without a schema version")
        _upgrade_db(engine)
    except Exception as exc:
        raise TrackingFailed(f"{where} is half-migrated (schema version {version}) and the migration "
                             f"failed: {' '.join(str(exc).split())[:160]}; "
                             f"{RUNBOOK_REPAIR.replace('URI', store.display_uri)}") from exc
    finally:
        engine.dispose()


def _init_lock(store: Store):
    """An inter-process lock beside a SQLite store (``<db>.init.lock``); servers migrate themselves."""
    from contextlib import nullcontext

    from filelock import FileLock

    path = store.sqlite_path
    return nullcontext() if path is None else FileLock(f"{path}.init.lock", timeout=INIT_LOCK_WAIT_S)


def ensure_store(store: Store) -> str:
    """Create or migrate the schema and create the experiment if missing; returns its id.

    Every process that opens a store comes through here (the tracking helper of every
    run, a sweep's parent), under one file lock, so two runs or two sweeps started
    together on a fresh store never race on its migration."""
    from filelock import Timeout

    preflight(store)
    quiet_mlflow()
    try:
        with _init_lock(store):
            _repair_sqlite(store)
            return _experiment_id(store)
    except Timeout as exc:
        raise TrackingFailed(f"tracking store {store.display_uri}: another process held {exc.lock_file} "
                             f"for over {INIT_LOCK_WAIT_S:.0f} s while creating the store; retry, or remove "
                             "the lock file if no run is alive") from exc
    except TrackingFailed:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise TrackingFailed(f"tracking store {store.display_uri} failed: {msg}") from exc


def _experiment_id(store: Store) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    exp = client.get_experiment_by_name(store.experiment)
    if exp is None:
        try:
            return client.create_experiment(store.experiment, artifact_location=store.artifact_location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:
            exp = client.get_experiment_by_name(store.experiment)  # created by a server's other client
            if exp is None:
                raise
    if EXPERIMENT_KIND_TAG not in exp.tags:  # a store made before the tag: the UI would open on GenAI
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


class _HelperLost(Exception):
    """The helper exited or stopped answering: its run must be ended from here."""


class Tracker:
    """The one owner of a run's MLflow run, from ``start`` to the gate's verdict.

    MLflow's import and store set-up (1-2 s of Python imports, ~90 MB) happen in a
    helper process started right after the preflight, in parallel with preprocessing
    and the TensorFlow import; the training process never imports MLflow. Calls are
    queued without waiting; a failure surfaces as TrackingFailed at the next call.
    Every wait has a deadline. ``pipeline.run`` creates it and hands it, inside the
    task's return value, to the health gate, which records the verdict (``finish``)
    and closes it; any failure in between ends the run with ``abort``. If the helper
    is gone or hung, ``abort`` kills it and ends the run with a fresh in-process
    MlflowClient (the only place the launcher imports MLflow)."""

    enabled = True

    def __init__(self, store: Store, log_path: Optional[Path] = None, register_model: Optional[str] = None):
        self.store = store
        self.register_model = register_model  # registry name for the model once the gate passed
        self._log_path = log_path  # the run log: uploaded by ``abort`` too (a run that failed before the gate)
        self.run_id: Optional[str] = None
        self._tags: Dict[str, str] = {}
        self.experiment_id: Optional[str] = None
        self.mlflow_run_id: Optional[str] = None
        self._pending = 0
        self._failure: Optional[str] = None  # first error reported: raised at the next call
        self._lost: Optional[str] = None  # why the helper can no longer be used
        self._ended: Optional[str] = None  # the terminal state the store confirmed last
        self._last_ok = False  # whether the latest reply was a success
        self._buf = b""
        package_root = str(Path(__file__).resolve().parent.parent)
        env = environment.for_child(PYTHONPATH=os.pathsep.join(
            filter(None, [package_root, environment.read(environment.PYTHONPATH)])))
        err = open(log_path, "ab") if log_path else subprocess.DEVNULL  # its warnings join the run log
        try:
            self._proc: Optional[subprocess.Popen] = subprocess.Popen(
                [sys.executable, "-m", "spline_lstm.tracking.helper"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True, bufsize=0)
        except OSError as exc:
            raise TrackingFailed(f"cannot start the tracking helper: {exc.strerror or exc}") from exc
        finally:
            if log_path:
                err.close()
        os.set_blocking(self._proc.stdin.fileno(), False)

    # --- the pipe, every operation bounded -------------------------------------------------

    def _lose(self, why: str) -> None:
        self._lost = self._lost or why
        self._failure = self._failure or f"MLflow tracking on {self.store.display_uri} failed: {why}"
        raise _HelperLost(why)

    def _write(self, data: bytes, deadline: float) -> None:
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                self._lose(f"the tracking helper (pid {self._proc.pid}) stopped taking requests")
            if not select.select([], [fd], [], left)[1]:
                continue
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError:
                self._lose("the tracking helper exited (see the run log)")

    def _read_line(self, deadline: Optional[float]) -> Optional[bytes]:
        """One reply line; None if none is in yet and ``deadline`` is None (do not wait)."""
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = 0.0 if deadline is None else deadline - time.monotonic()
            if deadline is not None and left <= 0:
                self._lose(f"the tracking helper (pid {self._proc.pid}) did not answer within the time limit")
            if not select.select([fd], [], [], left)[0]:
                if deadline is None:
                    return None
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._lose("the tracking helper exited (see the run log)")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _collect(self, timeout: Optional[float]) -> None:
        """Take the replies that are in; with ``timeout``, wait for all of them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            line = self._read_line(deadline)
            if line is None:
                return
            self._pending -= 1
            reply = json.loads(line)
            self._last_ok = bool(reply["ok"])
            if not reply["ok"]:
                self._failure = self._failure or reply["error"]
            else:
                self.experiment_id = reply.get("experiment_id") or self.experiment_id
                self.mlflow_run_id = reply.get("mlflow_run_id") or self.mlflow_run_id

    def _request(self, op: str, timeout: Optional[float], **args) -> None:
        """Queue ``op``; with ``timeout``, wait until it and everything before it was answered."""
        if self._proc is None or self._lost:
            self._failure = self._failure or f"MLflow {op} failed on {self.store.display_uri}: {self._lost}"
            return
        self._write((json.dumps({"op": op, **args}, default=str) + "\n").encode(),
                    time.monotonic() + (WAIT_S if timeout is None else timeout))
        self._pending += 1
        self._collect(timeout)

    def _send(self, op: str, timeout: Optional[float] = None, **args) -> None:
        if self._failure is None:
            try:
                self._request(op, timeout, **args)
            except _HelperLost:
                pass
        if self._failure is not None:
            raise TrackingFailed(self._failure)

    # --- the run ---------------------------------------------------------------------------

    def start(self, run_id: str, tags: Dict[str, str], params: Dict[str, object],
              start_time: Optional[float] = None, dataset: Optional[dict] = None) -> None:
        """``start_time``: when the launch began (epoch s), so MLflow's duration is the
        run's wall time although the run is created after preprocessing."""
        self.run_id, self._tags = run_id, tags
        self._send("start", store=asdict(self.store), run_id=run_id, tags=tags, params=params,
                   start_time=int(start_time * 1000) if start_time else None, dataset=dataset)

    def log_metrics(self, metrics: Dict[str, float], step: int = 0) -> None:
        """Stamped here, when measured: the helper may take the request much later."""
        self._send("log_metrics", metrics={k: float(v) for k, v in metrics.items() if v is not None}, step=step,
                   timestamp=int(time.time() * 1000))

    def log_artifacts(self, files: Iterable[tuple]) -> None:
        self._send("log_artifacts", files=[(str(path), sub) for path, sub in files])

    def set_tags(self, tags: Dict[str, str]) -> None:
        """Tags known only after evaluation (the quality verdict ``skill``)."""
        self._send("set_tags", tags={k: str(v) for k, v in tags.items()})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", text=text, artifact_file=artifact_file)

    def log_model(self, keras_path: Path, payload: dict, timestamps: list, values: list,
                  covariates: Optional[dict] = None) -> None:
        self._send("log_model", keras_path=str(keras_path), payload=payload, timestamps=timestamps, values=values,
                   covariates=covariates)

    def info(self) -> Dict[str, Optional[str]]:
        """The run's ids, once every queued call was answered (TrackingFailed if one failed)."""
        self._wait_all()
        return {"tracking_uri": self.store.display_uri, "experiment": self.store.experiment,
                "experiment_id": self.experiment_id, "mlflow_run_id": self.mlflow_run_id}

    def _wait_all(self) -> None:
        if self._failure is None and self._proc is not None:
            try:
                self._collect(WAIT_S)
            except _HelperLost:
                pass
        if self._failure is not None:
            raise TrackingFailed(self._failure)

    def finish(self, passed: bool, files: Iterable[tuple] = ()) -> None:
        """The gate's verdict: ``files`` (the health record, the run log so far) uploaded,
        then the health tag and FINISHED (or FAILED), confirmed by the store.

        Raises TrackingFailed once the run was ended FAILED another way."""
        try:
            files = list(files)
            if files:
                self.log_artifacts(files)
            self._send("verdict", timeout=WAIT_S, passed=passed)
            if passed and self.register_model:  # a version and its alias only for a run that passed
                self._send("register", timeout=WAIT_S, name=self.register_model, run_id=self.run_id,
                           alias=REGISTRY_ALIAS)
        except TrackingFailed:
            self.abort("FAILED")
            raise
        self._ended = "FINISHED" if passed else "FAILED"

    def abort(self, status: str) -> None:
        """End the run FAILED or KILLED, whatever state was queued or recorded before.

        Through the helper if it answers in time, then the run log uploaded to the ended
        run (same time limit); otherwise the helper is killed (a stopped one too) and the
        run is ended here with a fresh MlflowClient. Never raises."""
        if self.run_id is None:  # nothing was started: the helper holds nothing worth waiting for
            self._kill()
        if self.run_id is None or self._proc is None or self._ended == status:
            self.close()
            return
        timeout = INTERRUPT_WAIT_S if status == "KILLED" else FAIL_WAIT_S
        failure = self._failure
        self._failure = None  # earlier errors do not stop the terminal state from being sent
        try:
            self._request("end", timeout, status=status)
        except _HelperLost:
            pass
        ended = not self._lost and self._pending == 0 and self._last_ok
        self._failure = failure or self._failure
        if ended:
            self._ended = status
            self._upload_log(timeout)
        else:
            log.warning("could not end the MLflow run %s through the helper: %s", self.run_id, self._failure)
        if self._lost and not ended:
            self._kill()
            try:
                end_run_directly(self.store, self.run_id, self.mlflow_run_id, self._tags, status)
            except Exception as exc:  # noqa: BLE001 - the store itself may be what failed
                log.warning("could not end the MLflow run %s (%s) directly: %s", self.run_id, status,
                            " ".join(str(exc).split())[:200])
        self.close(timeout)

    def _upload_log(self, timeout: float) -> None:
        """The run log as it stands (the traceback included) to the ended run, best effort
        within ``timeout``: the terminal state is recorded first, a slow upload never holds
        up the exit (the helper is killed instead)."""
        if not self._log_path or not Path(self._log_path).is_file():
            return
        failure, self._failure = self._failure, None
        try:
            self._request("log_artifacts", timeout, files=[(str(self._log_path), None)])
        except _HelperLost:
            self._kill()
        if self._failure:
            log.warning("could not upload the run log of %s to MLflow: %s", self.run_id, self._failure)
        self._failure = failure or self._failure

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # SIGKILL also ends a stopped process, and its SQLite lock with it
            self._proc.wait()

    def close(self, timeout: float = WAIT_S) -> None:
        """Let the helper finish what is queued and exit; kill it after ``timeout``."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NullTracker:
    """tracking=none: the pipeline and the gate run, MLflow is never imported."""

    enabled = False
    mlflow_run_id = None

    def start(self, run_id, tags, params, start_time=None, dataset=None):
        pass

    def log_metrics(self, metrics, step=0):
        pass

    def set_tags(self, tags):
        pass

    def log_model(self, keras_path, payload, timestamps, values, covariates=None):
        pass

    def log_artifacts(self, files):
        pass

    def log_text(self, text, artifact_file):
        pass

    def finish(self, passed, files=()):
        pass

    def abort(self, status):
        pass

    def close(self, timeout=None):
        pass

    def info(self):
        return {"tracking_uri": None, "experiment": None, "experiment_id": None, "mlflow_run_id": None}


def end_run_directly(store: Store, run_id: str, mlflow_run_id: Optional[str], tags: Dict[str, str],
                     status: str) -> None:
    """Make the store say how the run ended, from this process (the helper is gone).

    Without the MLflow id (the helper died before answering ``start``): the runs tagged
    ``run_id`` that are still RUNNING, or, when the helper never created one, a new run
    with the run's tags, so a claimed run always has its MLflow record. A health=PASS
    tag turns FAIL."""
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    experiment_id = ensure_store(store)
    client = MlflowClient(tracking_uri=store.uri)
    if mlflow_run_id:
        runs = [client.get_run(mlflow_run_id)]
    else:
        runs = [r for r in client.search_runs([experiment_id], filter_string=f"tags.run_id = '{run_id}'")
                if r.info.status == "RUNNING"]
        runs = runs or [client.create_run(experiment_id, run_name=run_id, tags={**tags, "run_id": run_id})]
    for run in runs:
        if run.data.tags.get("health") == "PASS":
            client.set_tag(run.info.run_id, "health", "FAIL")
        client.set_terminated(run.info.run_id, status)


def find_runs(store: Store, run_id: str) -> list:
    """MLflow runs tagged with our run_id."""
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    exp = client.get_experiment_by_name(store.experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], filter_string=f"tags.run_id = '{run_id}'")


def tag_runs(store: Store, run_id: str, tags: Dict[str, str], status: Optional[str] = None) -> int:
    """Set tags on every MLflow run of a run_id (standalone health, quarantine) and,
    with ``status``, turn a FINISHED one to it (a failed standalone gate: FAILED), its end
    time kept; a KILLED or still RUNNING run keeps its state. health=PASS only goes to a
    FINISHED run: a later pass never makes a failed one look comparable. Returns how many."""
    from mlflow.tracking import MlflowClient

    runs = find_runs(store, run_id)
    if tags.get("health") == "PASS":
        runs = [r for r in runs if r.info.status == "FINISHED"]
    client = MlflowClient(tracking_uri=store.uri)
    for run in runs:
        for k, v in tags.items():
            client.set_tag(run.info.run_id, k, str(v))
        if status and run.info.status == "FINISHED":
            client.set_terminated(run.info.run_id, status, end_time=run.info.end_time)
    return len(runs)
