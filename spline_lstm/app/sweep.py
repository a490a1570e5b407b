"""A sweep as one thing: its parent MLflow run and its ranked summary table.

The sweep's parent process (``hydra_app.TrackingStoreCallback.on_multirun_start``)
creates the parent MLflow run, exports its id to the jobs in ``SPLINE_LSTM_PARENT_RUN_ID`` (``core.environment``) (Hydra's
basic launcher runs jobs in that process; joblib and submitit workers are started
after it and inherit the environment) and records it with the sweep folder in the
launcher's status folder. Each job's status record carries its overrides and
metrics. ``launcher.py`` calls ``finish`` once the sweep is over, whatever its
outcome (Hydra skips ``on_multirun_end`` when a job failed): the table is printed,
written to ``<sweep folder>/summary.csv`` and ``summary.json``, logged to the parent
run, and the parent ends FINISHED only when every job passed.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from spline_lstm.artifacts.layout import atomic_write_bytes, atomic_write_json
from spline_lstm.core import progress
from spline_lstm.core.documents import MetricsDoc
from spline_lstm.tracking.store import Store
from spline_lstm.tracking.tracker import ensure_store, quiet_mlflow

RECORD = Path("sweep") / "parent.json"  # inside the status folder, apart from the jobs' *.json
METRIC_COLUMNS = ("val_rmse", "val_rmse_scaled", "test_rmse")
trace = logging.getLogger("spline_lstm.trace")


# --- pure: the table ---------------------------------------------------------

def split_override(text: str) -> Tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def varying_keys(override_lists: Iterable[List[str]]) -> List[str]:
    """Override keys whose value is not the same in every job (run_id has its own column)."""
    jobs = [dict(split_override(o) for o in overrides) for overrides in override_lists]
    keys: List[str] = []
    for job in jobs:
        keys += [k for k in job if k not in keys and k != "run_id"]
    return [k for k in keys if len({job.get(k) for job in jobs}) > 1]


def job_metrics(metrics_doc: dict) -> Dict[str, Optional[float]]:
    """Validation rmse of the best checkpoint in the series' units (the task's objective,
    comparable across differencing and scaling), validation rmse in the scaled units
    training minimises (the best epoch's val_loss is an MSE: the number the best
    checkpoint was chosen on), and the test rmse in the series' units."""

    doc = MetricsDoc.from_dict(metrics_doc)
    return {"val_rmse": doc.val_rmse, "val_rmse_scaled": doc.val_rmse_scaled(), "test_rmse": doc.rmse}


def _sort_value(x) -> float:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else math.inf


def rank(statuses: List[dict]) -> Tuple[List[str], List[dict]]:
    """The table's columns and rows: jobs that passed first, by validation rmse in the
    series' units (runs without it: in scaled units; never by test); then the failed
    ones, in job order."""
    keys = varying_keys(s.get("overrides") or [] for s in statuses)
    rows = []
    for s in statuses:
        overrides = dict(split_override(o) for o in s.get("overrides") or [])
        row = {"run_id": s["run_id"], **{k: overrides.get(k, "") for k in keys}}
        row.update({m: s.get(m) for m in METRIC_COLUMNS})
        row.update(gate="PASS" if s.get("ok") else "FAIL", exit=0 if s.get("ok") else s.get("code", 1),
                   error="" if s.get("ok") else s.get("name", ""))
        rows.append(row)
    key = "val_rmse" if any(r["val_rmse"] is not None for r in rows) else "val_rmse_scaled"
    passed = sorted((r for r in rows if r["gate"] == "PASS"), key=lambda r: _sort_value(r[key]))
    ranked = [{"rank": n + 1, **r} for n, r in enumerate(passed + [r for r in rows if r["gate"] != "PASS"])]
    return ["rank", "run_id", *keys, *METRIC_COLUMNS, "gate", "exit", "error"], ranked


def pick_best(columns: List[str], rows: List[dict]) -> Optional[dict]:
    """The first-ranked job if it passed; none for a sweep over shards (different series)."""
    if "data.shard" in columns:
        return None
    return rows[0] if rows and rows[0]["gate"] == "PASS" else None


