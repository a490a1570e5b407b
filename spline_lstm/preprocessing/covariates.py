"""Covariates: other columns and calendar features that help forecast the target.

- *past* covariates (``data.past_covariates``) are observed up to the forecast
  origin: they enter the encoder's window beside the target;
- *future-known* covariates (``data.future_covariates``, e.g. a holiday column)
  are also known over the horizon: the encoder sees their past and the head sees
  their values at the forecast steps (the model's ``future`` input); ``predict``
  needs those values in its input, after the last observed target;
- *calendar* features (``data.calendar``) are generated from the timestamps as a
  sin/cos pair per cycle, so they are future-known by construction.

Every covariate column is gap-filled as the target is (``transforms.fill_gaps``,
causal by split, seasonal with a season) and scaled by its own scaler fitted on
the training rows; the fitted ``Preprocessor`` holds the names and scalers, so
training, evaluation, ``predict`` and the MLflow model build the same matrix.
Static (per-series) covariates belong to many-series runs (spline_lstm.data.panel; encoded by
the preprocessor and appended as constant future-known channels).

The model's channels are ordered target, past, future, calendar, static; the future-known
channels (future + calendar + static) are the last ``known`` columns of the matrix.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from spline_lstm.core.errors import InputInvalid
from spline_lstm.preprocessing import transforms


def _phase(timestamps, name: str) -> np.ndarray:
    """Position in the feature's cycle, in [0, 1)."""
    ts = timestamps
    if name == "minute":
        return ts.minute.to_numpy() / 60.0
    if name == "hour":
        return ts.hour.to_numpy() / 24.0
    if name == "dayofweek":
        return ts.day_of_week.to_numpy() / 7.0
    if name == "dayofmonth":
        return (ts.day.to_numpy() - 1) / ts.days_in_month.to_numpy()
    if name == "dayofyear":
        return (ts.day_of_year.to_numpy() - 1) / np.where(ts.is_leap_year, 366.0, 365.0)
    if name == "weekofyear":
        return (ts.isocalendar().week.to_numpy(dtype=np.float64) - 1) / 52.0
    if name == "month":
        return (ts.month.to_numpy() - 1) / 12.0
    if name == "quarter":
        return (ts.quarter.to_numpy() - 1) / 4.0
    raise InputInvalid(f"unknown calendar feature {name!r}")  # config.Calendar refuses it earlier


def calendar_features(timestamps, names: Sequence[str]) -> np.ndarray:
    """[len(timestamps), 2 * len(names)] float64: sin, cos of each feature's phase."""
    cols = []
    for name in names:
        angle = 2 * np.pi * _phase(timestamps, name).astype(np.float64)
        cols += [np.sin(angle), np.cos(angle)]
    return np.stack(cols, axis=1) if cols else np.empty((len(timestamps), 0))


def fill(values: np.ndarray, bounds: np.ndarray, method, season: Optional[int], col: str, where: str) -> np.ndarray:
    """A covariate filled as the target is (``transforms.fill_gaps``). A covariate may
    start later than the target: its leading gap holds its first observed value (which
    must lie in the training split: a column first seen after it tells training nothing)."""

    observed = np.flatnonzero(~np.isnan(values))
    if observed.size == 0 or observed[0] >= bounds[1]:
        raise InputInvalid(f"{where}: covariate column {col!r} has no observed value in the training split "
                           f"(the first {int(bounds[1])} points)")
    head = values.copy()
    head[: observed[0]] = values[observed[0]]
    return transforms.fill_gaps(head, bounds, method, season)


def require_future(frame_values: dict, stamps, horizon: int, where: str) -> None:
    """Every future-known column observed at every forecast step; else one error naming
    the columns and the timestamps that are needed."""
    missing = {col: np.flatnonzero(np.isnan(v[:horizon]) if len(v) >= horizon else
                                   np.r_[np.isnan(v), np.ones(horizon - len(v), bool)])
               for col, v in frame_values.items()}
    missing = {c: idx for c, idx in missing.items() if idx.size}
    if not missing:
        return
    cols = ", ".join(repr(c) for c in missing)
    steps = sorted({int(i) for idx in missing.values() for i in idx})
    shown = ", ".join(str(stamps[i]) for i in steps[:6]) + (f" ... ({len(steps)} steps)" if len(steps) > 6 else "")
    raise InputInvalid(f"{where}: the run has future-known covariates {cols}: the input needs their values for "
                       f"the {horizon} forecast steps after the last observed target, {stamps[0]} .. "
                       f"{stamps[horizon - 1]} (rows with the target empty); missing at {shown}")
