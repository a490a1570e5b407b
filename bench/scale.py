#!/usr/bin/env python
"""Many series on one machine (issue 14, item 3), on today's single-series code paths.

    python bench/scale.py [--quick] [--only preprocess,train,train-scale] [--sizes 100,1000,10000]
                          [--repeat 3] [--train-series 50] [--epochs 4] [--batch-size 1024]
                          [--scale-sizes 100,1000,10000] [--steps 40] [--scale-repeat 2]

preprocess: N related series x 1,000 points with 5% gaps (``spline_lstm.data.synthetic``,
  season 24), the chain a run applies to its series (trim, split, input rules, causal
  seasonal gap fill, train-only standard scaling, window starts) as
  (a) ``package``: what the package does for a panel (spans, ``check_series``,
      ``fill_gaps``, ``fit_scalers_panel``, ``window_starts`` into the flattened panel),
  (b) ``floor``: the least vectorised computation of the same numbers (one span for all,
      rules without the suspects' re-check, the package's private row kernels on blocks of
      250 series: linear pre-fill, classical seasonal index, PCHIP slopes and Hermite cubic),
  (c) ``loop``: the single-series functions one series after another (``check_series``,
      ``Preprocessor.fit``, ``window_starts``), the reference the other two must equal:
      checked to 1e-9 before anything is timed.
  Each case is its own process (wall of the chain only, peak RSS over the RSS after the
  panel was generated); the cases alternate; growth exponents over the sizes.
train: windows/s of ``train.fit`` on streamed windows (a ``WindowSource`` over the
  flattened panel: starts never cross a series) vs ``model.fit`` on the same windows
  materialised as NumPy arrays (the plain Keras loop of bench/plain_keras.py), same
  model (plain LSTM, ``build_model`` with head_init=default, revin=none), seed, batch,
  epochs, shuffling and op determinism; both validate on the same windows each epoch.
  Steady state: training windows / the median seconds of epochs 2.. (epoch 1 traces);
  framework and plain alternate, ratios are paired (the machine is shared and noisy).

train-scale: training at --scale-sizes (default 100,1000,10000) series x 1,000 points on
  the run's panel path (``Preprocessor.fit``, ``transforms.window_starts``, one
  ``WindowSource`` over the flattened panel), a fixed number of steps an epoch (a full
  epoch at 10^4 series is 7 * 10^6 windows): ``model.fit`` on ``train.to_dataset`` with
  ``steps_per_epoch`` (one iterator: the shuffle is paid once, epochs 2.. are steady steps)
  vs ``model.fit`` on the same number of windows materialised as arrays (``plain``); and
  ``buffer`` at the largest size: the framework with the shuffle buffer forced on
  whatever the size (what ``to_dataset`` did before ``SHUFFLE_BUFFER_MAX``). Also the
  cost of starting an epoch (a fresh iterator's first batch: a buffer fills here), the
  WindowSource bytes, peak RSS over the RSS with TensorFlow loaded, growth exponents.

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
TARGET_PACKAGE_VS_FLOOR, TARGET_TRAIN = 3.0, 1.1


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def panel(n: int, points: int = POINTS, seed: int = 0):
    from spline_lstm.data.synthetic import related_series

    return related_series(n, points, period=SEASON, seed=seed, gap_ratio=GAPS, gap_stretches=1,
                          k_past=0, k_future=0)


def preprocess_cfg():
    from spline_lstm.core.config import DataConfig, Interpolation, PreprocessConfig

    return (PreprocessConfig(interpolation=Interpolation.seasonal, lookback=LOOKBACK, horizon=HORIZON,
                             difference=0), DataConfig(season=SEASON))


# --- (c) the single-series functions, one series at a time ---------------------------------------------------

def loop(values):
    """The single-series chain, per series: -> (filled, scaled, starts per split, stage seconds)."""
    import numpy as np

    from spline_lstm.preprocessing import transforms
    from spline_lstm.preprocessing.preprocessor import Preprocessor

    p, d = preprocess_cfg()
    secs = {"validate": 0.0, "fill_scale": 0.0, "windows": 0.0}
    filled, scaled, starts = [], [], []
    for i, row in enumerate(values):
        t0 = time.perf_counter()
        lo, hi = transforms.observed_span(row)
        v = row[lo:hi]
        bounds = transforms.split_bounds(len(v), p)
        transforms.check_series(v, bounds, p, f"series {i}")
        t1 = time.perf_counter()
        _, f, s = Preprocessor.fit(v, bounds, p, run_id="bench", data=d, freq="h", last_timestamp="",
                                   where=f"series {i}")
        t2 = time.perf_counter()
        st = [transforms.window_starts(bounds, k, p.lookback, p.horizon, p.difference) for k in range(3)]
        t3 = time.perf_counter()
        secs["validate"] += t1 - t0
        secs["fill_scale"] += t2 - t1
        secs["windows"] += t3 - t2
        filled.append(f)
        scaled.append(s)
        starts.append(st)
    return np.stack(filled), np.stack(scaled), starts, secs


# --- (a) the package on a panel ------------------------------------------------------------------

def package(values):
    """The package's many-series chain -> (filled, scaled, global starts per split, stage seconds)."""
    import numpy as np

    from spline_lstm.data import panel
    from spline_lstm.preprocessing import transforms
    from spline_lstm.core.config import Scaling

    p, d = preprocess_cfg()
    n, t = values.shape
    secs = {}
    t0 = time.perf_counter()
    assert (~np.isnan(values)).any(axis=1).all(), "a series with no observed value"
    spans = panel.spans(values)
    bounds = transforms.split_bounds(t, p)
    transforms.check_series(values, bounds, p, [f"series {i}" for i in range(n)], spans)
    t1 = time.perf_counter()
    filled = transforms.fill_gaps(values, bounds, p.interpolation, d.season, spans)
    t2 = time.perf_counter()
    centers, scales = transforms.fit_scalers_panel(Scaling.standard, filled[:, : bounds[1]])
    scaled = ((filled - centers[:, None]) / scales[:, None]).astype(np.float32)
    t3 = time.perf_counter()
    starts = [transforms.window_starts(bounds, k, p.lookback, p.horizon, p.difference, spans, t) for k in range(3)]
    t4 = time.perf_counter()
    secs.update(validate=t1 - t0, fill=t2 - t1, scale=t3 - t2, windows=t4 - t3)
    return filled, scaled, starts, secs


