#!/usr/bin/env python
"""spline-lstm benchmark suite: one command, a table, a JSON record.

    python bench/run.py            full run (7-11 minutes on 2 CPU cores)
    python bench/run.py --quick    smaller sizes, fewer repeats (about 4 minutes)
    python bench/run.py --only smoke,commands [--repeat 3] [--keep]

Every timed case runs in its own child process: wall time is spawn-to-reap, peak RSS
is that child's own (resource.struct_rusage from wait4). Each ratio is measured
side by side in this invocation (commands alternate or rotate: A B, B A, ...), so drift
of a shared machine cancels out. Results: a markdown table on stdout and
``bench/results/<date>-<host>[-quick][-only-SECTIONS].json`` (plus a ``.md`` copy).

Sections (the numbers refer to the performance issue):
  smoke       1 smoke end to end (tracking on, warm store): wall, peak RSS, stages
              2 framework overhead vs bench/plain_keras.py at smoke size
              6 gate cost as a share of the smoke run
  large       2 framework overhead on a series where a run takes about a minute
  preprocess  3 load -> validate -> regularise -> spline -> scale -> windows at
              1e5 / 1e6 / 1e7 points, CSV and Parquet, vs a pandas read floor
  windows     4 streamed windows at 1e7 points, lookback 168
  commands    5 commands that do not train: wall time, heavy imports
  hashing     6 ``health`` on a run with a 100 MB processed.npz
Nothing is written under the repository except bench/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BENCH, PYTHON, REPO, Proc, Table, child_env, growth_exponent,  # noqa: E402
                    paired_ratio, parse_emitted, run_proc, stats)

LAUNCH = str(REPO / "launch.py")
# pipeline stages (RunContext.stage names), in the order they run
STAGES = ("tracking_preflight", "load_validate", "spline", "scale_window", "mlflow", "artifacts", "imports",
          "model_build", "fit", "evaluate", "report")
SECTIONS = ("smoke", "large", "preprocess", "windows", "commands", "hashing")

TARGETS = {
    "smoke_wall_s": 8.0,
    "smoke_rss_vs_plain": 1.15,
    "stage_share": 0.10,
    "overhead_smoke": 1.4,
    "overhead_large": 1.05,
    "preprocess_vs_floor": 3.0,
    "preprocess_rss_vs_f64": 10.0,
    "launch_cmd_s": 1.0,
    "cli_cmd_s": 0.5,
    "gate_share": 0.03,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- environment ------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    gpu = "none"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            gpu = out.stdout.strip() or "none (nvidia-smi lists no device)"
        except (OSError, subprocess.SubprocessError):
            gpu = "unknown (nvidia-smi failed)"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = os.cpu_count()
    versions = {}
    try:
        from importlib import metadata

        for dist in ("tensorflow", "keras", "numpy", "pandas", "scipy", "pyarrow", "mlflow", "hydra-core"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
    except ImportError:  # pragma: no cover
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True,
                                text=True).stdout.strip())
    return {"host": socket.gethostname(), "cpu": cpu, "cpus_usable": affinity, "cpus_total": os.cpu_count(),
            "memory_gb": mem_gb, "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions, "git_commit": commit,
            "git_dirty": dirty, "loadavg_start": list(os.getloadavg())}


# --- helpers -----------------------------------------------------------------------

def launch_args(outputs: Path, *overrides: str) -> List[str]:
    return [PYTHON, LAUNCH, "+preset=smoke", *overrides, f"paths.outputs_dir={outputs}"]


def metadata_of(outputs: Path, run_id: str) -> dict:
    return json.loads((outputs / "artifacts" / "metadata" / f"{run_id}.json").read_text())


def rotate(n: int, members: Dict[str, object]) -> Dict[str, List[Proc]]:
    """n rounds; each runs every member once, the order rotating by one each round, so
    every member sees every position (and the paired ratios compare neighbours in time)."""
    names = list(members)
    out: Dict[str, List[Proc]] = {k: [] for k in names}
    for i in range(n):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(members[name](i))
    return out


def alternate(n: int, a, b) -> Dict[str, List[Proc]]:
    """Run a() and b() n times each in the order A B B A A B ... (drift cancels)."""
    out = {"a": [], "b": []}
    for i in range(n):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        for which in order:
            out[which].append(a(i) if which == "a" else b(i))
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.tmp = Path(tempfile.mkdtemp(prefix="spline-lstm-bench-"))
        self.results: Dict[str, dict] = {}
        self.tables: List[Table] = []
        self.targets: List[dict] = []
        self.smoke_outputs: Optional[Path] = None
        self.smoke_run_id: Optional[str] = None
        self._n = 0
        self.only: List[str] = list(SECTIONS)

    def rep(self, full: int, quick: int) -> int:
        if self.args.repeat:
            return self.args.repeat
        return quick if self.quick else full

    def target(self, name: str, value, limit, unit: str = "", lower_is_better: bool = True,
               note: str = "") -> None:
        met = None if value is None else (value <= limit if lower_is_better else value >= limit)
        self.targets.append({"target": name, "value": value, "limit": limit, "unit": unit, "met": met,
                             "note": note})

    def run_id(self, tag: str) -> str:
        self._n += 1
        return f"bench-{tag}-{os.getpid()}-{self._n}"

    # --- 1, 2 (smoke size), 6 (gate share) -------------------------------------------

    def smoke(self) -> None:
        reps = self.rep(4, 2)
        outputs = self.tmp / "smoke"
        self.smoke_outputs = outputs
        log("smoke: warm-up (creates the MLflow store, fills the page cache)")
        rid = self.run_id("warm")
        run_proc(launch_args(outputs, f"run_id={rid}"))
        run_proc([PYTHON, BENCH / "plain_keras.py"])
        self.smoke_run_id = rid

        run_ids: List[str] = []
        phases: List[dict] = []

        def launch(_i):
            rid = self.run_id("smoke")
            run_ids.append(rid)
            return run_proc(launch_args(outputs, f"run_id={rid}"))

        def instrumented(_i):
            p, doc = self._instrumented(outputs)
            phases.append(doc)
            return p

        members = {
            "launch": launch,
            "plain": lambda _i: run_proc([PYTHON, BENCH / "plain_keras.py"]),
            "instrumented": instrumented,
            "tracking=none": lambda _i: run_proc(launch_args(outputs, f"run_id={self.run_id('notrack')}",
                                                             "tracking=none")),
        }
        log(f"smoke: {reps} rounds of {', '.join(members)} (order rotates each round)")
        runs = rotate(reps, members)
        fw, pl = runs["launch"], runs["plain"]
        stage_runs = [metadata_of(outputs, r)["timings_s"] for r in run_ids]
        plain_marks = [parse_emitted(p.stdout)["timings_s"] for p in pl]

        wall = stats([p.wall_s for p in fw])
        rss = stats([p.peak_rss_mb for p in fw], 1)
        plain_wall = stats([p.wall_s for p in pl])
        plain_rss = stats([p.peak_rss_mb for p in pl], 1)
        ratio = paired_ratio([p.wall_s for p in fw], [p.wall_s for p in pl])
        rss_ratio = paired_ratio([p.peak_rss_mb for p in fw], [p.peak_rss_mb for p in pl])
        stage_med = {k: round(statistics.median(s.get(k, 0.0) for s in stage_runs), 3)
                     for k in sorted({k for s in stage_runs for k in s})}
        breakdown = {k: round(statistics.median(d["breakdown_s"].get(k, 0.0) for d in phases), 4)
                     for k in phases[0]["breakdown_s"]}
        instr_wall = statistics.median(d["wall_s"] for d in phases)
        gate = statistics.median(d["gate_s"] or 0.0 for d in phases)
        gate_total = statistics.median(d["gate_callback_s"] for d in phases)
        variants = {k: runs[k] for k in ("tracking=none", "instrumented")}
        self.results["smoke"] = {
            "command": "python launch.py +preset=smoke paths.outputs_dir=TMP run_id=...",
            "repeats": reps, "wall_s": wall, "peak_rss_mb": rss,
            "plain_keras": {"command": "python bench/plain_keras.py", "wall_s": plain_wall,
                            "peak_rss_mb": plain_rss,
                            "in_process_s": {k: round(statistics.median(m[k] for m in plain_marks), 3)
                                             for k in plain_marks[0]}},
            "overhead_ratio_wall": ratio, "rss_ratio_vs_plain": rss_ratio,
            "timings_s_median": stage_med,
            "breakdown_s_median": breakdown, "instrumented_wall_s_median": round(instr_wall, 3),
            "instrumented_runs": phases,
            "variants": {k: {"wall_s": stats([p.wall_s for p in v]),
                             "peak_rss_mb": stats([p.peak_rss_mb for p in v], 1),
                             "ratio_vs_launch": paired_ratio([p.wall_s for p in v], [p.wall_s for p in fw]),
                             "ratio_vs_plain": paired_ratio([p.wall_s for p in v], [p.wall_s for p in pl])}
                         for k, v in variants.items()},
        }
        t = Table("1-2. Smoke end to end vs plain Keras (same model, data, epochs)",
                  ["case", "wall s median [min-max]", "peak RSS MB median", "wall / plain (paired)",
                   "wall / launch (paired)"])
        t.add("launch.py +preset=smoke (tracking on, warm store)",
              f"{wall['median']} [{wall['min']}-{wall['max']}]", rss["median"], ratio["median"], 1)
        t.add("bench/plain_keras.py", f"{plain_wall['median']} [{plain_wall['min']}-{plain_wall['max']}]",
              plain_rss["median"], 1, round(1 / ratio["median"], 3))
        labels = {"tracking=none": "what-if: tracking=none (no MLflow)",
                  "instrumented": "instrumented launch (bench/instrumented_launch.py)"}
        for k, v in self.results["smoke"]["variants"].items():
            w = v["wall_s"]
            t.add(labels[k], f"{w['median']} [{w['min']}-{w['max']}]", v["peak_rss_mb"]["median"],
                  v["ratio_vs_plain"]["median"], v["ratio_vs_launch"]["median"])
        t.add("peak RSS launch / plain (paired median)", "", rss_ratio["median"], "", "")
        self.tables.append(t)

        t2 = Table("1. Where the smoke run's time goes (instrumented runs, medians; share of their wall time)",
                   ["phase / stage", "seconds", "share"])
        for name, sec in breakdown.items():
            t2.add(name, round(sec, 3), f"{sec / instr_wall:.1%}")
        t2.add("total (process wall, median)", round(instr_wall, 3), "100%")
        self.tables.append(t2)

        self.target("1 smoke wall (median)", wall["median"], TARGETS["smoke_wall_s"], "s")
        self.target("1 smoke peak RSS / plain-Keras peak RSS", rss_ratio["median"], TARGETS["smoke_rss_vs_plain"])
        allowed = ("fit", "imports")
        for name, sec in breakdown.items():
            if name.split(" ")[0] not in allowed and sec / instr_wall > TARGETS["stage_share"] / 2:
                self.target(f"1 share of '{name}'", round(sec / instr_wall, 3), TARGETS["stage_share"])
        self.target("2 overhead at smoke size (wall launch / plain, paired median)", ratio["median"],
                    TARGETS["overhead_smoke"])
        self.results["gate_share"] = {"gate_checks_s": round(gate, 4), "gate_callback_s": round(gate_total, 4),
                                      "smoke_wall_s": round(instr_wall, 3),
                                      "share_checks": round(gate / instr_wall, 5),
                                      "share_callback": round(gate_total / instr_wall, 5)}
        self.target("6 gate (checks + record + MLflow tag + summary) share of smoke wall",
                    round(gate_total / instr_wall, 4), TARGETS["gate_share"])

    def _instrumented(self, outputs: Path) -> tuple:
        rid = self.run_id("instr")
        out = self.tmp / f"{rid}.json"
        p = run_proc([PYTHON, BENCH / "instrumented_launch.py", out, LAUNCH, "+preset=smoke", f"run_id={rid}",
                      f"paths.outputs_dir={outputs}"])
        doc = json.loads(out.read_text())
        meta = metadata_of(outputs, rid)
        ev: Dict[str, List[tuple]] = {}
        for name, a, b in doc["events"]:
            ev.setdefault(name, []).append((a, b))

        def span(name, i=0):
            return ev[name][i] if name in ev and len(ev[name]) > i else None

        start = p.started
        pipe = span("pipeline.run")
        gate_cb = span("gate callback (gate + mlflow tag + summary)")
        timings = meta["timings_s"]
        pipe_s = pipe[1] - pipe[0]
        in_pipeline = {k: v for k, v in timings.items() if k != "startup"}  # startup: before pipeline.run
        breakdown = {"startup (interpreter, Hydra, compose, job setup)": pipe[0] - start}
        for k in STAGES + tuple(sorted(set(in_pipeline) - set(STAGES))):
            breakdown[f"{k} (pipeline stage)"] = in_pipeline.get(k, 0.0)
        breakdown["pipeline, not in timings_s (metadata write, final MLflow upload, run end)"] = \
            max(0.0, pipe_s - sum(in_pipeline.values()))
        gate_cb_s = gate_cb[1] - gate_cb[0] if gate_cb else 0.0
        breakdown["gate callback (checks, record, MLflow tag, summary)"] = gate_cb_s
        breakdown["other (Hydra job teardown, status, exit code)"] = max(
            0.0, doc["exit"] - (gate_cb[1] if gate_cb else pipe[1]))
        breakdown["process exit (os._exit)"] = p.ended - doc["exit"]
        gate = span("gate checks")
        return p, {"run_id": rid, "wall_s": round(p.wall_s, 3), "peak_rss_mb": round(p.peak_rss_mb, 1),
                   "breakdown_s": {k: round(v, 4) for k, v in breakdown.items()},
                   "gate_s": round(gate[1] - gate[0], 4) if gate else None, "gate_callback_s": round(gate_cb_s, 4),
                   "timings_s": timings}

    # --- 2 (large) ------------------------------------------------------------------

    def large(self) -> None:
        n_points = self.args.large_points or (15_000 if self.quick else 72_000)
        reps = self.args.repeat or (1 if self.quick else 2)
        outputs = self.tmp / "large"
        log(f"large: {reps} x (plain, launch) at data.n_points={n_points}, 3 epochs")

        run_ids: List[str] = []

        def framework(_i):
            rid = self.run_id("large")
            run_ids.append(rid)
            return run_proc(launch_args(outputs, f"run_id={rid}", f"data.n_points={n_points}"), timeout=1800)

        def plain(_i):
            return run_proc([PYTHON, BENCH / "plain_keras.py", "--n-points", n_points], timeout=1800)

        runs = alternate(reps, framework, plain)
        fw, pl = runs["a"], runs["b"]
        ratio = paired_ratio([p.wall_s for p in fw], [p.wall_s for p in pl])
        fw_stages = [metadata_of(outputs, r)["timings_s"] for r in run_ids]
        pl_marks = [parse_emitted(p.stdout)["timings_s"] for p in pl]
        fit_fw = statistics.median(s["fit"] for s in fw_stages)
        fit_pl = statistics.median(m["fit"] for m in pl_marks)
        self.results["large"] = {
            "n_points": n_points, "repeats": reps,
            "launch": {"wall_s": stats([p.wall_s for p in fw]), "peak_rss_mb": stats([p.peak_rss_mb for p in fw], 1),
                       "timings_s": fw_stages},
            "plain_keras": {"wall_s": stats([p.wall_s for p in pl]),
                            "peak_rss_mb": stats([p.peak_rss_mb for p in pl], 1),
                            "in_process_s": pl_marks},
            "overhead_ratio_wall": ratio,
            "fit_s": {"launch": round(fit_fw, 3), "plain": round(fit_pl, 3), "ratio": round(fit_fw / fit_pl, 3)},
        }
        t = Table(f"2. Framework overhead on a long run ({n_points} points, 3 epochs)",
                  ["case", "wall s median [min-max]", "peak RSS MB", "ratio (paired)", "fit s (median)"])
        w = self.results["large"]["launch"]["wall_s"]
        t.add("launch.py +preset=smoke data.n_points=N", f"{w['median']} [{w['min']}-{w['max']}]",
              self.results["large"]["launch"]["peak_rss_mb"]["median"], ratio["median"], round(fit_fw, 2))
        w = self.results["large"]["plain_keras"]["wall_s"]
        t.add("bench/plain_keras.py --n-points N", f"{w['median']} [{w['min']}-{w['max']}]",
              self.results["large"]["plain_keras"]["peak_rss_mb"]["median"], 1, round(fit_pl, 2))
        self.tables.append(t)
        note = "" if n_points >= 50_000 else f"shrunk to {n_points} points: a shorter run than ~1 minute"
        self.target("2 overhead on a ~1 minute run (wall launch / plain, paired median)", ratio["median"],
                    TARGETS["overhead_large"], note=note)

    # --- 3 ----------------------------------------------------------------------------

    def preprocess(self) -> None:
        sizes = [int(s) for s in (self.args.sizes or ([100_000, 1_000_000] if self.quick
                                                     else [100_000, 1_000_000, 10_000_000]))]
        data_dir = self.tmp / "series"
        rows = {}
        t = Table("3. Preprocessing at scale (load -> validate -> regularise -> spline -> scale -> windows)",
                  ["points", "format", "file MB", "floor s", "pipeline s", "ratio (paired)", "peak RSS MB",
                   "RSS delta / f64 size", "slowest stages"])
        for n in sizes:
            made = parse_emitted(run_proc([PYTHON, BENCH / "preprocess_case.py", "make", n, data_dir]).stdout)
            reps = self.args.repeat or (2 if n >= 10_000_000 else (2 if self.quick else 3))
            for fmt in ("csv", "parquet"):
                path = made[fmt]
                log(f"preprocess: {n} points, {fmt}, {reps} x (floor, pipeline)")
                runs = alternate(
                    reps,
                    lambda _i: run_proc([PYTHON, BENCH / "preprocess_case.py", "floor", path]),
                    lambda _i: run_proc([PYTHON, BENCH / "preprocess_case.py", "pipeline", path]))
                floor = [parse_emitted(p.stdout) for p in runs["a"]]
                pipe = [parse_emitted(p.stdout) for p in runs["b"]]
                f64 = made["rows"] * 2 * 8  # the file's two columns held as 8-byte values
                deltas = [d["peak_rss_mb"] - d["baseline_rss_mb"] for d in pipe]
                med = sorted(pipe, key=lambda d: d["total_s"])[len(pipe) // 2]
                rec = {
                    "points": n, "rows": made["rows"], "file_mb": made[f"{fmt}_mb"],
                    "in_memory_f64_mb": round(f64 / 2**20, 2),
                    "floor_s": stats([d["total_s"] for d in floor], 4),
                    "pipeline_s": stats([d["total_s"] for d in pipe], 4),
                    "ratio_vs_floor": paired_ratio([d["total_s"] for d in pipe], [d["total_s"] for d in floor]),
                    "peak_rss_mb": stats([d["peak_rss_mb"] for d in pipe], 1),
                    "baseline_rss_mb": stats([d["baseline_rss_mb"] for d in pipe], 1),
                    "rss_delta_mb": stats(deltas, 1),
                    "rss_delta_vs_f64": round(statistics.median(deltas) * 2**20 / f64, 2),
                    "floor_peak_rss_mb": stats([d["peak_rss_mb"] for d in floor], 1),
                    "process_wall_s": stats([p.wall_s for p in runs["b"]]),
                    "stages_s": med["stages_s"], "peak_rss_after_stage_mb": med["peak_rss_after_stage_mb"],
                    "window_source_bytes": med["window_source_bytes"],
                    "materialised_window_bytes": med["materialised_bytes"],
                }
                rows[(n, fmt)] = rec
                slow = ", ".join(f"{k} {v:.2f}" for k, v in sorted(med["stages_s"].items(), key=lambda kv: -kv[1])[:3])
                t.add(f"{n:.0e}", fmt, rec["file_mb"], rec["floor_s"]["median"], rec["pipeline_s"]["median"],
                      rec["ratio_vs_floor"]["median"], rec["peak_rss_mb"]["median"], rec["rss_delta_vs_f64"], slow)
            for suffix in (".csv", ".parquet"):
                Path(made[suffix[1:]]).unlink(missing_ok=True)
        growth = {}
        for fmt in ("csv", "parquet"):
            pts = [rows[(n, fmt)] for n in sizes]
            growth[fmt] = {
                "pipeline_time_exponent": growth_exponent(sizes, [r["pipeline_s"]["median"] for r in pts]),
                "floor_time_exponent": growth_exponent(sizes, [r["floor_s"]["median"] for r in pts]),
                "rss_delta_exponent": growth_exponent(sizes, [r["rss_delta_mb"]["median"] for r in pts]),
            }
            t.add("growth", fmt, "", f"n^{growth[fmt]['floor_time_exponent']}",
                  f"n^{growth[fmt]['pipeline_time_exponent']}", "", f"delta n^{growth[fmt]['rss_delta_exponent']}",
                  "", "exponent fitted over the sizes above")
        self.tables.append(t)
        self.results["preprocess"] = {"sizes": sizes, "cases": {f"{n}-{fmt}": r for (n, fmt), r in rows.items()},
                                      "growth": growth,
                                      "note": "RSS delta = peak RSS - RSS after imports; f64 size = rows x 2 "
                                              "columns x 8 bytes"}
        top = max(sizes)
        for fmt in ("csv", "parquet"):
            r = rows[(top, fmt)]
            self.target(f"3 pipeline / read floor at {top:.0e} {fmt}", r["ratio_vs_floor"]["median"],
                        TARGETS["preprocess_vs_floor"])
            self.target(f"3 peak RSS delta / in-memory f64 size at {top:.0e} {fmt}", r["rss_delta_vs_f64"],
                        TARGETS["preprocess_rss_vs_f64"])
            self.target(f"3 time growth exponent ({fmt}, {len(sizes)} sizes)",
                        growth[fmt]["pipeline_time_exponent"], 1.15, note="close to linear = 1.0")

    # --- 4 ----------------------------------------------------------------------------

    def windows(self) -> None:
        n = self.args.window_points or (1_000_000 if self.quick else 10_000_000)
        log(f"windows: {n} points, lookback 168, streamed through train.to_dataset")
        p = run_proc([PYTHON, BENCH / "preprocess_case.py", "windows", n, "--lookback", "168"], timeout=1800)
        doc = parse_emitted(p.stdout)
        doc["process_wall_s"] = round(p.wall_s, 3)
        self.results["windows"] = doc
        t = Table(f"4. Windows without materialising ({n:.0e} points, lookback 168)", ["quantity", "value"])
        t.add("training windows", f"{doc['windows']:,}")
        t.add("bytes held by the WindowSource (series float32 + int64 starts)", f"{doc['window_source_bytes'] / 2**20:.1f} MiB")
        t.add("an N x lookback float32 X would hold", f"{doc['materialised_x_bytes'] / 2**30:.2f} GiB")
        t.add("tf.data ordered: first batch / then per batch", f"{doc['ordered_first_batch_s']} s / {doc['ordered_batch_ms']} ms")
        t.add("tf.data shuffled: first batch / then per batch",
              f"{doc['shuffled_first_batch_s']} s / {doc['shuffled_batch_ms']} ms")
        t.add("peak RSS: after TF import / ordered / shuffled",
              f"{doc['baseline_rss_mb']} / {doc['ordered_peak_rss_mb']} / {doc['shuffled_peak_rss_mb']} MB")
        self.tables.append(t)

    # --- 5 ----------------------------------------------------------------------------

    def _need_run(self) -> None:
        if self.smoke_outputs is None:
            outputs = self.tmp / "smoke"
            rid = self.run_id("warm")
            log("commands: making one smoke run to query")
            run_proc(launch_args(outputs, f"run_id={rid}"))
            self.smoke_outputs, self.smoke_run_id = outputs, rid

    def commands(self) -> None:
        self._need_run()
        reps = self.rep(7, 3)
        out = str(self.smoke_outputs)
        cmds = {
            "launch.py --help": ([LAUNCH, "--help"], TARGETS["launch_cmd_s"]),
            "launch.py +preset=smoke --cfg job": ([LAUNCH, "--cfg", "job", "+preset=smoke",
                                                    f"paths.outputs_dir={out}"], TARGETS["launch_cmd_s"]),
            "python -m spline_lstm health RUN_ID": (["-m", "spline_lstm", "health", self.smoke_run_id,
                                                     "--outputs-dir", out], TARGETS["cli_cmd_s"]),
            "python -m spline_lstm runs list": (["-m", "spline_lstm", "runs", "list", "--outputs-dir", out],
                                                TARGETS["cli_cmd_s"]),
        }
        n_runs = len(list((self.smoke_outputs / "artifacts" / "metadata").glob("*.json")))
        t = Table("5. Commands that do not train", ["command", "wall s median [min-max]", "peak RSS MB",
                                                    "target s", "imports TF/Keras/MLflow"])
        res = {}
        run_proc([PYTHON, "-c", "pass"])  # warm the interpreter's files
        base = stats([run_proc([PYTHON, "-c", "pass"]).wall_s for _ in range(reps)])
        for name, (args, limit) in cmds.items():
            log(f"commands: {name} x{reps}")
            procs = [run_proc([PYTHON, *args]) for _ in range(reps)]
            probe = parse_emitted(run_proc([PYTHON, BENCH / "imports_probe.py", *args]).stdout)
            w = stats([p.wall_s for p in procs])
            res[name] = {"wall_s": w, "peak_rss_mb": stats([p.peak_rss_mb for p in procs], 1),
                         "heavy_imports": probe["heavy"], "watched_imports": probe["loaded"],
                         "modules": probe["modules"], "target_s": limit}
            t.add(name, f"{w['median']} [{w['min']}-{w['max']}]", res[name]["peak_rss_mb"]["median"], limit,
                  ", ".join(probe["heavy"]) or "none")
            self.target(f"5 {name}", w["median"], limit, "s")
        t.add("(bare `python -c pass`, for reference)", f"{base['median']} [{base['min']}-{base['max']}]", "", "", "")
        self.tables.append(t)
        self.results["commands"] = {"runs_in_store": n_runs, "python_startup_s": base, "commands": res}

    # --- 6 (hashing) -------------------------------------------------------------------

    def hashing(self) -> None:
        import numpy as np

        self._need_run()
        reps = self.rep(5, 3)
        outputs = self.tmp / "big-npz"
        if outputs.exists():
            shutil.rmtree(outputs)
        shutil.copytree(self.smoke_outputs / "artifacts", outputs / "artifacts")
        rid = self.smoke_run_id
        art = outputs / "artifacts"
        npz = art / "processed" / rid / "processed.npz"
        log("hashing: writing a 100 MB processed.npz and re-recording its sha256")
        rng = np.random.default_rng(0)
        with open(npz, "wb") as fh:
            np.savez(fh, run_id=np.array(rid), processed=rng.standard_normal(100 * 2**20 // 8))
        size = npz.stat().st_size
        digest = hashlib.sha256(npz.read_bytes()).hexdigest()
        meta_path = art / "metadata" / f"{rid}.json"
        meta = json.loads(meta_path.read_text())
        meta["artifacts"]["processed"].update(sha256=digest, size=size)
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        small = outputs / "small"
        shutil.copytree(self.smoke_outputs / "artifacts", small / "artifacts")

        def health(where):
            return run_proc([PYTHON, "-m", "spline_lstm", "health", rid, "--outputs-dir", where])

        def floor(_i):
            t0 = time.perf_counter()
            h = hashlib.sha256()
            with open(npz, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            assert h.hexdigest() == digest
            return time.perf_counter() - t0

        log(f"hashing: {reps} x (health on the 100 MB run, health on the plain smoke run, sha256 floor)")
        big, plain, fl = [], [], []
        for i in range(reps):
            big.append(health(outputs))
            plain.append(health(small))
            fl.append(floor(i))
        b, s, f = (stats([p.wall_s for p in big]), stats([p.wall_s for p in plain]), stats(fl))
        mb = size / 2**20
        self.results["hashing"] = {
            "npz_mb": round(mb, 1), "health_big_s": b, "health_smoke_s": s, "sha256_floor_s": f,
            "extra_s_for_100mb": round(b["median"] - s["median"], 3),
            "health_throughput_mb_s": round(mb / max(1e-9, b["median"] - s["median"]), 1),
            "floor_throughput_mb_s": round(mb / f["median"], 1),
        }
        t = Table("6. Health gate hashing", ["case", "wall s median [min-max]", "note"])
        t.add("health on a smoke run", f"{s['median']} [{s['min']}-{s['max']}]", "")
        t.add(f"health with a {mb:.0f} MB processed.npz", f"{b['median']} [{b['min']}-{b['max']}]",
              f"{self.results['hashing']['health_throughput_mb_s']} MB/s for the extra bytes")
        t.add("sha256 of that file in-process (floor)", f"{f['median']} [{f['min']}-{f['max']}]",
              f"{self.results['hashing']['floor_throughput_mb_s']} MB/s")
        if "gate_share" in self.results:
            g = self.results["gate_share"]
            t.add("gate inside a smoke run: checks / whole callback", f"{g['gate_checks_s']} / {g['gate_callback_s']}",
                  f"{g['share_checks']:.2%} / {g['share_callback']:.2%} of the smoke wall")
        self.tables.append(t)

    # --- output -------------------------------------------------------------------------

    def report(self, env: dict, started: float) -> Path:
        env["loadavg_end"] = list(os.getloadavg())
        mode = "quick" if self.quick else "full"
        t = Table("Targets", ["target", "value", "limit", "met"])
        for tg in self.targets:
            met = "n/a" if tg["met"] is None else ("yes" if tg["met"] else "NO")
            note = f" ({tg['note']})" if tg["note"] else ""
            t.add(tg["target"] + note, f"{tg['value']}{tg['unit']}", f"{tg['limit']}{tg['unit']}", met)
        self.tables.append(t)
        head = (f"spline-lstm bench, {mode} mode, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
                f"host {env['host']}: {env['cpu']}, {env['cpus_usable']} usable cores, "
                f"{env['memory_gb']} GB RAM, GPU: {env['gpu']}; load average {env['loadavg_start'][0]:.2f} "
                f"-> {env['loadavg_end'][0]:.2f}; git {env['git_commit']}{' (dirty)' if env['git_dirty'] else ''}; "
                f"took {time.time() - started:.0f} s")
        text = head + "\n\n" + "\n".join(tb.markdown() for tb in self.tables)
        print("\n" + text)
        results_dir = BENCH / "results"
        results_dir.mkdir(exist_ok=True)
        suffix = ("-quick" if self.quick else "") + (f"-only-{'-'.join(self.only)}" if self.only != list(SECTIONS) else "")
        name = self.args.out or f"{dt.date.today().isoformat()}-{env['host']}{suffix}"
        path = results_dir / f"{name}.json"
        doc = {"mode": mode, "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": env,
               "duration_s": round(time.time() - started, 1), "targets": self.targets, "results": self.results,
               "command": " ".join([Path(sys.executable).name, *sys.argv])}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
        path.with_suffix(".md").write_text(text)
        log(f"wrote {path} and {path.with_suffix('.md').name}")
        return path


def main() -> int:
    ap = argparse.ArgumentParser(description="spline-lstm benchmark suite (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (~4 min)")
    ap.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--repeat", type=int, help="repeats per timed case (overrides the defaults)")
    ap.add_argument("--sizes", type=lambda s: [float(x) for x in s.split(",")],
                    help="preprocessing sizes, e.g. 1e5,1e6")
    ap.add_argument("--large-points", type=int, help="series length of the ~1 minute overhead case")
    ap.add_argument("--window-points", type=int, help="series length of the windows case")
    ap.add_argument("--out", help="results file name (without .json) under bench/results/")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the runs")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    os.environ.update(child_env())
    started = time.time()
    env = machine()
    bench = Bench(args)
    bench.only = [s for s in SECTIONS if s in only]
    log(f"temp dir {bench.tmp}; sections {only}")
    try:
        for section in SECTIONS:
            if section in only:
                getattr(bench, section)()
        bench.report(env, started)
    finally:
        if args.keep:
            log(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
