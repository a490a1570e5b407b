"""Containment: every folder a run writes is derived from its roots and checked
before anything is written.

Composing a config is pure (the resolvers in ``config`` only compute paths). The
checks, the run_id claim and the folder lock happen here, in a Hydra callback that
runs after composition and before Hydra creates a folder or writes a record:
``on_run_start`` for a single run, ``on_multirun_start`` for a sweep (which
composes every job first). Hydra swallows an ``Exception`` raised by a callback,
so a refusal travels as ``Refused`` (a ``BaseException``) carrying the typed error;
``launcher.launch`` maps it to its exit code.

Rules (runbook: "Where a run writes"):
- ``paths.outputs_dir`` and ``paths.artifacts_dir`` are resolved once, absolute,
  from the launch directory; empty or the filesystem root -> 2; under /proc, /sys
  or /dev, not a directory, or not creatable/writable -> 6.
- ``paths.artifacts_dir`` may be inside ``paths.outputs_dir`` (the default) or
  anywhere else, but never inside a run or sweep folder (``<outputs>/runs``,
  ``<outputs>/sweeps``); ``paths.outputs_dir`` is never inside the artifacts dir -> 2.
- a SQLite tracking store and ``tracking.artifact_location`` are files too: not
  in memory, not on a pseudo-filesystem, not inside a run folder or the artifacts tree.
- ``hydra.run.dir``, ``hydra.sweep.dir``, ``hydra.sweep.subdir``,
  ``hydra.job.chdir``, ``hydra.output_subdir`` and the log file names are derived
  and cannot be set -> 2.
- a run folder ``runs/<run_id>`` and a sweep job folder ``sweeps/<sweep_id>/<run_id>``
  are locked (``.lock``, flock) by the process running them; a sweep's folder is
  created exclusively; one sweep never gives two jobs one run_id.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from spline_lstm.artifacts.layout import ArtifactLayout, hold_folder
from spline_lstm.core.config import validate
from spline_lstm.core.errors import ConfigInvalid, RunIdConflict, SplineLSTMError, StorageError, classify
from spline_lstm.core.ids import validate_run_id
from spline_lstm.core.paths import absolute_root

SPECIAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))

# hydra.<key> -> the only value it may have (conf/hydra/default.yaml)
DERIVED = {
    "run.dir": "${run_dir:${paths.outputs_dir},${run_id}}",
    "sweep.dir": "${sweep_dir:${paths.outputs_dir}}",
    "sweep.subdir": "${job_subdir:${run_id}}",
    "output_subdir": ".hydra",
}
# command-line overrides of these hydra keys (or of the whole hydra config) are refused
FIXED_HYDRA_KEYS = ("hydra.run", "hydra.sweep", "hydra.job.chdir", "hydra.output_subdir", "hydra.job_logging",
                    "hydra.hydra_logging", "hydra.runtime", "hydra.callbacks.containment",
                    "hydra.callbacks.tracking_store", "hydra.callbacks.health_gate")  # adding a callback is fine
_LOG_FILE = re.compile(r"\$\{hydra\.runtime\.output_dir\}/[A-Za-z0-9_][A-Za-z0-9._-]*")


class Refused(BaseException):
    """A typed refusal raised from a Hydra callback (Hydra would swallow an Exception)."""

    def __init__(self, error: SplineLSTMError):
        super().__init__(str(error))
        self.error = error


# --- paths: pure ----------------------------------------------------------------

def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def sqlite_path(uri: str) -> Optional[Path]:
    """The file of a ``sqlite:`` URI (absolute), None for other schemes; refuses an
    in-memory store (the runs would vanish with the process)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    path = rest[3:] if rest.startswith("///") else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigInvalid(f"tracking.uri: {uri!r} names no database file; use sqlite:///path/mlflow.db")
    return absolute_root("tracking.uri", path)


def file_location(value: str) -> Optional[Path]:
    """The folder of a local artifact location (path or file: URI), None for remote ones."""
    if value.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return absolute_root("tracking.artifact_location", unquote(urlparse(value).path))
    if "://" in value:
        return None
    return absolute_root("tracking.artifact_location", value)


# --- checks: read only -----------------------------------------------------------

