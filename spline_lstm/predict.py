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
from spline_lstm.errors import InputInvalid, UnsafeArtifact
from spline_lstm.health import run_gate


def forecast(artifacts_dir: Path, run_id: str, input_path: Path, verbose: bool = False) -> pd.DataFrame:
    """Forecast frame (timestamp, forecast) in original units; refuses unhealthy runs."""
    from spline_lstm import data, preprocess

    result = run_gate(artifacts_dir, run_id)
    if not result.passed:
        raise result.error()
    paths = ArtifactLayout(Path(artifacts_dir).absolute()).paths(run_id)
    payload = safe_load_pickle(paths["preprocessor"])
    d, spline, window = payload["data"], payload["spline"], payload["window"]
    lookback, horizon = int(window["lookback"]), int(window["horizon"])
    cfg = DataConfig(path=str(input_path), timestamp_col=d["timestamp_col"], target_col=d["target_col"],
                     freq=d["freq"], duplicates=DuplicatePolicy(d["duplicates"]),
                     coerce_errors=bool(d["coerce_errors"]))
    where = str(input_path)
    frame = data.read_table(Path(input_path).absolute(), cfg.timestamp_col, cfg.target_col)
    series, _ = data.regularise(data.to_series(frame, cfg, where), d["freq"], where)
    values = series.to_numpy(dtype=np.float64)
    lo, hi = preprocess.observed_span(values)
    values, stamps = values[lo:hi], series.index[lo:hi]
    if len(values) < lookback:
        raise InputInvalid(f"{where}: {len(values)} points after trimming gaps; the model needs "
                           f"lookback={lookback}")
    gap, at = preprocess.longest_gap(values)
    if gap > spline["max_gap"]:
        raise InputInvalid(f"{where}: a gap of {gap} missing steps (from point {at}) exceeds the run's "
                           f"max_gap={spline['max_gap']}")
    n = len(values)
    filled = preprocess.fill_gaps(values, np.array([0, n, n, n]), Interpolation(spline["interpolation"]))
    lag = int(window.get("difference", 0))
    if n < lookback + lag:
        raise InputInvalid(f"{where}: {n} points; the model needs lookback + difference = {lookback + lag}")
    scaler = preprocess.Scaler(**payload["scaler"])
    modelled = preprocess.difference(filled, lag)
    window_x = scaler.transform(modelled[-lookback:]).astype(np.float32)[None, :, None]

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
