"""One run end to end: load -> validate -> spline -> scale -> windows -> train ->
evaluate -> canonical artifacts -> MLflow. The health gate runs afterwards as a
Hydra callback (spline_lstm.callbacks).

``RunContext`` is the one object that carries run_id, config, paths and the
tracker through the stages.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from spline_lstm import __version__
from spline_lstm.artifacts.layout import (
    ArtifactLayout,
    atomic_move_in,
    atomic_write_bytes,
    atomic_write_json,
    dump_plain_pickle,
)
from spline_lstm.core import environment, threads
from spline_lstm.core.config import AppConfig, flatten, is_panel, to_plain
from spline_lstm.core.documents import MetadataDoc, MetricsDoc
from spline_lstm.core.errors import InputInvalid, Interrupted, StorageError, classify, signals_deferred
from spline_lstm.core.progress import Progress
from spline_lstm.core.secrets import mask_obj
from spline_lstm.data import panel
from spline_lstm.data.panel import local_bounds, series_of
from spline_lstm.evaluation import metrics, report, yardsticks
from spline_lstm.models import network, train
from spline_lstm.pipeline import backtest
from spline_lstm.pipeline.backtest import mlflow_metrics as backtest_metrics
from spline_lstm.pipeline.chain import build_network, fit_chain
from spline_lstm.preprocessing import seasonality, transforms
from spline_lstm.tracking.tracker import NullTracker, Tracker, preflight, resolve_store

log = logging.getLogger("spline_lstm")
trace_log = logging.getLogger("spline_lstm.trace")  # file only: tracebacks stay off the console


@dataclass
class RunContext:
    app: AppConfig
    layout: ArtifactLayout
    run_dir: Optional[Path] = None  # Hydra job folder (config, overrides, run.log)
    overrides: List[str] = field(default_factory=list)
    sweep_id: Optional[str] = None
    parent_run_id: Optional[str] = None  # the sweep's MLflow run (spline_lstm.app.sweep)
    tracker: object = field(default_factory=NullTracker)
    timings: Dict[str, float] = field(default_factory=dict)
    hashes: Dict[str, dict] = field(default_factory=dict)
    threads: Dict[str, object] = field(default_factory=dict)  # the thread budget in effect (spline_lstm.core.threads)

    @property
    def run_id(self) -> str:
        return self.app.run_id

    @property
    def paths(self) -> Dict[str, Path]:
        return self.layout.paths(self.run_id)

    @property
    def log_path(self) -> Optional[Path]:
        return self.run_dir / "run.log" if self.run_dir else None

    @contextmanager
    def stage(self, name: str, title: Optional[str] = None):
        if title:
            log.info("== %s", title)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 4)

    def write(self, kind: str, data: bytes) -> None:
        self.hashes[kind] = atomic_write_bytes(self.paths[kind], data)

    def write_json(self, kind: str, obj) -> None:
        self.hashes[kind] = atomic_write_json(self.paths[kind], obj)


def git_commit(start: Path) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(start), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {"python": platform.python_version(), "spline_lstm": __version__}
    for dist in ("numpy", "pandas", "scipy", "tensorflow", "keras", "mlflow", "hydra-core",
                 "omegaconf", "pyarrow", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def run(ctx: RunContext) -> dict:
    """Execute every stage; on any failure end the MLflow run FAILED/KILLED, write
    the traceback to the run log, and re-raise a typed error.

    On success the MLflow run is still open: the result carries its owner (``tracker``)
    to the health gate, which records the verdict, ends the run and closes it."""
    started = time.time()
    run_start = started  # what MLflow shows as the run's start: the launch itself when known
    pid, _, launched = environment.read(environment.STARTED, "").partition(":")
    if pid == str(os.getpid()):  # this process is launch.py itself, not a sweep worker
        ctx.timings["startup"] = round(started - float(launched), 4)
        if not ctx.sweep_id:  # a sweep's jobs in this process each start when they start
            run_start = float(launched)
    app = ctx.app
    try:
        if app.tracking.enabled:
            store = resolve_store(app.tracking, app.paths)
            with ctx.stage("tracking_preflight"):
                preflight(store)  # exit 8 before anything is written
            # MLflow loads in a helper, in parallel
            ctx.tracker = Tracker(store, ctx.log_path, app.tracking.register_model)
        prepared = _prepare(ctx)  # in memory: bad input is refused before anything is written
        app = ctx.app  # with the resolved season, fill, difference and lookback
        tags, params = _tags(ctx), _params(app)
        with signals_deferred():  # once claimed, the run exists in MLflow too, to be ended KILLED
            ctx.layout.claim(ctx.run_id)
            with ctx.stage("mlflow"):
                ctx.tracker.start(ctx.run_id, tags, params, start_time=run_start,
                                  dataset=_dataset(app, prepared))
        log.info("run_id %s -> %s", ctx.run_id, ctx.layout.root)
        result = _train_and_write(ctx, prepared, started)
        with ctx.stage("mlflow"):
            ctx.tracker.info()  # every queued call confirmed before the gate
        return {**result, "tracker": ctx.tracker}
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, Interrupted))
        trace_log.error("run %s failed:\n%s", ctx.run_id, traceback.format_exc())
        ctx.tracker.abort("KILLED" if interrupted else "FAILED")  # bounded; never raises
        if interrupted:
            raise
        err = classify(exc)
        if err is exc:
            raise
        raise err from exc


def _tags(ctx: RunContext) -> Dict[str, str]:
    """Our tags, and the ``mlflow.*`` ones MLflow's UI shows (Source, User, Git commit)."""
    import getpass

    app = ctx.app
    commit = git_commit(Path.cwd())
    tags = {"preset": app.preset or "none", "model": app.model.cell.value,
            "data_source": _dataset_name(app),
            "git_commit": commit or "none", "spline_lstm_version": __version__,
            "mlflow.source.name": Path(sys.argv[0]).name or "spline_lstm", "mlflow.source.type": "LOCAL"}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        pass
    if ctx.sweep_id:
        tags["sweep_id"] = ctx.sweep_id
    if ctx.parent_run_id:
        tags["mlflow.parentRunId"] = ctx.parent_run_id
    return mask_obj(tags)


