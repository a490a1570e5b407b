"""Forecast metrics and baselines, in original units, on observed targets only.

Interpolated target points are masked out: a model is never scored against
values the spline invented.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

METRIC_NAMES = ("mae", "mse", "rmse", "mape", "smape", "mase", "r2")


def mase_scale(train_values: np.ndarray, season: Optional[int]) -> float:
    """Mean absolute in-sample (seasonal) naive error on observed training points."""
    m = season or 1
    if len(train_values) <= m:
        return float("nan")
    diff = np.abs(train_values[m:] - train_values[:-m])
    diff = diff[np.isfinite(diff)]
    return float(diff.mean()) if diff.size else float("nan")


def forecast_metrics(actual: np.ndarray, predicted: np.ndarray, scale: float) -> Dict[str, float]:
    """mae, mse, rmse, mape (%, zero targets ignored), smape (%), mase, r2 over
    the finite targets of ``actual``."""
    mask = np.isfinite(actual)
    y, p = actual[mask].astype(np.float64), predicted[mask].astype(np.float64)
    if y.size == 0:
        return {k: float("nan") for k in METRIC_NAMES}
    err = p - y
    mae = float(np.mean(np.abs(err)))
    mse = float(np.mean(err ** 2))
    nz = y != 0
    mape = float(np.mean(np.abs(err[nz] / y[nz])) * 100) if nz.any() else float("nan")
    denom = np.abs(y) + np.abs(p)
    ok = denom > 0
    smape = float(np.mean(2 * np.abs(err[ok]) / denom[ok]) * 100) if ok.any() else 0.0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = float(1 - np.sum(err ** 2) / ss_tot) if ss_tot > 0 else float("nan")
    mase = float(mae / scale) if scale and np.isfinite(scale) and scale > 0 else float("nan")
    return {"mae": mae, "mse": mse, "rmse": float(np.sqrt(mse)), "mape": mape, "smape": smape,
            "mase": mase, "r2": r2}


def baseline_forecasts(series: np.ndarray, starts: np.ndarray, lookback: int, horizon: int,
                       season: Optional[int], ma_window: Optional[int] = None,
                       first: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Forecasts [windows, horizon] of the naive baselines, from the inputs each
    window would see (``series`` is the gap-filled series in original units).
    ``first``: each window's series' first index (many series flattened: spline_lstm.data.panel)."""
    k = ma_window or lookback
    last = series[starts - 1]
    out = {"naive_last": np.repeat(last[:, None], horizon, axis=1)}
    csum = np.concatenate(([0.0], np.cumsum(series, dtype=np.float64)))
    ma = (csum[starts] - csum[starts - k]) / k
    out[f"moving_average_{k}"] = np.repeat(ma[:, None], horizon, axis=1)
    if season:
        steps = np.arange(horizon)
        back = season * (steps // season + 1)
        idx = starts[:, None] + steps[None, :] - back[None, :]
        low = 0 if first is None else np.asarray(first)[:, None]
        if idx.size and (idx >= low).all():  # a season longer than the history before a window has no value to repeat
            out["seasonal_naive"] = series[idx]
    return out


def improvement_pct(model_rmse: float, baseline_rmse: float) -> float:
    """Relative rmse improvement of the model over a baseline, in % (positive = better)."""
    if not np.isfinite(baseline_rmse) or baseline_rmse == 0:
        return float("nan")
    return float((baseline_rmse - model_rmse) / baseline_rmse * 100)


SKILLED, UNSKILLED = "SKILLED", "UNSKILLED"


def skill_verdict(model_score: float, baseline_scores: Dict[str, float], min_improvement_pct: float,
                  mode: str, basis: str, metric: str = "rmse") -> dict:
    """The quality gate's verdict: SKILLED when the model's score (``metric``: rmse, or the
    mean MASE over series of a many-series run; lower is better) improves on the best
    baseline's by more than ``min_improvement_pct`` %, else UNSKILLED (also when no
    baseline or the model's score is not a finite number: skill is not shown).
    ``mode`` off records no verdict."""
    finite = {n: float(v) for n, v in baseline_scores.items() if v is not None and np.isfinite(v)}
    best = min(finite, key=finite.get) if finite else None
    imp = improvement_pct(model_score, finite[best]) if best else float("nan")
    verdict = None
    if mode != "off":
        verdict = SKILLED if np.isfinite(imp) and np.isfinite(model_score) and imp > min_improvement_pct \
            else UNSKILLED
    return {"verdict": verdict, "mode": mode, "min_improvement_pct": float(min_improvement_pct), "basis": basis,
            "metric": metric, "model_score": float(model_score), "best_baseline": best,
            "best_baseline_score": finite.get(best) if best else None,
            "improvement_pct": None if not np.isfinite(imp) else float(imp)}
