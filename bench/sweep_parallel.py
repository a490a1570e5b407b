#!/usr/bin/env python
"""A parallel sweep against the same sweep run one job after another.

    python bench/sweep_parallel.py [--rounds 3] [--n-jobs 2,4] [--seeds 1,2,3,4]

Each round runs ``launch.py -m +preset=smoke seed=1,2,3,4 tracking=none`` once with the
basic launcher (sequential) and once per ``--n-jobs`` K with ``hydra/launcher=joblib
hydra.launcher.n_jobs=K``, in an order that rotates from round to round, each in its own
temp output folder. Per command: wall seconds and CPU seconds (user + sys of the sweep's
process and the joblib workers it reaped), median/min/max; per K: the paired ratio
parallel/sequential within a round (below 1: the parallel sweep is faster), and the
workers the sweep actually started (``threads.parallel_jobs`` in each job's metadata).
The machine's usable cores and load average before and after are recorded. Writes
bench/results/<date>-<host>-sweep-parallel.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, REPO, Table, child_env, paired_ratio, run_proc, stats, write_results  # noqa: E402


def sweep(outputs: Path, seeds: str, n_jobs: int) -> Dict:
    """One sweep (n_jobs 0: the basic launcher, one job after another)."""
    args = [PYTHON, REPO / "launch.py", "-m", "+preset=smoke", f"seed={seeds}", f"paths.outputs_dir={outputs}",
            "tracking=none"]
    if n_jobs:
        args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
    proc = run_proc(args, env=child_env({"PYTHONPATH": str(REPO)}), timeout=600)
    workers = sorted({json.loads(p.read_text())["threads"]["parallel_jobs"]
                      for p in (outputs / "artifacts" / "metadata").glob("*.json")})
    return {"wall_s": round(proc.wall_s, 2), "cpu_s": round(proc.user_s + proc.sys_s, 2), "workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-jobs", default="2,4", help="comma-separated K of the parallel sweeps")
    ap.add_argument("--seeds", default="1,2,3,4", help="the sweep: one job per seed")
    args = ap.parse_args()
    variants = [0] + [int(k) for k in args.n_jobs.split(",")]
    name = {k: f"n_jobs={k}" if k else "sequential" for k in variants}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    results: Dict = {"machine": {"host": platform.node(), "cores": len(os.sched_getaffinity(0)),
                                 "load_before": [round(x, 2) for x in os.getloadavg()], "commit": commit},
                     "command": f"launch.py -m +preset=smoke seed={args.seeds} tracking=none",
                     "runs": {name[k]: [] for k in variants}}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]  # rotate: no fixed slot
            for k in order:
                res = sweep(Path(tmp) / f"{r}-{k}", args.seeds, k)
                results["runs"][name[k]].append(res)
                print(f"round {r + 1} {name[k]}: {res}", flush=True)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    seq = results["runs"]["sequential"]
    table = Table(f"{len(args.seeds.split(','))}-job smoke sweep, {results['machine']['cores']} cores, "
                  f"{args.rounds} rounds (load {results['machine']['load_before'][0]} -> "
                  f"{results['machine']['load_after'][0]}), commit {commit}",
                  ["launcher", "workers", "wall s (median, min-max)", "cpu s (median)",
                   "wall / sequential (paired median, min-max)"])
    for k in variants:
        runs = results["runs"][name[k]]
        wall, cpu = stats([x["wall_s"] for x in runs], 2), stats([x["cpu_s"] for x in runs], 2)
        ratio = paired_ratio([x["wall_s"] for x in runs], [x["wall_s"] for x in seq]) if k else {}
        results.setdefault("summary", {})[name[k]] = {"wall_s": wall, "cpu_s": cpu, "ratio": ratio}
        table.add(name[k], ",".join(str(w) for w in sorted({w for x in runs for w in x["workers"]})),
                  f"{wall['median']} ({wall['min']}-{wall['max']})", cpu["median"],
                  f"{ratio['median']} ({ratio['min']}-{ratio['max']})" if ratio else "1")
    text = table.markdown()
    print(text)
    out = write_results("sweep-parallel", results, text)
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
