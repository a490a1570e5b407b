#!/usr/bin/env python
"""Many series on one machine (issue 14, item 3), on today's single-series code paths.

    python bench/scale.py [--quick] [--only preprocess,train] [--sizes 100,1000,10000]
                          [--repeat 3] [--train-series 50] [--epochs 4] [--batch-size 1024]

preprocess: N related series x 1,000 points with 5% gaps (``spline_lstm.synthetic``,
  season 24), the chain a run applies to its series (trim, split, input rules, causal
  seasonal gap fill, train-only standard scaling, window starts) as
  (a) ``loop``: the package's own functions, one series after another
      (``check_series``, ``Preprocessor.fit``, ``window_starts``), and
  (b) ``floor``: the same computation vectorised over the [N, T] panel (linear pre-fill,
      classical seasonal index, PCHIP by Fritsch-Carlson and the Hermite cubic, scaling,
      starts into the flattened panel), checked against (a) to 1e-9 before it is timed.
  Each case is its own process (wall of the chain only, peak RSS over the RSS after the
  panel was generated); loop and floor alternate; growth exponents over the sizes.
train: windows/s of ``train.fit`` on streamed windows (a ``WindowSource`` over the
  flattened panel: starts never cross a series) vs ``model.fit`` on the same windows
  materialised as NumPy arrays (the plain Keras loop of bench/plain_keras.py), same
  model (plain LSTM, ``build_model`` with head_init=default, revin=none), seed, batch,
  epochs, shuffling and op determinism; both validate on the same windows each epoch.
  Steady state: training windows / the median seconds of epochs 2.. (epoch 1 traces);
  framework and plain alternate, ratios are paired (the machine is shared and noisy).

Writes ``bench/results/<date>-<host>-scale[-quick].{json,md}``; tables on stdout.
Bounded: about 4 min in full mode on 2 cores, 1.5 min with --quick.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (PYTHON, REPO, Table, child_env, emit, growth_exponent, paired_ratio,  # noqa: E402
                    parse_emitted, run_proc, self_peak_rss_mb, stats)

SEASON, POINTS, LOOKBACK, HORIZON, GAPS = 24, 1_000, 24, 1, 0.05
TARGET_LOOP_VS_FLOOR, TARGET_TRAIN = 3.0, 1.1
FLOOR_BLOCK = 250  # series per vectorised block (see floor)


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def panel(n: int, points: int = POINTS, seed: int = 0):
    from spline_lstm.synthetic import related_series

    return related_series(n, points, period=SEASON, seed=seed, gap_ratio=GAPS, gap_stretches=1,
                          k_past=0, k_future=0)


def preprocess_cfg():
    from spline_lstm.config import DataConfig, Interpolation, PreprocessConfig

    return (PreprocessConfig(interpolation=Interpolation.seasonal, lookback=LOOKBACK, horizon=HORIZON,
                             difference=0), DataConfig(season=SEASON))


# --- (a) the package, one series at a time -------------------------------------------------------

def loop(values):
    """Today's single-series chain, per series: -> (filled, scaled, starts per split, stage seconds)."""
    import numpy as np

    from spline_lstm import preprocess
    from spline_lstm.preprocessor import Preprocessor

    p, d = preprocess_cfg()
    secs = {"validate": 0.0, "fill_scale": 0.0, "windows": 0.0}
    filled, scaled, starts = [], [], []
    for i, row in enumerate(values):
        t0 = time.perf_counter()
        lo, hi = preprocess.observed_span(row)
        v = row[lo:hi]
        bounds = preprocess.split_bounds(len(v), p)
        preprocess.check_series(v, bounds, p, f"series {i}")
        t1 = time.perf_counter()
        _, f, s = Preprocessor.fit(v, bounds, p, run_id="bench", data=d, freq="h", last_timestamp="",
                                   where=f"series {i}")
        t2 = time.perf_counter()
        st = [preprocess.window_starts(bounds, k, p.lookback, p.horizon, p.difference) for k in range(3)]
        t3 = time.perf_counter()
        secs["validate"] += t1 - t0
        secs["fill_scale"] += t2 - t1
        secs["windows"] += t3 - t2
        filled.append(f)
        scaled.append(s)
        starts.append(st)
    return np.stack(filled), np.stack(scaled), starts, secs


# --- (b) the vectorised floor ------------------------------------------------------------------