# data.* settings only one kind of source reads; the other kind's are not params of the run
SYNTHETIC_ONLY = ("n_points", "start", "synthetic_freq", "gap_ratio", "gap_stretches", "noise", "n_series")
FILE_ONLY = ("path", "duplicates", "coerce_errors", "id_col", "target_cols", "paths")
NOT_PARAMS = ("tracking", "paths", "run_id", "run_prefix", "verbose")  # where it is logged, not what ran


def _params(app: AppConfig) -> Dict[str, object]:
    """What the run used: no tracking internals, no settings of the unused data source."""
    plain = to_plain(app)
    for key in NOT_PARAMS:
        plain.pop(key, None)
    unused = FILE_ONLY if app.data.source.value == "synthetic" else SYNTHETIC_ONLY
    plain["data"] = {k: v for k, v in plain["data"].items() if k not in unused}
    return mask_obj(flatten(plain))


def _dataset_name(app: AppConfig) -> str:
    return "synthetic" if app.data.source.value == "synthetic" else Path(app.data.path or "").name


def _dataset(app: AppConfig, prep: "Prepared") -> dict:
    """The input for MLflow's Datasets column: a file by its sha256 (as in the metadata),
    the synthetic series by the sha256 of its values."""
    import hashlib

    sha = prep.series.file_sha256
    digest = sha or hashlib.sha256(np.ascontiguousarray(prep.series.values, dtype="float64").tobytes()).hexdigest()
    path = str(Path(app.data.path).absolute()) if app.data.source.value != "synthetic" and app.data.path else None
    return {"name": _dataset_name(app), "digest": digest, "sha256": sha, "path": path,
            "rows": int(prep.summary["rows"])}


def mlflow_metrics(ev: "Evaluation") -> Dict[str, float]:
    """Metric names in ``/`` groups, which MLflow's chart view groups into sections, named so
    the model's own (``test/``) sort before its yardsticks (``test_baseline/``, then
    ``test_improvement_pct/``): ``/`` sorts before ``_``."""
    flat = {f"test/{k}": v for k, v in ev.metrics.items()}
    for name, b in ev.baselines.items():
        flat.update({f"test_baseline/{name}/{k}": v for k, v in b.items()})
    flat.update({f"test_improvement_pct/{n}": v for n, v in ev.improvement.items()})
    return flat


def best_epoch_of(history: Dict[str, list]) -> Optional[int]:
    """The epoch whose checkpoint was kept: 0 = the untrained network (train.fit's
    first candidate), which later epochs must strictly beat."""
    val = history.get("val_loss")
    if not val:
        return None
    initial = (history.get("initial_val_loss") or [float("nan")])[0]
    best = int(np.argmin(val))
    return 0 if np.isfinite(initial) and initial <= val[best] else best + 1


def epoch_metrics(logs: Dict[str, float]) -> Dict[str, float]:
    """Keras' ``loss`` / ``val_loss`` as ``train/loss`` / ``val/loss``, and again as
    ``loss/train`` / ``loss/val``: one ``loss`` section in MLflow's charts holding both curves
    (select both keys in one line chart to overlay them)."""
    out = {}
    for k, v in logs.items():
        split, name = ("val", k[4:]) if k.startswith("val_") else ("train", k)
        out[f"{split}/{name}"] = v
        if name == "loss":
            out[f"loss/{split}"] = v
    return out


@dataclass
class Prepared:
    """Everything preprocessing produced, before any file is written."""

    series: object  # panel.Panel (one series: a panel of one)
    timestamps: object  # pd.DatetimeIndex of the trimmed series
    values: np.ndarray  # observed values, NaN = gap
    filled: np.ndarray  # spline-filled, original units
    scaled: np.ndarray  # model input series (differenced, scaled), float32
    bounds: np.ndarray
    pre: object  # preprocessor.Preprocessor, fitted on the training split; calibrated after evaluation
    sources: list  # WindowSource per split
    summary: dict
    raw_covariates: dict = field(default_factory=dict)  # column -> values on the trimmed grid, NaN = gap
    covariates: Optional[np.ndarray] = None  # the model's covariate channels (Preprocessor.covariate_inputs)
    backtest_plan: object = None  # backtest.Plan with evaluation=backtest: folds that do not fit are refused here
    spans: Optional[np.ndarray] = None  # many series (spline_lstm.data.panel): [n, 2] observed span of each on the grid

    @property
    def is_panel(self) -> bool:
        return self.spans is not None

    @property
    def length(self) -> int:
        """Grid points per series: a flat index i is series i // length (many series)."""
        return len(self.timestamps)

    @property
    def grid_spans(self) -> np.ndarray:
        """[n, 2] observed span of each series on the grid; one series spans its whole grid."""
        return np.array([[0, self.length]], dtype=np.int64) if self.spans is None else self.spans

    def series_of(self, starts: np.ndarray) -> Optional[np.ndarray]:
        """Each window's series (None for a one-series run)."""

        return None if self.spans is None else series_of(starts, self.length)


