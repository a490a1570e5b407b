#!/usr/bin/env python
"""Forecast quality benchmark: the model against naive, seasonal-naive, ETS and Theta.

    python bench/quality.py                       # every case, 3 seeds (long: the lead runs it)
    python bench/quality.py --quick --cases synth-trend-season   # 1 seed, 2 epochs, one case
    python bench/quality.py --seeds 5 --cases airline,milk

Each case runs ``launch.py`` as a user would, once per seed, in a temp outputs dir
(``tracking=none``), with ``evaluation=backtest`` (``--folds`` folds in the test split,
one model per seed): so every number is a mean ± standard deviation over seeds x folds
(baselines and yardsticks do not depend on the seed, only on the fold). Cases:

- ``default-*``: only ``data=csv data.path=... timestamp/target columns`` (the defaults);
- ``airline``, ``milk``, ``etth1``: the presets on the shared datasets (../shared/datasets);
- ``synth-*``: generated series with known structure (trend, one or two seasons, noise,
  gaps), written as CSV and run with the defaults.

Writes ``bench/results/quality.md`` (the table) and ``quality.json`` (every run's numbers);
``--out NAME`` changes the file names. A run that exits non-zero is still read when its
metrics exist (a strict preset that is unskilled exits 12: that is a result, not a crash).
"""
from __future__ import annotations

import argparse
import json
import math
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
SHOWN = ("model", "naive_last", "seasonal_naive", "ets", "theta")


