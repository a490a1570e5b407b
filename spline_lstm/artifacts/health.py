"""The health gate (docs/concepts.md#health-gate): file checks only, no TensorFlow, no model loading.

A run is successful only if every check passes, and it counts only once it is
committed: ``commit`` writes the completion record ``complete/<run_id>.json`` as the
very last write of a successful run (after every artifact, after MLflow confirmed the
run's end and recorded the verdict). The record holds the sha256 of every file of the
run, so it seals the run: the standalone gate requires it and re-verifies every file
against it and against ``metadata`` each time; it never trusts a stored verdict. A run
whose process exited non-zero never wrote one, so it can never pass afterwards.

The last check is the quality gate's verdict, read from the sealed metrics document
(``documents.MetricsDoc.skill``): a run recorded with ``gate.quality=strict`` and an
UNSKILLED model fails it with MODEL_UNSKILLED (12), standalone as in the run itself.
Such a run is still committed (its files are whole and sealed, kept as evidence), so
the gate re-verifies it like any other and reports 12 each time, never a pass.

The gate's report goes to ``health/<run_id>.json`` (a report and, with its
fingerprint, the cache of ``runs list``; never an input of the gate). The exit code is
the most severe failure: UNSAFE_ARTIFACT (11) over RUN_ID_MISMATCH (10) over
HEALTH_FAILED (9) over MODEL_UNSKILLED (12), which is judged only on files that passed.
"""
from __future__ import annotations

import io
import json
import os
import signal
import stat
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from spline_lstm.artifacts.layout import ArtifactLayout, RestrictedUnpickler, atomic_write_json, sha256_file
from spline_lstm.core.documents import MetadataDoc, MetricsDoc
from spline_lstm.core.errors import (
    HealthFailed,
    ModelUnskilled,
    RunIdMismatch,
    SplineLSTMError,
    StorageError,
    UnsafeArtifact,
)
from spline_lstm.core.ids import validate_run_id
from spline_lstm.core.jsonio import read_json

KERAS_MEMBERS = ("config.json", "model.weights.h5")
SEVERITY = {UnsafeArtifact.code: 3, RunIdMismatch.code: 2, HealthFailed.code: 1, ModelUnskilled.code: 0}
ERRORS = {cls.code: cls for cls in (HealthFailed, RunIdMismatch, UnsafeArtifact, ModelUnskilled)}
QUALITY = "quality"  # the check judged on whole files only
COMMIT_FORMAT = 1
_UNREAD = object()  # processed.npz not read (missing or unreadable)


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | SKIP (not run: an earlier check found the paths unsafe)
    message: str = ""
    code: int = 0
    duration_ms: float = 0.0


@dataclass
class GateResult:
    run_id: str
    artifacts_dir: str
    checks: List[Check] = field(default_factory=list)
    files: Dict[str, dict] = field(default_factory=dict)  # the verified file set: what ``commit`` seals

    @property
    def passed(self) -> bool:
        return all(c.status == "PASS" for c in self.checks)

    @property
    def whole(self) -> bool:
        """Every file check passed (the quality verdict aside): the run can be sealed."""
        return bool(self.checks) and all(c.status == "PASS" for c in self.checks if c.name != QUALITY)

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


def _worst(codes: List[int]) -> int:
    return max(codes, key=lambda c: SEVERITY.get(c, 0))


# --- the run's file set ---------------------------------------------------------------------

def run_entries(layout: ArtifactLayout, run_id: str) -> Dict[str, Path]:
    """Every entry of a run, by path relative to the artifacts dir, found without following
    a symlink: its 8 artifact paths, its folders and whatever they hold (one level), its
    plot folder and what it holds, and its completion record. Not the health report."""
    root = layout.root
    out: Dict[str, Path] = {}

    def add(path: Path) -> None:
        if os.path.lexists(path):
            out[path.relative_to(root).as_posix()] = path

    for path in layout.paths(run_id).values():
        add(path)
    for folder in [*layout.run_dirs(run_id).values(), layout.plot_dir(run_id)]:
        add(folder)
        if folder.is_dir() and not folder.is_symlink():
            try:
                for entry in os.scandir(folder):
                    add(Path(entry.path))
            except OSError:
                pass  # an unreadable folder: its files are reported missing
    add(layout.complete_path(run_id))
    return out


