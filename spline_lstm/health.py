"""The health gate (CONTRACT §6): file checks only, no TensorFlow, no model loading.

A run is successful only if every check passes. The verdict is written to
``health/<run_id>.json``; the exit code is the most severe failure:
UNSAFE_ARTIFACT (11) over RUN_ID_MISMATCH (10) over HEALTH_FAILED (9).
"""
from __future__ import annotations

import io
import json
import math
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from spline_lstm.artifacts import (ArtifactLayout, RestrictedUnpickler, atomic_write_json, sha256_file,
                                   validate_run_id)
from spline_lstm.errors import HealthFailed, RunIdMismatch, SplineLSTMError, UnsafeArtifact

KERAS_MEMBERS = ("config.json", "model.weights.h5")
SEVERITY = {UnsafeArtifact.code: 3, RunIdMismatch.code: 2, HealthFailed.code: 1}
ERRORS = {cls.code: cls for cls in (HealthFailed, RunIdMismatch, UnsafeArtifact)}
_UNREAD = object()  # processed.npz not read (missing or unreadable)


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL
    message: str = ""
    code: int = 0
    duration_ms: float = 0.0


@dataclass
class GateResult:
    run_id: str
    artifacts_dir: str
    checks: List[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status == "PASS" for c in self.checks)

    @property
    def code(self) -> int:
        failed = [c.code for c in self.checks if c.status == "FAIL"]
        return max(failed, key=lambda c: SEVERITY.get(c, 0)) if failed else 0

    def error(self) -> Optional[SplineLSTMError]:
        if self.passed:
            return None
        worst = [c for c in self.checks if c.status == "FAIL" and c.code == self.code]
        return ERRORS[self.code](f"health gate failed for run_id '{self.run_id}': "
                                 f"{worst[0].name}: {worst[0].message}")

    def to_dict(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "artifacts_dir": self.artifacts_dir,
                "verdict": "PASS" if self.passed else "FAIL", "code": self.code,
                "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "checks": [asdict(c) for c in self.checks]}


class _Fail(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _load_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _Fail(HealthFailed.code, f"{path.name} is not valid JSON ({type(exc).__name__})")
    if not isinstance(obj, dict):
        raise _Fail(HealthFailed.code, f"{path.name} is not a JSON object")
    return obj


class _Gate:
    """Runs the checks in order; later checks use what earlier ones read."""

    def __init__(self, layout: ArtifactLayout, run_id: str):
        self.layout, self.run_id = layout, run_id
        self.paths = layout.paths(run_id)
        self.present: Dict[str, Path] = {}
        self.docs: Dict[str, dict] = {}
        self.payload: Optional[dict] = None
        self.npz_run_id: Any = _UNREAD

    def storage(self) -> str:
        root = self.layout.root
        if not root.is_dir():
            raise _Fail(HealthFailed.code, f"artifacts dir {root} does not exist")
        if not os.access(root, os.W_OK):
            raise _Fail(HealthFailed.code, f"artifacts dir {root} is not writable")
        real_root = root.resolve()
        for kind, path in self.paths.items():
            if path.is_symlink():
                raise _Fail(UnsafeArtifact.code, f"{kind} {path} is a symlink (to {os.readlink(path)}); "
                                                 "artifacts must be regular files")
            if path.exists() and real_root not in path.resolve().parents:
                raise _Fail(UnsafeArtifact.code, f"{kind} {path} resolves outside {root}")
        return "writable; no symlinks; every path inside the artifacts dir"

    def exist(self) -> str:
        missing = [str(p) for k, p in self.paths.items() if not p.is_file()]
        self.present = {k: p for k, p in self.paths.items() if p.is_file() and not p.is_symlink()}
        if missing:
            raise _Fail(HealthFailed.code, f"{len(missing)} of 8 artifacts missing: {', '.join(missing)}")
        return "all 8 artifacts present"

    def parse(self) -> str:
        problems = []
        for kind in ("metrics", "meta", "metadata"):
            if kind in self.present:
                try:
                    self.docs[kind] = _load_json(self.present[kind])
                except _Fail as exc:
                    problems.append(str(exc))
        metrics = self.docs.get("metrics")
        if metrics is not None:
            for key in ("run_id", "metrics", "checkpoints"):
                if key not in metrics:
                    problems.append(f"metrics has no '{key}'")
            rmse = (metrics.get("metrics") or {}).get("rmse") if isinstance(metrics.get("metrics"), dict) else None
            if not isinstance(rmse, (int, float)) or isinstance(rmse, bool) or not math.isfinite(rmse):
                problems.append(f"metrics.rmse is not a finite number ({rmse!r})")
        for kind in ("best", "last"):
            if kind in self.present:
                problems.extend(_keras_archive_problems(kind, self.present[kind]))
        if "processed" in self.present:
            try:
                self.npz_run_id = _npz_run_id(self.present["processed"])
            except Exception as exc:  # noqa: BLE001 - any read error means a corrupt file
                problems.append(f"processed.npz is not a readable .npz archive ({type(exc).__name__})")
        if problems:
            raise _Fail(HealthFailed.code, "; ".join(problems))
        return "JSON objects parse; required fields present; rmse finite; checkpoints are Keras archives"

    def pickle(self) -> str:
        if "preprocessor" not in self.present:
            return "no preprocessor.pkl to read"
        path = self.present["preprocessor"]
        try:
            payload = RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
        except UnsafeArtifact as exc:  # a disallowed global: refused before anything runs
            raise _Fail(UnsafeArtifact.code, f"{path}: {exc}")
        except Exception as exc:  # noqa: BLE001 - truncated / corrupt: unparsable, not unsafe
            raise _Fail(HealthFailed.code, f"{path.name} is not a readable pickle "
                                           f"({type(exc).__name__}; truncated or corrupt)")
        if not isinstance(payload, dict):
            raise _Fail(HealthFailed.code, "preprocessor.pkl payload is not a dict")
        self.payload = payload
        return "preprocessor.pkl is plain data (restricted unpickler)"

    def run_ids(self) -> str:
        found: Dict[str, Any] = {}
        for kind in ("metrics", "meta", "metadata"):
            if kind in self.docs:
                found[kind] = self.docs[kind].get("run_id")
        if self.npz_run_id is not _UNREAD:  # an unreadable npz is reported by 'parse' (9)
            found["processed.npz"] = self.npz_run_id
        if self.payload is not None:
            found["preprocessor.pkl"] = self.payload.get("run_id")
        bad = {k: v for k, v in found.items() if v != self.run_id}
        if bad:
            shown = ", ".join(f"{k}={v!r}" for k, v in bad.items())
            raise _Fail(RunIdMismatch.code, f"path says '{self.run_id}' but {shown}")
        return f"run_id agrees across path and {len(found)} payloads"

    def hashes(self) -> str:
        record = (self.docs.get("metadata") or {}).get("artifacts")
        if not isinstance(record, dict):
            raise _Fail(HealthFailed.code, "metadata has no 'artifacts' hash record")
        bad = []
        for kind, path in self.present.items():
            if kind == "metadata":
                continue
            want = (record.get(kind) or {}).get("sha256") if isinstance(record.get(kind), dict) else None
            if want is None:
                bad.append(f"{kind}: no recorded hash")
            elif sha256_file(path) != want:
                bad.append(f"{kind}: sha256 differs from metadata (modified or truncated)")
        if bad:
            raise _Fail(HealthFailed.code, "; ".join(bad))
        return "sha256 of every artifact matches metadata"


def _keras_archive_problems(kind: str, path: Path) -> List[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if zf.testzip() is not None:
                return [f"{kind} checkpoint {path.name} has a corrupt member"]
    except (zipfile.BadZipFile, OSError):
        return [f"{kind} checkpoint {path.name} is not a Keras zip archive"]
    except Exception as exc:  # noqa: BLE001 - zlib.error, unsupported/encrypted member, ...
        return [f"{kind} checkpoint {path.name} has an unreadable member ({type(exc).__name__})"]
    missing = [m for m in KERAS_MEMBERS if m not in names]
    return [f"{kind} checkpoint lacks {', '.join(missing)}"] if missing else []


def _npz_run_id(path: Path) -> Optional[str]:
    """The run_id stored in processed.npz (None if absent); raises if the file is unreadable."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        return str(npz["run_id"]) if "run_id" in npz.files else None


def run_gate(artifacts_dir: Path, run_id: str) -> GateResult:
    """Every check of CONTRACT §6 on a run's files; never raises for a bad run."""
    validate_run_id(run_id)
    layout = ArtifactLayout(Path(artifacts_dir).absolute())
    gate = _Gate(layout, run_id)
    result = GateResult(run_id, str(layout.root))
    for name, fn in (("storage", gate.storage), ("exist", gate.exist), ("parse", gate.parse),
                     ("pickle", gate.pickle), ("run_id", gate.run_ids), ("hashes", gate.hashes)):
        t0 = time.perf_counter()
        try:
            result.checks.append(Check(name, "PASS", fn()))
        except _Fail as exc:
            result.checks.append(Check(name, "FAIL", str(exc), exc.code))
        result.checks[-1].duration_ms = round((time.perf_counter() - t0) * 1000, 3)
    return result


def write_record(result: GateResult) -> Path:
    """health/<run_id>.json, atomically; the record is not part of the hashed set."""
    layout = ArtifactLayout(Path(result.artifacts_dir))
    path = layout.health_path(result.run_id)
    atomic_write_json(path, result.to_dict())
    return path


def read_record(artifacts_dir: Path, run_id: str) -> Optional[dict]:
    try:
        return json.loads(ArtifactLayout(Path(artifacts_dir)).health_path(run_id).read_text())
    except (OSError, ValueError):
        return None
