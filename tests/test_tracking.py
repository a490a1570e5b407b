"""MLflow against a real SQLite store in temp outputs dirs."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from spline_lstm.core.threads import cores
from tests.conftest import SMOKE_FAST, Run, launch, last_line


def _client(outputs):
    return MlflowClient(tracking_uri=f"sqlite:///{outputs}/mlflow.db")


def _runs(outputs, run_id=None):
    client = _client(outputs)
    exp = client.get_experiment_by_name("spline-lstm")
    filt = f"tags.run_id = '{run_id}'" if run_id else ""
    return client, client.search_runs([exp.experiment_id], filter_string=filt)


def test_smoke_run_is_one_finished_mlflow_run_tagged_with_run_id(smoke_run: Run):
    client, runs = _runs(smoke_run.outputs, smoke_run.run_id)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == smoke_run.run_id
    tags = run.data.tags
    assert tags["run_id"] == smoke_run.run_id and tags["health"] == "PASS" and tags["preset"] == "smoke"
    assert tags["model"] == "lstm" and tags["data_source"] == "synthetic" and "git_commit" in tags
    metrics = smoke_run.json("metrics")
    assert run.data.metrics["test/rmse"] == pytest.approx(metrics["metrics"]["rmse"])
    assert run.data.metrics["test_baseline/naive_last/rmse"] == pytest.approx(metrics["baselines"]["naive_last"]["rmse"])
    assert "test_improvement_pct/naive_last" in run.data.metrics
    assert run.data.params["training.epochs"] == "1" and run.data.params["model.units"] == "16"
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert [m.step for m in history] == list(range(len(metrics["history"]["val_loss"])))
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics", "metadata", "data", "report", "checkpoints", "hydra", "health", "preprocessor",
            "run.log"} <= names
    meta = smoke_run.json("metadata")["mlflow"]
    assert meta["mlflow_run_id"] == run.info.run_id and meta["experiment_id"] == run.info.experiment_id


def test_a_run_failing_in_training_ends_failed(tmp_path):
    out = tmp_path / "out"
    proc = launch(*SMOKE_FAST, "training.learning_rate=1e30", "run_id=diverges", outputs=out)
    assert proc.returncode == 7, proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith("ERROR [TRAINING_FAILED] non-finite loss")
    client, runs = _runs(out, "diverges")
    assert [r.info.status for r in runs] == ["FAILED"]
    # the run log, traceback included, reaches the failed run (no gate ever uploads it)
    log = Path(client.download_artifacts(runs[0].info.run_id, "run.log", str(tmp_path))).read_text()
    assert "non-finite loss" in log and "Traceback" in log


def test_bad_input_is_refused_before_any_run_exists(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01,1\n2024-01-02,abc\n")
    out = tmp_path / "out"
    proc = launch("data=csv", f"data.path={bad}", "run_id=bad-input", outputs=out)
    assert proc.returncode == 5, proc.stderr
    assert "abc" in last_line(proc.stderr) and "row 1" in last_line(proc.stderr)
    assert not (out / "artifacts").exists()
    assert not (out / "mlflow.db").exists(), "a refused run must not even create the store"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_exits_8_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    uri = f"http://127.0.0.1:{_closed_port()}"
    proc = launch("+preset=smoke", f"tracking.uri={uri}", outputs=out, timeout=120)
    assert proc.returncode == 8, proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("ERROR [TRACKING_FAILED]") and uri in line
    assert "== fit" not in proc.stdout
    assert not (out / "artifacts").exists()


@pytest.mark.slow
def test_parallel_joblib_sweep_on_a_fresh_store(tmp_path):
    out = tmp_path / "out"
    proc = launch("-m", *SMOKE_FAST, "model.units=8,16", "training.epochs=1,2", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=4", outputs=out, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, every = _runs(out)
    (parent,) = [r for r in every if r.data.tags.get("kind") == "sweep"]  # the sweep's own run (test_sweeps.py)
    runs = [r for r in every if r is not parent]
    assert len(runs) == 4 and {r.info.status for r in every} == {"FINISHED"}
    run_ids = {r.data.tags["run_id"] for r in runs}
    assert len(run_ids) == 4
    assert len({r.data.tags["sweep_id"] for r in runs}) == 1
    assert {r.data.tags["health"] for r in runs} == {"PASS"}
    sweep_dirs = list((out / "sweeps").iterdir())
    assert len(sweep_dirs) == 1 and {d.name for d in sweep_dirs[0].iterdir() if d.is_dir()} == run_ids
    for run_id in run_ids:  # workers: min(n_jobs, idle cores, jobs); each job's budget, in effect and recorded
        threads = Run(out, run_id).json("metadata")["threads"]
        workers = threads["parallel_jobs"]
        assert threads["requested_jobs"] == 4 and 1 <= workers == min(4, threads["usable_cores"]) <= cores()
        per_job = max(1, threads["usable_cores"] // workers) if workers > 1 else None
        assert threads["per_job"] == per_job
        assert threads["tensorflow"] == {"intra_op": per_job or 0, "inter_op": per_job or 0}
        for var, value in threads["env"].items():
            assert value == os.environ.get(var, per_job and str(per_job))


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = tmp_path / "out"
    proc = launch("-m", *SMOKE_FAST, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                  "tracking=none", outputs=out, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "artifacts" / "metrics").glob("*.json"))) == 1
