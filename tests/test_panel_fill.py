"""The many-series gap fill and scaler fit (``transforms.fill_gaps`` of a panel,
``fit_scalers_panel``) against the single-series functions they vectorise:
``fill_gaps`` on each series' span with the bounds clipped to it, ``Scaler.fit``
on each row. Small random panels with the awkward cases put in on purpose."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spline_lstm.preprocessing import transforms
from spline_lstm.core.config import Interpolation, Scaling
from spline_lstm.core.errors import InputInvalid
from spline_lstm.data.synthetic import related_series

pytestmark = pytest.mark.unit

METHODS = list(Interpolation)


def one_by_one(values, spans, bounds, method, season):
    """The definition: fill_gaps per series on its span."""
    out = np.full(values.shape, np.nan)
    for k, (lo, hi) in enumerate(np.asarray(spans, dtype=np.int64)):
        local = np.clip(np.asarray(bounds, dtype=np.int64) - lo, 0, hi - lo)
        out[k, lo:hi] = transforms.fill_gaps(values[k, lo:hi], local, method, season)
    return out


def assert_same(values, spans, bounds, method, season):
    got = transforms.fill_gaps(values, bounds, method, season, spans)
    want = one_by_one(values, spans, bounds, method, season)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    scale = max(1.0, float(np.nanmax(np.abs(values))))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9 * scale, equal_nan=True)
    observed = ~np.isnan(values)
    np.testing.assert_array_equal(got[observed & ~np.isnan(got)], values[observed & ~np.isnan(got)])
    return got


def awkward_panel(season: int, seed: int = 0):
    """Series on a 120-point grid, split [0, 70, 95, 120], each breaking one assumption
    of the fast path, beside a block of ordinary full-span series."""
    rng = np.random.default_rng(seed)
    t, n = 120, 40
    x = np.arange(t)
    values = (rng.normal(size=(n, t)).cumsum(axis=1) + 3 * np.sin(2 * np.pi * x / season)
              + rng.uniform(-50, 50, size=(n, 1)))
    gaps = rng.random((n, t)) < 0.08
    gaps[:, [0, -1]] = False  # ordinary rows: observed ends
    values[gaps] = np.nan
    spans = np.tile([0, t], (n, 1))
    values[0, 66:70] = np.nan  # gap at the end of the training split: holds the last value
    values[1, 70:74] = np.nan  # gap right after a split boundary
    values[2, 93:] = np.nan  # gaps at the ends of validation and test
    values[3, 1:70] = np.nan  # one observed point reachable in training: linear
    values[3, [70, 75, 80]] = 1.0
    values[4, 3:69] = np.nan  # three observed points in training: linear, not PCHIP
    values[4, 40] = 2.0
    spans[5:8] = (10, 50)  # a short span: shorter than two seasons, splits clipped to it
    values[5:8, 10] = -3.0
    spans[8:11] = (60, 118)  # starts inside training, ends before the grid
    values[8:11, 60] = 7.0
    values[11, 0:4] = np.nan  # a span starting unobserved: fill_gaps alone
    values[11, 2] = 4.0
    spans[11] = (2, t)
    spans[12] = (0, 30)  # a span of its own
    spans[13] = (40, 40)  # an empty span
    values[14, 5:] = np.nan  # a span that does not end observed (not trimmed)
    for k, (lo, hi) in enumerate(spans):
        values[k, :lo] = values[k, hi:] = np.nan
    return values, spans, np.array([0, 70, 95, t])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("season", [24, 7])
def test_a_panel_with_awkward_series_is_filled_as_each_series_alone(method, season):
    values, spans, bounds = awkward_panel(season)
    got = assert_same(values, spans, bounds, method, season)
    assert np.isnan(got[13]).all() and np.isnan(got[5, :10]).all() and np.isnan(got[5, 50:]).all()


@pytest.mark.parametrize("method", [Interpolation.seasonal, Interpolation.pchip, Interpolation.linear])
def test_more_series_than_a_block_and_large_levels(method):
    p = related_series(transforms.PANEL_BLOCK + 13, 200, period=24, seed=2, gap_ratio=0.05, gap_stretches=1,
                       k_past=0, k_future=0)
    values = p.values + 1e6  # cancellation in the moving average would show here
    spans = np.tile([0, 200], (len(values), 1))
    assert_same(values, spans, np.array([0, 140, 170, 200]), method, 24)


def test_no_series_and_no_gaps():
    empty = np.empty((0, 50))
    assert transforms.fill_gaps(empty, np.array([0, 30, 40, 50]), Interpolation.pchip,
                                spans=np.empty((0, 2), dtype=int)).shape == (0, 50)
    full = np.arange(100.0).reshape(2, 50)
    np.testing.assert_array_equal(transforms.fill_gaps(full, np.array([0, 30, 40, 50]), Interpolation.seasonal, 5,
                                                       [[0, 50], [0, 50]]), full)


def test_a_series_with_nothing_observed_before_a_gap_is_refused_as_alone():
    values = np.array([[np.nan, np.nan, 1.0, np.nan, 2.0, 3.0], [1.0, 2.0, np.nan, 4.0, 5.0, 6.0]])
    with pytest.raises(InputInvalid, match="no observed point before a gap"):
        transforms.fill_gaps(values, np.array([0, 2, 4, 6]), Interpolation.pchip, spans=[[0, 6], [0, 6]])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), method=st.sampled_from(METHODS), season=st.sampled_from([4, 5, 12]),
       t=st.integers(8, 90), n=st.integers(1, 12), gap=st.floats(0.0, 0.6))
def test_random_panels_with_mixed_spans_are_filled_as_each_series_alone(seed, method, season, t, n, gap):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, t)).cumsum(axis=1) * rng.choice([1e-3, 1.0, 1e3])
    values[rng.random((n, t)) < gap] = np.nan
    cuts = np.sort(rng.integers(0, t + 1, size=2))
    bounds = np.array([0, cuts[0], cuts[1], t])
    spans = np.tile([0, t], (n, 1))
    odd = rng.random(n) < 0.3
    spans[odd] = rng.choice([(0, t // 2), (t // 3, t)], size=int(odd.sum()))
    for k, (lo, hi) in enumerate(spans):
        values[k, :lo] = values[k, hi:] = np.nan
        ob = np.flatnonzero(~np.isnan(values[k, lo:hi]))
        if ob.size == 0 or ob[0] > 0:  # as the panel hands them over: spans start observed
            values[k, lo] = 1.0
    assert_same(values, spans, bounds, method, season)


@pytest.mark.parametrize("kind", list(Scaling))
def test_panel_scalers_are_the_scalers_of_each_row(kind):
    rng = np.random.default_rng(4)
    train = rng.normal(5, 3, size=(30, 41))
    train[rng.random(train.shape) < 0.3] = np.nan
    train[0, 3], train[1, :] = np.inf, 7.0  # inf ignored; constant row: scale 1
    train[2, :-1], train[2, -1] = np.nan, 1.5  # one value
    centers, scales = transforms.fit_scalers_panel(kind, train)
    for row, c, s in zip(train, centers, scales):
        one = transforms.Scaler.fit(kind, row)
        assert c == pytest.approx(one.center, rel=1e-12, abs=1e-12) and s == pytest.approx(one.scale, rel=1e-12)
    assert scales[1] == 1.0


def test_a_panel_scaler_row_with_no_value_has_a_nan_center_and_scale_one():
    train = np.array([[np.nan, np.nan], [1.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out
        for kind in Scaling:
            centers, scales = transforms.fit_scalers_panel(kind, train)
            assert scales[0] == 1.0 and (np.isnan(centers[0]) or kind == Scaling.none)


def panel_cfg():
    from spline_lstm.core.config import PreprocessConfig

    return PreprocessConfig(lookback=12, horizon=2, max_gap=6, max_missing_ratio=0.2)


def test_panel_checks_pass_what_each_series_passes_and_refuse_the_first_that_fails():
    p = related_series(30, 200, period=12, seed=6, gap_ratio=0.03, gap_stretches=1, k_past=0, k_future=0)
    values, spans, bounds, names = p.values, np.tile([0, 200], (30, 1)), np.array([0, 140, 170, 200]), \
        [f"series {k}" for k in range(30)]
    cfg = panel_cfg()
    transforms.check_series(values, bounds, cfg, names, spans)
    bad = {7: "longest-gap rule", 9: "missing-ratio rule", 12: "minimum-length rule", 15: "constant"}
    values = values.copy()
    values[7, 50:57] = np.nan
    values[9, 1:199:4] = np.nan
    spans[12] = (150, 165)
    values[15, :140] = 3.0
    for k in sorted(bad):  # each the first failure once the ones before it are mended
        with pytest.raises(InputInvalid, match=f"series {k}.*{bad[k]}"):
            transforms.check_series(values, bounds, cfg, names, spans)
        spans[k] = (0, 200)
        values[k] = p.values[k]
    transforms.check_series(values, bounds, cfg, names, spans)
