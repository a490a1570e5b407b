"""Statistics helpers at the bottom of preprocessing: classical decomposition and stationarity, numpy only."""
from __future__ import annotations

from typing import Optional

import numpy as np


def _centered_ma(y: np.ndarray, m: int) -> np.ndarray:
    """The m-point centred moving average (2 x m for even m); NaN where it is undefined."""
    w = np.full(m + 1, 1.0 / m) if m % 2 == 0 else np.full(m, 1.0 / m)
    if m % 2 == 0:
        w[0] = w[-1] = 0.5 / m
    out = np.full(len(y), np.nan)
    h = len(w) // 2
    if len(y) >= len(w):
        out[h:len(y) - h] = np.convolve(y, w, mode="valid")
    return out


def seasonal_index(y: np.ndarray, m: int, observed: Optional[np.ndarray] = None) -> np.ndarray:
    """The m seasonal effects (mean zero) of a gap-free series y, phase t % m: the mean
    of y - trend over the points where the trend is defined (and, when given,
    ``observed`` is true, so invented points do not shape the season)."""
    detrended = y - _centered_ma(y, m)
    ok = np.isfinite(detrended) if observed is None else np.isfinite(detrended) & observed
    phase = np.arange(len(y)) % m
    sums = np.bincount(phase[ok], weights=detrended[ok], minlength=m)
    counts = np.bincount(phase[ok], minlength=m)
    effect = np.divide(sums, counts, out=np.zeros(m), where=counts > 0)
    return effect - effect[counts > 0].mean() if (counts > 0).any() else effect


def seasonal_strength(y: np.ndarray, m: int) -> float:
    """F_s = max(0, 1 - var(R) / var(S + R)) of a classical decomposition (0: none, 1: pure)."""
    if len(y) < 2 * m + 1:
        return 0.0
    detrended = y - _centered_ma(y, m)
    s = seasonal_index(y, m)[np.arange(len(y)) % m]
    ok = np.isfinite(detrended)
    total = np.var(detrended[ok])
    if total <= 0:
        return 0.0
    return float(max(0.0, 1.0 - np.var(detrended[ok] - s[ok]) / total))


def kpss_level(y: np.ndarray) -> float:
    """The KPSS statistic for level stationarity, Bartlett long-run variance with
    trunc(3 sqrt(n) / 13) lags (tseries::kpss.test's short lag)."""
    n = len(y)
    e = y - y.mean()
    s = np.cumsum(e)
    lags = int(3 * np.sqrt(n) / 13)
    lrv = e @ e / n
    for k in range(1, lags + 1):
        lrv += 2 * (1 - k / (lags + 1)) * (e[k:] @ e[:-k]) / n
    return float(s @ s / (n * n * lrv)) if lrv > 0 else float("inf")