def check_not_special(key: str, path: Path) -> Path:
    """The real path (symlinks followed) must not be on a pseudo-filesystem."""
    real = Path(os.path.realpath(path))
    for special in SPECIAL_ROOTS:
        if inside(real, special):
            raise StorageError(f"{key}: {path} is on the {special} pseudo-filesystem, not a disk; "
                               "choose a folder on a disk")
    return real


def check_writable_root(key: str, path: Path) -> Path:
    """A root that exists as a writable folder, or whose nearest existing parent is one
    (so it can be created). Returns the real path. Reads only."""
    real = check_not_special(key, path)
    probe = real
    while not os.path.lexists(probe):
        probe = probe.parent
    if not probe.is_dir():
        raise StorageError(f"{key}: cannot use {path}: {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        verb = "is not writable" if probe == real else f"cannot be created ({probe} is not writable)"
        raise StorageError(f"{key}: {path} {verb}")
    return real


def check_layout(outputs: Path, artifacts: Path, tracking: Any) -> None:
    """Every root of a run, checked before anything is written (2 or 6)."""
    out_real = check_writable_root("paths.outputs_dir", outputs)
    art_real = check_writable_root("paths.artifacts_dir", artifacts)
    run_folders = (out_real / "runs", out_real / "sweeps")
    if any(inside(art_real, f) for f in run_folders):
        raise ConfigInvalid(f"paths.artifacts_dir: {artifacts} is inside a run folder of paths.outputs_dir "
                            f"({outputs}/runs or /sweeps); choose a folder outside them")
    if inside(out_real, art_real) and out_real != art_real:
        raise ConfigInvalid(f"paths.outputs_dir: {outputs} is inside paths.artifacts_dir ({artifacts}); "
                            "the artifacts tree holds only run artifacts")
    if not getattr(tracking, "enabled", False):
        return
    places = []
    if tracking.uri:
        places.append(("tracking.uri", sqlite_path(str(tracking.uri))))
    if tracking.artifact_location:
        places.append(("tracking.artifact_location", file_location(str(tracking.artifact_location))))
    for key, place in places:
        if place is None:
            continue
        real = check_not_special(key, place)
        if any(inside(real, f) for f in (*run_folders, art_real)):
            raise ConfigInvalid(f"{key}: {place} lies inside a run folder or the artifacts tree; "
                                "keep the tracking store beside them (default: <outputs_dir>/mlflow.db)")


def _raw(cfg: DictConfig, key: str) -> Any:
    node = OmegaConf.select(cfg, f"hydra.{key.rsplit('.', 1)[0]}", default=None) if "." in key else cfg.hydra
    if node is None:
        return None
    container = OmegaConf.to_container(node, resolve=False)
    return container.get(key.rsplit(".", 1)[-1]) if isinstance(container, dict) else None


def check_hydra_settings(cfg: DictConfig) -> None:
    """Where Hydra writes is derived from paths.outputs_dir and run_id; any other
    value (from the command line, a preset or a config file) is refused with 2."""
    if "hydra" not in cfg:
        return
    for key, expected in DERIVED.items():
        got = _raw(cfg, key)
        if got != expected:
            raise ConfigInvalid(f"hydra.{key}: where Hydra writes is derived from paths.outputs_dir and run_id "
                                f"and cannot be set (got {got!r}); set paths.outputs_dir or run_id instead")
    if _raw(cfg, "job.chdir"):
        raise ConfigInvalid("hydra.job.chdir: must stay false: a run never changes its working directory "
                            "(relative paths would land inside the run folder)")
    for logging_key in ("job_logging", "hydra_logging"):
        conf = _raw(cfg, logging_key) or {}
        for name, handler in (conf.get("handlers") or {}).items():
            filename = handler.get("filename") if isinstance(handler, dict) else None
            if filename is not None and not _LOG_FILE.fullmatch(str(filename)):
                raise ConfigInvalid(f"hydra.{logging_key}.handlers.{name}.filename: a log file lives in the run "
                                    f"folder: use ${{hydra.runtime.output_dir}}/NAME, got {filename!r}")


def check_overrides(args: List[str]) -> None:
    """Command-line overrides that would move Hydra's writes, or drop or change this
    project's callbacks, are refused before Hydra starts (a callback cannot check its
    own removal). Adding another callback is allowed."""
    for arg in args:
        if arg.startswith("-") or not ("=" in arg or arg.startswith("~")):
            continue  # a flag or a flag's value (--cfg hydra), not an override
        key = arg.split("=", 1)[0].lstrip("~+")
        if key == "hydra.job.chdir":
            raise ConfigInvalid("hydra.job.chdir: cannot be set: a run never changes its working directory "
                                "(relative paths would land inside the run folder)")
        fixed = key in ("hydra", "hydra.callbacks", *FIXED_HYDRA_KEYS)
        if fixed or key.startswith(tuple(f"{k}." for k in FIXED_HYDRA_KEYS)):
            raise ConfigInvalid(f"{key}: where Hydra writes is derived from paths.outputs_dir and run_id and "
                                "cannot be set; set paths.outputs_dir or run_id instead")


def check_predict_output(output: str, input_path: str, outputs: Path, artifacts: Path, overwrite: bool) -> Path:
    """Where ``predict --output`` may write: never into the artifacts tree or a run
    folder, never over its own input (also through a symlink or a hard link), never
    over an existing file unless ``overwrite``. Returns the path to write (its folder
    resolved, the name kept: a symlink there is replaced, not followed). Reads only."""
    given = Path(output).expanduser().absolute()
    if not given.name or given.name in (".", "..") or output.endswith(os.sep):
        raise ConfigInvalid(f"--output {output!r}: name a file, not a folder")
    folder = check_writable_root("--output", given.parent)
    target = folder / given.name
    art_real = Path(os.path.realpath(artifacts))
    out_real = Path(os.path.realpath(outputs))
    for root, what in ((art_real, "the artifacts tree"), (out_real / "runs", "a run folder"),
                       (out_real / "sweeps", "a sweep folder")):
        if inside(target, root):
            raise ConfigInvalid(f"--output {output}: lies inside {what} ({root}), whose files belong to runs; "
                                "write the forecast elsewhere")
    source = Path(input_path).expanduser().absolute()
    if os.path.realpath(target) == os.path.realpath(source) or _same_file(target, source):
        raise ConfigInvalid(f"--output {output}: is the --input file itself; write the forecast elsewhere")
    if os.path.lexists(target):
        if target.is_dir() and not target.is_symlink():
            raise ConfigInvalid(f"--output {output}: is a folder; name a file")
        if not overwrite:
            raise ConfigInvalid(f"--output {output}: exists already; pass --overwrite to replace it")
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --- the plan of one job -------------------------------------------------------------

def plan_job(cfg: DictConfig, resolve_run_id: bool = True):
    """Validate a composed job config and every root it writes to; returns the typed config."""

    app = validate(cfg, resolve_run_id=resolve_run_id)
    if resolve_run_id:
        validate_run_id(app.run_id)
    check_hydra_settings(cfg)
    check_layout(Path(app.paths.outputs_dir), Path(app.paths.artifacts_dir), app.tracking)
    return app


def _explicit_run_id(cfg: DictConfig) -> bool:
    """False where run_id is the generated default (unique per job)."""
    raw = OmegaConf.to_container(cfg, resolve=False).get("run_id")  # type: ignore[union-attr]
    return not (isinstance(raw, str) and raw.startswith("${run_id_default:"))


def sweep_jobs(master: DictConfig) -> List[List[str]]:
    """The override lists of every job of a sweep, as the basic sweeper expands them.
    A search (the Optuna sweeper, ``+hpo=...``) picks its trials as it goes: its probe
    jobs instead (``search_probes``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.to_container(master.hydra.sweeper, resolve=False).get("params") or {}  # type: ignore[union-attr]
    args = [f"{k}={v}" for k, v in params.items()]
    args += list(OmegaConf.to_container(master.hydra.overrides.task, resolve=False))  # type: ignore[arg-type]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    parsed = parser.parse_overrides(args)
    if "BasicSweeper" not in str(master.hydra.sweeper.get("_target_", "BasicSweeper")):
        return search_probes(parsed)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def search_probes(overrides: list) -> List[List[str]]:
    """Jobs that check a search space before any trial runs: the fixed overrides plus
    one searched key at a time, at each of its choices or at both ends of its interval
    (a value out of range is refused up front, not trial by trial)."""
    fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
    jobs = [fixed]
    for o in overrides:
        if not o.is_sweep_override():
            continue
        value = o.value()
        ends = [value.start, value.end] if hasattr(value, "start") and hasattr(value, "end") and \
            not hasattr(value, "step") else list(o.sweep_string_iterator())
        jobs += [[*fixed, f"{o.get_key_element()}={v}"] for v in ends]
    return jobs


def plan_sweep(master: DictConfig) -> Tuple[Path, List[str]]:
    """Compose every job of a sweep and check it as a single run would be checked;
    returns the sweep folder and the explicit run_ids."""
    from hydra.core.global_hydra import GlobalHydra

    app = plan_job(master, resolve_run_id=False)
    loader = GlobalHydra.instance().config_loader()
    seen: Dict[str, int] = {}
    for num, overrides in enumerate(sweep_jobs(master)):
        job = loader.load_sweep_config(master, list(overrides))
        with open_dict(job):
            job.hydra.job.num = num
        explicit = _explicit_run_id(job)
        try:
            japp = plan_job(job, resolve_run_id=explicit)
        except SplineLSTMError as err:
            raise type(err)(f"{err} (sweep job #{num})") from err
        if (japp.paths.outputs_dir, japp.paths.artifacts_dir) != (app.paths.outputs_dir, app.paths.artifacts_dir):
            raise ConfigInvalid(f"paths.outputs_dir / paths.artifacts_dir: cannot vary within a sweep (sweep job "
                                f"#{num}); run one sweep per folder")
        if explicit:
            if japp.run_id in seen:
                raise RunIdConflict(f"run_id '{japp.run_id}' is given to two jobs of this sweep (#{seen[japp.run_id]} "
                                    f"and #{num}); one run_id, one run: nothing was run")
            seen[japp.run_id] = num
    return Path(str(master.hydra.sweep.dir)), list(seen)


# --- the callback ------------------------------------------------------------------------

class ContainmentCallback(Callback):
    """Checks, claims and locks before Hydra writes; releases the locks at the end.

    Holds the lock descriptors itself (no module state); a copy sent to a joblib
    worker carries none."""

    def __init__(self) -> None:
        self._locks: Dict[str, int] = {}

    def __getstate__(self) -> dict:
        return {"_locks": {}}

    def __setstate__(self, state: dict) -> None:
        self._locks = {}

    def _guard(self, step, *args) -> Any:
        try:
            return step(*args)
        except SplineLSTMError as err:
            raise Refused(err) from err
        except Exception as exc:  # noqa: BLE001 - a callback's Exception would be swallowed
            raise Refused(classify(exc)) from exc

    def _hold(self, folder: Path, run_id: str) -> None:
        if str(folder) not in self._locks:
            self._locks[str(folder)] = hold_folder(folder, run_id)

    def _release(self, folder: Optional[Path] = None) -> None:
        for key in [k for k in self._locks if folder is None or k == str(folder)]:
            try:
                os.close(self._locks.pop(key))
            except OSError:
                pass

    # single run
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        logging.raiseExceptions = False  # a full disk under the log must not print tracebacks
        self._guard(self._start_run, config)

    def _start_run(self, config: DictConfig) -> None:
        app = plan_job(config)
        run_dir = Path(str(config.hydra.run.dir))
        expected = Path(app.paths.outputs_dir) / "runs" / app.run_id
        if run_dir != expected:  # the resolver computes exactly this; a guard, not a rule
            raise ConfigInvalid(f"hydra.run.dir: {run_dir} is not {expected}")
        ArtifactLayout(Path(app.paths.artifacts_dir)).ensure_unclaimed(app.run_id)
        self._hold(run_dir, app.run_id)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    # sweep
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        logging.raiseExceptions = False
        self._guard(self._start_sweep, config)

    def _start_sweep(self, config: DictConfig) -> None:
        sweep_dir, _ = plan_sweep(config)
        try:
            sweep_dir.mkdir(parents=True)
        except FileExistsError:
            raise RunIdConflict(f"sweep folder {sweep_dir} exists already: every sweep needs a fresh one "
                                "(unset SPLINE_LSTM_SWEEP_ID)") from None
        except OSError as exc:
            raise StorageError(f"cannot create the sweep folder {sweep_dir}: {exc.strerror or exc}") from exc
        self._hold(sweep_dir, "sweep")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sweep job locks its own folder (in its worker); a single run holds its lock already."""
        logging.raiseExceptions = False
        if str(config.hydra.mode).endswith("MULTIRUN"):
            self._guard(self._hold, Path(str(config.hydra.runtime.output_dir)), str(config.run_id))

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.mode).endswith("MULTIRUN"):
            self._release(Path(str(config.hydra.runtime.output_dir)))
