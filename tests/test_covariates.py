"""Covariates (spline_lstm.preprocessing.covariates): config rules, loading by column, causal filling
and training-only scaling inside the Preprocessor, the model's inputs with and without
them (the univariate graph unchanged), and, end to end on a tiny CSV with a past and a
future-known covariate, predict's demand for future values and its agreement with the
MLflow model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from spline_lstm.data.panel import load_panel
from spline_lstm.preprocessing import transforms
from spline_lstm.core.config import DataConfig, DataSource, ModelConfig, PreprocessConfig, register_configs, validate
from spline_lstm.core.errors import ConfigInvalid, InputInvalid
from spline_lstm.preprocessing.preprocessor import Preprocessor
from tests.conftest import REPO, Run, cli, last_line, launch


def _compose(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# --- config -------------------------------------------------------------------------------

@pytest.mark.unit
def test_covariate_keys_default_empty_and_presets_compose():
    app = validate(_compose())
    assert (app.data.past_covariates, app.data.future_covariates, app.data.calendar) == ([], [], [])
    ms = validate(_compose("+preset=etth1-ms", "data.path=x.csv"))
    assert ms.data.past_covariates == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
    assert [c.value for c in ms.data.calendar] == ["hour"] and ms.preprocess.horizon == 24
    assert ms.model.future_head.value == "per_step" and ms.gate.quality.value == "strict"
    ili = validate(_compose("+preset=ili", "data.path=x.csv"))
    assert ili.data.target_col == "% WEIGHTED ILI" and ili.data.past_covariates


@pytest.mark.unit
def test_bad_calendar_is_a_config_error():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as info:  # the launcher's exit 2 (below)
        _compose("data.calendar=[hour,fortnight]")
    assert "data.calendar" in str(info.value)
    with pytest.raises(ConfigInvalid, match="data.calendar: names a feature twice"):
        validate(_compose("data.calendar=[hour,hour]"))


@pytest.mark.unit
@pytest.mark.parametrize("overrides,key,words", [
    (["data=csv", "data.path=x.csv", "data.static_covariates=[region]"], "data.static_covariates", "many series"),
    (["data.past_covariates=[load]"], "data.past_covariates", "need a file"),
    (["data=csv", "data.path=x.csv", "data.past_covariates=[value]"], "data.past_covariates", "target_col"),
    (["data=csv", "data.path=x.csv", "data.past_covariates=[a]", "data.future_covariates=[a]"],
     "data.future_covariates", "once"),
])
def test_covariate_config_rules(overrides, key, words):
    with pytest.raises(ConfigInvalid, match=rf"{key}.*{words}"):
        validate(_compose(*overrides))


def test_bad_calendar_exits_2_before_writing(tmp_path):
    proc = launch("+preset=smoke", "data.calendar=[fortnight]", outputs=tmp_path / "out")
    assert proc.returncode == 2 and "data.calendar" in last_line(proc.stderr)
    assert not (tmp_path / "out").exists()


# --- loading -----------------------------------------------------------------------------

def _csv(path: Path, n: int = 400, gaps=(), seed: int = 0) -> Path:
    """Target driven by yesterday's load (a past covariate) and a promotion (future-known)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    load = np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n)
    promo = (rng.random(n) < 0.15).astype(float)
    y = 10 + 2 * np.roll(load, 1) + 3 * promo + 0.1 * rng.standard_normal(n)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
                          "value": y, "load": load, "promo": promo})
    frame.loc[list(gaps), "load"] = np.nan
    frame.to_csv(path, index=False)
    return path


def _file_cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(source=DataSource.file, path=str(path), season=24, **kw)


@pytest.mark.unit
def test_a_missing_covariate_column_is_input_invalid_naming_it(tmp_path):
    path = _csv(tmp_path / "x.csv")
    with pytest.raises(InputInvalid, match="no covariate column 'wind'"):
        load_panel(_file_cfg(path, past_covariates=["load", "wind"]), 0)


