"""Operator commands: ``python -m spline_lstm`` (also installed as ``spline-lstm``).

    health RUN_ID            the gate, standalone (exit 0 / 9 / 10 / 11 / 12)
    predict RUN_ID --input F forecast with a healthy run's model + preprocessor
    runs list                every run_id with age, gate status and test rmse
    runs quarantine RUN_ID   move a run's files aside (nothing deleted)

Every failure exits with its CONTRACT §7 code and one ``ERROR [NAME] ...`` line.
``health`` and ``runs`` never import TensorFlow; ``health`` and ``runs quarantine``
import MLflow only to tag the run in a configured store (``--tracking-uri``, else
OUTPUTS_DIR/mlflow.db when it exists; ``--no-tracking`` skips it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import List, Optional

from spline_lstm.core.errors import InputInvalid, SplineLSTMError, classify, error_line

DEFAULT_OUTPUTS = os.environ.get("SPLINE_LSTM_OUTPUTS_DIR", "outputs")


def _dirs(args) -> tuple:
    outputs = Path(args.outputs_dir).absolute()
    artifacts = Path(args.artifacts_dir).absolute() if args.artifacts_dir else outputs / "artifacts"
    return outputs, artifacts


def cmd_health(args) -> int:
    """The gate, from the files alone: requires the completion record and re-verifies
    every file each time (a stored verdict is never trusted)."""
    from spline_lstm.artifacts.layout import ArtifactLayout
    from spline_lstm.artifacts.health import fingerprint, run_gate, write_record

    _, artifacts = _dirs(args)
    layout = ArtifactLayout(artifacts)
    t0 = time.perf_counter()
    before = fingerprint(layout, args.run_id)
    result = run_gate(artifacts, args.run_id)
    unchanged = before == fingerprint(layout, args.run_id)  # only then may runs list reuse the verdict
    elapsed_ms = (time.perf_counter() - t0) * 1000
    record = None
    # A run with no files at all (never run, or quarantined) gets no record: writing
    # health/<run_id>.json would claim the run_id and block its rerun (RUN_ID_CONFLICT).
    has_files = any(p != layout.health_path(args.run_id) for p in layout.existing(args.run_id))
    if has_files:
        try:
            record = write_record(result, before if unchanged else None)
        except SplineLSTMError:
            pass  # read-only artifacts dir: the storage check already says so
    tagged, note = None, None
    if has_files:  # the verdict goes to MLflow too; a failed gate ends the run FAILED there
        experiment = _recorded_experiment(layout.paths(args.run_id)["metadata"])
        tagged, note = _tag_store(args, experiment, args.run_id, {"health": "PASS" if result.passed else "FAIL"},
                                  None if result.passed else "FAILED")
    if args.json:
        print(json.dumps({**result.to_dict(), "record": str(record) if record else None,
                          "mlflow_runs_tagged": tagged}, indent=2))
    else:
        print(f"health gate for run_id {args.run_id} ({artifacts})")
        print(f"{'check':<9} {'status':<6} {'ms':>7}  message")
        for c in result.checks:
            print(f"{c.name:<9} {c.status:<6} {c.duration_ms:>7.1f}  {c.message}")
        print(f"verdict: {'PASS' if result.passed else 'FAIL'} in {elapsed_ms:.0f} ms"
              + (f"; record {record}" if record else ""))
        if record is None and not layout.existing(args.run_id):
            print(f"note: no file of run_id {args.run_id} under {artifacts} (never run here, wrong "
                  "--outputs-dir, or quarantined); no health record written")
        if tagged:
            print(f"MLflow: tagged {tagged} run(s) health={'PASS' if result.passed else 'FAIL'}"
                  + ("" if result.passed else ", status FAILED"))
        elif note:
            print(f"note: {note}")
    err = result.error()
    if err is not None:
        raise err
    return 0


def cmd_predict(args) -> int:
    from spline_lstm.app.containment import check_predict_output
    from spline_lstm.serving.predict import forecast, forecast_registered, write_forecast

    outputs, artifacts = _dirs(args)
    if args.format == "parquet" and not args.output:
        raise InputInvalid("--format parquet needs --output PATH (Parquet is not printed to a terminal)")
    target = None  # checked before the forecast: a refused --output costs no model load
    if args.output:
        for source in args.input:
            target = check_predict_output(args.output, source, outputs, artifacts, args.overwrite)
    if args.run_id.startswith("models:/"):
        default_db = outputs / "mlflow.db"
        if not args.tracking_uri and not default_db.is_file():  # MLflow would create an empty store there
            raise InputInvalid(f"{args.run_id}: no MLflow store at {default_db}; pass --tracking-uri URI "
                               "(the store the model was registered in) or --outputs-dir")
        frame = forecast_registered(args.run_id, args.tracking_uri or f"sqlite:///{default_db}",
                                    [Path(p) for p in args.input], args.horizon, args.level, args.series)
    else:
        from spline_lstm.artifacts.layout import validate_run_id

        validate_run_id(args.run_id)
        frame = forecast(artifacts, args.run_id, [Path(p) for p in args.input], args.horizon, args.level,
                         verbose=args.verbose, series=args.series)
    data = write_forecast(frame, target, overwrite=args.overwrite, fmt=args.format)
    if target is not None:
        print(f"wrote {len(frame)} forecasts to {target}")
    else:
        sys.stdout.write(data.decode("utf-8"))
    return 0


def run_status(outputs: Path, artifacts: Path, run_id: str) -> dict:
    """A run's row: PASS / FAIL by the gate (re-run unless the last ``health`` verdict's
    fingerprint, sizes and mtimes of every file, still matches), ``running`` while a live
    process holds its folder, ``incomplete`` without a completion record."""
    from spline_lstm.artifacts.layout import ArtifactLayout, iter_hydra_dirs, lock_held
    from spline_lstm.core.documents import MetricsDoc
    from spline_lstm.core.errors import SplineLSTMError
    from spline_lstm.artifacts.health import cached_verdict, read_record, run_gate
    from spline_lstm.core.jsonio import read_json

    layout = ArtifactLayout(artifacts)
    paths = layout.paths(run_id)
    present = sum(p.is_file() and not p.is_symlink() for p in paths.values())
    reason = None
    if os.path.lexists(layout.complete_path(run_id)):
        status = cached_verdict(artifacts, run_id)
        if status is None:
            result = run_gate(artifacts, run_id)
            status = "PASS" if result.passed else "FAIL"
            reason = str(result.error()) if not result.passed else None
    elif any(lock_held(d) for d in iter_hydra_dirs(outputs, run_id)):
        status = "running"
    else:  # never committed: it failed, was killed, or is still being written by a worker
        report = read_record(artifacts, run_id) or {}
        status = "FAIL" if report.get("verdict") == "FAIL" else "incomplete"
        reason = "no completion record: the run never finished"
    rmse = None
    try:
        rmse = MetricsDoc.from_dict(read_json(paths["metrics"])).rmse
    except (SplineLSTMError, TypeError):
        pass
    mtimes = [p.lstat().st_mtime for p in paths.values() if os.path.lexists(p)]
    return {"run_id": run_id, "status": status, "artifacts": f"{present}/{len(paths)}",
            "age_s": round(time.time() - max(mtimes), 1) if mtimes else None, "test_rmse": rmse,
            "reason": reason}


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_runs_list(args) -> int:
    from spline_lstm.artifacts.layout import ArtifactLayout

    outputs, artifacts = _dirs(args)
    rows = [run_status(outputs, artifacts, rid) for rid in ArtifactLayout(artifacts).run_ids()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs under {artifacts}")
        return 0
    width = max(len(r["run_id"]) for r in rows)
    print(f"{'run_id':<{width}}  {'age':>5}  {'status':<10} {'files':>5}  test_rmse")
    for r in rows:
        rmse = f"{r['test_rmse']:.4g}" if isinstance(r["test_rmse"], (int, float)) else "-"
        print(f"{r['run_id']:<{width}}  {_age(r['age_s']):>5}  {r['status']:<10} {r['artifacts']:>5}  {rmse}")
    return 0


def cmd_runs_quarantine(args) -> int:
    """Moves exactly one run_id's files; the MLflow tag goes to the configured store only
    (``--tracking-uri``, else the outputs dir's own mlflow.db), never to a URI read from
    the run's files, which anyone who could write them could have planted."""
    from spline_lstm.artifacts.layout import ArtifactLayout, iter_hydra_dirs, quarantine, validate_run_id

    outputs, artifacts = _dirs(args)
    run_id = validate_run_id(args.run_id)
    layout = ArtifactLayout(artifacts)
    experiment = _recorded_experiment(layout.paths(run_id)["metadata"])
    target = quarantine(layout, run_id, list(iter_hydra_dirs(outputs, run_id)))
    if target is None:
        print(f"nothing to quarantine for run_id {run_id} under {artifacts}")
        return 0
    moved = sum(1 for p in target.rglob("*") if p.is_file())
    print(f"quarantined run_id {run_id}: {moved} files moved to {target}")
    tagged, note = _tag_store(args, experiment, run_id, {"quarantined": "true"})
    if tagged:
        print(f"MLflow: tagged {tagged} run(s) quarantined=true")
    elif note:
        print(f"note: {note}")
    print(f"the run_id can be reused now: python launch.py ... run_id={run_id}")
    return 0


def _recorded_experiment(metadata: Path) -> str:
    """The experiment name the run recorded (a name to look up in the configured store,
    never a store to connect to); the default one if unreadable."""
    from spline_lstm.core.documents import read_metadata
    from spline_lstm.core.errors import SplineLSTMError

    try:
        name = read_metadata(metadata).experiment
    except SplineLSTMError:
        name = None
    return name if isinstance(name, str) and 0 < len(name) <= 256 else "spline-lstm"


def _tag_store(args, experiment: str, run_id: str, tags: dict, status: Optional[str] = None) -> tuple:
    """Tag the run's MLflow runs in the configured store -> (how many, or None; a note
    when skipped). Best effort: the files are the record; the store may be gone."""
    outputs, _ = _dirs(args)
    default_db = outputs / "mlflow.db"
    if args.no_tracking:
        return None, "MLflow not tagged (--no-tracking)"
    if not args.tracking_uri and not default_db.is_file():
        return None, (f"MLflow not tagged: no store at {default_db} (tracking=none, or a server: "
                      "pass --tracking-uri)")
    try:
        from spline_lstm.core.secrets import take_credentials
        from spline_lstm.tracking.tracker import Store, tag_runs

        uri, user = take_credentials(args.tracking_uri or f"sqlite:///{default_db}")
        tagged = tag_runs(Store(uri, "", experiment, user), run_id, tags, status)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: could not tag the MLflow run: {type(exc).__name__}", file=sys.stderr)
        return None, None
    return tagged, None if tagged else f"MLflow: no run tagged run_id={run_id} in experiment {experiment!r}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spline-lstm", description="Operate spline-lstm runs: check, predict, list, quarantine.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m spline_lstm health RUN_ID\n"
               "  python -m spline_lstm predict RUN_ID --input recent.csv --output forecast.csv\n"
               "  python -m spline_lstm runs list\n"
               "  python -m spline_lstm runs quarantine RUN_ID\n\n"
               "Train with: python launch.py +preset=smoke. Exit codes: see runbook/README.md.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--outputs-dir", default=DEFAULT_OUTPUTS,
                       help="outputs dir of the runs (default: %(default)s)")
        p.add_argument("--artifacts-dir", default=None, help="artifacts dir (default: OUTPUTS_DIR/artifacts)")

    def tracking_options(p, tag: str):
        p.add_argument("--tracking-uri", default=None,
                       help=f"MLflow store whose runs of RUN_ID get the tag {tag} (default: "
                            "sqlite:///OUTPUTS_DIR/mlflow.db when it exists)")
        p.add_argument("--no-tracking", action="store_true", help="leave MLflow alone")

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("health", help="run the health gate on a run", formatter_class=fmt,
                       description="Run the health gate (CONTRACT §6) on an existing run.\n"
                                   "exit 0 pass; 9 / 10 / 11 a file check failed; 12 MODEL_UNSKILLED: the run\n"
                                   "was recorded with gate.quality=strict and its model did not beat the best\n"
                                   "baseline (its files are whole and sealed; it never passes).\n\n"
                                   "example: python -m spline_lstm health phase4-smoke-20260101-120000-ab12")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    tracking_options(p, "health=PASS|FAIL (and status FAILED on a failed gate)")
    common(p)
    p.set_defaults(fn=cmd_health)

    p = sub.add_parser("predict", help="forecast with a run's model", formatter_class=fmt,
                       description="Gate the run (or load a registered model), then forecast the steps after "
                                   "the input's last timestamp.\n\nA --horizon beyond the trained one is "
                                   "forecast recursively (each block fed back as input). --level intervals are "
                                   "split-conformal: quantiles of the validation split's absolute errors per "
                                   "step; recursive steps widen the last step's by sqrt(step/horizon).\n\n"
                                   "A many-series run forecasts every series of the input (or those --series "
                                   "names) in one call: --input in the training layout (long format with the id "
                                   "column, or the wide file(s), once per training file in order); the table "
                                   "starts with the id column.\n\n"
                                   "examples:\n  python -m spline_lstm predict RUN_ID --input recent.csv "
                                   "--horizon 24 --level 80 95\n  python -m spline_lstm predict "
                                   "models:/NAME@candidate --input recent.csv --format json")
    p.add_argument("run_id", metavar="RUN_ID|models:/NAME@ALIAS")
    p.add_argument("--input", required=True, action="append", metavar="FILE",
                   help="CSV or Parquet with the run's columns (a many-series run trained on several "
                        "files: repeat --input, one per training file, in order)")
    p.add_argument("--series", nargs="+", default=None, metavar="ID",
                   help="many-series run: forecast only these series (default: every series of the input; an "
                        "input series the run was not trained on is an error unless --series leaves it out)")
    p.add_argument("--horizon", type=int, default=None,
                   help="steps to forecast (default: the trained horizon; beyond it: recursive)")
    p.add_argument("--level", type=int, nargs="+", default=[], metavar="L",
                   help="prediction interval levels in %% (e.g. --level 80 95)")
    p.add_argument("--format", choices=("csv", "parquet", "json"), default="csv", help="output format")
    p.add_argument("--output", help="file to write (default: print to stdout); never inside the artifacts "
                                    "tree, never the input, not an existing file unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store of a models:/ URI (default: sqlite:///OUTPUTS_DIR/mlflow.db)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own logs")
    common(p)
    p.set_defaults(fn=cmd_predict)

    runs = sub.add_parser("runs", help="list or quarantine runs", formatter_class=fmt,
                          description="List runs or quarantine one.\n\nexamples:\n"
                                      "  python -m spline_lstm runs list\n"
                                      "  python -m spline_lstm runs quarantine RUN_ID")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    p = runs_sub.add_parser("list", help="every run_id with age, gate status, test rmse", formatter_class=fmt,
                            description="List runs.\n\nexample: python -m spline_lstm runs list --json")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(fn=cmd_runs_list)
    p = runs_sub.add_parser("quarantine", help="move a run's files aside so its run_id can be reused",
                            formatter_class=fmt,
                            description="Move every file of RUN_ID into ARTIFACTS_DIR/quarantine/"
                                        "<run_id>-<UTC stamp>/ (nothing is deleted).\n\n"
                                        "example: python -m spline_lstm runs quarantine RUN_ID")
    p.add_argument("run_id")
    tracking_options(p, "quarantined=true")
    common(p)
    p.set_defaults(fn=cmd_runs_quarantine)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("ERROR [INTERRUPTED] interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes an exit code
        err = classify(exc)
        log_path = None
        if err.code == 1:
            fd, log_path = tempfile.mkstemp(prefix="spline-lstm-", suffix=".log")
            with os.fdopen(fd, "w") as fh:
                traceback.print_exc(file=fh)
        print(error_line(err, log_path), file=sys.stderr)
        return err.code
