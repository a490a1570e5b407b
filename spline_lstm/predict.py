"""Inference with a finished run. One core, ``forecast_frame``, serves the CLI and
the MLflow pyfunc model alike: the run's fitted ``Preprocessor`` on a new input
frame, the Keras model, then the forecast table.

Beyond the trained horizon the forecast is recursive: each block of ``horizon``
steps is appended to the history (in original units) and fed back as input, so
errors compound; intervals widen accordingly (``Preprocessor.interval_width``)."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from spline_lstm.artifacts import ArtifactLayout, atomic_write_bytes, atomic_write_new, safe_load_pickle
from spline_lstm.config import DataConfig, DuplicatePolicy
from spline_lstm.errors import InputInvalid, UnsafeArtifact
from spline_lstm.preprocessor import Preprocessor

FORMATS = ("csv", "parquet", "json")
MAX_HORIZON = 10000
SIGNIFICANT = 6


def significant(values: np.ndarray, digits: int = SIGNIFICANT) -> np.ndarray:
    """Round to ``digits`` significant digits (readable tables; NaN stays NaN)."""
    return np.array([float(f"{x:.{digits}g}") for x in np.asarray(values, dtype=np.float64)])


def _input_cfg(pre: Preprocessor) -> tuple:
    from spline_lstm import data

    cfg = DataConfig(timestamp_col=pre.timestamp_col, target_col=pre.target_col, freq=pre.freq,
                     duplicates=DuplicatePolicy(pre.duplicates), coerce_errors=pre.coerce_errors)
    return cfg, data.predict_hints(cfg.timestamp_col, cfg.target_col, pre.freq)


def input_series(pre: Preprocessor, frame: pd.DataFrame, where: str) -> tuple:
    """A table with the run's timestamp and target columns (and its covariate columns)
    -> (trimmed values on the run's grid, their timestamps), held to the file rules
    training applies. Rows after the last observed target (future-known covariates'
    values) are trimmed here and read by ``input_covariates``."""
    from spline_lstm import data, preprocess

    cfg, hints = _input_cfg(pre)
    missing = [c for c in (cfg.timestamp_col, cfg.target_col) if c not in frame.columns]
    if missing:
        raise InputInvalid(f"{where}: no column {', '.join(map(repr, missing))}; {hints.columns}")
    absent = [c for c in pre.covariate_columns if c not in frame.columns]
    if absent:
        raise InputInvalid(f"{where}: no covariate column {', '.join(map(repr, absent))}; {hints.covariates}")
    raw = data.to_series(frame, cfg, where, hints)
    data.check_freq(raw.index, pre.freq, where, hints)
    series, _ = data.regularise(raw, pre.freq, where, hints)
    values = series.to_numpy(dtype=np.float64)
    data.require_observed(values, cfg.target_col, where)
    lo, hi = preprocess.observed_span(values)
    return values[lo:hi], series.index[lo:hi]


def input_covariates(pre: Preprocessor, frame: pd.DataFrame, stamps: pd.DatetimeIndex, horizon: int,
                     where: str) -> Optional[np.ndarray]:
    """The covariate matrix over the history ``stamps`` and the forecast steps (whole
    blocks of the trained horizon), or None without covariates. Future-known columns
    must be given at every requested step (else 5, naming columns and timestamps); a
    last partial block holds their last value. A run with past covariates forecasts at
    most its trained horizon: later blocks would need values not yet observed."""
    from spline_lstm import covariates, data

    if pre.channels == 1:
        return None
    if pre.past_covariates and horizon > pre.horizon:
        raise InputInvalid(f"--horizon {horizon}: the run has past covariates "
                           f"({', '.join(map(repr, pre.past_covariates))}), observed only up to the forecast "
                           f"origin, so it forecasts at most its trained horizon {pre.horizon}")
    cfg, hints = _input_cfg(pre)
    n, steps = len(stamps), math.ceil(horizon / pre.horizon) * pre.horizon
    grid = stamps.append(pd.date_range(stamps[-1], periods=steps + 1, freq=pre.freq)[1:])
    raw = {c: data.covariate_values(frame, c, cfg, grid, pre.freq, where, hints) for c in pre.covariate_columns}
    for c in pre.past_covariates:
        raw[c][n:] = np.nan  # values after the origin are not the run's to use
    covariates.require_future({c: raw[c][n:] for c in pre.future_covariates}, grid[n:], horizon, where)
    for c in pre.future_covariates:  # steps past --horizon (the model's last block) hold the last value given
        tail = raw[c][n + horizon:]
        tail[np.isnan(tail)] = raw[c][n + horizon - 1]
    return pre.covariate_inputs(raw, grid, np.array([0, n, n, n]), where)


def _model_input(pre: Preprocessor, scaled: np.ndarray, cov: Optional[np.ndarray], end: int):
    """The model's input for the forecast from origin ``end`` (history length)."""
    window = scaled[-pre.lookback:][None, :, None]
    if cov is None:
        return window
    window = np.concatenate([window, cov[end - pre.lookback:end][None]], axis=-1)
    if not pre.known:
        return window
    return {"window": window, "future": cov[end:end + pre.horizon, cov.shape[1] - pre.known:][None]}


def check_options(horizon: Optional[int], levels: Sequence[int]) -> list:
    """The ranges of --horizon and --level, checked before any model loads; the
    levels sorted and unique. Errors name predict's own options."""
    if horizon is not None and not 1 <= int(horizon) <= MAX_HORIZON:
        raise InputInvalid(f"--horizon {horizon}: must be 1..{MAX_HORIZON} (beyond the trained horizon the "
                           "forecast is recursive)")
    levels = sorted({int(x) for x in levels})
    bad = [x for x in levels if not 1 <= x <= 99]
    if bad:
        raise InputInvalid(f"--level {bad[0]}: interval levels are percentages 1..99 (e.g. --level 80 95)")
    return levels


def check_request(pre: Preprocessor, horizon: Optional[int], levels: Sequence[int]) -> tuple:
    """(horizon, levels): the trained horizon by default."""
    levels = check_options(horizon, levels)
    return (pre.horizon if horizon is None else int(horizon)), levels


def forecast_frame(model, pre: Preprocessor, frame: pd.DataFrame, horizon: Optional[int] = None,
                   levels: Sequence[int] = (), where: str = "--input") -> pd.DataFrame:
    """Forecast table ``timestamp, step, forecast, lo_L, hi_L, ..., run_id`` for the
    ``horizon`` steps after the input's last observed target (default: the trained
    horizon), values rounded to 6 significant digits. With future-known covariates the
    input has rows after that with their values (``input_covariates``)."""
    from spline_lstm import preprocess

    horizon, levels = check_request(pre, horizon, levels)
    values, stamps = input_series(pre, frame, where)
    cov = input_covariates(pre, frame, stamps, horizon, where)
    filled, scaled = pre.transform(values, where)
    history = filled
    preds = []
    for _ in range(math.ceil(horizon / pre.horizon)):  # recursive beyond the trained horizon
        out = np.asarray(model.predict(_model_input(pre, scaled, cov, len(history)), verbose=0), dtype=np.float64)
        block = pre.inverse_transform(history, np.array([len(history)]), out)[0]
        preds.append(block)
        history = np.concatenate([history, block])
        scaled = preprocess.scale_checked(pre.scaler, preprocess.difference(history, pre.difference), where)
    pred = np.concatenate(preds)[:horizon]
    future = pd.date_range(stamps[-1], periods=horizon + 1, freq=pre.freq)[1:]
    out = {"timestamp": future, "step": np.arange(1, horizon + 1), "forecast": significant(pred)}
    for level in levels:
        width = pre.interval_width(level, horizon)
        out[f"lo_{level}"] = significant(pred - width)
        out[f"hi_{level}"] = significant(pred + width)
    out["run_id"] = pre.run_id
    return pd.DataFrame(out)


def load_run(artifacts_dir: Path, run_id: str, verbose: bool = False) -> tuple:
    """(Keras model, Preprocessor) of a run that passes the pre-inference gate."""
    from spline_lstm.health import run_gate

    result = run_gate(artifacts_dir, run_id)
    if not result.passed:
        raise result.error()
    paths = ArtifactLayout(Path(artifacts_dir).absolute()).paths(run_id)
    pre = Preprocessor.from_dict(safe_load_pickle(paths["preprocessor"]))
    return load_keras(paths["best"], verbose), pre


def load_keras(path: Path, verbose: bool = False):
    from spline_lstm import model as model_mod
    from spline_lstm import train

    train.import_tensorflow(verbose)
    try:
        return model_mod.load_model_safely(path)
    except Exception as exc:
        raise UnsafeArtifact(f"{path} cannot be loaded in Keras safe mode: {type(exc).__name__}") from exc


def read_input(pre: Preprocessor, input_path: Path) -> pd.DataFrame:
    """The --input file as a table (CSV or Parquet), checked like a training file."""
    from spline_lstm import data

    hints = data.predict_hints(pre.timestamp_col, pre.target_col, pre.freq)
    return data.read_table(Path(input_path).absolute(), pre.timestamp_col, pre.target_col, hints,
                           extra=pre.covariate_columns)


def forecast(artifacts_dir: Path, run_id: str, input_path: Path, horizon: Optional[int] = None,
             levels: Sequence[int] = (), verbose: bool = False) -> pd.DataFrame:
    """Gate the run, then ``forecast_frame`` on the --input file."""
    check_options(horizon, levels)  # a bad option costs no model load
    model, pre = load_run(artifacts_dir, run_id, verbose)
    return forecast_frame(model, pre, read_input(pre, input_path), horizon, levels,
                          where=f"--input {input_path}")


def forecast_registered(uri: str, tracking_uri: str, input_path: Path, horizon: Optional[int] = None,
                        levels: Sequence[int] = ()) -> pd.DataFrame:
    """A registered model (``models:/NAME@ALIAS``): its pyfunc model loaded through
    MLflow (which applies the run_id gate in ``load_context``), then the same core."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from spline_lstm.errors import TrackingFailed

    check_options(horizon, levels)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        wrapped = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except MlflowException as exc:
        raise TrackingFailed(f"cannot load {uri} from {tracking_uri} (pass --tracking-uri for another store): "
                             f"{' '.join(str(exc).split())[:200]}") from exc
    pre = wrapped.pre
    return forecast_frame(wrapped.model, pre, read_input(pre, input_path), horizon, levels,
                          where=f"--input {input_path}")


def render(frame: pd.DataFrame, fmt: str) -> bytes:
    """The table as CSV, Parquet or JSON (records, ISO timestamps)."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    if fmt == "json":
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        return (json.dumps(rows, indent=1) + "\n").encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    raise InputInvalid(f"--format {fmt}: choose one of {', '.join(FORMATS)}")


def write_forecast(frame: pd.DataFrame, output: Optional[Path], overwrite: bool = False,
                   fmt: str = "csv") -> bytes:
    """The forecast rendered, written atomically to ``output`` when given (checked
    by containment.check_predict_output); without ``overwrite`` an existing file is
    never replaced, even one created after the check."""
    data = render(frame, fmt)
    if output is not None:
        write = atomic_write_bytes if overwrite else atomic_write_new
        write(Path(output), data)
    return data
