"""N related series with known structure, for tests and benchmarks of many-series
and covariate code: pure NumPy, reproducible by seed, nothing read or written.

Series i at step t (``related_series``)::

    y[i, t] = level[i] + trend[i] * t + amplitude[i] * season[t % period]
              + past[i, t] @ past_effects + future[i, t] @ future_effects
              + static_effect * static[i] + noise * e[i, t]

- ``season`` is one profile shared by every series (mean 0, unit amplitude), so a
  global model has something common to learn, and a test can check that a
  decomposition recovers it from any one series;
- ``past`` covariates are smooth AR(1) paths, observed up to the forecast origin
  (the loads of ETTh1); ``future`` covariates are known ahead (a promotion
  calendar: sparse 0/1 days); ``static`` is one number per series (a category code
  in 0..categories-1) with its own effect on the level;
- gaps: isolated missing points at ``gap_ratio`` plus ``gap_stretches`` short
  runs per series, never at a series' first or last point (so no trimming changes
  a series' length); the target only, covariates are complete.

``truth`` keeps every value before the gaps, so a filled series can be scored
against what was deleted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Panel:
    """``n`` series of ``t`` steps and what generated them (arrays are [n, t, ...])."""

    values: np.ndarray  # [n, t] float64, NaN = gap
    truth: np.ndarray  # [n, t] the values before the gaps were punched
    season: np.ndarray  # [period] the shared seasonal profile (mean 0, max |.| 1)
    amplitude: np.ndarray  # [n] each series' seasonal amplitude
    level: np.ndarray  # [n]
    trend: np.ndarray  # [n] per step
    past: np.ndarray  # [n, t, k_past] past-observed covariates
    past_effects: np.ndarray  # [k_past]
    future: np.ndarray  # [n, t, k_future] future-known covariates (0/1 events)
    future_effects: np.ndarray  # [k_future]
    static: np.ndarray  # [n] int category of each series
    static_effect: float  # level shift per category step
    noise: float

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.values)

    @property
    def period(self) -> int:
        return int(self.season.size)


def seasonal_profile(period: int, rng: np.random.Generator) -> np.ndarray:
    """Two harmonics with random phases, centred and scaled to max |.| = 1."""
    phase = 2 * np.pi * np.arange(period) / period
    prof = np.sin(phase + rng.uniform(0, 2 * np.pi)) + 0.5 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi))
    prof -= prof.mean()
    return prof / np.abs(prof).max()


def gap_mask(n: int, t: int, ratio: float, stretches: int, rng: np.random.Generator,
             max_stretch: int = 6) -> np.ndarray:
    """[n, t] True where a point is missing: isolated points at ``ratio`` (counting the
    stretches), plus ``stretches`` runs of 2..max_stretch steps per series; the first
    and last point of every series stay observed."""
    missing = np.zeros((n, t), dtype=bool)
    if stretches and t > max_stretch + 2:
        lengths = rng.integers(2, max_stretch + 1, size=(n, stretches))
        starts = rng.integers(1, t - max_stretch - 1, size=(n, stretches))
        offsets = np.arange(max_stretch)
        cols = starts[..., None] + offsets
        rows = np.broadcast_to(np.arange(n)[:, None, None], cols.shape)
        keep = offsets < lengths[..., None]
        missing[rows[keep], cols[keep]] = True
    # isolated points top the share up to the requested ratio
    extra = max(0.0, ratio - missing[:, 1:-1].mean()) if t > 2 else 0.0
    if extra > 0:
        free = 1.0 - missing[:, 1:-1].mean()
        missing |= rng.random((n, t)) < extra / max(free, 1e-12)
    missing[:, 0] = missing[:, -1] = False
    return missing


def related_series(n_series: int, n_points: int, period: int = 24, seed: int = 0, gap_ratio: float = 0.05,
                   gap_stretches: int = 1, noise: float = 0.2, k_past: int = 2, k_future: int = 1,
                   categories: int = 3) -> Panel:
    """The panel described in the module doc. Costs O(n_series * n_points)."""
    if n_series < 1 or n_points < 2 or period < 2:
        raise ValueError("need n_series >= 1, n_points >= 2 and period >= 2")
    if not 0 <= gap_ratio < 1:
        raise ValueError(f"gap_ratio must be in [0, 1), got {gap_ratio}")
    rng = np.random.default_rng(seed)
    n, t = n_series, n_points
    season = seasonal_profile(period, rng)
    level = rng.uniform(5.0, 15.0, n)
    trend = rng.normal(0.0, 1.0 / n_points, n)
    amplitude = rng.uniform(1.0, 3.0, n)
    steps = np.arange(t)

    past = np.empty((n, t, k_past))
    shocks = rng.standard_normal((n, t, k_past))
    past[:, 0] = shocks[:, 0]
    for j in range(1, t):  # AR(1), phi 0.9, unit stationary variance: O(t) steps over all series at once
        past[:, j] = 0.9 * past[:, j - 1] + np.sqrt(1 - 0.81) * shocks[:, j]
    past_effects = rng.uniform(0.5, 1.5, k_past) * rng.choice([-1.0, 1.0], k_past)
    future = (rng.random((n, t, k_future)) < 0.05).astype(np.float64)
    future_effects = rng.uniform(1.0, 2.0, k_future)
    static = rng.integers(0, categories, n)
    static_effect = 1.0

    truth = (level[:, None] + trend[:, None] * steps + amplitude[:, None] * season[steps % period]
             + past @ past_effects + future @ future_effects + static_effect * static[:, None]
             + noise * rng.standard_normal((n, t)))
    values = np.where(gap_mask(n, t, gap_ratio, gap_stretches, rng), np.nan, truth)
    return Panel(values, truth, season, amplitude, level, trend, past, past_effects, future, future_effects,
                 static, static_effect, noise)