def synthetic_csv(folder: Path, name: str, n: int, freq: str, seasons: List[tuple], trend: float, noise: float,
                  gap_ratio: float, seed: int = 7) -> Path:
    """A series with known structure: level 50 + trend*t + sum of sine seasons (period,
    amplitude) + Gaussian noise, with ``gap_ratio`` of its rows removed (absent timestamps)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 50 + trend * t + sum(a * np.sin(2 * np.pi * t / p) for p, a in seasons) + rng.normal(0, noise, n)
    frame = pd.DataFrame({"timestamp": pd.date_range("2000-01-01", periods=n, freq=freq), "value": y})
    if gap_ratio:
        drop = rng.choice(np.arange(1, n - 1), size=int(gap_ratio * n), replace=False)
        frame = frame.drop(index=drop)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def cases(folder: Path) -> Dict[str, List[str]]:
    """name -> launch.py overrides."""
    def csv(path, ts, target):
        return ["data=csv", f"data.path={path}", f"data.timestamp_col={ts}", f"data.target_col={target}"]

    airline = csv(DATASETS / "airline-passengers.csv", "Month", "Passengers")
    milk = csv(DATASETS / "monthly-milk-incomplete.csv", "Month", "Pounds per cow")
    etth1 = csv(DATASETS / "ETTh1.csv", "date", "OT")
    out = {
        "default-airline": airline,
        "default-milk": milk,
        "airline": ["+preset=airline", f"data.path={DATASETS / 'airline-passengers.csv'}"],
        "milk": ["+preset=milk", f"data.path={DATASETS / 'monthly-milk-incomplete.csv'}"],
        "etth1": ["+preset=etth1", f"data.path={DATASETS / 'ETTh1.csv'}"],
        "default-etth1": etth1 + ["preprocess.split_indices=[8640,11520,14400]"],
    }
    synth = {  # name: (points, freq, seasons, trend, noise, gaps)
        "synth-trend-season": (240, "MS", [(12, 10.0)], 0.3, 1.0, 0.0),
        "synth-two-seasons": (1200, "h", [(24, 6.0), (168, 4.0)], 0.0, 1.0, 0.0),
        "synth-noisy": (240, "MS", [(12, 5.0)], 0.1, 4.0, 0.0),
        "synth-gaps": (240, "MS", [(12, 10.0)], 0.3, 1.0, 0.05),
    }
    for name, (n, freq, seasons, trend, noise, gaps) in synth.items():
        out[name] = csv(synthetic_csv(folder, name, n, freq, seasons, trend, noise, gaps), "timestamp", "value") + [
            f"data.freq={freq}"]
    return out


def run_case(name: str, overrides: List[str], seeds: List[int], folds: int, quick: bool, outputs: Path) -> dict:
    runs = []
    for seed in seeds:
        run_id = f"quality-{name}-s{seed}"
        args = [sys.executable, str(REPO / "launch.py"), *overrides, f"seed={seed}", f"run_id={run_id}",
                "tracking=none", f"paths.outputs_dir={outputs}", "evaluation=backtest", f"evaluation.folds={folds}"]
        if quick:
            args.append("training.epochs=2")
        t0 = time.perf_counter()
        proc = run_proc(args, env=child_env(), timeout=3600, check=False)
        wall = time.perf_counter() - t0
        metrics = outputs / "artifacts" / "metrics" / f"{run_id}.json"
        doc = json.loads(metrics.read_text()) if metrics.is_file() else None
        runs.append({"seed": seed, "exit": proc.returncode, "wall_s": round(wall, 2), "metrics": doc,
                     "error": None if doc else (proc.stderr.strip().splitlines() or [""])[-1][:300]})
        print(f"{name} seed {seed}: exit {proc.returncode} in {wall:.0f} s", flush=True)
    return {"case": name, "overrides": overrides, "runs": runs}


def pooled(runs: List[dict], forecaster: str, metric: str) -> List[float]:
    """Every fold's value of every seed's run."""
    out = []
    for r in runs:
        bt = ((r["metrics"] or {}).get("backtest") or {}).get("per_fold") or {}
        out += [f[metric] for f in bt.get(forecaster, []) if isinstance(f.get(metric), (int, float))
                and math.isfinite(f[metric])]
    return out


def mean_sd(values: List[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {sd:.2g}"


def table(results: List[dict], seeds: int, folds: int, quick: bool) -> str:
    lines = [f"# Forecast quality: model vs baselines ({seeds} seed(s) x {folds} backtest folds"
             f"{', quick: 2 epochs' if quick else ''})", "",
             "rmse and mase: mean ± standard deviation over seeds x folds (evaluation=backtest, refit=false; "
             "the baselines do not depend on the seed). skill: runs whose backtest-mean rmse beats every "
             "baseline. Original units, observed targets only.", "",
             "| case | " + " | ".join(f"{n} rmse" for n in SHOWN) + " | model mase | best baseline mase | skill | "
             "wall s / run |", "|---" * (len(SHOWN) + 5) + "|"]
    for res in results:
        runs = [r for r in res["runs"] if r["metrics"]]
        if not runs:
            err = res["runs"][0]["error"] if res["runs"] else ""
            lines.append(f"| {res['case']} | failed: {err} |" + " |" * (len(SHOWN) + 3))
            continue
        cells = [mean_sd(pooled(runs, n, "rmse")) for n in SHOWN]
        names = set((runs[0]["metrics"].get("backtest") or {}).get("aggregate", {})) - {"model"}
        base_mase = {n: statistics.fmean(v) for n in names if (v := pooled(runs, n, "mase"))}
        best = min(base_mase, key=base_mase.get) if base_mase else None
        skilled = sum((r["metrics"].get("skill") or {}).get("verdict") == "SKILLED" for r in runs)
        wall = statistics.fmean(r["wall_s"] for r in res["runs"])
        lines.append(f"| {res['case']} | " + " | ".join(cells) + f" | {mean_sd(pooled(runs, 'model', 'mase'))} | "
                     + (f"{base_mase[best]:.4g} ({best})" if best else "n/a") + f" | {skilled}/{len(runs)} | "
                     f"{wall:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per case (default 3; --quick: 1)")
    ap.add_argument("--folds", type=int, default=3, help="backtest folds in the test split (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs: proves the machinery, not the model")
    ap.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    ap.add_argument("--out", default="quality", help="file stem under bench/results (default: quality)")
    args = ap.parse_args(argv)
    seeds = list(range(42, 42 + (1 if args.quick else args.seeds)))
    with tempfile.TemporaryDirectory(prefix="spline-lstm-quality-") as tmp:
        folder = Path(tmp)
        all_cases = cases(folder)
        chosen = args.cases.split(",") if args.cases else list(all_cases)
        unknown = [c for c in chosen if c not in all_cases]
        if unknown:
            ap.error(f"unknown case(s) {unknown}; known: {', '.join(all_cases)}")
        results = [run_case(c, all_cases[c], seeds, args.folds, args.quick, folder / "outputs") for c in chosen]
    text = table(results, len(seeds), args.folds, args.quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
