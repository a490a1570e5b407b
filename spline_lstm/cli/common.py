"""What every subcommand shares: where runs live, and tagging a run in its MLflow store."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from spline_lstm.core.documents import read_metadata
from spline_lstm.core.environment import default_outputs_dir
from spline_lstm.core.errors import SplineLSTMError
from spline_lstm.core.secrets import take_credentials
from spline_lstm.tracking.store import Store
from spline_lstm.tracking.tracker import tag_runs


def common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outputs-dir", default=default_outputs_dir(),
                   help="outputs dir of the runs (default: %(default)s)")
    p.add_argument("--artifacts-dir", default=None, help="artifacts dir (default: OUTPUTS_DIR/artifacts)")


def tracking_options(p: argparse.ArgumentParser, tag: str) -> None:
    p.add_argument("--tracking-uri", default=None,
                   help=f"MLflow store whose runs of RUN_ID get the tag {tag} (default: "
                        "sqlite:///OUTPUTS_DIR/mlflow.db when it exists)")
    p.add_argument("--no-tracking", action="store_true", help="leave MLflow alone")


def dirs(args) -> tuple:
    outputs = Path(args.outputs_dir).absolute()
    artifacts = Path(args.artifacts_dir).absolute() if args.artifacts_dir else outputs / "artifacts"
    return outputs, artifacts


def recorded_experiment(metadata: Path) -> str:
    """The experiment name the run recorded (a name to look up in the configured store,
    never a store to connect to); the default one if unreadable."""
    try:
        name = read_metadata(metadata).experiment
    except SplineLSTMError:
        name = None
    return name if isinstance(name, str) and 0 < len(name) <= 256 else "spline-lstm"


def tag_store(args, experiment: str, run_id: str, tags: dict, status: Optional[str] = None) -> tuple:
    """Tag the run's MLflow runs in the configured store -> (how many, or None; a note
    when skipped). Best effort: the files are the record; the store may be gone."""
    outputs, _ = dirs(args)
    default_db = outputs / "mlflow.db"
    if args.no_tracking:
        return None, "MLflow not tagged (--no-tracking)"
    if not args.tracking_uri and not default_db.is_file():
        return None, (f"MLflow not tagged: no store at {default_db} (tracking=none, or a server: "
                      "pass --tracking-uri)")
    try:

        uri, user = take_credentials(args.tracking_uri or f"sqlite:///{default_db}")
        tagged = tag_runs(Store(uri, "", experiment, user), run_id, tags, status)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: could not tag the MLflow run: {type(exc).__name__}", file=sys.stderr)
        return None, None
    return tagged, None if tagged else f"MLflow: no run tagged run_id={run_id} in experiment {experiment!r}"
