"""Run Hydra and map the outcome to docs/exit-codes.md exit codes.

Hydra re-raises a failed job's exception when HYDRA_FULL_ERROR=1: after a single
run at once, after a sweep once every job has run. Each job records its verdict
in a status folder, so the end of a sweep can list every failed run_id. The
containment callback refuses a config before Hydra writes (``containment.Refused``,
mapped here like any typed error); overrides that would move Hydra's writes are
refused here, before Hydra starts.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import List, Optional

from spline_lstm.app.containment import check_overrides
from spline_lstm.app.hydra_app import task
from spline_lstm.app.sweep import finish
from spline_lstm.app.sweep import passed as sweep_passed
from spline_lstm.core import environment
from spline_lstm.core.config import register_configs
from spline_lstm.core.errors import (ConfigInvalid, SplineLSTMError, classify, error_line,
                                      interrupt_on_signal, one_line)
from spline_lstm.core.ids import new_sweep_id, validate_run_id
from spline_lstm.core.scratch import scratch_dir, system_tempdir
from spline_lstm.core.secrets import hide_passwords


def _statuses(status_dir: Path) -> List[dict]:
    out = []
    for path in sorted(status_dir.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return out


def _quiet_job_return() -> None:
    """Hydra's ``JobReturn.return_value`` of a failed job without the line it writes to
    stderr first (``Error executing job with overrides: [...]``): every failure prints
    its one ``ERROR [NAME]`` line (docs/exit-codes.md), the launcher's."""
    from hydra.core.utils import JobReturn, JobStatus

    def return_value(self):
        assert self.status != JobStatus.UNKNOWN, "return_value not yet available"
        if self.status == JobStatus.COMPLETED:
            return self._return_value
        raise self._return_value

    JobReturn.return_value = property(return_value, JobReturn.return_value.fset)


def launch(config_path: str, argv: Optional[List[str]] = None) -> int:
    """Run Hydra -> the exit code, with a private temp folder removed at the end (core.scratch):
    nothing a library wrote to the temp dir outlives the command."""
    with scratch_dir():
        return _launch(config_path, argv)


def _launch(config_path: str, argv: Optional[List[str]] = None) -> int:
    import hydra

    environment.write(environment.HYDRA_FULL_ERROR, "1")
    logging.raiseExceptions = False  # a log handler on a full disk fails quietly; the run's own writes report it
    environment.write(environment.SWEEP_ID, new_sweep_id())  # fresh per launch, never inherited
    environment.clear(*environment.THREAD_BUDGET)  # a thread budget only from this launch's own parallel sweep
    status_dir = Path(tempfile.mkdtemp(prefix="spline-lstm-status-"))
    environment.write(environment.STATUS_DIR, str(status_dir))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt_on_signal)
    # A write past ``ulimit -f`` raises EFBIG (STORAGE_ERROR, 6) instead of killing the process:
    # CPython ignores SIGXFSZ at start-up; said here so no library's handler changes it.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    register_configs()

    sys.argv = [sys.argv[0], *hide_passwords(sys.argv[1:] if argv is None else argv)]
    if "--help" in sys.argv or "-h" in sys.argv:
        _list_groups_from_files(Path(config_path))
    main = hydra.main(config_path=config_path, config_name="config", version_base="1.3")(task)
    _quiet_job_return()
    try:
        _precheck(sys.argv[1:])
        main()
        statuses = _statuses(status_dir)
        failed = [s for s in statuses if not s.get("ok")]
        # a search whose trials partly failed: the study passed (its table names the best trial);
        # otherwise a job failed without Hydra re-raising (defensive): the first failure's code
        code = 0 if not failed or sweep_passed(status_dir, statuses) else failed[0].get("code", 1)
        _end_sweep(status_dir, statuses, code)
        if failed:
            _print_failures(failed, total=len(statuses))
        elif len(statuses) > 1:
            print(f"sweep {environment.read(environment.SWEEP_ID)}: all {len(statuses)} jobs passed the "
                  "health gate: " + ", ".join(s["run_id"] for s in statuses))
    except BrokenPipeError:  # e.g. `launch.py --help | head`
        code = 0
    except SystemExit as exc:  # argparse / --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an exit code
        err = classify(exc)
        statuses = _statuses(status_dir)
        failed = [s for s in statuses if not s.get("ok")]
        if err.code == 1 and failed:  # a sweeper that gave up after failed jobs (Optuna: no trial
            err = _job_error(failed[0])  # completed): their error is the sweep's, as for the basic one
        log_path = next((s.get("log") for s in failed if s.get("run_id") and s.get("name") == err.name), None)
        log_path = _keep_traceback(exc, err, log_path)
        _end_sweep(status_dir, statuses, err.code)
        if statuses and (len(statuses) > 1 or "-m" in sys.argv or "--multirun" in sys.argv):
            _print_failures(failed, total=len(statuses))
        sys.stdout.flush()
        print(error_line(err, log_path), file=sys.stderr)
        code = err.code
    finally:
        shutil.rmtree(status_dir, ignore_errors=True)
    return code


