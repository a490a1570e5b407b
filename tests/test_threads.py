"""The thread budget of a parallel sweep (spline_lstm.threads): K jobs on C cores get
C // K threads each; only the joblib launcher runs jobs in parallel. End to end (the
budget in effect in each job's TensorFlow and recorded in its metadata):
tests/test_tracking.py::test_parallel_joblib_sweep_on_a_fresh_store."""
from __future__ import annotations

import os

import pytest

from spline_lstm import threads

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


@pytest.mark.parametrize("n_jobs, expected", [(1, 1), (2, 2), (4, 4), (None, 1), (-1, "cores"), (-2, "cores-1")])
def test_parallel_jobs_follows_joblibs_rule(n_jobs, expected):
    c = threads.cores()
    want = {"cores": c, "cores-1": max(1, c - 1)}.get(expected, expected)
    assert threads.parallel_jobs({"_target_": JOBLIB, "n_jobs": n_jobs}) == want


def test_the_basic_launcher_runs_one_job_at_a_time():
    assert threads.parallel_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) == 1


def test_a_parallel_sweep_sets_the_budget_and_a_users_variable_wins(monkeypatch):
    for var in (*threads.BLAS_VARS, threads.THREADS_ENV, threads.JOBS_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    n = threads.set_sweep_budget({"_target_": JOBLIB, "n_jobs": 2})
    assert n == max(1, threads.cores() // 2)
    assert os.environ[threads.THREADS_ENV] == str(n) and os.environ[threads.JOBS_ENV] == "2"
    assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == str(n)
    assert os.environ["MKL_NUM_THREADS"] == "7"
    assert threads.set_sweep_budget({"_target_": JOBLIB, "n_jobs": 1}) is None  # sequential: no budget left over
    assert threads.THREADS_ENV not in os.environ and threads.JOBS_ENV not in os.environ
