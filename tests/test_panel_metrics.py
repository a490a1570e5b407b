"""Metrics over many series (spline_lstm.data.panel): the per-series table is
``evaluate.forecast_metrics`` of each series' own windows, bit for bit, whatever the
series' order, gaps, zero targets, constant targets or MASE scale."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spline_lstm.evaluation import metrics
from spline_lstm.evaluation.metrics import forecast_metrics

pytestmark = pytest.mark.unit


def _one_by_one(actual, forecasts, series, scales, ids) -> dict:
    out = {}
    for k in sorted(set(series.tolist())):
        rows = np.flatnonzero(series == k)
        out[ids[k]] = {name: forecast_metrics(actual[rows], fc[rows], float(scales[k]))
                       for name, fc in forecasts.items()}
    return out


def test_the_per_series_table_is_forecast_metrics_of_each_series_bit_for_bit():
    rng = np.random.default_rng(5)
    n, windows, horizon = 40, 30, 3
    series = rng.permutation(np.repeat(np.arange(n), windows))  # windows of the series interleaved
    actual = rng.normal(size=(n * windows, horizon)) * rng.lognormal(size=(n * windows, 1)) + 3
    actual[rng.random(actual.shape) < 0.1] = np.nan  # gaps: series observe different numbers of targets
    actual[series == 1, 0] = 0.0  # zero targets: mape skips them
    actual[series == 2] = np.nan  # nothing observed
    actual[series == 3] = 7.0  # constant: r2 is nan
    actual[(series == 4)[:, None] & (np.arange(horizon) == 0)] = np.nan
    forecasts = {"model": (actual + rng.normal(size=actual.shape)).astype(np.float32),
                 "naive_last": np.nan_to_num(actual) * 0.5}
    forecasts["naive_last"][np.flatnonzero(series == 6)[:2]] = 0.0
    actual[np.flatnonzero(series == 6)[:2]] = 0.0  # |y| + |p| = 0: smape skips them
    scales = rng.random(n) + 0.5
    scales[7], scales[8] = 0.0, np.nan  # no MASE
    ids = tuple(f"s{k:02d}" for k in range(n))
    got = metrics.per_series_metrics(actual, forecasts, series, scales, ids)
    want = _one_by_one(actual, forecasts, series, scales, ids)
    assert list(got) == list(want)
    assert json.dumps(got) == json.dumps(want)
    assert np.isnan(got["s03"]["model"]["r2"]) and np.isnan(got["s07"]["model"]["mase"])
    assert all(np.isnan(v) for v in got["s02"]["model"].values())


def test_series_without_windows_are_left_out():
    actual = np.arange(1.0, 7.0)[:, None]
    series = np.array([4, 4, 0, 0, 4, 0])
    got = metrics.per_series_metrics(actual, {"model": actual + 1}, series, np.ones(5), tuple("abcde"))
    assert list(got) == ["a", "e"] and got["e"]["model"]["mae"] == 1.0
