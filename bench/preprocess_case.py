#!/usr/bin/env python
"""One preprocessing case, in its own process so that peak RSS is the case's own.

    python bench/preprocess_case.py make  N DIR        write DIR/series-N.csv and .parquet
    python bench/preprocess_case.py floor FILE         pandas read (engine="pyarrow"): the floor
    python bench/preprocess_case.py pipeline FILE [--lookback 168]
                                                       load -> validate -> regularise -> spline
                                                       -> scale -> window setup, with the
                                                       package's own functions
    python bench/preprocess_case.py windows N [--lookback 168]
                                                       a WindowSource + the training tf.data
                                                       pipeline over N points: bytes held,
                                                       first batches, peak RSS

Synthetic files: N grid points at 1-minute steps, 5% gaps (2.5% absent rows, whose
timestamps regularise() turns into gaps, and 2.5% empty cells), longest gap well
under preprocess.max_gap. Every worker prints one ``BENCH_JSON {...}`` line:
stage timings, peak RSS (resource.getrusage) and the RSS after imports (baseline).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, self_peak_rss_mb  # noqa: E402


def make(n: int, out_dir: Path, seed: int = 7) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    values = np.round(20.0 + 3.0 * np.sin(2 * np.pi * t / 1440) + np.sin(2 * np.pi * t / 60)
                      + 0.5 * rng.standard_normal(n), 4)
    # 5% gaps in isolated points: half absent rows, half empty cells; ends observed
    gap = rng.random(n) < 0.05
    gap[0] = gap[-1] = False
    absent = gap & (rng.random(n) < 0.5)
    empty = gap & ~absent
    keep = ~absent
    stamps = (np.datetime64("2000-01-01T00:00:00", "s") + np.arange(n).astype("timedelta64[m]"))[keep]
    vals = pa.array(values[keep], mask=empty[keep])
    table = pa.table({"timestamp": pa.array(stamps, pa.timestamp("s")), "value": vals})
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, parquet = out_dir / f"series-{n}.csv", out_dir / f"series-{n}.parquet"
    pacsv.write_csv(table, csv)
    pq.write_table(table, parquet)
    return {"n": n, "rows": int(keep.sum()), "absent": int(absent.sum()), "empty": int(empty.sum()),
            "csv": str(csv), "parquet": str(parquet), "csv_mb": round(csv.stat().st_size / 2**20, 2),
            "parquet_mb": round(parquet.stat().st_size / 2**20, 2)}


def floor(path: Path) -> dict:
    import pandas as pd

    base = self_peak_rss_mb()
    t0 = time.perf_counter()
    if path.suffix == ".csv":
        frame = pd.read_csv(path, engine="pyarrow")
    else:
        frame = pd.read_parquet(path, engine="pyarrow")
    wall = time.perf_counter() - t0
    return {"total_s": round(wall, 4), "rows": int(len(frame)), "baseline_rss_mb": round(base, 1),
            "peak_rss_mb": round(self_peak_rss_mb(), 1)}


def pipeline(path: Path, lookback: int) -> dict:
    """Mirrors the preprocessing stages of spline_lstm.pipeline.run._stages (load_validate,
    spline, scale_window) on a file, with the default preprocess config."""
    import numpy as np

    from spline_lstm.data import loading
    from spline_lstm.preprocessing import transforms
    from spline_lstm.core.config import DataConfig, DataSource, PreprocessConfig

    dcfg = DataConfig(source=DataSource.file, path=str(path))
    p = PreprocessConfig(lookback=lookback, horizon=1)
    import scipy.interpolate  # noqa: F401 - imported up front: not a cost of the data size

    base = self_peak_rss_mb()
    marks, peaks = {}, {}
    t = t0 = time.perf_counter()

    def mark(name):
        nonlocal t
        now = time.perf_counter()
        marks[name] = round(now - t, 4)
        peaks[name] = round(self_peak_rss_mb(), 1)
        t = now

    frame = loading.read_table(path, dcfg.timestamp_col, dcfg.target_col)
    mark("read_table")
    raw = loading.to_series(frame, dcfg, str(path))
    del frame
    mark("to_series")
    regular, freq = loading.regularise(raw, dcfg.freq, str(path))
    values_all = regular.to_numpy(dtype=np.float64)
    del raw
    mark("regularise")
    lo, hi = transforms.observed_span(values_all)
    values = values_all[lo:hi]
    bounds = transforms.split_bounds(len(values), p)
    values = values[: bounds[-1]]
    transforms.check_series(values, bounds, p, str(path))
    mark("check_series")
    filled = transforms.fill_gaps(values, bounds, p.interpolation)
    mark("fill_gaps")
    modelled = transforms.difference(filled, p.difference)
    scaler = transforms.Scaler.fit(p.scaling, modelled[: bounds[1]])
    scaled = np.nan_to_num(scaler.transform(modelled)).astype(np.float32)
    mark("scale")
    sources = [transforms.WindowSource(
        scaled, transforms.window_starts(bounds, k, p.lookback, p.horizon, p.difference),
        p.lookback, p.horizon) for k in range(3)]
    mark("windows")
    total = time.perf_counter() - t0
    window_bytes = sum(s.starts.nbytes for s in sources) + scaled.nbytes
    return {"total_s": round(total, 4), "stages_s": marks, "peak_rss_after_stage_mb": peaks, "grid_points": int(len(values_all)),
            "freq": freq, "windows": [len(s) for s in sources], "window_source_bytes": int(window_bytes),
            "materialised_bytes": int(sum(len(s) for s in sources) * (p.lookback + p.horizon) * 4),
            "baseline_rss_mb": round(base, 1), "peak_rss_mb": round(self_peak_rss_mb(), 1)}


def windows(n: int, lookback: int, batches: int = 20) -> dict:
    """Training windows over n points: what the WindowSource holds, and what streaming
    them through spline_lstm.models.train.to_dataset costs (no N x lookback array anywhere)."""
    import numpy as np

    from spline_lstm.preprocessing import transforms
    from spline_lstm.models import train
    from spline_lstm.core.config import PreprocessConfig

    tf = train.import_tensorflow()
    base = self_peak_rss_mb()
    p = PreprocessConfig(lookback=lookback, horizon=1)
    rng = np.random.default_rng(0)
    series = rng.standard_normal(n).astype(np.float32)
    bounds = transforms.split_bounds(n, p)
    t0 = time.perf_counter()
    src = transforms.WindowSource(series, transforms.window_starts(bounds, 0, lookback, 1), lookback, 1)
    build_s = time.perf_counter() - t0
    after_source = self_peak_rss_mb()
    out = {"n": n, "lookback": lookback, "windows": len(src), "window_source_bytes": src.nbytes,
           "materialised_x_bytes": int(len(src) * lookback * 4), "source_build_s": round(build_s, 4),
           "baseline_rss_mb": round(base, 1), "rss_after_source_mb": round(after_source, 1)}
    for shuffle in (False, True):
        t0 = time.perf_counter()
        ds = train.to_dataset(src, 32, shuffle, 42)
        it = iter(ds)
        x, y = next(it)
        first = time.perf_counter() - t0
        for _ in range(batches - 1):
            x, y = next(it)
        per = (time.perf_counter() - t0 - first) / max(1, batches - 1)
        tag = "shuffled" if shuffle else "ordered"
        out[f"{tag}_first_batch_s"] = round(first, 4)
        out[f"{tag}_batch_ms"] = round(per * 1000, 3)
        out[f"{tag}_peak_rss_mb"] = round(self_peak_rss_mb(), 1)
        assert tuple(x.shape) == (32, lookback, 1) and tuple(y.shape) == (32, 1)
        del ds, it
    out["peak_rss_mb"] = round(self_peak_rss_mb(), 1)
    out["tf"] = tf.__version__
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("make", "floor", "pipeline", "windows"))
    ap.add_argument("target")
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--lookback", type=int, default=168)
    args = ap.parse_args()
    if args.mode == "make":
        doc = make(int(float(args.target)), Path(args.out_dir))
    elif args.mode == "floor":
        doc = floor(Path(args.target))
    elif args.mode == "pipeline":
        doc = pipeline(Path(args.target), args.lookback)
    else:
        doc = windows(int(float(args.target)), args.lookback)
    emit(doc)


if __name__ == "__main__":
    main()
