"""Sweeps read well (issue 12, item 5): every job's console lines carry its run_id, the
sweep ends with a table ranked by validation rmse (printed, and summary.csv/json in the
sweep folder), and MLflow holds one parent run with the jobs' runs as its children.

The end-to-end cases are real sweeps of real launch.py runs (tiny: 2 jobs, 1 epoch)."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from spline_lstm.app import sweep
from tests.conftest import REPO, launch, last_line

TINY = ["+preset=smoke", "training.epochs=1", "data.n_points=300"]
JOB_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\]\[([A-Za-z0-9._-]+)\]\[(INFO|WARNING|ERROR)\] ")
SINGLE_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\]\[(INFO|WARNING|ERROR)\] ")


# --- the table: pure --------------------------------------------------------------------

def _status(run_id, units, val, test, ok=True, code=None, name=None):
    doc = {"run_id": run_id, "ok": ok, "overrides": ["+preset=smoke", f"model.units={units}", "training.epochs=1"],
           "val_rmse_scaled": val, "test_rmse": test}
    return doc if ok else {**doc, "code": code, "name": name}


@pytest.mark.unit
def test_only_overrides_that_differ_between_jobs_become_columns():
    jobs = [["+preset=smoke", "model.units=8", "seed=1", "run_id=a"],
            ["+preset=smoke", "model.units=8", "seed=2", "run_id=b"],
            ["+preset=smoke", "model.units=8", "run_id=c"]]
    assert sweep.varying_keys(jobs) == ["seed"]  # absent in one job counts as differing; run_id has its column


@pytest.mark.unit
def test_rows_are_ranked_by_validation_never_by_test_and_failed_jobs_come_last():
    statuses = [_status("a", 8, 0.9, 0.1), _status("b", 16, 0.5, 0.9),
                _status("c", 32, None, None, ok=False, code=5, name="INPUT_INVALID"), _status("d", 64, 0.7, 0.2)]
    columns, rows = sweep.rank(statuses)
    assert columns == ["rank", "run_id", "model.units", "val_rmse", "val_rmse_scaled", "test_rmse", "gate", "exit",
                       "error"]
    assert [r["run_id"] for r in rows] == ["b", "d", "a", "c"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1] == {"rank": 4, "run_id": "c", "model.units": "32", "val_rmse": None, "val_rmse_scaled": None,
                        "test_rmse": None, "gate": "FAIL", "exit": 5, "error": "INPUT_INVALID"}
    text = sweep.table_text(columns, rows).splitlines()
    assert text[0].split() == columns and text[1].split()[:2] == ["1", "b"]
    parsed = list(csv.DictReader(sweep.csv_bytes(columns, rows).decode().splitlines()))
    assert [p["run_id"] for p in parsed] == ["b", "d", "a", "c"] and parsed[3]["val_rmse_scaled"] == ""


@pytest.mark.unit
def test_rows_are_ranked_by_validation_rmse_in_the_series_units_when_the_runs_have_it():
    """Scaled losses of runs with other differencing or scaling do not compare; the
    validation rmse in the series' units does."""
    statuses = [{**_status("a", 8, 0.1, 0.5), "val_rmse": 9.0}, {**_status("b", 16, 0.9, 0.1), "val_rmse": 3.0}]
    columns, rows = sweep.rank(statuses)
    assert [r["run_id"] for r in rows] == ["b", "a"]
    assert sweep.best_line(columns, rows[0]) == "best       b val_rmse 3 (model.units=16)"
    assert sweep.best_line(columns, None) == "best       none: no job passed the gate"


@pytest.mark.unit
def test_validation_rmse_is_the_best_epochs_validation_loss():
    doc = {"best_epoch": 2, "history": {"val_loss": [4.0, 0.25, 1.0]}, "metrics": {"rmse": 3.5},
           "validation": {"rmse": 7.0}}
    assert sweep.job_metrics(doc) == {"val_rmse": 7.0, "val_rmse_scaled": 0.5, "test_rmse": 3.5}
    assert sweep.job_metrics({"best_epoch": None, "history": {}, "metrics": {}}) == {
        "val_rmse": None, "val_rmse_scaled": None, "test_rmse": None}


@pytest.mark.unit
def test_a_single_runs_console_format_is_unchanged_and_a_sweep_jobs_carries_its_run_id():
    from spline_lstm.app.hydra_app import console_formatter

    single = console_formatter("[%(levelname)s] %(message)s", "[run-1][%(levelname)s] %(message)s", None)
    job = console_formatter("[%(levelname)s] %(message)s", "[run-1][%(levelname)s] %(message)s", 0)
    import logging

    record = logging.LogRecord("x", logging.INFO, "f", 1, "hello", None, None)
    assert single.format(record) == "[INFO] hello" and job.format(record) == "[run-1][INFO] hello"