def _linear_prefill(y, obs):
    """np.interp through each row's observed points, all rows in one call on flattened
    indices (rows start observed; points after a row's last observed one hold it)."""
    import numpy as np

    n, t = y.shape
    xk = np.flatnonzero(obs)
    out = np.interp(np.arange(n * t, dtype=np.float64), xk.astype(np.float64), y.ravel()[xk]).reshape(n, t)
    last = t - 1 - np.argmax(obs[:, ::-1], axis=1)
    tail = np.arange(t) > last[:, None]
    if tail.any():
        out[tail] = np.repeat(y[np.arange(n), last], tail.sum(axis=1))
    return out


def _seasonal_index(y, m, obs):
    """seasonality.seasonal_index row by row: y - centred m-MA (cumsum), phase means over observed points."""
    import numpy as np

    n, t = y.shape
    h = m // 2
    c = np.concatenate([np.zeros((n, 1)), np.cumsum(y, axis=1)], axis=1)
    ma = np.full((n, t), np.nan)
    if m % 2 == 0:
        win = c[:, 2 * h + 1:] - c[:, : t - 2 * h]
        ma[:, h: t - h] = (win - 0.5 * y[:, : t - 2 * h] - 0.5 * y[:, 2 * h:]) / m
    else:
        ma[:, h: t - h] = (c[:, 2 * h + 1:] - c[:, : t - 2 * h]) / m
    det = y - ma
    ok = np.isfinite(det) & obs
    key = (np.arange(n)[:, None] * m + np.arange(t) % m)[ok]
    sums = np.bincount(key, weights=det[ok], minlength=n * m).reshape(n, m)
    counts = np.bincount(key, minlength=n * m).reshape(n, m)
    effect = np.divide(sums, counts, out=np.zeros((n, m)), where=counts > 0)
    mean = np.nansum(np.where(counts > 0, effect, np.nan), axis=1) / np.maximum((counts > 0).sum(axis=1), 1)
    return effect - mean[:, None]


def _edge(h0, h1, m0, m1):
    import numpy as np

    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    flip = np.sign(d) != np.sign(m0)
    big = (np.sign(m0) != np.sign(m1)) & (np.abs(d) > 3.0 * np.abs(m0))
    return np.where(flip, 0.0, np.where(big, 3.0 * m0, d))


def _pchip_rows(y, obs, gap_rows, gap_cols):
    """scipy's PchipInterpolator through each row's observed points, at the gaps
    (every gap lies between two observed points of its row; rows have >= 4). As in
    ``preprocess._pchip_at``, slopes only at the two knots around each gap."""
    import numpy as np

    n, t = y.shape
    key = np.flatnonzero(obs)
    rows, cols = np.divmod(key, t)
    xk, yk = cols.astype(np.float64), y.ravel()[key]
    first = np.r_[True, rows[1:] != rows[:-1]]
    last = np.r_[rows[1:] != rows[:-1], True]
    j = np.searchsorted(key, gap_rows * t + gap_cols) - 1

    def h(q):
        return xk[q + 1] - xk[q]

    def m(q):
        return (yk[q + 1] - yk[q]) / (xk[q + 1] - xk[q])

    def slope(q):
        d = np.empty(q.size)
        f, l_, i = first[q], last[q], ~first[q] & ~last[q]
        qi = q[i]
        m0, m1, h0, h1 = m(qi - 1), m(qi), h(qi - 1), h(qi)
        flat = (np.sign(m0) != np.sign(m1)) | (m0 == 0) | (m1 == 0)
        w1, w2 = 2 * h1 + h0, h1 + 2 * h0
        with np.errstate(divide="ignore", invalid="ignore"):
            d[i] = np.where(flat, 0.0, 1.0 / ((w1 / m0 + w2 / m1) / (w1 + w2)))
        qf, ql = q[f], q[l_]
        d[f] = _edge(h(qf), h(qf + 1), m(qf), m(qf + 1))
        d[l_] = _edge(h(ql - 1), h(ql - 2), m(ql - 1), m(ql - 2))
        return d

    x0, hh, d0, d1 = xk[j], h(j), slope(j), slope(j + 1)
    s = (gap_cols - x0) / hh
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * yk[j] + (s3 - 2 * s2 + s) * hh * d0 + (-2 * s3 + 3 * s2) * yk[j + 1]
            + (s3 - s2) * hh * d1)


