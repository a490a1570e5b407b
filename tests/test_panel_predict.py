"""``predict`` with a many-series run: every series of the input (or those --series
names) in one call, in the training layout (long format with the id column, or the
wide files in training order); the table starts with the id column. Unknown or missing
ids are exit 5 naming them. The pyfunc model takes the same long-format frame."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import Run, cli, launch

SMALL = ["+preset=smoke", "training.epochs=1", "preprocess.horizon=3", "preprocess.lookback=24"]


def _train(outputs: Path, run_id: str, *overrides: str) -> Run:
    proc = launch(*SMALL, f"run_id={run_id}", *overrides, outputs=outputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Run(outputs, run_id)


def _predict(run: Run, *args: str) -> tuple:
    proc = cli("predict", run.run_id, "--outputs-dir", str(run.outputs), *args)
    frame = pd.read_csv(io.StringIO(proc.stdout), parse_dates=["timestamp"]) if proc.returncode == 0 else None
    return proc, frame


def _long_input(run: Run, path: Path, ids=None) -> pd.DataFrame:
    """The run's raw series as a long-format file (id column ``series``)."""
    npz = np.load(run.path("processed"))
    stamps = pd.to_datetime(npz["timestamps"])
    parts = [pd.DataFrame({"series": sid, "timestamp": stamps, "value": npz["raw"][k]})
             for k, sid in enumerate(npz["series_ids"]) if ids is None or sid in ids]
    frame = pd.concat(parts, ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def _check_table(frame: pd.DataFrame, id_col: str, ids: list, horizon: int, run_id: str) -> None:
    assert list(frame.columns[:2]) == [id_col, "timestamp"] and frame.columns[-1] == "run_id"
    assert list(dict.fromkeys(frame[id_col].astype(str))) == ids
    for _, rows in frame.groupby(id_col, sort=False):
        assert list(rows["step"]) == list(range(1, horizon + 1))
        assert np.isfinite(rows["forecast"].to_numpy(float)).all()
    assert set(frame["run_id"]) == {run_id}


@pytest.fixture(scope="module")
def panel_run(tmp_path_factory) -> Run:
    """A synthetic panel of 3 series with the static covariate ``category`` (tracking on:
    the pyfunc test loads its model)."""
    outputs = tmp_path_factory.mktemp("panel") / "outputs"
    return _train(outputs, "panel-predict", "data.n_series=3", "data.n_points=300",
                  "data.static_covariates=[category]")


def test_predict_forecasts_every_series_and_the_ones_asked_for(panel_run: Run, tmp_path: Path):
    path = tmp_path / "recent.csv"
    _long_input(panel_run, path)
    proc, every = _predict(panel_run, "--input", str(path), "--horizon", "5", "--level", "80")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_table(every, "series", ["s0", "s1", "s2"], 5, "panel-predict")
    assert (every["lo_80"] < every["forecast"]).all() and (every["forecast"] < every["hi_80"]).all()

    proc, some = _predict(panel_run, "--input", str(path), "--horizon", "5", "--level", "80", "--series", "s2", "s0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_table(some, "series", ["s0", "s2"], 5, "panel-predict")  # input order
    same = every[every["series"].isin(["s0", "s2"])].reset_index(drop=True)
    for col in ("forecast", "lo_80", "hi_80"):  # one batch or another: the same forecasts
        np.testing.assert_allclose(some[col].to_numpy(float), same[col].to_numpy(float), rtol=1e-4)


def test_unknown_and_missing_series_are_exit_5_naming_them(panel_run: Run, tmp_path: Path):
    path = tmp_path / "two.csv"
    frame = _long_input(panel_run, path, ids={"s0", "s1"})
    proc, _ = _predict(panel_run, "--input", str(path), "--series", "s7")
    assert proc.returncode == 5 and "'s7' is not one the run was trained on" in proc.stderr, proc.stderr
    proc, _ = _predict(panel_run, "--input", str(path), "--series", "s0", "s2")
    assert proc.returncode == 5 and "'s2' was asked for but is not in --input" in proc.stderr, proc.stderr

    stranger = tmp_path / "stranger.csv"
    pd.concat([frame, frame[frame["series"] == "s1"].assign(series="zz")]).to_csv(stranger, index=False)
    proc, _ = _predict(panel_run, "--input", str(stranger))
    assert proc.returncode == 5 and "'zz' is not one the run was trained on" in proc.stderr
    assert "--series" in proc.stderr  # the way out
    proc, got = _predict(panel_run, "--input", str(stranger), "--series", "s1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_table(got, "series", ["s1"], 3, "panel-predict")

    proc, _ = _predict(panel_run, "--input", str(path), "--input", str(stranger))
    assert proc.returncode == 5 and "trained on one file" in proc.stderr


def _wide_csv(path: Path, seed: int, n: int = 300) -> None:
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="h"),
                  "x": 10 + np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, n),
                  "y": 5 + 2 * np.cos(2 * np.pi * t / 24) + rng.normal(0, 0.1, n)}).to_csv(path, index=False)


