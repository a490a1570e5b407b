"""Test-only helpers that break a run's files the way real incidents do, plus small
utilities shared by the end-to-end tests (no fixtures here: see tests/conftest.py)."""
from __future__ import annotations

import json
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import pandas as pd


def flip_byte(path: Path, offset: Optional[int] = None) -> None:
    """Invert one byte (default: the middle one) in place; the size is unchanged."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def rewrite_json(path: Path, change: Callable[[dict], Any]) -> None:
    """Load, change in place, write back (the metadata hash record is *not* updated)."""
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def rewrite_pickle(path: Path, change: Callable[[dict], Any]) -> None:
    """Our own payload is plain data, so the stock pickle module is fine here."""
    payload = pickle.loads(path.read_bytes())
    change(payload)
    path.write_bytes(pickle.dumps(payload, protocol=5))


def rewrite_npz_run_id(path: Path, run_id: str) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["run_id"] = np.array(run_id)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


class _Payload:
    """Pickles as ``func(*args)``: executing it is exactly what must never happen."""

    def __init__(self, func: Callable, args: tuple):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def malicious_pickle(run_id: str, func: Callable, args: tuple) -> bytes:
    """A payload that looks like ours but calls ``func(*args)`` when unpickled."""
    return pickle.dumps({"run_id": run_id, "format": 1, "scaler": _Payload(func, args)}, protocol=5)


def relocate_mlflow(outputs: Path) -> None:
    """Point a copied outputs dir's MLflow store at the copy itself.

    A copied ``mlflow.db`` still names the original's artifact folder; without this, a
    rerun in the copy would write into the session's shared smoke run. The run's own
    files are left as they are: they are sealed by its completion record, and
    quarantine never connects to a store named in them."""
    db = outputs / "mlflow.db"
    con = sqlite3.connect(db)
    try:
        con.execute("UPDATE experiments SET artifact_location = ?",
                    ((outputs / "mlartifacts").absolute().as_uri(),))
        con.commit()
    finally:
        con.close()


def mlflow_runs(outputs: Path, run_id: str) -> list:
    """MLflow runs tagged with run_id in the outputs dir's embedded store."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{outputs}/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=f"tags.run_id = '{run_id}'")


def input_csv(artifacts_processed_npz: Path, out: Path, rows: int = 120) -> pd.DataFrame:
    """A recent-history input for ``predict``: the run's own raw series (original units,
    gaps left as empty cells), cut after its last observed point."""
    with np.load(artifacts_processed_npz, allow_pickle=False) as npz:
        stamps = pd.to_datetime(npz["timestamps"])
        raw = npz["raw"].astype(float)
    last = int(np.flatnonzero(~np.isnan(raw))[-1])
    frame = pd.DataFrame({"timestamp": stamps[: last + 1], "value": raw[: last + 1]}).iloc[-rows:]
    frame.to_csv(out, index=False)
    return frame


def files_under(root: Path) -> List[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