# --- (b) the vectorised floor ------------------------------------------------------------------

def floor(values, block: int = 0):
    """The same chain vectorised over the panel -> (filled, scaled, global starts per split, stage
    seconds), ``block`` series at a time (default ``transforms.PANEL_BLOCK``): whole-panel
    temporaries at 10^7 points (80 MB each) cost more in page faults than the per-block Python
    overhead (10^4 series: 4.4 s in one block, 1.9 s in blocks of 250)."""
    import numpy as np

    from spline_lstm.preprocessing.transforms import PANEL_BLOCK

    block = block or PANEL_BLOCK
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

    from spline_lstm.preprocessing import transforms
    from spline_lstm.preprocessing.transforms import _linear_prefill_rows, _pchip_rows, _seasonal_rows

    p, _ = preprocess_cfg()
    n, t = values.shape
    secs = {}
    t0 = time.perf_counter()
    obs = ~np.isnan(values)
    assert obs[:, 0].all() and obs[:, -1].all(), "the floor assumes observed ends (nothing to trim)"
    bounds = transforms.split_bounds(t, p)
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
        effect = _seasonal_rows(_linear_prefill_rows(sub, o), SEASON, o)
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
    starts = [(offsets + transforms.window_starts(bounds, k, p.lookback, p.horizon, p.difference)).ravel()
              for k in range(3)]
    t4 = time.perf_counter()
    secs.update(validate=t1 - t0, fill=t2 - t1, scale=t3 - t2, windows=t4 - t3)
    return filled, scaled, starts, secs


