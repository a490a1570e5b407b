#!/usr/bin/env python
"""Tracking server on PostgreSQL vs the embedded SQLite store, on one machine.

    python bench/server.py [--repeat N] [--jobs 8] [--n-jobs 4] [--skip-logging]

1. The same 8-job sweep (joblib, ``--n-jobs`` in parallel, smoke preset, 1 epoch, 300
   points) with the embedded store, with ``tracking=server`` and with ``tracking=none``,
   alternating per repeat: sweep wall time, and per job the time the pipeline waited on
   tracking (``timings_s``: ``tracking_preflight`` + ``mlflow`` from each run's metadata),
   plus the server's PostgreSQL connections at their peak.
2. Logging throughput, metrics/s into one run (bench/server_logging.py): one value per
   request and 1000 per request, one client and four in parallel, through the server and
   into SQLite.

PostgreSQL and the server come from tests/helpers/postgres.py (loopback ports, temp
folders, stopped by pid). Writes bench/results/<date>-<host>-server[-sweeps].json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import BENCH, PYTHON, REPO, Table, child_env, parse_emitted, run_proc, stats, write_results  # noqa: E402

from tests.helpers.postgres import tracking_server  # noqa: E402

TINY = ["+preset=smoke", "training.epochs=1", "data.n_points=300"]


def sweep(outputs: Path, store_args: List[str], jobs: int, n_jobs: int) -> Dict:
    seeds = ",".join(str(s) for s in range(1, jobs + 1))
    proc = run_proc([PYTHON, REPO / "launch.py", "-m", *TINY, f"seed={seeds}", "hydra/launcher=joblib",
                     f"hydra.launcher.n_jobs={n_jobs}", f"paths.outputs_dir={outputs}", *store_args], timeout=900)
    waits = []
    for meta in (outputs / "artifacts" / "metadata").glob("*.json"):
        t = json.loads(meta.read_text())["timings_s"]
        waits.append(t.get("tracking_preflight", 0.0) + t.get("mlflow", 0.0))
    assert len(waits) == jobs, f"{len(waits)} of {jobs} jobs wrote metadata"
    return {"wall_s": proc.wall_s, "tracking_wait_s": waits}


def logging_rate(uri: str, mode: str, metrics: int, clients: int, experiment: str) -> Dict:
    """Aggregate metrics/s of ``clients`` processes that start logging together."""
    start_at = time.time() + 8.0  # after every client's MLflow import
    procs = [subprocess.Popen([PYTHON, BENCH / "server_logging.py", uri, "--mode", mode, "--metrics",
                               str(metrics), "--experiment", experiment, "--start-at", str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for _ in range(clients)]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"logging client failed: {err[-2000:]}")
        docs.append(parse_emitted(out))
    span = max(d["end"] for d in docs) - min(d["start"] for d in docs)
    return {"per_s": round(metrics * clients / span, 1), "clients": clients, "metrics_each": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--n-jobs", type=int, default=4)
    ap.add_argument("--skip-logging", action="store_true")
    args = ap.parse_args()
    results: Dict = {"machine": {"host": platform.node(), "python": platform.python_version(),
                                 "load_before": list(__import__("os").getloadavg())},
                     "sweeps": {}, "logging": {}}
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    t_start = time.time()
    with tracking_server(workers=2) as (pg, srv):
        results["server_start_s"] = round(srv.starts[0], 2)
        stores = {"embedded SQLite (default)": [],
                  "server (tracking=server, PostgreSQL)": ["tracking=server", f"tracking.uri={srv.url}"],
                  "none (tracking=none)": ["tracking=none"]}
        peak = [0]
        for rep in range(args.repeat):
            order = list(stores) if rep % 2 == 0 else list(reversed(stores))
            for name in order:
                store_args = stores[name] + (["tracking.experiment=bench-sweep"] if "server" in name else [])
                sampling = threading.Event()

                def sample() -> None:
                    while not sampling.wait(0.5):
                        peak[0] = max(peak[0], pg.connections())

                sampler = threading.Thread(target=sample, daemon=True)
                if "server" in name:
                    sampler.start()
                res = sweep(work / f"{rep}-{len(results['sweeps'].get(name, []))}-{name.split()[0]}", store_args,
                            args.jobs, args.n_jobs)
                sampling.set()
                results["sweeps"].setdefault(name, []).append(res)
                print(f"{name}: {res['wall_s']:.1f} s", flush=True)
        results["peak_db_connections"] = peak[0]
        if not args.skip_logging:
            cases = [("server", srv.url), ("sqlite", f"sqlite:///{work / 'logging.db'}")]
            for label, uri in cases:
                for mode, n in (("single", 300), ("batch", 20000)):
                    for clients in ((1, 4) if label == "server" else (1,)):
                        key = f"{label} {mode} x{clients}"
                        results["logging"][key] = logging_rate(uri, mode, n, clients, f"log-{mode}-{clients}")
                        print(f"{key}: {results['logging'][key]['per_s']} metrics/s", flush=True)
    results["machine"]["load_after"] = list(__import__("os").getloadavg())
    results["total_s"] = round(time.time() - t_start, 1)

    sweeps = Table(f"{args.jobs}-job sweep (joblib, n_jobs={args.n_jobs}), one machine",
                   ["tracking store", "sweep wall s (median)", "per-job wait on tracking s, median [max]",
                    "wall vs none"])
    base = statistics.median(r["wall_s"] for r in results["sweeps"]["none (tracking=none)"])
    for name, runs in results["sweeps"].items():
        walls = [r["wall_s"] for r in runs]
        waits = [w for r in runs for w in r["tracking_wait_s"]]
        sweeps.add(name, stats(walls, 1)["median"], f"{statistics.median(waits):.2f} [{max(waits):.2f}]",
                   f"{statistics.median(walls) / base:.2f}")
    tables = [sweeps]
    if results["logging"]:
        rates = Table("Logging throughput into one run (metrics/s, aggregate)", ["store", "request", "clients",
                                                                                  "metrics/s"])
        for key, res in results["logging"].items():
            label, mode, clients = key.split()
            rates.add(label, "1 value per request" if mode == "single" else "1000 values per request",
                      clients[1:], res["per_s"])
        tables.append(rates)
    text = "\n".join(t.markdown() for t in tables)
    text += (f"\nserver start (PostgreSQL schema created): {results['server_start_s']} s; peak PostgreSQL "
             f"connections during the server sweeps: {results['peak_db_connections']}; total {results['total_s']} s\n")
    print(text)
    out = write_results("server" + ("-sweeps" if args.skip_logging else ""), results, text)
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    main()
