"""Environment variables: the one module of the package that reads or writes them.

A variable here carries something across a process boundary, and nothing else does:
in-process state travels in typed objects. The package's own:

| variable | written by | read by | what crosses |
| --- | --- | --- | --- |
| SPLINE_LSTM_SWEEP_ID | launch.py, before Hydra starts | every job (joblib / submitit workers too) | the sweep's identity |
| SPLINE_LSTM_STATUS_DIR | launch.py | every job, the sweep's end | where each job leaves its status |
| SPLINE_LSTM_PARENT_RUN_ID | the sweep's start callback | every job | the MLflow parent run of a sweep |
| SPLINE_LSTM_STARTED | launch.py (``pid:time``) | the run | the launch time, for the run's timings |
| SPLINE_LSTM_THREADS, _PARALLEL_JOBS, _REQUESTED_JOBS, _USABLE_CORES | a parallel sweep's parent | each job | the thread budget and its record |
| SPLINE_LSTM_SWEEP_IDLE_CHECK | the operator (tests) | the sweep's parent | "0": every core counts as idle |
| SPLINE_LSTM_OUTPUTS_DIR | the operator | ``python -m spline_lstm`` | the default ``--outputs-dir`` |
| TMPDIR | every command (``core.scratch``) | its child processes | the command's private temp folder |

MLflow's, TensorFlow's and BLAS's own variables are set here for the libraries and the
MLflow helper process to read (credentials never in a file or a record: docs/tracking.md).
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

SWEEP_ID = "SPLINE_LSTM_SWEEP_ID"
STATUS_DIR = "SPLINE_LSTM_STATUS_DIR"
PARENT_RUN_ID = "SPLINE_LSTM_PARENT_RUN_ID"
STARTED = "SPLINE_LSTM_STARTED"
OUTPUTS_DIR = "SPLINE_LSTM_OUTPUTS_DIR"
THREADS = "SPLINE_LSTM_THREADS"  # threads per job, set by a parallel sweep's parent
PARALLEL_JOBS = "SPLINE_LSTM_PARALLEL_JOBS"  # K, the workers in effect, for the record
REQUESTED_JOBS = "SPLINE_LSTM_REQUESTED_JOBS"  # n_jobs as asked, for the record
USABLE_CORES = "SPLINE_LSTM_USABLE_CORES"  # idle cores the sweep found, for the record
SWEEP_IDLE_CHECK = "SPLINE_LSTM_SWEEP_IDLE_CHECK"  # "0": every affinity core is usable (the tests'
# concurrency cases need the workers they ask for whatever else the machine runs)
THREAD_BUDGET = (THREADS, PARALLEL_JOBS, REQUESTED_JOBS, USABLE_CORES)
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

MLFLOW_URI = "MLFLOW_TRACKING_URI"
MLFLOW_USERNAME = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"
MLFLOW_INSECURE_TLS = "MLFLOW_TRACKING_INSECURE_TLS"
MLFLOW_SERVER_CERT = "MLFLOW_TRACKING_SERVER_CERT_PATH"
MLFLOW_HTTP_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
MLFLOW_HTTP_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
MLFLOW_HTTP_BACKOFF = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
# Quiet libraries: set only where unset, so an operator's own value wins.
LIBRARY_DEFAULTS = {"GIT_PYTHON_REFRESH": "quiet", "MLFLOW_LOGGING_LEVEL": "WARNING",
                    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
TENSORFLOW_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "3",
                       "TF_ENABLE_ONEDNN_OPTS": "1"}  # set explicitly: silences its notice
HYDRA_FULL_ERROR = "HYDRA_FULL_ERROR"
PYTHONHASHSEED = "PYTHONHASHSEED"
PYTHONPATH = "PYTHONPATH"
TMPDIR = "TMPDIR"  # a command's private temp folder (core.scratch), for its child processes


def read(name: str, default: Optional[str] = None) -> Optional[str]:
    return os.environ.get(name, default)


def write(name: str, value: str) -> None:
    os.environ[name] = value


def write_all(values: Mapping[str, str]) -> None:
    os.environ.update(values)


def write_defaults(values: Mapping[str, str]) -> None:
    """Set each variable only where it is unset."""
    for name, value in values.items():
        os.environ.setdefault(name, value)


def clear(*names: str) -> None:
    for name in names:
        os.environ.pop(name, None)


def for_child(**extra: str) -> Dict[str, str]:
    """This process's environment with ``extra`` added: what a child process is started with."""
    return {**os.environ, **extra}


def default_outputs_dir() -> str:
    return read(OUTPUTS_DIR) or "outputs"