def _prepare(ctx: RunContext) -> Prepared:
    """One series or many (spline_lstm.data.panel): each validated, filled and scaled on its own
    span, split by the same cut-offs on the shared grid; the arrays are flattened row by row,
    so one WindowSource streams the windows of every series. One series is a panel of one,
    trimmed to its observed span (its span is then the whole grid, trailing gaps included),
    whose artifacts keep the one-series layout (no ids, no per-series tables)."""

    app, p = ctx.app, ctx.app.preprocess
    many = is_panel(app.data)
    with ctx.stage("load_validate", "load + validate"):
        series = panel.load_panel(app.data, app.seed, app.preset)
        values, timestamps, raw_cov, trimmed = series.values, series.timestamps, series.covariates, (0, 0)
        if not many:  # leading and trailing gaps: no spline fills them without extrapolating
            lo, hi = transforms.observed_span(values[0])
            values, timestamps, trimmed = values[:, lo:hi], timestamps[lo:hi], (lo, series.length - hi)
            raw_cov = {c: v[:, lo:hi] for c, v in raw_cov.items()}
            if lo or trimmed[1]:
                log.warning("trimmed %d leading and %d trailing missing points", lo, trimmed[1])
        bounds = transforms.split_bounds(values.shape[1], p)
        values, timestamps = values[:, : bounds[-1]], timestamps[: bounds[-1]]
        raw_cov = {c: v[:, : bounds[-1]] for c, v in raw_cov.items()}
        spans = panel.spans(values) if many else np.array([[0, values.shape[1]]], dtype=np.int64)
        unseen = np.flatnonzero(np.isnan(values).all(axis=1))
        if unseen.size:  # observed only after the last split (split_indices shorter than the grid)
            raise InputInvalid(f"{series.source} series {series.ids[unseen[0]]!r}: no observed value in the "
                               f"splits' {int(bounds[-1])} grid points ({unseen.size} series like it); "
                               "fix preprocess.split_indices or drop the series")
        rep = panel.representative(values, bounds)
        lo, hi = spans[rep]
        choices = seasonality.resolve(app, values[rep, lo:hi], panel.local_bounds(bounds, (lo, hi)), series.freq)
        if many:
            choices.why["series"] = f"auto settings chosen on series {series.ids[rep]!r} (most training points)"
        ctx.app = app = choices.applied_to(app)  # the run's config holds plain values from here on
        p = app.preprocess
        for line in choices.lines():
            log.info("%s", line)
        names = [f"{series.source} series {i!r}" for i in series.ids] if many else [series.source]
        transforms.check_series(values, bounds, p, names, spans)
    with ctx.stage("spline", "spline gap-filling"):
        chain = fit_chain(app, values, timestamps, raw_cov, bounds, series.freq, series.source, choices.to_dict(),
                          spans, series.ids if many else None, series.statics)
        pre, cov, sources = chain.pre, chain.covariates, chain.sources
        filled, scaled = chain.filled.ravel(), chain.scaled.ravel()
    with ctx.stage("scale_window", "scale + windows"):
        length = len(timestamps)
        flat_values = values.ravel()
        summary = {**series.summary, **transforms.preprocess_summary(
            flat_values, np.isnan(flat_values) & ~np.isnan(filled), bounds, trimmed, pre.smoothing_lambda),
            "windows": {name: len(s) for name, s in zip(transforms.SPLITS, sources)},
            "window_source_bytes": sources[0].nbytes, "choices": choices.to_dict()}
        if many:
            summary["series_ids"] = list(series.ids)
            summary["points"] = int((spans[:, 1] - spans[:, 0]).sum())
            summary["missing"] = int(np.isnan(values).sum()) - (values.size - summary["points"])  # inside the spans
        if cov is not None:
            summary["covariates"] = covariate_summary(pre, {c: v.ravel() for c, v in raw_cov.items()})
            if many:
                summary["covariates"]["static"] = pre.static_encoding
            log.info("covariates: %s", summary["covariates"])
        windows = "/".join(str(len(s)) for s in sources)
        if many:
            log.info("%d series x %d grid points (%d filled), windows train/val/test = %s", series.n, length,
                     summary["interpolated"], windows)
        else:
            log.info("%d points (%d filled), windows train/val/test = %s", length, summary["interpolated"], windows)
    if many:
        return Prepared(series, timestamps, flat_values, filled, scaled, bounds, pre, sources, summary, raw_cov,
                        cov, None, spans)
    return Prepared(series, timestamps, flat_values, filled, scaled, bounds, pre, sources, summary,
                    {c: v[0] for c, v in raw_cov.items()}, cov, _backtest_plan(app, bounds, sources[2].starts))


