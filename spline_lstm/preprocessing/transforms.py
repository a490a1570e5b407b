"""Gap checks, spline gap-filling, smoothing, train-only scaling, chronological
splits and lazily-built windows. Pure functions on numpy arrays.

Leakage rules (nothing from validation/test may shape training inputs):
- gap filling is causal by split: gaps in split k are filled by a spline fitted
  on the observed points of splits 0..k only, so training values never see
  validation or test points;
- smoothing is fitted on the training split only and applied there; validation
  and test inputs stay unsmoothed (a two-sided smoother would leak targets);
- the scaler is fitted on training rows only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from spline_lstm.core.config import Interpolation, PreprocessConfig, Scaling
from spline_lstm.core.errors import ConfigInvalid, InputInvalid
from spline_lstm.preprocessing.statistics import seasonal_index

SPLITS = ("train", "val", "test")


def observed_span(values: np.ndarray) -> tuple:
    """[first, last+1) of the observed points: leading/trailing gaps are trimmed,
    since no spline can fill them without extrapolating."""
    idx = np.flatnonzero(~np.isnan(values))
    if idx.size == 0:
        raise InputInvalid("series has no observed value")
    return int(idx[0]), int(idx[-1]) + 1


def longest_gap(values: np.ndarray) -> tuple:
    """(length, start index) of the longest run of NaN."""
    missing = np.isnan(values).astype(np.int8)
    if not missing.any():
        return 0, -1
    edges = np.diff(np.concatenate(([0], missing, [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = stops - starts
    i = int(np.argmax(lengths))
    return int(lengths[i]), int(starts[i])


def split_bounds(n: int, cfg: PreprocessConfig) -> np.ndarray:
    """[0, train_end, val_end, test_end]: by explicit indices or by ratios."""
    if cfg.split_indices is not None:
        tr, va, te = (int(x) for x in cfg.split_indices)
        if te > n:
            raise InputInvalid(f"preprocess.split_indices ends at row {te} but the series has {n} rows")
        return np.array([0, tr, va, te], dtype=np.int64)
    r = np.asarray(cfg.split_ratios, dtype=np.float64)
    tr = int(round(n * r[0]))
    va = int(round(n * (r[0] + r[1])))
    return np.array([0, tr, va, n], dtype=np.int64)


@dataclass(frozen=True)
class InputRules:
    """The rules every input series meets, in training and in ``predict`` alike:
    minimum length, missing ratio, longest gap (``check_input``) and finite values
    after scaling (``scale_checked``). Training takes the thresholds from its config,
    predict from the run's preprocessor payload; ``source`` prefixes a threshold's
    name in messages ("preprocess." or "the run's "). The file-level rules (target
    kind, magnitude, grid size; for predict also the run's frequency) are in
    ``data``, which both callers load through."""

    min_points: int
    min_points_why: str  # what needs that many points, for the message
    max_missing_ratio: float
    max_gap: int
    source: str

    @classmethod
    def for_training(cls, cfg: PreprocessConfig) -> "InputRules":
        need = cfg.lookback + cfg.difference + 3 * cfg.horizon + 2
        diff = f" + difference {cfg.difference}" if cfg.difference else ""
        return cls(need, f"lookback {cfg.lookback}{diff} + horizon {cfg.horizon} and three splits need at least {need}",
                   cfg.max_missing_ratio, cfg.max_gap, "preprocess.")

    @classmethod
    def for_predict(cls, payload: dict) -> "InputRules":
        """From a run's preprocessor payload; runs written before it recorded
        max_missing_ratio are held to the default."""
        window, spline = payload["window"], payload["spline"]
        need = int(window["lookback"]) + int(window.get("difference", 0))
        ratio = spline.get("max_missing_ratio", PreprocessConfig.max_missing_ratio)
        return cls(need, f"the model needs lookback + difference = {need}", float(ratio),
                   int(spline["max_gap"]), "the run's ")


def check_input(values: np.ndarray, rules: InputRules, where: str) -> None:
    """The minimum-length, missing-ratio and longest-gap rules on a trimmed series;
    the error names the rule that failed."""
    n = len(values)
    if n < rules.min_points:
        raise InputInvalid(f"{where} fails the minimum-length rule: {n} points after trimming leading/trailing "
                           f"gaps; {rules.min_points_why}")
    ratio = float(np.isnan(values).mean())
    if ratio > rules.max_missing_ratio:
        raise InputInvalid(f"{where} fails the missing-ratio rule: {ratio:.1%} of the points are missing, above "
                           f"{rules.source}max_missing_ratio={rules.max_missing_ratio}")
    gap, at = longest_gap(values)
    if gap > rules.max_gap:
        raise InputInvalid(f"{where} fails the longest-gap rule: a gap of {gap} consecutive missing steps (from "
                           f"point {at}) exceeds {rules.source}max_gap={rules.max_gap}; filling it would be "
                           "invention")


def scale_checked(scaler: "Scaler", modelled: np.ndarray, where: str) -> np.ndarray:
    """The model's input series: scaled, float32, NaN (the first ``difference``
    points) as 0. The finite-after-scaling rule: a value that overflows float32
    once scaled (1e308 through a scaler fitted on values near 10) is refused,
    not handed to the network as inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = scaler.transform(modelled).astype(np.float32)
    bad = ~np.isfinite(scaled) & ~np.isnan(modelled)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputInvalid(f"{where} fails the finite-after-scaling rule: {int(bad.sum())} values overflow "
                           f"once scaled (first at point {first}: {modelled[first]:g} with the scaler's "
                           f"center {scaler.center:g}, scale {scaler.scale:g})")
    return np.nan_to_num(scaled, nan=0.0)