def check_floor(n: int = 64) -> dict:
    """The package and the floor compute what the single-series loop computes (else no floor)."""
    import numpy as np

    values = panel(n, seed=123).values
    f1, s1, st1, _ = loop(values)
    ref = [np.concatenate([st1[i][k] + i * values.shape[1] for i in range(n)]) for k in range(3)]
    out = {"series": n}
    for name, fn in (("package", package), ("floor", floor)):
        f2, s2, st2, _ = fn(values)
        out[name] = {"max_abs_diff_filled": float(np.max(np.abs(f1 - f2))),
                     "max_abs_diff_scaled": float(np.max(np.abs(s1.astype(np.float64) - s2))),
                     "same_starts": all(np.array_equal(ref[k], st2[k]) for k in range(3))}
        o = out[name]
        assert o["max_abs_diff_filled"] < 1e-9 and o["max_abs_diff_scaled"] < 1e-5 and o["same_starts"], out
    return out


# --- workers (one process per case) ---------------------------------------------------------------

def worker_preprocess(mode: str, n: int) -> None:
    import numpy as np  # noqa: F401

    from spline_lstm.preprocessing import transforms  # noqa: F401  (imports outside the timing)
    from spline_lstm.preprocessing import preprocessor
    import scipy.interpolate  # noqa: F401

    t = time.perf_counter()
    values = panel(n).values
    gen_s = time.perf_counter() - t
    base = self_peak_rss_mb()
    t = time.perf_counter()
    _, _, _, secs = {"loop": loop, "package": package, "floor": floor}[mode](values)
    wall = time.perf_counter() - t
    emit({"mode": mode, "series": n, "points": int(values.size), "seconds": wall, "stages": secs,
          "generate_s": gen_s, "rss_base_mb": base, "peak_rss_mb": self_peak_rss_mb()})


def worker_train(mode: str, n_series: int, epochs: int, batch: int, units: int) -> None:
    import numpy as np

    t0 = time.perf_counter()
    _, scaled, starts, _ = floor(panel(n_series).values)
    flat = scaled.ravel()
    from spline_lstm.models import train
    from spline_lstm.core.config import HeadInit, ModelConfig, Revin, TrainingConfig
    from spline_lstm.models.network import build_model
    from spline_lstm.preprocessing.transforms import WindowSource

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


