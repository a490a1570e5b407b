"""The fitted preprocessing chain of a run, as one object: fitted once in training,
then applied by evaluation, ``predict`` and the MLflow model alike, so the chain
is written once (no train/serve skew).

Its payload (``to_dict``) is plain data, versioned by ``format``: it is the
canonical ``models/<run_id>/preprocessor.pkl`` (read by the restricted unpickler,
docs/concepts.md#canonical-artifacts) and the JSON logged to MLflow. Formats 1 (no calibration) and 2 (no
covariates) still load. Format 3 adds the covariates (spline_lstm.preprocessing.covariates): their
names, the calendar features and one scaler per covariate column. Format 4 adds many
series (spline_lstm.data.panel): ids, one target scaler per series, static covariates.

Calibration: split-conformal on the validation split. For every horizon step the
absolute errors of the best model on the validation windows give an empirical
quantile per level (the finite-sample rank ceil((n+1)·level)); an interval is the
forecast ± that quantile. Steps beyond the trained horizon (recursive) reuse the
last step's quantile widened by sqrt(step / horizon).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Dict, List, Optional, Tuple

import numpy as np

from spline_lstm.core.config import Calendar, Interpolation, PreprocessConfig, Scaling, Smoothing
from spline_lstm.core.errors import InputInvalid
from spline_lstm.data import panel
from spline_lstm.preprocessing import covariates, transforms
from spline_lstm.preprocessing.seasonality import season_for

FORMAT = 4
READABLE = (1, 2, 3, FORMAT)
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
    scaler: transforms.Scaler
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
    covariate_scalers: Dict[str, transforms.Scaler] = field(default_factory=dict)  # column -> its own scaler
    difference_past_covariates: bool = False  # past covariates at the target's difference lag
    # many series (spline_lstm.data.panel): one scaler per series (``scaler`` is then the identity
    # of the same kind), static covariates encoded per series, intervals in units of each
    # series' scale
    id_col: Optional[str] = None
    target_cols: Tuple[str, ...] = ()
    series_ids: Tuple[str, ...] = ()
    series_centers: Tuple[float, ...] = ()
    series_scales: Tuple[float, ...] = ()
    static_covariates: Tuple[str, ...] = ()
    static_encoding: Dict[str, dict] = field(default_factory=dict)  # column -> numeric (center, scale) or levels
    series_static: Dict[str, List[float]] = field(default_factory=dict)  # id -> encoded static vector

    # --- training ---------------------------------------------------------------------

    @classmethod
    def fit(cls, values: np.ndarray, bounds: np.ndarray, cfg: PreprocessConfig, *, run_id: str, data,
            freq: str, last_timestamp: str, where: str, choices: Optional[dict] = None,
            spans: Optional[np.ndarray] = None, ids: Optional[Tuple[str, ...]] = None) -> tuple:
        """Fit on the training split (causal gap filling by split, smoothing and scalers on
        training rows only, see ``preprocess``). ``values``: one series [T], or many on one
        grid [n, T] with their ``spans`` and ``ids`` (spline_lstm.data.panel), each filled on
        its own span. Returns (preprocessor, filled in original units, model input float32,
        0 outside the spans), shaped as ``values``. A one-series run records its one scaler
        as ``scaler``; with ``ids`` every series has its own (``series_centers`` /
        ``series_scales``) and ``scaler`` is the identity. The pipeline passes values
        ``seasonality.resolve`` already resolved; an ``auto`` season or interpolation is
        resolved here the same way, so the payload never holds one."""

        season = season_for(data.season, freq)
        method = transforms.fill_method(cfg.interpolation, season)
        one = np.ndim(values) == 1
        values, spans, _ = transforms.as_panel(values, spans)
        filled = transforms.fill_gaps(values, bounds, method, season, spans)
        lam, shaped = None, filled
        if Smoothing(cfg.smoothing) == Smoothing.spline:  # one series: the config refuses it with many
            smooth, lam = transforms.smooth_train(filled[0], bounds, cfg.smoothing_lambda)
            shaped = smooth[None]
        modelled = transforms.difference(shaped, cfg.difference)
        train = modelled[:, : int(bounds[1])]
        if ids is None:
            scaler = transforms.Scaler.fit(cfg.scaling, train[0])
            centers, scales = np.array([scaler.center]), np.array([scaler.scale])
            learnt = {"scaler": scaler}
        else:
            centers, scales = transforms.fit_scalers_panel(cfg.scaling, train)
            learnt = {"scaler": transforms.Scaler(Scaling(cfg.scaling).value, 0.0, 1.0), "id_col": data.id_col,
                      "target_cols": tuple(data.target_cols), "series_ids": tuple(ids),
                      "series_centers": tuple(float(c) for c in centers),
                      "series_scales": tuple(float(x) for x in scales)}
        pre = cls._fitted(cfg, data, run_id=run_id, freq=freq, season=season, method=method,
                          last_timestamp=last_timestamp, choices=choices, smoothing=Smoothing(cfg.smoothing).value,
                          smoothing_lambda=lam, **learnt)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((modelled - centers[:, None]) / scales[:, None]).astype(np.float32)
        bad = ~np.isfinite(scaled) & ~np.isnan(modelled)
        if bad.any():  # the finite-after-scaling rule of transforms.scale_checked, naming the series
            k = int(np.flatnonzero(bad.any(axis=1))[0])
            transforms.scale_checked(pre.series_scaler(None if ids is None else k), modelled[k],
                                     where if ids is None else f"series {ids[k]!r}")
        scaled = np.nan_to_num(scaled, nan=0.0)
        return (pre, filled[0], scaled[0]) if one else (pre, filled, scaled)

    @classmethod
    def _fitted(cls, cfg: PreprocessConfig, data, *, run_id: str, freq: str, season: Optional[int], method,
                last_timestamp: str, choices: Optional[dict], **learnt) -> "Preprocessor":
        """The settings every fitted chain records (``fit``); ``learnt``: what
        the fit itself found (scalers, smoothing, the series)."""
        return cls(run_id=run_id, timestamp_col=data.timestamp_col, target_col=data.target_col, freq=freq,
                   duplicates=data.duplicates.value, coerce_errors=bool(data.coerce_errors), season=season,
                   interpolation=method.value, max_gap=cfg.max_gap, max_missing_ratio=cfg.max_missing_ratio,
                   lookback=cfg.lookback, horizon=cfg.horizon, difference=cfg.difference,
                   last_timestamp=last_timestamp, choices=dict(choices or {}),
                   past_covariates=tuple(getattr(data, "past_covariates", ())),
                   future_covariates=tuple(getattr(data, "future_covariates", ())),
                   calendar=tuple(Calendar(c).value for c in getattr(data, "calendar", ())),
                   difference_past_covariates=bool(cfg.difference_past_covariates), **learnt)

    def fit_covariates(self, raw: Dict[str, np.ndarray], timestamps, bounds: np.ndarray, cfg: PreprocessConfig,
                       where: str, spans: Optional[np.ndarray] = None,
                       statics: Optional[Dict[str, list]] = None) -> tuple:
        """(preprocessor with one scaler per covariate column, fitted on the training rows of
        every series pooled, and the static encoding; the covariate matrix [n * T,
        channels - 1], 0 outside the spans, see ``covariate_inputs``). ``raw``: one series'
        columns [T], or many series' [n, T] with their ``spans``."""

        pre = replace(self, **_static_fit(statics or {}, self.series_ids))
        raw = {c: np.atleast_2d(v) for c, v in raw.items()}  # one series: a panel of one
        t = len(timestamps)
        spans = np.array([[0, t]]) if spans is None else spans
        names = [f"{where} series {i!r}" for i in self.series_ids] if self.series_ids else [where]
        rules = transforms.InputRules.for_training(cfg)
        filled = []
        for k, (lo, hi) in enumerate(spans):
            local = panel.local_bounds(bounds, (lo, hi))
            filled.append(pre._filled({c: v[k, lo:hi] for c, v in raw.items()}, local, rules, names[k])
                          if raw else {})
        if raw:
            scalers = {c: transforms.Scaler.fit(cfg.scaling, np.concatenate(
                [f[c][: max(0, int(bounds[1]) - lo)] for f, (lo, _) in zip(filled, spans)])) for c in raw}
            pre = replace(pre, covariate_scalers=scalers)
        out = np.zeros((len(spans), t, pre.channels - 1), dtype=np.float32)
        for k, (lo, hi) in enumerate(spans):
            out[k, lo:hi] = pre._matrix(filled[k], timestamps[lo:hi], where, series=k if self.series_ids else None)
        return pre, out.reshape(len(spans) * t, pre.channels - 1)

    # --- covariates (training and inference) -----------------------------------------------

    @property
    def covariate_columns(self) -> Tuple[str, ...]:
        return self.past_covariates + self.future_covariates

    @property
    def static_width(self) -> int:
        return len(next(iter(self.series_static.values()))) if self.series_static else 0

    @property
    def known(self) -> int:
        """Future-known channels: the model's ``future`` input width (0 = none). Static
        covariates count as known: constant over the window and the horizon."""
        return len(self.future_covariates) + 2 * len(self.calendar) + self.static_width

    @property
    def channels(self) -> int:
        """Encoder channels: the target, then past, future and calendar covariates."""
        return 1 + len(self.past_covariates) + self.known

    def covariate_inputs(self, raw: Dict[str, np.ndarray], timestamps, bounds: np.ndarray,
                         where: str, series: Optional[int] = None) -> Optional[np.ndarray]:
        """The covariate matrix [len(timestamps), channels - 1] float32 (None without
        covariates): each column filled causally by ``bounds`` and scaled by its scaler,
        then the calendar features. Rows after ``bounds[-1]`` (predict's forecast steps)
        are not filled: future-known values there are required, past ones unused."""
        if self.channels == 1:
            return None
        return self._matrix(self._filled(raw, bounds, self.rules, where), timestamps, where, series)

    def _filled(self, raw: Dict[str, np.ndarray], bounds: np.ndarray, rules: transforms.InputRules,
                where: str) -> Dict[str, np.ndarray]:

        out = {}
        method = Interpolation(self.interpolation)
        for col in self.covariate_columns:
            values = np.asarray(raw[col], dtype=np.float64)
            transforms.check_input(values[: bounds[-1]], rules, f"{where}: covariate column {col!r}")
            filled = covariates.fill(values, bounds, method, self.season, col, where)
            lag = self.difference if self.difference_past_covariates and col in self.past_covariates else 0
            out[col] = transforms.difference(filled, lag)  # the first ``lag`` points NaN: 0 once scaled
        return out

    def _matrix(self, filled: Dict[str, np.ndarray], timestamps, where: str,
                series: Optional[int] = None) -> np.ndarray:

        cols = [transforms.scale_checked(self.covariate_scalers[c], filled[c], f"{where}: covariate column {c!r}")
                for c in self.covariate_columns]
        cal = covariates.calendar_features(timestamps, self.calendar).astype(np.float32)
        if series is not None and self.static_width:
            static = np.asarray(self.series_static[self.series_ids[series]], dtype=np.float32)
            cal = np.column_stack([cal, np.broadcast_to(static, (len(timestamps), static.size))])
        return np.column_stack([*cols, cal]).astype(np.float32) if cols else cal.astype(np.float32)

    # --- many series (spline_lstm.data.panel) ----------------------------------------------------

    @property
    def is_panel(self) -> bool:
        return bool(self.series_ids)

    def series_scaler(self, series: Optional[int]) -> transforms.Scaler:
        """The target scaler of series ``series`` (None: the run's one series)."""
        if series is None:
            return self.scaler
        return transforms.Scaler(self.scaler.kind, self.series_centers[series], self.series_scales[series])

    @cached_property
    def series_positions(self) -> Dict[str, int]:
        """id -> row: a lookup per series stays O(1) with 10^4 series (derived, not a field)."""
        return {sid: k for k, sid in enumerate(self.series_ids)}

    def series_index(self, series_id: str) -> int:
        try:
            return self.series_positions[series_id]
        except KeyError:
            raise InputInvalid(f"series {series_id!r} is not one the run was trained on "
                               f"({len(self.series_ids)} series)") from None

    def calibrated(self, actual: np.ndarray, pred: np.ndarray, series: Optional[np.ndarray] = None) -> "Preprocessor":
        """A copy holding the split-conformal quantiles of |actual - pred| per step
        (validation windows, original units; unobserved targets ignored). With many
        series (``series`` = each row's series) the errors are in units of each series'
        scale, pooled over series, and ``interval_width`` scales them back."""
        err = np.abs(np.asarray(actual, np.float64) - np.asarray(pred, np.float64))
        if series is not None:
            err = err / np.asarray(self.series_scales, dtype=np.float64)[series][:, None]
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
    def rules(self) -> transforms.InputRules:
        return transforms.InputRules.for_predict(self.to_dict())

    def transform(self, values: np.ndarray, where: str, series: Optional[int] = None) -> tuple:
        """A new (trimmed) series -> (filled in original units, model input series),
        refused when it breaks an input rule training applies. ``series``: which of a
        many-series run's series it is (its scaler)."""
        transforms.check_input(values, self.rules, where)
        n = len(values)
        filled = transforms.fill_gaps(values, np.array([0, n, n, n]), Interpolation(self.interpolation), self.season)
        return filled, transforms.scale_checked(self.series_scaler(series),
                                                transforms.difference(filled, self.difference), where)

    def inverse_transform(self, levels: np.ndarray, starts: np.ndarray, scaled_pred: np.ndarray,
                          series: Optional[np.ndarray] = None) -> np.ndarray:
        """Model outputs [windows, horizon] -> forecasts in original units (unscale,
        then undo differencing from the known ``levels``). ``series``: each window's
        series in a many-series run (its own scaler)."""
        scaled_pred = np.asarray(scaled_pred, dtype=np.float64)
        if series is None:
            deltas = self.scaler.inverse(scaled_pred)
        else:
            scale = np.asarray(self.series_scales, dtype=np.float64)[series][:, None]
            deltas = scaled_pred * scale + np.asarray(self.series_centers, dtype=np.float64)[series][:, None]
        return transforms.undifference(levels, starts, deltas, self.difference)

    def interval_width(self, level: int, steps: int, series: Optional[int] = None) -> np.ndarray:
        """Half-widths of the ``level`` % interval for steps 1..steps (see module doc);
        ``series``: of a many-series run (the pooled widths times its scale)."""
        key = str(int(level))
        if key not in self.calibration:
            raise InputInvalid(f"--level {level}: the run has no calibrated residuals at that level "
                               f"(levels 1..99; runs before format {FORMAT} have none)")
        q = np.asarray(self.calibration[key], dtype=np.float64)
        k = np.arange(1, steps + 1)
        beyond = q[-1] * np.sqrt(k / self.horizon)
        width = np.where(k <= self.horizon, q[np.minimum(k, self.horizon) - 1], beyond)
        return width * (self.series_scales[series] if series is not None else 1.0)

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
            "series": {"id_col": self.id_col, "target_cols": list(self.target_cols), "ids": list(self.series_ids),
                       "centers": list(self.series_centers), "scales": list(self.series_scales),
                       "static": list(self.static_covariates), "static_encoding": self.static_encoding,
                       "static_values": self.series_static},
        }

    @classmethod
    def from_dict(cls, payload: dict) -> "Preprocessor":
        """Formats 1 to 4; a payload of an unknown format is refused."""
        fmt = payload.get("format")
        if fmt not in READABLE:
            raise InputInvalid(f"preprocessor payload format {fmt!r} is not one this version reads "
                               f"({', '.join(map(str, READABLE))})")
        cov = payload.get("covariates") or {}
        ser = payload.get("series") or {}  # format 3 payloads of one series have none
        d, s, w = payload["data"], payload["spline"], payload["window"]
        cal = payload.get("calibration") or {}
        return cls(run_id=str(payload["run_id"]), timestamp_col=d["timestamp_col"], target_col=d["target_col"],
                   freq=d["freq"], duplicates=d["duplicates"], coerce_errors=bool(d["coerce_errors"]),
                   season=d.get("season"), interpolation=s["interpolation"], max_gap=int(s["max_gap"]),
                   max_missing_ratio=float(s.get("max_missing_ratio", PreprocessConfig.max_missing_ratio)),
                   smoothing=s.get("smoothing", "none"), smoothing_lambda=s.get("smoothing_lambda"),
                   scaler=transforms.Scaler(**payload["scaler"]), lookback=int(w["lookback"]),
                   horizon=int(w["horizon"]), difference=int(w.get("difference", 0)),
                   last_timestamp=str(payload.get("last_timestamp", "")),
                   calibration={str(k): [float(x) for x in v] for k, v in (cal.get("quantiles") or {}).items()},
                   calibration_windows=int(cal.get("windows", 0)), choices=dict(payload.get("choices") or {}),
                   past_covariates=tuple(cov.get("past", ())), future_covariates=tuple(cov.get("future", ())),
                   calendar=tuple(cov.get("calendar", ())),
                   difference_past_covariates=bool(cov.get("difference_past", False)),
                   covariate_scalers={c: transforms.Scaler(**v) for c, v in (cov.get("scalers") or {}).items()},
                   id_col=ser.get("id_col"), target_cols=tuple(ser.get("target_cols", ())),
                   series_ids=tuple(str(i) for i in ser.get("ids", ())),
                   series_centers=tuple(float(x) for x in ser.get("centers", ())),
                   series_scales=tuple(float(x) for x in ser.get("scales", ())),
                   static_covariates=tuple(ser.get("static", ())),
                   static_encoding=dict(ser.get("static_encoding") or {}),
                   series_static={str(k): [float(x) for x in v] for k, v in (ser.get("static_values") or {}).items()})


def _static_fit(statics: Dict[str, list], ids: Tuple[str, ...]) -> dict:
    """Encode static covariates per series: a column of numbers is standardised over the
    series; any other column is one-hot over its sorted levels (text codes: "c1")."""
    encoding: Dict[str, dict] = {}
    columns: List[np.ndarray] = []
    for col, vals in statics.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        if numeric:
            x = np.asarray(vals, dtype=np.float64)
            center, scale = float(x.mean()), float(x.std())
            scale = scale if np.isfinite(scale) and scale > 0 else 1.0
            encoding[col] = {"kind": "numeric", "center": center, "scale": scale}
            columns.append(((x - center) / scale)[:, None])
        else:
            levels = sorted({str(v) for v in vals})
            encoding[col] = {"kind": "category", "levels": levels}
            codes = np.array([levels.index(str(v)) for v in vals])
            columns.append(np.eye(len(levels))[codes])
    if not columns:
        return {"static_covariates": (), "static_encoding": {}, "series_static": {}}
    matrix = np.concatenate(columns, axis=1)
    return {"static_covariates": tuple(statics), "static_encoding": encoding,
            "series_static": {sid: [float(x) for x in row] for sid, row in zip(ids, matrix)}}