def _job_error(status: dict):
    """The typed error a failed job recorded, rebuilt from its name and message."""

    kind = next((c for c in SplineLSTMError.__subclasses__() if c.name == status.get("name")), SplineLSTMError)
    return kind(status.get("message", ""))


def _end_sweep(status_dir: Path, statuses: List[dict], code: int) -> None:
    """A sweep's ranked table on stdout, its summary files and parent run ended (spline_lstm.app.sweep)."""

    try:
        text = finish(status_dir, statuses, code)
    except Exception as exc:  # noqa: BLE001 - display only: the exit code and error line stand
        text = f"sweep table unavailable: {type(exc).__name__}: {exc}"
    if text:
        print(text, flush=True)


def _list_groups_from_files(config_dir: Path) -> None:
    """``--help`` lists each ``conf/<group>/*.yaml`` by file name; Hydra's own listing
    composes every option of every group first (most of the command's 0.8 s)."""
    from hydra._internal.hydra import Hydra

    def format_config_groups(self, predicate, compact: bool = True) -> str:  # noqa: ARG001 - Hydra's signature
        lines = []
        for group in sorted(d for d in config_dir.iterdir() if d.is_dir() and predicate(d.name)):
            lines.append(f"{group.name}: {', '.join(sorted(f.stem for f in group.glob('*.yaml')))}")
        return "\n".join(lines)

    Hydra.format_config_groups = format_config_groups


def _precheck(args: List[str]) -> None:
    """Refuse overrides of where Hydra writes (containment.check_overrides), and a
    bad ``run_id=`` with RUN_ID_INVALID even where Hydra's override lexer would
    reject it first as a syntax error (unicode, shell metacharacters)."""

    _parse_flags(args)
    check_overrides(args)
    if "-m" in args or "--multirun" in args:
        return  # a sweep may list several run_ids; each job is checked before the sweep starts

    for arg in args:
        if arg.startswith(("run_id=", "+run_id=", "++run_id=")):
            value = arg.split("=", 1)[1]
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            validate_run_id(value)


def _parse_flags(args: List[str]) -> None:
    """Hydra's own flags parsed first with an argparse that raises ConfigInvalid: a wrong
    flag (``--bogus``, ``--cfg`` without a value) is one ERROR [CONFIG_INVALID] line, exit 2,
    not argparse's usage text."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str):
        raise ConfigInvalid(f"launch.py: {one_line(message)} (see python launch.py --help)")

    parser.error = error  # type: ignore[method-assign]
    parser.parse_args(args)


def _keep_traceback(exc: BaseException, err, log_path: Optional[str]) -> Optional[str]:
    """The traceback goes to the run's log (or, for a bug outside any run, a temp
    log), never to the console. Returns the log path to name in the error line."""
    if log_path is None and err.code != 1:
        return None  # expected failure before any run folder exists: the line says it all
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="spline-lstm-", suffix=".log", dir=system_tempdir())
        os.close(fd)
    try:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return log_path


def _print_failures(failed: List[dict], total: Optional[int] = None) -> None:
    head = f"{len(failed)} of {total} jobs failed" if total else f"{len(failed)} jobs failed"
    print(f"sweep summary: {head}", file=sys.stderr)
    for s in failed:
        print(f"  FAILED {s['run_id']}: [{s.get('name')}] {s.get('message')} (log: {s.get('log')})",
              file=sys.stderr)