# --- real sweeps -------------------------------------------------------------------------

def _job_lines(stdout: str) -> Dict[str, List[str]]:
    """Console lines in a job's log format, by the run_id they carry."""
    out: Dict[str, List[str]] = {}
    for line in stdout.splitlines():
        m = JOB_LINE.match(line)
        if m:
            out.setdefault(m.group(1), []).append(line)
    return out


def _table(stdout: str) -> List[List[str]]:
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("rank  run_id"))
    rows = []
    for line in lines[start:]:
        if line.startswith(("best ", "summary ")):
            break
        rows.append(line.split())
    return rows


def _summary(outputs: Path) -> List[dict]:
    (sweep_dir,) = (outputs / "sweeps").iterdir()
    with open(sweep_dir / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert json.loads((sweep_dir / "summary.json").read_text())["rows"][0]["run_id"] == rows[0]["run_id"]
    assert not [p for p in sweep_dir.iterdir() if ".tmp-" in p.name], "a temp file was left"
    return rows


def _mlflow(outputs: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{outputs}/mlflow.db")
    exp = client.get_experiment_by_name("spline-lstm")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    return client, parents, [r for r in runs if r.data.tags.get("kind") != "sweep"]


@pytest.mark.slow
def test_a_sweep_logs_by_run_id_ends_with_a_ranked_table_and_a_finished_parent_run(small_sweep):
    outputs, proc = small_sweep.outputs, small_sweep
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    rows = _summary(outputs)
    run_ids = {r["run_id"] for r in rows}
    assert len(rows) == 2 and {r["model.units"] for r in rows} == {"8", "16"}
    vals = [float(r["val_rmse"]) for r in rows]
    assert vals == sorted(vals) and all(r["gate"] == "PASS" and r["exit"] == "0" for r in rows)
    local = {rid: json.loads((outputs / "artifacts" / "metrics" / f"{rid}.json").read_text()) for rid in run_ids}
    for r in rows:
        assert math.isclose(float(r["test_rmse"]), local[r["run_id"]]["metrics"]["rmse"], rel_tol=1e-9)

    # the printed table: every job, in the same order, its varying override and verdict
    table = _table(proc.stdout)
    assert table[0][:3] == ["rank", "run_id", "model.units"]
    assert [row[1] for row in table[1:]] == [r["run_id"] for r in rows]
    assert [row[2] for row in table[1:]] == [r["model.units"] for r in rows]

    # every job's console lines carry its own run_id, epochs included; the basic launcher runs
    # them one after the other, so each job's lines sit between its "#N :" marker and the next
    by_job = _job_lines(proc.stdout)
    assert set(by_job) == run_ids
    for rid, lines in by_job.items():
        assert any(f"run_id     {rid}" in ln for ln in lines) and any("epoch 1/1" in ln for ln in lines)
    blocks = re.split(r"\[HYDRA\]\s+#\d+ : ", proc.stdout)[1:]
    assert len(blocks) == 2
    for block in blocks:
        found = {m.group(1) for m in map(JOB_LINE.match, block.splitlines()) if m}
        assert len(found) == 1, found
    assert not [ln for ln in proc.stdout.splitlines() if SINGLE_LINE.match(ln)], "a job line without its run_id"

    # MLflow: one parent run named after the sweep, FINISHED, with both job runs as children
    client, parents, children = _mlflow(outputs)
    (parent,) = parents
    (sweep_dir,) = (outputs / "sweeps").iterdir()
    assert parent.info.run_name == sweep_dir.name == parent.data.tags["sweep_id"]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["run_id"] for c in children} == run_ids
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "summary")} == {
        "summary/summary.csv", "summary/summary.json"}
    assert f"parent run {parent.info.run_id} FINISHED" in proc.stdout
    assert parent.data.tags["best_run_id"] == rows[0]["run_id"]
    assert f"best       {rows[0]['run_id']} val_rmse" in proc.stdout
    assert math.isclose(parent.data.metrics["best/val_rmse_scaled"], float(rows[0]["val_rmse_scaled"]), rel_tol=1e-9)

    # each job's run has its own start and end (the basic launcher runs them one after the
    # other in the sweep's process): not the sweep's launch time
    first, second = sorted(children, key=lambda c: c.info.start_time)
    assert parent.info.start_time <= first.info.start_time < first.info.end_time <= second.info.start_time
    assert second.info.start_time < second.info.end_time


