"""Model options against the naive baselines on the shared datasets.

Each case is a full ``launch.py`` run (tracking off, a temporary outputs folder);
the table gives the test rmse per variant as mean and range over seeds, beside
naive-last and seasonal-naive on the same windows (from the run's metrics JSON).

    python bench/model_options.py [--seeds 42 7 123] [--variants base rlz] [--datasets airline milk]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPLINE_LSTM_DATASETS", ROOT.parent.parent / "shared" / "datasets"))
if not SHARED.exists():
    SHARED = Path("/work/shared/datasets")
AIRLINE, MILK = SHARED / "airline-passengers.csv", SHARED / "monthly-milk-incomplete.csv"

DATASETS = {
    "airline": ["+preset=airline", f"data.path={AIRLINE}"],
    "milk": ["+preset=milk", f"data.path={MILK}"],
    "airline-plain": ["data=csv", f"data.path={AIRLINE}", "data.timestamp_col=Month", "data.target_col=Passengers"],
    "milk-plain": ["data=csv", f"data.path={MILK}", "data.timestamp_col=Month", "data.target_col=Pounds per cow"],
}
VARIANTS = {
    "base": ["model.head_init=default", "model.revin=none", "training.ensemble=1", "training.min_val_windows=0"],
    "zero": ["model.head_init=zeros", "model.revin=none", "training.ensemble=1", "training.min_val_windows=0"],
    "revin": ["model.head_init=default", "model.revin=last", "training.ensemble=1", "training.min_val_windows=0"],
    "rlz": ["model.head_init=zeros", "model.revin=last", "training.ensemble=1", "training.min_val_windows=0"],
    "rmz": ["model.head_init=zeros", "model.revin=mean", "training.ensemble=1", "training.min_val_windows=0"],
    "rlz+mv32": ["model.head_init=zeros", "model.revin=last", "training.ensemble=1", "training.min_val_windows=32"],
    "rlz+mv48": ["model.head_init=zeros", "model.revin=last", "training.ensemble=1", "training.min_val_windows=48"],
    "zero+mv48": ["model.head_init=zeros", "model.revin=none", "training.ensemble=1", "training.min_val_windows=48"],
    "rlz+ens3": ["model.head_init=zeros", "model.revin=last", "training.ensemble=3", "training.min_val_windows=0"],
    "zero+ens3": ["model.head_init=zeros", "model.revin=none", "training.ensemble=3", "training.min_val_windows=0"],
}


def run_case(outputs: Path, dataset: str, variant: str, seed: int) -> dict:
    run_id = f"bench-{dataset}-{variant}-{seed}".replace("+", "_")
    cmd = [sys.executable, str(ROOT / "launch.py"), *DATASETS[dataset], *VARIANTS[variant], f"seed={seed}",
           f"run_id={run_id}", f"paths.outputs_dir={outputs}", "tracking=none"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"ok": False, "wall": wall, "error": proc.stderr.strip().splitlines()[-1:]}
    doc = json.loads((outputs / "artifacts" / "metrics" / f"{run_id}.json").read_text())
    return {"ok": True, "wall": wall, "rmse": doc["metrics"]["rmse"], "best_epoch": doc.get("best_epoch"),
            **{name: b["rmse"] for name, b in doc["baselines"].items()}}


def fmt(values: list) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--json", type=Path, help="also write every case here")
    args = ap.parse_args()
    rows, cases = [], []
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        for dataset in args.datasets:
            for variant in args.variants:
                res = [run_case(Path(tmp), dataset, variant, s) for s in args.seeds]
                cases += [{"dataset": dataset, "variant": variant, "seed": s, **r} for s, r in zip(args.seeds, res)]
                ok = [r for r in res if r["ok"]]
                naive = ok[0].get("naive_last") if ok else None
                snaive = ok[0].get("seasonal_naive") if ok else None
                best = min(x for x in (naive, snaive) if x is not None) if ok else None
                wins = sum(r["rmse"] < best for r in ok) if ok else 0
                rows.append([dataset, variant, fmt([r["rmse"] for r in ok]), f"{naive:.2f}" if naive else "-",
                             f"{snaive:.2f}" if snaive else "-", f"{wins}/{len(res)}",
                             ",".join(str(r["best_epoch"]) for r in ok), f"{statistics.mean(r['wall'] for r in res):.0f}"])
                print(" | ".join(rows[-1]), flush=True)
    head = ["dataset", "variant", "test rmse mean [min-max]", "naive_last", "seasonal_naive", "beats best naive",
            "best epochs", "wall s"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.json:
        args.json.write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
