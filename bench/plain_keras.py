#!/usr/bin/env python
"""The baseline for "framework overhead": the smoke experiment written as a minimal
plain-Keras script. No Hydra, no MLflow, no artifacts, no checkpoints, no plots, no gate.

Same work as ``launch.py +preset=smoke``: the same seeded synthetic series (same
generator, same random draws), the same causal PCHIP gap filling and train-only
standard scaling, the same LSTM (units, lookback, horizon, Adam lr, MSE), the same
epochs, batch size, seed and op determinism, and a test-set forecast at the end.
Windows are plain NumPy arrays (what a script would do at this size).

    python bench/plain_keras.py [--n-points 720] [--epochs 3] ...

Prints one ``BENCH_JSON {...}`` line with its own timings and the test RMSE.
``make_series`` / ``prepare`` import no TensorFlow (a test checks they give the
framework's data bit for bit).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402


def make_series(n: int, seed: int = 42, gap_ratio: float = 0.03, gap_stretches: int = 3,
                noise: float = 0.3) -> np.ndarray:
    """The synthetic generator of spline_lstm.data.loading.synthetic_series (values only)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    values = (10.0 + 0.01 * t + 2.0 * np.sin(2 * np.pi * t / 24) + 1.0 * np.sin(2 * np.pi * t / 168)
              + noise * rng.standard_normal(n))
    missing = rng.random(n) < gap_ratio
    for _ in range(gap_stretches):
        length = int(rng.integers(3, 7))
        start = int(rng.integers(1, max(2, n - length - 1)))
        missing[start:start + length] = True
    missing[0] = missing[-1] = False
    values[missing] = np.nan
    return values


def prepare(values: np.ndarray, ratios=(0.7, 0.15, 0.15)):
    """70/15/15 split, PCHIP gap filling causal by split, train-only standard scaling."""
    from scipy.interpolate import PchipInterpolator

    n = len(values)
    bounds = [0, int(round(n * ratios[0])), int(round(n * (ratios[0] + ratios[1]))), n]
    filled = values.copy()
    observed = ~np.isnan(values)
    for k in range(3):
        lo, hi = bounds[k], bounds[k + 1]
        gaps = np.flatnonzero(~observed[lo:hi]) + lo
        if gaps.size:
            x = np.flatnonzero(observed[:hi])
            est = np.asarray(PchipInterpolator(x.astype(np.float64), values[x], extrapolate=False)(
                gaps.astype(np.float64)), dtype=np.float64)
            est[gaps > x[-1]] = values[x[-1]]
            filled[gaps] = est
    train = filled[: bounds[1]]
    center, scale = float(np.mean(train)), float(np.std(train))
    scaled = np.nan_to_num((filled - center) / scale).astype(np.float32)
    return scaled, bounds


def windows(series: np.ndarray, lo: int, hi: int, lookback: int, horizon: int):
    starts = np.arange(max(lo, lookback), hi - horizon + 1)
    x = np.lib.stride_tricks.sliding_window_view(series, lookback)[starts - lookback][..., None]
    y = np.lib.stride_tricks.sliding_window_view(series, horizon)[starts]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-points", type=int, default=720)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lookback", type=int, default=24)
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-determinism", action="store_true")
    args = ap.parse_args()
    marks = {}

    t = time.perf_counter()
    scaled, b = prepare(make_series(args.n_points, args.seed))
    x_tr, y_tr = windows(scaled[: b[1]], 0, b[1], args.lookback, args.horizon)
    x_va, y_va = windows(scaled, b[1], b[2], args.lookback, args.horizon)
    x_te, y_te = windows(scaled, b[2], b[3], args.lookback, args.horizon)
    marks["data"] = time.perf_counter() - t

    t = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    if not args.no_determinism:
        tf.config.experimental.enable_op_determinism()
    marks["import_tf"] = time.perf_counter() - t

    t = time.perf_counter()
    model = keras.Sequential([keras.Input(shape=(args.lookback, 1)), keras.layers.LSTM(args.units),
                              keras.layers.Dense(args.horizon)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=args.learning_rate), loss="mse")
    model.fit(x_tr, y_tr, validation_data=(x_va, y_va), epochs=args.epochs,
              batch_size=args.batch_size, shuffle=True, verbose=2)
    marks["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    pred = model.predict(x_te, batch_size=max(args.batch_size, 256), verbose=0)
    rmse = float(np.sqrt(np.mean((pred - y_te) ** 2)))
    marks["evaluate"] = time.perf_counter() - t
    marks["total_in_process"] = time.perf_counter() - T_START
    print("BENCH_JSON " + json.dumps({"timings_s": {k: round(v, 4) for k, v in marks.items()},
                                      "train_windows": int(len(x_tr)), "test_rmse_scaled": rmse}),
          flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