@pytest.mark.slow
def test_a_parallel_sweep_with_a_failing_job_ends_its_parent_failed_and_lists_the_job(tmp_path):
    """joblib workers are other processes: they still log with their run_id and become
    children. data.n_points=30 passes the config check but fails at run time (exit 5)."""
    outputs = tmp_path / "outputs"
    proc = launch("-m", *TINY, "data.n_points=300,30", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  outputs=outputs)
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert last_line(proc.stderr).startswith("ERROR [INPUT_INVALID]")

    rows = _summary(outputs)
    assert [(r["data.n_points"], r["gate"], r["exit"], r["error"]) for r in rows] == [
        ("300", "PASS", "0", ""), ("30", "FAIL", "5", "INPUT_INVALID")]
    assert rows[1]["val_rmse_scaled"] == rows[1]["test_rmse"] == ""
    table = _table(proc.stdout)
    assert [row[1] for row in table[1:]] == [r["run_id"] for r in rows]
    assert table[2][-3:] == ["FAIL", "5", "INPUT_INVALID"]

    assert set(_job_lines(proc.stdout)) == {r["run_id"] for r in rows}
    assert not [ln for ln in proc.stdout.splitlines() if SINGLE_LINE.match(ln)]

    _, (parent,), children = _mlflow(outputs)
    assert parent.info.status == "FAILED"
    # the failed job stopped before its run was claimed: it has no MLflow run
    assert [c.data.tags["run_id"] for c in children] == [rows[0]["run_id"]]
    assert children[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert f"parent run {parent.info.run_id} FAILED" in proc.stdout


@pytest.mark.slow
def test_a_sweep_without_tracking_still_ends_with_its_table(tmp_path):
    outputs = tmp_path / "outputs"
    proc = launch("-m", *TINY, "seed=1,2", "tracking=none", outputs=outputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _summary(outputs)
    assert sorted(r["seed"] for r in rows) == ["1", "2"]
    assert "mlflow     parent run" not in proc.stdout and not (outputs / "mlflow.db").exists()
    assert len(_table(proc.stdout)) == 3


@pytest.mark.slow
def test_an_interrupted_sweep_ends_its_parent_killed_and_still_prints_its_table(tmp_path):
    outputs = tmp_path / "outputs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "-m", "+preset=smoke", "data.n_points=300",
                             "training.epochs=400", "training.patience=0", "model.units=8,16",
                             f"paths.outputs_dir={outputs}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO, start_new_session=True)
    seen = []
    try:
        deadline = time.time() + 240
        while not any("epoch 2/400" in ln for ln in seen):  # the first job is training
            line = proc.stdout.readline()
            assert line and time.time() < deadline, "".join(seen)[-2000:]
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(seen) + out
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert last_line(err).startswith("ERROR [INTERRUPTED]") and "Traceback" not in out + err
    rows = _summary(outputs)
    assert [(r["gate"], r["exit"], r["error"]) for r in rows] == [("FAIL", "130", "INTERRUPTED")]
    _, (parent,), children = _mlflow(outputs)
    assert parent.info.status == "KILLED" and [c.info.status for c in children] == ["KILLED"]
    assert children[0].data.tags["mlflow.parentRunId"] == parent.info.run_id


@pytest.mark.slow
def test_a_search_with_a_failed_trial_goes_on_and_exits_0_with_its_best_passing_trial(tmp_path):
    """+hpo=...: a trial failing the strict quality gate (12) is a FAILED trial and a FAILED
    child run; the study goes on, names its best passing trial and how many failed, and
    exits 0 (a plain -m sweep keeps exiting with its first failed job's code)."""
    outputs = tmp_path / "outputs"
    fixed = ["model.units=8", "model.layers=1", "model.dropout=0.0", "model.revin=auto", "preprocess.lookback=24",
             "preprocess.difference=0", "training.learning_rate=0.001"]
    proc = launch("-m", "+hpo=lstm", *TINY, *fixed, "hydra.sweeper.n_trials=2", "gate.quality=strict",
                  "gate.min_improvement_pct=choice(-99.0,99.0)", outputs=outputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _summary(outputs)
    assert [(r["gate"], r["exit"]) for r in rows] == [("PASS", "0"), ("FAIL", "12")]
    assert f"best       {rows[0]['run_id']} val_rmse" in proc.stdout
    assert "trials     1 passed, 1 failed" in proc.stdout and "Failed experiment" in proc.stdout
    assert "ERROR [" not in proc.stdout + proc.stderr
    _, (parent,), children = _mlflow(outputs)
    assert parent.info.status == "FINISHED" and parent.data.tags["best_run_id"] == rows[0]["run_id"]
    assert parent.data.tags["failed_jobs"] == "1" and parent.data.tags["search"] == "optuna"
    assert {c.data.tags["run_id"]: c.info.status for c in children} == {
        rows[0]["run_id"]: "FINISHED", rows[1]["run_id"]: "FAILED"}