def _backtest_plan(app: AppConfig, bounds: np.ndarray, test_starts: np.ndarray):
    """The backtest's folds, planned from the split bounds alone, before the run is
    claimed: folds that do not fit are an input error with nothing written."""
    if app.evaluation.mode.value != "backtest":
        return None

    e, p = app.evaluation, app.preprocess
    return backtest.plan(test_starts, int(bounds[3]), p.horizon, e.folds, e.step, e.refit,
                         int(bounds[2] - bounds[1]), min_train=p.lookback + p.horizon + p.difference + 1)


def covariate_summary(pre, raw_cov: dict) -> dict:
    """What the model sees beside the target: the columns (with their gaps) and the calendar."""
    return {"past": {c: int(np.isnan(raw_cov[c]).sum()) for c in pre.past_covariates},
            "future": {c: int(np.isnan(raw_cov[c]).sum()) for c in pre.future_covariates},
            "calendar": list(pre.calendar), "channels": pre.channels, "future_known": pre.known}


def _train_and_write(ctx: RunContext, prep: Prepared, started: float) -> dict:
    app, paths, p = ctx.app, ctx.paths, ctx.app.preprocess
    series = prep.series
    bounds, summary = prep.bounds, prep.summary
    with ctx.stage("artifacts"):
        _write_preprocessing(ctx, prep)

    with signals_deferred():  # SIGINT/SIGTERM stop TensorFlow between batches, never inside a step
        history, determinism = _fit(ctx, prep)
        ev = _evaluate(ctx, prep)
        bt, skill = _assess(ctx, prep, ev)
    with ctx.stage("artifacts"):
        ctx.write("preprocessor", dump_plain_pickle(ev.pre.to_dict()))
    best_epoch = best_epoch_of(history)
    if best_epoch == 0:
        log.warning("no epoch beat the untrained network on validation: the model kept is the baseline it "
                    "starts from (train.py, model selection)")
    metrics_doc = MetricsDoc(
        run_id=ctx.run_id, metrics=ev.metrics, baselines=ev.baselines, improvement_pct=ev.improvement,
        test_windows=len(ev.test), evaluated_points=int(np.isfinite(ev.actual).sum()), horizon=p.horizon,
        epochs_run=len(history.get("loss", [])), best_epoch=best_epoch,
        checkpoints={"best": str(paths["best"]), "last": str(paths["last"])}, history=history, validation=ev.validation,
        yardsticks=ev.yardsticks, skill=skill, backtest=bt, series=ev.series).to_dict()
    with ctx.stage("report", "artifacts"):
        config_plain = mask_obj(to_plain(app))  # the report shows it too
        plot_dir = ctx.layout.plot_dir(ctx.run_id)
        shown, raw, filled_shown, shown_bounds, test_times, actual, forecast = _plotted_series(prep, ev)
        pngs = report.plots(shown, raw, filled_shown, shown_bounds, history, test_times, actual, forecast,
                            app.data.target_col)
        if ev.series is not None:
            pngs["series_mase.png"] = report.series_plot(ev.series)
        if bt is not None:
            pngs["backtest.png"] = report.backtest_plot(bt)
        for name, png in pngs.items():
            ctx.hashes[f"plot:{name}"] = atomic_write_bytes(plot_dir / name, png)
        ctx.write_json("metrics", metrics_doc)
        ctx.write("report", report.markdown(ctx.run_id, config_plain, summary, metrics_doc,
                                            plot_dir.name).encode("utf-8"))
    with ctx.stage("mlflow"):
        ctx.tracker.log_metrics({**mlflow_metrics(ev), "duration_s": time.time() - started})
        if bt is not None:

            for batch, step in backtest_metrics(bt):
                ctx.tracker.log_metrics(batch, step=step)
    with ctx.stage("artifacts"):
        _write_metadata(ctx, config_plain, bounds, summary, series, determinism, started)
    with ctx.stage("mlflow"):
        _log_mlflow_artifacts(ctx, plot_dir)
        if ctx.tracker.enabled:  # the report as MLflow's artifact viewer renders it, images inline
            ctx.tracker.log_text(report.html(ctx.run_id, config_plain, summary, metrics_doc, pngs),
                                 f"report/{ctx.run_id}.html")
        ctx.tracker.log_model(ctx.paths["best"], ev.pre.to_dict(), *_model_example(prep, ev.pre))
    return {"run_id": ctx.run_id, "rmse": ev.metrics["rmse"], "val_rmse": ev.validation["rmse"],
            "baselines": {n: b["rmse"] for n, b in ev.baselines.items()}}


