"""Hardening: bad input, faults, interrupts, concurrency and tampering.

Nothing is lost, nobody gets in. Every case below is one row of the reliability
table (``python scripts/reliability_table.py`` prints it from the lists in this
module, so the table cannot drift from what is tested).

- ``MATRIX`` (input files, config, run_id, storage, tracking): one ``launch.py``
  per case, in a private copy of a healthy run's outputs. Each row asserts the
  exit code, the last stderr line ``ERROR [NAME] ...`` and the fragments it must
  name, no traceback on the console, no secret on the console or in any file
  the run wrote, and that nothing changed except what the contract allows: the
  failing job's own Hydra folder and, for failures inside the job, its own empty
  run folders (the atomic claim). The pre-existing run, the MLflow store and the
  input files are byte-identical afterwards.
  The cases are independent subprocesses, so the module runs the selected ones
  a few at a time in the background (``MatrixRunner``); each test waits for its own.
- ``TOLERATED_CASES``: defects a policy accepts (sorted, merged, coerced,
  trimmed), one end-to-end run, counted in meta.json.
- ``TAMPER_CASES``: a healthy run's files swapped, linked or rewritten; the
  standalone ``health`` gate must refuse with 9/10/11 and never execute code.
- ``MODEL_CASES``: the MLflow model's run_id gate, registration only on PASS, and
  predict's own option errors.
- ``FAULT_CASES`` (slow): signals during training, two launches racing for one
  run_id, disk full while checkpointing, an 8-job parallel sweep on one MLflow
  store, an authenticated tracking server.

Cases that need the OS to refuse a root process (read-only folder, read-only
SQLite file, unreadable input) run the launch with CAP_DAC_OVERRIDE dropped
(``setpriv --bounding-set``), or plainly when not root; disk-full mounts a small
tmpfs. Where neither is possible they skip and say why.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, SMOKE_FAST, Run, cli, last_line, launch, sweep_runs
from tests.helpers.processes import Watched, mlflow_server
from tests.helpers.tamper import relocate_mlflow

SECRET = "hx-secret-" + secrets.token_hex(8)  # in every launch's environment; must never be written
HEALTHY_RUN_ID = "smoke-fixture"  # the conftest smoke_run, copied into every case as a bystander


# =============================================================================
# The case lists (module-level data: scripts/reliability_table.py imports them)
# =============================================================================

@dataclass(frozen=True)
class Case:
    """One launch.py invocation that must fail cleanly."""

    id: str
    group: str  # input | config | run_id | storage | tracking
    input: str  # what is wrong, for people
    args: Tuple[str, ...]  # overrides; {data} {tmp} {port} {secret} {outputs} are filled in
    code: int
    name: str
    expect: Tuple[str, ...] = ()  # fragments the ERROR line must contain
    make: Optional[str] = None  # INPUT_FILES builder that writes {data}
    touches: str = "nothing"  # nothing | claim (the job's own empty run folders)
    prep: Optional[str] = None  # PREPS: extra set-up before the snapshot
    base: str = "smoke"  # smoke: SMOKE_FAST; csv: data=csv data.path={data}; none
    slow: bool = False


def _csv(make: str, input: str, code: int, name: str, *expect: str, args: Tuple[str, ...] = (),
         id: Optional[str] = None, touches: str = "nothing", prep: Optional[str] = None) -> Case:
    return Case(id or f"input-{make}", "input", input, args, code, name, tuple(expect), make=make,
                touches=touches, prep=prep, base="csv")


INPUT_CASES: List[Case] = [
    Case("input-missing-path", "input", "data.path names a file that does not exist",
         ("data=csv", "data.path={tmp}/absent.csv"), 5, "INPUT_INVALID", ("absent.csv", "does not exist"), base="none"),
    _csv("directory", "data.path is a directory", 5, "INPUT_INVALID", "input.csv", "is a directory"),
    _csv("empty", "0-byte file", 5, "INPUT_INVALID", "empty.csv", "empty (0 bytes)"),
    _csv("header-only", "a header line and no rows", 5, "INPUT_INVALID", "header-only.csv", "no data rows"),
    _csv("txt", "unsupported extension .txt", 5, "INPUT_INVALID", "series.txt", "'.txt'", "use .csv or .parquet"),
    _csv("latin1", "Latin-1 byte beyond the first 4 KiB (not UTF-8)", 5, "INPUT_INVALID",
         "latin1.csv", "not valid UTF-8", "line 301", "save it as UTF-8"),
    _csv("utf16", "UTF-16 encoded CSV", 5, "INPUT_INVALID", "utf16.csv", "not valid UTF-8"),
    _csv("semicolon", "semicolon-delimited CSV", 5, "INPUT_INVALID", "semicolon.csv", "wrong delimiter"),
    _csv("ragged", "a row with an extra field", 5, "INPUT_INVALID", "ragged.csv", "cannot be parsed as CSV"),
    _csv("parquet-corrupt", "a .parquet file that is not Parquet", 5, "INPUT_INVALID", "corrupt.parquet",
         "cannot be parsed as PARQUET"),
    _csv("no-timestamp-col", "timestamp column missing", 5, "INPUT_INVALID", "'timestamp'",
         "data.timestamp_col"),
    _csv("no-target-col", "target column missing", 5, "INPUT_INVALID", "'value'", "data.target_col"),
    _csv("duplicate-header", "the target column named twice in the header", 5, "INPUT_INVALID",
         "2 columns named 'value'"),
    _csv("good", "data.target_col equal to data.timestamp_col", 2, "CONFIG_INVALID", "data.target_col",
         args=("data.target_col=timestamp",), id="input-same-column"),
    _csv("bad-timestamp", "an unparseable timestamp", 5, "INPUT_INVALID", "'timestamp'", "not-a-date",
         "line 12"),
    _csv("numeric-timestamps", "integers in the timestamp column", 5, "INPUT_INVALID", "holds numbers"),
    _csv("mixed-zones", "timestamps with and without a UTC offset", 5, "INPUT_INVALID", "mixes time zones",
         "+02:00"),
    _csv("duplicated-timestamps", "duplicated timestamps, default policy data.duplicates=error", 5,
         "INPUT_INVALID", "duplicated timestamps", "data.duplicates=mean"),
    _csv("non-numeric", "non-numeric target cells, data.coerce_errors=false", 5, "INPUT_INVALID",
         "'value'", "non-numeric", "'abc'", "data.coerce_errors=true"),
    _csv("boolean-target", "a boolean target column", 5, "INPUT_INVALID", "boolean"),
    _csv("infinite", "+inf and -inf target cells, data.coerce_errors=false", 5, "INPUT_INVALID",
         "2 infinite values", "data.coerce_errors=true"),
    _csv("all-nan", "every target cell empty", 5, "INPUT_INVALID", "no numeric value"),
    _csv("constant", "a constant series", 5, "INPUT_INVALID", "constant"),
    _csv("long-gap", "one gap of 30 steps, longer than preprocess.max_gap=24", 5, "INPUT_INVALID",
         "gap of 30", "preprocess.max_gap=24"),
    _csv("too-missing", "25% of the points missing, above preprocess.max_missing_ratio", 5, "INPUT_INVALID",
         "preprocess.max_missing_ratio"),
    _csv("too-short", "20 rows: too short for lookback + horizon + splits", 5, "INPUT_INVALID",
         "need at least"),
    _csv("off-grid", "a timestamp off the regular hourly grid", 5, "INPUT_INVALID", "off the regular"),
    _csv("parquet-string-target", "a Parquet file whose target column holds strings", 5, "INPUT_INVALID",
         "string-target.parquet", "non-numeric"),
    _csv("unreadable", "a file the process may not read (permissions)", 5, "INPUT_INVALID",
         "unreadable.csv", "not readable", prep="unreadable-input", id="input-unreadable"),
    _csv("datetime-target", "a target column of dates (would train on epoch counts)", 5, "INPUT_INVALID",
         "'value'", "datetime64", "not numbers"),
    _csv("parquet-bool-target", "a Parquet file whose target column is boolean", 5, "INPUT_INVALID",
         "'value'", "boolean"),
    _csv("parquet-nested-target", "a Parquet file whose target column holds lists", 5, "INPUT_INVALID",
         "'value'", "ndarray values", "not numbers"),
    _csv("nul-bytes", "NUL bytes inside a CSV", 5, "INPUT_INVALID", "nul.csv", "NUL byte", "line 6"),
    _csv("decades-earlier", "one row 30 years before the rest of a per-second file (10^9-point grid)", 5,
         "INPUT_INVALID", "grid-size rule", "1994-01-01 00:00:00", "limit"),
    _csv("field-size", "a header field longer than the csv module's field limit", 5, "INPUT_INVALID",
         "field-size.csv", "field larger than field limit"),
    _csv("huge-values", "target values of 1e308 (overflow when squared or scaled)", 5, "INPUT_INVALID",
         "magnitude rule", "1e+308"),
    _csv("overflow-after-scaling", "a value of 1e45 that overflows float32 once robust-scaled", 5,
         "INPUT_INVALID", "finite-after-scaling rule", "1e+45", args=("preprocess.scaling=robust",)),
    # issue 24: bounded before parsing (loading.MAX_LINE_BYTES, MAX_COLUMNS, MAX_INPUT_BYTES)
    _csv("wide-header", "a header of 300 000 cells on one 2.4 MB line (a 50 MB one kept a parser busy > 5 min "
         "at 2 GB+)", 5, "INPUT_INVALID", "wide-header.csv", "header line longer than the 1048576 byte line limit"),
    _csv("many-columns", "a header of 20 000 short columns (under the line limit)", 5, "INPUT_INVALID",
         "many-columns.csv", "20000 columns", "10000 column limit"),
    _csv("long-row", "one data row of 2 MiB after 400 good rows", 5, "INPUT_INVALID", "long-row.csv",
         "line longer than the 1048576 byte line limit", "line 402"),
    _csv("parquet-many-columns", "a Parquet file of 10 001 columns (its footer read, not its data)", 5,
         "INPUT_INVALID", "many-columns.parquet", "10001 columns", "10000 column limit"),
]

CONFIG_CASES: List[Case] = [
    Case("config-unknown-key", "config", "misspelt key training.epoch", ("training.epoch=3",), 2,
         "CONFIG_INVALID", ("training.epoch",)),
    Case("config-unknown-top-key", "config", "unknown top-level key", ("foo=1",), 2, "CONFIG_INVALID", ("foo",)),
    Case("config-wrong-type", "config", "training.epochs=ten", ("training.epochs=ten",), 2, "CONFIG_INVALID",
         ("training.epochs", "ten")),
    Case("config-float-for-int", "config", "training.batch_size=1.5", ("training.batch_size=1.5",), 2,
         "CONFIG_INVALID", ("training.batch_size",)),
    Case("config-bad-enum", "config", "data.duplicates=first", ("data.duplicates=first",), 2,
         "CONFIG_INVALID", ("data.duplicates", "first")),
    Case("config-epochs-zero", "config", "training.epochs=0", ("training.epochs=0",), 2, "CONFIG_INVALID",
         ("training.epochs", ">= 1")),
    Case("config-epochs-negative", "config", "training.epochs=-3", ("training.epochs=-3",), 2,
         "CONFIG_INVALID", ("training.epochs", "-3")),
    Case("config-batch-zero", "config", "training.batch_size=0", ("training.batch_size=0",), 2,
         "CONFIG_INVALID", ("training.batch_size",)),
    Case("config-batch-negative", "config", "training.batch_size=-1", ("training.batch_size=-1",), 2,
         "CONFIG_INVALID", ("training.batch_size",)),
    Case("config-lookback-zero", "config", "preprocess.lookback=0", ("preprocess.lookback=0",), 2,
         "CONFIG_INVALID", ("preprocess.lookback",)),
    Case("config-lookback-negative", "config", "preprocess.lookback=-5", ("preprocess.lookback=-5",), 2,
         "CONFIG_INVALID", ("preprocess.lookback",)),
    Case("config-horizon-zero", "config", "preprocess.horizon=0", ("preprocess.horizon=0",), 2,
         "CONFIG_INVALID", ("preprocess.horizon",)),
    Case("config-horizon-negative", "config", "preprocess.horizon=-1", ("preprocess.horizon=-1",), 2,
         "CONFIG_INVALID", ("preprocess.horizon",)),
    Case("config-learning-rate-zero", "config", "training.learning_rate=0", ("training.learning_rate=0",), 2,
         "CONFIG_INVALID", ("training.learning_rate",)),
    Case("config-max-gap-negative", "config", "preprocess.max_gap=-1", ("preprocess.max_gap=-1",), 2,
         "CONFIG_INVALID", ("preprocess.max_gap",)),
    Case("config-splits-sum", "config", "split ratios summing to 0.9", ("preprocess.split_ratios=[0.5,0.2,0.2]",),
         2, "CONFIG_INVALID", ("preprocess.split_ratios", "sum to 1")),
    Case("config-splits-zero", "config", "a split ratio of 0 (empty test split)",
         ("preprocess.split_ratios=[0.8,0.2,0.0]",), 2, "CONFIG_INVALID", ("preprocess.split_ratios",)),
    Case("config-splits-two", "config", "two split ratios instead of three", ("preprocess.split_ratios=[0.8,0.2]",),
         2, "CONFIG_INVALID", ("preprocess.split_ratios",)),
    Case("config-split-indices-order", "config", "split indices not increasing",
         ("preprocess.split_indices=[100,50,400]",), 2, "CONFIG_INVALID", ("preprocess.split_indices",)),
    Case("config-split-rounds-empty", "config", "ratios [0.9,0.099,0.001] leave the test split empty on 400 points",
         ("preprocess.split_ratios=[0.9,0.099,0.001]",), 5, "INPUT_INVALID", ("test split has 0 points",)),
    Case("config-lookback-exceeds-train", "config", "lookback 300 longer than the 280-point training split",
         ("preprocess.lookback=300",), 2, "CONFIG_INVALID", ("preprocess.lookback", "training split")),
    Case("config-unknown-preset", "config", "+preset=nope", ("+preset=nope",), 2, "CONFIG_INVALID",
         ("preset/nope",)),
    Case("config-unknown-model", "config", "model=transformer (no such group option)", ("model=transformer",), 2,
         "CONFIG_INVALID", ("model/transformer",)),
    Case("config-file-preset-without-path", "config", "+preset=airline without data.path",
         ("+preset=airline", "training.epochs=1"), 5, "INPUT_INVALID", ("data.path is required", "airline"), base="none"),
    Case("config-csv-without-path", "config", "data=csv without data.path", ("data=csv", "training.epochs=1"), 5,
         "INPUT_INVALID", ("data.path is required",), base="none"),
    # ranges, checked before anything is written
    Case("config-seed-negative", "config", "seed=-1", ("seed=-1",), 2, "CONFIG_INVALID", ("seed", "2^32-1")),
    Case("config-seed-2-32", "config", "seed=4294967296 (one past 2^32-1)", ("seed=4294967296",), 2,
         "CONFIG_INVALID", ("seed", "4294967296")),
    Case("config-synthetic-freq", "config", "data.synthetic_freq=foo", ("data.synthetic_freq=foo",), 2,
         "CONFIG_INVALID", ("data.synthetic_freq", "'foo'")),
    Case("config-freq-unknown", "config", "data.freq=fortnight", ("data.freq=fortnight",), 2, "CONFIG_INVALID",
         ("data.freq", "'fortnight'")),
    Case("config-start-unparseable", "config", "data.start=x", ("data.start=x",), 2, "CONFIG_INVALID",
         ("data.start", "'x'")),
    Case("config-noise-inf", "config", "data.noise=inf", ("data.noise=inf",), 2, "CONFIG_INVALID",
         ("data.noise", "finite")),
    Case("config-smoothing-lambda-inf", "config", "preprocess.smoothing_lambda=inf",
         ("preprocess.smoothing=spline", "preprocess.smoothing_lambda=inf"), 2, "CONFIG_INVALID",
         ("preprocess.smoothing_lambda", "finite")),
    Case("config-learning-rate-inf", "config", "training.learning_rate=inf", ("training.learning_rate=inf",), 2,
         "CONFIG_INVALID", ("training.learning_rate", "finite")),
    Case("config-dropout-nan", "config", "model.dropout=nan", ("model.dropout=nan",), 2, "CONFIG_INVALID",
         ("model.dropout", "finite")),
    Case("config-n-points-huge", "config", "data.n_points=10^9", ("data.n_points=1000000000",), 2,
         "CONFIG_INVALID", ("data.n_points", "10^8")),
    Case("config-sweep-job-invalid", "config", "a sweep whose second job has seed=-1: refused before any job runs",
         ("-m", "seed=1,-1"), 2, "CONFIG_INVALID", ("seed", "sweep job #1")),
    # where Hydra writes is derived from paths.outputs_dir and run_id
    Case("config-hydra-run-dir", "config", "hydra.run.dir=<another run's folder>",
         (f"hydra.run.dir={{outputs}}/runs/{HEALTHY_RUN_ID}",), 2, "CONFIG_INVALID", ("hydra.run.dir",)),
    Case("config-hydra-chdir", "config", "hydra.job.chdir=true with a relative paths.outputs_dir",
         ("hydra.job.chdir=true", "paths.outputs_dir=hx-relative-outputs"), 2, "CONFIG_INVALID",
         ("hydra.job.chdir",)),
    Case("config-hydra-sweep-dir", "config", "-m hydra.sweep.dir=<another run's folder>",
         ("-m", f"hydra.sweep.dir={{outputs}}/runs/{HEALTHY_RUN_ID}"), 2, "CONFIG_INVALID", ("hydra.sweep.dir",)),
    Case("config-hydra-sweep-subdir", "config", "-m hydra.sweep.subdir=../../runs/<another run>",
         ("-m", f"hydra.sweep.subdir=../../runs/{HEALTHY_RUN_ID}"), 2, "CONFIG_INVALID", ("hydra.sweep.subdir",)),
    Case("config-hydra-output-subdir", "config", "hydra.output_subdir=<another run's .hydra>",
         (f"hydra.output_subdir=../{HEALTHY_RUN_ID}/.hydra",), 2, "CONFIG_INVALID", ("hydra.output_subdir",)),
    Case("config-hydra-log-file", "config", "the run log moved outside the run folder",
         ("hydra.job_logging.handlers.file.filename={tmp}/elsewhere.log",), 2, "CONFIG_INVALID",
         ("hydra.job_logging",)),
    Case("config-launch-unknown-flag", "config", "launch.py --bogus (once argparse's usage text)", ("--bogus",), 2,
         "CONFIG_INVALID", ("launch.py", "unrecognized arguments: --bogus")),
    Case("config-hydra-no-containment", "config", "the containment callback removed",
         ("~hydra.callbacks.containment",), 2, "CONFIG_INVALID", ("hydra.callbacks.containment",)),
]

_RID = "RUN_ID_INVALID"
RUN_ID_CASES: List[Case] = [
    Case("run_id-empty", "run_id", "run_id=", ("run_id=",), 3, _RID, ("''",)),
    Case("run_id-space", "run_id", "run_id='a b'", ("run_id=a b",), 3, _RID, ("'a b'",)),
    Case("run_id-tab", "run_id", "run_id with a tab", ("run_id=a\tb",), 3, _RID),
    Case("run_id-slash", "run_id", "run_id=a/b", ("run_id=a/b",), 3, _RID, ("a/b",)),
    Case("run_id-backslash", "run_id", "run_id=a\\b", ("run_id=a\\b",), 3, _RID),
    Case("run_id-traversal", "run_id", "run_id=../escape", ("run_id=../escape",), 3, _RID, ("../escape",)),
    Case("run_id-dotdot", "run_id", "run_id=..", ("run_id=..",), 3, _RID),
    Case("run_id-inner-dotdot", "run_id", "run_id=a..b", ("run_id=a..b",), 3, _RID),
    Case("run_id-leading-dash", "run_id", "run_id=-a", ("run_id=-a",), 3, _RID),
    Case("run_id-leading-dot", "run_id", "run_id=.hidden", ("run_id=.hidden",), 3, _RID),
    Case("run_id-129-chars", "run_id", "129 characters", ("run_id=" + "a" * 129,), 3, _RID),
    Case("run_id-unicode", "run_id", "run_id=café", ("run_id=café",), 3, _RID),
    Case("run_id-hangul", "run_id", "run_id=런-1", ("run_id=런-1",), 3, _RID),
    Case("run_id-semicolon", "run_id", "run_id='a;rm -rf x'", ("run_id=a;rm -rf x",), 3, _RID),
    Case("run_id-subshell", "run_id", "run_id='$(touch pwned)'", ("run_id=$(touch pwned)",), 3, _RID),
    Case("run_id-backtick", "run_id", "run_id='a`id`'", ("run_id=a`id`",), 3, _RID),
    Case("run_id-pipe", "run_id", "run_id='a|b'", ("run_id=a|b",), 3, _RID),
    Case("run_id-ampersand", "run_id", "run_id='a&b'", ("run_id=a&b",), 3, _RID),
    Case("run_id-redirect", "run_id", "run_id='a>b'", ("run_id=a>b",), 3, _RID),
    Case("run_id-glob", "run_id", "run_id='a*'", ("run_id=a*",), 3, _RID),
    Case("run_id-quote", "run_id", "run_id with a single quote", ("run_id=a'b",), 3, _RID),
    Case("run_id-newline", "run_id", "run_id with a newline", ("run_id=a\nb",), 3, _RID),
    Case("run_id-interpolation", "run_id", "run_id=${oc.env:HOME} (resolves to a path)",
         ("run_id=${oc.env:HOME}",), 3, _RID),
    Case("run_id-existing", "run_id", "the run_id of an existing healthy run", (f"run_id={HEALTHY_RUN_ID}",), 4,
         "RUN_ID_CONFLICT", (HEALTHY_RUN_ID, "runs quarantine")),
    Case("run_id-quarantined", "run_id", "the run_id of a quarantined run is free again (the launch then fails "
         "on its missing data.path, exit 5, proving the run_id passed)",
         (f"run_id={HEALTHY_RUN_ID}", "data=csv", "data.path={tmp}/absent.csv"), 5, "INPUT_INVALID",
         ("absent.csv",), prep="quarantined", base="none"),
    Case("run_id-sweep-duplicate", "run_id", "a joblib sweep giving one run_id to two jobs: refused before any "
         "job runs, nothing written", ("-m", "run_id=hx-dup,hx-dup", "hydra/launcher=joblib"), 4,
         "RUN_ID_CONFLICT", ("hx-dup", "#0 and #1")),
]

STORAGE_CASES: List[Case] = [
    Case("storage-artifacts-is-file", "storage", "paths.artifacts_dir is a regular file",
         ("paths.artifacts_dir={tmp}/afile",), 6, "STORAGE_ERROR", ("afile",), prep="afile"),
    Case("storage-parent-not-creatable", "storage", "a parent of paths.artifacts_dir cannot be created",
         ("paths.artifacts_dir={tmp}/afile/sub/artifacts",), 6, "STORAGE_ERROR", ("afile",), prep="afile"),
    Case("storage-outputs-not-creatable", "storage", "paths.outputs_dir (Hydra's run folder) cannot be created",
         ("paths.outputs_dir={tmp}/afile/out", "paths.artifacts_dir={outputs}/artifacts"), 6, "STORAGE_ERROR",
         ("afile",), prep="afile"),
    Case("storage-read-only", "storage", "paths.artifacts_dir read-only (holding a healthy run)",
         ("paths.artifacts_dir={tmp}/ro-artifacts",), 6, "STORAGE_ERROR", ("ro-artifacts",),
         prep="read-only-artifacts"),
    Case("storage-outputs-empty", "storage", "paths.outputs_dir= (empty; once wrote /runs and /artifacts)",
         ("paths.outputs_dir=",), 2, "CONFIG_INVALID", ("paths.outputs_dir", "must not be empty")),
    Case("storage-outputs-root", "storage", "paths.outputs_dir=/ (the filesystem root)", ("paths.outputs_dir=/",), 2,
         "CONFIG_INVALID", ("paths.outputs_dir", "filesystem root")),
    Case("storage-outputs-proc", "storage", "paths.outputs_dir=/proc", ("paths.outputs_dir=/proc",), 6,
         "STORAGE_ERROR", ("paths.outputs_dir", "/proc")),
    Case("storage-outputs-dev", "storage", "paths.outputs_dir under /dev", ("paths.outputs_dir=/dev/hx-outputs",), 6,
         "STORAGE_ERROR", ("paths.outputs_dir", "/dev")),
    Case("storage-outputs-link-to-sys", "storage", "paths.outputs_dir a symlink to /sys/kernel",
         ("paths.outputs_dir={tmp}/sys-link/out",), 6, "STORAGE_ERROR", ("sys-link", "/sys"), prep="sys-link"),
    Case("storage-artifacts-empty", "storage", "paths.artifacts_dir= (empty)", ("paths.artifacts_dir=",), 2,
         "CONFIG_INVALID", ("paths.artifacts_dir", "must not be empty")),
    Case("storage-artifacts-proc", "storage", "paths.artifacts_dir under /proc",
         ("paths.artifacts_dir=/proc/self/hx-artifacts",), 6, "STORAGE_ERROR", ("paths.artifacts_dir", "/proc")),
    Case("storage-artifacts-in-run-folder", "storage", "paths.artifacts_dir inside another run's Hydra folder",
         (f"paths.artifacts_dir={{outputs}}/runs/{HEALTHY_RUN_ID}/artifacts",), 2, "CONFIG_INVALID",
         ("paths.artifacts_dir", "run folder")),
    Case("storage-outputs-in-artifacts", "storage", "paths.outputs_dir inside paths.artifacts_dir",
         ("paths.outputs_dir={outputs}/artifacts/metrics", "paths.artifacts_dir={outputs}/artifacts"), 2,
         "CONFIG_INVALID", ("paths.outputs_dir", "inside paths.artifacts_dir")),
    Case("storage-tracking-in-memory", "storage", "tracking.uri=sqlite:// (an in-memory store)",
         ("tracking.uri=sqlite://",), 2, "CONFIG_INVALID", ("tracking.uri", "no database file")),
    Case("storage-tracking-in-artifacts", "storage", "a SQLite store inside the artifacts tree",
         ("tracking.uri=sqlite:///{outputs}/artifacts/metrics/mlflow.db",), 2, "CONFIG_INVALID",
         ("tracking.uri", "artifacts tree")),
    Case("storage-tracking-proc", "storage", "a SQLite store under /proc", ("tracking.uri=sqlite:////proc/mlflow.db",),
         6, "STORAGE_ERROR", ("tracking.uri", "/proc")),
]

TRACKING_CASES: List[Case] = [
    Case("tracking-refused", "tracking", "tracking.uri=http://127.0.0.1:<closed port>",
         ("tracking.uri=http://127.0.0.1:{port}",), 8, "TRACKING_FAILED", ("127.0.0.1:{port}",)),
    Case("tracking-password", "tracking", "tracking.uri with user:password@ of a closed port (password masked)",
         ("tracking.uri=http://alice:{secret}@127.0.0.1:{port}",), 8, "TRACKING_FAILED", ("alice:***@",)),
    Case("tracking-sqlite-not-db", "tracking", "sqlite URI of a file that is not a database",
         ("tracking.uri=sqlite:///{tmp}/not-a-db.db",), 8, "TRACKING_FAILED", ("not-a-db.db",), prep="not-a-db"),
    Case("tracking-sqlite-read-only", "tracking", "sqlite URI of a read-only database file",
         ("tracking.uri=sqlite:///{tmp}/ro-store/mlflow.db",), 8, "TRACKING_FAILED", ("mlflow.db",),
         prep="read-only-db"),
    Case("tracking-sqlite-directory", "tracking", "sqlite URI naming a directory",
         ("tracking.uri=sqlite:///{tmp}",), 8, "TRACKING_FAILED", ("not a file",)),
    Case("tracking-server-no-uri", "tracking", "tracking=server without tracking.uri",
         ("tracking=server",), 2, "CONFIG_INVALID", ("tracking.uri",)),
    Case("tracking-server-refused", "tracking", "tracking=server at a closed port, past its retries "
         "(http_retries=2: waits 0 + 2 s)", ("tracking=server", "tracking.uri=http://127.0.0.1:{port}",
                                               "tracking.http_retries=2"), 8, "TRACKING_FAILED",
         ("127.0.0.1:{port} is unreachable (tried 3 times over 2 s)",)),
    Case("tracking-sqlite-parent-file", "tracking", "sqlite URI under a regular file",
         ("tracking.uri=sqlite:///{tmp}/afile/mlflow.db",), 8, "TRACKING_FAILED", ("afile",), prep="afile"),
    Case("tracking-not-a-uri", "tracking", "tracking.uri=a plain path (file stores unsupported; was 8, now refused "
         "in config validation)", ("tracking.uri={tmp}/mlruns",), 2, "CONFIG_INVALID", ("tracking.uri", "not a URI")),
    Case("tracking-file-uri", "tracking", "tracking.uri=file:///... (a file store)", ("tracking.uri=file://{tmp}/mlruns",),
         2, "CONFIG_INVALID", ("tracking.uri", "not a URI")),
    Case("tracking-experiment-empty", "tracking", "tracking.experiment= (empty)",
         ("tracking.experiment=",), 2, "CONFIG_INVALID", ("tracking.experiment",)),
    # issue 24: what the registry refuses at the end of a run is refused before it starts, nothing written
    Case("tracking-register-traversal", "tracking", "tracking.register_model='../x' (once trained, gated, then 8)",
         ("tracking.register_model=../x",), 2, "CONFIG_INVALID", ("tracking.register_model", "'../x'")),
    Case("tracking-register-slash", "tracking", "tracking.register_model=a/b", ("tracking.register_model=a/b",), 2,
         "CONFIG_INVALID", ("tracking.register_model", "'/'")),
    Case("tracking-register-at", "tracking", "tracking.register_model=a@b (breaks models:/NAME@ALIAS)",
         ("tracking.register_model=a@b",), 2, "CONFIG_INVALID", ("tracking.register_model", "'@'")),
    Case("tracking-register-no-tracking", "tracking", "tracking.register_model with tracking=none (silently "
         "never registered)", ("tracking=none", "tracking.register_model=m"), 2, "CONFIG_INVALID",
         ("tracking.register_model", "needs tracking")),
]

MATRIX: List[Case] = INPUT_CASES + CONFIG_CASES + RUN_ID_CASES + STORAGE_CASES + TRACKING_CASES


@dataclass(frozen=True)
class Scenario:
    """A case with its own dedicated test (not a single failing launch)."""

    id: str
    group: str
    input: str
    code: int
    name: str
    expect: str = ""  # what else is asserted, for the table
    slow: bool = False


TOLERATED_CASES: List[Scenario] = [
    Scenario("tolerated-unsorted", "input", "rows out of time order", 0, "OK", "sorted, warning logged"),
    Scenario("tolerated-duplicates-mean", "input", "duplicated timestamps with data.duplicates=mean", 0, "OK",
             "merged by mean; meta.json duplicates_merged"),
    Scenario("tolerated-duplicates-last", "input", "duplicated timestamps with data.duplicates=last", 0, "OK",
             "last value kept (in-process)"),
    Scenario("tolerated-coerce", "input", "non-numeric and ±inf cells with data.coerce_errors=true", 0, "OK",
             "gaps; meta.json non_numeric_coerced / infinite_as_missing"),
    Scenario("tolerated-edge-gaps", "input", "leading and trailing gaps", 0, "OK",
             "trimmed; meta.json trimmed_leading / trimmed_trailing"),
    Scenario("tolerated-dst-offsets", "input", "every timestamp with a UTC offset, offsets change (DST)", 0, "OK",
             "converted to UTC (in-process)"),
    Scenario("tolerated-gap-at-max", "input", "a gap of exactly preprocess.max_gap steps", 0, "OK",
             "accepted; max_gap + 1 refused (in-process)"),
]

# predict holds --input to training's rules (tests/test_predict_inputs.py runs each one
# against the smoke run: exit 5, one ERROR line naming the rule and --input, no forecast)
PREDICT_INPUT_CASES: List[Scenario] = [
    Scenario("predict-daily-for-hourly", "predict", "a daily --input for an hourly run", 5, "INPUT_INVALID",
             "frequency rule"),
    Scenario("predict-mostly-gaps", "predict", "--input 86% missing, in short gaps, hourly rows", 5,
             "INPUT_INVALID", "missing-ratio rule, the run's max_missing_ratio"),
    Scenario("predict-92-percent-gaps", "predict", "--input with every 12th hour only (92% gaps)", 5,
             "INPUT_INVALID", "a rule named (frequency)"),
    Scenario("predict-long-gap", "predict", "--input with a gap of 40 steps", 5, "INPUT_INVALID",
             "longest-gap rule, the run's max_gap"),
    Scenario("predict-overflow-after-scaling", "predict", "--input value 1e50 (inf once scaled to float32)", 5,
             "INPUT_INVALID", "finite-after-scaling rule"),
    Scenario("predict-huge-value", "predict", "--input value 1e308", 5, "INPUT_INVALID", "magnitude rule"),
    Scenario("predict-too-short", "predict", "--input with 10 rows (lookback 24)", 5, "INPUT_INVALID",
             "minimum-length rule"),
    Scenario("predict-stray-row", "predict", "--input with one row two centuries earlier", 5, "INPUT_INVALID",
             "grid-size rule, before the grid is built"),
]

TAMPER_CASES: List[Scenario] = [
    Scenario("tamper-symlink-outside", "tampering", "metrics json swapped for a symlink to a file outside the "
             "artifacts dir", 11, "UNSAFE_ARTIFACT"),
    Scenario("tamper-symlinked-folder", "tampering", "checkpoints/<run_id>/ swapped for a symlink to a folder "
             "outside", 11, "UNSAFE_ARTIFACT"),
    Scenario("tamper-other-metrics", "tampering", "metrics json replaced by another run's", 10, "RUN_ID_MISMATCH"),
    Scenario("tamper-other-processed", "tampering", "processed.npz replaced by another run's", 10,
             "RUN_ID_MISMATCH"),
    Scenario("tamper-other-preprocessor", "tampering", "preprocessor.pkl replaced by another run's", 10,
             "RUN_ID_MISMATCH"),
    Scenario("tamper-other-metadata", "tampering", "metadata json replaced by another run's", 10,
             "RUN_ID_MISMATCH"),
    Scenario("tamper-other-checkpoint", "tampering", "best.keras replaced by another run's", 9, "HEALTH_FAILED",
             "sha256 differs from metadata"),
    Scenario("tamper-other-everything", "tampering", "all 8 files replaced by another run's", 10,
             "RUN_ID_MISMATCH"),
    Scenario("tamper-truncated-checkpoint", "tampering", "last.keras truncated", 9, "HEALTH_FAILED"),
    Scenario("tamper-edited-report", "tampering", "report edited after the run", 9, "HEALTH_FAILED"),
    Scenario("tamper-pickle-code", "tampering", "preprocessor.pkl replaced by a pickle that runs a command, "
             "metadata hash updated to match", 11, "UNSAFE_ARTIFACT", "the command never runs"),
    # issue 11: the gate checks every file of the run against the completion record
    Scenario("tamper-plot-symlink", "tampering", "a plot replaced by a symlink to a system file (/etc/passwd)", 11,
             "UNSAFE_ARTIFACT", "is a symlink"),
    Scenario("tamper-plot-edited", "tampering", "a plot's bytes changed", 9, "HEALTH_FAILED",
             "plot forecast.png: sha256 differs from metadata"),
    Scenario("tamper-extra-file", "tampering", "an unknown file dropped into the run's checkpoints folder", 9,
             "HEALTH_FAILED", "unknown file"),
    Scenario("tamper-stale-pass", "tampering", "health passed (record PASS), then best.keras truncated", 9,
             "HEALTH_FAILED", "best checkpoint best.keras is not a Keras zip archive"),
    Scenario("tamper-resealed-metadata", "tampering", "report edited and its sha256 in metadata rewritten to match",
             9, "HEALTH_FAILED", "sha256 differs from the completion record"),
    Scenario("tamper-no-record", "tampering", "completion record deleted (killed -9 after the gate passed, before "
             "the record)", 9, "HEALTH_FAILED", "no completion record"),
    Scenario("tamper-record-list", "tampering", "completion record is a JSON list", 9, "HEALTH_FAILED",
             "is not a JSON object"),
    Scenario("tamper-record-other-run", "tampering", "another run's completion record copied in", 10,
             "RUN_ID_MISMATCH", "the completion record says"),
    Scenario("json-400-digits", "hostile JSON", "metrics json holding a 400-digit integer", 9, "HEALTH_FAILED",
             "an integer of 400 digits"),
    Scenario("json-deep", "hostile JSON", "metadata json nested 200 000 levels deep", 9, "HEALTH_FAILED",
             "nested 200001 levels deep"),
    Scenario("json-huge", "hostile JSON", "metrics json of 20 MB", 9, "HEALTH_FAILED", "larger than"),
    Scenario("json-not-utf8", "hostile JSON", "meta.json with bytes that are not UTF-8", 9, "HEALTH_FAILED",
             "not UTF-8"),
    Scenario("json-fifo", "hostile JSON", "meta.json replaced by a FIFO (a reader would block)", 11,
             "UNSAFE_ARTIFACT", "not a regular file"),
    Scenario("json-dev-zero", "hostile JSON", "metrics json replaced by a symlink to /dev/zero", 11,
             "UNSAFE_ARTIFACT", "is a symlink"),
]

FAULT_CASES: List[Scenario] = [
    *[Scenario(f"{sig.lower()}-during-{phase}", "interrupt", f"{sig} {when}", 130, "INTERRUPTED", then, slow=True)
      for phase, when, then in [
          ("preprocessing", "while a 3 M-point series is loaded and validated",
           "nothing written, no MLflow run; quarantine (nothing to move) -> rerun same run_id -> 0"),
          ("training", "after the first epoch",
           "MLflow run KILLED; gate refuses leftovers; quarantine -> rerun same run_id -> 0"),
          ("writing", "once the run is claimed, while processed.npz of a 3 M-point series is written",
           "MLflow run KILLED; no half-written file; gate refuses; quarantine -> rerun same run_id -> 0")]
      for sig in ("SIGINT", "SIGTERM")],
    Scenario("sigkill-during-training", "interrupt", "SIGKILL after the first epoch", 9, "HEALTH_FAILED",
             "runs list: incomplete; health refuses", slow=True),
    Scenario("same-run-id-race", "concurrency", "two launches with one explicit run_id (different seeds) started "
             "together", 4, "RUN_ID_CONFLICT", "exactly one wins (0); its artifacts pass health; its Hydra records "
             "and run.log hold nothing of the loser's", slow=True),
    Scenario("sweep-8-jobs", "concurrency", "8-job parallel joblib sweep on one SQLite store beside a healthy "
             "run", 0, "OK", "8 run_ids, 8 FINISHED MLflow runs, store integrity ok, bystander intact", slow=True),
    Scenario("disk-full-checkpoint", "storage", "tmpfs fills up while the checkpoint is written", 6,
             "STORAGE_ERROR", "no partial canonical file, staging removed; the line names the artifacts dir",
             slow=True),
    Scenario("storage-file-size-limit", "storage", "ulimit -f below the checkpoint's size (was UNEXPECTED: OSError "
             "[Errno 27] File too large, exit 1)", 6, "STORAGE_ERROR", "SIGXFSZ ignored, so the write raises EFBIG; "
             "the line names EFBIG and ulimit -f; no partial checkpoint"),
    Scenario("storage-errno-categories", "storage", "every errno of the capacity, permission, device and layout "
             "categories (ENOSPC EDQUOT EFBIG EMFILE ENFILE EACCES EPERM EROFS EIO ...), bare or as a cause", 6,
             "STORAGE_ERROR", "network errors (ECONNREFUSED, timeouts) and EINVAL stay out (in-process)"),
    Scenario("disk-full-log", "storage", "the outputs disk (run folder, log, artifacts) full from the start, 3-6 "
             "pages left", 6, "STORAGE_ERROR", "no logging traceback on the console; nothing outside the disk",
             slow=True),
    Scenario("env-secret", "secrets", "SECRET_TOKEN in the environment of a tracked run", 0, "OK",
             "the value is in no file, param, tag or log"),
    Scenario("mask-uri", "secrets", "mask_uri on URIs with user:password@", 0, "OK", "password replaced by ***"),
    Scenario("tracking-password-server", "secrets", "a tracked run against a live MLflow server with "
             "user:password@ in tracking.uri", 0, "OK", "the password is in no file, param, tag or log",
             slow=True),
    Scenario("server-restart-mid-sweep", "tracking", "tracking=server (PostgreSQL): the MLflow server SIGKILLed "
             "and restarted during an 8-job joblib sweep (tests/test_server.py)", 0, "OK",
             "requests retried; 8 FINISHED runs with tags, params, metrics, artifacts; none RUNNING, lost or "
             "duplicated", slow=True),
    Scenario("server-outage-past-retries", "tracking", "tracking=server: the server stays down longer than the "
             "retries (tests/test_server.py)", 8, "TRACKING_FAILED", "its run stays RUNNING; "
             "`python -m spline_lstm.tracking.server stale --run-id ... --end` finds it and ends it FAILED",
             slow=True),
    Scenario("server-misconfigured", "tracking", "tracking=server against a server without --serve-artifacts, "
             "and at an address missing from its --allowed-hosts (tests/test_server.py)", 8, "TRACKING_FAILED",
             "refused in the preflight, before any file, with the server option that fixes it; not retried",
             slow=True),
    Scenario("server-create-run-twin", "tracking", "a create_run retried after the server committed it "
             "(tests/test_server.py)", 0, "OK", "the twin (same run_id, same start time) is ended and deleted",
             slow=True),
    *[Scenario(f"sweep-sigint-{who}", "interrupt", f"SIGINT to {what} while both jobs of a 2-worker joblib sweep "
               "train (was: exit 130, parent KILLED, job runs RUNNING forever)", 130, "INTERRUPTED",
               "parent and both job runs KILLED, none RUNNING; a bystander run in the store untouched", slow=True)
      for who, what in [("group", "the launcher's process group (Ctrl-C)"), ("launcher", "the launcher alone")]],
    Scenario("sweep-end-open-children", "interrupt", "a sweep's end with job runs left RUNNING (their worker killed "
             "with its process tree, MLflow helper included)", 130, "INTERRUPTED",
             "exactly its own RUNNING children ended KILLED (FAILED for another exit code), health=FAIL; an ended "
             "child and another sweep's open run untouched (in-process)"),
    Scenario("sweep-job-fails", "sweep", "a 2-job joblib sweep whose second job's input fails at run time "
             "(tests/test_sweeps.py)", 5, "INPUT_INVALID", "the other job passes; the ranked table and "
             "summary.csv list the failed job with exit 5; the sweep's parent MLflow run ends FAILED", slow=True),
    Scenario("temp-dir-after-run", "litter", "a tracked run with its own TMPDIR (tests/test_cli.py)", 0, "OK",
             "TMPDIR empty afterwards: TensorFlow's __autograph_generated_file*.py were left (os._exit skipped "
             "their atexit clean-up); now each command has a private temp folder, removed as it ends"),
    Scenario("temp-dir-after-predict", "litter", "predict with its own TMPDIR (tests/test_cli.py)", 0, "OK",
             "TMPDIR empty afterwards"),
    Scenario("determinism", "determinism", "the same config twice", 0, "OK",
             "bit-identical metrics and history, identical processed.npz; metadata records determinism"),
    # tests/test_tracking_lifecycle.py: the MLflow run's owner, the store's init lock, secrets
    Scenario("tracking-helper-killed", "tracking", "SIGKILL of the tracking helper mid-training", 8,
             "TRACKING_FAILED", "MLflow run FAILED, not RUNNING; health refuses", slow=True),
    Scenario("tracking-helper-stopped-sigterm", "tracking", "tracking helper stopped (SIGSTOP), then SIGTERM "
             "to the launch", 130, "INTERRUPTED", "exit within 10 s; MLflow run KILLED; health refuses", slow=True),
    Scenario("tracking-store-locked", "tracking", "SQLite store held with BEGIN EXCLUSIVE for 25 s mid-training",
             8, "TRACKING_FAILED", "MLflow run FAILED, never FINISHED; health refuses", slow=True),
    Scenario("tracking-later-state-wins", "tracking", "FINISHED with health=PASS queued, then KILLED", 0, "OK",
             "the run ends KILLED with health=FAIL"),
    Scenario("store-two-runs-fresh", "concurrency", "two plain runs started together on a fresh outputs dir", 0,
             "OK", "both pass; store integrity ok, no _alembic_tmp_* table, one schema version"),
    Scenario("store-two-sweeps-fresh", "concurrency", "two 2-job joblib sweeps started together on a fresh "
             "outputs dir", 0, "OK", "4 FINISHED runs; store integrity ok, no _alembic_tmp_* table", slow=True),
    Scenario("store-half-migrated", "tracking", "a leftover _alembic_tmp_runs table in the store", 0, "OK",
             "repaired under the init lock; the store works"),
    Scenario("store-unmigratable", "tracking", "a schema version MLflow does not know", 8, "TRACKING_FAILED",
             "refused, naming the runbook action"),
    *[Scenario(f"tracking-password-{way}", "secrets", f"a password-protected MLflow server, URI with password "
               f"{how}", 0, "OK", "the password is in no file of the outputs dir or the server's store", slow=True)
      for way, how in [("override", "as an override"), ("yaml", "in a YAML config file"),
                       ("oc-env", "via tracking.uri=${oc.env:VAR}"), ("environment", "in MLFLOW_TRACKING_URI")]],
]

# Issue 11: the commit protocol (tests/test_commit_protocol.py) and quarantine (tests/test_cli.py).
COMMIT_CASES: List[Scenario] = [
    Scenario("commit-sigterm-writing-artifacts", "commit", "SIGTERM while plots, metrics, metadata and MLflow "
             "artifacts are written", 130, "INTERRUPTED", "no completion record; health 9; runs list not PASS; "
             "MLflow run KILLED", slow=True),
    Scenario("commit-sigterm-before-gate", "commit", "SIGTERM after MLflow ended the run FINISHED, before the gate "
             "and the commit", 130, "INTERRUPTED", "no completion record; health 9; runs list incomplete", slow=True),
    Scenario("commit-helper-killed-before-tag", "commit", "the tracking helper killed -9 before the gate tags "
             "its verdict", 8, "TRACKING_FAILED", "no completion record; health 9", slow=True),
    Scenario("commit-signals-after-commit", "commit", "SIGTERM and SIGINT after the completion record was "
             "written", 0, "OK", "ignored: exit 0; health 0", slow=True),
    Scenario("commit-killed-before-record", "commit", "gate passed, process killed -9 before the record (record "
             "deleted)", 9, "HEALTH_FAILED", "health 9 'no completion record'; runs list incomplete"),
    Scenario("quarantine-suffix-run-id", "quarantine", "runs quarantine <id>.md, <prefix>, <id>-2 beside run <id>",
             0, "OK", "nothing to quarantine; not one byte of <id> moved"),
    Scenario("quarantine-planted-uri", "quarantine", "a tracking_uri planted in the run's metadata", 0, "OK",
             "never connected to; the configured store is tagged"),
    Scenario("quarantine-live-run", "quarantine", "the run's folder lock is held (still running)", 4,
             "RUN_ID_CONFLICT", "nothing moved"),
    Scenario("quarantine-same-second", "quarantine", "two quarantines at once, and two within one second", 0, "OK",
             "one moves, the other has nothing to do; distinct folders"),
    Scenario("quarantine-moves-record", "quarantine", "quarantine of a committed run", 0, "OK",
             "its completion record moves too: health 9 afterwards"),
    Scenario("runs-list-stale-pass", "runs list", "health PASS recorded, then best.keras truncated", 0, "OK",
             "runs list shows FAIL (cache keyed on sizes + mtimes)"),
    Scenario("runs-list-hostile-record", "runs list", "health record that is a list, 100 000 deep, a 400-digit "
             "number", 0, "OK", "re-verified from the files; no traceback"),
]

OUTPUT_CASES: List[Scenario] = [
    Scenario("predict-output-other-metrics", "predict", "--output = a run's metrics/<run_id>.json", 2,
             "CONFIG_INVALID", "refused before the model loads; every file byte-identical"),
    Scenario("predict-output-in-artifacts", "predict", "--output = a new file inside the artifacts tree", 2,
             "CONFIG_INVALID", "nothing created"),
    Scenario("predict-output-run-folder", "predict", "--output inside a run's Hydra folder", 2, "CONFIG_INVALID",
             "nothing created"),
    Scenario("predict-output-is-input", "predict", "--output = --input (with --overwrite)", 2, "CONFIG_INVALID",
             "the input byte-identical"),
    Scenario("predict-output-symlink-to-input", "predict", "--output a symlink to --input", 2, "CONFIG_INVALID",
             "the input byte-identical"),
    Scenario("predict-output-hardlink-to-input", "predict", "--output a hard link to --input", 2, "CONFIG_INVALID",
             "the input byte-identical"),
    Scenario("predict-output-existing", "predict", "--output an existing file, no --overwrite", 2, "CONFIG_INVALID",
             "the file byte-identical"),
    Scenario("predict-output-folder", "predict", "--output an existing folder", 2, "CONFIG_INVALID"),
    Scenario("predict-output-proc", "predict", "--output under /proc", 6, "STORAGE_ERROR"),
    Scenario("predict-output-overwrite", "predict", "--output an existing file with --overwrite", 0, "OK",
             "replaced atomically by the forecast CSV"),
]

# the run as an MLflow model and predict's own options (tests/test_model_serving.py and
# tests/test_predict_core.py, each case asserted by the test named in MODEL_CASE_TESTS there)
MODEL_CASES: List[Scenario] = [
    Scenario("model-other-runs-payload", "model", "the logged model/ holds another run's preprocessor.json", 10,
             "RUN_ID_MISMATCH", "load_context refuses (pyfunc load, serve, predict models:/)"),
    Scenario("model-swapped-keras", "model", "the logged model/ holds another best.keras", 10, "RUN_ID_MISMATCH",
             "sha256 recorded in the model config differs"),
    Scenario("model-gate-failed", "model", "tracking.register_model=NAME on a run whose gate fails", 9,
             "HEALTH_FAILED", "no registry version, no alias; run FAILED health=FAIL"),
    Scenario("predict-level-out-of-range", "predict", "--level 100", 5, "INPUT_INVALID",
             "names --level; before any model loads"),
    Scenario("predict-parquet-stdout", "predict", "--format parquet without --output", 5, "INPUT_INVALID",
             "names --output"),
    # issue 24: the MLflow model holds its input and params to predict's rules (one shared set)
    Scenario("model-empty-frame", "model", "pyfunc predict on an empty frame (was IndexError from inside the "
             "package)", 5, "INPUT_INVALID", "one line: 'model input has no data rows'"),
    Scenario("model-horizon-zero", "model", "pyfunc params={'horizon': 0} (was silently the trained horizon; the "
             "CLI refuses --horizon 0)", 5, "INPUT_INVALID", "names params['horizon']; also -3, 2.5, True, 10^9"),
    Scenario("model-fractional-level", "model", "pyfunc params={'levels': [80.5]} or [nan] (was truncated to 80 / "
             "ValueError)", 5, "INPUT_INVALID", "names params['levels']; the CLI refuses --level 80.5 with 2"),
    Scenario("model-unknown-param", "model", "pyfunc params={'horizn': 3} (a typo, once ignored)", 5,
             "INPUT_INVALID", "names the unknown param"),
    Scenario("model-horizon-absent", "model", "pyfunc params without 'horizon' (or None)", 0, "OK",
             "the trained horizon"),
    Scenario("predict-input-wide-header", "predict", "--input of 52 MB: one header line of 6 million cells (was "
             "> 5 min at 2 GB+ before any check)", 5, "INPUT_INVALID", "refused in seconds by the line limit, no "
             "forecast"),
    Scenario("input-size-limit", "input", "an input file above loading.MAX_INPUT_BYTES (the bound lowered "
             "in-process)", 5, "INPUT_INVALID", "refused from its size alone, before any byte is parsed"),
    Scenario("predict-models-uri-no-store", "predict", "models:/NAME@ALIAS with no store in --outputs-dir", 5,
             "INPUT_INVALID", "names --tracking-uri; no empty store created", slow=True),
]

CLI_RUN_ID_CASES: List[Tuple[str, Tuple[str, ...]]] = [
    ("health-traversal", ("health", "../../etc")),
    ("quarantine-traversal", ("runs", "quarantine", "../artifacts")),
    ("predict-traversal", ("predict", "../x", "--input", "x.csv")),
    ("health-absolute", ("health", "/etc/passwd")),
]


# =============================================================================
# Input files
# =============================================================================

def _hourly(n: int = 400, start: str = "2024-01-01") -> Tuple[pd.DatetimeIndex, np.ndarray]:
    ts = pd.date_range(start, periods=n, freq="h")
    t = np.arange(n, dtype=np.float64)
    return ts, 10.0 + 2.0 * np.sin(2 * np.pi * t / 24) + 0.01 * t + 0.1 * np.cos(t)


def _lines(ts, y, header: str = "timestamp,value") -> List[str]:
    return [header] + [f"{t:%Y-%m-%d %H:%M:%S},{v:.4f}" for t, v in zip(ts, y)]


def _write(d: Path, name: str, lines: List[str], encoding: str = "utf-8") -> Path:
    path = d / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _good(d: Path) -> Path:
    return _write(d, "good.csv", _lines(*_hourly()))


def _directory(d: Path) -> Path:
    (d / "input.csv").mkdir()
    return d / "input.csv"


def _empty(d: Path) -> Path:
    (d / "empty.csv").write_bytes(b"")
    return d / "empty.csv"


def _header_only(d: Path) -> Path:
    return _write(d, "header-only.csv", ["timestamp,value"])


def _txt(d: Path) -> Path:
    return _write(d, "series.txt", _lines(*_hourly()))


def _latin1(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[300] = lines[300] + ",café"  # line 301 of the file, far beyond the first 4 KiB
    lines[0] = "timestamp,value,note"
    lines[1:300] = [x + "," for x in lines[1:300]]
    lines[301:] = [x + "," for x in lines[301:]]
    return _write(d, "latin1.csv", lines, "latin-1")


def _utf16(d: Path) -> Path:
    return _write(d, "utf16.csv", _lines(*_hourly()), "utf-16")


def _semicolon(d: Path) -> Path:
    return _write(d, "semicolon.csv", [x.replace(",", ";") for x in _lines(*_hourly())])


def _ragged(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[10] += ",extra"
    return _write(d, "ragged.csv", lines)


def _parquet_corrupt(d: Path) -> Path:
    (d / "corrupt.parquet").write_bytes(b"PAR1 this is not a parquet file")
    return d / "corrupt.parquet"


def _no_timestamp_col(d: Path) -> Path:
    return _write(d, "no-timestamp.csv", _lines(*_hourly(), header="time,value"))


def _no_target_col(d: Path) -> Path:
    return _write(d, "no-target.csv", _lines(*_hourly(), header="timestamp,y"))


def _duplicate_header(d: Path) -> Path:
    ts, y = _hourly()
    return _write(d, "dup-header.csv", ["timestamp,value,value"] + [f"{t},{v:.4f},{v + 1:.4f}"
                                                                    for t, v in zip(ts, y)])


def _bad_timestamp(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[11] = "not-a-date,1.0"  # data row 10, line 12
    return _write(d, "bad-timestamp.csv", lines)


def _numeric_timestamps(d: Path) -> Path:
    _, y = _hourly()
    return _write(d, "numeric-ts.csv", ["timestamp,value"] + [f"{i},{v:.4f}" for i, v in enumerate(y)])


def _mixed_zones(d: Path) -> Path:
    ts, y = _hourly()
    rows = [f"{t:%Y-%m-%d %H:%M:%S}+02:00,{v:.4f}" if i < 200 else f"{t:%Y-%m-%d %H:%M:%S},{v:.4f}"
            for i, (t, v) in enumerate(zip(ts, y))]
    return _write(d, "mixed-zones.csv", ["timestamp,value"] + rows)


def _duplicated_timestamps(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines.insert(50, lines[49].split(",")[0] + ",99.0")
    return _write(d, "dup-ts.csv", lines)


def _non_numeric(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[20] = lines[20].split(",")[0] + ",abc"
    return _write(d, "non-numeric.csv", lines)


def _boolean_target(d: Path) -> Path:
    ts, _ = _hourly()
    return _write(d, "bool.csv", ["timestamp,value"] + [f"{t},{'true' if i % 2 else 'false'}"
                                                        for i, t in enumerate(ts)])


def _infinite(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[30] = lines[30].split(",")[0] + ",inf"
    lines[31] = lines[31].split(",")[0] + ",-inf"
    return _write(d, "infinite.csv", lines)


def _all_nan(d: Path) -> Path:
    ts, _ = _hourly()
    return _write(d, "all-nan.csv", ["timestamp,value"] + [f"{t}," for t in ts])


def _constant(d: Path) -> Path:
    ts, _ = _hourly()
    return _write(d, "constant.csv", _lines(ts, np.full(len(ts), 3.0)))


def _long_gap(d: Path) -> Path:
    lines = _lines(*_hourly())
    del lines[101:131]  # 30 absent hours
    return _write(d, "long-gap.csv", lines)


def _too_missing(d: Path) -> Path:
    lines = _lines(*_hourly())
    keep = [lines[0]] + [x for i, x in enumerate(lines[1:]) if i % 4 != 2 or i in (0, 399)]
    return _write(d, "too-missing.csv", keep)


def _too_short(d: Path) -> Path:
    return _write(d, "too-short.csv", _lines(*_hourly(20)))


def _off_grid(d: Path) -> Path:
    lines = _lines(*_hourly())
    stamp, value = lines[100].split(",")
    lines[100] = stamp[:-5] + "30:00," + value
    return _write(d, "off-grid.csv", lines)


def _parquet_string_target(d: Path) -> Path:
    ts, y = _hourly()
    pd.DataFrame({"timestamp": ts, "value": np.where(y > 10, "high", "low")}).to_parquet(
        d / "string-target.parquet")
    return d / "string-target.parquet"


def _unreadable(d: Path) -> Path:
    return _write(d, "unreadable.csv", _lines(*_hourly()))


def _datetime_target(d: Path) -> Path:
    ts, _ = _hourly()
    return _write(d, "datetime-target.csv", ["timestamp,value"] + [f"{t:%Y-%m-%d %H:%M:%S},"
                                                                   f"{t + pd.Timedelta(days=3):%Y-%m-%d %H:%M:%S}"
                                                                   for t in ts])


def _parquet_bool_target(d: Path) -> Path:
    ts, y = _hourly()
    pd.DataFrame({"timestamp": ts, "value": y > 10}).to_parquet(d / "bool-target.parquet")
    return d / "bool-target.parquet"


def _parquet_nested_target(d: Path) -> Path:
    ts, y = _hourly()
    pd.DataFrame({"timestamp": ts, "value": [[v, v] for v in y]}).to_parquet(d / "nested-target.parquet")
    return d / "nested-target.parquet"


def _nul_bytes(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[5] = lines[5].replace(",", ",\0", 1)
    return _write(d, "nul.csv", lines)


def _decades_earlier(d: Path) -> Path:
    ts = pd.date_range("2024-01-01", periods=400, freq="s")
    lines = _lines(ts, _hourly()[1])
    lines.insert(1, "1994-01-01 00:00:00,1.0")
    return _write(d, "decades-earlier.csv", lines)


def _field_size(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[0] += ",note" + "x" * 200_000
    lines[1:] = [x + "," for x in lines[1:]]
    return _write(d, "field-size.csv", lines)


def _overflow_after_scaling(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[380] = lines[380].split(",")[0] + ",1e45"  # in the test split: no smoother sees it
    return _write(d, "overflow.csv", lines)


def _huge_values(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[40] = lines[40].split(",")[0] + ",1e308"
    return _write(d, "huge.csv", lines)


def _wide_header(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[0] += "," + ",".join(f"c{i}" for i in range(300_000))
    return _write(d, "wide-header.csv", lines)


def _many_columns(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines[0] += "," + ",".join(f"c{i}" for i in range(19_998))
    return _write(d, "many-columns.csv", lines)


def _long_row(d: Path) -> Path:
    lines = _lines(*_hourly())
    lines.append("2024-01-17 16:00:00," + "9" * (2 * 1024**2))  # line 402
    return _write(d, "long-row.csv", lines)


def _parquet_many_columns(d: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ts, y = _hourly(10)
    cols = {"timestamp": pa.array(ts), "value": pa.array(y), **{f"c{i}": pa.array(np.zeros(10)) for i in range(9_999)}}
    pq.write_table(pa.table(cols), d / "many-columns.parquet")
    return d / "many-columns.parquet"


INPUT_FILES: Dict[str, Callable[[Path], Path]] = {
    "wide-header": _wide_header, "many-columns": _many_columns, "long-row": _long_row,
    "parquet-many-columns": _parquet_many_columns,
    "good": _good, "directory": _directory, "empty": _empty, "header-only": _header_only, "txt": _txt,
    "latin1": _latin1, "utf16": _utf16, "semicolon": _semicolon, "ragged": _ragged,
    "parquet-corrupt": _parquet_corrupt, "no-timestamp-col": _no_timestamp_col, "no-target-col": _no_target_col,
    "duplicate-header": _duplicate_header, "bad-timestamp": _bad_timestamp,
    "numeric-timestamps": _numeric_timestamps, "mixed-zones": _mixed_zones,
    "duplicated-timestamps": _duplicated_timestamps, "non-numeric": _non_numeric,
    "boolean-target": _boolean_target, "infinite": _infinite, "all-nan": _all_nan, "constant": _constant,
    "long-gap": _long_gap, "too-missing": _too_missing, "too-short": _too_short, "off-grid": _off_grid,
    "parquet-string-target": _parquet_string_target, "unreadable": _unreadable,
    "datetime-target": _datetime_target, "parquet-bool-target": _parquet_bool_target,
    "parquet-nested-target": _parquet_nested_target, "nul-bytes": _nul_bytes,
    "decades-earlier": _decades_earlier, "field-size": _field_size, "huge-values": _huge_values,
    "overflow-after-scaling": _overflow_after_scaling,
}


def tolerated_csv(d: Path) -> Tuple[Path, dict]:
    """One file with every defect a policy accepts, and the counts meta.json must report."""
    ts, y = _hourly(400)
    rows = [[f"{t:%Y-%m-%d %H:%M:%S}", f"{v:.4f}"] for t, v in zip(ts, y)]
    for i in (0, 1, 2):  # leading gap
        rows[i][1] = ""
    for i in (398, 399):  # trailing gap
        rows[i][1] = ""
    rows[50][1], rows[120][1] = "abc", "?"  # non-numeric -> gaps (coerce)
    rows[80][1], rows[81][1] = "inf", "-inf"  # infinite -> gaps (coerce)
    rows.insert(200, [rows[199][0], f"{y[199] + 1:.4f}"])  # duplicated timestamps -> mean
    rows.insert(300, [rows[299][0], f"{y[298] - 1:.4f}"])
    rows[10:20] = rows[10:20][::-1]  # out of order
    path = _write(d, "tolerated.csv", ["timestamp,value"] + [",".join(r) for r in rows])
    expected = {"rows": 402, "non_numeric_coerced": 2, "infinite_as_missing": 2, "duplicates_merged": 2,
                "trimmed_leading": 3, "trimmed_trailing": 2}
    return path, expected


# =============================================================================
# Machinery: subprocesses, snapshots, privileges
# =============================================================================

def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "SECRET_TOKEN": SECRET, **(extra or {})}


def _spawn(argv: List[str], prefix: Tuple[str, ...] = (), env: Optional[Dict[str, str]] = None,
           timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, *argv], capture_output=True, text=True, timeout=timeout,
                          env=_env(env), cwd=str(REPO))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> Dict[str, str]:
    """relative path -> sha256 / 'dir' / 'link:<target>' of everything under root."""
    out: Dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif not p.is_file():
                out[rel] = "special"  # a FIFO: reading it would block
            else:
                try:
                    out[rel] = _sha(p)
                except OSError as exc:
                    out[rel] = f"unreadable:{exc.errno}"
    return out


_DROP_DAC = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
_privilege_probe: Dict[str, object] = {}


def restricted_prefix() -> Tuple[Optional[Tuple[str, ...]], str]:
    """How to run a launch that the OS's file permissions apply to: as is when not
    root; as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH otherwise (probed once).
    Returns (prefix, "") or (None, why not)."""
    if "result" in _privilege_probe:
        return _privilege_probe["result"]  # type: ignore[return-value]
    if os.geteuid() != 0:
        result: Tuple[Optional[Tuple[str, ...]], str] = ((), "")
    elif shutil.which("setpriv") is None:
        result = (None, "running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE, "
                        "so file permissions do not apply")
    else:
        probe_dir = Path(tempfile.mkdtemp(prefix="hx-probe-"))
        try:
            locked = probe_dir / "locked"
            locked.mkdir()
            locked.chmod(0o555)
            code = f"import os\ntry:\n    os.mkdir({str(locked / 'x')!r})\nexcept PermissionError:\n    raise SystemExit(0)\nraise SystemExit(3)"
            proc = subprocess.run([*_DROP_DAC, sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=60)
            if proc.returncode == 0:
                result = (_DROP_DAC, "")
            else:
                result = (None, f"setpriv --bounding-set could not make root obey file permissions here "
                                f"(rc {proc.returncode}: {proc.stderr.strip()[:200]})")
        finally:
            (probe_dir / "locked").chmod(0o755)
            shutil.rmtree(probe_dir, ignore_errors=True)
    _privilege_probe["result"] = result
    return result


def _lock(path: Path, mode_dir: int = 0o555, mode_file: int = 0o444) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            p.chmod(mode_dir if p.is_dir() else mode_file)


def _unlock(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        try:
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        except OSError:
            pass


# --- per-case set-up ----------------------------------------------------------

def _prep_quarantined(root: Path, outputs: Path) -> None:
    from spline_lstm.artifacts.layout import ArtifactLayout, iter_hydra_dirs, quarantine

    quarantine(ArtifactLayout(outputs / "artifacts"), HEALTHY_RUN_ID, list(iter_hydra_dirs(outputs, HEALTHY_RUN_ID)))


def _prep_afile(root: Path, outputs: Path) -> None:
    (root / "afile").write_text("a regular file where a folder is expected\n")


def _prep_read_only_artifacts(root: Path, outputs: Path) -> None:
    shutil.copytree(outputs / "artifacts", root / "ro-artifacts", symlinks=True)
    _lock(root / "ro-artifacts")


def _prep_not_a_db(root: Path, outputs: Path) -> None:
    (root / "not-a-db.db").write_bytes(b"this is not an SQLite database\n" * 64)


def _prep_read_only_db(root: Path, outputs: Path) -> None:
    store = root / "ro-store"
    store.mkdir()
    shutil.copy2(outputs / "mlflow.db", store / "mlflow.db")
    _lock(store)


def _prep_sys_link(root: Path, outputs: Path) -> None:
    (root / "sys-link").symlink_to("/sys/kernel", target_is_directory=True)


def _prep_unreadable_input(root: Path, outputs: Path) -> None:
    (root / "input" / "unreadable.csv").chmod(0o000)


PREPS: Dict[str, Callable[[Path, Path], None]] = {
    "quarantined": _prep_quarantined, "afile": _prep_afile, "read-only-artifacts": _prep_read_only_artifacts,
    "not-a-db": _prep_not_a_db, "read-only-db": _prep_read_only_db, "unreadable-input": _prep_unreadable_input,
    "sys-link": _prep_sys_link,
}
RESTRICTED_PREPS = {"read-only-artifacts", "read-only-db", "unreadable-input"}


@dataclass
class CaseResult:
    case: Case
    root: Path
    run_id: str
    argv: List[str]
    proc: Optional[subprocess.CompletedProcess] = None
    before: Dict[str, str] = field(default_factory=dict)
    after: Dict[str, str] = field(default_factory=dict)
    skip: str = ""
    seconds: float = 0.0
    escaped: List[str] = field(default_factory=list)  # new entries outside the case's folder

    @property
    def console(self) -> str:
        return (self.proc.stdout + self.proc.stderr) if self.proc else ""

    def describe(self) -> str:
        if self.proc is None:
            return "(not run)"
        return (f"argv: {self.argv}\nrc={self.proc.returncode}\n--- stdout (tail)\n{self.proc.stdout[-2500:]}"
                f"\n--- stderr (tail)\n{self.proc.stderr[-2500:]}")

    def unexpected_changes(self) -> List[str]:
        """Every difference from the snapshot that the contract does not allow."""
        problems = []
        for rel, digest in self.before.items():
            now = self.after.get(rel)
            if now is None:
                problems.append(f"removed: {rel}")
            elif now != digest:
                problems.append(f"modified: {rel}")
        claims = {f"outputs/artifacts/{kind}/{self.run_id}" for kind in ("processed", "models", "checkpoints")}
        for rel in sorted(set(self.after) - set(self.before)):
            if rel == "outputs/runs" or rel.startswith(f"outputs/runs/{self.run_id}/") \
                    or rel == f"outputs/runs/{self.run_id}":
                continue  # the failing job's own Hydra folder: its config record and log
            if self.case.touches == "claim" and rel in claims and self.after[rel] == "dir":
                continue  # its own run folders, claimed atomically; any file inside is reported below
            problems.append(f"added: {rel}")
        return problems

    def new_files(self) -> List[Path]:
        return [self.root / rel for rel, d in self.after.items()
                if d not in ("dir",) and not d.startswith("link:") and self.before.get(rel) != d]


class MatrixRunner:
    """Runs matrix cases in the background, a few at a time; results by case id."""

    def __init__(self, base: Path, healthy: Run, workers: int):
        self.base, self.healthy = base, healthy
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hx-case")
        self.futures: Dict[str, Future] = {}
        self.lock = threading.Lock()
        self.unlock_after: List[Path] = []

    def submit(self, case: Case) -> Future:
        with self.lock:
            if case.id not in self.futures:
                self.futures[case.id] = self.pool.submit(self._run, case)
            return self.futures[case.id]

    def result(self, case: Case) -> CaseResult:
        return self.submit(case).result(timeout=900)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for root in self.unlock_after:
            _unlock(root)

    def _run(self, case: Case) -> CaseResult:
        t0 = time.perf_counter()
        prefix: Tuple[str, ...] = ()
        if case.prep in RESTRICTED_PREPS:
            got, why = restricted_prefix()
            if got is None:
                return CaseResult(case, self.base, "", [], skip=why)
            prefix = got
        root = Path(tempfile.mkdtemp(prefix=f"{case.id}-", dir=self.base))
        outputs = root / "outputs"
        shutil.copytree(self.healthy.outputs, outputs, symlinks=True)  # the bystander: must stay intact
        relocate_mlflow(outputs)  # the copy's MLflow records point at the copy, not the session's run
        inputs = root / "input"
        inputs.mkdir()
        data = INPUT_FILES[case.make](inputs) if case.make else inputs / "none.csv"
        port = str(_closed_port())
        fill = {"{data}": str(data), "{tmp}": str(root), "{port}": port, "{secret}": SECRET,
                "{outputs}": str(outputs)}

        def sub(text: str) -> str:
            for key, value in fill.items():
                text = text.replace(key, value)
            return text

        args = [sub(a) for a in case.args]
        base = {"smoke": list(SMOKE_FAST), "csv": ["data=csv", f"data.path={data}", "training.epochs=1"],
                "none": []}[case.base]
        if not any(a.startswith("run_id=") for a in args):
            args.append(f"run_id=hx-{case.id}")
        if not any(a.startswith("tracking") for a in args):
            args.append("tracking=none")
        if not any(a.startswith("paths.outputs_dir=") for a in args):
            args.append(f"paths.outputs_dir={outputs}")
        run_id = next(a.split("=", 1)[1] for a in args if a.startswith("run_id="))
        flags = [a for a in args if a == "-m"]  # a flag goes before every override (argparse)
        argv = [str(REPO / "launch.py"), *flags, *base, *[a for a in args if a not in flags]]
        result = CaseResult(case, root, run_id, argv)
        if case.prep:
            PREPS[case.prep](root, outputs)
            if case.prep in RESTRICTED_PREPS:
                with self.lock:
                    self.unlock_after.append(root)
        result.before = snapshot(root)
        outside = _outside_listing()
        result.proc = _spawn(argv, prefix, env={"HOME": str(root)}, timeout=600)
        result.after = snapshot(root)
        result.escaped = sorted(set(_outside_listing()) - outside)
        result.seconds = time.perf_counter() - t0
        return result


_OUTSIDE_WATCHED = (Path("/"), REPO, Path.cwd(), REPO / "conf", REPO / "spline_lstm")


def _outside_listing() -> set:
    """Entries of the places a run escaping its folder has written to (the filesystem
    root, the repo, the cwd); a case's launch may add nothing there. Cases run a few
    at a time: an entry added by any of them fails the case that saw it."""
    found = set()
    for folder in _OUTSIDE_WATCHED:
        try:
            found.update(str(folder / name) for name in os.listdir(folder)
                         if name not in (".pytest_cache", "__pycache__", ".hypothesis"))
        except OSError:
            pass
    return found


def _collected_cases(request) -> List[Case]:
    by_id = {c.id: c for c in MATRIX}
    found = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and getattr(item, "originalname", "") == "test_matrix":
            case = callspec.params.get("case")
            if isinstance(case, Case) and case.id in by_id:
                found.append(case)
    return found


@pytest.fixture(scope="module")
def matrix(request, smoke_run: Run, tmp_path_factory):
    workers = int(os.environ.get("HX_WORKERS", "0")) or max(2, min(6, 2 * (os.cpu_count() or 2)))
    runner = MatrixRunner(tmp_path_factory.mktemp("hardening-matrix"), smoke_run, workers)
    for case in _collected_cases(request):  # start every selected case now, in the background
        runner.submit(case)
    yield runner
    runner.close()


# =============================================================================
# The matrix
# =============================================================================

def _log_named(line: str) -> Optional[Path]:
    m = re.search(r"\(log: (.+)\)$", line)
    return Path(m.group(1)) if m else None


@pytest.mark.parametrize("case", MATRIX, ids=[c.id for c in MATRIX])
def test_matrix(case: Case, matrix: MatrixRunner):
    res = matrix.result(case)
    if res.skip:
        pytest.skip(res.skip)
    proc = res.proc
    line = last_line(proc.stderr)
    assert proc.returncode == case.code, res.describe()
    assert line.startswith(f"ERROR [{case.name}] "), res.describe()
    port = next((a.rsplit(":", 1)[1] for a in res.argv if a.startswith("tracking.uri=http")), "")
    for fragment in case.expect:
        fragment = fragment.replace("{port}", port)
        assert fragment in line, f"{fragment!r} not named in: {line}"
    assert "Traceback" not in res.console, "traceback on the console:\n" + res.describe()
    assert SECRET not in res.console, "a secret reached the console:\n" + res.describe()
    problems = res.unexpected_changes()
    assert not problems, "\n".join(problems) + "\n" + res.describe()
    assert not res.escaped, f"written outside the case's folder: {res.escaped}\n" + res.describe()
    for path in res.new_files():
        if ".hydra" in path.parts:
            continue  # Hydra's own record of the overrides: see test_tracking_password_not_kept_by_hydra
        assert SECRET.encode() not in path.read_bytes(), f"secret written to {path}"
    log = _log_named(line)
    if log is not None:
        assert log.is_file(), f"the error line names a log that does not exist: {log}"
        assert "Traceback" in log.read_text(errors="replace"), f"no traceback kept in {log}"
    if case.group == "tracking":
        assert "== fit" not in proc.stdout


def test_tracking_password_not_kept_by_hydra(matrix: MatrixRunner):
    """Hydra records the command-line overrides in runs/<run_id>/.hydra/ (uploaded to
    MLflow with a finished run): a tracking.uri password must not be kept there."""
    case = next(c for c in MATRIX if c.id == "tracking-password")
    res = matrix.result(case)
    leaks = [str(p.relative_to(res.root)) for p in res.new_files() if SECRET.encode() in p.read_bytes()]
    assert not leaks, f"tracking.uri password stored in clear text in {leaks}"


@pytest.mark.unit
def test_case_ids_are_unique_and_codes_match_names():
    from spline_lstm.core.errors import EXIT_CODES

    every = (MATRIX + TOLERATED_CASES + PREDICT_INPUT_CASES + TAMPER_CASES + FAULT_CASES + COMMIT_CASES
             + OUTPUT_CASES + MODEL_CASES)
    ids = [c.id for c in every]
    assert len(ids) == len(set(ids))
    for c in every:
        assert EXIT_CODES[c.name] == c.code, c.id
    assert set(INPUT_FILES) >= {c.make for c in MATRIX if c.make}
    assert set(PREPS) >= {c.prep for c in MATRIX if c.prep}


@pytest.mark.unit
def test_reliability_table_lists_every_case():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reliability_table", REPO / "scripts" / "reliability_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    table = module.render()
    for c in (MATRIX + TOLERATED_CASES + PREDICT_INPUT_CASES + TAMPER_CASES + FAULT_CASES + COMMIT_CASES
              + OUTPUT_CASES + MODEL_CASES):
        assert f"| `{c.id}`" in table and f"{c.code} {c.name}" in table, c.id
    published = REPO / "docs" / "reliability.md"  # what the README links to
    assert published.read_text(encoding="utf-8") == table, \
        "docs/reliability.md is stale: python scripts/reliability_table.py > docs/reliability.md"


# =============================================================================
# run_id: no path outside the artifact folders
# =============================================================================

@pytest.mark.unit
def test_no_invalid_run_id_reaches_a_path(tmp_path):
    from spline_lstm.artifacts.layout import ArtifactLayout
    from spline_lstm.core.ids import validate_run_id
    from spline_lstm.core.errors import RunIdInvalid

    layout = ArtifactLayout(tmp_path / "artifacts")
    bad = [a.split("=", 1)[1] for c in RUN_ID_CASES if c.code == 3 for a in c.args if a.startswith("run_id=")]
    bad += ["/etc/passwd", "a/../../b", "a\x00b", "CON\\x", ".", "-", "a" * 129, None, 5, "ａ"]
    for rid in bad:
        with pytest.raises(RunIdInvalid):
            validate_run_id(rid)
        with pytest.raises(RunIdInvalid):
            layout.paths(rid)  # type: ignore[arg-type]
    root = layout.root.resolve()
    for rid in ("a", "A.b-c_9", "x" * 128, "a.b.c", "_lead"):
        validate_run_id(rid)
        for path in [*layout.paths(rid).values(), layout.plot_dir(rid), layout.health_path(rid)]:
            assert root in path.resolve().parents


@pytest.mark.unit
@pytest.mark.parametrize("args", [a for _, a in CLI_RUN_ID_CASES], ids=[i for i, _ in CLI_RUN_ID_CASES])
def test_cli_refuses_run_ids_that_leave_the_artifacts_dir(args, tmp_path):
    proc = cli(*args, "--outputs-dir", str(tmp_path / "outputs"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert last_line(proc.stderr).startswith("ERROR [RUN_ID_INVALID]")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not any(tmp_path.rglob("*"))


# =============================================================================
# predict --output: never into a run's files, never over the input or an existing file
# =============================================================================

def _output_target(cid: str, run: Run, inp: Path, tmp: Path) -> Tuple[Path, List[str]]:
    """Set up OUTPUT_CASES[cid]; returns the --output path and extra flags."""
    if cid == "predict-output-other-metrics":
        return run.path("metrics"), ["--overwrite"]
    if cid == "predict-output-in-artifacts":
        return run.artifacts / "forecasts" / "f.csv", []
    if cid == "predict-output-run-folder":
        return run.outputs / "runs" / run.run_id / "f.csv", []
    if cid == "predict-output-is-input":
        return inp, ["--overwrite"]
    if cid == "predict-output-symlink-to-input":
        (tmp / "link.csv").symlink_to(inp)
        return tmp / "link.csv", ["--overwrite"]
    if cid == "predict-output-hardlink-to-input":
        os.link(inp, tmp / "hard.csv")
        return tmp / "hard.csv", ["--overwrite"]
    if cid in ("predict-output-existing", "predict-output-overwrite"):
        (tmp / "old.csv").write_text("an operator's file\n")
        return tmp / "old.csv", ["--overwrite"] if cid.endswith("overwrite") else []
    if cid == "predict-output-folder":
        (tmp / "folder").mkdir()
        return tmp / "folder", []
    if cid == "predict-output-proc":
        return Path("/proc/hx-forecast.csv"), []
    raise AssertionError(cid)


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[c.id for c in OUTPUT_CASES])
def test_predict_output_stays_out_of_runs_and_inputs(case: Scenario, fresh_run: Run, tmp_path: Path):
    from tests.helpers.tamper import input_csv

    work = tmp_path / "work"
    work.mkdir()
    inp = work / "recent.csv"
    input_csv(fresh_run.path("processed"), inp)
    target, flags = _output_target(case.id, fresh_run, inp, work)
    watched = [fresh_run.outputs, work]
    before = {str(w): snapshot(w) for w in watched}
    outside = _outside_listing()
    proc = cli("predict", fresh_run.run_id, "--input", str(inp), "--output", str(target), *flags,
               "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == case.code, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not set(_outside_listing()) - outside
    after = {str(w): snapshot(w) for w in watched}
    if case.code:
        assert last_line(proc.stderr).startswith(f"ERROR [{case.name}] --output"), proc.stderr
        assert after == before, "a refused --output changed files"
        return
    assert pd.read_csv(target).columns.tolist() == ["timestamp", "step", "forecast", "run_id"]
    changed = {rel for rel, d in after[str(work)].items() if before[str(work)].get(rel) != d}
    assert changed == {target.name} and after[str(fresh_run.outputs)] == before[str(fresh_run.outputs)]


@pytest.mark.unit
def test_a_run_folder_lock_keeps_a_second_holder_out(tmp_path):
    """What keeps a second launch (or sweep job) with one run_id out of a live run's folder."""
    from spline_lstm.artifacts.layout import hold_folder, lock_held
    from spline_lstm.core.errors import RunIdConflict

    folder = tmp_path / "runs" / "r1"
    assert not lock_held(folder)
    fd = hold_folder(folder, "r1")
    try:
        assert lock_held(folder)
        code = ("import sys; from pathlib import Path; from spline_lstm.artifacts.layout import hold_folder\n"
                f"hold_folder(Path({str(folder)!r}), 'r1')")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
        assert other.returncode != 0 and "RunIdConflict" in other.stderr
        with pytest.raises(RunIdConflict, match="r1"):
            hold_folder(folder, "r1")  # another descriptor in this process is refused too
    finally:
        os.close(fd)
    assert not lock_held(folder)
    os.close(hold_folder(folder, "r1"))  # a dead holder's folder is free again


