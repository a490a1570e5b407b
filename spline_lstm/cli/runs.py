"""``python -m spline_lstm runs list|quarantine``: every run with its gate status, and
moving one run's files aside so its run_id can be reused."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from spline_lstm.artifacts.health import cached_verdict, read_record, run_gate
from spline_lstm.artifacts.layout import ArtifactLayout, iter_hydra_dirs, lock_held, quarantine
from spline_lstm.cli.common import common_options, dirs, recorded_experiment, tag_store, tracking_options
from spline_lstm.core.documents import MetricsDoc
from spline_lstm.core.errors import SplineLSTMError
from spline_lstm.core.ids import validate_run_id
from spline_lstm.core.jsonio import read_json


def add_parser(sub, fmt) -> None:
    runs = sub.add_parser("runs", help="list or quarantine runs", formatter_class=fmt,
                          description="List runs or quarantine one.\n\nexamples:\n"
                                      "  python -m spline_lstm runs list\n"
                                      "  python -m spline_lstm runs quarantine RUN_ID")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    p = runs_sub.add_parser("list", help="every run_id with age, gate status, test rmse", formatter_class=fmt,
                            description="List runs.\n\nexample: python -m spline_lstm runs list --json")
    p.add_argument("--json", action="store_true")
    common_options(p)
    p.set_defaults(fn=run_list)
    p = runs_sub.add_parser("quarantine", help="move a run's files aside so its run_id can be reused",
                            formatter_class=fmt,
                            description="Move every file of RUN_ID into ARTIFACTS_DIR/quarantine/"
                                        "<run_id>-<UTC stamp>/ (nothing is deleted).\n\n"
                                        "example: python -m spline_lstm runs quarantine RUN_ID")
    p.add_argument("run_id")
    tracking_options(p, "quarantined=true")
    common_options(p)
    p.set_defaults(fn=run_quarantine)


def run_status(outputs: Path, artifacts: Path, run_id: str) -> dict:
    """A run's row: PASS / FAIL by the gate (re-run unless the last ``health`` verdict's
    fingerprint, sizes and mtimes of every file, still matches), ``running`` while a live
    process holds its folder, ``incomplete`` without a completion record."""
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


def run_list(args) -> int:
    outputs, artifacts = dirs(args)
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


def run_quarantine(args) -> int:
    """Moves exactly one run_id's files; the MLflow tag goes to the configured store only
    (``--tracking-uri``, else the mlflow.db beside the artifacts dir), never to a URI read
    from the run's files, which anyone who could write them could have planted."""
    outputs, artifacts = dirs(args)
    run_id = validate_run_id(args.run_id)
    layout = ArtifactLayout(artifacts)
    experiment = recorded_experiment(layout.paths(run_id)["metadata"])
    target = quarantine(layout, run_id, list(iter_hydra_dirs(outputs, run_id)))
    if target is None:
        print(f"nothing to quarantine for run_id {run_id} under {artifacts}")
        return 0
    moved = sum(1 for p in target.rglob("*") if p.is_file())
    print(f"quarantined run_id {run_id}: {moved} files moved to {target}")
    tagged, note = tag_store(args, experiment, run_id, {"quarantined": "true"})
    if tagged:
        print(f"MLflow: tagged {tagged} run(s) quarantined=true")
    elif note:
        print(f"note: {note}")
    print(f"the run_id can be reused now: python launch.py ... run_id={run_id}")
    return 0