def best_line(columns: List[str], best: Optional[dict]) -> str:
    """``best       <run_id> val_rmse ... (overrides that vary)``: the trial a search ends with."""
    if "data.shard" in columns:
        return ("best       none: the jobs are shards (data.shard) of different series, whose errors do not "
                "compare; read each shard's metrics")
    if best is None:
        return "best       none: no job passed the gate"
    varying = [c for c in columns if c not in ("rank", "run_id", *METRIC_COLUMNS, "gate", "exit", "error")]
    chosen = " ".join(f"{c}={best[c]}" for c in varying)
    return (f"best       {best['run_id']} val_rmse {_cell(best['val_rmse'])}"
            + (f" ({chosen})" if chosen else ""))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_text(columns: List[str], rows: List[dict]) -> str:
    cells = [columns] + [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells)


def csv_bytes(columns: List[str], rows: List[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: ("" if r[c] is None else r[c]) for c in columns} for r in rows)
    return buf.getvalue().encode("utf-8")


# --- I/O: the parent run and the summary files -------------------------------

def begin(status_dir: Optional[str], sweep_id: str, sweep_dir: Path, store, search: bool = False,
          jobs: Optional[int] = None) -> Optional[str]:
    """Create the parent MLflow run (``store`` None: tracking=none, no parent) and record
    it for the launcher; returns its id. A store that fails here is left for the jobs,
    which report it with exit code 8. ``search``: a hyperparameter search (the Optuna
    sweeper, ``+hpo=...``), whose failed trials do not fail the study (``passed``)."""
    mlflow_run_id = None
    if store is not None:
        try:

            quiet_mlflow()
            from mlflow.tracking import MlflowClient

            experiment_id = ensure_store(store)
            tags = {"sweep_id": sweep_id, "kind": "sweep", **({"search": "optuna"} if search else {})}
            run = MlflowClient(tracking_uri=store.uri).create_run(experiment_id, run_name=sweep_id, tags=tags)
            mlflow_run_id = run.info.run_id
        except Exception:
            trace.exception("could not create the sweep's parent MLflow run")
    if status_dir:
        atomic_write_json(Path(status_dir) / RECORD, {
            "sweep_id": sweep_id, "sweep_dir": str(sweep_dir), "mlflow_run_id": mlflow_run_id, "search": search,
            "jobs": jobs, "started": time.time(),
            "store": asdict(store) if store is not None and mlflow_run_id else None})
    return mlflow_run_id


def passed(status_dir: Path, statuses: List[dict]) -> bool:
    """Whether the sweep as a whole passed: every job did; for a search, at least one
    trial did (its failed trials are failed trials, counted in its summary)."""
    ok = [s.get("ok") for s in statuses]
    record = read_record(status_dir) or {}
    return bool(ok) and (any(ok) if record.get("search") else all(ok))


def progress_text(status_dir: Path) -> Optional[str]:
    """``sweep 3/8 [...] 41 s, ETA 1 min 10 s  jobs done`` once a job ended (None without a
    known job count): shown on a terminal only, between the jobs' own lines."""
    record = read_record(status_dir) or {}
    total, started = record.get("jobs"), record.get("started")
    if not isinstance(total, int) or total < 2 or not isinstance(started, (int, float)):
        return None
    done = len(list(status_dir.glob("*.json")))
    return progress.line("sweep", done, total, time.time() - started, "jobs done")