def worker_train_scale(mode: str, n_series: int, steps: int, epochs: int, batch: int, units: int) -> None:
    """One size, one case (``framework``, ``buffer``, ``plain``): steady windows/s over
    ``steps`` batches an epoch, the epoch start cost, bytes and peak RSS."""
    import numpy as np

    from spline_lstm.data import panel
    from spline_lstm.preprocessing import transforms
    from spline_lstm.models import train
    from spline_lstm.core.config import HeadInit, ModelConfig, Revin
    from spline_lstm.models.network import build_model
    from spline_lstm.preprocessing.preprocessor import Preprocessor

    tf = train.import_tensorflow()
    import keras

    base = self_peak_rss_mb()
    values = panel(n_series).values
    t0 = time.perf_counter()
    p, d = preprocess_cfg()
    spans = panel.spans(values)
    bounds = transforms.split_bounds(values.shape[1], p)
    _, _, scaled = Preprocessor.fit(values, bounds, p, run_id="bench", data=d, freq="h", last_timestamp="",
                                    where="bench", spans=spans, ids=tuple(f"s{k}" for k in range(n_series)))
    del values
    starts = transforms.window_starts(bounds, 0, LOOKBACK, HORIZON, 0, spans, scaled.shape[1])
    src = transforms.WindowSource(scaled.ravel(), starts, LOOKBACK, HORIZON)
    prep_s = time.perf_counter() - t0
    rss_prep = self_peak_rss_mb()
    if mode == "buffer":
        train.SHUFFLE_BUFFER_MAX = len(src)  # the buffer whatever the size (the code before the limit)
    train.seed_everything(42, True)
    model = build_model(ModelConfig(units=units, head_init=HeadInit.default, revin=Revin.none), LOOKBACK, HORIZON,
                        1e-3, 1, 0)
    marks, cpu = [], []

    class Marks(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter())
            cpu.append(time.process_time())

    start_s = None
    if mode == "plain":
        pick = np.random.default_rng(0).choice(len(src), size=steps * batch, replace=False)
        x, y = src.gather(src.starts[np.sort(pick)])
        marks.append(time.perf_counter())
        cpu.append(time.process_time())
        model.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True, callbacks=[Marks()], verbose=0)
    else:
        ds = train.to_dataset(src, batch, True, 42)
        t = time.perf_counter()
        next(iter(ds))  # the cost of starting an epoch (a fresh iterator; a shuffle buffer fills here)
        start_s = time.perf_counter() - t
        marks.append(time.perf_counter())
        cpu.append(time.process_time())
        model.fit(ds.repeat(), steps_per_epoch=steps, epochs=epochs, callbacks=[Marks()], verbose=0)
    epoch_s, epoch_cpu_s = list(np.diff(marks)), list(np.diff(cpu))
    steady = statistics.median(epoch_s[1:] or epoch_s)
    emit({"mode": mode, "series": n_series, "points": int(scaled.size), "train_windows": len(src),
          "steps": steps, "epochs": epochs, "batch_size": batch, "prep_s": prep_s, "epoch_s": epoch_s,
          "epoch_start_s": start_s, "windows_per_s_steady": steps * batch / steady,
          "cpu_per_window_us_steady": 1e6 * statistics.median(epoch_cpu_s[1:] or epoch_cpu_s) / (steps * batch),
          "source_bytes": src.nbytes, "bytes_per_point": src.nbytes / scaled.size,
          "shuffle": "buffer" if mode == "buffer" or (mode == "framework" and len(src) <= train.SHUFFLE_BUFFER_MAX)
          else ("permutation" if mode == "framework" else "keras arrays"),
          "rss_tf_mb": base, "rss_prep_mb": rss_prep, "peak_rss_mb": self_peak_rss_mb(), "tf": tf.__version__})


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
    log("checking the package and the floor against the single-series loop (64 series)")
    results["floor_check"] = check_floor()
    log(f"check: {results['floor_check']}")
    rows, targets = {}, []
    modes = ("package", "floor", "loop")
    for n in sizes:
        reps = repeat if n <= loop_cap else 1
        log(f"preprocess {n} series x {POINTS} points, {reps} round(s)")
        rows[n] = alternate(reps, {m: (lambda n=n, m=m: child("worker-preprocess", m, str(n))) for m in modes})
    t = Table(f"Preprocessing N series x {POINTS} points, 5% gaps, seasonal fill (season {SEASON}): the package's "
              "panel path vs the vectorised floor (and the single-series loop)",
              ["series", "points", "package s median [min-max]", "floor s median [min-max]",
               "package / floor (paired)", "loop s median", "loop / floor (paired)",
               "package stages s (validate / fill / scale / windows)",
               "floor stages s (validate / fill / scale / windows / concat)",
               "peak RSS over base MB (package / floor / loop)"])
    summary = {}
    med = lambda ds, k: statistics.median(d["stages"][k] for d in ds)  # noqa: E731
    rss = lambda ds: statistics.median(d["peak_rss_mb"] - d["rss_base_mb"] for d in ds)  # noqa: E731
    for n, docs in rows.items():
        secs = {m: [d["seconds"] for d in docs[m]] for m in modes}
        summary[n] = {**{m: stats(secs[m], 4) for m in modes},
                      "ratio": paired_ratio(secs["package"], secs["floor"]),
                      "loop_ratio": paired_ratio(secs["loop"], secs["floor"]),
                      "stages": {m: {k: round(med(docs[m], k), 4) for k in docs[m][0]["stages"]} for m in modes},
                      "rss_over_base_mb": {m: round(rss(docs[m]), 1) for m in modes},
                      "generate_s": round(statistics.median(d["generate_s"] for d in docs["floor"]), 3)}
        sm = summary[n]
        t.add(f"{n:,}", f"{n * POINTS:.0e}", _fmt(sm["package"]), _fmt(sm["floor"]), sm["ratio"]["median"],
              sm["loop"]["median"], sm["loop_ratio"]["median"],
              " / ".join(str(v) for v in sm["stages"]["package"].values()),
              " / ".join(str(v) for v in sm["stages"]["floor"].values()),
              " / ".join(str(sm["rss_over_base_mb"][m]) for m in modes))
    ns = list(summary)
    pts = [n * POINTS for n in ns]
    growth = {m: growth_exponent(pts, [summary[n][m]["median"] for n in ns]) for m in modes}
    big = [n for n in ns if summary[n]["rss_over_base_mb"]["package"] >= 5]  # smaller deltas are page noise
    growth["package_rss"] = growth_exponent([n * POINTS for n in big],
                                            [summary[n]["rss_over_base_mb"]["package"] for n in big])
    t.add("growth", "", f"n^{growth['package']}", f"n^{growth['floor']}", "", f"n^{growth['loop']}", "", "", "",
          f"package n^{growth['package_rss']}")
    results["preprocess"] = {"sizes": summary, "growth": growth}
    tables.append(t)
    for n in ns:
        targets.append({"target": f"3 preprocessing package / vectorised floor at {n:,} series", "value":
                        summary[n]["ratio"]["median"], "limit": TARGET_PACKAGE_VS_FLOOR,
                        "met": summary[n]["ratio"]["median"] <= TARGET_PACKAGE_VS_FLOOR})
    g = growth["package"]
    targets.append({"target": "3 preprocessing time growth exponent (package, linear = 1.0)", "value": g,
                    "limit": 1.15, "met": g is not None and g <= 1.15})
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


