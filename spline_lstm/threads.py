"""Thread budget of a job in a parallel sweep: K jobs on C cores get C // K threads each.

Left alone, each job's TensorFlow sizes its intra- and inter-op pools to all C cores, so
``hydra/launcher=joblib hydra.launcher.n_jobs=K`` runs K times too many busy threads and
the parallel sweep is slower than the same jobs one after another. The sweep's parent
sets the budget in the environment before joblib starts its workers (BLAS/OpenMP read
``OMP_NUM_THREADS`` & co. when NumPy loads there; a value the user exported wins); each
job applies it to TensorFlow once imported, and to BLAS pools already loaded through
threadpoolctl, and records what is in effect in its metadata (``threads``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

THREADS_ENV = "SPLINE_LSTM_THREADS"  # threads per job, set by a parallel sweep's parent
JOBS_ENV = "SPLINE_LSTM_PARALLEL_JOBS"  # K, for the record
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def set_sweep_budget(launcher: Any) -> Optional[int]:
    """In the sweep's parent, before any job: the per-job budget into the environment the
    workers inherit (None: not a parallel sweep, nothing set)."""
    for var in (THREADS_ENV, JOBS_ENV):
        os.environ.pop(var, None)  # never a budget from an outer shell
    k = parallel_jobs(launcher)
    if k <= 1:
        return None
    n = max(1, cores() // k)
    os.environ.update({THREADS_ENV: str(n), JOBS_ENV: str(k)})
    for var in BLAS_VARS:
        os.environ.setdefault(var, str(n))
    return n


def apply(tf) -> Dict[str, Any]:
    """In the job, after importing TensorFlow and before its first op: the budget on its
    pools (a joblib worker reused for a later job keeps the pools of its first, the same
    budget) and on loaded BLAS/OpenMP pools. Returns the record for the metadata."""
    budget = os.environ.get(THREADS_ENV)
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
        "cores": cores(), "parallel_jobs": int(os.environ.get(JOBS_ENV, 1)),
        "per_job": int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None,
        "tensorflow": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "env": {var: os.environ.get(var) for var in BLAS_VARS},
    }
    try:
        from threadpoolctl import threadpool_info

        out["pools"] = [{"api": p.get("internal_api"), "num_threads": p.get("num_threads")} for p in threadpool_info()]
    except ImportError:
        out["pools"] = None
    return out
