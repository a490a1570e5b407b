"""The workers and thread budget of a parallel sweep (spline_lstm.core.threads): no more workers
than n_jobs, idle cores or jobs per launch; K workers on C idle cores get C // K threads each;
only the joblib launcher runs jobs in parallel. End to end (the workers and budget in effect
in each job's TensorFlow and recorded in its metadata):
tests/test_tracking.py::test_parallel_joblib_sweep_on_a_fresh_store."""
from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from spline_lstm.core import environment, threads

pytestmark = pytest.mark.unit

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_config(n_jobs, task=("seed=1,2,3,4",), sweeper=None):
    """The parts of a composed multirun config the sweep's parent reads, read-only as Hydra's."""
    cfg = OmegaConf.create({"hydra": {
        "launcher": {"_target_": JOBLIB, "n_jobs": n_jobs},
        "sweeper": sweeper or {"_target_": BASIC_SWEEPER, "max_batch_size": None, "params": None},
        "overrides": {"task": list(task)}}})
    OmegaConf.set_readonly(cfg, True)
    return cfg


@pytest.mark.parametrize("n_jobs, expected", [(1, 1), (2, 2), (4, 4), (None, 1), (-1, "cores"), (-2, "cores-1")])
def test_parallel_jobs_follows_joblibs_rule(n_jobs, expected):
    c = threads.cores()
    want = {"cores": c, "cores-1": max(1, c - 1)}.get(expected, expected)
    assert threads.parallel_jobs({"_target_": JOBLIB, "n_jobs": n_jobs}) == want


def test_the_basic_launcher_runs_one_job_at_a_time():
    assert threads.parallel_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) == 1


@pytest.mark.parametrize("n_jobs, cores, jobs, expected", [
    (4, 2, 4, 2),     # more workers than cores: each extra one only pays its start-up
    (2, 8, 4, 2),     # as asked
    (8, 16, 3, 3),    # no idle workers: never more than the jobs one launch gets
    (4, 16, None, 4),  # jobs not known: cores and n_jobs only
    (2, 1, 4, 1),     # one usable core: one after another
    (4, 2, 0, 2),     # an empty grid is "not known", never 0 workers
])
def test_workers_is_the_least_of_n_jobs_cores_and_jobs(n_jobs, cores, jobs, expected):
    assert threads.workers(n_jobs, cores, jobs) == expected  # cores: the usable ones


def test_jobs_per_launch_reads_the_grid_and_the_batches():
    assert threads.jobs_per_launch(sweep_config(4, ["seed=1,2,3,4", "model.units=8,16", "+preset=smoke"])) == 8
    basic = {"_target_": BASIC_SWEEPER, "max_batch_size": 3, "params": {"training.epochs": "1,2"}}
    assert threads.jobs_per_launch(sweep_config(4, ["seed=1,2,3,4"], basic)) == 3  # 8 jobs, batches of 3
    optuna = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "n_jobs": 2}
    assert threads.jobs_per_launch(sweep_config(4, ["+hpo=lstm"], optuna)) == 2
    assert threads.jobs_per_launch(sweep_config(4, ["model=glob(*)"])) is None  # needs Hydra's config loader


@pytest.fixture
def clean_env(monkeypatch):
    for var in (*environment.BLAS_THREADS, environment.THREADS, environment.PARALLEL_JOBS, environment.REQUESTED_JOBS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(environment.SWEEP_IDLE_CHECK, raising=False)  # the idle cores measured, as for a user


@pytest.mark.parametrize("cores, idle, expected", [
    (2, 2.0, 2), (2, 1.6, 2), (2, 1.2, 1), (2, 0.0, 1),  # a core others keep busy is not usable
    (8, 9.0, 8),  # never more than the affinity's cores
    (4, None, 4),  # unknown (no /proc/stat): every core
])
def test_usable_cores_are_the_idle_ones(cores, idle, expected):
    assert threads.usable_cores(cores, idle) == expected


def test_idle_cores_are_measured_on_this_process_cores():
    idle = threads.idle_cores(0.05)
    assert idle is None or 0.0 <= idle <= threads.cores() + 1e-9


def test_a_parallel_sweep_sets_the_budget_and_a_users_variable_wins(clean_env, monkeypatch):
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    cfg = sweep_config(2, ["seed=1,2"])
    n = threads.set_sweep_budget(cfg)
    k, usable = int(os.environ[environment.PARALLEL_JOBS]), int(os.environ[environment.USABLE_CORES])
    assert k == threads.workers(2, usable, 2) and cfg.hydra.launcher.n_jobs == k
    assert os.environ[environment.REQUESTED_JOBS] == "2"
    if k == 1:  # one idle core: no budget, the jobs run in the parent, one after another
        assert n is None and environment.THREADS not in os.environ
        assert "OMP_NUM_THREADS" not in os.environ
    else:
        assert n == max(1, usable // 2) and os.environ[environment.THREADS] == str(n)
        assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == str(n)
    assert os.environ["MKL_NUM_THREADS"] == "7"
    assert threads.set_sweep_budget(sweep_config(1)) is None  # sequential: no budget left over
    assert not {environment.THREADS, environment.PARALLEL_JOBS, environment.REQUESTED_JOBS, environment.USABLE_CORES} & set(os.environ)


def test_the_parent_caps_the_launchers_workers_before_hydra_makes_it(clean_env, caplog):
    asked = threads.cores() + 2  # more than the cores, fewer than the jobs
    cfg = sweep_config(asked, [f"seed=range(0,{asked + 1})"])
    with caplog.at_level("INFO", logger="spline_lstm"):
        n = threads.set_sweep_budget(cfg)
    k, usable = int(os.environ[environment.PARALLEL_JOBS]), int(os.environ[environment.USABLE_CORES])
    assert 1 <= k == usable <= threads.cores() and cfg.hydra.launcher.n_jobs == k
    assert os.environ[environment.REQUESTED_JOBS] == str(asked)
    assert n == (None if k == 1 else max(1, usable // k))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "spline_lstm"]
    assert f"not n_jobs={asked}: {usable} of {threads.cores()} cores idle" in line


def test_without_the_idle_check_every_core_is_usable(clean_env, monkeypatch):
    monkeypatch.setenv(environment.SWEEP_IDLE_CHECK, "0")
    asked = threads.cores() + 2
    cfg = sweep_config(asked, [f"seed=range(0,{asked + 1})"])
    threads.set_sweep_budget(cfg)
    assert cfg.hydra.launcher.n_jobs == threads.cores() == int(os.environ[environment.USABLE_CORES])
