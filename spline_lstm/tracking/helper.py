"""The tracking helper process: MLflow lives here, never in the training process.

Protocol (``python -m spline_lstm.tracking.helper``): one JSON request per line on
stdin, one JSON reply per line on stdout, in order. Requests are ``start`` (created
with the launch's own start time, and the input logged as a dataset),
``log_metrics`` (timestamped by the sender), ``log_artifacts``, ``log_text``,
``log_model`` (the pyfunc model, a LoggedModel of the run), ``verdict`` (the gate's health tag and terminal state),
``register`` (after a PASS) and ``end`` (a terminal state). Every terminal state is applied
in the order it arrives, so a later FAILED/KILLED always replaces an earlier FINISHED.
The launcher side is ``spline_lstm.tracking.tracker.Tracker``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Optional

from spline_lstm.core import environment
from spline_lstm.core.config import is_http
from spline_lstm.core.errors import TrackingFailed
from spline_lstm.core.secrets import mask_logs, mask_text
from spline_lstm.serving import pyfunc
from spline_lstm.tracking.server import drop_duplicate_runs
from spline_lstm.tracking.store import Store
from spline_lstm.tracking.tracker import ensure_store, quiet_mlflow

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
MODEL_NAME = "model"  # the LoggedModel's name: runs:/<mlflow run id>/model


class MlflowRun:
    """One MLflow run through MlflowClient: every call batched and failure-typed."""

    def __init__(self, store: Store):
        self.store = store
        self.experiment_id: Optional[str] = None
        self.mlflow_run_id: Optional[str] = None
        self.ended = False  # a terminal state was recorded (the EOF rule leaves it alone)
        self._passed = False  # health=PASS was recorded: a later failure must turn it FAIL
        self.model_id: Optional[str] = None  # the run's LoggedModel, once logged
        self._client = None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            msg = mask_text(" ".join(str(exc).split())[:200])
            raise TrackingFailed(f"MLflow {what} failed on {self.store.display_uri}: {msg}") from exc

    def start(self, run_id: str, tags: Dict[str, str], params: Dict[str, object],
              start_time: Optional[int] = None, dataset: Optional[dict] = None) -> None:
        """``start_time``: epoch ms of the launch (the run's real start, not this call);
        ``dataset``: see ``dataset_input``."""
        self.experiment_id = ensure_store(self.store)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.store.uri)
        run = self._call("create_run", self._client.create_run, self.experiment_id, start_time=start_time,
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
        if dataset:
            self._call("log_inputs", self._client.log_inputs, self.mlflow_run_id,
                       datasets=[dataset_input(**dataset)])

    def log_metrics(self, metrics: Dict[str, float], step: int = 0, timestamp: Optional[int] = None) -> None:
        """``timestamp``: epoch ms when the values were measured (the sender's clock)."""
        from mlflow.entities import Metric

        now = timestamp or int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))]
        for i in range(0, len(items), 1000):
            self._call("log_batch", self._client.log_batch, self.mlflow_run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._call("log_batch", self._client.log_batch, self.mlflow_run_id,
                   tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifacts(self, files: Iterable[tuple]) -> None:
        """``files``: (local path, artifact sub-folder or None)."""
        for path, sub in files:
            path = Path(path)
            if path.is_dir():
                self._call("log_artifacts", self._client.log_artifacts, self.mlflow_run_id, str(path), sub)
            elif path.exists():
                self._call("log_artifact", self._client.log_artifact, self.mlflow_run_id, str(path), sub)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A generated document (the HTML report) that exists only in MLflow."""
        self._call("log_text", self._client.log_text, self.mlflow_run_id, text, artifact_file)

    def log_model(self, keras_path: str, payload: dict, timestamps: list, values: list,
                  covariates: Optional[dict] = None) -> None:
        """The pyfunc model (spline_lstm.serving.pyfunc) as a LoggedModel named ``model``,
        an output of the run (its Models column; ``runs:/<id>/model`` and ``models:/<model_id>``
        resolve to it), with the run's params and final metrics linked.

        The steps of ``mlflow.pyfunc.log_model`` taken one by one, for two reasons: it would
        validate the input example by loading the model here (importing TensorFlow into
        this helper, seconds of CPU per run), and it would log the model's config
        (``run_id``, ``keras_sha256``) as params of the run, which holds only what the run used."""
        import tempfile

        from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
        from mlflow.models import Model

        run = self._call("get_run", self._client.get_run, self.mlflow_run_id)
        model = self._call("create_logged_model", self._client.create_logged_model, self.experiment_id,
                           name=MODEL_NAME, source_run_id=self.mlflow_run_id, params=dict(run.data.params),
                           tags={"run_id": payload["run_id"]}, model_type="forecaster")
        try:
            with tempfile.TemporaryDirectory(prefix="spline-lstm-model-") as tmp:
                example = pyfunc.input_example(payload, timestamps, values, covariates)
                card = Model(artifact_path=model.artifact_location, run_id=self.mlflow_run_id,
                             model_uuid=model.model_id, model_id=model.model_id)
                target = pyfunc.save(Path(tmp) / MODEL_NAME, Path(keras_path), payload, example, card)
                self._call("log_model_artifacts", self._client.log_model_artifacts, model.model_id, str(target))
            self._call("log_outputs", self._client.log_outputs, self.mlflow_run_id,
                       [LoggedModelOutput(model.model_id, step=0)])
            now = int(time.time() * 1000)
            linked = [Metric(k, v, now, 0, model_id=model.model_id, run_id=self.mlflow_run_id)
                      for k, v in run.data.metrics.items() if not k.startswith(("train/", "val/", "loss/"))]
            for i in range(0, len(linked), 1000):
                self._call("log_batch", self._client.log_batch, self.mlflow_run_id, metrics=linked[i:i + 1000])
        except Exception:
            try:
                self._client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            except Exception:  # noqa: BLE001 - the first failure is the one to report
                pass
            raise
        self._call("finalize_logged_model", self._client.finalize_logged_model, model.model_id,
                   LoggedModelStatus.READY)
        self.model_id = model.model_id

    def register(self, name: str, run_id: str, alias: str) -> None:
        """A model version of the run's LoggedModel tagged with the run_id, then ``alias``
        on it (sent only after the gate passed).

        Through ``mlflow.register_model("models:/<model_id>")``, as MLflow's own
        ``log_model(registered_model_name=...)`` does: the version's source is the
        LoggedModel (its run found from it), and the LoggedModel gets the tag
        ``mlflow.modelVersions`` that its page shows as "Registered versions"; the
        version also carries ``model_id`` as a tag (the SQL registry keeps no column for it)."""
        import mlflow

        if self.model_id is None:
            raise TrackingFailed(f"MLflow register of {name!r}: run {self.mlflow_run_id} logged no model")
        with _global_tracking_uri(self.store.uri):
            version = self._call("register_model", mlflow.register_model, f"models:/{self.model_id}", name,
                                 tags={"run_id": run_id, "model_id": self.model_id})
        self._call("set_registered_model_alias", self._client.set_registered_model_alias, name, alias,
                   version.version)

    def end(self, status: str) -> None:
        """Any terminal state, always applied: the last one sent is the one MLflow keeps."""
        if self._client is None or self.mlflow_run_id is None:
            return
        if status != "FINISHED" and self._passed:
            self._call("set_tag", self._client.set_tag, self.mlflow_run_id, "health", "FAIL")
            self._passed = False
        self._call("set_terminated", self._client.set_terminated, self.mlflow_run_id, status)
        self.ended = True

    def verdict(self, passed: bool) -> None:
        """The gate's verdict: health tag, then FINISHED (PASS) or FAILED; a half-recorded
        PASS is taken back (health=FAIL, FAILED) before the failure is reported."""
        if self._client is None or self.mlflow_run_id is None:
            return
        try:
            self._call("set_tag", self._client.set_tag, self.mlflow_run_id, "health", "PASS" if passed else "FAIL")
            self._passed = passed
            self.end("FINISHED" if passed else "FAILED")
        except TrackingFailed:
            if passed:
                try:
                    self.end("FAILED")
                except TrackingFailed:
                    pass
            raise


@contextmanager
def _global_tracking_uri(uri: str):
    """MLflow's global tracking URI (and MLFLOW_TRACKING_URI) set to ``uri`` for one call,
    then put back: the registry resolves ``models:/<model_id>`` through it, not through
    the client's URI, and nothing may leak into a process that serves in-process (tests)."""
    import mlflow

    saved = environment.read(environment.MLFLOW_URI)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)  # None: unset again


def dataset_input(name: str, digest: str, sha256: Optional[str], path: Optional[str], rows: int):
    """The input as an MLflow dataset: a file by its path, the synthetic series by its code.

    The digest is the input's sha256 cut to MLflow's 36-character column (the full
    hash rides along as the input tag ``sha256``)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = (resolve_dataset_source(path) if path else
              CodeDatasetSource({"mlflow.source.name": "spline_lstm.data.loading (synthetic generator)"}))
    doc = MetaDataset(source, name=name, digest=digest[:36]).to_dict()
    entity = Dataset(doc["name"], doc["digest"], doc["source_type"], doc["source"],
                     profile=json.dumps({"rows": rows}))
    tags = [InputTag("mlflow.data.context", "training")]
    if sha256:
        tags.append(InputTag("sha256", sha256))
    return DatasetInput(entity, tags)


def _handle(run: Optional[MlflowRun], msg: dict) -> tuple:
    """One request -> (the run, its JSON reply)."""
    op, reply = msg.pop("op"), {"ok": True}
    try:
        if op == "start":
            run = MlflowRun(Store(**msg.pop("store")))
            run.start(**msg)
        elif run is None:
            raise TrackingFailed(f"MLflow {op} before the run was created")
        elif op in ("log_metrics", "set_tags", "log_artifacts", "log_text", "log_model", "register", "end", "verdict"):
            getattr(run, op)(**msg)
        else:
            raise TrackingFailed(f"unknown tracking request {op!r}")
        reply.update(experiment_id=run.experiment_id, mlflow_run_id=run.mlflow_run_id)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the launch process
        log.debug("tracking %s failed", op, exc_info=True)
        reply = {"ok": False, "error": mask_text(str(exc)) if isinstance(exc, TrackingFailed) else
                 mask_text(f"MLflow {op} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")}
    return run, reply


def serve(requests=None, replies=None) -> None:
    """Answer requests until EOF.

    Ignores terminal signals (the launch process decides how a run ends); if the
    launch process vanishes (EOF) while its run has no terminal state, it ends KILLED."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    requests = requests or sys.stdin
    replies = replies or sys.stdout
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    mask_logs()  # its stderr joins the run log
    quiet_mlflow()
    run: Optional[MlflowRun] = None
    for line in requests:
        try:
            msg = json.loads(line)
        except ValueError:  # a request cut short by a signal in the launcher
            msg = {"op": "malformed"}
        run, reply = _handle(run, msg)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    if run is not None and not run.ended:
        try:
            run.end("KILLED")
        except TrackingFailed:
            pass


if __name__ == "__main__":
    serve()
    sys.stdout.flush()
    os._exit(0)  # every reply is out: skip tearing down MLflow and SQLAlchemy (~0.4 s)