def as_panel(values: np.ndarray, spans: Optional[np.ndarray] = None, names=None) -> tuple:
    """(values [n, T] float64, spans [n, 2], names): one series [T] is a panel of one
    whose span is its whole length."""
    if np.ndim(values) == 1:
        return (np.asarray(values, dtype=np.float64)[None], np.array([[0, len(values)]], dtype=np.int64),
                None if names is None else [names])
    return np.asarray(values, dtype=np.float64), np.asarray(spans, dtype=np.int64).reshape(-1, 2), names


def _check_one(values: np.ndarray, bounds: np.ndarray, cfg: PreprocessConfig, where: str) -> None:
    """One trimmed series against the rules; the error names the rule that failed."""
    check_input(values, InputRules.for_training(cfg), where)
    sizes = np.diff(bounds)
    for name, size in zip(SPLITS, sizes):
        if size < cfg.horizon:
            raise InputInvalid(f"{where}: {name} split has {size} points, fewer than horizon "
                               f"{cfg.horizon}; use a longer series or other split ratios")
    if sizes[0] < cfg.lookback + cfg.difference + cfg.horizon:
        raise ConfigInvalid(f"preprocess.lookback: {cfg.lookback} + horizon {cfg.horizon} (+ difference "
                            f"{cfg.difference}) exceeds the training split ({sizes[0]} points)")
    train = values[: bounds[1]]
    if np.nanstd(train) == 0.0:
        raise InputInvalid(f"{where}: the target is constant over the training split; nothing to learn")


