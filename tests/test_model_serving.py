"""The run as an MLflow model, against a real SQLite store: the pyfunc model logged
as the run's LoggedModel ``model`` forecasts exactly what ``spline_lstm predict`` does; the registry
gets a version tagged with the run_id and the alias ``candidate`` after the gate
passed; a model whose payload belongs to another run refuses to load; and
(slow) ``mlflow models serve`` answers ``/invocations`` with the same forecast.
Intervals: split-conformal widths cover their nominal share of fresh errors."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SMOKE_FAST, Run, cli, launch
from tests.helpers.postgres import stop_group
from tests.helpers.tamper import input_csv

NAME = "smoke-model"
# tests.test_hardening.MODEL_CASES (the reliability table) -> the test asserting each
MODEL_CASE_TESTS = {
    "model-other-runs-payload": "test_a_model_holding_another_runs_files_refuses_to_load",
    "model-swapped-keras": "test_a_model_holding_another_runs_files_refuses_to_load",
    "model-gate-failed": "test_a_run_that_fails_the_gate_gets_no_version_and_no_alias",
    "predict-level-out-of-range": "test_cli_refuses_parquet_on_stdout_and_bad_levels_naming_its_options",
    "predict-parquet-stdout": "test_cli_refuses_parquet_on_stdout_and_bad_levels_naming_its_options",
    "predict-models-uri-no-store": "test_predict_by_registered_name_equals_predict_by_run_id",
    # issue 24: in-process, tests/test_predict_core.py (the pyfunc model with a stand-in network)
    **{f"model-{case}": "test_predict_core::test_pyfunc_model_applies_predicts_rules_with_one_typed_line"
       for case in ("empty-frame", "horizon-zero", "fractional-level", "unknown-param")},
    "predict-input-wide-header": "test_predict_inputs::test_predict_refuses_a_52_mb_header_line_in_seconds",
    "input-size-limit": "test_hardening::test_input_size_bound_refuses_before_parsing",
    "model-horizon-absent": "test_predict_core::test_pyfunc_model_forecasts_the_trained_horizon_only_when_horizon_"
                            "is_absent",
}
RUN_ID = "served"


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Run:
    outputs = tmp_path_factory.mktemp("serve") / "outputs"
    proc = launch(*SMOKE_FAST, f"run_id={RUN_ID}", f"tracking.register_model={NAME}", outputs=outputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Run(outputs, RUN_ID)


@pytest.mark.unit
def test_every_model_case_has_its_test():
    from tests.test_hardening import MODEL_CASES

    assert {c.id for c in MODEL_CASES} == set(MODEL_CASE_TESTS)
    import importlib

    def found(name: str) -> bool:
        module, _, func = name.rpartition("::")
        where = vars(importlib.import_module(f"tests.{module}")) if module else globals()
        return callable(where.get(func))

    assert all(found(name) for name in MODEL_CASE_TESTS.values())


def _uri(run: Run) -> str:
    return f"sqlite:///{run.outputs / 'mlflow.db'}"


@pytest.fixture
def tracking_uri(registered: Run):
    """MLflow's global URI for one test: set_tracking_uri also sets MLFLOW_TRACKING_URI in
    os.environ, which every later launch in the session would inherit; reset after."""
    import mlflow

    mlflow.set_tracking_uri(_uri(registered))
    yield _uri(registered)
    mlflow.set_tracking_uri(None)


def _history(run: Run, tmp: Path) -> tuple:
    path = tmp / "history.csv"
    frame = input_csv(run.path("processed"), path, rows=200)
    return path, frame


def _predict(run: Run, path: Path, *extra: str) -> pd.DataFrame:
    proc = cli("predict", run.run_id, "--input", str(path), "--outputs-dir", str(run.outputs), *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return pd.read_csv(io.StringIO(proc.stdout), parse_dates=["timestamp"])


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert (pd.to_datetime(a["timestamp"]).to_numpy() == pd.to_datetime(b["timestamp"]).to_numpy()).all()
    for col in a.columns:
        if col not in ("timestamp", "run_id"):
            np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=0, atol=1e-6)
    assert set(a["run_id"]) == set(b["run_id"]) == {RUN_ID}


def test_pyfunc_model_of_the_run_forecasts_what_predict_does(registered: Run, tracking_uri: str, tmp_path: Path):
    import mlflow

    path, frame = _history(registered, tmp_path)
    expected = _predict(registered, path, "--horizon", "30", "--level", "80", "95")
    assert len(expected) == 30 and list(expected["step"]) == list(range(1, 31))
    mlflow_run_id = registered.json("metadata")["mlflow"]["mlflow_run_id"]
    model = mlflow.pyfunc.load_model(f"runs:/{mlflow_run_id}/model")
    assert model.metadata.signature is not None
    assert model.metadata.get_input_schema().input_names() == ["timestamp", "value"]
    got = model.predict(frame, params={"horizon": 30, "levels": [80, 95]})
    _same(got, expected)
    # issue 24: through MLflow's own params handling, the CLI's rules still hold, one typed line each
    from spline_lstm.core.errors import InputInvalid

    for bad, params in [(frame.iloc[:0], {}), (frame, {"horizon": 0})]:
        with pytest.raises(InputInvalid) as info:
            model.predict(bad, params=params)
        assert "\n" not in str(info.value) and ("no data rows" in str(info.value) or "horizon" in str(info.value))


@pytest.mark.slow
def test_predict_by_registered_name_equals_predict_by_run_id(registered: Run, tmp_path: Path):
    path, _ = _history(registered, tmp_path)
    by_run_id = _predict(registered, path, "--level", "80")
    proc = cli("predict", f"models:/{NAME}@candidate", "--input", str(path), "--outputs-dir", str(registered.outputs),
               "--level", "80")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _same(pd.read_csv(io.StringIO(proc.stdout), parse_dates=["timestamp"]), by_run_id)
    nowhere = tmp_path / "elsewhere"
    proc = cli("predict", f"models:/{NAME}@candidate", "--input", str(path), "--outputs-dir", str(nowhere))
    assert proc.returncode == 5 and "--tracking-uri" in proc.stderr and not nowhere.exists()


def _logged_models(client, mlflow_run_id: str) -> list:
    """The LoggedModels whose source is the MLflow run (its Models column)."""
    experiment_id = client.get_run(mlflow_run_id).info.experiment_id
    return client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{mlflow_run_id}'")


def test_the_run_logs_a_real_mlflow_model(registered: Run):
    """A LoggedModel named ``model``, READY, an output of the run, with the run's params
    and final metrics; its artifacts are the pyfunc model, not plain run artifacts."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=_uri(registered))
    mlflow_run_id = registered.json("metadata")["mlflow"]["mlflow_run_id"]
    (model,) = _logged_models(client, mlflow_run_id)
    assert model.name == "model" and model.status == LoggedModelStatus.READY and model.tags["run_id"] == RUN_ID
    run = client.get_run(mlflow_run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert model.params == run.data.params
    assert {m.key: m.value for m in model.metrics}["test/rmse"] == run.data.metrics["test/rmse"]
    files = {f.path for f in client.list_logged_model_artifacts(model.model_id)}
    assert {"MLmodel", "python_model.pkl", "artifacts", "code", "input_example.json"} <= files, files
    assert "model" not in {f.path for f in client.list_artifacts(mlflow_run_id)}


def test_registry_version_carries_the_run_id_and_the_alias_after_pass(registered: Run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=_uri(registered))
    version = client.get_model_version_by_alias(NAME, "candidate")
    assert version.tags.get("run_id") == RUN_ID
    assert version.run_id == registered.json("metadata")["mlflow"]["mlflow_run_id"]
    (model,) = _logged_models(client, version.run_id)
    assert version.source == f"models:/{model.model_id}"  # the version is the run's LoggedModel
    assert version.tags.get("model_id") == model.model_id
    # and back: the LoggedModel's page lists the version (MLflow's own tag, as register_model sets it)
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": NAME, "version": version.version}]
    run = client.get_run(version.run_id)
    # the UI opens the experiment on its runs table, not the GenAI page
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.tags["health"] == "PASS" and run.info.status == "FINISHED"


def test_a_run_that_fails_the_gate_gets_no_version_and_no_alias(tmp_path: Path):
    """The breaker flips a byte of the report before the gate: the gate fails (exit 9)
    and the registry stays empty, although the model was logged with the run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from tests.helpers.breaker import ENV_BREAK

    outputs = tmp_path / "outputs"
    proc = launch(*SMOKE_FAST, "run_id=failing", f"tracking.register_model={NAME}",
                  "+hydra.callbacks.breaker._target_=tests.helpers.breaker.BreakArtifact", outputs=outputs,
                  env={**os.environ, ENV_BREAK: "report:flip"})
    assert proc.returncode == 9, proc.stderr[-2000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{outputs / 'mlflow.db'}")
    with pytest.raises(MlflowException):
        client.get_registered_model(NAME)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.tags["health"] == "FAIL" and run.info.status == "FAILED"
    assert [m.name for m in _logged_models(client, run.info.run_id)] == ["model"]


@pytest.mark.parametrize("swap", ["payload", "keras"])
def test_a_model_holding_another_runs_files_refuses_to_load(registered: Run, tracking_uri: str, tmp_path: Path,
                                                           swap: str):
    import mlflow

    from spline_lstm.core.errors import RunIdMismatch

    mlflow_run_id = registered.json("metadata")["mlflow"]["mlflow_run_id"]
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{mlflow_run_id}/model", dst_path=str(tmp_path)))
    if swap == "payload":
        payload_path = next(local.rglob("preprocessor.json"))
        payload = json.loads(payload_path.read_text())
        payload_path.write_text(json.dumps({**payload, "run_id": "another-run"}))
        expected = "another-run"
    else:
        keras = next(local.rglob("best.keras"))
        data = bytearray(keras.read_bytes())
        data[len(data) // 2] ^= 0xFF  # not the archive that was logged
        keras.write_bytes(bytes(data))
        expected = "not the archive it was logged with"
    with pytest.raises(RunIdMismatch, match=expected):
        mlflow.pyfunc.load_model(str(local))


def test_cli_refuses_parquet_on_stdout_and_bad_levels_naming_its_options(registered: Run, tmp_path: Path):
    path, _ = _history(registered, tmp_path)
    proc = cli("predict", RUN_ID, "--input", str(path), "--outputs-dir", str(registered.outputs),
               "--format", "parquet")
    line = proc.stderr.strip()
    assert proc.returncode == 5 and line.startswith("ERROR [INPUT_INVALID]") and "--output" in line
    proc = cli("predict", RUN_ID, "--input", str(path), "--outputs-dir", str(registered.outputs), "--level", "100")
    assert proc.returncode == 5 and "--level 100" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.unit
def test_interval_covers_its_nominal_share_on_known_noise():
    """Split-conformal calibration on validation errors of a known noise, then fresh
    test errors of the same noise: the 80% interval covers 70-90% of them."""
    from spline_lstm.preprocessing.transforms import Scaler
    from spline_lstm.preprocessing.preprocessor import Preprocessor

    rng = np.random.default_rng(0)
    horizon = 4
    pre = Preprocessor(run_id="r", timestamp_col="t", target_col="y", freq="h", duplicates="error",
                       coerce_errors=False, season=None, interpolation="pchip", max_gap=5, max_missing_ratio=0.2,
                       smoothing="none", smoothing_lambda=None, scaler=Scaler("standard", 0.0, 1.0), lookback=8,
                       horizon=horizon, difference=0, last_timestamp="")
    signal_ = np.sin(np.arange(300 * horizon) / 7).reshape(300, horizon)
    pre = pre.calibrated(signal_ + rng.normal(0, 2.0, signal_.shape), signal_)
    test = signal_ + rng.normal(0, 2.0, signal_.shape)
    for level in (80, 95):
        width = pre.interval_width(level, horizon)
        covered = float(np.mean(np.abs(test - signal_) <= width))
        assert level / 100 - 0.1 <= covered <= min(1.0, level / 100 + 0.1), (level, covered)
    # beyond the trained horizon the last step's width grows with sqrt(step / horizon)
    wide = pre.interval_width(80, 2 * horizon)
    np.testing.assert_allclose(wide[-1], wide[horizon - 1] * np.sqrt(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_same_forecast(registered: Run, tmp_path: Path):
    path, frame = _history(registered, tmp_path)
    expected = _predict(registered, path, "--level", "80", "95")
    port = _free_port()
    bindir = Path(sys.executable).parent  # mlflow starts uvicorn by name: the venv's bin on PATH
    env = dict(os.environ, MLFLOW_TRACKING_URI=_uri(registered), PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    mlflow_cli = bindir / "mlflow"
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", f"models:/{NAME}@candidate",
                             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = json.dumps({"dataframe_split": json.loads(frame.assign(timestamp=frame["timestamp"].astype(str))
                                                          .to_json(orient="split", index=False)),
                           "params": {"levels": [80, 95]}}).encode()
        deadline, answer = time.monotonic() + 180, None
        while time.monotonic() < deadline and answer is None:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    answer = json.loads(resp.read())
            except OSError:
                time.sleep(1)
        assert answer is not None, "no answer from /invocations"
        got = pd.DataFrame(answer["predictions"])
        _same(got, expected)
    finally:
        stop_group(proc, signal.SIGTERM, 20)  # stopped by its own pid (its process group: the server's workers)
        log.close()