def _plotted_series(prep: Prepared, ev: "Evaluation") -> tuple:
    """What report.plots draws: the series, or with many series the one whose model MASE
    is the median (its name in the title)."""
    stamps = prep.timestamps.to_numpy()
    steps = np.arange(ev.actual.shape[1])  # every step, at its own target time
    if not prep.is_panel:
        return (stamps, prep.values, prep.filled, prep.bounds, stamps[ev.test.starts[:, None] + steps], ev.actual,
                ev.pred)
    k = _median_series(prep, ev)
    lo, hi = (int(x) for x in prep.spans[k])
    base, rows = k * prep.length, np.flatnonzero(prep.series_of(ev.test.starts) == k)

    return (stamps[lo:hi], prep.values[base + lo: base + hi], prep.filled[base + lo: base + hi],
            local_bounds(prep.bounds, (lo, hi)), stamps[ev.test.starts[rows, None] - base + steps], ev.actual[rows],
            ev.pred[rows])


def _median_series(prep: Prepared, ev: "Evaluation") -> int:
    table = ev.series["per_series"]  # keyed by id, in the run's series order
    scored = [(table[i]["model"]["mase"], k) for k, i in enumerate(prep.series.ids)
              if np.isfinite(table[i]["model"]["mase"])]
    return sorted(scored)[len(scored) // 2][1] if scored else 0


def _model_example(prep: Prepared, pre, n_series: int = 3) -> tuple:
    """(timestamps, values, covariates) of the MLflow model's input example: the last 512
    filled points; with many series those of the first ``n_series``, each a dict by id
    (the example is long format, mlflow_model.input_example)."""
    stamps, filled, cov = prep.timestamps, prep.filled, prep.covariates
    if not prep.is_panel:
        return ([str(t) for t in stamps[-512:]], [float(v) for v in filled[-512:]], example_covariates(pre, cov))
    out: tuple = ({}, {}, {})
    for k, sid in enumerate(prep.series.ids[:n_series]):
        lo, hi = (int(x) for x in prep.spans[k])
        lo, base = max(lo, hi - 512), k * prep.length
        out[0][sid] = [str(t) for t in stamps[lo:hi]]
        out[1][sid] = [float(v) for v in filled[base + lo: base + hi]]
        out[2][sid] = example_covariates(pre, None if cov is None else cov[base + lo: base + hi])
    return out


def example_covariates(pre, cov: Optional[np.ndarray], n: int = 512) -> Optional[dict]:
    """The last ``n`` filled values of each covariate column, in original units (the
    MLflow model's input example)."""
    if cov is None or not pre.covariate_columns:
        return None
    return {c: [float(v) for v in pre.covariate_scalers[c].inverse(cov[-n:, i].astype(np.float64))]
            for i, c in enumerate(pre.covariate_columns)}


def _fit(ctx: RunContext, prep: Prepared):
    """Build and train the model; checkpoints are staged, then moved to their canonical names."""

    app, paths, p = ctx.app, ctx.paths, ctx.app.preprocess
    with ctx.stage("imports", "model"):
        tf = train.import_tensorflow(app.verbose)
        train.split_cpu(app.training.cpu_devices)  # before anything initialises TensorFlow's devices
        ctx.threads = threads.apply(tf)
        determinism = train.seed_everything(app.seed, app.deterministic)
        determinism.update(train.distribution_record(app.training))
        if determinism["distribute"] != "none":
            log.info("distribute %s: %d replicas on %s", determinism["distribute"], determinism["replicas"],
                     ", ".join(determinism["replica_devices"]))
    with ctx.stage("model_build"):
        net = build_network(app, prep.pre)
        log.info("model: revin %s, head %s, %d member(s)", network.resolve_revin(
            app.model.revin, prep.pre.difference, p.horizon).value, app.model.head_init.value,
                 app.training.ensemble)
    staging = paths["best"].parent / ".staging"

    # a terminal gets one progress line with ETA (not in the run log: it goes to MLflow); a sweep
    # job logs its epochs instead, with its run_id
    progress = Progress("epoch", app.training.epochs, enabled=app.training.verbose > 0 and not ctx.sweep_id)

    def on_epoch(epoch: int, logs: dict) -> None:
        progress.update(epoch + 1, " ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        if ctx.sweep_id:  # a sweep job's epochs go through its log format (with its run_id), not Keras' print
            log.info("epoch %d/%d %s", epoch + 1, app.training.epochs,
                     " ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        with ctx.stage("mlflow"):
            ctx.tracker.log_metrics(epoch_metrics(logs), step=epoch)

    with ctx.stage("fit", f"fit ({app.training.epochs} epochs max)"):
        try:
            with train.distribution_scope(app.training):
                history = train.fit(net, prep.sources[0], prep.sources[1], app.training, app.seed, staging,
                                    on_epoch, verbose=0 if ctx.sweep_id or progress.enabled or
                                    app.training.verbose <= 0 else 2)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)  # a half-trained checkpoint helps nobody
            typed = classify(exc) if isinstance(exc, Exception) else None
            if isinstance(typed, StorageError):  # e.g. the disk filled up while Keras wrote a checkpoint
                raise StorageError(f"run {ctx.run_id}: cannot write its checkpoint in {staging} ({typed}); "
                                   f"free space or fix permissions under {ctx.layout.root}, then quarantine "
                                   "and rerun it") from exc
            raise
        finally:
            progress.close()
    with ctx.stage("artifacts"):
        for kind in ("best", "last"):
            ctx.hashes[kind] = atomic_move_in(staging / f"{kind}.keras", paths[kind])
        staging.rmdir()
    return history, determinism


@dataclass
class Evaluation:
    """Test-split forecasts and their metrics, in original units."""

    test: object  # transforms.WindowSource
    actual: np.ndarray  # [windows, horizon], NaN where the target was a gap
    pred: np.ndarray
    metrics: dict
    baselines: Dict[str, dict]
    improvement: Dict[str, float]  # rmse improvement over each baseline, %
    pre: object  # the run's Preprocessor, calibrated on the validation split (interval widths)
    forecasts: Dict[str, np.ndarray] = field(default_factory=dict)  # "model" and every baseline, [windows, horizon]
    yardsticks: Dict[str, dict] = field(default_factory=dict)  # status of each classical yardstick
    scale: float = float("nan")  # MASE scale (training split)
    validation: Dict[str, float] = field(default_factory=dict)  # the best model on the validation split
    series: Optional[dict] = None  # many series: count, per_series, distribution, unscored (_score_many)


def _evaluate(ctx: RunContext, prep: Prepared) -> Evaluation:
    """The best checkpoint, loaded in safe mode, against the baselines on the test split.
    Every forecaster runs on each series' own windows, with its own MASE scale (one series
    is a panel of one); the scores are then one series' (``_score_one``) or per series and
    over all series (``_score_many``), whose artifacts differ."""

    app, p = ctx.app, ctx.app.preprocess
    with ctx.stage("evaluate", "evaluate"):
        best_model = network.load_model_safely(ctx.paths["best"])
        batch = max(app.training.batch_size, 256)
        test, val = prep.sources[2], prep.sources[1]
        rows, val_rows = prep.series_of(test.starts), prep.series_of(val.starts)
        pred = prep.pre.inverse_transform(prep.filled, test.starts, train.predict(best_model, test, batch), rows)
        val_pred = prep.pre.inverse_transform(prep.filled, val.starts, train.predict(best_model, val, batch),
                                              val_rows)
        val_actual = transforms.target_matrix(prep.values, val.starts, p.horizon)
        pre = prep.pre.calibrated(val_actual, val_pred, val_rows)
        actual = transforms.target_matrix(prep.values, test.starts, p.horizon)
        season = prep.pre.season  # resolved (auto = from the frequency): seasonal naive whenever known
        length, spans = prep.length, prep.grid_spans
        k = series_of(test.starts, length)
        lo = spans[:, 0]
        scales = np.array([metrics.mase_scale(prep.values[i * length + a: i * length + max(a, int(prep.bounds[1]))],
                                               season) for i, a in enumerate(lo)])
        forecasts = metrics.baseline_forecasts(prep.filled, test.starts, p.lookback, p.horizon, season,
                                                first=k * length + lo[k])
    title = "classical yardsticks (ETS, Theta)" + (", per series" if prep.is_panel else "")
    with ctx.stage("yardsticks", title):
        forecasts, yardsticks = _yardsticks(prep, test.starts, forecasts)
    score = _score_many if prep.is_panel else _score_one
    with ctx.stage("evaluate"):
        return score(prep, pre, test, actual, pred, val_actual, val_pred, scales, forecasts, yardsticks)


def _score_one(prep: Prepared, pre, test, actual: np.ndarray, pred: np.ndarray, val_actual: np.ndarray,
               val_pred: np.ndarray, scales: np.ndarray, forecasts: dict, yardsticks: dict) -> Evaluation:
    """One series: its metrics, and the improvement over each baseline in rmse."""
    scale = float(scales[0])
    scores = metrics.forecast_metrics(actual, pred, scale)
    baselines = {name: metrics.forecast_metrics(actual, fc, scale) for name, fc in forecasts.items()}
    improvement = {name: metrics.improvement_pct(scores["rmse"], b["rmse"]) for name, b in baselines.items()}
    validation = metrics.forecast_metrics(val_actual, val_pred, scale)  # the HPO objective (never test)
    return Evaluation(test, actual, pred, scores, baselines, improvement, pre,
                      {"model": pred, **forecasts}, yardsticks, scale, validation)


def _score_many(prep: Prepared, pre, test, actual: np.ndarray, pred: np.ndarray, val_actual: np.ndarray,
                val_pred: np.ndarray, scales: np.ndarray, forecasts: dict, yardsticks: dict) -> Evaluation:
    """Many series: every forecaster scored per series (its own test windows and MASE
    scale), then over all series (spline_lstm.data.metrics.aggregate). The model's improvement
    over a baseline, and the quality verdict, are on the mean MASE over series: scale-free,
    so a series of large numbers does not outweigh the others."""

    rows = prep.series_of(test.starts)
    ids = prep.series.ids
    table = metrics.per_series_metrics(actual, {"model": pred, **forecasts}, rows, scales, ids)
    blank = {k: float("nan") for k in metrics.METRIC_NAMES}  # a series without a test window
    table = {i: table.get(i) or {name: dict(blank) for name in ("model", *forecasts)} for i in ids}
    scores = metrics.aggregate(actual, pred, table, "model")
    baselines = {name: metrics.aggregate(actual, fc, table, name) for name, fc in forecasts.items()}
    improvement = {name: metrics.improvement_pct(scores["mase"], b["mase"]) for name, b in baselines.items()}
    val_rows = prep.series_of(prep.sources[1].starts)
    val_table = metrics.per_series_metrics(val_actual, {"model": val_pred}, val_rows, scales, ids)
    validation = metrics.aggregate(val_actual, val_pred, val_table, "model")
    series = {"count": len(ids), "metric": "mase", "distribution": metrics.distribution(table),
              "per_series": table}
    d = series["distribution"]
    series["unscored"] = [i for i in ids if not np.isfinite(table[i]["model"]["mase"])]
    if series["unscored"]:
        shown = ", ".join(map(repr, series["unscored"][:5])) + (" ..." if len(series["unscored"]) > 5 else "")
        log.warning("series     %d of %d have no MASE (no observed test target, or too little training history "
                    "for the MASE scale): %s; the mean MASE and the verdict are over the other %d",
                    len(series["unscored"]), len(ids), shown, d["scored"])
    log.info("series     %d: model mean MASE %.4g (median %.4g); beats naive-last on %d of %d series", len(ids),
             scores["mase"], scores["mase_median"], d["beats_naive_last"], d["compared_with_naive_last"])
    return Evaluation(test, actual, pred, scores, baselines, improvement, pre, {"model": pred, **forecasts},
                      yardsticks, float("nan"), validation, series)


# ETS and Theta are fitted per series: beyond this many, not available (ETS costs 1-5 s a
# series on 2 cores: 100 series took 8 min of a 9-min run, docs/performance.md)
YARDSTICK_MAX_SERIES = 50


def _yardsticks(prep: Prepared, starts: np.ndarray, forecasts: dict) -> tuple:
    """ETS and Theta fitted per series (its training split), on exactly the model's
    windows. One series reports each yardstick's own status; with many, a yardstick that
    fails on any series is not available for the run."""

    length, spans = prep.length, prep.grid_spans
    rows = series_of(starts, length)
    n = len(spans)
    if n > YARDSTICK_MAX_SERIES:
        why = f"not fitted: {n} series (ETS and Theta are fitted per series, up to {YARDSTICK_MAX_SERIES})"
        log.info("yardsticks %s", why)
        return forecasts, {name: {"status": "not available", "detail": why, "fit_s": 0.0}
                           for name in yardsticks.NAMES}
    parts: Dict[str, np.ndarray] = {}
    status: Dict[str, dict] = {}
    fitted_series = np.unique(rows)
    for k in fitted_series:
        lo, hi = (int(x) for x in spans[k])
        at = np.flatnonzero(rows == k)
        base = k * length + lo
        filled = prep.filled[base: k * length + hi]
        fitted = yardsticks.forecast_all(filled, max(0, int(prep.bounds[1]) - lo), starts[at] - base,
                                         prep.pre.horizon, prep.pre.season)
        if not prep.is_panel:
            for name, y in fitted.items():
                log.info("yardstick  %s: %s (%.2f s)", name, y.detail, y.fit_s)
            return ({**forecasts, **{name: y.forecasts for name, y in fitted.items() if y.available}},
                    {name: y.summary() for name, y in fitted.items()})
        for name, y in fitted.items():
            s = status.setdefault(name, {"status": "ok", "detail": y.detail, "fit_s": 0.0, "failed": 0})
            s["fit_s"] = round(s["fit_s"] + y.fit_s, 4)
            if not y.available:
                s["failed"] += 1
                s["status"], s["detail"] = "not available", f"failed on series {prep.series.ids[k]!r}: {y.detail}"
                continue
            parts.setdefault(name, np.full((len(starts), prep.pre.horizon), np.nan))[at] = y.forecasts
    for name, s in status.items():
        s["detail"] = s["detail"] if s["failed"] else f"fitted per series ({len(fitted_series)})"
        log.info("yardstick  %s: %s (%.2f s)", name, s["detail"], s["fit_s"])
    ok = {name: fc for name, fc in parts.items() if status[name]["status"] == "ok"}
    return {**forecasts, **ok}, {n_: {k: v for k, v in s.items() if k != "failed"} for n_, s in status.items()}


def _assess(ctx: RunContext, prep: Prepared, ev: "Evaluation") -> tuple:
    """The backtest (``evaluation=backtest``, spline_lstm.pipeline.backtest) and the quality verdict
    (test rmse, or the backtest mean, against the best baseline) -> (backtest or None, skill)."""

    app = ctx.app
    bt = None
    if app.evaluation.mode.value == "backtest":
        e = app.evaluation
        with ctx.stage("backtest", f"backtest ({e.folds} folds, refit={str(e.refit).lower()})"):
            n_val, plan = int(prep.bounds[2] - prep.bounds[1]), prep.backtest_plan
            if e.refit:
                starts, actual, forecasts = backtest.refit_forecasts(app, prep, plan, n_val, prep.pre.season)
            else:
                starts, actual, forecasts = ev.test.starts, ev.actual, ev.forecasts
            bt = backtest.score(actual, forecasts, starts, plan, ev.scale)
            for name, a in bt["aggregate"].items():
                log.info("backtest   %-20s rmse %.4g ± %.2g", name, a["rmse_mean"], a["rmse_std"])
    if bt is not None:
        agg = bt["aggregate"]
        model_score = agg["model"]["rmse_mean"]
        others = {n: a["rmse_mean"] for n, a in agg.items() if n != "model"}
        basis = f"backtest mean over {bt['folds']} folds"
    elif ev.series is not None:  # many series: scale-free, each series counts once
        model_score, others = ev.metrics["mase"], {n: b["mase"] for n, b in ev.baselines.items()}
        scored = ev.series["distribution"]["scored"]
        basis = f"mean MASE over {scored} series, test split" if scored == ev.series["count"] else \
            f"mean MASE over the {scored} scored of {ev.series['count']} series, test split"
    else:
        model_score, others, basis = ev.metrics["rmse"], {n: b["rmse"] for n, b in ev.baselines.items()}, "test split"
    metric = "mase" if ev.series is not None and bt is None else "rmse"
    skill = metrics.skill_verdict(model_score, others, app.gate.min_improvement_pct, app.gate.quality.value, basis,
                                   metric)
    if skill["verdict"]:
        (log.info if skill["verdict"] == metrics.SKILLED else log.warning)(
            "skill      %s: " + skill["metric"] + " %.4g vs best baseline %s %.4g (needs > %g%% better, %s)", skill["verdict"],
            model_score, skill["best_baseline"], float("nan") if skill["best_baseline_score"] is None else skill["best_baseline_score"], skill["min_improvement_pct"],
            app.gate.quality.value)
        ctx.tracker.set_tags({"skill": skill["verdict"]})
    return bt, skill


def _write_preprocessing(ctx, prep: Prepared) -> None:
    """The processed series and its summary, before training (the preprocessor payload
    follows evaluation, which calibrates its intervals). Many series: the arrays are
    [series, grid points] and ``series_ids`` / ``series_spans`` say which row is which."""
    import io

    app, timestamps, series, summary = ctx.app, prep.timestamps, prep.series, prep.summary
    values, filled, scaled = prep.values, prep.filled, prep.scaled
    extra = {}
    if prep.is_panel:
        shape = (len(series.ids), prep.length)
        values, filled, scaled = values.reshape(shape), filled.reshape(shape), scaled.reshape(shape)
        extra = {"series_ids": np.array(series.ids, dtype=str), "series_spans": prep.spans}
    buf = io.BytesIO()
    np.savez(buf, run_id=np.array(ctx.run_id),
             timestamps=timestamps.to_numpy().astype("datetime64[ns]"), raw=values, filled=filled,
             processed=scaled, observed=~np.isnan(values), split_bounds=prep.bounds, **extra)
    ctx.write("processed", buf.getvalue())
    ctx.write_json("meta", {"run_id": ctx.run_id, "source": series.source, "target_col": app.data.target_col,
                            "timestamp_col": app.data.timestamp_col, "start": str(timestamps[0]),
                            "end": str(timestamps[-1]), **summary})


def _write_metadata(ctx, config_plain, bounds, summary, series, determinism, started) -> None:
    app = ctx.app
    root = ctx.layout.root
    record = {kind: {"path": str(Path(os.path.relpath(ctx.paths[kind], root))), **h}
              for kind, h in ctx.hashes.items() if not kind.startswith("plot:")}
    plots = {k.split(":", 1)[1]: h for k, h in ctx.hashes.items() if k.startswith("plot:")}
    doc = MetadataDoc(
        run_id=ctx.run_id, sweep_id=ctx.sweep_id, preset=app.preset,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime()),
        duration_s=round(time.time() - started, 3),
        config=config_plain, overrides=ctx.overrides, command=[Path(sys.argv[0]).name, *sys.argv[1:]],
        seed=app.seed, determinism=determinism,
        splits={"bounds": [int(b) for b in bounds], "windows": summary["windows"]},
        choices=summary.get("choices"),
        versions=versions(), git_commit=git_commit(Path.cwd()),
        data={"source": series.source, "sha256": series.file_sha256, "rows": summary["rows"]},
        artifacts=record, plots=plots,
        mlflow=ctx.tracker.info(),
        hydra_run_dir=str(ctx.run_dir) if ctx.run_dir else None,
        log_path=str(ctx.log_path) if ctx.log_path else None,
        timings_s=dict(ctx.timings),
        host={"platform": platform.platform(), "cpus": os.cpu_count()},
        threads=ctx.threads,
    )
    ctx.write_json("metadata", mask_obj(doc.to_dict()))


def mlflow_artifact_files(ctx: RunContext, plot_dir: Path) -> List[tuple]:
    """(local path, MLflow folder): one folder per kind, so equal file names never collide;
    the report keeps its plot folder beside it, as its links expect. The run log and the
    health record follow after the gate (``Tracker.finish``)."""
    p = ctx.paths
    files = [(p["metrics"], "metrics"), (p["metadata"], "metadata"), (p["report"], "report"),
             (plot_dir, "report/" + plot_dir.name), (p["meta"], "data"), (p["preprocessor"], "preprocessor"),
             (p["best"], "checkpoints")]
    if ctx.run_dir:
        files.append((ctx.run_dir / ".hydra", "hydra"))
    return files


def _log_mlflow_artifacts(ctx: RunContext, plot_dir: Path) -> None:
    if ctx.tracker.enabled:
        ctx.tracker.log_artifacts(mlflow_artifact_files(ctx, plot_dir))

