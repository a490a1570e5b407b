"""Covariates against the univariate model (docs/covariates.md, docs/performance.md).

Runs ``+preset=etth1`` (OT alone) and ``+preset=etth1-ms`` (OT + the six loads + the hour
through the per-step head) and their variants (``--only LABEL ...``) for a few seeds, and ``+preset=ili``, each a full run without MLflow, then
prints one table: test rmse in original units and, for ETTh1, the MSE under the Informer
protocol (z-score of OT fitted on the training rows [0, 8640), metrics on normalised values:
mse / std_train^2), with naive-last under the same protocol; ETTh2's OT the same way (the
etth1 presets on ETTh2.csv: the same columns and split). Each run's gate verdict, validation
rmse and best epoch go to stderr. Bounded: 30-90 s a run on two shared CPU cores.

    python bench/covariates.py --datasets ../shared/datasets --seeds 42 7
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FLAT = ["model.future_head=flat", "data.calendar=[hour,dayofweek]"]  # the preset before per_step
RUNS = {  # label -> (preset, dataset file, extra overrides)
    "etth1 (OT only)": ("etth1", "ETTh1.csv", []),
    "etth1-ms (preset)": ("etth1-ms", "ETTh1.csv", []),
    "etth1-ms without calendar": ("etth1-ms", "ETTh1.csv", ["data.calendar=[]"]),
    "etth1 + calendar only": ("etth1", "ETTh1.csv", ["data.calendar=[hour,dayofweek]"]),
    # the preset's calendar through the per-step head (model.future_head=per_step)
    "etth1-ms, hour + dayofweek, per_step head": ("etth1-ms", "ETTh1.csv", ["data.calendar=[hour,dayofweek]"]),
    # the earlier preset and its variants: hour + dayofweek flattened into the head (future_head=flat)
    "etth1-ms, hour + dayofweek, flat head": ("etth1-ms", "ETTh1.csv", FLAT),
    "etth1-ms, loads as levels, flat head": ("etth1-ms", "ETTh1.csv",
                                             [*FLAT, "preprocess.difference_past_covariates=false"]),
    "etth1-ms, flat head, hour only": ("etth1-ms", "ETTh1.csv", ["model.future_head=flat", "data.calendar=[hour]"]),
    "etth1-ms, flat head, lr 0.001": ("etth1-ms", "ETTh1.csv", [*FLAT, "training.learning_rate=0.001"]),
    "etth1-ms, flat head, dropout 0.2": ("etth1-ms", "ETTh1.csv", [*FLAT, "model.dropout=0.2"]),
    "etth1-ms, flat head, units 16": ("etth1-ms", "ETTh1.csv", [*FLAT, "model.units=16"]),
    "etth2 (OT only)": ("etth1", "ETTh2.csv", []),
    "etth2-ms (the etth1-ms preset)": ("etth1-ms", "ETTh2.csv", []),
    "etth2-ms, hour + dayofweek, flat head": ("etth1-ms", "ETTh2.csv", FLAT),
    "etth2-ms without calendar": ("etth1-ms", "ETTh2.csv", ["data.calendar=[]"]),
    "ili (4 past covariates + weekofyear)": ("ili", "ILINet.csv", []),
    "ili, per_step head": ("ili", "ILINet.csv", ["model.future_head=per_step"]),
    "ili without covariates": ("ili", "ILINet.csv", ["data.past_covariates=[]", "data.calendar=[]"]),
}


def run(preset: str, path: Path, extra: list, seed: int, out: Path) -> dict:
    run_id = f"{preset}-{path.stem}-{seed}-{abs(hash(tuple(extra))) % 10**6}"  # unique per file: one tmp dir
    cmd = [sys.executable, "launch.py", f"+preset={preset}", f"data.path={path}", f"seed={seed}", "tracking=none",
           f"paths.outputs_dir={out}", f"run_id={run_id}", "gate.quality=warn", *extra]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return json.loads((out / "artifacts" / "metrics" / f"{run_id}.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    ap.add_argument("--only", nargs="*", help="labels to run (default: all)")
    args = ap.parse_args()
    # the Informer protocol's scaler: population std of OT's training rows, per ETT file
    var = {f: float(np.std(pd.read_csv(args.datasets / f)["OT"].to_numpy()[:8640]) ** 2)
           for f in ("ETTh1.csv", "ETTh2.csv")}
    print("| setup | seed | test rmse | naive_last rmse | seasonal_naive rmse | norm. MSE | naive_last norm. MSE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bench-cov-") as tmp:
        for label, (preset, file, extra) in RUNS.items():
            if args.only and label not in args.only:
                continue
            for seed in args.seeds:
                m = run(preset, args.datasets / file, extra, seed, Path(tmp))
                b = m["baselines"]
                ett = file in var
                norm = f"{m['metrics']['mse'] / var[file]:.4f}" if ett else ""
                naive_norm = f"{b['naive_last']['mse'] / var[file]:.4f}" if ett else ""
                sn = b.get("seasonal_naive", {}).get("rmse", float("nan"))
                print(f"| {label} | {seed} | {m['metrics']['rmse']:.4f} | {b['naive_last']['rmse']:.4f} | "
                      f"{sn:.4f} | {norm} | {naive_norm} |", flush=True)
                skill = m.get("skill") or {}
                print(f"# {label}, seed {seed}: gate {skill.get('verdict')} against {skill.get('best_baseline')} "
                      f"{skill.get('best_baseline_rmse')}; val rmse {m['validation']['rmse']:.4f}, best epoch {m['best_epoch']}",
                      file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