def section_train_scale(args, results: dict, tables: list) -> None:
    sizes = [int(float(v)) for v in args.scale_sizes.split(",")]
    common = [str(args.steps), str(args.epochs), str(args.batch_size), str(args.units)]
    rows = {}
    for n in sizes:
        cases = {m: (lambda n=n, m=m: child("worker-train-scale", m, str(n), *common)) for m in ("framework", "plain")}
        log(f"train-scale {n} series: {', '.join(cases)}, {args.steps} steps x {args.epochs} epochs, batch "
            f"{args.batch_size}")
        rows[n] = alternate(args.scale_repeat, cases)
        if n == sizes[-1]:
            rows[n]["buffer"] = [child("worker-train-scale", "buffer", str(n), *common)]
    t = Table(f"Training at N series x {POINTS} points on the panel path: steady windows/s over {args.steps} "
              f"steps of {args.batch_size} an epoch (epochs 2..{args.epochs}), LSTM {args.units}",
              ["series", "training windows", "case (shuffle)", "windows/s steady median [min-max]",
               "time / plain (paired)", "CPU / plain (paired)", "CPU us / window", "epoch start s (first batch)",
               "full epoch s (start + windows / rate)",
               "WindowSource MB (bytes / point)", "peak RSS over TF-loaded MB", "prep s (fit_panel + starts)"])
    summary = {}
    med = lambda ds, k: statistics.median(d[k] for d in ds)  # noqa: E731
    for n, docs in rows.items():
        pl = docs["plain"]
        for m, ds in docs.items():
            d = ds[0]
            rate, start = med(ds, "windows_per_s_steady"), d["epoch_start_s"] and med(ds, "epoch_start_s")
            full = (start or 0) + d["train_windows"] / rate
            pair = min(len(ds), len(pl))
            wall = paired_ratio([1 / x["windows_per_s_steady"] for x in ds[:pair]],
                                [1 / x["windows_per_s_steady"] for x in pl[:pair]])
            cpu = paired_ratio([x["cpu_per_window_us_steady"] for x in ds[:pair]],
                               [x["cpu_per_window_us_steady"] for x in pl[:pair]])
            summary.setdefault(n, {})[m] = {
                "windows_per_s": round(rate), "rounds": len(ds), "time_ratio": wall, "cpu_ratio": cpu,
                "cpu_per_window_us": round(med(ds, "cpu_per_window_us_steady"), 2),
                "epoch_start_s": start, "full_epoch_s": round(full, 1),
                "source_bytes": d["source_bytes"], "rss_over_tf_mb": round(statistics.median(
                    x["peak_rss_mb"] - x["rss_tf_mb"] for x in ds), 1),
                "train_windows": d["train_windows"], "shuffle": d["shuffle"]}
            sm = summary[n][m]
            t.add(f"{n:,}", f"{d['train_windows']:,}", f"{m} ({d['shuffle']}), {len(ds)} round(s)",
                  _fmt(stats([x["windows_per_s_steady"] for x in ds], 0)), wall["median"], cpu["median"],
                  sm["cpu_per_window_us"], "" if start is None else round(start, 2),
                  round(full, 1) if m != "plain" else "",
                  f"{d['source_bytes'] / 2**20:.1f} ({d['bytes_per_point']:.1f})",
                  sm["rss_over_tf_mb"], round(med(ds, "prep_s"), 2))
    ns = [n for n in sizes if n in summary]
    growth = {"source_bytes": growth_exponent(ns, [summary[n]["framework"]["source_bytes"] for n in ns]),
              "time_per_window_framework": growth_exponent(ns, [1 / summary[n]["framework"]["windows_per_s"]
                                                                for n in ns]),
              "cpu_per_window_framework": growth_exponent(ns, [summary[n]["framework"]["cpu_per_window_us"]
                                                               for n in ns]),
              "time_per_window_plain": growth_exponent(ns, [1 / summary[n]["plain"]["windows_per_s"] for n in ns]),
              "rss_over_tf_framework": growth_exponent(ns, [summary[n]["framework"]["rss_over_tf_mb"] for n in ns])}
    t.add("growth", "", "framework", f"time/window n^{growth['time_per_window_framework']}", "", "",
          f"n^{growth['cpu_per_window_framework']}", "", "", f"n^{growth['source_bytes']}",
          f"n^{growth['rss_over_tf_framework']}", "")
    tables.append(t)
    results["train_scale"] = {"rows": rows, "summary": summary, "growth": growth}
    for n in ns:
        for what, key in (("time", "time_ratio"), ("CPU", "cpu_ratio")):
            r = summary[n]["framework"][key]["median"]
            results.setdefault("targets", []).append(
                {"target": f"3 training {what} per window at {n:,} series, framework / plain Keras (paired)",
                 "value": r, "limit": TARGET_TRAIN, "met": r <= TARGET_TRAIN})