@pytest.mark.unit
def test_covariates_share_the_targets_grid_and_file_rules(tmp_path):
    path = _csv(tmp_path / "x.csv", gaps=(10, 11))
    frame = pd.read_csv(path).drop(index=[50])  # an absent row: a gap in every column
    frame["load"] = frame["load"].astype(object)
    frame.loc[3, "load"] = "broken"
    frame.to_csv(path, index=False)
    with pytest.raises(InputInvalid, match="'load' has 1 of 399 non-numeric"):
        load_panel(_file_cfg(path, past_covariates=["load"]), 0)
    s = load_panel(_file_cfg(path, past_covariates=["load"], coerce_errors=True), 0)
    load, values = s.covariates["load"][0], s.values[0]
    assert load.shape == values.shape and np.isnan(values[50]) and np.isnan(load[50])
    assert np.isnan(load[[3, 10, 11]]).all() and np.isnan(load).sum() == 4


# --- preprocessing: causal fill, training-only scaling, one code path ----------------------

def _fit(load: np.ndarray, promo: np.ndarray, n: int = 400, **pcfg):
    rng = np.random.default_rng(2)
    values = 10 + np.sin(np.arange(n) / 4) + rng.normal(0, 0.1, n)
    bounds = np.array([0, 280, 340, n])
    cfg = PreprocessConfig(lookback=16, horizon=4, interpolation="pchip", **pcfg)
    dcfg = DataConfig(past_covariates=["load"], future_covariates=["promo"], calendar=["hour"])
    stamps = pd.date_range("2024-01-01", periods=n, freq="h")
    pre, _, _ = Preprocessor.fit(values, bounds, cfg, run_id="r", data=dcfg, freq="h", last_timestamp="x", where="t")
    pre, cov = pre.fit_covariates({"load": load, "promo": promo}, stamps, bounds, cfg, "t")
    return pre, cov, bounds, stamps


@pytest.mark.unit
def test_covariate_gaps_are_filled_causally_and_scaled_on_training_rows_only():
    rng = np.random.default_rng(3)
    load, promo = rng.normal(5, 2, 400), rng.integers(0, 2, 400).astype(float)
    load[[0, 1, 100, 101, 300]] = np.nan  # a leading gap, a training gap, a validation gap
    pre, cov, _, _ = _fit(load, promo)
    later = load.copy()
    later[281:] += 100.0  # validation and test change...
    pre2, cov2, _, _ = _fit(later, promo)
    np.testing.assert_array_equal(cov2[:281], cov[:281])  # ...training inputs do not
    assert pre2.covariate_scalers == pre.covariate_scalers
    scaler = pre.covariate_scalers["load"]  # fitted on the filled training rows, as the target's
    assert scaler.inverse(cov[:280, 0].astype(float)).mean() == pytest.approx(scaler.center, rel=1e-5)
    assert cov[:280, 0].mean() == pytest.approx(0.0, abs=1e-5) and cov[:280, 0].std() == pytest.approx(1.0, rel=1e-4)
    assert cov[0, 0] == cov[2, 0]  # the leading gap holds the first observed value
    assert cov.shape == (400, 1 + 1 + 2) and (pre.channels, pre.known) == (5, 3)


@pytest.mark.unit
def test_inference_builds_the_training_matrix_and_the_payload_round_trips():
    rng = np.random.default_rng(4)
    load, promo = rng.normal(5, 2, 400), rng.integers(0, 2, 400).astype(float)
    pre, cov, _, stamps = _fit(load, promo)
    again = Preprocessor.from_dict(pre.to_dict())
    assert again == pre and pre.to_dict()["format"] == 4
    n = 400
    np.testing.assert_array_equal(again.covariate_inputs({"load": load, "promo": promo}, stamps,
                                                         np.array([0, n, n, n]), "t"), cov)


@pytest.mark.unit
def test_past_covariates_can_be_differenced_like_the_target():
    rng = np.random.default_rng(5)
    load, promo = np.cumsum(rng.normal(0, 1, 400)), rng.integers(0, 2, 400).astype(float)
    pre, cov, _, _ = _fit(load, promo, difference=1, difference_past_covariates=True)
    scaler = pre.covariate_scalers["load"]
    np.testing.assert_allclose(scaler.inverse(cov[1:, 0].astype(float)), np.diff(load), atol=1e-4)
    assert cov[0, 0] == 0.0  # undefined first difference
    np.testing.assert_array_equal(cov[:, 1], pre.covariate_scalers["promo"].transform(promo).astype(np.float32))
    assert Preprocessor.from_dict(pre.to_dict()) == pre


