"""Season-aware defaults, resolved once per run from the training/validation data
(``resolve``), and the classical decomposition the seasonal gap fill uses.
numpy (pandas only to read a frequency); nothing here reads the test split.

- season: ``data.season=auto`` takes it from the frequency (hourly 24, daily 7,
  weekly 52, monthly 12, quarterly 4; other frequencies have none).
- interpolation: ``auto`` is ``seasonal`` when there is a season, else ``pchip``.
- difference: ``auto`` compares the forecast each candidate lag (none, first,
  seasonal) makes when the network outputs zero, i.e. the training mean, naive with
  drift and seasonal naive with drift (standard scaling centres the differences on their
  training mean), on the validation split, and keeps the best: the network then learns
  a correction to the strongest trivial forecast instead of starting far below it.
  The seasonal strength (Wang, Smith & Hyndman 2006; >= 0.64 is seasonal in R's
  ``nsdiffs``) and the KPSS level-stationarity statistic (``ndiffs``) of the training
  split are recorded beside it: the classical view of the same question.
- lookback: ``auto`` fits a ridge linear autoregression on the training windows of
  the modelled (differenced, standardised) series for each candidate (1-4 seasons,
  or 6..48 steps without one) and keeps the shortest whose validation rmse is within
  5% of the best: a cheap stand-in for the network that says how much history helps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from spline_lstm.core.config import AUTO, AppConfig, Interpolation
from spline_lstm.core.errors import InputInvalid
from spline_lstm.preprocessing import transforms
from spline_lstm.preprocessing.statistics import kpss_level, seasonal_strength

LOOKBACK_TOLERANCE = 0.05  # shortest candidate within 5% of the best validation rmse
MAX_FIT_POINTS = 20_000  # the choices read at most the last 20k points of a split (cost bound)
RIDGE = 1e-3


def infer_season(freq: Optional[str]) -> Optional[int]:
    """The usual seasonal period of a pandas frequency, or None: a step of one hour
    (24 a day), one day (7 a week), one week (52 a year, also ``7D``), one month (12)
    or one quarter (4)."""
    if not freq:
        return None
    import pandas as pd
    from pandas.tseries.frequencies import to_offset

    try:
        offset = to_offset(freq)
    except (ValueError, TypeError):
        return None
    if offset is None:
        return None
    o = pd.offsets
    if offset.n == 1:
        for kind, period in ((o.Week, 52), (o.MonthBegin, 12), (o.MonthEnd, 12), (o.QuarterBegin, 4),
                             (o.QuarterEnd, 4)):
            if isinstance(offset, kind):
                return period
    try:
        step = pd.Timedelta(offset)
    except (ValueError, TypeError):  # calendar offsets (months, business days) have no fixed length
        return None
    return {pd.Timedelta(hours=1): 24, pd.Timedelta(days=1): 7, pd.Timedelta(weeks=1): 52}.get(step)


def season_for(setting: Any, freq: Optional[str]) -> Optional[int]:
    """A ``data.season`` setting (validated: "auto", an int or None) as a period or None."""
    return infer_season(freq) if setting == "auto" else setting


# --- classical decomposition --------------------------------------------------------------

# --- the choices ------------------------------------------------------------------------------

def choose_difference(filled: np.ndarray, bounds: np.ndarray, season: Optional[int],
                      horizon: int = 1) -> Tuple[int, str]:
    """(lag, why) from the gap-filled training and validation splits (see module doc):
    the lag whose zero-output forecast scores the lowest validation rmse."""

    tr, va = int(bounds[1]), int(bounds[2])
    if np.std(filled[:tr]) == 0:
        return 0, "the training split is constant"
    starts = np.arange(tr, va - horizon + 1)[-MAX_FIT_POINTS:]
    if starts.size == 0:
        return 0, "no validation window to compare differencing on"
    actual = filled[starts[:, None] + np.arange(horizon)]
    names = {0: "training mean", 1: "naive with drift"}
    lags = [0, 1] + ([season] if season and season > 1 and tr >= 2 * season else [])
    scores: Dict[int, float] = {}
    for lag in lags:
        drift = float(np.mean(transforms.difference(filled[:tr], lag)[lag:]))
        pred = transforms.undifference(filled, starts, np.full(actual.shape, drift), lag)
        scores[lag] = float(np.sqrt(np.mean((pred - actual) ** 2)))
    pick = min(lags, key=lambda lag: scores[lag])
    table = ", ".join(f"{names.get(lag, 'seasonal naive with drift')} {scores[lag]:.4g}" for lag in lags)
    train = filled[:tr][-MAX_FIT_POINTS:]
    context = f"KPSS {kpss_level(train):.3g} (level stationary at 5% if <= 0.463)"
    if season and len(train) >= 2 * season + 1:
        context = f"seasonal strength {seasonal_strength(train, season):.2f} (seasonal if >= 0.64), {context}"
    return pick, f"its zero-output forecast had the lowest validation rmse ({table}); training split: {context}"


def lookback_candidates(season: Optional[int], room: int) -> List[int]:
    """1-4 seasons (or 6, 12, 24, 48 steps), those that leave at least half of the
    training split (``room`` = its length - difference - horizon) as windows. When none
    does, the shortest: the series is too short for a model with a useful history, and
    the input rules say so (``transforms.check_series``) instead of a lookback shrunk to fit."""
    base = [season * k for k in (1, 2, 3, 4)] if season else [6, 12, 24, 48]
    return [c for c in base if c <= room // 2] or base[:1]


def _ar_windows(series: np.ndarray, starts: np.ndarray, lookback: int, horizon: int) -> tuple:
    x = series[starts[:, None] + np.arange(-lookback, 0)]
    y = series[starts[:, None] + np.arange(horizon)]
    return x, y


def choose_lookback(filled: np.ndarray, bounds: np.ndarray, lag: int, horizon: int,
                    season: Optional[int]) -> Tuple[int, str]:
    """(lookback, why): ridge autoregression per candidate, scored on validation windows."""

    tr = int(bounds[1])
    modelled = transforms.difference(filled[: int(bounds[2])], lag)
    train = modelled[lag:tr]
    scale = float(np.std(train)) or 1.0
    series = (modelled - float(np.mean(train))) / scale
    candidates = lookback_candidates(season, tr - lag - horizon)
    scores: Dict[int, float] = {}
    for lb in candidates:
        fit = transforms.window_starts(bounds, 0, lb, horizon, lag)[-MAX_FIT_POINTS:]
        val = transforms.window_starts(bounds, 1, lb, horizon, lag)[-MAX_FIT_POINTS:]
        if fit.size < 2 or val.size == 0:
            continue
        x, y = _ar_windows(series, fit, lb, horizon)
        x1 = np.hstack([x, np.ones((len(x), 1))])
        gram = x1.T @ x1 + RIDGE * len(x) * np.eye(lb + 1)
        coef = np.linalg.solve(gram, x1.T @ y)
        xv, yv = _ar_windows(series, val, lb, horizon)
        pred = np.hstack([xv, np.ones((len(xv), 1))]) @ coef
        scores[lb] = float(np.sqrt(np.mean((pred - yv) ** 2)))
    if not scores:
        return candidates[0], "too few training/validation windows to compare lookbacks"
    best = min(scores.values())
    pick = min(lb for lb, s in scores.items() if s <= best * (1 + LOOKBACK_TOLERANCE))
    table = ", ".join(f"{lb}: {s:.3g}" for lb, s in scores.items())
    return pick, (f"shortest lookback within {LOOKBACK_TOLERANCE:.0%} of the best validation rmse of a ridge "
                  f"autoregression on the modelled series (standardised; {table})")


@dataclass
class Choices:
    """What ``resolve`` decided, and why: recorded in the preprocessor payload, meta.json,
    metadata.json and the report."""

    season: Optional[int]
    interpolation: str
    difference: int
    lookback: int
    requested: Dict[str, Any] = field(default_factory=dict)
    why: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"season": self.season, "interpolation": self.interpolation, "difference": self.difference,
                "lookback": self.lookback, "requested": dict(self.requested), "why": dict(self.why)}

    def applied_to(self, app: AppConfig) -> AppConfig:
        """A copy of ``app`` holding the resolved values (plain integers and a fill method),
        for every later stage; the validated config itself is never changed."""
        data = dataclasses.replace(app.data, season=self.season)
        pre = dataclasses.replace(app.preprocess, interpolation=Interpolation(self.interpolation),
                                  difference=self.difference, lookback=self.lookback)
        return dataclasses.replace(app, data=data, preprocess=pre)

    def lines(self) -> List[str]:
        """One report line per setting: ``difference: seasonal (12) because ...``."""
        if self.difference in (0, 1):
            diff = f"{('none', 'first')[self.difference]} ({self.difference})"
        else:
            diff = f"{'seasonal' if self.difference == self.season else 'lag'} ({self.difference})"
        shown = {"season": str(self.season) if self.season else "none", "interpolation": self.interpolation,
                 "difference": diff, "lookback": str(self.lookback)}
        return [f"{key}: {value} because {self.why[key]}" if key in self.why
                else f"{key}: {value} (as configured: {self.requested.get(key)})" for key, value in shown.items()]


def resolve(app: AppConfig, values: np.ndarray, bounds: np.ndarray, freq: str) -> Choices:
    """Resolve ``data.season``, ``preprocess.interpolation``, ``difference`` and
    ``lookback`` (auto / words) to the values the run uses, from the training and
    validation splits only (``Choices.applied_to`` gives the config every later stage reads)."""

    d, p = app.data, app.preprocess
    requested = {"season": d.season, "interpolation": Interpolation(p.interpolation).value,
                 "difference": p.difference, "lookback": p.lookback}
    why: Dict[str, str] = {}
    season = season_for(d.season, freq)
    if d.season == AUTO:
        why["season"] = f"inferred from the frequency {freq!r}" + ("" if season else " (none known for it)")
    if not season and Interpolation(p.interpolation) == Interpolation.seasonal:
        raise InputInvalid(f"preprocess.interpolation=seasonal needs a season, but none is known for the "
                           f"series' frequency {freq!r}; set data.season=N or choose pchip")
    method = transforms.fill_method(p.interpolation, season)
    if Interpolation(p.interpolation) == Interpolation.auto:
        why["interpolation"] = "auto: " + ("the series has a season" if season else "no season")
        if season and int(bounds[1]) < 2 * season:
            why["interpolation"] += " (fewer than two seasons of training history: the fill falls back to pchip there)"
    lag = p.difference
    if lag == "seasonal":
        if not season:
            raise InputInvalid(f"preprocess.difference=seasonal needs a season, but none is known for the "
                               f"series' frequency {freq!r}; set data.season=N")
        lag = season
    if lag == AUTO or p.lookback == AUTO:
        filled = transforms.fill_gaps(values[: int(bounds[2])], bounds[[0, 1, 2, 2]], method, season)
        if lag == AUTO:
            lag, why["difference"] = choose_difference(filled, bounds, season, p.horizon)
        lookback = p.lookback
        if lookback == AUTO:
            lookback, why["lookback"] = choose_lookback(filled, bounds, lag, p.horizon, season)
    else:
        lookback = p.lookback
    return Choices(season, method.value, int(lag), int(lookback), requested, why)
