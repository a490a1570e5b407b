"""Hydra glue: the task function, the console log format and the two callbacks.

- ``TrackingStoreCallback`` creates a sweep's MLflow schema and experiment once,
  in the parent process, before any job starts, so the jobs find it ready (every
  process goes through the same locked ``tracking.ensure_store``), and the sweep's
  parent MLflow run (``spline_lstm.app.sweep``); it also caps a parallel sweep's
  workers and sets their per-job thread budget (``spline_lstm.core.threads``).
- ``HealthGateCallback`` runs the gate after every job. The task's return value
  is an ``Objective``: a float (the run's validation rmse, what the Optuna sweeper
  minimises) that also carries the job's ``Tracker``, the owner of its MLflow run.
  The gate takes the tracker off it, records its verdict through it and closes
  it, leaving a plain float with the run_id in the ``JobReturn`` (pickled back
  from joblib workers; read by the sweeper only after the gate). Hydra swallows exceptions
  raised in callbacks, so a failing gate instead marks the ``JobReturn`` FAILED
  with a typed error as its value: Hydra re-raises it after a single run, and the
  sweeper after every job of a sweep has run; ``launch.py`` maps it to the exit code.
  The gate's last check is the quality gate (``health``): with ``gate.quality=strict``
  an unskilled model fails the job with MODEL_UNSKILLED (12) and its MLflow run ends
  FAILED (tag ``skill=UNSKILLED``, set by the pipeline); its files are still sealed.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from spline_lstm.app import sweep
from spline_lstm.app.containment import sweep_jobs
from spline_lstm.app.sweep import job_metrics
from spline_lstm.artifacts import health
from spline_lstm.artifacts.layout import ArtifactLayout, atomic_write_bytes, atomic_write_json
from spline_lstm.core import environment, threads
from spline_lstm.core.config import validate
from spline_lstm.core.documents import MetricsDoc
from spline_lstm.core.errors import ModelUnskilled, StorageError, TrackingFailed, classify, error_line, one_line
from spline_lstm.core.ids import current_sweep_id
from spline_lstm.core.jsonio import read_json
from spline_lstm.core.secrets import hide_passwords, mask_logs, mask_text
from spline_lstm.pipeline import run
from spline_lstm.tracking.tracker import NullTracker, ensure_store, resolve_store

log = logging.getLogger("spline_lstm")


class Objective(float):
    """The task's result as a number: the best model's rmse on the validation split, in
    the series' units (comparable across differencing and scaling; never the test
    split; inf when no validation target was observed), so Hydra's Optuna sweeper can
    minimise it. ``run_id`` names the run; ``tracker`` travels to the gate, which
    takes it off (``_take_tracker``) before the value is pickled anywhere."""

    def __new__(cls, value: float, run_id: Optional[str] = None, tracker: Any = None):
        obj = super().__new__(cls, value)
        obj.run_id, obj.tracker = run_id, tracker
        return obj

    def __repr__(self) -> str:
        return f"Objective({float(self)!r}, run_id={self.run_id!r})"


def task(cfg: DictConfig) -> "Objective":
    """The Hydra task: one full pipeline run."""

    mask_logs(logging.getLogger(), logging.getLogger("spline_lstm.trace"))  # Hydra has set up the run log
    app = validate(cfg)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    ctx = run.RunContext(app=app, layout=ArtifactLayout(Path(app.paths.artifacts_dir)),
                              run_dir=Path(hc.runtime.output_dir), overrides=list(hc.overrides.task),
                              sweep_id=environment.read(environment.SWEEP_ID) if multirun else None,
                              parent_run_id=environment.read(environment.PARENT_RUN_ID) if multirun else None)
    try:
        result = run.run(ctx)
    except KeyboardInterrupt as exc:  # skips Hydra's job end and the gate: record where its log is
        _record_status(ctx.run_id, classify(exc), ctx.log_path, ctx.overrides)
        raise
    val = result.get("val_rmse")
    return Objective(val if isinstance(val, float) and math.isfinite(val) else math.inf, result["run_id"],
                     result["tracker"])


def console_formatter(fmt: str, sweep_fmt: str, job_num: Optional[int] = None,
                      datefmt: Optional[str] = None) -> logging.Formatter:
    """The console format of conf/hydra/default.yaml: a sweep job's (``job_num`` set)
    carries its run_id, so interleaved jobs stay apart; a single run's stays short."""
    return logging.Formatter(sweep_fmt if job_num is not None else fmt, datefmt)


