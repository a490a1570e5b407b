"""Operator commands: ``python -m spline_lstm`` (also installed as ``spline-lstm``).

    health RUN_ID            the gate, standalone (exit 0 / 9 / 10 / 11 / 12)
    predict RUN_ID --input F forecast with a healthy run's model + preprocessor
    runs list                every run_id with age, gate status and test rmse
    runs quarantine RUN_ID   move a run's files aside (nothing deleted)

Every failure exits with its code (docs/exit-codes.md) and one ``ERROR [NAME] ...`` line.
``health`` and ``runs`` never import TensorFlow; ``health`` and ``runs quarantine``
import MLflow only to tag the run in a configured store (``--tracking-uri``, else
OUTPUTS_DIR/mlflow.db when it exists; ``--no-tracking`` skips it).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from typing import List, Optional

from spline_lstm.cli import health, predict, runs
from spline_lstm.core.errors import ConfigInvalid, classify, error_line, one_line
from spline_lstm.core.scratch import scratch_dir, system_tempdir


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigInvalid instead of printing its usage text and exiting 2:
    a wrong option, a missing argument or a value of the wrong type (``--level nan``) ends
    like every other failure, with one ``ERROR [CONFIG_INVALID] ...`` line (exit 2).
    ``--help`` still prints the help and exits 0. Subparsers inherit the class."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise ConfigInvalid(f"{self.prog}: {one_line(message)} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spline-lstm", description="Operate spline-lstm runs: check, predict, list, quarantine.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m spline_lstm health RUN_ID\n"
               "  python -m spline_lstm predict RUN_ID --input recent.csv --output forecast.csv\n"
               "  python -m spline_lstm runs list\n"
               "  python -m spline_lstm runs quarantine RUN_ID\n\n"
               "Train with: python launch.py +preset=smoke. Exit codes: see runbook/README.md.")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    health.add_parser(sub, fmt)
    predict.add_parser(sub, fmt)
    runs.add_parser(sub, fmt)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """The subcommand's exit code; what libraries put in the temp dir (TensorFlow's autograph
    files when ``predict`` loads a model) is removed as it ends (core.scratch)."""
    with scratch_dir():
        return _main(argv)


def _main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ConfigInvalid as err:
        print(error_line(err), file=sys.stderr)
        return err.code
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("ERROR [INTERRUPTED] interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes an exit code
        err = classify(exc)
        log_path = None
        if err.code == 1:
            fd, log_path = tempfile.mkstemp(prefix="spline-lstm-", suffix=".log", dir=system_tempdir())
            with os.fdopen(fd, "w") as fh:
                traceback.print_exc(file=fh)
        print(error_line(err, log_path), file=sys.stderr)
        return err.code
