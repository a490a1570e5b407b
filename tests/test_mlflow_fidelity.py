"""The MLflow copy of a run is faithful: real times, every artifact under its own folder,
grouped metric names, the input as a dataset, source tags, used params only, and the
gate's later verdicts (standalone health, quarantine) reflected. Real SQLite stores."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from spline_lstm.pipeline.run import FILE_ONLY, SYNTHETIC_ONLY
from tests.conftest import Run, cli, launch
from tests.helpers.tamper import mlflow_runs


@dataclass
class TimedRun:
    run: Run
    csv: Path
    wall_s: float


@pytest.fixture(scope="module")
def file_run(tmp_path_factory) -> TimedRun:
    """A 3-epoch run on a CSV file, timed from outside."""
    tmp = tmp_path_factory.mktemp("fidelity")
    idx = pd.date_range("2024-01-01", periods=400, freq="h")
    rng = np.random.default_rng(0)
    y = 10 + 3 * np.sin(np.arange(400) * 2 * np.pi / 24) + rng.normal(0, 0.3, 400)
    csv = tmp / "load.csv"
    pd.DataFrame({"timestamp": idx.strftime("%Y-%m-%d %H:%M:%S"), "value": y}).to_csv(csv, index=False)
    out = tmp / "out"
    t0 = time.time()
    proc = launch("data=csv", f"data.path={csv}", "data.season=24", "+preset=smoke", "training.epochs=3",
                  "training.patience=0", "run_id=fidelity", outputs=out)
    wall = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return TimedRun(Run(out, "fidelity"), csv, wall)


def _one(outputs: Path, run_id: str):
    runs = mlflow_runs(outputs, run_id)
    assert len(runs) == 1
    return MlflowClient(tracking_uri=f"sqlite:///{outputs}/mlflow.db"), runs[0]


def _files(client, run_id, path=None) -> set:
    out = set()
    for a in client.list_artifacts(run_id, path):
        out |= _files(client, run_id, a.path) if a.is_dir else {a.path}
    return out


def test_artifacts_keep_distinct_predictable_paths(file_run: TimedRun):
    run, rid = file_run.run, file_run.run.run_id
    client, mlrun = _one(run.outputs, rid)
    files = _files(client, mlrun.info.run_id)
    expected = {f"metrics/{rid}.json", f"metadata/{rid}.json", f"report/{rid}.md", f"report/{rid}.html",
                f"report/{rid}/loss.png", f"report/{rid}/series.png", f"report/{rid}/forecast.png",
                "hydra/config.yaml", "hydra/overrides.yaml", f"health/{rid}.json",
                "preprocessor/preprocessor.pkl", "data/meta.json", "checkpoints/best.keras", "run.log"}
    assert expected <= files, expected - files
    local = Path(client.download_artifacts(mlrun.info.run_id, f"metrics/{rid}.json"))
    assert local.read_bytes() == run.path("metrics").read_bytes()  # the metrics JSON survives intact
    meta = Path(client.download_artifacts(mlrun.info.run_id, f"metadata/{rid}.json"))
    assert meta.read_bytes() == run.path("metadata").read_bytes()
    health = json.loads(Path(client.download_artifacts(mlrun.info.run_id, f"health/{rid}.json")).read_text())
    assert health["verdict"] == "PASS"
    log = Path(client.download_artifacts(mlrun.info.run_id, "run.log")).read_text()
    assert "gate       PASS" in log  # uploaded after the gate, not cut at "== artifacts"
    html = Path(client.download_artifacts(mlrun.info.run_id, f"report/{rid}.html")).read_text()
    assert html.count('src="data:image/png;base64,') == 3 and "<table>" in html


def test_run_starts_at_launch_and_epochs_carry_their_own_times(file_run: TimedRun):
    client, mlrun = _one(file_run.run.outputs, file_run.run.run_id)
    start, end = mlrun.info.start_time, mlrun.info.end_time
    epochs = client.get_metric_history(mlrun.info.run_id, "val/loss")
    assert [m.step for m in epochs] == [0, 1, 2]
    stamps = [m.timestamp for m in epochs]
    assert start < stamps[0] <= stamps[1] <= stamps[2] < end
    assert stamps[2] - stamps[0] > 50  # each epoch when it ended, not one batch sent at the end
    duration = (end - start) / 1000
    assert abs(duration - file_run.wall_s) <= 0.1 * file_run.wall_s, (duration, file_run.wall_s)


def test_metric_names_are_grouped(file_run: TimedRun):
    _, mlrun = _one(file_run.run.outputs, file_run.run.run_id)
    names = set(mlrun.data.metrics)
    doc = file_run.run.json("metrics")
    assert mlrun.data.metrics["test/rmse"] == pytest.approx(doc["metrics"]["rmse"])
    assert mlrun.data.metrics["test_baseline/naive_last/rmse"] == pytest.approx(doc["baselines"]["naive_last"]["rmse"])
    assert mlrun.data.metrics["test_improvement_pct/naive_last"] == pytest.approx(doc["improvement_pct"]["naive_last"])
    assert {"train/loss", "val/loss", "loss/train", "loss/val"} <= names
    assert names - {"duration_s"} == {n for n in names if "/" in n}, "every other metric sits in a group"
    order = sorted(names)  # the model's own metrics first, its yardsticks after
    assert max(i for i, n in enumerate(order) if n.startswith("test/")) < min(
        i for i, n in enumerate(order) if n.startswith(("test_baseline/", "test_improvement_pct/")))


def test_input_is_a_dataset_and_source_tags_are_set(file_run: TimedRun):
    _, mlrun = _one(file_run.run.outputs, file_run.run.run_id)
    sha = hashlib.sha256(file_run.csv.read_bytes()).hexdigest()
    assert file_run.run.json("metadata")["data"]["sha256"] == sha
    (inp,) = mlrun.inputs.dataset_inputs
    assert inp.dataset.name == "load.csv" and inp.dataset.digest == sha[:36]
    assert str(file_run.csv) in inp.dataset.source
    assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "training", "sha256": sha}
    tags = mlrun.data.tags
    assert tags["mlflow.source.name"] == "launch.py" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] and tags["mlflow.source.git.commit"] == tags["git_commit"]


def test_params_hold_only_what_the_run_used(file_run: TimedRun):
    _, mlrun = _one(file_run.run.outputs, file_run.run.run_id)
    params = mlrun.data.params
    assert params["data.path"] == str(file_run.csv) and params["training.epochs"] == "3"
    assert not {f"data.{k}" for k in SYNTHETIC_ONLY} & set(params)
    assert not [k for k in params if k.startswith(("tracking.", "paths."))]


def test_synthetic_run_is_a_dataset_too_and_has_no_file_params(smoke_run: Run):
    _, mlrun = _one(smoke_run.outputs, smoke_run.run_id)
    (inp,) = mlrun.inputs.dataset_inputs
    assert inp.dataset.name == "synthetic" and len(inp.dataset.digest) == 36
    assert not {f"data.{k}" for k in FILE_ONLY} & set(mlrun.data.params)
    assert mlrun.data.params["data.n_points"] == "400"


def test_failed_standalone_health_marks_the_run_failed(fresh_run: Run):
    _, before = _one(fresh_run.outputs, fresh_run.run_id)
    assert before.info.status == "FINISHED" and before.data.tags["health"] == "PASS"
    metrics = fresh_run.path("metrics").read_bytes()
    fresh_run.path("metrics").unlink()
    proc = cli("health", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 9, proc.stderr
    assert "MLflow: tagged 1 run(s) health=FAIL, status FAILED" in proc.stdout
    _, after = _one(fresh_run.outputs, fresh_run.run_id)
    assert after.info.status == "FAILED" and after.data.tags["health"] == "FAIL"
    assert after.info.end_time == before.info.end_time  # the duration stays the run's own

    fresh_run.path("metrics").write_bytes(metrics)  # restored: the gate passes again ...
    proc = cli("health", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0, proc.stderr
    _, again = _one(fresh_run.outputs, fresh_run.run_id)  # ... but a failed run never looks comparable
    assert again.info.status == "FAILED" and again.data.tags["health"] == "FAIL"


def test_health_with_no_tracking_leaves_the_store_alone(fresh_run: Run):
    fresh_run.path("metrics").unlink()
    proc = cli("health", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs), "--no-tracking")
    assert proc.returncode == 9 and "note: MLflow not tagged (--no-tracking)" in proc.stdout
    _, mlrun = _one(fresh_run.outputs, fresh_run.run_id)
    assert mlrun.info.status == "FINISHED" and mlrun.data.tags["health"] == "PASS"


def test_health_without_a_store_skips_with_a_note(fresh_run: Run):
    (fresh_run.outputs / "mlflow.db").unlink()
    proc = cli("health", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mlflow_runs_tagged"] is None
    assert not (fresh_run.outputs / "mlflow.db").exists()


def test_quarantine_tags_the_run(fresh_run: Run):
    proc = cli("runs", "quarantine", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0, proc.stderr
    _, mlrun = _one(fresh_run.outputs, fresh_run.run_id)
    assert mlrun.data.tags["quarantined"] == "true"