class TrackingStoreCallback(Callback):
    # A single run creates its store in its tracking helper, off the critical path; a
    # sweep creates it once here so its jobs do not queue on the store's init lock, and
    # its parent MLflow run (spline_lstm.app.sweep), which the launcher ends after the last job.
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        environment.clear(environment.PARENT_RUN_ID)  # never a parent from an outer shell
        threads.set_sweep_budget(config)  # caps the workers; before Hydra makes the launcher
        search = "optuna" in str(config.hydra.sweeper.get("_target_", "")).lower()
        parent = sweep.begin(environment.read(environment.STATUS_DIR), current_sweep_id(),
                             Path(str(config.hydra.sweep.dir)), self._store(config), search=search,
                             jobs=_job_count(config, search))
        if parent:
            environment.write(environment.PARENT_RUN_ID, parent)  # the jobs' runs become its children

    @staticmethod
    def _store(config: DictConfig):
        """The sweep's store, created (schema, experiment); None with tracking=none or when
        it fails: errors are left for the jobs, which report them with exit code 8."""
        try:
            app = validate(config, resolve_run_id=False)
            if app.tracking.enabled:

                store = resolve_store(app.tracking, app.paths)
                ensure_store(store)
                return store
        except Exception:
            pass
        return None


def _job_count(config: DictConfig, search: bool) -> Optional[int]:
    """How many jobs the sweep will run (a search: its trials), for its progress line."""
    try:
        return int(config.hydra.sweeper.n_trials) if search else len(sweep_jobs(config))
    except Exception:
        return None


def _sweep_progress() -> None:
    """After each job of a sweep, on a terminal only: jobs done and the ETA (not logged)."""
    status_dir = environment.read(environment.STATUS_DIR)
    if not status_dir or not sys.stderr.isatty():
        return
    try:
        text = sweep.progress_text(Path(status_dir))
        if text:
            print(text, file=sys.stderr, flush=True)
    except Exception:
        pass


