"""Gap-filling benchmark: delete known points from complete seasonal series, fill them
with each ``preprocess.interpolation`` method, score the fills against the truth.

    python bench/gapfill.py              # ~10 s on 2 cores; prints the table
    python bench/gapfill.py --write      # and writes it into docs/quality.md

Series (../shared/datasets, see SOURCES.txt): airline passengers (monthly, season 12)
and ETTh1 OT (hourly, season 24, all 17 420 points). Deletion patterns: isolated
single points (5% of the series) and runs of 2..max_gap consecutive points (about 10%
of the series in runs; max_gap 6 for monthly, 24 for hourly), never the first or last
point. Each pattern is drawn with several seeds; the table shows rmse / mae over the
deleted points (mean and min-max over seeds), per row the best method in bold, and in
how many seeds the seasonal fill beat pchip (the previous default).
The fill is ``transforms.fill_gaps`` on one split (the whole series is reachable, as
in ``predict``), i.e. the code path training and predict use.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spline_lstm.preprocessing import transforms  # noqa: E402
from spline_lstm.core.config import Interpolation  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"  # ../shared/datasets, as in the README (--datasets elsewhere)
METHODS = ("linear", "pchip", "akima", "cubic", "seasonal")
BEGIN, END = "<!-- gapfill:begin -->", "<!-- gapfill:end -->"


def series(datasets: Path) -> dict:
    air = pd.read_csv(datasets / "airline-passengers.csv")["Passengers"].to_numpy(np.float64)
    ett = pd.read_csv(datasets / "ETTh1.csv", usecols=["OT"])["OT"].to_numpy(np.float64)
    return {"airline (monthly, m=12)": (air, 12, 6), "ETTh1 OT (hourly, m=24)": (ett, 24, 24)}


def deletion_mask(n: int, pattern: str, max_gap: int, rng: np.random.Generator) -> np.ndarray:
    """Points to delete: isolated singles (5%) or runs of 2..max_gap (about 10%),
    runs separated by at least one observed point; never the first or last point."""
    mask = np.zeros(n, dtype=bool)
    if pattern == "single":
        idx = rng.choice(np.arange(1, n - 1), size=max(1, n // 20), replace=False)
        mask[idx] = True
        return mask
    target = n // 10
    while mask.sum() < target:
        length = int(rng.integers(2, max_gap + 1))
        start = int(rng.integers(1, n - length - 1))
        if mask[start - 1:start + length + 1].any():
            continue
        mask[start:start + length] = True
    return mask


def score(truth: np.ndarray, season: int, mask: np.ndarray) -> dict:
    values = truth.copy()
    values[mask] = np.nan
    bounds = np.array([0, len(values), len(values), len(values)])
    out = {}
    for method in METHODS:
        filled = transforms.fill_gaps(values, bounds, Interpolation(method), season)
        err = filled[mask] - truth[mask]
        out[method] = (float(np.sqrt(np.mean(err ** 2))), float(np.mean(np.abs(err))))
    return out


def table(datasets: Path, seeds: int) -> str:
    rows = ["| series | deletions | metric | " + " | ".join(METHODS) + " | seasonal < pchip |",
            "|---|---|---|" + "---|" * (len(METHODS) + 1)]
    for name, (truth, season, max_gap) in series(datasets).items():
        for pattern in ("single", "runs"):
            runs = [score(truth, season, deletion_mask(len(truth), pattern, max_gap, np.random.default_rng(s)))
                    for s in range(seeds)]
            label = "single points (5%)" if pattern == "single" else f"runs of 2-{max_gap} (10%)"
            for k, metric in enumerate(("rmse", "mae")):
                vals = {m: np.array([r[m][k] for r in runs]) for m in METHODS}
                best = min(METHODS, key=lambda m: vals[m].mean())
                cells = []
                for m in METHODS:
                    v = vals[m]
                    cell = f"{v.mean():.3g} ({v.min():.3g}-{v.max():.3g})"
                    cells.append(f"**{cell}**" if m == best else cell)
                wins = int((vals["seasonal"] < vals["pchip"]).sum())
                rows.append(f"| {name} | {label} | {metric} | " + " | ".join(cells) + f" | {wins}/{seeds} seeds |")
    return "\n".join(rows)


def write(doc: Path, text: str) -> None:
    """Replace the block between the gapfill markers of ``doc``."""
    page = doc.read_text(encoding="utf-8")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="deletion draws per pattern (default 10)")
    ap.add_argument("--datasets", type=Path, default=DATASETS, help="folder with the shared CSV files")
    ap.add_argument("--write", action="store_true", help="write the table into docs/quality.md")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    text = table(args.datasets, args.seeds)
    text += (f"\n\n{args.seeds} deletion seeds per pattern; mean (min-max over seeds); "
             f"`python bench/gapfill.py --seeds {args.seeds}` took {time.perf_counter() - t0:.0f} s.")
    print(text)
    if args.write:
        write(REPO / "docs" / "quality.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
