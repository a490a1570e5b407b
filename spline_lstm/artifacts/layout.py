"""The canonical run-scoped artifact layout (docs/concepts.md#canonical-artifacts) and safe file I/O.

Everything that touches a run's files goes through here: run_id rules, the
atomic claim of a run_id, atomic writes (temp file + fsync + rename) that hash
what they write, and the restricted unpickler for ``preprocessor.pkl``.
Imports nothing heavy: the gate and ``runs list`` use it without TensorFlow.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from spline_lstm.core.errors import RunIdConflict, StorageError, UnsafeArtifact
from spline_lstm.core.ids import RUN_ID_PATTERN, validate_run_id

ARTIFACT_KINDS = ("processed", "meta", "preprocessor", "best", "last", "metrics", "report", "metadata")
RUN_DIR_KINDS = ("processed", "models", "checkpoints")


@dataclass(frozen=True)
class ArtifactLayout:
    """Where every file of every run lives under one artifacts dir."""

    root: Path

    def paths(self, run_id: str) -> Dict[str, Path]:
        validate_run_id(run_id)
        r = self.root
        return {
            "processed": r / "processed" / run_id / "processed.npz",
            "meta": r / "processed" / run_id / "meta.json",
            "preprocessor": r / "models" / run_id / "preprocessor.pkl",
            "best": r / "checkpoints" / run_id / "best.keras",
            "last": r / "checkpoints" / run_id / "last.keras",
            "metrics": r / "metrics" / f"{run_id}.json",
            "report": r / "reports" / f"{run_id}.md",
            "metadata": r / "metadata" / f"{run_id}.json",
        }

    def health_path(self, run_id: str) -> Path:
        return self.root / "health" / f"{validate_run_id(run_id)}.json"

    def complete_path(self, run_id: str) -> Path:
        """The completion record (health.commit): its own folder, so that no run_id's
        file can share its name (``health/<id>.complete.json`` would be run
        ``<id>.complete``'s health record)."""
        return self.root / "complete" / f"{validate_run_id(run_id)}.json"

    def plot_dir(self, run_id: str) -> Path:
        return self.root / "reports" / validate_run_id(run_id)

    def run_dirs(self, run_id: str) -> Dict[str, Path]:
        return {kind: self.root / kind / validate_run_id(run_id) for kind in RUN_DIR_KINDS}

    def all_files(self, run_id: str) -> list:
        """Every path that belongs to the run (files and folders), existing or not."""
        p = self.paths(run_id)
        return [*self.run_dirs(run_id).values(), p["metrics"], p["report"], p["metadata"],
                self.plot_dir(run_id), self.health_path(run_id), self.complete_path(run_id)]

    def existing(self, run_id: str) -> list:
        return [p for p in self.all_files(run_id) if os.path.lexists(p)]

    def ensure_unclaimed(self, run_id: str) -> None:
        """Cheap early refusal; ``claim`` is the atomic one."""
        found = self.existing(run_id)
        if found:
            raise RunIdConflict(
                f"artifacts for run_id '{run_id}' already exist ({found[0]}); choose another "
                f"run_id or quarantine it: python -m spline_lstm runs quarantine {run_id} "
                f"--artifacts-dir {self.root}")

    def claim(self, run_id: str) -> None:
        """Atomically take the run_id: exclusive mkdir of its run folders.

        Of two processes claiming the same run_id, exactly one succeeds; the
        loser gets RunIdConflict and touches nothing of the winner's."""
        self.ensure_unclaimed(run_id)
        made = []
        try:
            for path in self.run_dirs(run_id).values():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(path)  # raises FileExistsError if someone else has it
                made.append(path)
        except FileExistsError:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            raise RunIdConflict(f"run_id '{run_id}' was claimed by another process at the same "
                                "time; choose another run_id") from None
        except OSError as exc:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            raise StorageError(f"cannot create run folders under {self.root}: "
                               f"{exc.strerror or exc}") from exc

    def run_ids(self) -> list:
        """Every run_id with any artifact, newest first by mtime."""
        found: Dict[str, float] = {}
        for kind in RUN_DIR_KINDS:
            base = self.root / kind
            if base.is_dir():
                for entry in base.iterdir():
                    if entry.is_dir() and RUN_ID_PATTERN.fullmatch(entry.name):
                        found[entry.name] = max(found.get(entry.name, 0), entry.stat().st_mtime)
        for kind in ("metrics", "metadata"):
            base = self.root / kind
            if base.is_dir():
                for entry in base.glob("*.json"):
                    rid = entry.name[:-5]
                    if RUN_ID_PATTERN.fullmatch(rid):
                        found[rid] = max(found.get(rid, 0), entry.stat().st_mtime)
        return sorted(found, key=lambda r: found[r], reverse=True)


# --- writing ------------------------------------------------------------------

def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_synced(tmp: Path, data: bytes) -> None:
    """The temp file of an atomic write, on disk before it gets its name."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> Dict[str, Any]:
    """Write via temp file + fsync + rename; return {sha256, size} of what was written."""
    tmp = _tmp_name(path)
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quiet(tmp)
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def atomic_write_new(path: Path, data: bytes) -> Dict[str, Any]:
    """Like ``atomic_write_bytes``, but never replaces an existing file: the finished
    temp file is hard-linked to its name, which fails if the name exists."""
    tmp = _tmp_name(path)
    try:
        _write_synced(tmp, data)
        os.link(tmp, path)
    except FileExistsError:
        raise StorageError(f"cannot write {path}: it exists already (created meanwhile?); nothing replaced") \
            from None
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        _unlink_quiet(tmp)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def atomic_write_json(path: Path, obj: Any) -> Dict[str, Any]:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_move_in(src: Path, path: Path) -> Dict[str, Any]:
    """Rename a finished staging file onto its canonical name (same filesystem)."""
    try:
        with open(src, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(src, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- reading ------------------------------------------------------------------

_SAFE_GLOBALS = {
    ("builtins", name) for name in
    ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool", "complex",
     "bytes", "bytearray")
} | {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Allows builtin containers and numpy arrays/scalars; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafeArtifact(f"pickle refers to disallowed global {module}.{name}; refused, not executed")


def safe_load_pickle(path: Path) -> Any:
    """Load a pickle with the restricted unpickler; never executes arbitrary code."""
    data = Path(path).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafeArtifact as exc:
        raise UnsafeArtifact(f"{path}: {exc}") from None
    except Exception as exc:
        raise UnsafeArtifact(f"{path}: not a readable plain-data pickle ({type(exc).__name__})") from None


def dump_plain_pickle(obj: Any) -> bytes:
    """Serialise the preprocessor payload, checking it stays plain data."""
    data = pickle.dumps(obj, protocol=5)
    RestrictedUnpickler(io.BytesIO(data)).load()
    return data


def utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def hold_folder(folder: Path, run_id: str) -> int:
    """Create ``folder`` and take an exclusive lock on ``folder/.lock``; returns the
    descriptor, which the caller keeps open for as long as the run lives.

    Taken before Hydra writes its records and log lines into a run folder: of two
    launches given one run_id at once, the second stops here with RunIdConflict
    before it writes anything into the first one's folder. A dead process holds no
    lock, so a folder left by an attempt that failed before its claim is reused.
    ``lock_held`` tells whether a live process runs in a folder."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunIdConflict(f"run_id '{run_id}' is being run by another process right now ({folder}); "
                            "choose another run_id") from None
    except OSError:  # a file system without locks: the atomic claim still decides
        pass
    return fd


