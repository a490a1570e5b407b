"""Inference with a finished run: the pre-inference gate, then the run's own
preprocessing (columns, frequency, spline, scaler) on a new input series, then
``best.keras`` loaded in safe mode, forecasting the next ``horizon`` steps."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from spline_lstm.artifacts import ArtifactLayout, atomic_write_bytes, atomic_write_new, safe_load_pickle
from spline_lstm.config import DataConfig, DuplicatePolicy, Interpolation
from spline_lstm.errors import UnsafeArtifact
from spline_lstm.health import run_gate


def forecast(artifacts_dir: Path, run_id: str, input_path: Path, verbose: bool = False) -> pd.DataFrame:
    """Forecast frame (timestamp, forecast) in original units; refuses unhealthy runs,
    and inputs that break a rule training applies (``preprocess.InputRules``) or
    that step at another frequency than the run's series."""
    from spline_lstm import data, preprocess

    result = run_gate(artifacts_dir, run_id)
    if not result.passed:
        raise result.error()
    paths = ArtifactLayout(Path(artifacts_dir).absolute()).paths(run_id)
    payload = safe_load_pickle(paths["preprocessor"])
    d, spline, window = payload["data"], payload["spline"], payload["window"]
    lookback, horizon, lag = int(window["lookback"]), int(window["horizon"]), int(window.get("difference", 0))
    cfg = DataConfig(path=str(input_path), timestamp_col=d["timestamp_col"], target_col=d["target_col"],
                     freq=d["freq"], duplicates=DuplicatePolicy(d["duplicates"]),
                     coerce_errors=bool(d["coerce_errors"]))
    hints = data.predict_hints(cfg.timestamp_col, cfg.target_col, d["freq"])
    where = f"--input {input_path}"
    frame = data.read_table(Path(input_path).absolute(), cfg.timestamp_col, cfg.target_col, hints)
    raw = data.to_series(frame, cfg, where, hints)
    data.check_freq(raw.index, d["freq"], where, hints)
    series, _ = data.regularise(raw, d["freq"], where, hints)
    values = series.to_numpy(dtype=np.float64)
    data.require_observed(values, cfg.target_col, where)
    lo, hi = preprocess.observed_span(values)
    values, stamps = values[lo:hi], series.index[lo:hi]
    preprocess.check_input(values, preprocess.InputRules.for_predict(payload), where)
    n = len(values)
    filled = preprocess.fill_gaps(values, np.array([0, n, n, n]), Interpolation(spline["interpolation"]))
    scaler = preprocess.Scaler(**payload["scaler"])
    scaled = preprocess.scale_checked(scaler, preprocess.difference(filled, lag), where)
    window_x = scaled[-lookback:][None, :, None]

    from spline_lstm import model as model_mod
    from spline_lstm import train

    train.import_tensorflow(verbose)
    try:
        net = model_mod.load_model_safely(paths["best"])
    except Exception as exc:
        raise UnsafeArtifact(f"{paths['best']} cannot be loaded in Keras safe mode: "
                             f"{type(exc).__name__}") from exc
    deltas = scaler.inverse(np.asarray(net.predict(window_x, verbose=0), dtype=np.float64))
    pred = preprocess.undifference(filled, np.array([n]), deltas, lag)[0]
    future = pd.date_range(stamps[-1], periods=horizon + 1, freq=d["freq"])[1:]
    return pd.DataFrame({"timestamp": future, "forecast": pred})


def write_forecast(frame: pd.DataFrame, output: Optional[Path], overwrite: bool = False) -> str:
    """The forecast as CSV text, written atomically to ``output`` when given (checked
    by containment.check_predict_output); without ``overwrite`` an existing file is
    never replaced, even one created after the check."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    text = buf.getvalue()
    if output is not None:
        write = atomic_write_bytes if overwrite else atomic_write_new
        write(Path(output), text.encode("utf-8"))
    return text