# =============================================================================
# Tolerated inputs: accepted by policy and counted
# =============================================================================

@pytest.fixture(scope="module")
def tolerated_run(tmp_path_factory) -> Tuple[Run, subprocess.CompletedProcess, dict]:
    """One end-to-end run of a CSV with every tolerated defect (also 'another run' for tampering)."""
    base = tmp_path_factory.mktemp("tolerated")
    path, expected = tolerated_csv(base)
    out = base / "outputs"
    proc = launch("data=csv", f"data.path={path}", "data.duplicates=mean", "data.coerce_errors=true",
                  "training.epochs=1", "tracking=none", "run_id=hx-tolerated", outputs=out,
                  env={"SECRET_TOKEN": SECRET})
    return Run(out, "hx-tolerated"), proc, expected


def test_tolerated_defects_run_end_to_end_and_are_counted(tolerated_run):
    run, proc, expected = tolerated_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "not in time order" in proc.stdout and "merged by 'mean'" in proc.stdout
    meta = run.json("meta")
    assert {k: meta[k] for k in expected} == expected
    assert json.loads((run.artifacts / "health" / "hx-tolerated.json").read_text())["verdict"] == "PASS"


@pytest.mark.unit
def test_duplicate_policies_and_dst_offsets_in_process(tmp_path):
    from spline_lstm.data.panel import load_panel
    from spline_lstm.core.config import DataConfig, DataSource, DuplicatePolicy

    lines = ["timestamp,value", "2024-01-01 00:00:00,1", "2024-01-01 01:00:00,2", "2024-01-01 01:00:00,4",
             "2024-01-01 02:00:00,3", "2024-01-01 03:00:00,5"]
    path = _write(tmp_path, "dups.csv", lines)
    got = {}
    for policy in (DuplicatePolicy.mean, DuplicatePolicy.last):
        s = load_panel(DataConfig(source=DataSource.file, path=str(path), duplicates=policy), 0)
        got[policy.value] = s.values[0].tolist()
        assert s.summary["duplicates_merged"] == 1
    assert got == {"mean": [1.0, 3.0, 3.0, 5.0], "last": [1.0, 4.0, 3.0, 5.0]}

    stamps = pd.date_range("2024-03-30 00:00", periods=72, freq="h", tz="Europe/Berlin")  # crosses DST
    path = _write(tmp_path, "dst.csv", ["timestamp,value"] + [f"{t.isoformat()},{i % 7}"
                                                              for i, t in enumerate(stamps)])
    s = load_panel(DataConfig(source=DataSource.file, path=str(path)), 0)
    assert s.freq == "h" and s.values.shape == (1, 72) and not np.isnan(s.values).any()
    assert s.timestamps[0] == pd.Timestamp("2024-03-29 23:00")  # UTC