def iter_hydra_dirs(outputs_dir: Path, run_id: str) -> Iterator[Path]:
    """The Hydra job folders of a run: runs/<run_id> or sweeps/<sweep_id>/<run_id>
    (exact names; a symlink is yielded as itself, never followed)."""
    validate_run_id(run_id)
    direct = outputs_dir / "runs" / run_id
    if os.path.lexists(direct):
        yield direct
    sweeps = outputs_dir / "sweeps"
    if sweeps.is_dir() and not sweeps.is_symlink():
        for sweep in sorted(sweeps.iterdir()):
            job = sweep / run_id
            if sweep.is_dir() and not sweep.is_symlink() and os.path.lexists(job):
                yield job


def lock_held(folder: Path) -> bool:
    """Whether a live process holds ``folder/.lock`` (see ``hold_folder``)."""
    import fcntl

    try:
        fd = os.open(folder / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False  # no lock file: no live run has held this folder
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def owned_paths(layout: ArtifactLayout, run_id: str) -> list:
    """The existing paths that belong to exactly this run_id.

    Run ``X``'s report ``reports/X.md`` has the name of run ``X.md``'s plot folder: a
    real folder there is ``X.md``'s plots, anything else is ``X``'s report. So the
    report path counts only if it is not a real folder, and the plot folder only if it
    is one (or, for a run_id not ending in ``.md``, whatever it is)."""
    report, plots = layout.paths(run_id)["report"], layout.plot_dir(run_id)
    out = []
    for path in layout.existing(run_id):
        real_dir = path.is_dir() and not path.is_symlink()
        if path == report and real_dir:
            continue
        if path == plots and not real_dir and run_id.endswith(".md"):
            continue
        out.append(path)
    return out


@contextmanager
def _quarantine_lock(folder: Path, timeout: float = 60.0) -> Iterator[None]:
    """One quarantine at a time per artifacts dir (a flock on the quarantine folder itself)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunIdConflict(f"another quarantine in {folder} has not finished in {timeout:.0f} s; "
                                        "retry when it has") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def quarantine(layout: ArtifactLayout, run_id: str, hydra_dirs: Optional[list] = None) -> Optional[Path]:
    """Move every file of exactly run_id aside (nothing is deleted), the completion record
    included, so the run can never pass again; returns the quarantine folder, or None
    when there was nothing to move (idempotent: a second quarantine finds nothing).

    Refuses (RunIdConflict) a run whose Hydra folder lock is held: it is still running.
    Quarantines are serialised per artifacts dir and each gets its own folder, so two in
    the same second both succeed or the second has nothing to do."""
    validate_run_id(run_id)
    if not owned_paths(layout, run_id) and not any(os.path.lexists(p) for p in hydra_dirs or []):
        return None  # nothing to do: create nothing, not even the quarantine folder
    base = layout.root / "quarantine"
    with _quarantine_lock(base):
        extra = [p for p in (hydra_dirs or []) if os.path.lexists(p)]
        held = []
        try:
            for folder in extra:  # held while the files move: a launch of this run_id waits for none of them
                if folder.is_dir() and not folder.is_symlink():
                    held += _take_run_lock(folder, run_id)
            found = owned_paths(layout, run_id)
            if not found and not extra:
                return None
            target = _new_folder(base, f"{run_id}-{utc_stamp()}")
            _move_all(layout, run_id, found, extra, target)
        finally:
            for fd in held:
                os.close(fd)
    return target


def _take_run_lock(folder: Path, run_id: str) -> list:
    """An exclusive hold on ``folder/.lock`` ([fd], or [] without a lock file); a lock
    held by a live run is refused with RunIdConflict."""
    import fcntl

    try:
        fd = os.open(folder / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunIdConflict(f"run_id '{run_id}' is running right now (a live process holds {folder / '.lock'}); "
                            "wait for it to end or stop it, then quarantine it") from None
    except OSError:
        os.close(fd)
        return []
    return [fd]


def _move_all(layout: ArtifactLayout, run_id: str, found: list, extra: list, target: Path) -> None:
    try:
        for path in found:
            dest = target / path.relative_to(layout.root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        for i, path in enumerate(extra):
            dest = target / "hydra" / (path.name if i == 0 else f"{path.name}-{i}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(dest))
    except OSError as exc:
        raise StorageError(f"quarantine of {run_id} failed: {exc.strerror or exc}; what moved is in "
                           f"{target}") from exc


def _new_folder(base: Path, name: str) -> Path:
    """base/name, or base/name-2, -3, ...: never one that exists."""
    for n in range(1, 1000):
        target = base / (name if n == 1 else f"{name}-{n}")
        try:
            target.mkdir()
            return target
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot create {target}: {exc.strerror or exc}") from exc
    raise StorageError(f"cannot find a free quarantine folder name for {name} in {base}")
