"""Workers and thread budget of a parallel sweep: K workers on C idle cores get C // K threads each.

Left alone, each job's TensorFlow sizes its intra- and inter-op pools to all C cores, so
``hydra/launcher=joblib hydra.launcher.n_jobs=K`` runs K times too many busy threads and
the parallel sweep is slower than the same jobs one after another. Each joblib (loky)
worker is a fresh process that imports Hydra, NumPy, pandas and TensorFlow again (about
4 s of CPU), so a worker beyond the cores, or beyond the jobs it could run, only adds
start-up cost: the sweep's parent caps the workers at min(n_jobs, idle cores, jobs per
launch) before the launcher is made (one worker: joblib runs the jobs in the parent, one
after another, as the basic launcher does). It sets the budget in the environment before joblib
starts its workers (BLAS/OpenMP read ``OMP_NUM_THREADS`` & co. when NumPy loads there; a
value the user exported wins); each job applies it to TensorFlow once imported, and to
BLAS pools already loaded through threadpoolctl, and records what is in effect in its
metadata (``threads``).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Optional

from spline_lstm.core import environment


def cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def idle_cores(sample_s: float = 0.2) -> Optional[float]:
    """How many of this process's cores sat idle over a short sample (idle + iowait time of
    each core in /proc/stat, summed); None where it cannot be read (not Linux)."""
    def snapshot() -> Dict[int, tuple]:
        out = {}
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *ticks = line.split()
                    t = [int(x) for x in ticks[:8]]  # user nice system idle iowait irq softirq steal
                    out[int(name[3:])] = (t[3] + t[4], sum(t))
        return out

    try:
        mask = os.sched_getaffinity(0)
        before = snapshot()
        time.sleep(sample_s)
        after = snapshot()
    except (OSError, AttributeError, ValueError, IndexError):
        return None
    idle = 0.0
    for cpu in mask & before.keys() & after.keys():
        total = after[cpu][1] - before[cpu][1]
        idle += (after[cpu][0] - before[cpu][0]) / total if total > 0 else 1.0
    return idle


def usable_cores(cores: int, idle: Optional[float]) -> int:
    """Cores a worker would have to itself: the idle ones, rounded (a core other processes
    keep busy would only be shared, so a second worker's start-up and its job's CPU come on
    top of the same work); ``cores`` when unknown; at least 1."""
    return cores if idle is None else max(1, min(cores, round(idle)))


def parallel_jobs(launcher: Any) -> int:
    """K: the joblib launcher's ``n_jobs`` (joblib's rule: -1 = every core, -2 = all but one);
    1 for any other launcher (the basic one runs jobs one by one)."""
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n = launcher.get("n_jobs")
    if n is None:
        return 1
    n = int(n)
    return n if n > 0 else max(1, cores() + 1 + n)


def workers(n_jobs: int, usable: int, jobs: Optional[int]) -> int:
    """The workers worth starting: no more than asked, than idle cores to run them on, or
    than jobs to give them (None: not known); at least 1."""
    return max(1, min(n_jobs, usable, jobs if jobs else n_jobs))


def jobs_per_launch(config: Any) -> Optional[int]:
    """The most jobs one call of the launcher gets: the basic sweeper's grid (its batch
    size at most), the Optuna sweeper's ``n_jobs``; None when it cannot be known here."""
    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    try:
        if target.endswith("BasicSweeper"):
            from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
            from hydra.core.override_parser.overrides_parser import OverridesParser

            params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
            overrides = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
            batches = BasicSweeper.split_arguments(overrides, sweeper.get("max_batch_size"))
            return max((len(b) for b in batches), default=None)
        if "optuna" in target.lower() and sweeper.get("n_jobs"):
            return int(sweeper.n_jobs)
    except Exception:  # e.g. a glob() sweep, which needs Hydra's config loader: no cap by jobs
        return None
    return None


def set_sweep_budget(config: Any) -> Optional[int]:
    """In the sweep's parent, before the launcher is made and any job runs: the launcher's
    ``n_jobs`` capped (``workers``) in ``config``, and the per-job budget into the
    environment the workers inherit (None: the jobs run one at a time, no budget set)."""
    environment.clear(*environment.THREAD_BUDGET)  # never a budget from an outer shell
    launcher = config.hydra.launcher
    asked = parallel_jobs(launcher)
    if asked <= 1:
        return None
    jobs = jobs_per_launch(config)
    usable = usable_cores(cores(), None if environment.read(environment.SWEEP_IDLE_CHECK) == "0" else idle_cores())
    k = workers(asked, usable, jobs)
    environment.write_all({environment.PARALLEL_JOBS: str(k), environment.REQUESTED_JOBS: str(asked),
                            environment.USABLE_CORES: str(usable)})
    if k < asked:
        from omegaconf import open_dict, read_write

        with read_write(launcher), open_dict(launcher):
            launcher.n_jobs = k  # read when Hydra makes the launcher, after this callback
        logging.getLogger("spline_lstm").info(
            "sweep      %d parallel worker%s, not n_jobs=%d: %d of %d cores idle, %s jobs per launch%s",
            k, "" if k == 1 else "s", asked, usable, cores(), "unknown" if jobs is None else jobs,
            " (the jobs run one after another in this process)" if k == 1 else "")
    if k == 1:
        return None
    n = max(1, usable // k)
    environment.write(environment.THREADS, str(n))
    environment.write_defaults({var: str(n) for var in environment.BLAS_THREADS})
    return n


def apply(tf) -> Dict[str, Any]:
    """In the job, after importing TensorFlow and before its first op: the budget on its
    pools (a joblib worker reused for a later job keeps the pools of its first, the same
    budget) and on loaded BLAS/OpenMP pools. Returns the record for the metadata."""
    budget = environment.read(environment.THREADS)
    if budget:
        n = int(budget)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already initialised in this worker
            pass
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n)
        except ImportError:
            pass
    return record(tf)


def record(tf) -> Dict[str, Any]:
    """What is in effect: TensorFlow's pool sizes (0 = its default, every core), the BLAS
    variables, and the BLAS/OpenMP pools loaded in this process (threadpoolctl)."""
    out: Dict[str, Any] = {
        "cores": cores(), "parallel_jobs": int(environment.read(environment.PARALLEL_JOBS, "1")),
        "requested_jobs": int(environment.read(environment.REQUESTED_JOBS, "1")),
        "usable_cores": _int_or_none(environment.read(environment.USABLE_CORES)),
        "per_job": _int_or_none(environment.read(environment.THREADS)),
        "tensorflow": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "env": {var: environment.read(var) for var in environment.BLAS_THREADS},
    }
    try:
        from threadpoolctl import threadpool_info

        out["pools"] = [{"api": p.get("internal_api"), "num_threads": p.get("num_threads")} for p in threadpool_info()]
    except ImportError:
        out["pools"] = None
    return out


def _int_or_none(text: Optional[str]) -> Optional[int]:
    return int(text) if text else None
