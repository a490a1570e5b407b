"""Forecast metrics, baselines and the skill verdict (spline_lstm.evaluation.metrics)
against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spline_lstm.evaluation.metrics import (METRIC_NAMES, SKILLED, UNSKILLED, baseline_forecasts, forecast_metrics,
                                            improvement_pct, mase_scale, skill_verdict)

pytestmark = pytest.mark.unit


def test_every_metric_on_a_small_hand_computed_case():
    y = np.array([1.0, 2.0, 4.0])
    p = np.array([2.0, 2.0, 1.0])  # errors 1, 0, -3
    m = forecast_metrics(y, p, scale=2.0)
    assert m["mae"] == pytest.approx(4 / 3)
    assert m["mse"] == pytest.approx(10 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(10 / 3))
    assert m["mape"] == pytest.approx((1 / 1 + 0 / 2 + 3 / 4) / 3 * 100)
    assert m["smape"] == pytest.approx((2 * 1 / 3 + 0 + 2 * 3 / 5) / 3 * 100)
    assert m["mase"] == pytest.approx((4 / 3) / 2)
    # r2 = 1 - SSE / SST, mean 7/3: SST = (16 + 1 + 25) / 9
    assert m["r2"] == pytest.approx(1 - 10 / (42 / 9))
    assert set(m) == set(METRIC_NAMES)


def test_a_perfect_forecast():
    y = np.array([3.0, -1.0, 5.0, 2.0])
    m = forecast_metrics(y, y.copy(), 1.0)
    assert (m["mae"], m["mse"], m["rmse"], m["smape"], m["mase"], m["r2"]) == (0, 0, 0, 0, 0, 1)


def test_unobserved_targets_are_not_scored():
    y = np.array([1.0, np.nan, 3.0, np.inf])
    p = np.array([2.0, 100.0, 3.0, -50.0])
    m = forecast_metrics(y, p, 1.0)
    assert m["mae"] == pytest.approx(0.5) and m["mse"] == pytest.approx(0.5)


def test_nothing_observed_gives_nan_everywhere():
    m = forecast_metrics(np.array([np.nan, np.nan]), np.array([1.0, 2.0]), 1.0)
    assert all(math.isnan(v) for v in m.values())


def test_mape_ignores_zero_targets_and_is_nan_when_all_are_zero():
    assert forecast_metrics(np.array([0.0, 2.0]), np.array([1.0, 3.0]), 1.0)["mape"] == pytest.approx(50.0)
    assert math.isnan(forecast_metrics(np.array([0.0, 0.0]), np.array([1.0, 3.0]), 1.0)["mape"])


def test_smape_of_zero_against_zero_is_zero():
    assert forecast_metrics(np.array([0.0, 0.0]), np.array([0.0, 0.0]), 1.0)["smape"] == 0.0


def test_r2_of_a_constant_target_is_nan():
    assert math.isnan(forecast_metrics(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]), 1.0)["r2"])


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), None])
def test_mase_without_a_usable_scale_is_nan(scale):
    assert math.isnan(forecast_metrics(np.array([1.0, 2.0]), np.array([2.0, 2.0]), scale)["mase"])


def test_mase_scale_is_the_in_sample_naive_error():
    train = np.array([1.0, 3.0, 2.0, 6.0])
    assert mase_scale(train, None) == pytest.approx((2 + 1 + 4) / 3)
    assert mase_scale(train, 2) == pytest.approx((1 + 3) / 2)
    assert math.isnan(mase_scale(train, 4))


def test_mase_scale_skips_gaps():
    assert mase_scale(np.array([1.0, np.nan, 4.0, 6.0]), 1) == pytest.approx(2.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-1000, 1000).map(float), min_size=2, max_size=30), st.floats(-10, 10))
def test_a_constant_offset_is_its_own_mae_and_rmse(values, offset):
    y = np.array(values)
    m = forecast_metrics(y, y + offset, 1.0)
    assert m["mae"] == pytest.approx(abs(offset), abs=1e-6)
    assert m["rmse"] == pytest.approx(abs(offset), abs=1e-6)
    assert m["rmse"] >= m["mae"] - 1e-9


def test_naive_and_moving_average_baselines_by_hand():
    series = np.arange(10, dtype=np.float64) ** 2  # 0 1 4 9 16 25 36 49 64 81
    starts = np.array([3, 6])
    out = baseline_forecasts(series, starts, lookback=3, horizon=2, season=None)
    assert out["naive_last"].tolist() == [[4, 4], [25, 25]]
    assert out["moving_average_3"].tolist() == [[5 / 3, 5 / 3], [50 / 3, 50 / 3]]
    assert "seasonal_naive" not in out


def test_the_moving_average_window_can_differ_from_the_lookback():
    series = np.arange(10, dtype=np.float64)
    out = baseline_forecasts(series, np.array([5]), lookback=4, horizon=1, season=None, ma_window=2)
    assert out["moving_average_2"].tolist() == [[3.5]]


def test_seasonal_naive_repeats_the_last_season():
    series = np.arange(20, dtype=np.float64)
    out = baseline_forecasts(series, np.array([8]), lookback=4, horizon=6, season=4)
    # steps 0..3 take t-4, steps 4..5 take t-8
    assert out["seasonal_naive"].tolist() == [[4, 5, 6, 7, 4, 5]]


def test_no_seasonal_naive_when_a_season_reaches_before_the_series():
    series = np.arange(20, dtype=np.float64)
    assert "seasonal_naive" not in baseline_forecasts(series, np.array([3]), 2, 1, season=4)
    panel = baseline_forecasts(series, np.array([14]), 2, 1, season=4, first=np.array([12]))
    assert "seasonal_naive" not in panel


@pytest.mark.parametrize("model,baseline,expected", [(8.0, 10.0, 20.0), (12.0, 10.0, -20.0), (10.0, 10.0, 0.0)])
def test_improvement_pct(model, baseline, expected):
    assert improvement_pct(model, baseline) == pytest.approx(expected)


@pytest.mark.parametrize("baseline", [0.0, float("nan"), float("inf")])
def test_improvement_over_no_usable_baseline_is_nan(baseline):
    assert math.isnan(improvement_pct(1.0, baseline))


def test_skill_verdict_picks_the_best_finite_baseline():
    v = skill_verdict(8.0, {"naive_last": 10.0, "ets": 9.0, "broken": float("nan"), "none": None}, 5.0,
                      "warn", "test")
    assert v["best_baseline"] == "ets" and v["best_baseline_score"] == 9.0
    assert v["improvement_pct"] == pytest.approx(100 / 9)
    assert v["verdict"] == SKILLED and v["mode"] == "warn" and v["metric"] == "rmse"


def test_skill_needs_more_than_the_minimum_improvement():
    assert skill_verdict(9.0, {"naive": 10.0}, 10.0, "strict", "test")["verdict"] == UNSKILLED
    assert skill_verdict(8.9, {"naive": 10.0}, 10.0, "strict", "test")["verdict"] == SKILLED


def test_no_baseline_or_a_non_finite_model_is_unskilled():
    assert skill_verdict(1.0, {}, 0.0, "warn", "test")["verdict"] == UNSKILLED
    assert skill_verdict(float("nan"), {"naive": 10.0}, 0.0, "warn", "test")["verdict"] == UNSKILLED


def test_mode_off_records_no_verdict():
    v = skill_verdict(1.0, {"naive": 10.0}, 0.0, "off", "test")
    assert v["verdict"] is None and v["improvement_pct"] == pytest.approx(90.0)
