"""Preprocessing and evaluation on small arrays with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from spline_lstm.evaluation import metrics
from spline_lstm.preprocessing import transforms
from spline_lstm.core.config import Interpolation, PreprocessConfig, Scaling
from spline_lstm.core.errors import ConfigInvalid, InputInvalid

pytestmark = pytest.mark.unit


def cubic(x):
    return 0.5 * x ** 3 - 2 * x ** 2 + x - 3


@pytest.mark.parametrize("method", [Interpolation.cubic, Interpolation.pchip, Interpolation.akima,
                                    Interpolation.linear])
def test_fill_keeps_observed_points(method):
    x = np.arange(30, dtype=float)
    values = np.sin(x / 3)
    values[[5, 6, 17]] = np.nan
    filled = transforms.fill_gaps(values, np.array([0, 30, 30, 30]), method)
    obs = ~np.isnan(values)
    assert np.array_equal(filled[obs], values[obs])
    assert np.isfinite(filled).all()


def test_cubic_spline_fills_a_removed_point_of_a_cubic_exactly():
    x = np.arange(12, dtype=float)
    values = cubic(x)
    truth = values[6]
    values[6] = np.nan
    filled = transforms.fill_gaps(values, np.array([0, 12, 12, 12]), Interpolation.cubic)
    assert filled[6] == pytest.approx(truth, abs=1e-9)


def test_linear_fill_is_the_midpoint():
    values = np.array([0.0, 2.0, np.nan, 6.0, 8.0])
    assert transforms.fill_gaps(values, np.array([0, 5, 5, 5]), Interpolation.linear)[2] == 4.0


def test_filling_training_gaps_never_uses_later_splits():
    base = np.linspace(0, 1, 40)
    a, b = base.copy(), base.copy()
    a[18] = b[18] = np.nan          # gap in train
    b[25:] = 1000.0                 # validation/test values differ wildly
    bounds = np.array([0, 20, 30, 40])
    fa = transforms.fill_gaps(a, bounds, Interpolation.cubic)
    fb = transforms.fill_gaps(b, bounds, Interpolation.cubic)
    assert fa[18] == fb[18]


def test_trailing_gap_of_a_split_holds_last_value():
    values = np.array([1.0, 2.0, 3.0, np.nan, np.nan, 9.0, 10.0, 11.0])
    filled = transforms.fill_gaps(values, np.array([0, 5, 8, 8]), Interpolation.pchip)
    assert filled[3] == filled[4] == 3.0


def test_longest_gap_and_span():
    values = np.array([np.nan, 1, np.nan, np.nan, np.nan, 2, np.nan, 3, np.nan])
    assert transforms.longest_gap(values) == (3, 2)
    assert transforms.observed_span(values) == (1, 8)


def test_scaler_statistics_come_from_train_rows_only():
    series = np.concatenate([np.arange(10.0), np.full(10, 1e6)])
    scaler = transforms.Scaler.fit(Scaling.standard, series[:10])
    assert scaler.center == pytest.approx(4.5) and scaler.scale == pytest.approx(np.std(np.arange(10.0)))
    mm = transforms.Scaler.fit(Scaling.minmax, series[:10])
    assert (mm.center, mm.scale) == (0.0, 9.0)
    rb = transforms.Scaler.fit(Scaling.robust, series[:10])
    assert rb.center == pytest.approx(4.5) and rb.scale == pytest.approx(4.5)
    y = np.array([3.0, 7.5])
    assert np.allclose(scaler.inverse(scaler.transform(y)), y)


def test_split_bounds_by_ratio_and_by_index():
    cfg = PreprocessConfig()
    assert transforms.split_bounds(100, cfg).tolist() == [0, 70, 85, 100]
    cfg.split_indices = [50, 60, 80]
    assert transforms.split_bounds(100, cfg).tolist() == [0, 50, 60, 80]
    cfg.split_indices = [50, 60, 120]
    with pytest.raises(InputInvalid):
        transforms.split_bounds(100, cfg)


def test_window_counts_and_boundaries():
    bounds = np.array([0, 70, 85, 100])
    lookback, horizon = 10, 3
    train = transforms.window_starts(bounds, 0, lookback, horizon)
    val = transforms.window_starts(bounds, 1, lookback, horizon)
    test = transforms.window_starts(bounds, 2, lookback, horizon)
    assert (train[0], train[-1], len(train)) == (10, 67, 58)   # inputs inside train
    assert (val[0], val[-1], len(val)) == (70, 82, 13)         # inputs may reach back into train
    assert (test[0], test[-1], len(test)) == (85, 97, 13)
    for starts, (lo, hi) in ((train, (0, 70)), (val, (70, 85)), (test, (85, 100))):
        assert starts.min() >= lo and starts.max() + horizon <= hi  # targets never cross a boundary


def test_window_source_gathers_without_materialising():
    series = np.arange(1000, dtype=np.float32)
    starts = transforms.window_starts(np.array([0, 700, 850, 1000]), 0, 168, 1)
    src = transforms.WindowSource(series, starts, 168, 1)
    assert src.nbytes == series.nbytes + starts.nbytes       # O(N), not N x lookback
    x, y = src.gather(starts[:2])
    assert x.shape == (2, 168, 1) and y.shape == (2, 1)
    assert x[0, :, 0].tolist() == list(range(0, 168)) and y[0, 0] == 168


def test_difference_roundtrip():
    series = np.array([1.0, 3.0, 6.0, 10.0, 15.0, 21.0])
    d = transforms.difference(series, 1)
    assert np.isnan(d[0]) and d[1:].tolist() == [2, 3, 4, 5, 6]
    starts = np.array([3])
    deltas = np.array([[4.0, 5.0, 6.0]])
    assert transforms.undifference(series, starts, deltas, 1).tolist() == [[10.0, 15.0, 21.0]]
    seasonal = transforms.undifference(series, starts, np.array([[1.0, 1.0, 1.0]]), 2)
    assert seasonal.tolist() == [[4.0, 7.0, 5.0]]  # y[3]=y[1]+1, y[4]=y[2]+1, y[5]=yhat[3]+1


def _cfg(**kw):
    cfg = PreprocessConfig(lookback=4, horizon=1)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_check_series_rules():
    values = np.sin(np.arange(100) / 5.0)
    bounds = np.array([0, 70, 85, 100])
    transforms.check_series(values, bounds, _cfg(), "x")
    gappy = values.copy()
    gappy[10:40] = np.nan
    with pytest.raises(InputInvalid, match="max_missing_ratio"):
        transforms.check_series(gappy, bounds, _cfg(), "x")
    long_gap = values.copy()
    long_gap[10:16] = np.nan
    with pytest.raises(InputInvalid, match="max_gap=5"):
        transforms.check_series(long_gap, bounds, _cfg(max_gap=5), "x")
    with pytest.raises(InputInvalid, match="constant"):
        transforms.check_series(np.ones(100), bounds, _cfg(), "x")
    with pytest.raises(InputInvalid, match="at least"):
        transforms.check_series(values[:8], np.array([0, 6, 7, 8]), _cfg(), "x")
    with pytest.raises(ConfigInvalid, match="lookback"):
        transforms.check_series(values, bounds, _cfg(lookback=70), "x")



def test_training_and_predict_apply_one_set_of_input_rules():
    """The same thresholds give the same verdicts; only the name of the threshold's
    source differs (training's config key, or the run that recorded it)."""
    cfg = _cfg(max_gap=5)
    train = transforms.InputRules.for_training(cfg)
    payload = {"window": {"lookback": cfg.lookback, "horizon": cfg.horizon, "difference": cfg.difference},
               "spline": {"max_gap": 5, "max_missing_ratio": cfg.max_missing_ratio}}
    serve = transforms.InputRules.for_predict(payload)
    assert (serve.max_gap, serve.max_missing_ratio) == (train.max_gap, train.max_missing_ratio)
    values = np.sin(np.arange(100) / 5.0)
    long_gap, gappy = values.copy(), values.copy()
    long_gap[10:16] = np.nan
    gappy[10:70:2] = np.nan  # 30% missing, no gap longer than 1
    for rules, key in ((train, "preprocess."), (serve, "the run's ")):
        transforms.check_input(values, rules, "x")
        with pytest.raises(InputInvalid, match=f"longest-gap rule.*{key}max_gap=5"):
            transforms.check_input(long_gap, rules, "x")
        with pytest.raises(InputInvalid, match=f"missing-ratio rule.*{key}max_missing_ratio"):
            transforms.check_input(gappy, rules, "x")
    with pytest.raises(InputInvalid, match="minimum-length rule.*lookback \\+ difference"):
        transforms.check_input(values[: cfg.lookback - 1], serve, "x")


def test_scaled_values_must_stay_finite_in_float32():
    scaler = transforms.Scaler("standard", 10.0, 2.0)
    modelled = np.array([np.nan, 10.0, 12.0, 1e50])
    with pytest.raises(InputInvalid, match="finite-after-scaling rule.*point 3"):
        transforms.scale_checked(scaler, modelled, "x")
    ok = transforms.scale_checked(scaler, modelled[:3], "x")
    assert ok.dtype == np.float32 and ok.tolist() == [0.0, 0.0, 1.0]  # NaN (differencing) -> 0

def test_metrics_against_hand_computed_values():
    actual = np.array([[1.0], [2.0], [0.0], [4.0], [np.nan]])
    pred = np.array([[2.0], [2.0], [1.0], [2.0], [99.0]])   # NaN target (interpolated) ignored
    m = metrics.forecast_metrics(actual, pred, scale=2.0)
    assert m["mae"] == pytest.approx(1.0)            # |1|+0+|1|+|2| / 4
    assert m["mse"] == pytest.approx(1.5)            # 1+0+1+4 / 4
    assert m["rmse"] == pytest.approx(np.sqrt(1.5))
    assert m["mape"] == pytest.approx((1 + 0 + 0.5) / 3 * 100)   # zero target ignored
    assert m["smape"] == pytest.approx(np.mean([2 / 3, 0, 2, 4 / 6]) * 100)
    assert m["mase"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 6 / 8.75)


def test_baselines():
    series = np.arange(30, dtype=float)
    starts = np.array([20, 25])
    b = metrics.baseline_forecasts(series, starts, lookback=4, horizon=2, season=12)
    assert b["naive_last"].tolist() == [[19, 19], [24, 24]]
    assert b["moving_average_4"].tolist() == [[17.5, 17.5], [22.5, 22.5]]
    assert b["seasonal_naive"].tolist() == [[8, 9], [13, 14]]
    assert metrics.mase_scale(np.array([1.0, 3.0, 2.0, np.nan, 5.0]), None) == pytest.approx(1.5)
    assert metrics.improvement_pct(8.0, 10.0) == pytest.approx(20.0)