def check_series(values: np.ndarray, bounds: np.ndarray, cfg: PreprocessConfig, names,
                 spans: Optional[np.ndarray] = None) -> None:
    """Refuse series that break the input rules, do not fit the splits, or are constant:
    ``values`` [n, T] with ``spans`` and one name per series, or one series [T] (a panel
    of one over its whole length, ``names`` its name). Each series is checked on its span
    with the bounds clipped to it (the conventions of ``fill_gaps``). The statistics are
    computed for all series at once; only series that could break a rule (a constant
    training split is suspected with a margin for rounding) go through ``_check_one``,
    in order: the same first error as a loop over every series."""
    values, spans, names = as_panel(values, spans, names)
    rules = InputRules.for_training(cfg)
    lo, hi = spans[:, 0], spans[:, 1]
    length = hi - lo
    local = np.clip(np.asarray(bounds, dtype=np.int64)[None, :] - lo[:, None], 0, length[:, None])
    sizes = np.diff(local, axis=1)
    suspect = ((length < rules.min_points) | (sizes < cfg.horizon).any(axis=1)
               | (sizes[:, 0] < cfg.lookback + cfg.difference + cfg.horizon))
    cols = np.arange(values.shape[1])
    for i in range(0, len(values), PANEL_BLOCK):
        r = slice(i, i + PANEL_BLOCK)
        v, inside = values[r], (cols >= lo[r, None]) & (cols < hi[r, None])
        missing = np.isnan(v) & inside
        edges = np.diff(np.pad(missing.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        row, start = np.nonzero(edges == 1)
        longest = np.zeros(len(v), dtype=np.int64)
        np.maximum.at(longest, row, np.nonzero(edges == -1)[1] - start)
        train = inside & (cols < (lo[r] + local[r, 1])[:, None]) & ~missing
        count = np.maximum(train.sum(axis=1), 1)
        mean = np.where(train, v, 0.0).sum(axis=1) / count
        std = np.sqrt((np.where(train, v - mean[:, None], 0.0) ** 2).sum(axis=1) / count)
        suspect[r] |= ((missing.sum(axis=1) / np.maximum(length[r], 1) > rules.max_missing_ratio)
                       | (longest > rules.max_gap) | ~(std > 1e-8 * np.abs(mean)))
    for k in np.flatnonzero(suspect):
        _check_one(values[k, lo[k]:hi[k]], local[k], cfg, names[k])


def _interpolator(method: Interpolation, x: np.ndarray, y: np.ndarray):
    from scipy import interpolate

    if method == Interpolation.linear or len(x) < 4:
        return lambda q: np.interp(q, x, y)
    if method == Interpolation.cubic:
        return interpolate.CubicSpline(x, y, bc_type="not-a-knot", extrapolate=False)
    if method == Interpolation.pchip:
        return interpolate.PchipInterpolator(x, y, extrapolate=False)
    return interpolate.Akima1DInterpolator(x, y, extrapolate=False)


def fill_method(method: Interpolation, season: Optional[int]) -> Interpolation:
    """``auto`` is ``seasonal`` with a season, else ``pchip``; seasonal needs a season."""
    method = Interpolation(method)
    if method == Interpolation.auto:
        return Interpolation.seasonal if season else Interpolation.pchip
    if method == Interpolation.seasonal and not season:
        raise ConfigInvalid("preprocess.interpolation: seasonal needs a season; set data.season "
                            "(auto or an integer) or choose pchip")
    return method


PANEL_BLOCK = 250  # series per vectorised block: whole-panel temporaries at 10^7 points cost page faults


def fill_gaps(values: np.ndarray, bounds: np.ndarray, method: Interpolation, season: Optional[int] = None,
              spans: Optional[np.ndarray] = None) -> np.ndarray:
    """Fill NaN causally by split. ``values`` [n, T] on one grid (spline_lstm.data.panel),
    series k observed over ``spans[k] = (lo, hi)``, every series cut by the same split
    ``bounds``; or one series [T], a panel of one over its whole length (returned as [T]).
    Series k is filled as ``_fill_series`` fills ``values[k, lo:hi]`` with the bounds
    clipped to its span; outside its span it stays NaN.

    Series that share a span (usually all of them) share their clipped bounds, so they
    are filled together, ``PANEL_BLOCK`` at a time (``_fill_block``: the same arithmetic
    as ``_fill_series``, once per block instead of once per series and split). A span held
    by one series, a series whose span starts unobserved, and ``cubic`` / ``akima`` go
    through ``_fill_series`` one series at a time: so a one-series run is filled bit for
    bit as before panels existed."""
    method = fill_method(method, season)
    one = np.ndim(values) == 1
    values, spans, _ = as_panel(values, spans)
    bounds = np.asarray(bounds, dtype=np.int64)
    out = np.full(values.shape, np.nan)
    if spans.shape[0] == 0:
        return out
    vectorised = method in (Interpolation.linear, Interpolation.pchip, Interpolation.seasonal)
    unique, group = np.unique(spans, axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, (lo, hi) in enumerate(unique):
        if hi <= lo:
            continue
        rows = np.flatnonzero(group == g)
        local = np.clip(bounds - lo, 0, hi - lo)
        each = rows if not vectorised or rows.size == 1 else rows[np.isnan(values[rows, lo])]
        for k in each:
            out[k, lo:hi] = _fill_series(values[k, lo:hi], local, method, season)
        rows = np.setdiff1d(rows, each, assume_unique=True)
        for i in range(0, rows.size, PANEL_BLOCK):
            block = rows[i:i + PANEL_BLOCK]
            out[block, lo:hi] = _fill_block(values[block, lo:hi], local, method, season)
    return out[0] if one else out


def _fill_series(values: np.ndarray, bounds: np.ndarray, method: Interpolation,
                 season: Optional[int] = None) -> np.ndarray:
    """One series (observed from its first point), filled causally by split (see module doc): one spline per split, each fitted
    on all observed points up to that split's end (one banded solve, not one per gap).
    A gap at the very end of a split, with no later observed point in reach, holds
    the last observed value (seasonal: the last adjusted value plus the season).

    PCHIP is local (the slope at a knot depends on its two neighbours), so it is
    built only on the knots around the gaps: bit for bit the values of the spline
    through every observed point, at a fraction of the cost on long series.

    ``seasonal``: the seasonal effects of a classical decomposition of the reachable
    range (``statistics.seasonal_index`` on a linear pre-fill, from observed points
    only) are removed, the adjusted series is filled by PCHIP and the effects are
    added back. A reachable range shorter than two seasons is filled by PCHIP."""
    method = fill_method(method, season)
    filled = values.copy()
    observed = ~np.isnan(values)
    observed_idx = np.flatnonzero(observed)
    for k in range(3):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        gaps = np.flatnonzero(~observed[lo:hi]) + lo
        if gaps.size == 0:
            continue
        x = observed_idx[: np.searchsorted(observed_idx, hi)]
        if x.size == 0:
            raise InputInvalid("no observed point before a gap")
        # beyond the last observed point of the reachable range: hold it
        after = gaps > x[-1]
        effect, adjusted = None, values
        if method == Interpolation.seasonal and hi >= 2 * season and len(x) >= 4:

            prefill = np.interp(np.arange(hi, dtype=np.float64), x, values[x])
            effect = seasonal_index(prefill, season, observed[:hi])[np.arange(hi) % season]
            adjusted = values[:hi] - effect
        if method in (Interpolation.pchip, Interpolation.seasonal) and len(x) >= 4:
            est = np.empty(gaps.size, dtype=np.float64)
            inside = gaps[~after]
            if inside.size:
                est[~after] = _pchip_at(x, adjusted, inside)
        else:
            f = _interpolator(method, x.astype(np.float64), adjusted[x])
            est = np.asarray(f(gaps.astype(np.float64)), dtype=np.float64)
        est[after] = adjusted[x[-1]]
        filled[gaps] = est if effect is None else est + effect[gaps]
    return filled


def _fill_block(values: np.ndarray, bounds: np.ndarray, method: Interpolation,
                season: Optional[int]) -> np.ndarray:
    """``_fill_series`` of every row of ``values`` [n, t] (rows observed at column 0, one
    set of bounds), split by split: rows with fewer than 4 points reachable interpolate
    linearly, the others by PCHIP (``_pchip_rows``), seasonal ones on the series less
    their classical seasonal index (``_seasonal_rows`` on ``_linear_prefill_rows``)."""
    filled = values.copy()
    observed = ~np.isnan(values)
    spline_method = method in (Interpolation.pchip, Interpolation.seasonal)
    for k in range(3):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        rows = np.flatnonzero((~observed[:, lo:hi]).any(axis=1))
        if rows.size == 0:
            continue
        y, obs = values[rows, :hi], observed[rows, :hi]
        gr, gc = np.nonzero(~obs[:, lo:])
        gc = gc + lo
        last = hi - 1 - np.argmax(obs[:, ::-1], axis=1)
        spline = (obs.sum(axis=1) >= 4) & spline_method
        effect, adjusted = None, y
        if method == Interpolation.seasonal and hi >= 2 * season and spline.any():
            effect = np.zeros((rows.size, season))
            effect[spline] = _seasonal_rows(_linear_prefill_rows(y[spline], obs[spline]), season, obs[spline])
            adjusted = y - effect[:, np.arange(hi) % season]
        after = gc > last[gr]
        curve, line = ~after & spline[gr], ~after & ~spline[gr]
        est = np.empty(gr.size)
        est[after] = adjusted[gr[after], last[gr[after]]]
        if curve.any():
            est[curve] = _pchip_rows(adjusted, obs, gr[curve], gc[curve])
        if line.any():
            key = np.flatnonzero(obs)
            est[line] = np.interp((gr[line] * hi + gc[line]).astype(np.float64), key.astype(np.float64),
                                  adjusted.ravel()[key])
        if effect is not None:
            est += effect[gr, gc % season]
        filled[rows[gr], gc] = est
    return filled


def _linear_prefill_rows(y: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``np.interp`` through each row's observed points (rows start observed; points
    after a row's last observed one hold it), all rows in one call on flattened indices."""
    n, t = y.shape
    key = np.flatnonzero(observed)
    out = np.interp(np.arange(n * t, dtype=np.float64), key.astype(np.float64), y.ravel()[key]).reshape(n, t)
    last = t - 1 - np.argmax(observed[:, ::-1], axis=1)
    tail = np.arange(t) > last[:, None]
    if tail.any():
        out[tail] = np.repeat(y[np.arange(n), last], tail.sum(axis=1))
    return out


def _seasonal_rows(y: np.ndarray, m: int, observed: np.ndarray) -> np.ndarray:
    """``statistics.seasonal_index`` of each gap-free row (>= 2m points) [n, m]: the centred m-MA by
    cumulative sums of the row less its mean (no cancellation on large levels), phase
    means of y - MA over observed points by ``bincount``."""
    n, t = y.shape
    h = m // 2
    y = y - y.mean(axis=1, keepdims=True)
    c = np.concatenate([np.zeros((n, 1)), np.cumsum(y, axis=1)], axis=1)
    ma = np.full((n, t), np.nan)
    window = c[:, 2 * h + 1:] - c[:, : t - 2 * h]  # t >= 2m: the caller's rule
    if m % 2 == 0:
        window = window - 0.5 * y[:, : t - 2 * h] - 0.5 * y[:, 2 * h:]
    ma[:, h: t - h] = window / m
    detrended = y - ma
    ok = np.isfinite(detrended) & observed
    key = (np.arange(n)[:, None] * m + np.arange(t) % m)[ok]
    sums = np.bincount(key, weights=detrended[ok], minlength=n * m).reshape(n, m)
    counts = np.bincount(key, minlength=n * m).reshape(n, m)
    effect = np.divide(sums, counts, out=np.zeros((n, m)), where=counts > 0)
    seen = counts > 0
    mean = np.where(seen, effect, 0.0).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)
    return effect - mean[:, None]


def _pchip_edge(h0, h1, m0, m1):
    """scipy's PchipInterpolator end slope (its ``_edge_case``)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    flip = np.sign(d) != np.sign(m0)
    big = (np.sign(m0) != np.sign(m1)) & (np.abs(d) > 3.0 * np.abs(m0))
    return np.where(flip, 0.0, np.where(big, 3.0 * m0, d))


def _pchip_rows(y: np.ndarray, observed: np.ndarray, gap_rows: np.ndarray, gap_cols: np.ndarray) -> np.ndarray:
    """scipy's PchipInterpolator through each row's observed points, at gaps that lie
    between two observed points of a row with >= 4 of them: the Fritsch-Carlson slopes
    (scipy's formulas) at the two knots around each gap only (see ``_pchip_at`` for
    why that is the whole spline's value), then the cubic Hermite."""
    n, t = y.shape
    key = np.flatnonzero(observed)
    rows, cols = np.divmod(key, t)
    xk, yk = cols.astype(np.float64), y.ravel()[key]
    first = np.r_[True, rows[1:] != rows[:-1]]
    last = np.r_[rows[1:] != rows[:-1], True]
    j = np.searchsorted(key, gap_rows * t + gap_cols) - 1

    def h(q):
        return xk[q + 1] - xk[q]

    def m(q):
        return (yk[q + 1] - yk[q]) / (xk[q + 1] - xk[q])

    def slope(q):
        d = np.empty(q.size)
        f, l_, i = first[q], last[q], ~first[q] & ~last[q]
        qi = q[i]
        m0, m1, h0, h1 = m(qi - 1), m(qi), h(qi - 1), h(qi)
        flat = (np.sign(m0) != np.sign(m1)) | (m0 == 0) | (m1 == 0)
        w1, w2 = 2 * h1 + h0, h1 + 2 * h0
        with np.errstate(divide="ignore", invalid="ignore"):
            d[i] = np.where(flat, 0.0, 1.0 / ((w1 / m0 + w2 / m1) / (w1 + w2)))
        qf, ql = q[f], q[l_]
        d[f] = _pchip_edge(h(qf), h(qf + 1), m(qf), m(qf + 1))
        d[l_] = _pchip_edge(h(ql - 1), h(ql - 2), m(ql - 1), m(ql - 2))
        return d

    x0, hh, d0, d1 = xk[j], h(j), slope(j), slope(j + 1)
    s = (gap_cols - x0) / hh
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * yk[j] + (s3 - 2 * s2 + s) * hh * d0 + (-2 * s3 + 3 * s2) * yk[j + 1]
            + (s3 - s2) * hh * d1)


def _pchip_at(x: np.ndarray, values: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """``PchipInterpolator(x, values[x])(gaps)`` for observed indices ``x`` and gap
    indices with x[0] < gap < x[-1].

    The value in knot interval [x_j, x_j+1] depends only on knots j-1 .. j+2 (the
    slopes at j and j+1 use one neighbour each side; the end slopes use the first /
    last three knots). So the spline is built on those knots only: every interval
    that is evaluated is a true interval with its true neighbours, and scipy
    computes the same numbers element-wise, hence identical results. Intervals
    between non-adjacent kept knots are never evaluated."""
    from scipy.interpolate import PchipInterpolator

    m = len(x)
    j = np.searchsorted(x, gaps) - 1  # x[j] < gap < x[j + 1]
    keep = np.zeros(m, dtype=bool)
    for d in (-1, 0, 1, 2):
        keep[np.clip(j + d, 0, m - 1)] = True
    knots = x[keep]
    f = PchipInterpolator(knots.astype(np.float64), values[knots], extrapolate=False)
    return np.asarray(f(gaps.astype(np.float64)), dtype=np.float64)


def smooth_train(filled: np.ndarray, bounds: np.ndarray, lam: Optional[float]) -> tuple:
    """Penalised smoothing spline on the training split only; lam=None picks it by GCV.
    Returns (series, lam used)."""
    from scipy.interpolate import make_smoothing_spline

    out = filled.copy()
    hi = int(bounds[1])
    x = np.arange(hi, dtype=np.float64)
    spline = make_smoothing_spline(x, filled[:hi], lam=lam)
    out[:hi] = spline(x)
    lam_used = lam
    if lam_used is None:
        lam_used = getattr(spline, "lam", None)
    return out, (None if lam_used is None else float(lam_used))


@dataclass
class Scaler:
    """y_scaled = (y - center) / scale, fitted on training rows only (NaN ignored)."""

    kind: str
    center: float
    scale: float

    @classmethod
    def fit(cls, kind: Scaling, train: np.ndarray) -> "Scaler":
        kind = Scaling(kind)
        train = train[np.isfinite(train)]
        if kind == Scaling.standard:
            center, scale = float(np.mean(train)), float(np.std(train))
        elif kind == Scaling.minmax:
            center, scale = float(np.min(train)), float(np.max(train) - np.min(train))
        elif kind == Scaling.robust:
            q1, med, q3 = np.percentile(train, [25, 50, 75])
            center, scale = float(med), float(q3 - q1)
        else:
            center, scale = 0.0, 1.0
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0
        return cls(kind.value, center, scale)

    def transform(self, y: np.ndarray) -> np.ndarray:
        return (y - self.center) / self.scale

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return y * self.scale + self.center

    def to_dict(self) -> dict:
        return {"kind": self.kind, "center": self.center, "scale": self.scale}


def fit_scalers_panel(kind: Scaling, train: np.ndarray) -> tuple:
    """(centers [n], scales [n]): ``Scaler.fit(kind, train[k])`` for every row k at once
    (non-finite values ignored; a scale <= 0 or non-finite is 1.0). A row with no finite
    value gets a NaN center (``Scaler.fit`` would warn or raise there)."""
    import warnings

    kind = Scaling(kind)
    x = np.asarray(train, dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    n = x.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, as documented
        if kind == Scaling.standard:
            center, scale = np.nanmean(x, axis=1), np.nanstd(x, axis=1)
        elif kind == Scaling.minmax:
            center = np.nanmin(x, axis=1) if x.shape[1] else np.full(n, np.nan)
            scale = (np.nanmax(x, axis=1) if x.shape[1] else np.full(n, np.nan)) - center
        elif kind == Scaling.robust:
            q1, center, q3 = _percentile_rows(x, (0.25, 0.5, 0.75))
            scale = q3 - q1
        else:
            center, scale = np.zeros(n), np.ones(n)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return np.asarray(center, dtype=np.float64), scale


def _percentile_rows(x: np.ndarray, quantiles: Sequence[float]) -> list:
    """``np.percentile`` (linear) of each row's non-NaN values, by one sort of the
    panel: ``np.nanpercentile`` along an axis with NaN loops over the rows in Python."""
    ordered = np.sort(x, axis=1)  # NaN last
    count = (~np.isnan(x)).sum(axis=1)
    top = np.maximum(count - 1, 0)
    out = []
    for q in quantiles:
        virtual = top * q
        below = np.floor(virtual).astype(np.int64)
        gamma = virtual - below
        a = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0] if x.shape[1] else np.full(len(x), np.nan)
        b = (np.take_along_axis(ordered, np.minimum(below + 1, top)[:, None], axis=1)[:, 0] if x.shape[1]
             else a)
        diff = b - a
        value = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        out.append(np.where(count > 0, value, np.nan))
    return out


def difference(series: np.ndarray, lag: int) -> np.ndarray:
    """y[t] - y[t-lag] along the last axis (NaN for the first ``lag`` points; a panel
    [series, t] row by row); lag 0 returns the series."""
    if lag == 0:
        return series.copy()
    out = np.full_like(series, np.nan)
    out[..., lag:] = series[..., lag:] - series[..., :-lag]
    return out


def undifference(levels: np.ndarray, starts: np.ndarray, deltas: np.ndarray, lag: int) -> np.ndarray:
    """Level forecasts from predicted differences: step j adds its delta to the known
    level ``lag`` steps back, or to the forecast of step j-lag when that lies ahead."""
    if lag == 0:
        return deltas
    out = np.empty_like(deltas, dtype=np.float64)
    for j in range(deltas.shape[1]):
        base = out[:, j - lag] if j >= lag else levels[starts + j - lag]
        out[:, j] = base + deltas[:, j]
    return out


def window_starts(bounds: np.ndarray, split: int, lookback: int, horizon: int, offset: int = 0,
                  spans: Optional[np.ndarray] = None, length: Optional[int] = None) -> np.ndarray:
    """Indices t of the first target of each window of a split: targets [t, t+horizon)
    stay inside the split; inputs [t-lookback, t) may reach into the preceding split,
    except for training windows, whose inputs stay in the training split. ``offset``
    skips the first points (undefined after differencing). Many series (``spans``, on a
    grid of ``length`` points, flattened row by row): flat starts ``k * length + t`` of
    every series' windows on its own span, so no window reaches outside its series."""
    if spans is None:  # one series: a panel of one over the splits
        spans, length = np.array([[0, int(bounds[-1])]], dtype=np.int64), int(bounds[-1])
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    lo, hi = spans[:, 0], spans[:, 1]
    first = np.maximum(np.clip(bounds[split], lo, hi), lo + lookback + offset)
    last = np.clip(bounds[split + 1], lo, hi) - horizon
    count = np.maximum(last - first + 1, 0)
    if not count.sum():
        return np.empty(0, dtype=np.int64)
    starts = np.arange(count.sum(), dtype=np.int64)  # the only array as long as the windows
    shift = first + np.arange(len(lo)) * length - (np.cumsum(count) - count)
    starts += shift[0] if len(shift) == 1 else np.repeat(shift, count)
    return starts


@dataclass
class WindowSource:
    """Windows described by (series, start indices) instead of an N x lookback array:
    O(N) memory whatever the lookback. Batches are gathered on demand.

    With covariates (spline_lstm.preprocessing.covariates) the encoder's window has the target and
    every covariate channel, and the last ``known`` channels (future-known) are also
    gathered over the horizon: the model's ``future`` input."""

    series: np.ndarray  # float32, 1-D
    starts: np.ndarray  # int64 first-target indices
    lookback: int
    horizon: int
    covariates: Optional[np.ndarray] = None  # float32 [len(series), channels - 1]
    known: int = 0  # future-known channels, the last columns of ``covariates``

    def __len__(self) -> int:
        return int(self.starts.size)

    @property
    def nbytes(self) -> int:
        extra = 0 if self.covariates is None else self.covariates.nbytes
        return int(self.series.nbytes + self.starts.nbytes + extra)

    def gather(self, starts: np.ndarray) -> tuple:
        """(X[batch, lookback, channels], Y[batch, horizon]) for some windows (copies only those)."""
        x_idx = starts[:, None] + np.arange(-self.lookback, 0)
        y_idx = starts[:, None] + np.arange(self.horizon)
        x = self.series[x_idx][..., None]
        if self.covariates is not None:
            x = np.concatenate([x, self.covariates[x_idx]], axis=-1)
        return x, self.series[y_idx]

    def gather_future(self, starts: np.ndarray) -> np.ndarray:
        """F[batch, horizon, known]: the future-known channels at the forecast steps."""
        y_idx = starts[:, None] + np.arange(self.horizon)
        return self.covariates[y_idx][..., self.covariates.shape[1] - self.known:]


def target_matrix(values: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """The raw target values of each window (NaN where not observed)."""
    return values[starts[:, None] + np.arange(horizon)]


def preprocess_summary(values: np.ndarray, filled_mask: np.ndarray, bounds: np.ndarray,
                       trimmed: Sequence[int], lam: Optional[float]) -> dict:
    gap, _ = longest_gap(values)
    return {
        "points": int(len(values)),
        "missing": int(np.isnan(values).sum()),
        "interpolated": int(filled_mask.sum()),
        "longest_gap": gap,
        "trimmed_leading": int(trimmed[0]),
        "trimmed_trailing": int(trimmed[1]),
        "split_bounds": [int(b) for b in bounds],
        "smoothing_lambda": lam,
    }