def read_record(status_dir: Path) -> Optional[dict]:
    try:
        return json.loads((status_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None


def write_summary(sweep_dir: Path, columns: List[str], rows: List[dict]) -> List[Path]:
    """summary.csv and summary.json in the sweep folder, each written atomically."""
    csv_path, json_path = sweep_dir / "summary.csv", sweep_dir / "summary.json"
    atomic_write_bytes(csv_path, csv_bytes(columns, rows))
    best = pick_best(columns, rows)
    atomic_write_json(json_path, {"columns": columns, "rows": rows, "best": best,
                                  "ranked_by": "val_rmse, else val_rmse_scaled (jobs that passed first)"})
    return [csv_path, json_path]


def end_parent(store_doc: dict, mlflow_run_id: str, status: str, files: List[Path], best: Optional[dict],
               failed: int = 0) -> None:
    """Upload the summary files, name the best job that passed (tag ``best_run_id``, metrics
    ``best/...``) and how many failed (tag ``failed_jobs``), end the run."""

    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=Store(**store_doc).uri)
    try:
        client.set_tag(mlflow_run_id, "failed_jobs", str(failed))
        if best is not None:
            client.set_tag(mlflow_run_id, "best_run_id", best["run_id"])
            for name in METRIC_COLUMNS:
                if isinstance(best.get(name), (int, float)):
                    client.log_metric(mlflow_run_id, f"best/{name}", best[name])
        for path in files:
            client.log_artifact(mlflow_run_id, str(path), "summary")
    finally:  # ended even when the upload fails
        client.set_terminated(mlflow_run_id, status)


def end_open_children(store_doc: dict, parent_id: str, status: str) -> List[str]:
    """End every job run of the sweep (a child of ``parent_id``) that is still RUNNING
    with ``status``: a worker killed with its process tree (joblib's loky kills the MLflow
    helper with it) or cut short before its helper ended the run leaves it RUNNING
    forever otherwise. Returns the run names ended. Runs of other sweeps, or ended runs,
    are never touched (the filter names this parent and RUNNING)."""

    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=Store(**store_doc).uri)
    experiment = client.get_run(parent_id).info.experiment_id
    query = f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
    ended = []
    for run in client.search_runs([experiment], filter_string=query, max_results=10_000):
        client.set_tag(run.info.run_id, "health", "FAIL")
        client.set_terminated(run.info.run_id, status)
        ended.append(run.info.run_name or run.info.run_id)
    return ended


def finish(status_dir: Path, statuses: List[dict], code: int) -> Optional[str]:
    """The end of a sweep (None for a single run): the ranked table as text, after writing
    the summary files and ending the parent run (FINISHED when every job passed, KILLED
    when interrupted, FAILED otherwise). A summary file or parent run that cannot be written
    becomes a note under the table, never an error: the jobs' verdicts stand."""
    record = read_record(status_dir)
    if record is None:
        return None
    columns, rows = rank(statuses)
    jobs = f"{len(rows)} job{'' if len(rows) == 1 else 's'}"
    lines = [f"sweep {record['sweep_id']}: {jobs}, ranked by validation rmse (passed jobs first)",
             table_text(columns, rows)]
    best = pick_best(columns, rows)
    lines.append(best_line(columns, best))
    failed = sum(1 for r in rows if r["gate"] != "PASS")
    if record.get("search"):
        lines.append(f"trials     {len(rows) - failed} passed, {failed} failed"
                     + ("" if failed == 0 else " (failed trials are FAILED in the study and in MLflow; "
                        "the study exits 0 when one passed)"))
    files: List[Path] = []
    try:
        files = write_summary(Path(record["sweep_dir"]), columns, rows)
        lines.append(f"summary    {files[0]}")
    except Exception as exc:  # noqa: BLE001 - the jobs' verdicts stand
        trace.exception("could not write the sweep summary")
        lines.append(f"summary    not written: {type(exc).__name__}: {exc}")
    if record.get("mlflow_run_id"):
        ok = [r["gate"] == "PASS" for r in rows]
        whole = bool(ok) and (any(ok) if record.get("search") else all(ok))
        status = "FINISHED" if code == 0 and whole else "KILLED" if code == 130 else "FAILED"
        if code != 0:  # the one interrupt path for every launcher: no job run is left RUNNING
            try:
                ended = end_open_children(record["store"], record["mlflow_run_id"], status)
                if ended:
                    lines.append(f"mlflow     {len(ended)} job run{'' if len(ended) == 1 else 's'} left RUNNING "
                                 f"ended {status}: {', '.join(ended)}")
            except Exception as exc:  # noqa: BLE001
                trace.exception("could not end the sweep's open job runs")
                lines.append(f"mlflow     open job runs not ended: {type(exc).__name__}")
        try:
            end_parent(record["store"], record["mlflow_run_id"], status, files, best, failed)
            lines.append(f"mlflow     parent run {record['mlflow_run_id']} {status}")
        except Exception as exc:  # noqa: BLE001
            trace.exception("could not end the sweep's parent MLflow run")
            lines.append(f"mlflow     parent run {record['mlflow_run_id']} not ended: {type(exc).__name__}")
    return "\n".join(lines)
