"""The fitted ``Preprocessor`` is the one chain for training and inference: its payload
round-trips as plain data, old payloads still load, unknown formats are refused, and
on a fully observed series inference transforms exactly as training did. The predict
core with a stand-in network: recursion beyond the trained horizon feeds its own
forecasts back, rounding and columns are as documented."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from spline_lstm.artifacts.layout import RestrictedUnpickler, dump_plain_pickle
from spline_lstm.core.config import DataConfig, PreprocessConfig
from spline_lstm.core.errors import InputInvalid
from spline_lstm.preprocessing.preprocessor import Preprocessor


def _fitted(difference: int = 0, n: int = 400):
    rng = np.random.default_rng(1)
    values = 10 + np.sin(np.arange(n) / 5) + rng.normal(0, 0.1, n)
    cfg = PreprocessConfig(lookback=16, horizon=4, difference=difference)
    bounds = np.array([0, 280, 340, n])
    pre, filled, scaled = Preprocessor.fit(values, bounds, cfg, run_id="r1", data=DataConfig(), freq="h",
                                           last_timestamp="2024-01-01", where="test")
    return pre, values, filled, scaled


@pytest.mark.unit
def test_payload_round_trips_as_plain_data():
    pre, *_ = _fitted()
    pre = pre.calibrated(np.ones((10, 4)), np.zeros((10, 4)))
    data = dump_plain_pickle(pre.to_dict())  # refuses anything but plain data
    import io

    payload = RestrictedUnpickler(io.BytesIO(data)).load()
    assert payload["format"] == 4 and payload["run_id"] == "r1"
    assert Preprocessor.from_dict(payload) == pre


@pytest.mark.unit
def test_a_format_1_payload_still_loads_and_an_unknown_format_is_refused():
    pre, *_ = _fitted()
    old = pre.to_dict()
    old.pop("calibration")
    old["format"] = 1
    loaded = Preprocessor.from_dict(old)
    assert loaded.calibration == {} and loaded.scaler == pre.scaler
    with pytest.raises(InputInvalid, match="--level 80"):
        loaded.interval_width(80, 4)
    with pytest.raises(InputInvalid, match="format 99"):
        Preprocessor.from_dict({**old, "format": 99})


@pytest.mark.unit
@pytest.mark.parametrize("difference", [0, 1])
def test_inference_transforms_a_series_exactly_as_training_did(difference: int):
    pre, values, filled, scaled = _fitted(difference)
    filled2, scaled2 = pre.transform(values, "test")
    np.testing.assert_array_equal(filled2, filled)
    np.testing.assert_array_equal(scaled2, scaled)
    # and back: the model's own targets, inverse-transformed, are the series
    starts = np.array([100, 200])
    targets = scaled[starts[:, None] + np.arange(pre.horizon)]
    np.testing.assert_allclose(pre.inverse_transform(filled, starts, targets),
                               values[starts[:, None] + np.arange(pre.horizon)], rtol=1e-5)


class _Persistence:
    """A stand-in network: predicts the last scaled input for every step."""

    def __init__(self, horizon: int):
        self.horizon, self.calls = horizon, 0

    def predict(self, x, verbose=0):
        self.calls += 1
        return np.repeat(x[:, -1, 0][:, None], self.horizon, axis=1)


@pytest.mark.unit
def test_forecast_frame_recursive_beyond_the_horizon_with_widening_intervals():
    from spline_lstm.serving.predict import forecast_frame

    pre, values, *_ = _fitted(difference=1)
    pre = pre.calibrated(np.ones((50, 4)), np.zeros((50, 4)))
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=100, freq="h"),
                          "value": values[:100]})
    net = _Persistence(pre.horizon)
    out = forecast_frame(net, pre, frame, horizon=10, levels=[80])
    assert net.calls == 3  # ceil(10 / 4) blocks, each fed the previous forecasts
    assert list(out.columns) == ["timestamp", "step", "forecast", "lo_80", "hi_80", "run_id"]
    assert list(out["step"]) == list(range(1, 11)) and set(out["run_id"]) == {"r1"}
    assert out["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 00:00") + pd.Timedelta(hours=100)
    first = forecast_frame(_Persistence(pre.horizon), pre, frame, levels=[80])
    assert len(first) == pre.horizon
    np.testing.assert_array_equal(first["forecast"], out["forecast"][:4])
    width = (out["hi_80"] - out["forecast"]).to_numpy()
    assert np.allclose(width[:4], 1.0, atol=1e-4) and np.all(np.diff(width[3:]) > 0)
    assert all(len(f"{v:.15g}".replace("-", "").replace(".", "").lstrip("0")) <= 6 for v in out["forecast"])


@pytest.mark.unit
def test_forecast_frame_names_predicts_own_options():
    from spline_lstm.serving.predict import forecast_frame

    pre, values, *_ = _fitted()
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=100, freq="h"), "value": values[:100]})
    with pytest.raises(InputInvalid, match="--horizon 0"):
        forecast_frame(_Persistence(4), pre, frame, horizon=0)
    with pytest.raises(InputInvalid, match="--level 100"):
        forecast_frame(_Persistence(4), pre, frame, levels=[100])
    with pytest.raises(InputInvalid, match="no column 'value'"):
        forecast_frame(_Persistence(4), pre, frame.rename(columns={"value": "y"}))


@pytest.mark.slow
def test_trained_80_percent_interval_covers_70_to_90_percent_of_test_points(tmp_path):
    """End to end: a synthetic series with known noise (sd 1, trend removed by
    differencing), a trained run, then forecasts from every third origin of the test
    split: the calibrated 80% interval holds 70-90% of the observed targets."""
    from pathlib import Path

    from spline_lstm.serving.predict import forecast_frame, load_run
    from tests.conftest import launch

    outputs = tmp_path / "outputs"
    proc = launch("+preset=smoke", "run_id=coverage", "data.n_points=3000", "data.noise=1.0",
                  "preprocess.horizon=4", "preprocess.difference=1", "tracking=none", outputs=outputs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    artifacts = Path(outputs) / "artifacts"
    model, pre = load_run(artifacts, "coverage")
    with np.load(next((artifacts / "processed" / "coverage").glob("*.npz"))) as npz:
        stamps, raw, bounds = pd.to_datetime(npz["timestamps"]), npz["raw"], npz["split_bounds"]
    hit = total = 0
    for t in range(int(bounds[2]), int(bounds[3]) - pre.horizon, 3):
        out = forecast_frame(model, pre, pd.DataFrame({"timestamp": stamps[t - 200:t], "value": raw[t - 200:t]}),
                             levels=[80])
        y = raw[t:t + pre.horizon]
        seen = np.isfinite(y)
        hit += int(((y >= out["lo_80"].to_numpy()) & (y <= out["hi_80"].to_numpy()))[seen].sum())
        total += int(seen.sum())
    assert total > 400 and 0.70 <= hit / total <= 0.90, (hit, total)


@pytest.mark.unit
def test_pickled_preprocessor_object_is_not_what_is_stored():
    """The canonical payload is a dict of plain values, never the dataclass itself."""
    pre, *_ = _fitted()
    with pytest.raises(Exception):
        dump_plain_pickle(pre)
    assert isinstance(pickle.loads(dump_plain_pickle(pre.to_dict())), dict)


# issue 24: the MLflow model applies exactly predict's rules, each a one-line InputInvalid
def _model():
    from spline_lstm.serving.pyfunc import SplineForecaster

    pre, values, *_ = _fitted()
    model = SplineForecaster()
    model.pre, model.model = pre.calibrated(np.ones((50, 4)), np.zeros((50, 4))), _Persistence(pre.horizon)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=100, freq="h"), "value": values[:100]})
    return model, frame


PYFUNC_REFUSALS = [
    ("empty-frame", lambda f: f.iloc[:0], None, "model input has no data rows"),
    ("no-columns", lambda f: pd.DataFrame(), None, "no column 'timestamp', 'value'"),
    ("duplicate-column", lambda f: pd.concat([f, f[["value"]]], axis=1), None, "2 columns named 'value'"),
    ("not-a-frame", lambda f: f.to_numpy(), None, "must be a table"),
    ("horizon-0", None, {"horizon": 0}, "params['horizon'] 0: must be 1.."),
    ("horizon-negative", None, {"horizon": -3}, "params['horizon'] -3"),
    ("horizon-float", None, {"horizon": 2.5}, "params['horizon'] 2.5: must be an integer"),
    ("horizon-bool", None, {"horizon": True}, "params['horizon'] True: must be an integer"),
    ("horizon-huge", None, {"horizon": 10**9}, "params['horizon'] 1000000000"),
    ("level-100", None, {"levels": [80, 100]}, "params['levels'] 100"),
    ("level-fraction", None, {"levels": [80.5]}, "params['levels'] 80.5: interval levels are integer"),
    ("level-nan", None, {"levels": [float("nan")]}, "params['levels'] nan"),
    ("levels-not-a-list", None, {"levels": 80}, "params['levels']: must be a list"),
    ("series-one-series-run", None, {"series": ["a"]}, "--series a: the run has one series"),
    ("unknown-param", None, {"horizn": 3}, "params: unknown 'horizn'"),
]


@pytest.mark.unit
@pytest.mark.parametrize("case,frame_of,params,fragment", PYFUNC_REFUSALS, ids=[c[0] for c in PYFUNC_REFUSALS])
def test_pyfunc_model_applies_predicts_rules_with_one_typed_line(case, frame_of, params, fragment):
    model, frame = _model()
    if frame_of is not None:
        frame = frame_of(frame)
    with pytest.raises(InputInvalid) as info:
        model.predict(None, frame, params)
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.unit
def test_pyfunc_model_forecasts_the_trained_horizon_only_when_horizon_is_absent():
    model, frame = _model()
    assert len(model.predict(None, frame, {})) == model.pre.horizon
    assert len(model.predict(None, frame, {"horizon": None, "levels": None})) == model.pre.horizon
    assert len(model.predict(None, frame, {"horizon": np.int64(6), "levels": np.array([80])})) == 6


@pytest.mark.unit
@pytest.mark.parametrize("horizon,levels,fragment", [(0, [], "--horizon 0"), (None, [80.5], "--level 80.5"),
                                                     (None, [float("nan")], "--level nan")])
def test_cli_and_model_share_one_rule_set(horizon, levels, fragment):
    from spline_lstm.serving.predict import check_options

    with pytest.raises(InputInvalid, match=fragment.replace(".", r"\.")):
        check_options(horizon, levels)
