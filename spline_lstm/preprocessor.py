"""The fitted preprocessing chain of a run, as one object: fitted once in training,
then applied by evaluation, ``predict`` and the MLflow model alike, so the chain
is written once (no train/serve skew).

Its payload (``to_dict``) is plain data, versioned by ``format``: it is the
canonical ``models/<run_id>/preprocessor.pkl`` (read by the restricted unpickler,
CONTRACT §4) and the JSON logged to MLflow. Formats 1 (no calibration) and 2 (no
covariates) still load. Format 3 adds the covariates (spline_lstm.covariates): their
names, the calendar features and one scaler per covariate column.

Calibration: split-conformal on the validation split. For every horizon step the
absolute errors of the best model on the validation windows give an empirical
quantile per level (the finite-sample rank ceil((n+1)·level)); an interval is the
forecast ± that quantile. Steps beyond the trained horizon (recursive) reuse the
last step's quantile widened by sqrt(step / horizon).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from spline_lstm import preprocess
from spline_lstm.config import Calendar, Interpolation, PreprocessConfig, Smoothing
from spline_lstm.errors import InputInvalid

FORMAT = 3
READABLE = (1, 2, FORMAT)
LEVELS = tuple(range(1, 100))  # calibrated interval levels, in %


@dataclass(frozen=True)
class Preprocessor:
    run_id: str
    timestamp_col: str
    target_col: str
    freq: str
    duplicates: str
    coerce_errors: bool
    season: Optional[int]
    interpolation: str
    max_gap: int
    max_missing_ratio: float
    smoothing: str
    smoothing_lambda: Optional[float]
    scaler: preprocess.Scaler
    lookback: int
    horizon: int
    difference: int
    last_timestamp: str
    # level (str, in %) -> absolute-error quantile per horizon step; empty before calibration
    calibration: Dict[str, List[float]] = field(default_factory=dict)
    calibration_windows: int = 0
    # how season, interpolation, difference and lookback were resolved (seasonality.Choices)
    choices: dict = field(default_factory=dict)
    past_covariates: Tuple[str, ...] = ()
    future_covariates: Tuple[str, ...] = ()
    calendar: Tuple[str, ...] = ()
    covariate_scalers: Dict[str, preprocess.Scaler] = field(default_factory=dict)  # column -> its own scaler
    difference_past_covariates: bool = False  # past covariates at the target's difference lag

    # --- training ---------------------------------------------------------------------

    @classmethod
    def fit(cls, values: np.ndarray, bounds: np.ndarray, cfg: PreprocessConfig, *, run_id: str, data,
            freq: str, last_timestamp: str, where: str, choices: Optional[dict] = None) -> tuple:
        """Fit on the training split (causal gap filling by split, smoothing and scaler
        on training rows only, see ``preprocess``). Returns (preprocessor, filled,
        scaled): the gap-filled series in original units and the model input series.
        The pipeline passes values ``seasonality.resolve`` already resolved; an ``auto``
        season or interpolation is resolved here the same way, so the payload never holds one."""
        from spline_lstm.seasonality import season_for

        season = season_for(data.season, freq)
        method = preprocess.fill_method(cfg.interpolation, season)
        filled = preprocess.fill_gaps(values, bounds, method, season)
        lam, shaped = None, filled
        if Smoothing(cfg.smoothing) == Smoothing.spline:
            shaped, lam = preprocess.smooth_train(filled, bounds, cfg.smoothing_lambda)
        modelled = preprocess.difference(shaped, cfg.difference)
        scaler = preprocess.Scaler.fit(cfg.scaling, modelled[: bounds[1]])
        pre = cls(run_id=run_id, timestamp_col=data.timestamp_col, target_col=data.target_col, freq=freq,
                  duplicates=data.duplicates.value, coerce_errors=bool(data.coerce_errors), season=season,
                  interpolation=method.value, max_gap=cfg.max_gap,
                  max_missing_ratio=cfg.max_missing_ratio, smoothing=Smoothing(cfg.smoothing).value,
                  smoothing_lambda=lam, scaler=scaler, lookback=cfg.lookback, horizon=cfg.horizon,
                  difference=cfg.difference, last_timestamp=last_timestamp, choices=dict(choices or {}),
                  past_covariates=tuple(getattr(data, "past_covariates", ())),
                  future_covariates=tuple(getattr(data, "future_covariates", ())),
                  calendar=tuple(Calendar(c).value for c in getattr(data, "calendar", ())),
                  difference_past_covariates=bool(cfg.difference_past_covariates))
        return pre, filled, preprocess.scale_checked(scaler, modelled, where)

    def fit_covariates(self, raw: Dict[str, np.ndarray], timestamps, bounds: np.ndarray, cfg: PreprocessConfig,
                       where: str) -> tuple:
        """(preprocessor with one scaler per covariate column, fitted on its training rows;
        the covariate matrix, see ``covariate_inputs``)."""
        filled = self._filled(raw, bounds, preprocess.InputRules.for_training(cfg), where)
        scalers = {col: preprocess.Scaler.fit(cfg.scaling, v[: bounds[1]]) for col, v in filled.items()}
        pre = replace(self, covariate_scalers=scalers)
        return pre, pre._matrix(filled, timestamps, where)

    # --- covariates (training and inference) -----------------------------------------------

    @property
    def covariate_columns(self) -> Tuple[str, ...]:
        return self.past_covariates + self.future_covariates

    @property
    def known(self) -> int:
        """Future-known channels: the model's ``future`` input width (0 = none)."""
        return len(self.future_covariates) + 2 * len(self.calendar)

    @property
    def channels(self) -> int:
        """Encoder channels: the target, then past, future and calendar covariates."""
        return 1 + len(self.past_covariates) + self.known

    def covariate_inputs(self, raw: Dict[str, np.ndarray], timestamps, bounds: np.ndarray,
                         where: str) -> Optional[np.ndarray]:
        """The covariate matrix [len(timestamps), channels - 1] float32 (None without
        covariates): each column filled causally by ``bounds`` and scaled by its scaler,
        then the calendar features. Rows after ``bounds[-1]`` (predict's forecast steps)
        are not filled: future-known values there are required, past ones unused."""
        if self.channels == 1:
            return None
        return self._matrix(self._filled(raw, bounds, self.rules, where), timestamps, where)

    def _filled(self, raw: Dict[str, np.ndarray], bounds: np.ndarray, rules: preprocess.InputRules,
                where: str) -> Dict[str, np.ndarray]:
        from spline_lstm import covariates

        out = {}
        method = Interpolation(self.interpolation)
        for col in self.covariate_columns:
            values = np.asarray(raw[col], dtype=np.float64)
            preprocess.check_input(values[: bounds[-1]], rules, f"{where}: covariate column {col!r}")
            filled = covariates.fill(values, bounds, method, self.season, col, where)
            lag = self.difference if self.difference_past_covariates and col in self.past_covariates else 0
            out[col] = preprocess.difference(filled, lag)  # the first ``lag`` points NaN: 0 once scaled
        return out

    def _matrix(self, filled: Dict[str, np.ndarray], timestamps, where: str) -> np.ndarray:
        from spline_lstm import covariates

        cols = [preprocess.scale_checked(self.covariate_scalers[c], filled[c], f"{where}: covariate column {c!r}")
                for c in self.covariate_columns]
        cal = covariates.calendar_features(timestamps, self.calendar).astype(np.float32)
        return np.column_stack([*cols, cal]).astype(np.float32) if cols else cal

    def calibrated(self, actual: np.ndarray, pred: np.ndarray) -> "Preprocessor":
        """A copy holding the split-conformal quantiles of |actual - pred| per step
        (validation windows, original units; unobserved targets ignored)."""
        err = np.abs(np.asarray(actual, np.float64) - np.asarray(pred, np.float64))
        table: Dict[str, List[float]] = {}
        for level in LEVELS:
            row = []
            for j in range(err.shape[1]):
                e = np.sort(err[:, j][np.isfinite(err[:, j])])
                if e.size == 0:
                    row.append(float("nan"))
                    continue
                rank = min(e.size, math.ceil((e.size + 1) * level / 100))
                row.append(float(e[rank - 1]))
            table[str(level)] = row
        return replace(self, calibration=table, calibration_windows=int(err.shape[0]))

    # --- inference ----------------------------------------------------------------------

    @property
    def rules(self) -> preprocess.InputRules:
        return preprocess.InputRules.for_predict(self.to_dict())

    def transform(self, values: np.ndarray, where: str) -> tuple:
        """A new (trimmed) series -> (filled in original units, model input series),
        refused when it breaks an input rule training applies."""
        preprocess.check_input(values, self.rules, where)
        n = len(values)
        filled = preprocess.fill_gaps(values, np.array([0, n, n, n]), Interpolation(self.interpolation), self.season)
        return filled, preprocess.scale_checked(self.scaler, preprocess.difference(filled, self.difference), where)

    def inverse_transform(self, levels: np.ndarray, starts: np.ndarray, scaled_pred: np.ndarray) -> np.ndarray:
        """Model outputs [windows, horizon] -> forecasts in original units (unscale,
        then undo differencing from the known ``levels``)."""
        deltas = self.scaler.inverse(np.asarray(scaled_pred, dtype=np.float64))
        return preprocess.undifference(levels, starts, deltas, self.difference)

    def interval_width(self, level: int, steps: int) -> np.ndarray:
        """Half-widths of the ``level`` % interval for steps 1..steps (see module doc)."""
        key = str(int(level))
        if key not in self.calibration:
            raise InputInvalid(f"--level {level}: the run has no calibrated residuals at that level "
                               f"(levels 1..99; runs before format {FORMAT} have none)")
        q = np.asarray(self.calibration[key], dtype=np.float64)
        k = np.arange(1, steps + 1)
        beyond = q[-1] * np.sqrt(k / self.horizon)
        return np.where(k <= self.horizon, q[np.minimum(k, self.horizon) - 1], beyond)

    # --- payload ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "format": FORMAT,
            "data": {"timestamp_col": self.timestamp_col, "target_col": self.target_col, "freq": self.freq,
                     "duplicates": self.duplicates, "coerce_errors": self.coerce_errors, "season": self.season},
            "spline": {"interpolation": self.interpolation, "max_gap": self.max_gap,
                       "max_missing_ratio": self.max_missing_ratio, "smoothing": self.smoothing,
                       "smoothing_lambda": self.smoothing_lambda},
            "scaler": self.scaler.to_dict(),
            "window": {"lookback": self.lookback, "horizon": self.horizon, "difference": self.difference},
            "last_timestamp": self.last_timestamp,
            "calibration": {"method": "split-conformal, validation split, |error| per horizon step",
                            "windows": self.calibration_windows, "quantiles": self.calibration},
            "choices": self.choices,
            "covariates": {"past": list(self.past_covariates), "future": list(self.future_covariates),
                           "calendar": list(self.calendar), "difference_past": self.difference_past_covariates,
                           "scalers": {c: s.to_dict() for c, s in self.covariate_scalers.items()}},
        }

    @classmethod
    def from_dict(cls, payload: dict) -> "Preprocessor":
        """Formats 1 to 3; a payload of an unknown format is refused."""
        fmt = payload.get("format")
        if fmt not in READABLE:
            raise InputInvalid(f"preprocessor payload format {fmt!r} is not one this version reads "
                               f"({', '.join(map(str, READABLE))})")
        cov = payload.get("covariates") or {}
        d, s, w = payload["data"], payload["spline"], payload["window"]
        cal = payload.get("calibration") or {}
        return cls(run_id=str(payload["run_id"]), timestamp_col=d["timestamp_col"], target_col=d["target_col"],
                   freq=d["freq"], duplicates=d["duplicates"], coerce_errors=bool(d["coerce_errors"]),
                   season=d.get("season"), interpolation=s["interpolation"], max_gap=int(s["max_gap"]),
                   max_missing_ratio=float(s.get("max_missing_ratio", PreprocessConfig.max_missing_ratio)),
                   smoothing=s.get("smoothing", "none"), smoothing_lambda=s.get("smoothing_lambda"),
                   scaler=preprocess.Scaler(**payload["scaler"]), lookback=int(w["lookback"]),
                   horizon=int(w["horizon"]), difference=int(w.get("difference", 0)),
                   last_timestamp=str(payload.get("last_timestamp", "")),
                   calibration={str(k): [float(x) for x in v] for k, v in (cal.get("quantiles") or {}).items()},
                   calibration_windows=int(cal.get("windows", 0)), choices=dict(payload.get("choices") or {}),
                   past_covariates=tuple(cov.get("past", ())), future_covariates=tuple(cov.get("future", ())),
                   calendar=tuple(cov.get("calendar", ())),
                   difference_past_covariates=bool(cov.get("difference_past", False)),
                   covariate_scalers={c: preprocess.Scaler(**v) for c, v in (cov.get("scalers") or {}).items()})
