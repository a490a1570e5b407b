"""Do the defaults beat the naive baselines? Runs the pipeline on the small shared
series with nothing but ``data=csv data.path=… data.timestamp_col=… data.target_col=…``,
once with the previous preprocessing defaults ("before": pchip fill, levels,
lookback 24) and once with the season-aware ones ("after": interpolation auto,
difference auto, lookback auto), and prints test rmse beside naive_last and
seasonal_naive (the season is inferred in both, so seasonal naive is always scored).

    python bench/defaults_check.py                       # 3 series x 2 configs x 2 seeds, ~5 min
    python bench/defaults_check.py --seeds 1 --series airline

Each run is a child process (``launch.py``, tracking off, a temp outputs folder).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"  # ../shared/datasets, as in the README (--datasets elsewhere)

SERIES = {
    "airline": ("airline-passengers.csv", "Month", "Passengers"),
    "milk": ("monthly-milk-incomplete.csv", "Month", "Pounds per cow"),
    "ilinet": ("ILINet.csv", "DATE", "% WEIGHTED ILI"),
    "etth1": ("ETTh1.csv", "date", "OT"),  # large: not in the default list
}
CONFIGS = {
    "before": ["preprocess.interpolation=pchip", "preprocess.difference=0", "preprocess.lookback=24"],
    "after": ["preprocess.interpolation=auto", "preprocess.difference=auto", "preprocess.lookback=auto"],
}


def run_one(out: Path, name: str, config: str, seed: int, datasets: Path, extra: list) -> dict:
    file, ts, target = SERIES[name]
    run_id = f"check-{name}-{config}-{seed}"
    args = [sys.executable, str(REPO / "launch.py"), "data=csv", f"data.path={datasets / file}",
            f"data.timestamp_col={ts}", f"data.target_col={target}", *CONFIGS[config], f"seed={seed}",
            "tracking=none", f"paths.outputs_dir={out}", f"run_id={run_id}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"series": name, "config": config, "seed": seed, "error": proc.stderr.strip()[-300:]}
    arts = out / "artifacts"
    metrics = json.loads((arts / "metrics" / f"{run_id}.json").read_text())
    meta = json.loads((arts / "metadata" / f"{run_id}.json").read_text())
    base = {k: v["rmse"] for k, v in metrics["baselines"].items()}
    ch = meta.get("choices") or {}
    return {"series": name, "config": config, "seed": seed, "rmse": metrics["metrics"]["rmse"],
            "naive_last": base.get("naive_last"), "seasonal_naive": base.get("seasonal_naive"),
            "epochs": metrics["epochs_run"], "best_epoch": metrics["best_epoch"], "wall_s": round(wall, 1),
            "choice": f"{ch.get('interpolation')}, diff {ch.get('difference')}, lookback {ch.get('lookback')}"}


def render(rows: list) -> str:
    lines = ["| series | defaults | seed | model rmse | naive_last | seasonal_naive | vs best naive | "
             "fill, difference, lookback | epochs (best) | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['series']} | {r['config']} | {r['seed']} | failed: {r['error']} |||||||")
            continue
        best = min(x for x in (r["naive_last"], r["seasonal_naive"]) if x is not None)
        pct = (best - r["rmse"]) / best * 100
        lines.append(f"| {r['series']} | {r['config']} | {r['seed']} | {r['rmse']:.4g} | {r['naive_last']:.4g} | "
                     f"{r['seasonal_naive']:.4g} | {'better' if pct > 0 else 'worse'} by {abs(pct):.1f}% | "
                     f"{r['choice']} | {r['epochs']} ({r['best_epoch']}) | {r['wall_s']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="airline,milk,ilinet", help=f"comma list of {', '.join(SERIES)}")
    ap.add_argument("--configs", default="before,after")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--datasets", type=Path, default=DATASETS)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("extra", nargs="*", help="more overrides for every run (e.g. training.epochs=5)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="defaults-check-") as tmp:
        for name in args.series.split(","):
            for config in args.configs.split(","):
                for seed in range(args.seeds):
                    rows.append(run_one(Path(tmp), name, config, seed, args.datasets, args.extra))
                    print(render(rows[-1:]).splitlines()[-1], flush=True)
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