@pytest.mark.unit
def test_a_covariate_breaking_the_gap_rule_is_refused_naming_it():
    load, promo = np.ones(400), np.zeros(400)
    load[100:130] = np.nan  # 30 > max_gap 24
    with pytest.raises(InputInvalid, match="covariate column 'load' fails the longest-gap rule"):
        _fit(load, promo)


@pytest.mark.unit
def test_calendar_features_are_cyclic():
    from spline_lstm.preprocessing.covariates import calendar_features

    stamps = pd.date_range("2024-01-01", periods=48, freq="h")
    f = calendar_features(stamps, ["hour", "dayofweek"])
    assert f.shape == (48, 4)
    np.testing.assert_allclose(f[0], f[24, :2].tolist() + [f[0, 2], f[0, 3]], atol=1e-12)  # hour repeats daily
    np.testing.assert_allclose(f[:, 0] ** 2 + f[:, 1] ** 2, 1.0)


# --- windows and model ------------------------------------------------------------------

@pytest.mark.unit
def test_windows_gather_covariates_and_future_known_channels():
    series = np.arange(50, dtype=np.float32)
    cov = np.stack([series + 100, series + 200, series + 300], axis=1).astype(np.float32)
    src = transforms.WindowSource(series, np.array([10, 20]), 4, 3, cov, known=2)
    x, y = src.gather(src.starts)
    assert x.shape == (2, 4, 4) and y.shape == (2, 3)
    np.testing.assert_array_equal(x[0, :, 0], [6, 7, 8, 9])
    np.testing.assert_array_equal(x[0, :, 1], [106, 107, 108, 109])
    f = src.gather_future(src.starts)
    np.testing.assert_array_equal(f[0], [[210, 310], [211, 311], [212, 312]])


