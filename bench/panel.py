#!/usr/bin/env python
"""Many series: one global model vs one model per series, on the 14 ETT series.

    nice python bench/panel.py --quick     # ~3 min: 2 epochs, 1 seed, 4 series run alone
    nice python bench/panel.py             # ~30 min: the preset's defaults, global x 3 seeds, 14 series x 2 seeds
    nice python bench/panel.py --seeds 42 --single-seeds 42 --series ETTh1:OT,ETTh2:OT
    nice python bench/panel.py --seeds none --single-settings preset   # per-series runs with etth1's own training

The global model is ``+preset=ett-multi`` on ETTh1.csv + ETTh2.csv (7 columns each, ids
``<file stem>:<column>``); each per-series model is ``+preset=etth1`` on one column of one file
(``data.path``, ``data.target_col``) with the global run's training settings (epochs, batch size,
learning rate, patience; ``--single-settings preset``: the etth1 preset's own, 10 epochs of batch 128)
and ``gate.quality=warn``. Both use the Informer split, lookback 96,
horizon 24, first differences and a per-series standard scaler, so every series is scored on
the same test windows; the bench checks that by comparing the baselines' MASE of each series in
the two kinds of run (they do not depend on the model).

Every run is ``launch.py`` as a user runs it, in a temp outputs/artifacts dir, ``tracking=none``.
Per seed: the global run first, then the per-series runs, so load drift on a shared machine hits
both. Reads ``metrics/<run_id>.json`` (``series.per_series`` of the global run; ``metrics`` and
``baselines`` of a per-series run) and ``metadata/<run_id>.json`` (``timings_s``).

Writes ``bench/results/<date>-<host>-panel[-quick].{json,md}`` (after each seed, so an
interrupted run keeps what it measured); ``--out NAME`` changes the stem.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, child_env, run_proc  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results"
FILES = ("ETTh1", "ETTh2")
COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ALL_SERIES = [f"{f}:{c}" for f in FILES for c in COLUMNS]
QUICK_SERIES = ["ETTh1:HUFL", "ETTh1:OT", "ETTh2:HUFL", "ETTh2:OT"]
BASELINES = ("naive_last", "seasonal_naive")
YARDSTICKS = ("ets", "theta")
KEPT = ("mase", "rmse", "mae")
TRAINING = ("epochs", "batch_size", "learning_rate", "patience")


def log(msg: str) -> None:
    print(f"[panel {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def global_args(epochs: Optional[int]) -> List[str]:
    return ["+preset=ett-multi", f"data.path={DATASETS / 'ETTh1.csv'}", f"data.paths=[{DATASETS / 'ETTh2.csv'}]"] + (
        [f"training.epochs={epochs}"] if epochs else [])


def single_args(series: str, training: Dict[str, object]) -> List[str]:
    """One column of one file with ``training`` overrides (the global run's settings, or none)."""
    stem, column = series.split(":")
    return ["+preset=etth1", f"data.path={DATASETS / (stem + '.csv')}", f"data.target_col={column}",
            "gate.quality=warn"] + [f"training.{k}={v}" for k, v in training.items()]


def launch(run_id: str, overrides: List[str], seed: int, outputs: Path) -> dict:
    """One launch.py run; its metrics and metadata documents (None when absent) and times."""
    args = [sys.executable, str(REPO / "launch.py"), *overrides, f"seed={seed}", f"run_id={run_id}",
            "tracking=none", f"paths.outputs_dir={outputs / 'outputs'}", f"paths.artifacts_dir={outputs / 'artifacts'}"]
    proc = run_proc(args, env=child_env(), timeout=3600, check=False)
    art = outputs / "artifacts"
    read = lambda p: json.loads(p.read_text()) if p.is_file() else None  # noqa: E731
    metrics, meta = read(art / "metrics" / f"{run_id}.json"), read(art / "metadata" / f"{run_id}.json")
    timings = (meta or {}).get("timings_s") or {}
    return {"run_id": run_id, "seed": seed, "exit": proc.returncode, "wall_s": round(proc.wall_s, 2),
            "cpu_s": round(proc.user_s + proc.sys_s, 2), "peak_rss_mb": round(proc.peak_rss_mb, 1),
            "fit_s": timings.get("fit"), "yardsticks_s": timings.get("yardsticks"),
            "epochs_run": (metrics or {}).get("epochs_run"), "test_windows": (metrics or {}).get("test_windows"),
            "metrics": metrics, "training": ((meta or {}).get("config") or {}).get("training"),
            "error": None if metrics else (proc.stderr.strip().splitlines() or [""])[-1][:300]}


def trim(scores: Dict[str, dict]) -> Dict[str, Dict[str, float]]:
    """forecaster -> the kept metrics (model and the baselines the table shows)."""
    return {name: {k: scores[name].get(k) for k in KEPT} for name in ("model", *BASELINES, *YARDSTICKS)
            if name in scores}


def global_scores(run: dict) -> Dict[str, Dict[str, Dict[str, float]]]:
    per = ((run["metrics"] or {}).get("series") or {}).get("per_series") or {}
    return {sid: trim(scores) for sid, scores in per.items()}


def single_scores(run: dict) -> Dict[str, Dict[str, float]]:
    m = run["metrics"] or {}
    return trim({"model": m.get("metrics") or {}, **(m.get("baselines") or {})})


def fmean(values: List[float]) -> Optional[float]:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def summarise(doc: dict) -> dict:
    """Per series: the global and the per-series model (mean over seeds), the baselines; aggregates."""
    series = doc["series"]
    glob = [g for g in doc["global_runs"] if g["scores"]]
    rows, check = [], []
    for sid in series:
        singles = [r for r in doc["single_runs"] if r["series"] == sid and r["scores"]]
        g = [run["scores"][sid] for run in glob if sid in run["scores"]]
        row = {"series": sid,
               "global_mase": fmean([s["model"]["mase"] for s in g]),
               "global_rmse": fmean([s["model"]["rmse"] for s in g]),
               "global_mase_by_seed": [s["model"]["mase"] for s in g],
               "single_mase": fmean([r["scores"]["model"]["mase"] for r in singles]),
               "single_rmse": fmean([r["scores"]["model"]["rmse"] for r in singles]),
               "single_mase_by_seed": [r["scores"]["model"]["mase"] for r in singles]}
        base_src = g[0] if g else (singles[0]["scores"] if singles else {})
        for b in BASELINES:
            row[f"{b}_mase"] = (base_src.get(b) or {}).get("mase")
            row[f"{b}_rmse"] = (base_src.get(b) or {}).get("rmse")
        if g and singles:  # same test windows: the baselines agree between the two kinds of run
            check += [abs(g[0][b]["mase"] - singles[0]["scores"][b]["mase"]) for b in BASELINES]
        rows.append(row)

    def agg(key: str, how) -> Optional[float]:
        vals = [r[key] for r in rows if r[key] is not None]
        return how(vals) if vals else None

    cols = ["global", "single", *BASELINES]
    aggregate = {c: {"mase_mean": agg(f"{c}_mase", statistics.fmean),
                     "mase_median": agg(f"{c}_mase", statistics.median)} for c in cols}
    per_seed_global = [fmean([run["scores"][s]["model"]["mase"] for s in series if s in run["scores"]]) for run in glob]
    seeds_single = sorted({r["seed"] for r in doc["single_runs"]})
    per_seed_single = [fmean([r["scores"]["model"]["mase"] for r in doc["single_runs"]
                              if r["seed"] == s and r["scores"]]) for s in seeds_single]
    both = [r for r in rows if r["global_mase"] is not None and r["single_mase"] is not None]
    wall_single = {s: sum(r["wall_s"] for r in doc["single_runs"] if r["seed"] == s) for s in seeds_single}
    fit_single = {s: sum(r["fit_s"] or 0 for r in doc["single_runs"] if r["seed"] == s) for s in seeds_single}
    return {
        "rows": rows, "aggregate": aggregate,
        "global_mean_mase_by_seed": per_seed_global, "single_mean_mase_by_seed": per_seed_single,
        "global_wins": sum(r["global_mase"] < r["single_mase"] for r in both), "compared": len(both),
        "global_beats_seasonal_naive": sum(r["global_mase"] < r["seasonal_naive_mase"] for r in both),
        "single_beats_seasonal_naive": sum(r["single_mase"] < r["seasonal_naive_mase"] for r in both),
        "baseline_max_abs_diff": max(check) if check else None,
        "wall_s": {"global_by_seed": [g["wall_s"] for g in doc["global_runs"]],
                   "single_total_by_seed": [round(wall_single[s], 1) for s in seeds_single]},
        "fit_s": {"global_by_seed": [g["fit_s"] for g in doc["global_runs"]],
                  "single_total_by_seed": [round(fit_single[s], 1) for s in seeds_single]},
        "cpu_s": {"global_by_seed": [g["cpu_s"] for g in doc["global_runs"]],
                  "single_total_by_seed": [round(sum(r["cpu_s"] for r in doc["single_runs"] if r["seed"] == s), 1)
                                           for s in seeds_single]},
        "preset_verdicts": [((g.get("skill") or {}).get("verdict"), (g.get("skill") or {}).get("best_baseline"))
                            for g in doc["global_runs"]],
    }


def f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def single_training(doc: dict) -> str:
    """The per-series runs' training settings, as read back from their metadata."""
    done = [r["training"] for r in doc["single_runs"] if r.get("training")]
    settings = {k: done[0][k] for k in TRAINING} if done else None
    return f"{settings} ({'the etth1 preset' if doc.get('single_settings') == 'preset' else 'the global run'}'s)"


def markdown(doc: dict) -> str:
    s = doc["summary"]
    seeds_g = [g["seed"] for g in doc["global_runs"]]
    seeds_s = sorted({r["seed"] for r in doc["single_runs"]})
    lines = [f"# Many series: one global model vs one model per series ({doc['mode']}, {doc['date']}, "
             f"host {doc['host']})",
             "", f"Global: `{' '.join(doc['global_overrides'])}`, seeds {seeds_g}; per series: `+preset=etth1 "
             f"data.path=<file> data.target_col=<column> gate.quality=warn`, training "
             f"{single_training(doc)}, seeds {seeds_s}. Test split rows [11520, 14400) of each series, "
             "24-step horizon, "
             "MASE (scaled by the in-sample seasonal-naive error) and rmse in original units; model columns are the "
             "mean over seeds. Baselines' MASE differ by at most "
             f"{f(s['baseline_max_abs_diff'], 6)} between the two kinds of run (same test windows).", "",
             "| series | global MASE | per-series MASE | naive_last MASE | seasonal_naive MASE | global rmse | "
             "per-series rmse | better |", "|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        better = ("global" if r["global_mase"] < r["single_mase"] else "per-series") if (
            r["global_mase"] is not None and r["single_mase"] is not None) else ""
        lines.append(f"| {r['series']} | {f(r['global_mase'])} | {f(r['single_mase'])} | {f(r['naive_last_mase'])} | "
                     f"{f(r['seasonal_naive_mase'])} | {f(r['global_rmse'])} | {f(r['single_rmse'])} | {better} |")
    a = s["aggregate"]
    for key, label in (("mase_mean", "**mean MASE**"), ("mase_median", "**median MASE**")):
        lines.append(f"| {label} | {f(a['global'][key])} | {f(a['single'][key])} | {f(a['naive_last'][key])} | "
                     f"{f(a['seasonal_naive'][key])} | | | |")
    w, c, cpu = s["wall_s"], s["fit_s"], s["cpu_s"]
    lines += ["", f"- global better on {s['global_wins']}/{s['compared']} series; beats seasonal_naive on "
              f"{s['global_beats_seasonal_naive']}/{s['compared']} (per-series models: "
              f"{s['single_beats_seasonal_naive']}/{s['compared']}).",
              f"- mean MASE by seed: global {[f(v) for v in s['global_mean_mase_by_seed']]}, per-series "
              f"{[f(v) for v in s['single_mean_mase_by_seed']]}; the preset's own gate verdict (mean MASE over all 14 "
              f"vs the best baseline) by seed: {s['preset_verdicts']}.",
              f"- wall s per seed: global run {w['global_by_seed']}, {len(doc['series'])} per-series runs together "
              f"{w['single_total_by_seed']}; of which fit s: global {c['global_by_seed']}, per-series "
              f"{c['single_total_by_seed']}; CPU s: global {cpu['global_by_seed']}, per-series "
              f"{cpu['single_total_by_seed']}.",
              f"- total bench wall {doc.get('bench_wall_s', 'n/a')} s on {doc['cpus']} CPU(s) (shared machine; "
              "children nice'd when the bench is)."]
    failed = [r for r in doc["global_runs"] + doc["single_runs"] if not r["scores"]]
    if failed:
        lines.append(f"- failed runs: {[(r['run_id'], r['exit'], r['error']) for r in failed]}")
    return "\n".join(lines) + "\n"


def write(doc: dict, stem: str) -> Path:
    doc["summary"] = summarise(doc)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str))
    (RESULTS / f"{stem}.md").write_text(markdown(doc))
    return RESULTS / f"{stem}.md"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 epochs, seed 42, series " + ",".join(QUICK_SERIES))
    ap.add_argument("--seeds", default=None,
                    help="global model seeds (default 42,43,44; --quick: 42; none: no global run)")
    ap.add_argument("--single-settings", choices=("global", "preset"), default="global",
                    help="per-series training: the global run's epochs/batch/lr/patience (default) or etth1's own")
    ap.add_argument("--single-seeds", default=None, help="per-series seeds (default 42,43; --quick: 42)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="training.epochs of the global run, which the per-series runs copy (default: the preset's; "
                         "--quick: 2)")
    ap.add_argument("--series", default=None, help="per-series runs for these ids only (default: all 14; --quick: 4)")
    ap.add_argument("--out", default=None, help="file stem under bench/results (default <date>-<host>-panel[-quick])")
    args = ap.parse_args(argv)
    seeds = [] if args.seeds == "none" else [
        int(v) for v in (args.seeds or ("42" if args.quick else "42,43,44")).split(",")]
    single_seeds = [int(v) for v in (args.single_seeds or ("42" if args.quick else "42,43")).split(",")]
    epochs = args.epochs or (2 if args.quick else None)
    series = args.series.split(",") if args.series else (QUICK_SERIES if args.quick else ALL_SERIES)
    unknown = [s for s in series if s not in ALL_SERIES]
    if unknown:
        ap.error(f"unknown series {unknown}; known: {', '.join(ALL_SERIES)}")
    host = socket.gethostname()
    stem = args.out or f"{dt.date.today().isoformat()}-{host}-panel" + ("-quick" if args.quick else "")
    doc = {"mode": "quick" if args.quick else "full", "date": dt.datetime.now().isoformat(timespec="seconds"),
           "host": host, "cpus": len(__import__("os").sched_getaffinity(0)), "series": series,
           "global_overrides": ["+preset=ett-multi"] + ([f"training.epochs={epochs}"] if epochs else []),
           "training": None, "single_settings": args.single_settings, "global_runs": [], "single_runs": []}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spline-lstm-panel-") as tmp:
        out = Path(tmp)
        for seed in sorted(set(seeds) | set(single_seeds)):
            if seed in seeds:
                run = launch(f"panel-global-s{seed}", global_args(epochs), seed, out)
                log(f"global seed {seed}: exit {run['exit']} in {run['wall_s']:.0f} s (fit {run['fit_s']} s)")
                if run["training"] and doc["training"] is None:
                    doc["training"] = {k: run["training"][k] for k in TRAINING}
                doc["global_runs"].append({**{k: v for k, v in run.items() if k not in ("metrics", "training")},
                                           "skill": (run["metrics"] or {}).get("skill"),
                                           "aggregate": (run["metrics"] or {}).get("metrics"),
                                           "baselines_aggregate": (run["metrics"] or {}).get("baselines"),
                                           "scores": global_scores(run)})
            if seed in single_seeds:
                training = {} if args.single_settings == "preset" else doc["training"] or {
                    "epochs": epochs or 6, "batch_size": 512, "learning_rate": 0.002, "patience": 2}
                for sid in series:
                    run = launch(f"panel-{sid.replace(':', '-')}-s{seed}", single_args(sid, training), seed, out)
                    log(f"{sid} seed {seed}: exit {run['exit']} in {run['wall_s']:.0f} s")
                    doc["single_runs"].append({**{k: v for k, v in run.items() if k not in ("metrics", "training")},
                                               "series": sid, "training": run["training"],
                                               "scores": single_scores(run) if run["metrics"] else None})
            doc["bench_wall_s"] = round(time.perf_counter() - t0, 1)
            path = write(doc, stem)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
