"""End to end through launch.py: canonical artifacts, run_id everywhere, determinism,
run_id reuse refused, CSV input, and the real datasets (slow)."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from spline_lstm.artifacts.layout import safe_load_pickle, sha256_file
from tests.conftest import DATASETS, SMOKE_FAST, Run, launch, last_line

KINDS = ("processed", "meta", "preprocessor", "best", "last", "metrics", "report", "metadata")


def test_smoke_run_writes_8_artifacts_that_carry_the_run_id(smoke_run: Run):
    rid = smoke_run.run_id
    for kind in KINDS:
        assert smoke_run.path(kind).is_file(), kind
    assert smoke_run.json("metrics")["run_id"] == rid
    assert smoke_run.json("meta")["run_id"] == rid
    assert smoke_run.json("metadata")["run_id"] == rid
    assert safe_load_pickle(smoke_run.path("preprocessor"))["run_id"] == rid
    with np.load(smoke_run.path("processed"), allow_pickle=False) as npz:
        assert str(npz["run_id"]) == rid
        assert npz["processed"].dtype == np.float32 and npz["split_bounds"].tolist()[0] == 0
    assert rid in smoke_run.path("report").read_text()
    for png in ("series.png", "loss.png", "forecast.png"):
        assert (smoke_run.artifacts / "reports" / rid / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((smoke_run.artifacts / "health" / f"{rid}.json").read_text())["verdict"] == "PASS"
    assert (smoke_run.outputs / "runs" / rid / "run.log").is_file()
    assert (smoke_run.outputs / "runs" / rid / ".hydra" / "overrides.yaml").is_file()


def test_metrics_compare_model_and_baselines_in_original_units(smoke_run: Run):
    doc = smoke_run.json("metrics")
    assert set(doc["metrics"]) == {"mae", "mse", "rmse", "mape", "smape", "mase", "r2"}
    assert math.isfinite(doc["metrics"]["rmse"])
    assert {"naive_last", "moving_average_24", "seasonal_naive"} <= set(doc["baselines"])
    for name, b in doc["baselines"].items():
        want = (b["rmse"] - doc["metrics"]["rmse"]) / b["rmse"] * 100
        assert doc["improvement_pct"][name] == pytest.approx(want)
    # synthetic series level is ~10-20: original units, not scaled ones
    assert 3 < doc["baselines"]["naive_last"]["mae"] * 10 < 100
    assert doc["checkpoints"]["best"].endswith("checkpoints/smoke-fixture/best.keras")


def test_metadata_is_a_reproducibility_record(smoke_run: Run):
    meta = smoke_run.json("metadata")
    assert meta["config"]["training"]["epochs"] == 1 and meta["seed"] == 42
    assert "training.epochs=1" in meta["overrides"]
    assert meta["determinism"]["op_determinism"] is True
    assert meta["splits"]["bounds"][-1] > meta["splits"]["bounds"][1] > 0
    assert set(meta["splits"]["windows"]) == {"train", "val", "test"}
    assert meta["versions"]["tensorflow"] and meta["versions"]["mlflow"]
    assert meta["data"]["sha256"] is None  # synthetic: no input file
    for kind in KINDS:
        if kind != "metadata":
            assert meta["artifacts"][kind]["sha256"] == sha256_file(smoke_run.path(kind)), kind
    assert {"load_validate", "spline", "fit", "evaluate", "artifacts"} <= set(meta["timings_s"])



def test_preprocessor_records_the_input_rules_predict_applies(smoke_run: Run):
    """predict holds its input to the thresholds the run was trained with."""
    from spline_lstm.preprocessing.transforms import InputRules

    cfg = smoke_run.json("metadata")["config"]
    rules = InputRules.for_predict(safe_load_pickle(smoke_run.path("preprocessor")))
    assert rules.max_missing_ratio == cfg["preprocess"]["max_missing_ratio"]
    assert rules.max_gap == cfg["preprocess"]["max_gap"]
    assert rules.min_points == cfg["preprocess"]["lookback"] + cfg["preprocess"]["difference"]

def test_same_config_twice_gives_identical_results(smoke_run: Run, tmp_path):
    proc = launch(*SMOKE_FAST, "run_id=smoke-fixture", outputs=tmp_path / "again")
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = Run(tmp_path / "again", "smoke-fixture")
    assert again.json("metrics")["metrics"] == smoke_run.json("metrics")["metrics"]
    assert again.json("metrics")["history"] == smoke_run.json("metrics")["history"]
    assert sha256_file(again.path("processed")) == sha256_file(smoke_run.path("processed"))


def test_existing_run_id_is_refused_with_exit_4(fresh_run: Run):
    before = {p: p.read_bytes() for p in fresh_run.artifacts.rglob("*") if p.is_file()}
    proc = launch(*SMOKE_FAST, f"run_id={fresh_run.run_id}", outputs=fresh_run.outputs)
    assert proc.returncode == 4
    assert last_line(proc.stderr).startswith("ERROR [RUN_ID_CONFLICT]")
    assert "Traceback" not in proc.stderr
    after = {p: p.read_bytes() for p in fresh_run.artifacts.rglob("*") if p.is_file()}
    assert after == before


def test_csv_with_gaps_and_tracking_none(tmp_path):
    idx = pd.date_range("2024-01-01", periods=300, freq="D")
    y = 50 + 10 * np.sin(np.arange(300) * 2 * np.pi / 7) + np.arange(300) * 0.1
    frame = pd.DataFrame({"day": idx.strftime("%Y-%m-%d"), "sales": y})
    frame = frame.drop(index=[40, 41, 120]).reset_index(drop=True)  # absent days = gaps
    frame.loc[10, "sales"] = np.nan                                  # an empty cell = a gap
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    proc = launch("data=csv", f"data.path={path}", "data.timestamp_col=day", "data.target_col=sales",
                  "data.season=7", "training.epochs=1", "tracking=none", "run_id=csv-run", outputs=out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = Run(out, "csv-run")
    meta = run.json("meta")
    assert (meta["rows"], meta["absent_timestamps"], meta["interpolated"], meta["freq"]) == (297, 3, 4, "D")
    metadata = run.json("metadata")
    assert metadata["data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert metadata["mlflow"]["mlflow_run_id"] is None
    assert not (out / "mlflow.db").exists() and not (out / "mlartifacts").exists()


@pytest.mark.slow
@pytest.mark.parametrize("preset,filename", [("airline", "airline-passengers.csv"),
                                             ("milk", "monthly-milk-incomplete.csv")])
def test_real_dataset_presets_beat_naive_last(tmp_path, preset, filename):
    path = DATASETS / filename
    if not path.exists():
        pytest.skip(f"{path} not available")
    proc = launch(f"+preset={preset}", f"data.path={path}", "tracking=none", f"run_id={preset}-test",
                  outputs=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = Run(tmp_path / "out", f"{preset}-test").json("metrics")
    assert doc["metrics"]["rmse"] < doc["baselines"]["naive_last"]["rmse"]