def test_univariate_model_is_unchanged_and_covariates_add_inputs(tmp_path):
    from spline_lstm.models.network import build_model, load_model_safely

    uni = build_model(ModelConfig(), 12, 2, 1e-3)
    assert [tuple(i.shape) for i in uni.inputs] == [(None, 12, 1)]
    assert [layer.name for layer in uni.layers] == ["window", "revin_norm", "lstm_0", "forecast", "revin_denorm"]
    net = build_model(ModelConfig(), 12, 2, 1e-3, ensemble=2, channels=7, known=5)
    shapes = {i.name: tuple(i.shape) for i in net.inputs}
    assert shapes == {"window": (None, 12, 7), "future": (None, 2, 5)}
    rng = np.random.default_rng(0)
    x = {"window": rng.normal(size=(3, 12, 7)).astype("float32"),
         "future": rng.normal(size=(3, 2, 5)).astype("float32")}
    net.save(tmp_path / "m.keras")
    again = load_model_safely(tmp_path / "m.keras")  # safe mode: no Lambda anywhere
    np.testing.assert_allclose(again.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
    # zero head + RevIN on the target channel: the untrained network is naive-last
    np.testing.assert_allclose(net.predict(x, verbose=0), np.repeat(x["window"][:, -1:, 0], 2, axis=1), atol=1e-5)


def test_a_per_step_future_head_adds_one_shared_effect_per_step_and_survives_a_safe_reload(tmp_path):
    from spline_lstm.core.config import FutureHead
    from spline_lstm.models.network import build_model, load_model_safely

    cfg = ModelConfig(units=4, future_head=FutureHead.per_step)
    net = build_model(cfg, 12, 3, 1e-3, channels=4, known=2)
    assert "future_flat" not in [layer.name for layer in net.layers]
    assert net.get_layer("forecast").kernel.shape == (4, 3)  # the head sees the state only
    assert net.get_layer("future_effect").kernel.shape == (2, 1)  # known weights, shared by the steps
    rng = np.random.default_rng(0)
    x = {"window": rng.normal(size=(3, 12, 4)).astype("float32"),
         "future": rng.normal(size=(3, 3, 2)).astype("float32")}
    untrained = net.predict(x, verbose=0)  # zero head and effect, RevIN last: naive-last
    np.testing.assert_allclose(untrained, np.repeat(x["window"][:, -1:, 0], 3, axis=1), atol=1e-5)
    net.get_layer("future_effect").kernel.assign(np.array([[1.0], [0.0]], dtype="float32"))
    moved = net.predict(x, verbose=0) - untrained  # step h moves by its own first known input x its scale
    scale = x["window"][:, :, 0].std(axis=1, keepdims=True) + 1e-5
    np.testing.assert_allclose(moved, x["future"][:, :, 0] * scale, rtol=1e-4, atol=1e-5)
    net.save(tmp_path / "m.keras")
    again = load_model_safely(tmp_path / "m.keras")  # safe mode: no Lambda anywhere
    np.testing.assert_allclose(again.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)


# --- end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cov_run(tmp_path_factory) -> tuple:
    tmp = tmp_path_factory.mktemp("cov")
    csv = _csv(tmp / "shop.csv", gaps=(40, 41, 42, 200))
    proc = launch("data=csv", f"data.path={csv}", "data.season=24", "data.past_covariates=[load]",
                  "data.future_covariates=[promo]", "data.calendar=[hour]", "preprocess.lookback=24",
                  "preprocess.horizon=4", "preprocess.difference=0", "training.epochs=2", "training.patience=0",
                  "model.units=8", "run_id=cov-e2e", outputs=tmp / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Run(tmp / "out", "cov-e2e"), csv


def _history_with_future(csv: Path, tmp: Path, keep_future: bool = True) -> tuple:
    frame = pd.read_csv(csv).iloc[:300].copy()
    frame.loc[296:, "value"] = np.nan  # the last 4 rows: forecast steps with the promotion known
    if not keep_future:
        frame.loc[298, "promo"] = np.nan
    path = tmp / ("future.csv" if keep_future else "gappy.csv")
    frame.to_csv(path, index=False)
    return path, frame


@pytest.mark.slow
def test_predict_needs_future_values_and_equals_the_mlflow_model(cov_run, tmp_path):
    import mlflow

    run, csv = cov_run
    gappy, _ = _history_with_future(csv, tmp_path, keep_future=False)
    proc = cli("predict", run.run_id, "--input", str(gappy), "--outputs-dir", str(run.outputs))
    assert proc.returncode == 5
    line = last_line(proc.stderr)
    assert "INPUT_INVALID" in line and "'promo'" in line and "2024-01-13 10:00:00" in line

    path, frame = _history_with_future(csv, tmp_path)
    proc = cli("predict", run.run_id, "--input", str(path), "--outputs-dir", str(run.outputs))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from io import StringIO

    expected = pd.read_csv(StringIO(proc.stdout))
    assert list(expected["timestamp"]) == [f"2024-01-13 {h:02d}:00:00" for h in range(8, 12)]
    proc = cli("predict", run.run_id, "--input", str(path), "--outputs-dir", str(run.outputs), "--horizon", "8")
    assert proc.returncode == 5 and "past covariates" in last_line(proc.stderr)
    # a shorter --horizon forecasts the same first steps: the future values given are kept, not padded over
    proc = cli("predict", run.run_id, "--input", str(path), "--outputs-dir", str(run.outputs), "--horizon", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    short = pd.read_csv(StringIO(proc.stdout))
    np.testing.assert_allclose(short["forecast"].to_numpy(float), expected["forecast"].to_numpy(float)[:2], atol=1e-9)

    mlflow.set_tracking_uri(f"sqlite:///{run.outputs}/mlflow.db")
    model = mlflow.pyfunc.load_model(f"runs:/{run.json('metadata')['mlflow']['mlflow_run_id']}/model")
    assert model.metadata.get_input_schema().input_names() == ["timestamp", "value", "load", "promo"]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    got = model.predict(frame)
    np.testing.assert_allclose(got["forecast"].to_numpy(float), expected["forecast"].to_numpy(float), atol=1e-6)
