"""What every subcommand shares: where runs live, and tagging a run in its MLflow store."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional

from spline_lstm.core.documents import read_metadata
from spline_lstm.core.environment import default_outputs_dir
from spline_lstm.core.errors import SplineLSTMError
from spline_lstm.core.secrets import mask_uri, take_credentials
from spline_lstm.tracking.store import Store
from spline_lstm.tracking.tracker import tag_runs


def common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outputs-dir", default=default_outputs_dir(),
                   help="outputs dir of the runs (default: %(default)s)")
    p.add_argument("--artifacts-dir", default=None, help="artifacts dir (default: OUTPUTS_DIR/artifacts)")


def tracking_options(p: argparse.ArgumentParser, tag: str) -> None:
    p.add_argument("--tracking-uri", default=None,
                   help=f"MLflow store whose runs of RUN_ID get the tag {tag} (default: the mlflow.db "
                        "beside the artifacts dir, else the SQLite store the run recorded)")
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


def recorded_store(metadata: Path) -> Optional[tuple]:
    """(the tracking store the run recorded in its metadata, ``mlflow.tracking_uri``, kept
    without its password; the artifacts dir it was written to), or None."""
    try:
        doc = read_metadata(metadata)
        uri = (doc.mlflow or {}).get("tracking_uri")
        where = ((doc.config or {}).get("paths") or {}).get("artifacts_dir")
    except (SplineLSTMError, AttributeError):
        return None
    return (uri, where if isinstance(where, str) else None) if isinstance(uri, str) and "://" in uri else None


def _stores(args, recorded: Optional[tuple]) -> tuple:
    """(the stores to try in order, a note on a recorded store that is not used).

    ``--tracking-uri`` alone when given. Else the store beside the run's artifacts
    (``<artifacts dir>/../mlflow.db``: a copied or moved outputs dir brings its own), then
    the SQLite store the run recorded (a run tracked with its own ``tracking.uri``) when its
    files are still where it wrote them (a copy's verdict is not the original's), never a
    store derived from the current directory. A server named only by the run's files is
    not contacted (anyone who could write them could have planted it; credentials would go
    there): the note says to pass it as ``--tracking-uri``."""
    if args.tracking_uri:
        return [args.tracking_uri], None
    _, artifacts = dirs(args)
    found, note = [], None
    recorded, written_to = recorded or (None, None)
    if recorded and written_to and Path(written_to).resolve() != artifacts.resolve():
        recorded, note = None, (f"the run's files were written to {written_to} and have moved or been copied: "
                                "the store it recorded is left alone (pass --tracking-uri to tag it)")
    beside = artifacts.parent / "mlflow.db"
    if beside.is_file():
        found.append(f"sqlite:///{beside}")
    if recorded and recorded.startswith("sqlite:"):
        path = Store(recorded, None, "").sqlite_path
        if path is not None and path.is_file():
            if path.resolve() != beside.resolve():
                found.append(recorded)
        elif not found:
            note = f"the run was tracked in {recorded}, which no longer exists (moved? pass --tracking-uri)"
    elif recorded and not found:
        bare = re.sub(r"//[^@/]*@", "//", recorded)  # no user name or password in the advice
        note = (f"the run was tracked on {bare}; a server named only by the run's files is never "
                f"contacted: pass --tracking-uri {bare} (credentials from the environment)")
    return found, note


def tag_store(args, experiment: str, run_id: str, tags: dict, status: Optional[str] = None,
              recorded: Optional[tuple] = None) -> tuple:
    """Tag the run's MLflow runs in the store it was tracked in (``_stores``) -> (how many,
    or None; a note when skipped). Best effort: the files are the record; the store may be gone."""
    _, artifacts = dirs(args)
    if args.no_tracking:
        return None, "MLflow not tagged (--no-tracking)"
    stores, note = _stores(args, recorded)
    if not stores:
        return None, (f"MLflow not tagged: no store at {artifacts.parent / 'mlflow.db'}"
                      + (f"; {note}" if note else " (tracking=none, or a server: pass --tracking-uri)"))
    for where in stores:
        try:
            uri, user = take_credentials(where)
            tagged = tag_runs(Store(uri, "", experiment, user), run_id, tags, status)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: could not tag the MLflow run in {mask_uri(where)}: {type(exc).__name__}",
                  file=sys.stderr)
            continue
        if tagged:
            return tagged, None
    return None, (f"MLflow: no run tagged run_id={run_id} in experiment {experiment!r} of "
                  + ", ".join(mask_uri(s) for s in stores))