def _fmt(s: dict) -> str:
    return f"{s['median']} [{s['min']}-{s['max']}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="preprocess,train")
    ap.add_argument("--sizes", default=None, help="series counts (default 100,1000,10000; quick 100,1000)")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--loop-cap", type=int, default=1000, help="sizes above run once (every case)")
    ap.add_argument("--train-series", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--scale-sizes", default="100,1000,10000", help="train-scale: series counts")
    ap.add_argument("--steps", type=int, default=40, help="train-scale: batches an epoch")
    ap.add_argument("--scale-repeat", type=int, default=2, help="train-scale: rounds (framework, plain alternate)")
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
    if "train-scale" in only:
        section_train_scale(args, results, tables)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["wall_s"] = round(time.time() - started, 1)
    tt = Table("Targets", ["target", "value", "limit", "met"])
    for tg in results.get("targets", []):
        tt.add(tg["target"], tg["value"], tg["limit"], "yes" if tg["met"] else "NO")
    tables.append(tt)
    md = "\n".join(tb.markdown() for tb in tables)
    md += f"\ncheck against the single-series loop: {json.dumps(results.get('floor_check'))}; wall {results['wall_s']} s\n"
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
    elif len(sys.argv) > 1 and sys.argv[1] == "worker-train-scale":
        worker_train_scale(sys.argv[2], *(int(a) for a in sys.argv[3:8]))
    elif len(sys.argv) > 1 and sys.argv[1] == "worker-train":
        worker_train(sys.argv[2], *(int(a) for a in sys.argv[3:7]))
    else:
        main()
