"""Classical yardsticks: ETS (Holt-Winters, damped trend) and the Theta method, from
statsmodels, scored beside the naive baselines on exactly the model's windows.

Each is fitted once, on the training split of the gap-filled series (the last
``MAX_FIT_POINTS`` training points at most: the cost stays bounded on long hourly
series). It is never refitted per origin: the fitted smoothing recursions run
forward over the filled series, so the state at origin ``t`` has seen exactly the
points a model window starting at ``t`` sees as inputs (everything before ``t``),
and the forecast of each horizon step follows from that state in O(1). One pass
is O(series length), whatever the number of origins (ETTh1: ~2,900 test origins).

The recursions are statsmodels' own (``holtwinters.ExponentialSmoothing._predict``
and ``ThetaModelResults.forecast_components``) written forward in time; a test
checks them against statsmodels' fitted values and forecasts at the training end.
A fit that fails (too short a series, optimiser error) makes that yardstick "not
available" with a warning; it never fails the run.

statsmodels is imported here only, and this module only on the training path.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

log = logging.getLogger("spline_lstm")

MAX_FIT_POINTS = 3000  # training points a yardstick is fitted on (the most recent ones)
NAMES = ("ets", "theta")


@dataclass
class Yardstick:
    """One yardstick's forecasts [windows, horizon] (None when not available) and what it was."""

    name: str
    forecasts: Optional[np.ndarray]
    detail: str  # the fitted specification, or why it is not available
    fit_s: float

    @property
    def available(self) -> bool:
        return self.forecasts is not None

    def summary(self) -> dict:
        return {"status": "ok" if self.available else "not available", "detail": self.detail,
                "fit_s": round(self.fit_s, 4)}


