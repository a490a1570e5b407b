"""Helpers shared by the benchmark scripts: timed child processes with their own
peak RSS, robust summaries, and a log-log growth exponent.

Only the standard library: importing this costs nothing.
"""
from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
HEAVY = ("tensorflow", "keras", "mlflow")


@dataclass
class Proc:
    """One finished child process: wall time from spawn to reap, its own peak RSS."""

    args: List[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    user_s: float
    sys_s: float
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0  # time.time() just before spawn
    ended: float = 0.0


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SPLINE_LSTM_SWEEP_ID", None)
    env.update(extra or {})
    return env


def run_proc(args: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
             timeout: float = 900, check: bool = True) -> Proc:
    """Run ``args``; peak RSS comes from wait4() on that very child (resource.struct_rusage),
    so every case gets its own high-water mark."""
    args = [str(a) for a in args]
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{time.monotonic_ns()}"
    with open(f"{out_path}.out", "w+") as out, open(f"{out_path}.err", "w+") as err:
        started = time.time()
        t0 = time.perf_counter()
        p = subprocess.Popen(args, stdout=out, stderr=err, env=env or child_env(), cwd=str(cwd or REPO))
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        ended = time.time()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for suffix in (".out", ".err"):
        try:
            os.unlink(f"{out_path}{suffix}")
        except OSError:
            pass
    proc = Proc(args, p.returncode, wall, usage.ru_maxrss / 1024.0, usage.ru_utime, usage.ru_stime,
                stdout, stderr, started, ended)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(args)}\n"
                           f"{stdout[-2000:]}\n{stderr[-3000:]}")
    return proc


def stats(values: Sequence[float], digits: int = 3) -> Dict[str, float]:
    vals = [float(v) for v in values]
    if not vals:
        return {}
    return {"median": round(statistics.median(vals), digits), "min": round(min(vals), digits),
            "max": round(max(vals), digits), "n": len(vals)}


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> Dict[str, float]:
    """Ratios of runs made back to back (num[i] right after den[i]): median, min, max
    of the per-pair ratios, plus the ratio of medians."""
    pairs = [a / b for a, b in zip(num, den) if b > 0]
    out = stats(pairs)
    if num and den:
        out["of_medians"] = round(statistics.median(num) / statistics.median(den), 3)
    return out


def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log(value) on log(size): 1.0 = linear."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if s > 0 and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx, 3)


def self_peak_rss_mb() -> float:
    """Peak RSS of the current process so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(doc: dict) -> None:
    """Workers print one JSON line, last, prefixed so it is easy to find."""
    sys.stdout.flush()
    print("BENCH_JSON " + json.dumps(doc), flush=True)


def parse_emitted(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise ValueError("worker printed no BENCH_JSON line:\n" + stdout[-2000:])


def write_results(name: str, results: dict, text: str) -> Path:
    """``results/<date>-<host>-<name>.json`` and ``.md`` (the table); returns the stem's path."""
    import platform

    out = BENCH / "results" / f"{time.strftime('%Y-%m-%d')}-{platform.node()}-{name}"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    out.with_suffix(".md").write_text(text)
    return out


@dataclass
class Table:
    title: str
    header: List[str]
    rows: List[List[str]] = field(default_factory=list)

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join(" --- " for _ in self.header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"