def fingerprint(layout: ArtifactLayout, run_id: str) -> Dict[str, list]:
    """Size, mtime, ctime and inode of every entry of the run (``runs list``'s cache key)."""
    out = {}
    for rel, path in run_entries(layout, run_id).items():
        try:
            st = os.lstat(path)
        except OSError:
            continue
        out[rel] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return out


class _Gate:
    """Runs the checks in order; later checks use what earlier ones read."""

    def __init__(self, layout: ArtifactLayout, run_id: str):
        self.layout, self.run_id = layout, run_id
        self.paths = layout.paths(run_id)
        self.entries = run_entries(layout, run_id)
        self.present: Dict[str, Path] = {}
        self.docs: Dict[str, dict] = {}
        self.payload: Optional[dict] = None
        self.npz_run_id: Any = _UNREAD
        self.files: Dict[str, dict] = {}
        self._sha: Dict[Path, str] = {}

    def sha(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = sha256_file(path)
        return self._sha[path]

    def rel(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    def storage(self) -> str:
        root = self.layout.root
        if not root.is_dir():
            raise _Fail(HealthFailed.code, f"artifacts dir {root} does not exist")
        if not os.access(root, os.W_OK):
            raise _Fail(HealthFailed.code, f"artifacts dir {root} is not writable")
        real_root = root.resolve()
        for rel, path in self.entries.items():
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise _Fail(UnsafeArtifact.code, f"{_short(str(path), 300)} is a symlink (to {_short(os.readlink(path))}); "
                                                 "a run's files must be regular files in its own folders")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _Fail(UnsafeArtifact.code, f"{_short(str(path), 300)} is not a regular file (a FIFO, socket or device)")
            if real_root not in path.resolve().parents:
                raise _Fail(UnsafeArtifact.code, f"{_short(str(path), 300)} resolves outside {root}")
        return "writable; no symlink or special file in the run; every path inside the artifacts dir"

    def exist(self) -> str:
        missing = [str(p) for p in self.paths.values() if not p.is_file()]
        self.present = {k: p for k, p in self.paths.items() if p.is_file() and not p.is_symlink()}
        if len(missing) == len(self.paths):  # no such run here: one short line, and what to do
            raise _Fail(HealthFailed.code, f"{len(missing)} of 8 artifacts missing: no run with this run_id "
                                           f"under {_short(str(self.layout.root), 120)}; list the runs with "
                                           "`python -m spline_lstm runs list` (or pass --outputs-dir)")
        if missing:
            raise _Fail(HealthFailed.code, f"{len(missing)} of 8 artifacts missing: {', '.join(missing)}")
        return "all 8 artifacts present"

    def parse(self) -> str:
        problems, codes = [], []
        for kind in ("metrics", "meta", "metadata"):
            if kind in self.present:
                try:
                    self.docs[kind] = read_json(self.present[kind])
                except SplineLSTMError as exc:
                    problems.append(str(exc))
                    codes.append(exc.code)
        metrics = self.docs.get("metrics")
        if metrics is not None:
            problems.extend(MetricsDoc.problems(metrics))
        for kind in ("best", "last"):
            if kind in self.present:
                problems.extend(_keras_archive_problems(kind, self.present[kind]))
        if "processed" in self.present:
            try:
                self.npz_run_id = _npz_run_id(self.present["processed"])
            except Exception as exc:  # noqa: BLE001 - any read error means a corrupt file
                problems.append(f"processed.npz is not a readable .npz archive ({type(exc).__name__})")
        if problems:
            raise _Fail(_worst(codes or [HealthFailed.code]), "; ".join(problems))
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
        return "preprocessor.pkl is plain data (restricted unpickler)" + self._series_agree()

    def _series_agree(self) -> str:
        """Many series: the metrics' per-series table holds exactly the preprocessor's series."""
        series = (self.payload or {}).get("series")
        ids = series.get("ids") if isinstance(series, dict) else None
        table = ((self.docs.get("metrics") or {}).get("series") or {}).get("per_series")
        if not ids and table is None:
            return ""
        if not isinstance(ids, list) or not isinstance(table, dict) or set(map(str, ids)) != set(table):
            theirs = len(table) if isinstance(table, dict) else "no"
            raise _Fail(HealthFailed.code, f"preprocessor.pkl has {len(ids) if isinstance(ids, list) else 'no'} series "
                                           f"but the metrics' per-series table has {theirs} entries, or other ids")
        return f"; its {len(ids)} series are the metrics' per-series table"

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
            shown = ", ".join(f"{k}={_short(v)}" for k, v in bad.items())
            raise _Fail(RunIdMismatch.code, f"path says '{self.run_id}' but {shown}")
        return f"run_id agrees across path and {len(found)} payloads"

    def hashes(self) -> str:
        """Every file of the run is in metadata's hash record and matches it; nothing else
        lies in the run's folders (a stray file is as suspect as a changed one)."""
        metadata = MetadataDoc.from_dict(self.docs.get("metadata") or {})
        record, plots = metadata.artifacts, metadata.plots
        if not isinstance(record, dict):
            raise _Fail(HealthFailed.code, "metadata has no 'artifacts' hash record")
        if not isinstance(plots, dict):
            raise _Fail(HealthFailed.code, "metadata's 'plots' hash record is not an object")
        want: Dict[str, tuple] = {}  # rel path -> (label, recorded sha256)
        for kind, path in self.paths.items():
            if kind != "metadata":
                entry = record.get(kind)
                want[self.rel(path)] = (kind, entry.get("sha256") if isinstance(entry, dict) else None)
        plot_dir = self.rel(self.layout.plot_dir(self.run_id))
        for name, entry in plots.items():
            want[f"{plot_dir}/{name}"] = (f"plot {_safe(name)}", entry.get("sha256") if isinstance(entry, dict) else None)
        bad = []
        sealed = {rel: p for rel, p in self.entries.items()
                  if p.is_file() and not p.is_symlink() and p != self.layout.complete_path(self.run_id)}
        for rel, (label, sha) in want.items():
            path = sealed.get(rel)
            if path is None:
                if label.startswith("plot "):
                    bad.append(f"{label}: recorded in metadata but missing")
            elif not isinstance(sha, str):
                bad.append(f"{label}: no recorded hash")
            elif self.sha(path) != sha:
                bad.append(f"{label}: sha256 differs from metadata (modified or truncated)")
        folders = {self.rel(d) for d in self.layout.run_dirs(self.run_id).values()} | {plot_dir}
        metadata_rel = self.rel(self.paths["metadata"])
        unknown = sorted(rel for rel in self.entries if rel not in want and rel not in folders
                         and rel != metadata_rel and rel != self.rel(self.layout.complete_path(self.run_id)))
        bad += [f"unknown file {_safe(rel)} in the run's folders (not in metadata's record)" for rel in unknown]
        if bad:
            raise _Fail(HealthFailed.code, _joined(bad))
        self.files = {rel: {"sha256": self.sha(p), "size": p.stat().st_size} for rel, p in sorted(sealed.items())}
        return f"sha256 of every file ({len(sealed)}, plots included) matches metadata; no unknown file"

    def complete(self) -> str:
        """The completion record exists, names this run and seals exactly these files."""
        path = self.layout.complete_path(self.run_id)
        if not os.path.lexists(path):
            raise _Fail(HealthFailed.code, f"no completion record {path}: the run never finished (its process "
                                           "exited non-zero, was killed, or is still running)")
        try:
            doc = read_json(path)
        except SplineLSTMError as exc:
            raise _Fail(exc.code, f"completion record: {exc}")
        if doc.get("run_id") != self.run_id:
            raise _Fail(RunIdMismatch.code, f"path says '{self.run_id}' but the completion record says "
                                            f"{_short(doc.get('run_id'))}")
        sealed = doc.get("files")
        if not isinstance(sealed, dict):
            raise _Fail(HealthFailed.code, "completion record has no 'files' object")
        if not self.files:
            raise _Fail(HealthFailed.code, "the run's files could not be verified (see the checks above)")
        bad = [f"{_safe(rel)}: not in the completion record" for rel in self.files if rel not in sealed]
        bad += [f"{_short(rel)}: sealed by the completion record but gone" for rel in sealed if rel not in self.files]
        for rel, got in self.files.items():
            entry = sealed.get(rel)
            if rel in sealed and (not isinstance(entry, dict) or entry.get("sha256") != got["sha256"]):
                bad.append(f"{_safe(rel)}: sha256 differs from the completion record")
        if bad:
            raise _Fail(HealthFailed.code, _joined(bad))
        return f"completion record seals these {len(self.files)} files"

    def quality(self) -> str:
        """The quality verdict the run recorded: strict + not SKILLED fails (12)."""
        doc = MetricsDoc.from_dict(self.docs["metrics"])
        skill = doc.skill or {}
        verdict, mode = doc.skill_verdict, doc.skill_mode
        if verdict is None:
            return "no quality verdict recorded (gate.quality=off, or a run before the quality gate)"
        best, imp = skill.get("best_baseline"), skill.get("improvement_pct")
        metric, model_score, best_score = doc.skill_scores
        versus = (f"{_safe(metric)} {_num(model_score)} vs best baseline {best} {_num(best_score)}"
                  f" ({_num(imp)}% improvement; needs > {_num(skill.get('min_improvement_pct'))}%, {skill.get('basis')})")
        if mode == "strict" and verdict != "SKILLED":
            raise _Fail(ModelUnskilled.code, f"model {_safe(str(verdict))} under gate.quality=strict: {versus}")
        return f"skill {_safe(str(verdict))} ({_safe(str(mode))}): {versus}"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _joined(problems: List[str], shown: int = 5) -> str:
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f"; and {more} more" if more > 0 else "")


def _safe(text: str) -> str:
    """A name from disk or from a document as it can be printed: as is when plain ASCII,
    else quoted with escapes (a lone surrogate would crash a UTF-8 console)."""
    return text if text.isascii() and text.isprintable() and len(text) <= 200 else _short(text)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def run_gate(artifacts_dir: Path, run_id: str, require_commit: bool = True) -> GateResult:
    """Every check of docs/concepts.md#health-gate on a run's files; never raises for a bad run.

    ``require_commit=False`` only for the in-process gate, which runs before the
    completion record can exist (it writes it when everything passed)."""
    validate_run_id(run_id)
    layout = ArtifactLayout(Path(artifacts_dir).absolute())
    result = GateResult(run_id, str(layout.root))
    try:
        gate = _Gate(layout, run_id)
    except OSError as exc:  # the artifacts dir itself cannot be listed
        result.checks.append(Check("storage", "FAIL", f"cannot list the run's files: {exc.strerror or exc}",
                                   HealthFailed.code))
        return result
    checks = [("storage", gate.storage), ("exist", gate.exist), ("parse", gate.parse), ("pickle", gate.pickle),
              ("run_id", gate.run_ids), ("hashes", gate.hashes)]
    if require_commit:
        checks.append(("complete", gate.complete))
    checks.append((QUALITY, gate.quality))
    for name, fn in checks:
        if result.code == UnsafeArtifact.code and name != "storage" and result.checks[0].status == "FAIL":
            result.checks.append(Check(name, "SKIP", "not run: the run's paths are unsafe to read"))
            continue
        if name == QUALITY and not result.whole:
            result.checks.append(Check(name, "SKIP", "not judged: the run's files did not pass"))
            continue
        t0 = time.perf_counter()
        try:
            result.checks.append(Check(name, "PASS", fn()))
        except _Fail as exc:
            result.checks.append(Check(name, "FAIL", str(exc), exc.code))
        except OSError as exc:  # a file vanished or became unreadable while it was checked
            result.checks.append(Check(name, "FAIL", f"{type(exc).__name__}: {exc.strerror or exc}",
                                       HealthFailed.code))
        result.checks[-1].duration_ms = round((time.perf_counter() - t0) * 1000, 3)
    if result.whole:
        result.files = gate.files
    return result


# --- the commit protocol ----------------------------------------------------------------------

def commit(result: GateResult, final: bool) -> Path:
    """Write the completion record ``complete/<run_id>.json``: the last write of a run.

    Call it only after the gate's file checks passed (in-process, ``require_commit=False``;
    a strict quality failure is sealed too) and after MLflow confirmed the run's end
    and recorded the verdict. The record is staged and
    fsynced first; SIGINT / SIGTERM are then ignored and the rename is the commit point,
    so a signal either lands before it (no record; the process exits 130) or is
    ignored. ``final`` (a single run: the process exits next) keeps them ignored until
    exit, so nothing can turn the exit code non-zero after the commit; a sweep's
    worker restores its handlers for the next job (a signal in the rename's instant is
    then lost, never turned into a failure of a committed job)."""
    if not result.whole or not result.files:
        raise HealthFailed(f"run_id '{result.run_id}' cannot be committed: its gate did not pass")
    path = ArtifactLayout(Path(result.artifacts_dir)).complete_path(result.run_id)
    doc = {"format": COMMIT_FORMAT, "run_id": result.run_id,
           "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": result.files}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    previous: Dict[int, Any] = {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write((json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # CPython runs a pending handler first: raises here
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
        os.replace(tmp, path)  # the commit point
    except BaseException as exc:
        _unlink_quiet(tmp)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write the completion record {path}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(path.parent)
    if not final:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # the rename is done; a directory fsync is durability, not correctness


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- the report and runs list's cache -----------------------------------------------------------

def write_record(result: GateResult, fingerprint: Optional[Dict[str, list]] = None) -> Path:
    """health/<run_id>.json, atomically: the gate's report, not part of the sealed set.

    ``fingerprint`` (sizes, mtimes, ctimes, inodes of the run's entries, taken before and
    unchanged after a check that required the completion record) lets ``runs list``
    reuse this verdict while none of them changed."""
    layout = ArtifactLayout(Path(result.artifacts_dir))
    path = layout.health_path(result.run_id)
    atomic_write_json(path, {**result.to_dict(), "fingerprint": fingerprint})
    return path


def read_record(artifacts_dir: Path, run_id: str) -> Optional[dict]:
    """The last report, or None when absent or unreadable (it is never trusted for a PASS)."""
    try:
        return read_json(ArtifactLayout(Path(artifacts_dir)).health_path(run_id))
    except SplineLSTMError:
        return None


def cached_verdict(artifacts_dir: Path, run_id: str) -> Optional[str]:
    """The recorded verdict if the record's fingerprint equals the run's entries now."""
    record = read_record(artifacts_dir, run_id)
    if not record or not isinstance(record.get("fingerprint"), dict):
        return None
    if record["fingerprint"] != fingerprint(ArtifactLayout(Path(artifacts_dir)), run_id):
        return None
    verdict = record.get("verdict")
    return verdict if verdict in ("PASS", "FAIL") else None