class HealthGateCallback(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra has just recorded the config in .hydra/ (and multirun.yaml): mask any
        tracking password a config file held before the run can upload those records."""

        try:  # learn the password of a resolved ${oc.env:...} too, so it is masked wherever it lands
            hide_passwords([str(config.tracking.uri), environment.read(environment.MLFLOW_URI, "")])
        except Exception:
            pass  # an unresolvable value is the job's to report
        records = []
        if config.hydra.output_subdir is not None:
            subdir = Path(str(config.hydra.runtime.output_dir)) / str(config.hydra.output_subdir)
            records += [subdir / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            records.append(Path(str(config.hydra.sweep.dir)) / "multirun.yaml")
        for path in records:
            try:
                text = path.read_text(encoding="utf-8")
                if mask_text(text) != text:
                    atomic_write_bytes(path, mask_text(text).encode("utf-8"))
            except (OSError, StorageError):
                pass  # nothing recorded there, or a read-only run folder the job itself will report

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        tracker = _take_tracker(job_return)
        try:
            self._on_job_end(config, job_return, tracker)
        except Exception as exc:  # never let the gate itself pass silently
            logging.getLogger("spline_lstm.trace").exception("health gate crashed")
            err = classify(exc)
            job_return.status = JobStatus.FAILED
            job_return.return_value = err
            try:  # the sweep summary must still list this job
                log_path = Path(str(config.hydra.runtime.output_dir)) / "run.log"
                _log_job_error(err, log_path)
                _record_status(str(config.run_id), err, log_path, _task_overrides(config))
            except Exception:
                pass
        except BaseException:  # interrupted during the gate: the run ends KILLED, the job 130
            tracker.abort("KILLED")
            raise
        finally:
            if job_return.status != JobStatus.COMPLETED:
                tracker.abort("FAILED")  # a failure after the verdict replaces a recorded PASS
            tracker.close()
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                _sweep_progress()

    def _on_job_end(self, config: DictConfig, job_return: JobReturn, tracker) -> None:
        run_id = str(config.run_id)
        run_dir = Path(config.hydra.runtime.output_dir)
        log_path = run_dir / "run.log"
        artifacts_dir = Path(str(config.paths.artifacts_dir)).absolute()
        if job_return.status != JobStatus.COMPLETED:
            err = classify(job_return._return_value)
            job_return.return_value = err
            _record_status(run_id, err, log_path, _task_overrides(config), _job_metrics(artifacts_dir, run_id))
            _log_job_error(err, log_path)
            return

        t0 = time.perf_counter()
        result = health.run_gate(artifacts_dir, run_id, require_commit=False)  # the record comes last
        record = health.write_record(result)
        elapsed = time.perf_counter() - t0
        err = result.error()
        try:
            log.info("gate       %s%s", "PASS" if err is None else "FAIL",
                     "; recording the verdict in MLflow" if tracker.enabled else "")
            _tag_mlflow(tracker, err is None, [(record, "health"), (log_path, None)])
        except Exception as exc:  # the gate's own verdict stays the primary error
            logging.getLogger("spline_lstm.trace").exception("could not record the gate verdict in MLflow")
            if err is None:
                typed = classify(exc)
                err = typed if isinstance(typed, TrackingFailed) else TrackingFailed(
                    f"could not record the gate verdict (health=PASS) in MLflow: {type(exc).__name__}: "
                    f"{one_line(str(exc), 200)}")
        if err is None or (isinstance(err, ModelUnskilled) and result.whole):
            # every artifact written, MLflow ended and tagged: commit, as the very last write
            # (an unskilled strict run too: whole files, sealed as evidence; its gate never passes)
            health.commit(result, final=HydraConfig.get().mode == RunMode.RUN)
        _print_summary(artifacts_dir, run_id, result.passed and err is None, record, elapsed, log_path)
        if err is not None:
            if not result.passed:
                logging.getLogger("spline_lstm.trace").error("gate failed: %s", json.dumps(result.to_dict()))
            job_return.status = JobStatus.FAILED
            job_return.return_value = err
            _log_job_error(err, log_path)
        _record_status(run_id, err, log_path, _task_overrides(config), _job_metrics(artifacts_dir, run_id))


def _log_job_error(err: Exception, log_path) -> None:
    """A job's failure in its run log. The console gets its ``ERROR [NAME]`` line once,
    from the launcher, as the last line on stderr; a sweep job gets a short line with its
    run_id (its verdict and message are in the sweep's failure list at the end)."""
    logging.getLogger("spline_lstm.trace").error("%s", error_line(err, str(log_path)))
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        log.warning("job failed with exit %s (%s): listed at the end of the sweep; log: %s",
                    getattr(err, "code", 1), getattr(err, "name", "UNEXPECTED"), log_path)


def _task_overrides(config: DictConfig) -> list:
    """The job's command-line overrides, passwords masked: they reach the sweep's table."""

    try:
        return [mask_text(str(o)) for o in config.hydra.overrides.task]
    except Exception:
        return []


def _job_metrics(artifacts_dir: Path, run_id: str) -> dict:
    """The sweep table's metrics, from the run's own metrics JSON (empty when it has none)."""

    try:
        return job_metrics(read_json(ArtifactLayout(artifacts_dir).paths(run_id)["metrics"]))
    except Exception:
        return {}


def _record_status(run_id: str, err: Optional[Exception], log_path: Path, overrides: list = (),
                   metrics: Optional[dict] = None) -> None:
    """Per-job verdict, overrides and metrics for launch.py's end-of-sweep table (workers
    may be other processes)."""
    status_dir = environment.read(environment.STATUS_DIR)
    if not status_dir:
        return
    doc = {"run_id": run_id, "ok": err is None, "log": str(log_path), "overrides": list(overrides),
           **(metrics or {})}
    if err is not None:
        doc.update(code=getattr(err, "code", 1), name=getattr(err, "name", "UNEXPECTED"), message=str(err))
    try:
        atomic_write_json(Path(status_dir) / f"{run_id}.json", doc)
    except Exception:
        pass


def _take_tracker(job_return: JobReturn):
    """The job's run owner taken off its ``Objective``, which keeps only plain data (joblib
    pickles it back to the sweep's parent); a no-op tracker when there is none."""

    value = job_return._return_value
    if job_return.status == JobStatus.COMPLETED and isinstance(value, Objective):
        return value.__dict__.pop("tracker", None) or NullTracker()
    return NullTracker()


def _tag_mlflow(tracker, passed: bool, files: list) -> None:
    """The health record and the run log (up to the verdict) uploaded, then health=PASS
    and FINISHED, or health=FAIL and FAILED, confirmed by the store before the gate goes
    on (a no-op tracker with tracking=none)."""
    tracker.finish(passed, files)


def _print_summary(artifacts_dir: Path, run_id: str, passed: bool, record: Path, elapsed: float,
                   log_path: Path) -> None:
    """Display only: it runs after the commit, so it must never raise."""

    try:
        paths = ArtifactLayout(artifacts_dir).paths(run_id)
        skill = backtest = series = None
        try:
            doc = MetricsDoc.from_dict(read_json(paths["metrics"]))
            vs = ", ".join(f"{n} {v:.4g}" for n, v in doc.baseline_rmse().items() if v is not None)
            missing = [n for n, y in doc.yardsticks.items() if y.get("status") != "ok"]
            line = f"test rmse {doc.rmse:.4g} (baselines: {vs}" + (
                f"; not available: {', '.join(missing)})" if missing else ")")
            skill, backtest = _skill_line(doc), _backtest_line(doc)
            series = _series_line(doc)
        except Exception:
            line = "test metrics unavailable"
        log.info("== summary")
        log.info("run_id     %s", run_id)
        log.info("metrics    %s", line)
        if series:
            log.info("series     %s", series)
        if backtest:
            log.info("backtest   %s", backtest)
        if skill:
            log.info("skill      %s", skill)
        log.info("gate       %s in %.0f ms -> %s", "PASS" if passed else "FAIL", elapsed * 1000, record)
        log.info("artifacts  %s", artifacts_dir)
        log.info("report     %s", paths["report"])
        log.info("log        %s", log_path)
    except Exception:
        pass


def _skill_line(doc) -> Optional[str]:
    """The quality verdict as the summary prints it (None when not checked)."""
    s = doc.skill or {}
    if not doc.skill_verdict:
        return None
    imp = s.get("improvement_pct")
    metric, model_score, best_score = doc.skill_scores
    nan = float("nan")
    return (f"{doc.skill_verdict} ({s.get('mode')}): {s.get('basis')} {metric} "
            f"{nan if model_score is None else model_score:.4g} vs best "
            f"baseline {s.get('best_baseline')} {nan if best_score is None else best_score:.4g} "
            f"({'n/a' if imp is None else f'{imp:+.1f}%'}; needs > {s.get('min_improvement_pct'):g}%)")


def _series_line(doc) -> Optional[str]:
    """Many series: the model's MASE over series and how often it beats naive-last."""
    d = (doc.series or {}).get("distribution") or {}
    if not d:
        return None
    q = d.get("mase_quantiles") or {}
    return (f"{d.get('series')} series: model MASE mean {doc.metrics.get('mase', float('nan')):.4g}, median "
            f"{q.get('median', float('nan')):.4g} [p10 {q.get('p10', float('nan')):.4g}, p90 "
            f"{q.get('p90', float('nan')):.4g}]; beats naive_last on {d.get('beats_naive_last')} of "
            f"{d.get('compared_with_naive_last')}")


def _backtest_line(doc) -> Optional[str]:
    bt = doc.backtest or {}
    agg = bt.get("aggregate") or {}
    if not agg:
        return None
    parts = [f"{n} {a['rmse_mean']:.4g}±{a['rmse_std']:.2g}" for n, a in agg.items()]
    return f"{bt.get('folds')} folds (refit={bt.get('refit')}), rmse mean±sd: " + ", ".join(parts)