def forecast_all(filled: np.ndarray, train_end: int, starts: np.ndarray, horizon: int,
                 season: Optional[int], max_fit_points: int = MAX_FIT_POINTS) -> Dict[str, Yardstick]:
    """ETS and Theta forecasts for windows whose first targets are ``starts`` (all
    after ``train_end``), fitted on ``filled[:train_end]`` (its last ``max_fit_points``)."""
    import statsmodels.tsa.forecasting.theta  # noqa: F401 - imported before the filter below: on import
    import statsmodels.tsa.holtwinters  # noqa: F401 - statsmodels puts an "always" filter ahead of it

    fit_lo = max(0, int(train_end) - int(max_fit_points))
    y = np.asarray(filled, dtype=np.float64)
    out = {}
    for name, fn in (("ets", _ets), ("theta", _theta)):
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter; the score tells
                fc, detail = fn(y, fit_lo, int(train_end), np.asarray(starts, dtype=np.int64), horizon, season)
            if not np.all(np.isfinite(fc)):
                raise ValueError("non-finite forecasts")
            out[name] = Yardstick(name, fc, detail, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a yardstick never fails the run
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            log.warning("yardstick %s not available: %s", name, why)
            out[name] = Yardstick(name, None, why, time.perf_counter() - t0)
    return out


def _usable_season(season: Optional[int], n: int) -> Optional[int]:
    """A season the fit can estimate: > 1 and at least two full cycles in the fit window."""
    return season if season and season > 1 and n >= 2 * season + 2 else None


# --- ETS ----------------------------------------------------------------------------------------

def _ets(y, fit_lo, train_end, starts, horizon, season):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    train = y[fit_lo:train_end]
    m = _usable_season(season, len(train))
    kinds = ["add"] + (["mul"] if m and np.all(train > 0) else []) if m else [None]
    best = None
    for kind in kinds:
        res = ExponentialSmoothing(train, trend="add", damped_trend=True, seasonal=kind,
                                   seasonal_periods=m, initialization_method="estimated").fit()
        if best is None or res.aicc < best[1].aicc:
            best = (kind, res)
    kind, res = best
    fc = ets_forward(y, fit_lo, starts, horizon, res.params, kind, m)
    detail = f"ETS(A,Ad,{ {'add': 'A', 'mul': 'M', None: 'N'}[kind] }{f', m={m}' if m else ''})"
    return fc, detail + f" on {len(train)} training points, aicc {res.aicc:.4g}"


def ets_states(y: np.ndarray, params: dict, kind: Optional[str], m: Optional[int]):
    """statsmodels' damped-trend Holt-Winters recursion over ``y``: level, trend and the
    season array ``s`` (s[t] is the seasonal term used for y[t]), index 0 = initial state."""
    alpha, beta, phi = params["smoothing_level"], params["smoothing_trend"], params["damping_trend"]
    gamma = params["smoothing_seasonal"] if kind else 0.0
    n = len(y)
    lvl, b = np.empty(n + 1), np.empty(n + 1)
    lvl[0], b[0] = params["initial_level"], params["initial_trend"]
    mm = m or 1
    s = np.zeros(n + mm)
    if kind:
        s[:mm] = params["initial_seasons"]
    for i in range(1, n + 1):
        prev = lvl[i - 1] + phi * b[i - 1]
        if kind == "mul":
            lvl[i] = alpha * y[i - 1] / s[i - 1] + (1 - alpha) * prev
            s[i + mm - 1] = gamma * y[i - 1] / prev + (1 - gamma) * s[i - 1]
        elif kind == "add":
            lvl[i] = alpha * (y[i - 1] - s[i - 1]) + (1 - alpha) * prev
            s[i + mm - 1] = gamma * (y[i - 1] - prev) + (1 - gamma) * s[i - 1]
        else:
            lvl[i] = alpha * y[i - 1] + (1 - alpha) * prev
        b[i] = beta * (lvl[i] - lvl[i - 1]) + (1 - beta) * phi * b[i - 1]
    return lvl, b, s


def ets_forward(y: np.ndarray, fit_lo: int, starts: np.ndarray, horizon: int, params: dict,
                kind: Optional[str], m: Optional[int]) -> np.ndarray:
    """h-step forecasts from the state after y[fit_lo:start] for each start."""
    end = int(starts.max()) if starts.size else fit_lo
    lvl, b, s = ets_states(y[fit_lo:end], params, kind, m)
    phi = params["damping_trend"]
    steps = np.arange(horizon)
    damp = np.cumsum(phi ** np.arange(1, horizon + 1))  # phi + ... + phi^h
    r = starts - fit_lo  # observations seen
    trend = lvl[r][:, None] + b[r][:, None] * damp[None, :]
    if not kind:
        return trend
    season = s[r[:, None] + steps[None, :] % (m or 1)]  # the latest estimate of each step's phase
    return trend * season if kind == "mul" else trend + season


# --- Theta --------------------------------------------------------------------------------------

def _theta(y, fit_lo, train_end, starts, horizon, season):
    from statsmodels.tsa.forecasting.theta import ThetaModel

    train = y[fit_lo:train_end]
    m = _usable_season(season, len(train))
    method = "multiplicative" if np.all(train > 0) else "additive"
    model = ThetaModel(train, period=m or 1, deseasonalize=bool(m), method=method)
    res = model.fit()
    b0, alpha = float(res.params["b0"]), float(res.params["alpha"])
    seasonal = np.asarray(getattr(res, "_seasonal", np.empty(0)), dtype=np.float64)
    seasonal = seasonal if (m and seasonal.size == m) else None
    mul = method == "multiplicative"
    fc = theta_forward(y, fit_lo, starts, horizon, b0, alpha, seasonal, mul)
    spec = f"deseasonalised ({'multiplicative' if mul else 'additive'}, m={m})" if seasonal is not None \
        else "not deseasonalised"
    return fc, f"Theta(2) {spec}, alpha {alpha:.3g}, drift {b0:.4g} on {len(train)} training points"


def theta_forward(y: np.ndarray, fit_lo: int, starts: np.ndarray, horizon: int, b0: float, alpha: float,
                  seasonal: Optional[np.ndarray], mul: bool) -> np.ndarray:
    """statsmodels' Theta forecast (theta=2) from the state after y[fit_lo:start] for each start:
    SES level of the deseasonalised series + half the drift term, reseasonalised."""
    from scipy.signal import lfilter

    end = int(starts.max()) if starts.size else fit_lo
    x = y[fit_lo:end]
    idx = np.arange(len(x) + horizon)
    if seasonal is not None:
        phase = seasonal[idx % len(seasonal)]
        x = x / phase[: len(x)] if mul else x - phase[: len(x)]
    level = np.concatenate(([x[0]], lfilter([alpha], [1.0, -(1.0 - alpha)], x, zi=[(1.0 - alpha) * x[0]])[0]))
    r = starts - fit_lo
    steps = np.arange(horizon, dtype=np.float64)
    h = steps[None, :] + (1.0 / alpha - (1.0 - alpha) ** r[:, None] / alpha if alpha > 0 else 0.0)
    fc = level[r][:, None] + 0.5 * b0 * h
    if seasonal is not None:
        phase = seasonal[(r[:, None] + steps[None, :].astype(np.int64)) % len(seasonal)]
        fc = fc * phase if mul else fc + phase
    return fc
