"""Preprocessing transforms (spline_lstm.preprocessing.transforms, spline_lstm.data.panel):
round trips, gap filling that keeps observed points, windows that stay in their split
and never cross a series."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spline_lstm.core.config import Interpolation, PreprocessConfig, Scaling
from spline_lstm.core.errors import ConfigInvalid, InputInvalid
from spline_lstm.data import panel
from spline_lstm.preprocessing import transforms

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=40, deadline=None)
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
series_st = hnp.arrays(np.float64, st.integers(4, 60), elements=finite)


@PROPERTY
@given(series_st, st.sampled_from(list(Scaling)))
def test_a_scaler_inverts_what_it_transforms(y, kind):
    scaler = transforms.Scaler.fit(kind, y)
    assert scaler.scale > 0 and np.isfinite(scaler.center)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(y)), y, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("kind,center,scale", [("standard", 2.5, np.std([1, 2, 3, 4])), ("minmax", 1.0, 3.0),
                                               ("robust", 2.5, 1.5), ("none", 0.0, 1.0)])
def test_scaler_statistics_by_hand(kind, center, scale):
    s = transforms.Scaler.fit(Scaling(kind), np.array([1.0, 2.0, np.nan, 3.0, 4.0]))
    assert (s.kind, s.center, s.scale) == (kind, pytest.approx(center), pytest.approx(scale))
    assert s.to_dict() == {"kind": kind, "center": s.center, "scale": s.scale}


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_a_constant_series_scales_by_one(kind):
    s = transforms.Scaler.fit(Scaling(kind), np.full(10, 7.0))
    assert s.scale == 1.0
    assert transforms.Scaler.fit(Scaling.standard, np.array([5.0, np.inf, 5.0])).scale == 1.0


def test_standard_scaling_gives_zero_mean_unit_std():
    y = np.random.default_rng(0).normal(3, 2, size=200)
    z = transforms.Scaler.fit(Scaling.standard, y).transform(y)
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12


@PROPERTY
@given(hnp.arrays(np.float64, st.integers(8, 50), elements=st.floats(-100, 100)), st.integers(1, 4),
       st.integers(1, 5))
def test_undifference_inverts_difference(y, lag, horizon):
    n = len(y)
    if n < lag + horizon + 1:
        return
    d = transforms.difference(y, lag)
    assert np.isnan(d[:lag]).all()
    starts = np.arange(lag, n - horizon + 1)
    deltas = d[starts[:, None] + np.arange(horizon)]
    levels = transforms.undifference(y, starts, deltas, lag)
    np.testing.assert_allclose(levels, y[starts[:, None] + np.arange(horizon)], atol=1e-9)


def test_difference_lag_zero_is_a_copy_and_undifference_lag_zero_is_identity():
    y = np.arange(5.0)
    d = transforms.difference(y, 0)
    assert d is not y and d.tolist() == y.tolist()
    deltas = np.ones((2, 3))
    assert transforms.undifference(y, np.array([1, 2]), deltas, 0) is deltas


def test_difference_of_a_panel_is_row_by_row():
    p = np.array([[1.0, 2.0, 4.0], [10.0, 20.0, 40.0]])
    np.testing.assert_array_equal(transforms.difference(p, 1)[:, 1:], [[1, 2], [10, 20]])


@st.composite
def gappy(draw):
    n = draw(st.integers(24, 80))
    y = draw(hnp.arrays(np.float64, n, elements=st.floats(-50, 50)))
    mask = draw(hnp.arrays(np.bool_, n, elements=st.booleans()))
    mask[:3] = False  # observed points before any gap in every split
    mask[-1] = False
    y = y.copy()
    y[mask] = np.nan
    return y


@PROPERTY
@given(gappy(), st.sampled_from(["linear", "pchip", "akima", "cubic"]))
def test_filling_keeps_every_observed_point_and_leaves_no_gap(y, method):
    bounds = transforms.split_bounds(len(y), PreprocessConfig())
    observed = ~np.isnan(y)
    if any(not observed[: int(hi)].any() for hi in bounds[1:]):
        return
    filled = transforms.fill_gaps(y, bounds, Interpolation(method))
    assert np.array_equal(filled[observed], y[observed])
    assert np.isfinite(filled).all()


@PROPERTY
@given(gappy())
def test_linear_filling_stays_between_its_neighbours(y):
    bounds = np.array([0, len(y), len(y), len(y)])
    filled = transforms.fill_gaps(y, bounds, Interpolation.linear)
    obs = np.flatnonzero(~np.isnan(y))
    for g in np.flatnonzero(np.isnan(y)):
        left = obs[obs < g].max()
        right = obs[obs > g]
        if right.size:
            lo, hi = sorted((y[left], y[right.min()]))
            assert lo - 1e-9 <= filled[g] <= hi + 1e-9


def test_a_gap_is_filled_from_its_own_split_only():
    y = np.array([0.0, 1.0, 2.0, 3.0, np.nan, 5.0, 100.0, 100.0])
    bounds = np.array([0, 5, 6, 8])  # the gap at 4 ends the training split: no later point in reach
    filled = transforms.fill_gaps(y, bounds, Interpolation.linear)
    assert filled[4] == 3.0  # held, not interpolated towards 5


def test_a_series_starting_with_a_gap_is_refused():
    with pytest.raises(InputInvalid, match="no observed point before a gap"):
        transforms.fill_gaps(np.array([np.nan, 1.0, 2.0]), np.array([0, 1, 2, 3]), Interpolation.linear)


@pytest.mark.parametrize("method,season,expected", [("auto", 12, "seasonal"), ("auto", None, "pchip"),
                                                    ("linear", 12, "linear"), ("seasonal", 4, "seasonal")])
def test_fill_method(method, season, expected):
    assert transforms.fill_method(Interpolation(method), season).value == expected


def test_seasonal_filling_needs_a_season():
    with pytest.raises(ConfigInvalid, match="preprocess.interpolation"):
        transforms.fill_method(Interpolation.seasonal, None)


@pytest.mark.parametrize("values,expected", [([1, np.nan, np.nan, 2, np.nan], (2, 1)), ([1.0, 2.0], (0, -1)),
                                             ([np.nan, 1, np.nan, np.nan, np.nan], (3, 2))])
def test_longest_gap(values, expected):
    assert transforms.longest_gap(np.array(values, dtype=float)) == expected


def test_observed_span_trims_leading_and_trailing_gaps():
    assert transforms.observed_span(np.array([np.nan, 1.0, np.nan, 2.0, np.nan])) == (1, 4)
    with pytest.raises(InputInvalid):
        transforms.observed_span(np.array([np.nan, np.nan]))


@PROPERTY
@given(st.integers(10, 10_000), st.sampled_from([[0.7, 0.15, 0.15], [0.5, 0.25, 0.25], [0.8, 0.1, 0.1]]))
def test_split_bounds_cover_the_series_in_order(n, ratios):
    b = transforms.split_bounds(n, PreprocessConfig(split_ratios=ratios))
    assert b[0] == 0 and b[3] == n and b[0] <= b[1] <= b[2] <= b[3]
    assert abs(b[1] - n * ratios[0]) <= 1


def test_split_indices_past_the_series_are_input_invalid():
    with pytest.raises(InputInvalid, match="split_indices"):
        transforms.split_bounds(50, PreprocessConfig(split_indices=[10, 20, 60]))


@PROPERTY
@given(st.integers(20, 300), st.integers(1, 30), st.integers(1, 10), st.integers(0, 3), st.integers(0, 2))
def test_window_starts_keep_targets_in_their_split(n, lookback, horizon, offset, split):
    bounds = transforms.split_bounds(n, PreprocessConfig())
    starts = transforms.window_starts(bounds, split, lookback, horizon, offset)
    if starts.size:
        assert starts[0] >= max(bounds[split], lookback + offset)
        assert starts[-1] + horizon <= bounds[split + 1]
        assert (np.diff(starts) == 1).all()
    if split == 0 and starts.size:
        assert starts[0] - lookback >= 0


@st.composite
def panels(draw):
    n, length = draw(st.integers(1, 6)), draw(st.integers(10, 60))
    values = np.full((n, length), np.nan)
    for k in range(n):
        lo = draw(st.integers(0, length - 2))
        hi = draw(st.integers(lo + 1, length))
        values[k, lo:hi] = 1.0
    return values


@PROPERTY
@given(panels(), st.integers(1, 8), st.integers(1, 4), st.integers(0, 2), st.integers(0, 2))
def test_panel_windows_never_cross_a_series(values, lookback, horizon, difference, split):
    n, length = values.shape
    spans = panel.spans(values)
    bounds = transforms.split_bounds(length, PreprocessConfig())
    starts = transforms.window_starts(bounds, split, lookback, horizon, difference, spans, length)
    series = panel.series_of(starts, length)
    for s, k in zip(starts, series):
        t = s - k * length
        lo, hi = spans[k]
        assert lo + lookback + difference <= t and t + horizon <= hi  # inputs and targets inside the span
        assert bounds[split] <= t and t + horizon <= bounds[split + 1]  # targets inside the split
    for k in range(n):  # each series' windows are what its own span gives
        lo, hi = spans[k]
        own = transforms.window_starts(panel.local_bounds(bounds, spans[k]), split, lookback, horizon, difference)
        assert (starts[series == k] - k * length - lo).tolist() == own.tolist()


def test_spans_by_hand():
    v = np.array([[np.nan, 1, 2, np.nan], [1, np.nan, np.nan, 3], [np.nan, np.nan, np.nan, 4]])
    assert panel.spans(v).tolist() == [[1, 3], [0, 4], [3, 4]]


def test_window_source_gathers_the_windows_it_describes():
    y = np.arange(20, dtype=np.float32)
    src = transforms.WindowSource(y, np.array([5, 9]), lookback=3, horizon=2)
    x, t = src.gather(src.starts)
    assert x.shape == (2, 3, 1) and x[:, :, 0].tolist() == [[2, 3, 4], [6, 7, 8]]
    assert t.tolist() == [[5, 6], [9, 10]] and len(src) == 2


def test_target_matrix_keeps_gaps():
    v = np.array([0.0, np.nan, 2.0, 3.0])
    out = transforms.target_matrix(v, np.array([0, 2]), 2)
    assert np.isnan(out[0, 1]) and out[1].tolist() == [2.0, 3.0]