def test_wide_run_of_two_files_reads_them_in_training_order(tmp_path: Path):
    north, south = tmp_path / "north.csv", tmp_path / "south.csv"
    _wide_csv(north, 1)
    _wide_csv(south, 2)
    run = _train(tmp_path / "outputs", "wide-predict", "data=csv", f"data.path={north}", f"data.paths=[{south}]",
                 "data.target_cols=[x,y]", "data.freq=h", "tracking=none")
    a, b = tmp_path / "recent-a.csv", tmp_path / "recent-b.csv"  # any names: the position gives the stem
    pd.read_csv(north).tail(100).to_csv(a, index=False)
    pd.read_csv(south).tail(100).to_csv(b, index=False)
    proc, got = _predict(run, "--input", str(a), "--input", str(b))
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_table(got, "series", ["north:x", "north:y", "south:x", "south:y"], 3, "wide-predict")
    proc, got = _predict(run, "--input", str(a), "--input", str(b), "--series", "south:y")
    assert proc.returncode == 0 and list(got["series"].unique()) == ["south:y"], proc.stderr[-2000:]
    proc, _ = _predict(run, "--input", str(a))
    assert proc.returncode == 5 and "trained on 2 files (north, south)" in proc.stderr, proc.stderr


def test_long_run_with_a_static_covariate(tmp_path: Path):
    """Ids are text as written, a colon included: a long-format id is never a file stem."""
    n, t = 300, np.arange(300)
    rng = np.random.default_rng(3)
    stamps = pd.date_range("2024-01-01", periods=n, freq="h")
    frame = pd.concat([pd.DataFrame({"timestamp": stamps, "store": store, "region": region,
                                     "value": level + np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, n)})
                       for store, region, level in (("eu:a", "north", 10), ("eu:b", "south", 20),
                                                    ("eu:c", "north", 30))])
    path = tmp_path / "stores.csv"
    frame.to_csv(path, index=False)
    run = _train(tmp_path / "outputs", "long-predict", "data=csv", f"data.path={path}", "data.id_col=store",
                 "data.static_covariates=[region]", "data.freq=h", "tracking=none")
    recent = tmp_path / "recent.csv"  # the static column is the run's to keep: not needed here
    frame.drop(columns="region").groupby("store").tail(60).to_csv(recent, index=False)
    proc, got = _predict(run, "--input", str(recent), "--level", "95")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_table(got, "store", ["eu:a", "eu:b", "eu:c"], 3, "long-predict")
    means = got.groupby("store")["forecast"].mean()  # each series in its own units
    assert means["eu:a"] < means["eu:b"] < means["eu:c"]


@pytest.mark.slow
def test_pyfunc_model_of_a_panel_run_forecasts_what_predict_does(panel_run: Run, tmp_path: Path):
    import mlflow

    path = tmp_path / "recent.csv"
    frame = _long_input(panel_run, path)
    proc, expected = _predict(panel_run, "--input", str(path), "--level", "80", "--series", "s1", "s2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    mlflow.set_tracking_uri(f"sqlite:///{panel_run.outputs / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{panel_run.json('metadata')['mlflow']['mlflow_run_id']}/model")
        assert model.metadata.get_input_schema().input_names() == ["series", "timestamp", "value"]
        got = model.predict(frame, params={"levels": [80], "series": ["s1", "s2"]})
        example = model.predict(model.input_example)  # the logged example: a few series, long format
    finally:
        mlflow.set_tracking_uri(None)
    assert list(got.columns) == list(expected.columns)
    assert (got["series"] == expected["series"]).all()
    np.testing.assert_allclose(got["forecast"].to_numpy(float), expected["forecast"].to_numpy(float), rtol=1e-6)
    _check_table(example, "series", ["s0", "s1", "s2"], 3, "panel-predict")