@pytest.mark.unit
def test_max_gap_boundary_in_process():
    from spline_lstm.core.config import PreprocessConfig
    from spline_lstm.core.errors import InputInvalid
    from spline_lstm.preprocessing.transforms import check_series, split_bounds

    cfg = PreprocessConfig(max_gap=5, lookback=12)
    values = 10 + np.sin(np.arange(300) / 5.0)
    at_max = values.copy()
    at_max[100:105] = np.nan
    check_series(at_max, split_bounds(300, cfg), cfg, "s")
    over = values.copy()
    over[100:106] = np.nan
    with pytest.raises(InputInvalid, match=r"gap of 6 .*preprocess.max_gap=5"):
        check_series(over, split_bounds(300, cfg), cfg, "s")


# =============================================================================
# Tampering: the standalone gate refuses, nothing executes
# =============================================================================

class _Boom:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tamper(tid: str, run: Run, other: Run, outside: Path) -> List[str]:
    """Apply a TAMPER_CASES action; returns the artifact kinds it changed."""
    from spline_lstm.artifacts.layout import ArtifactLayout

    mine = ArtifactLayout(run.artifacts).paths(run.run_id)
    theirs = ArtifactLayout(other.artifacts).paths(other.run_id)
    outside.mkdir(parents=True, exist_ok=True)
    if tid == "tamper-symlink-outside":
        copy = outside / "metrics.json"
        shutil.copy2(mine["metrics"], copy)
        mine["metrics"].unlink()
        mine["metrics"].symlink_to(copy)
        return ["metrics"]
    if tid == "tamper-symlinked-folder":
        folder = mine["best"].parent
        shutil.copytree(folder, outside / "checkpoints")
        shutil.rmtree(folder)
        folder.symlink_to(outside / "checkpoints", target_is_directory=True)
        return ["best", "last"]
    other_kind = {"tamper-other-metrics": "metrics", "tamper-other-processed": "processed",
                  "tamper-other-preprocessor": "preprocessor", "tamper-other-metadata": "metadata",
                  "tamper-other-checkpoint": "best"}
    if tid in other_kind:
        kind = other_kind[tid]
        shutil.copyfile(theirs[kind], mine[kind])
        return [kind]
    if tid == "tamper-other-everything":
        for kind in mine:
            shutil.copyfile(theirs[kind], mine[kind])
        return list(mine)
    if tid == "tamper-truncated-checkpoint":
        data = mine["last"].read_bytes()
        mine["last"].write_bytes(data[: len(data) // 2])
        return ["last"]
    if tid == "tamper-edited-report":
        with open(mine["report"], "a") as fh:
            fh.write("\nall good, trust me\n")
        return ["report"]
    if tid == "tamper-pickle-code":
        mine["preprocessor"].write_bytes(pickle.dumps(_Boom(outside / "pwned"), protocol=2))
        meta = json.loads(mine["metadata"].read_text())
        meta["artifacts"]["preprocessor"]["sha256"] = _sha(mine["preprocessor"])
        mine["metadata"].write_text(json.dumps(meta))
        return ["preprocessor", "metadata"]
    return _tamper_sealed(tid, run, other, mine)


def _tamper_sealed(tid: str, run: Run, other: Run, mine: Dict[str, Path]) -> List[str]:
    """Issue 11's cases: plots, stray files, the completion record, hostile JSON."""
    from spline_lstm.artifacts.layout import ArtifactLayout

    layout = ArtifactLayout(run.artifacts)
    plot = layout.plot_dir(run.run_id) / "forecast.png"
    record = layout.complete_path(run.run_id)
    if tid == "tamper-plot-symlink":
        plot.unlink()
        plot.symlink_to("/etc/passwd")
    elif tid == "tamper-plot-edited":
        data = bytearray(plot.read_bytes())
        data[len(data) // 2] ^= 0xFF
        plot.write_bytes(bytes(data))
    elif tid == "tamper-extra-file":
        (mine["best"].parent / "notes.txt").write_text("left here by someone\n")
    elif tid == "tamper-stale-pass":
        assert cli("health", run.run_id, "--outputs-dir", str(run.outputs)).returncode == 0
        data = mine["best"].read_bytes()
        mine["best"].write_bytes(data[: len(data) // 2])
    elif tid == "tamper-resealed-metadata":
        with open(mine["report"], "a") as fh:
            fh.write("\nall good, trust me\n")
        meta = json.loads(mine["metadata"].read_text())
        meta["artifacts"]["report"]["sha256"] = _sha(mine["report"])
        mine["metadata"].write_text(json.dumps(meta))
    elif tid == "tamper-no-record":
        record.unlink()
    elif tid == "tamper-record-list":
        record.write_text("[1, 2, 3]\n")
    elif tid == "tamper-record-other-run":
        shutil.copyfile(ArtifactLayout(other.artifacts).complete_path(other.run_id), record)
    elif tid == "json-400-digits":
        mine["metrics"].write_text(json.dumps({"run_id": run.run_id})[:-1] + ', "n": ' + "9" * 400 + "}")
    elif tid == "json-deep":
        mine["metadata"].write_text("[" * 200_001 + "]" * 200_001)
    elif tid == "json-huge":
        mine["metrics"].write_text('{"pad": "' + "x" * (20 << 20) + '"}')
    elif tid == "json-not-utf8":
        mine["meta"].write_bytes(b'{"run_id": "\xff\xfe"}')
    elif tid == "json-fifo":
        mine["meta"].unlink()
        os.mkfifo(mine["meta"])
    elif tid == "json-dev-zero":
        mine["metrics"].unlink()
        mine["metrics"].symlink_to("/dev/zero")
    else:
        raise AssertionError(f"unknown tamper case {tid}")
    return [tid]


@pytest.mark.parametrize("case", TAMPER_CASES, ids=[c.id for c in TAMPER_CASES])
def test_tampered_run_is_refused_by_the_gate(case: Scenario, fresh_run: Run, tolerated_run, tmp_path):
    other, proc, _ = tolerated_run
    assert proc.returncode == 0, "the other run of this module failed: " + proc.stderr[-1500:]
    outside = tmp_path / "outside"
    changed = _tamper(case.id, fresh_run, other, outside)
    before = snapshot(fresh_run.outputs)
    outside_before = snapshot(outside)
    other_before = snapshot(other.artifacts)
    result = cli("health", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs))
    assert result.returncode == case.code, result.stdout + result.stderr
    line = last_line(result.stderr)
    assert line.startswith(f"ERROR [{case.name}] ") and fresh_run.run_id in line, line
    if case.expect and case.id != "tamper-pickle-code":
        assert case.expect in line
    assert "Traceback" not in result.stdout + result.stderr
    assert not (outside / "pwned").exists(), "the pickle's code ran"
    after = snapshot(fresh_run.outputs)
    record = f"artifacts/health/{fresh_run.run_id}.json"  # and the store: the run is tagged health=FAIL there
    assert {k: v for k, v in after.items() if k not in (record, "mlflow.db")} == \
        {k: v for k, v in before.items() if k not in (record, "mlflow.db")}
    assert json.loads((fresh_run.artifacts / "health" / f"{fresh_run.run_id}.json").read_text())["verdict"] == "FAIL"
    assert snapshot(outside) == outside_before and snapshot(other.artifacts) == other_before
    assert changed
    listing = cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs))
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    assert {r["run_id"]: r["status"] for r in json.loads(listing.stdout)}[fresh_run.run_id] == "FAIL"


# =============================================================================
# Secrets and determinism
# =============================================================================

@pytest.mark.unit
@pytest.mark.parametrize("uri,masked", [
    ("http://user:secret@host", "http://user:***@host"),
    ("https://alice:s3cr3t@mlflow.example.com:5000/path", "https://alice:***@mlflow.example.com:5000/path"),
    ("http://u:p%40ss:word@10.0.0.1:80", "http://u:***@10.0.0.1:80"),
    ("postgresql://svc:hunter2@db:5432/mlflow", "postgresql://svc:***@db:5432/mlflow"),
    ("http://host:5000", "http://host:5000"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_mask_uri_hides_passwords(uri, masked):
    from spline_lstm.tracking.tracker import mask_uri
    from spline_lstm.tracking.store import Store

    assert mask_uri(uri) == masked
    assert Store(uri, "file:///x", "e").display_uri == masked


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory) -> Tuple[Run, subprocess.CompletedProcess]:
    """The smoke run's config again (same run_id, tracking on) with a secret in the environment."""
    out = tmp_path_factory.mktemp("twin") / "outputs"
    proc = launch(*SMOKE_FAST, f"run_id={HEALTHY_RUN_ID}", outputs=out, env={"SECRET_TOKEN": SECRET})
    return Run(out, HEALTHY_RUN_ID), proc


def test_env_secret_never_written(twin_run):
    run, proc = twin_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    files = [p for p in run.outputs.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and len(files) > 10
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert not leaked
    con = sqlite3.connect(f"file:{run.outputs / 'mlflow.db'}?mode=ro", uri=True)
    try:
        values = [r[0] for r in con.execute("SELECT value FROM params UNION ALL SELECT value FROM tags")]
    finally:
        con.close()
    assert values and not any(SECRET in str(v) for v in values)


def test_same_config_twice_is_bit_identical(smoke_run: Run, twin_run):
    twin, proc = twin_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = smoke_run.json("metrics"), twin.json("metrics")
    for key in ("metrics", "baselines", "history", "best_epoch", "epochs_run"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key
    for kind in ("processed", "meta", "preprocessor"):
        assert _sha(smoke_run.path(kind)) == _sha(twin.path(kind)), kind
    for run in (smoke_run, twin):
        meta = run.json("metadata")
        assert meta["config"]["deterministic"] is True
        assert meta["determinism"]["op_determinism"] is True and meta["determinism"]["seed"] == 42


# =============================================================================
# Slow: interrupts, races, disk full, sweeps, a live tracking server
# =============================================================================

class _Watched(Watched):
    """A launch.py read line by line while it runs, with the matrix's secret in its environment."""

    def __init__(self, args: List[str], outputs: Path, env: Optional[Dict[str, str]] = None):
        super().__init__(args, outputs, {"SECRET_TOKEN": SECRET, **(env or {})})


LONG_TRAINING = ["+preset=smoke", "data.n_points=400", "training.epochs=400", "training.patience=0"]


BIG_SERIES = ["+preset=smoke", "data.n_points=3000000", "training.epochs=1"]  # seconds to load and write


def _started(heading: str):
    return lambda line: heading in line


def _training_started():
    state = {"fit": False}

    def first_epoch_done(line: str) -> bool:
        state["fit"] = state["fit"] or "== fit" in line
        return state["fit"] and "val_loss" in line

    return first_epoch_done


def _start_and_wait(args: List[str], outputs: Path, started, what: str) -> _Watched:
    """A launch, returned once ``started`` accepts one of its output lines."""
    w = _Watched(args, outputs)
    if not w.wait_for(started):
        w.proc.kill()
        w.finish()
        pytest.fail(f"{what} never started:\n{w.out[-3000:]}\n{w.stderr[-3000:]}")
    return w


def _start_and_wait_for_training(run_id: str, outputs: Path, tracking: bool = True) -> _Watched:
    args = [*LONG_TRAINING, f"run_id={run_id}"] + ([] if tracking else ["tracking=none"])
    return _start_and_wait(args, outputs, _training_started(), "training")


def _mlflow_runs(db: Path, run_id: str) -> List[Tuple[str, Dict[str, str]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                           "WHERE t.key = 'run_id' AND t.value = ? ORDER BY r.start_time", (run_id,)).fetchall()
        out = []
        for uuid, status in rows:
            tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (uuid,)).fetchall())
            out.append((status, tags))
        return out
    finally:
        con.close()


def _canonical_files_are_whole(artifacts: Path, run_id: str) -> List[str]:
    """Every canonical file that exists is complete (atomic writes): parse each one."""
    import zipfile

    from spline_lstm.artifacts.layout import ArtifactLayout, safe_load_pickle

    problems = []
    for kind, path in ArtifactLayout(artifacts).paths(run_id).items():
        if not path.exists():
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif kind == "processed":
                with np.load(path, allow_pickle=False) as npz:
                    npz["processed"].sum()
            elif kind == "preprocessor":
                safe_load_pickle(path)
            elif path.suffix == ".keras":
                with zipfile.ZipFile(path) as zf:
                    assert zf.testzip() is None
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{kind}: {type(exc).__name__}: {exc}")
    return problems


@pytest.mark.unit
def test_signals_are_deferred_to_the_end_of_a_block_and_a_second_one_is_not():
    """What keeps TensorFlow steps whole: inside ``signals_deferred`` a signal is only
    recorded; ``raise_if_signalled`` (the Keras callback's check) or the block's end
    raises it; a second signal raises at once; the previous handlers come back."""
    from spline_lstm.core.errors import raise_if_signalled, signals_deferred

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    reached = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now
            reached.append("after the signal")
            raise_if_signalled()
            reached.append("after the check")
    assert reached == ["after the signal"]
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("block end")
    assert reached[-1] == "block end"
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached.append("never")
    assert reached[-1] != "never"
    with signals_deferred():
        pass  # nothing pending: no exception
    raise_if_signalled()  # outside a block nothing is ever pending
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# phase -> (launch overrides, when to send the signal, the log line that must not appear: it
# would show the signal landed after the phase)
INTERRUPT_PHASES = {
    "preprocessing": (BIG_SERIES, lambda rid: _started("== load + validate"), "== spline"),
    "training": (LONG_TRAINING, lambda rid: _training_started(), "== evaluate"),
    "writing": (BIG_SERIES, lambda rid: _started(f"run_id {rid} -> "), "== model"),  # claimed, then written
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(INTERRUPT_PHASES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_then_quarantine_and_rerun(sig, phase, smoke_run: Run, tmp_path):
    """Case ids ``<signal>-during-<phase>``: exit 130 whenever the signal lands, no
    half-written canonical file, MLflow run KILLED once one was started, and the
    runbook's quarantine -> rerun with the same run_id passes the gate."""
    out = tmp_path / "outputs"
    shutil.copytree(smoke_run.outputs, out, symlinks=True)
    relocate_mlflow(out)
    bystander = snapshot(out / "artifacts")
    rid = f"hx-{sig.name.lower()}-{phase}"
    args, trigger, later = INTERRUPT_PHASES[phase]
    w = _start_and_wait([*args, f"run_id={rid}"], out, trigger(rid), phase)
    w.proc.send_signal(sig)
    code = w.finish(timeout=120)
    assert code == 130, w.out[-2000:] + w.stderr[-2000:]
    assert last_line(w.stderr) == (f"ERROR [INTERRUPTED] interrupted ({sig.name}); no canonical file is left "
                                   f"half-written (log: {out / 'runs' / rid / 'run.log'})"), w.stderr[-2000:]
    assert "Traceback" not in w.out + w.stderr
    assert later not in w.out, f"the signal landed after {phase}"
    runs = _mlflow_runs(out / "mlflow.db", rid)
    assert [s for s, _ in runs] == ([] if phase == "preprocessing" else ["KILLED"])
    assert not _canonical_files_are_whole(out / "artifacts", rid)
    assert not (out / "artifacts" / "checkpoints" / rid / ".staging").exists()
    if phase == "preprocessing":  # stopped before the claim: not one file of the run exists
        from spline_lstm.artifacts.layout import ArtifactLayout

        assert not ArtifactLayout(out / "artifacts").existing(rid)
    health = cli("health", rid, "--outputs-dir", str(out))
    assert health.returncode in (9, 10, 11), health.stdout
    assert {k: v for k, v in snapshot(out / "artifacts").items() if k in bystander} == bystander
    q = cli("runs", "quarantine", rid, "--outputs-dir", str(out))
    assert q.returncode == 0, q.stdout + q.stderr
    again = launch(*SMOKE_FAST, f"run_id={rid}", outputs=out)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert cli("health", rid, "--outputs-dir", str(out)).returncode == 0
    statuses = [(s, t.get("quarantined")) for s, t in _mlflow_runs(out / "mlflow.db", rid)]
    assert statuses == ([] if phase == "preprocessing" else [("KILLED", "true")]) + [("FINISHED", None)]
    assert {k: v for k, v in snapshot(out / "artifacts").items() if k in bystander} == bystander


@pytest.mark.slow
def test_sigkill_during_training_leaves_an_incomplete_run_the_gate_refuses(tmp_path):
    out = tmp_path / "outputs"
    w = _start_and_wait_for_training("hx-sigkill", out, tracking=False)
    w.proc.kill()
    w.finish()
    listing = cli("runs", "list", "--json", "--outputs-dir", str(out))
    assert listing.returncode == 0, listing.stderr
    rows = {r["run_id"]: r for r in json.loads(listing.stdout)}
    assert rows["hx-sigkill"]["status"] == "incomplete"
    health = cli("health", "hx-sigkill", "--outputs-dir", str(out))
    assert health.returncode == 9 and last_line(health.stderr).startswith("ERROR [HEALTH_FAILED]")
    assert not _canonical_files_are_whole(out / "artifacts", "hx-sigkill")


@pytest.mark.slow
def test_two_launches_racing_for_one_run_id(tmp_path):
    """Started together with one run_id and different seeds: one wins, the other exits
    4 without writing into the winner's Hydra folder (its records and log stay the winner's)."""
    out = tmp_path / "outputs"
    args = [sys.executable, str(REPO / "launch.py"), *SMOKE_FAST, "tracking=none", "run_id=hx-race",
            f"paths.outputs_dir={out}"]
    procs = [subprocess.Popen([*args, f"seed={seed}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=str(REPO)) for seed in (1, 2)]
    results = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 4], results
    loser = results[codes.index(4)]
    assert last_line(loser[1]).startswith("ERROR [RUN_ID_CONFLICT]") and "Traceback" not in "".join(loser)
    health = cli("health", "hx-race", "--outputs-dir", str(out))
    assert health.returncode == 0, health.stdout + health.stderr
    winner_seed = (1, 2)[codes.index(0)]
    metadata = json.loads((out / "artifacts" / "metadata" / "hx-race.json").read_text())
    assert metadata["seed"] == winner_seed
    hydra_dir = out / "runs" / "hx-race"
    assert f"seed: {winner_seed}\n" in (hydra_dir / ".hydra" / "config.yaml").read_text()
    assert f"- seed={winner_seed}" in (hydra_dir / ".hydra" / "overrides.yaml").read_text()
    run_log = (hydra_dir / "run.log").read_text()
    assert "RUN_ID_CONFLICT" not in run_log and run_log.count("== load + validate") == 1, run_log


def _mount_tmpfs(where: Path, size: int) -> Optional[str]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a tmpfs needs root and mount(8)"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {proc.stderr.strip()[:200]}"
    return None


@pytest.mark.slow
def test_disk_full_while_checkpointing(smoke_run: Run, tmp_path):
    page = 4096
    pre = sum(-(-smoke_run.path(k).stat().st_size // page) * page for k in ("processed", "meta", "preprocessor"))
    best = smoke_run.path("best").stat().st_size
    size = pre + 3 * page  # room for the preprocessing artifacts, not for a checkpoint
    assert size < pre + best, "checkpoint too small to overflow the tmpfs"
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, size)
    if why:
        pytest.skip(why)
    try:
        out = tmp_path / "outputs"
        proc = launch(*SMOKE_FAST, "tracking=none", "run_id=hx-full", f"paths.artifacts_dir={mnt}/artifacts",
                      outputs=out)
        assert "== fit" in proc.stdout, "failed before training: " + proc.stderr[-2000:]
        assert proc.returncode == 6, proc.stdout[-2000:] + proc.stderr[-2000:]
        line = last_line(proc.stderr)
        assert line.startswith("ERROR [STORAGE_ERROR]") and "Traceback" not in proc.stdout + proc.stderr
        from spline_lstm.artifacts.layout import ArtifactLayout

        paths = ArtifactLayout(mnt / "artifacts").paths("hx-full")
        assert not paths["best"].exists() and not paths["last"].exists()
        assert not (paths["best"].parent / ".staging").exists(), "the partial checkpoint still takes the space"
        assert not _canonical_files_are_whole(mnt / "artifacts", "hx-full")
        assert cli("health", "hx-full", "--artifacts-dir", str(mnt / "artifacts")).returncode == 9
        assert str(mnt) in line, f"the error line does not say where the disk is full: {line}"
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_disk_full_under_the_log_fails_quietly_with_6(tmp_path):
    """A run log on a full disk: the handler fails quietly (no '--- Logging error ---'
    traceback), and the run fails with 6 through its own writes. A few sizes, so that
    the disk fills at Hydra's records, in the log, and at the first artifact."""
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, 96 * 1024)
    if why:
        pytest.skip(why)
    try:
        for pages in (3, 4, 5, 6):
            for entry in mnt.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            st = os.statvfs(mnt)
            (mnt / "filler").write_bytes(b"x" * (st.f_bavail * st.f_frsize - pages * st.f_frsize))
            outside = _outside_listing()
            proc = launch(*SMOKE_FAST, "tracking=none", f"run_id=hx-full-{pages}", outputs=mnt / "out")
            console = proc.stdout + proc.stderr
            assert proc.returncode == 6, f"{pages} pages: {console[-3000:]}"
            assert last_line(proc.stderr).startswith("ERROR [STORAGE_ERROR]"), console[-2000:]
            assert "Traceback" not in console and "Logging error" not in console, console[-3000:]
            assert not set(_outside_listing()) - outside
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_eight_job_parallel_sweep_beside_a_healthy_run(smoke_run: Run, tmp_path):
    out = tmp_path / "outputs"
    shutil.copytree(smoke_run.outputs, out, symlinks=True)
    relocate_mlflow(out)
    bystander = snapshot(out / "artifacts")
    proc = launch("-m", *SMOKE_FAST, "seed=1,2,3,4,5,6,7,8", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  outputs=out, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = sorted(p.stem for p in (out / "artifacts" / "metrics").glob("*.json"))
    new = [m for m in metrics if m != HEALTHY_RUN_ID]
    assert len(new) == 8 and len(set(new)) == 8
    for rid in new:
        record = json.loads((out / "artifacts" / "health" / f"{rid}.json").read_text())
        assert record["verdict"] == "PASS", rid
        assert [s for s, _ in _mlflow_runs(out / "mlflow.db", rid)] == ["FINISHED"]
    con = sqlite3.connect(f"file:{out / 'mlflow.db'}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 10  # the healthy run, 8 jobs, their parent
    finally:
        con.close()
    assert {k: v for k, v in snapshot(out / "artifacts").items() if k in bystander} == bystander
    assert [s for s, _ in _mlflow_runs(out / "mlflow.db", HEALTHY_RUN_ID)] == ["FINISHED"]


@pytest.mark.slow
def test_tracking_password_never_written_with_a_live_server(tmp_path):
    with mlflow_server(tmp_path / "server") as found:
        if found is None:
            pytest.skip("the mlflow CLI is missing or its server did not start within 90 s")
        port, srv_dir = found
        out = tmp_path / "outputs"
        uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
        proc = launch(*SMOKE_FAST, f"tracking.uri={uri}", "run_id=hx-server", outputs=out)
        assert SECRET not in proc.stdout + proc.stderr, "password on the console"
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        leaked = [str(p) for root in (out, srv_dir) for p in root.rglob("*")
                  if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert not leaked, f"password written to {leaked}"
        assert "alice:***@" in (out / "artifacts" / "metadata" / "hx-server.json").read_text()


# =============================================================================
# Issue 24: resource limits are storage failures (6), by category, not by a list
# =============================================================================

@pytest.mark.unit
@pytest.mark.parametrize("name", ["ENOSPC", "EDQUOT", "EFBIG", "EMFILE", "ENFILE", "EMLINK", "EACCES", "EPERM",
                                  "EROFS", "ETXTBSY", "EIO", "ENXIO", "ENODEV", "ESTALE", "EREMOTEIO", "ENOLCK",
                                  "EXDEV", "EEXIST", "ENOTDIR", "EISDIR", "ENOTEMPTY", "ELOOP", "ENAMETOOLONG"])
def test_every_storage_errno_category_maps_to_6(name):
    import errno as errno_mod

    from spline_lstm.core.errors import classify

    if not hasattr(errno_mod, name):
        pytest.skip(f"{name} not on this platform")
    code = getattr(errno_mod, name)
    wrapped = RuntimeError("a save failed")
    wrapped.__cause__ = OSError(code, os.strerror(code))
    for exc in (OSError(code, os.strerror(code)), wrapped):
        err = classify(exc)
        assert (err.code, err.name) == (6, "STORAGE_ERROR"), (name, str(err))
        assert name in str(err) and "\n" not in str(err)


@pytest.mark.unit
@pytest.mark.parametrize("exc", [PermissionError("denied"), FileExistsError("x"), IsADirectoryError("x"),
                                 NotADirectoryError("x")], ids=lambda e: type(e).__name__)
def test_oserror_subclasses_without_errno_are_storage(exc):
    from spline_lstm.core.errors import classify

    assert classify(exc).code == 6


@pytest.mark.unit
@pytest.mark.parametrize("exc", [ConnectionRefusedError(111, "refused"), TimeoutError("slow"),
                                 OSError(22, "Invalid argument"), OSError("no errno"), ValueError("x")],
                         ids=lambda e: repr(e)[:30])
def test_network_and_other_errors_are_not_storage(exc):
    from spline_lstm.core.errors import classify

    assert classify(exc).code == 1


def test_file_size_limit_fails_with_6_not_unexpected(tmp_path):
    """``ulimit -f`` below the checkpoint's size: SIGXFSZ is ignored (the write raises
    EFBIG instead of killing the process), and the run ends STORAGE_ERROR, 6."""
    import resource

    def limit():  # 30 KiB: the data files fit, the ~40 KiB checkpoint does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (30 * 1024, 30 * 1024))

    out = tmp_path / "outputs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *SMOKE_FAST, "tracking=none", "run_id=hx-fsize",
                           f"paths.outputs_dir={out}"], capture_output=True, text=True, env=env, timeout=600,
                          preexec_fn=limit, cwd=str(tmp_path))
    line = last_line(proc.stderr)
    assert proc.returncode == 6, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert line.startswith("ERROR [STORAGE_ERROR]") and "EFBIG" in line and "ulimit -f" in line, line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not _canonical_files_are_whole(out / "artifacts", "hx-fsize")
    assert not list((out / "artifacts").rglob(".staging")), "a partial checkpoint was left behind"


@pytest.mark.unit
def test_input_size_bound_refuses_before_parsing(tmp_path, monkeypatch):
    from spline_lstm.data import loading

    path = _good(tmp_path)
    monkeypatch.setattr(loading, "MAX_INPUT_BYTES", path.stat().st_size - 1)
    monkeypatch.setattr(loading, "_read_csv", lambda *a, **k: pytest.fail("parsed a file over the size bound"))
    with pytest.raises(loading.InputInvalid, match="above the 0 GiB input limit"):
        loading.read_table(path, "timestamp", "value")


# =============================================================================
# Issue 24: an interrupted sweep leaves no MLflow run RUNNING (one path, every launcher)
# =============================================================================

@pytest.mark.slow
@pytest.mark.parametrize("target", ["group", "launcher"])
def test_interrupted_joblib_sweep_ends_every_run_killed(target, tmp_path):
    """Ctrl-C (SIGINT to the process group, or to the launcher alone) while both jobs of a
    2-worker joblib sweep train: exit 130, the parent and both job runs KILLED, none RUNNING
    (joblib kills a worker's process tree, its MLflow helper included, so the sweep's end
    ends what is still open); a bystander run in the same store is not touched."""
    from mlflow.tracking import MlflowClient

    from tests.helpers.processes import env as child_env

    from spline_lstm.tracking.store import Store
    from spline_lstm.tracking.tracker import ensure_store

    out = tmp_path / "outputs"
    out.mkdir()
    bystander = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")

    experiment = ensure_store(Store(f"sqlite:///{out}/mlflow.db", str(out / "mlartifacts"), "spline-lstm"))
    other = bystander.create_run(experiment, run_name="bystander", tags={"run_id": "bystander"}).info.run_id
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "-m", *LONG_TRAINING, "seed=1,2",
                             "hydra/launcher=joblib", f"paths.outputs_dir={out}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), start_new_session=True,
                            env=child_env({"SPLINE_LSTM_SWEEP_IDLE_CHECK": "0"}))
    seen, deadline = set(), time.time() + 300
    for line in proc.stdout:
        m = re.search(r"\]\[([^\]]+)\]\[INFO\] == fit", line)
        if m:
            seen.add(m.group(1))
        if len(seen) == 2 or time.time() > deadline:
            break
    assert len(seen) == 2, "both jobs never trained at once"
    time.sleep(2)
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert last_line(stderr).startswith("ERROR [INTERRUPTED]") and "Traceback" not in stderr
    parent, jobs = sweep_runs(out)
    jobs = [r for r in jobs if r.info.run_id != other]
    assert parent.info.status == "KILLED"
    assert sorted(r.info.status for r in jobs) == ["KILLED", "KILLED"], \
        [(r.info.run_name, r.info.status) for r in jobs]
    assert bystander.get_run(other).info.status == "RUNNING"  # another run is never touched


@pytest.mark.unit
def test_sweep_end_closes_only_its_own_open_job_runs(tmp_path):
    """The sweep's end (app.sweep.end_open_children) ends its RUNNING children, and nothing else:
    not an ended child, not a RUNNING run of another sweep."""
    from dataclasses import asdict

    from mlflow.tracking import MlflowClient

    from spline_lstm.app.sweep import end_open_children
    from spline_lstm.tracking.store import Store
    from spline_lstm.tracking.tracker import ensure_store

    store = Store(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "mlartifacts"), "spline-lstm")
    experiment = ensure_store(store)
    client = MlflowClient(tracking_uri=store.uri)
    parent, other_parent = (client.create_run(experiment, run_name=n).info.run_id for n in ("mine", "theirs"))
    child = {n: client.create_run(experiment, run_name=n, tags={"mlflow.parentRunId": p}).info.run_id
             for n, p in [("open", parent), ("done", parent), ("open-2", parent), ("theirs-open", other_parent)]}
    client.set_terminated(child["done"], "FINISHED")
    assert sorted(end_open_children(asdict(store), parent, "KILLED")) == ["open", "open-2"]
    status = {n: client.get_run(r).info.status for n, r in child.items()}
    assert status == {"open": "KILLED", "done": "FINISHED", "open-2": "KILLED", "theirs-open": "RUNNING"}
    assert client.get_run(child["open"]).data.tags["health"] == "FAIL"
