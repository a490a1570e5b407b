"""Typed documents of a run: the JSON files the pipeline writes and the commands read.

Each is a dataclass written in one place (``to_dict``, key order = field order, so the
JSON stays what CONTRACT §4 shows) and read in one place (``from_dict`` / ``read_*``).
Reading is lenient: a key an older run lacks takes its default, an unknown key is
ignored, and values keep the types found in the file, so the health gate can still
report a tampered field rather than fail on it here. Standard library only: commands
that do not train read these too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional


@dataclass
class MetadataDoc:
    """``metadata/<run_id>.json``: the run's reproducibility record."""

    run_id: Any = None
    sweep_id: Optional[str] = None
    preset: Optional[str] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    duration_s: Optional[float] = None
    config: Dict[str, Any] = field(default_factory=dict)
    overrides: List[str] = field(default_factory=list)
    command: List[str] = field(default_factory=list)
    seed: Optional[int] = None
    determinism: Dict[str, Any] = field(default_factory=dict)
    splits: Dict[str, Any] = field(default_factory=dict)
    versions: Dict[str, Optional[str]] = field(default_factory=dict)
    git_commit: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)
    artifacts: Any = None  # kind -> {path, sha256, size}; None: no hash record (the gate fails it)
    plots: Any = field(default_factory=dict)  # plot file name -> {sha256, size}
    mlflow: Dict[str, Optional[str]] = field(default_factory=dict)  # tracking_uri, experiment, ids
    hydra_run_dir: Optional[str] = None
    log_path: Optional[str] = None
    timings_s: Dict[str, float] = field(default_factory=dict)
    host: Dict[str, Any] = field(default_factory=dict)
    threads: Dict[str, Any] = field(default_factory=dict)  # thread budget in effect (spline_lstm.threads)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> "MetadataDoc":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def experiment(self) -> Optional[str]:
        """The MLflow experiment the run was recorded in (None: not tracked or not recorded)."""
        return self.mlflow.get("experiment") if isinstance(self.mlflow, dict) else None


def read_metadata(path: Path) -> MetadataDoc:
    """Parse ``metadata/<run_id>.json`` with the project's bounded JSON reader
    (a malformed file raises its typed error, exit code 9)."""
    from spline_lstm.jsonio import read_json

    return MetadataDoc.from_dict(read_json(path))