def floor(values, block: int = FLOOR_BLOCK):
    """The same chain vectorised over the panel -> (filled, scaled, global starts per split, stage
    seconds), ``block`` series at a time: whole-panel temporaries at 10^7 points (80 MB each) cost
    more in page faults than the per-block Python overhead (10^4 series: 4.4 s in one block, 1.9 s
    in blocks of 250)."""
    import numpy as np

    parts = [_floor_block(values[i:i + block]) for i in range(0, len(values), block)]
    secs = {k: sum(part[3][k] for part in parts) for k in parts[0][3]}
    t0 = time.perf_counter()
    filled = np.concatenate([part[0] for part in parts])
    scaled = np.concatenate([part[1] for part in parts])
    secs["concat"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    starts = [np.concatenate([part[2][k] + i * block * values.shape[1] for i, part in enumerate(parts)])
              for k in range(3)]
    secs["windows"] += time.perf_counter() - t0
    return filled, scaled, starts, secs


def _floor_block(values):
    import numpy as np

    from spline_lstm import preprocess

    p, _ = preprocess_cfg()
    n, t = values.shape
    secs = {}
    t0 = time.perf_counter()
    obs = ~np.isnan(values)
    assert obs[:, 0].all() and obs[:, -1].all(), "the floor assumes observed ends (nothing to trim)"
    bounds = preprocess.split_bounds(t, p)
    ratio = 1.0 - obs.mean(axis=1)
    padded = np.pad((~obs).astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    r_start, c_start = np.nonzero(edges == 1)
    _, c_stop = np.nonzero(edges == -1)
    longest = np.zeros(n, dtype=np.int64)
    np.maximum.at(longest, r_start, c_stop - c_start)
    spread = np.nanstd(values[:, : bounds[1]], axis=1)
    bad = (ratio > p.max_missing_ratio) | (longest > p.max_gap) | (spread == 0)
    assert not bad.any(), f"{int(bad.sum())} series break an input rule"
    t1 = time.perf_counter()
    filled = values.copy()
    for k in range(3):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        sub, o = values[:, :hi], obs[:, :hi]
        gr, gc = np.nonzero(~o[:, lo:])
        gc = gc + lo
        if gr.size == 0:
            continue
        effect = _seasonal_index(_linear_prefill(sub, o), SEASON, o)
        phase = np.arange(hi) % SEASON
        adjusted = sub - effect[:, phase]
        last_obs = hi - 1 - np.argmax(o[:, ::-1], axis=1)
        after = gc > last_obs[gr]
        est = np.empty(gr.size)
        est[~after] = _pchip_rows(adjusted, o, gr[~after], gc[~after])
        est[after] = adjusted[gr[after], last_obs[gr[after]]]
        filled[gr, gc] = est + effect[gr, gc % SEASON]
    t2 = time.perf_counter()
    train = filled[:, : bounds[1]]
    scaled = ((filled - train.mean(axis=1, keepdims=True)) / train.std(axis=1, keepdims=True)).astype(np.float32)
    t3 = time.perf_counter()
    offsets = np.arange(n, dtype=np.int64)[:, None] * t
    starts = [(offsets + preprocess.window_starts(bounds, k, p.lookback, p.horizon, p.difference)).ravel()
              for k in range(3)]
    t4 = time.perf_counter()
    secs.update(validate=t1 - t0, fill=t2 - t1, scale=t3 - t2, windows=t4 - t3)
    return filled, scaled, starts, secs


def check_floor(n: int = 64) -> dict:
    """The floor computes what the loop computes (else it is no floor)."""
    import numpy as np

    values = panel(n, seed=123).values
    f1, s1, st1, _ = loop(values)
    f2, s2, st2, _ = floor(values)
    same_starts = all(np.array_equal(np.concatenate([st1[i][k] + i * values.shape[1] for i in range(n)]), st2[k])
                      for k in range(3))
    out = {"series": n, "max_abs_diff_filled": float(np.max(np.abs(f1 - f2))),
           "max_abs_diff_scaled": float(np.max(np.abs(s1.astype(np.float64) - s2))), "same_starts": same_starts}
    assert out["max_abs_diff_filled"] < 1e-9 and out["max_abs_diff_scaled"] < 1e-5 and same_starts, out
    return out


# --- workers (one process per case) ---------------------------------------------------------------

def worker_preprocess(mode: str, n: int) -> None:
    import numpy as np  # noqa: F401

    from spline_lstm import preprocess, preprocessor  # noqa: F401  (imports outside the timing)
    import scipy.interpolate  # noqa: F401

    t = time.perf_counter()
    values = panel(n).values
    gen_s = time.perf_counter() - t
    base = self_peak_rss_mb()
    t = time.perf_counter()
    _, _, _, secs = (loop if mode == "loop" else floor)(values)
    wall = time.perf_counter() - t
    emit({"mode": mode, "series": n, "points": int(values.size), "seconds": wall, "stages": secs,
          "generate_s": gen_s, "rss_base_mb": base, "peak_rss_mb": self_peak_rss_mb()})


def worker_train(mode: str, n_series: int, epochs: int, batch: int, units: int) -> None:
    import numpy as np

    t0 = time.perf_counter()
    _, scaled, starts, _ = floor(panel(n_series).values)
    flat = scaled.ravel()
    from spline_lstm import train
    from spline_lstm.config import HeadInit, ModelConfig, Revin, TrainingConfig
    from spline_lstm.model import build_model
    from spline_lstm.preprocess import WindowSource

    tf = train.import_tensorflow()
    import keras

    train.seed_everything(42, True)
    model = build_model(ModelConfig(units=units, head_init=HeadInit.default, revin=Revin.none), LOOKBACK, HORIZON,
                        1e-3, 1, 0)
    cfg = TrainingConfig(epochs=epochs, batch_size=batch, patience=0, shuffle=True)
    src_tr, src_va = WindowSource(flat, starts[0], LOOKBACK, HORIZON), WindowSource(flat, starts[1], LOOKBACK, HORIZON)
    marks, cpu = [], []  # wall and process CPU seconds at the start and at each epoch's end
    setup = time.perf_counter() - t0
    if mode == "framework":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            marks.append(t)
            cpu.append(time.process_time())
            train.fit(model, src_tr, src_va, cfg, 42, Path(tmp) / "staging",
                      on_epoch=lambda e, logs: (marks.append(time.perf_counter()), cpu.append(time.process_time())),
                      verbose=0)
            fit_s = time.perf_counter() - t
    else:
        x_tr, y_tr = src_tr.gather(src_tr.starts)
        x_va, y_va = src_va.gather(src_va.starts)

        class Marks(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                marks.append(time.perf_counter())
                cpu.append(time.process_time())

        t = time.perf_counter()
        marks.append(t)
        cpu.append(time.process_time())
        model.fit(x_tr, y_tr, validation_data=(x_va, y_va), epochs=epochs, batch_size=batch, shuffle=True,
                  callbacks=[Marks()], verbose=0)
        fit_s = time.perf_counter() - t
    epoch_s, epoch_cpu_s = list(np.diff(marks)), list(np.diff(cpu))
    emit({"mode": mode, "series": n_series, "train_windows": len(src_tr), "val_windows": len(src_va),
          "epochs": epochs, "batch_size": batch, "fit_s": fit_s, "epoch_s": epoch_s, "epoch_cpu_s": epoch_cpu_s,
          "cpu_per_window_us_steady": 1e6 * statistics.median(epoch_cpu_s[1:] or epoch_cpu_s) / len(src_tr),
          "setup_s": setup,
          "windows_per_s_steady": len(src_tr) / statistics.median(epoch_s[1:] or epoch_s),
          "windows_per_s_fit": epochs * len(src_tr) / fit_s,
          "peak_rss_mb": self_peak_rss_mb(), "tf": tf.__version__})


# --- the suite ---------------------------------------------------------------------------------

def alternate(rounds: int, cases: dict) -> dict:
    out = {k: [] for k in cases}
    names = list(cases)
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(cases[name]())
    return out


def child(*args: str, timeout: float = 600) -> dict:
    proc = run_proc([PYTHON, __file__, *args], env=child_env({"PYTHONPATH": str(REPO)}), timeout=timeout)
    doc = parse_emitted(proc.stdout)
    doc["wall_process_s"] = proc.wall_s
    return doc


def section_preprocess(sizes, repeat: int, loop_cap: int, results: dict, tables: list) -> None:
    log("checking the floor against the package (64 series)")
    results["floor_check"] = check_floor()
    log(f"floor check: {results['floor_check']}")
    rows, targets = {}, []
    for n in sizes:
        reps = repeat if n <= loop_cap else 1
        log(f"preprocess {n} series x {POINTS} points, {reps} round(s)")
        docs = alternate(reps, {"loop": lambda n=n: child("worker-preprocess", "loop", str(n)),
                                "floor": lambda n=n: child("worker-preprocess", "floor", str(n))})
        rows[n] = docs
    t = Table(f"Preprocessing N series x {POINTS} points, 5% gaps, seasonal fill (season {SEASON}), "
              "per-series loop vs vectorised floor",
              ["series", "points", "loop s median [min-max]", "floor s median [min-max]", "loop / floor (paired)",
               "loop per series ms", "loop stages s (validate / fill+scale / windows)",
               "floor stages s (validate / fill / scale / windows / concat)", "peak RSS over base MB (loop / floor)"])
    summary = {}
    for n, docs in rows.items():
        lp, fl = docs["loop"], docs["floor"]
        ls, fs = [d["seconds"] for d in lp], [d["seconds"] for d in fl]
        ratio = paired_ratio(ls, fs)
        med = lambda ds, k: statistics.median(d["stages"][k] for d in ds)  # noqa: E731
        rss = lambda ds: statistics.median(d["peak_rss_mb"] - d["rss_base_mb"] for d in ds)  # noqa: E731
        summary[n] = {"loop": stats(ls, 4), "floor": stats(fs, 4), "ratio": ratio,
                      "loop_stages": {k: round(med(lp, k), 4) for k in lp[0]["stages"]},
                      "floor_stages": {k: round(med(fl, k), 4) for k in fl[0]["stages"]},
                      "rss_over_base_mb": {"loop": round(rss(lp), 1), "floor": round(rss(fl), 1)},
                      "generate_s": round(statistics.median(d["generate_s"] for d in fl), 3)}
        s = summary[n]
        t.add(f"{n:,}", f"{n * POINTS:.0e}", _fmt(s["loop"]), _fmt(s["floor"]), ratio["median"],
              round(1000 * s["loop"]["median"] / n, 3),
              " / ".join(str(v) for v in s["loop_stages"].values()),
              " / ".join(str(v) for v in s["floor_stages"].values()),
              f"{s['rss_over_base_mb']['loop']} / {s['rss_over_base_mb']['floor']}")
    ns = list(summary)
    g_loop = growth_exponent([n * POINTS for n in ns], [summary[n]["loop"]["median"] for n in ns])
    g_floor = growth_exponent([n * POINTS for n in ns], [summary[n]["floor"]["median"] for n in ns])
    big = [n for n in ns if summary[n]["rss_over_base_mb"]["loop"] >= 5]  # smaller deltas are page noise
    g_rss = growth_exponent([n * POINTS for n in big], [summary[n]["rss_over_base_mb"]["loop"] for n in big])
    t.add("growth", "", f"n^{g_loop}", f"n^{g_floor}", "", "", "", "", f"loop n^{g_rss}")
    results["preprocess"] = {"sizes": summary, "growth": {"loop": g_loop, "floor": g_floor, "loop_rss": g_rss}}
    tables.append(t)
    for n in ns:
        targets.append({"target": f"3 preprocessing loop / vectorised floor at {n:,} series", "value":
                        summary[n]["ratio"]["median"], "limit": TARGET_LOOP_VS_FLOOR,
                        "met": summary[n]["ratio"]["median"] <= TARGET_LOOP_VS_FLOOR})
    targets.append({"target": "3 preprocessing time growth exponent (loop, linear = 1.0)", "value": g_loop,
                    "limit": 1.15, "met": g_loop is not None and g_loop <= 1.15})
    results.setdefault("targets", []).extend(targets)


def section_train(args, results: dict, tables: list) -> None:
    log(f"training throughput: {args.train_series} series, {args.epochs} epochs, batch {args.batch_size}, "
        f"{args.repeat} round(s)")
    common = [str(args.train_series), str(args.epochs), str(args.batch_size), str(args.units)]
    docs = alternate(args.repeat, {"framework": lambda: child("worker-train", "framework", *common),
                                   "plain": lambda: child("worker-train", "plain", *common)})
    fw, pl = docs["framework"], docs["plain"]
    steady_fw = [d["windows_per_s_steady"] for d in fw]
    steady_pl = [d["windows_per_s_steady"] for d in pl]
    fit_fw, fit_pl = [d["fit_s"] for d in fw], [d["fit_s"] for d in pl]
    # slowdown = plain throughput / framework throughput = framework time / plain time
    slow_steady = paired_ratio([1 / v for v in steady_fw], [1 / v for v in steady_pl])
    slow_fit = paired_ratio(fit_fw, fit_pl)
    cpu_fw, cpu_pl = [d["cpu_per_window_us_steady"] for d in fw], [d["cpu_per_window_us_steady"] for d in pl]
    slow_cpu = paired_ratio(cpu_fw, cpu_pl)
    t = Table(f"Training throughput: train.fit on streamed windows vs model.fit on NumPy arrays "
              f"({args.train_series} series x {POINTS} points, {fw[0]['train_windows']:,} training windows, "
              f"LSTM {args.units}, batch {args.batch_size}, {args.epochs} epochs)",
              ["case", "windows/s steady (epochs 2..) median [min-max]", "windows/s whole fit (incl. tracing)",
               "fit s median", "CPU us / window (steady)", "peak RSS MB", "time / plain (paired, steady epochs)",
               "time / plain (paired, fit)", "CPU / plain (paired, steady)"])
    t.add("train.fit (WindowSource -> tf.data, callbacks, checkpoints)", _fmt(stats(steady_fw, 0)),
          round(statistics.median(d["windows_per_s_fit"] for d in fw)), round(statistics.median(fit_fw), 2),
          round(statistics.median(cpu_fw), 1), round(statistics.median(d["peak_rss_mb"] for d in fw)),
          slow_steady["median"], slow_fit["median"], slow_cpu["median"])
    t.add("plain Keras model.fit(x, y) on materialised arrays", _fmt(stats(steady_pl, 0)),
          round(statistics.median(d["windows_per_s_fit"] for d in pl)), round(statistics.median(fit_pl), 2),
          round(statistics.median(cpu_pl), 1), round(statistics.median(d["peak_rss_mb"] for d in pl)), 1, 1, 1)
    tables.append(t)
    results["train"] = {"framework": fw, "plain": pl, "slowdown_steady": slow_steady, "slowdown_fit": slow_fit,
                        "cpu_ratio_steady": slow_cpu}
    results.setdefault("targets", []).append(
        {"target": "3 training time per steady epoch, train.fit / plain Keras (paired median)",
         "value": slow_steady["median"], "limit": TARGET_TRAIN, "met": slow_steady["median"] <= TARGET_TRAIN})


def _fmt(s: dict) -> str:
    return f"{s['median']} [{s['min']}-{s['max']}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="preprocess,train")
    ap.add_argument("--sizes", default=None, help="series counts (default 100,1000,10000; quick 100,1000)")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--loop-cap", type=int, default=1000, help="sizes above run once")
    ap.add_argument("--train-series", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--units", type=int, default=32)
    args = ap.parse_args()
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.epochs = 3 if args.quick and args.epochs == 4 else args.epochs
    args.train_series = args.train_series or (20 if args.quick else 50)
    sizes = [int(float(s)) for s in (args.sizes or ("100,1000" if args.quick else "100,1000,10000")).split(",")]
    sys.path.insert(0, str(BENCH_DIR))
    from run import machine

    started = time.time()
    results: dict = {"machine": machine(), "args": vars(args)}
    tables: list = []
    only = set(args.only.split(","))
    if "preprocess" in only:
        section_preprocess(sizes, args.repeat, args.loop_cap, results, tables)
    if "train" in only:
        section_train(args, results, tables)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["wall_s"] = round(time.time() - started, 1)
    tt = Table("Targets", ["target", "value", "limit", "met"])
    for tg in results.get("targets", []):
        tt.add(tg["target"], tg["value"], tg["limit"], "yes" if tg["met"] else "NO")
    tables.append(tt)
    md = "\n".join(tb.markdown() for tb in tables)
    md += f"\nfloor check: {json.dumps(results.get('floor_check'))}; wall {results['wall_s']} s\n"
    print(md)
    out = BENCH_DIR / "results" / (time.strftime("%Y-%m-%d") + f"-{results['machine']['host']}-scale"
                                   + ("-quick" if args.quick else "") + ("" if only == {"preprocess", "train"}
                                                                          else "-only-" + "-".join(sorted(only))))
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    out.with_suffix(".md").write_text(md)
    log(f"wrote {out}.json / .md")


BENCH_DIR = Path(__file__).resolve().parent

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker-preprocess":
        worker_preprocess(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "worker-train":
        worker_train(sys.argv[2], *(int(a) for a in sys.argv[3:7]))
    else:
        main()
