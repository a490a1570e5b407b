"""Shared fixtures: real runs of launch.py in temp outputs dirs.

Training a model costs seconds, so one healthy smoke run is made per session
(`smoke_run`) and tests that break things work on their own copy (`fresh_run`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
SMOKE_FAST = ["+preset=smoke", "training.epochs=1", "data.n_points=400"]
# Parallel sweeps get the workers they ask for (up to the cores) however busy the machine is:
# the concurrency cases must run concurrently (spline_lstm.core.threads, core.environment.SWEEP_IDLE_CHECK).
os.environ.setdefault("SPLINE_LSTM_SWEEP_IDLE_CHECK", "0")


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into os.environ, which
    every later launch.py of the session would inherit (and honour, as tracking.uri is
    null): a test that sets it must not move the next test's runs to its store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != before:
        import mlflow

        mlflow.set_tracking_uri(before)
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def run_cmd(args: List[str], env: Optional[Dict[str, str]] = None, timeout: int = 600,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=str(cwd or REPO))


def launch(*overrides: str, outputs: Path, env: Optional[Dict[str, str]] = None,
           timeout: int = 600) -> subprocess.CompletedProcess:
    """python launch.py OVERRIDES paths.outputs_dir=OUTPUTS"""
    return run_cmd([str(REPO / "launch.py"), *overrides, f"paths.outputs_dir={outputs}"], env, timeout)


def cli(*args: str, env: Optional[Dict[str, str]] = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """python -m spline_lstm ARGS"""
    return run_cmd(["-m", "spline_lstm", *args], env, timeout)


def sweep_runs(outputs: Path, experiment: str = "spline-lstm") -> tuple:
    """(the sweep's parent MLflow run, its other runs) in the SQLite store under ``outputs``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{outputs}/mlflow.db")
    every = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [r for r in every if r.data.tags.get("kind") == "sweep"]
    return parent, [r for r in every if r is not parent]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class Run:
    outputs: Path
    run_id: str
    temp_left: Optional[List[str]] = None  # what the launch left in its own TMPDIR (issue 24)
    stdout: str = ""  # what launch.py printed (the session fixtures keep it)

    @property
    def artifacts(self) -> Path:
        return self.outputs / "artifacts"

    def path(self, kind: str) -> Path:
        from spline_lstm.artifacts.layout import ArtifactLayout

        return ArtifactLayout(self.artifacts).paths(self.run_id)[kind]

    def json(self, kind: str) -> dict:
        return json.loads(self.path(kind).read_text())


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Run:
    """One healthy smoke run (tracking on) shared by the session: do not modify it."""
    outputs = tmp_path_factory.mktemp("smoke") / "outputs"
    temp = tmp_path_factory.mktemp("smoke-tmpdir")  # the launch's temp dir: must be empty once it ends
    proc = launch(*SMOKE_FAST, "run_id=smoke-fixture", outputs=outputs, env={"TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Run(outputs, "smoke-fixture", temp_left=sorted(os.listdir(temp)), stdout=proc.stdout)


SWEEP_MODEL = "first-hour"  # the registered model of ``small_sweep``'s jobs


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> subprocess.CompletedProcess:
    """One tiny tracked sweep (2 jobs, 1 epoch, each job's model registered) shared by the
    session: its outputs folder is ``small_sweep.outputs``; do not modify it."""
    outputs = tmp_path_factory.mktemp("sweep") / "outputs"
    proc = launch("-m", "+preset=smoke", "training.epochs=1", "data.n_points=300", "model.units=8,16",
                  f"tracking.register_model={SWEEP_MODEL}", outputs=outputs)
    proc.outputs = outputs
    return proc


@pytest.fixture
def fresh_run(smoke_run: Run, tmp_path: Path) -> Run:
    """A private copy of the smoke run's outputs, free to break."""
    from tests.helpers.tamper import relocate_mlflow

    outputs = tmp_path / "outputs"
    shutil.copytree(smoke_run.outputs, outputs, symlinks=True)
    relocate_mlflow(outputs)  # the copy's MLflow records must point at the copy
    return Run(outputs, smoke_run.run_id)


