"""``python -m spline_lstm health RUN_ID``: the gate on a run's files, its verdict recorded
beside them and in the run's MLflow store (docs/concepts.md#health-gate)."""
from __future__ import annotations

import json
import time

from spline_lstm.artifacts.health import fingerprint, run_gate, write_record
from spline_lstm.artifacts.layout import ArtifactLayout
from spline_lstm.cli.common import (common_options, dirs, recorded_experiment, recorded_store, tag_store,
                                     tracking_options)
from spline_lstm.core.errors import SplineLSTMError


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("health", help="run the health gate on a run", formatter_class=fmt,
                       description="Run the health gate (docs/concepts.md#health-gate) on an existing run.\n"
                                   "exit 0 pass; 9 / 10 / 11 a file check failed; 12 MODEL_UNSKILLED: the run\n"
                                   "was recorded with gate.quality=strict and its model did not beat the best\n"
                                   "baseline (its files are whole and sealed; it never passes).\n\n"
                                   "example: python -m spline_lstm health phase4-smoke-20260101-120000-ab12")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    tracking_options(p, "health=PASS|FAIL (and status FAILED on a failed gate)")
    common_options(p)
    p.set_defaults(fn=run)


def run(args) -> int:
    """The gate, from the files alone: requires the completion record and re-verifies
    every file each time (a stored verdict is never trusted)."""
    _, artifacts = dirs(args)
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
        metadata = layout.paths(args.run_id)["metadata"]
        tagged, note = tag_store(args, recorded_experiment(metadata), args.run_id,
                                 {"health": "PASS" if result.passed else "FAIL"}, None if result.passed else "FAILED",
                                 recorded=recorded_store(metadata))
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
