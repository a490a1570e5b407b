"""Rolling-origin backtesting (``evaluation=backtest``), as Darts' ``historical_forecasts``
and NeuralForecast's ``cross_validation`` do it, on the windows the model already uses.

Folds. The last ``folds * step`` forecast origins of the series are cut into ``folds``
consecutive blocks of ``step`` origins (``step`` null: the test split's windows divided
by ``folds``); every origin forecasts ``horizon`` steps, and no target lies past the
run's last row. Fold k's origins are all later than fold k-1's.

- ``refit=false``: one model, the run's own, scored at every origin. The folds then lie
  inside the test split (a fold reaching back into training or validation data is
  refused), so this costs nothing beyond the holdout evaluation: its forecasts, the
  naive baselines' and the yardsticks' (fitted once on the training split) are cut
  into folds.
- ``refit=true``: before each fold, the whole chain is refitted on the data before the
  fold's first origin: gap filling, scaler, a new network (same seed) and the
  yardsticks. Its training split ends ``n_val`` points before the origin, and the
  ``n_val`` points up to the origin are its validation window, ``n_val`` being the
  run's own validation length.

Model selection. Early stopping and the best checkpoint are chosen on a validation
window that lies entirely before the fold being scored, never on a fold: with
``refit=false`` the run's validation split (before the test split, so before every
fold); with ``refit=true`` each fold's own validation window, just before its origin.
Neither hinges on the folds' targets. The validation window's length is the run's
(``preprocess.split_*``; train.py may enlarge what training validates on), so every
fold's model is selected on as many points as the run's model.

Metrics. For every forecaster (``model``, each naive baseline, each yardstick) and fold:
mae, rmse, mase over the fold's observed targets, and rmse / mae per horizon step; then
mean and standard deviation over folds, and per step the mean over folds. The MASE
scale is the run's (training split), the same for every fold.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from spline_lstm.core.errors import InputInvalid
from spline_lstm.core.progress import Progress
from spline_lstm.evaluation.metrics import forecast_metrics
from spline_lstm.models import network, train
from spline_lstm.pipeline.chain import build_network, fit_chain, reference_forecasts
from spline_lstm.preprocessing import transforms

log = logging.getLogger("spline_lstm")
SUMMARY_METRICS = ("rmse", "mae", "mase")


@dataclass(frozen=True)
class Plan:
    """Window start indices (first target of each window) of every fold."""

    folds: List[np.ndarray]
    step: int
    refit: bool


def plan(test_starts: np.ndarray, end: int, horizon: int, folds: int, step: Optional[int], refit: bool,
         n_val: int, min_train: int) -> Plan:
    """The folds' origins (see module doc). ``test_starts`` are the holdout test windows;
    ``end`` the run's last row + 1; ``min_train`` the fewest training rows a refitted
    fold needs."""
    last = int(end) - int(horizon)  # the last origin whose targets stay inside the series
    if step is None:
        step = len(test_starts) // folds
        if step < 1:
            raise InputInvalid(f"evaluation.folds={folds}: the test split has only {len(test_starts)} "
                               f"windows; lower evaluation.folds or set evaluation.step")
    first = last + 1 - folds * step
    out = [np.arange(first + k * step, first + (k + 1) * step, dtype=np.int64) for k in range(folds)]
    if not refit and (len(test_starts) == 0 or first < int(test_starts[0])):
        raise InputInvalid(f"evaluation.folds={folds} x evaluation.step={step} = {folds * step} origins reach "
                           f"before the test split ({len(test_starts)} windows); with evaluation.refit=false "
                           "the folds must lie in the test split: lower folds or step, or set refit=true")
    if refit and first - n_val < min_train:
        raise InputInvalid(f"evaluation.folds={folds} x evaluation.step={step}: the first fold would train on "
                           f"{max(first - n_val, 0)} rows (needs >= {min_train}); lower folds or step")
    return Plan(out, int(step), bool(refit))


def score(actual: np.ndarray, forecasts: Dict[str, np.ndarray], starts: np.ndarray, plan_: Plan,
          scale: float) -> dict:
    """Per-fold, per-step and aggregate metrics of forecasts [windows, horizon] whose rows
    belong to ``starts``; the rows of fold k are those whose start is in fold k."""

    per_fold: Dict[str, List[dict]] = {name: [] for name in forecasts}
    per_step: Dict[str, List[dict]] = {name: [] for name in forecasts}
    origins = []
    for fold in plan_.folds:
        rows = np.flatnonzero(np.isin(starts, fold))
        origins.append({"first_start": int(fold[0]), "last_start": int(fold[-1]), "windows": int(rows.size)})
        a = actual[rows]
        for name, fc in forecasts.items():
            f = fc[rows]
            m = forecast_metrics(a, f, scale)
            per_fold[name].append({k: m[k] for k in SUMMARY_METRICS})
            steps = [forecast_metrics(a[:, j], f[:, j], scale) for j in range(a.shape[1])]
            per_step[name].append({"rmse": [s["rmse"] for s in steps], "mae": [s["mae"] for s in steps]})
    return {"folds": len(plan_.folds), "step": plan_.step, "refit": plan_.refit, "origins": origins,
            "per_fold": per_fold, "per_step": per_step, "aggregate": aggregate(per_fold, per_step)}


def aggregate(per_fold: Dict[str, List[dict]], per_step: Dict[str, List[dict]]) -> Dict[str, dict]:
    """Mean and standard deviation over folds (NaN folds ignored); per step, the mean."""
    out = {}
    for name, rows in per_fold.items():
        agg = {}
        for k in SUMMARY_METRICS:
            v = np.array([r[k] for r in rows], dtype=np.float64)
            v = v[np.isfinite(v)]
            agg[f"{k}_mean"] = float(v.mean()) if v.size else float("nan")
            agg[f"{k}_std"] = float(v.std()) if v.size else float("nan")
        steps = np.array([s["rmse"] for s in per_step[name]], dtype=np.float64)
        agg["rmse_by_step"] = [float(x) for x in np.nanmean(steps, axis=0)] if steps.size else []
        out[name] = agg
    return out


def mlflow_metrics(summary: dict) -> List[tuple]:
    """(metrics, step) batches: means and spreads at step 0, then one value per fold
    (``fold_rmse``, step = fold) and per horizon step (``step_rmse``, step = 1..horizon)."""
    flat = {}
    for name, agg in summary["aggregate"].items():
        flat.update({f"backtest/{name}/{k}": v for k, v in agg.items() if not isinstance(v, list)})
    batches = [(flat, 0)]
    for k in range(summary["folds"]):
        batches.append(({f"backtest/{name}/fold_rmse": rows[k]["rmse"]
                         for name, rows in summary["per_fold"].items()}, k))
    horizon = len(next(iter(summary["aggregate"].values()))["rmse_by_step"]) if summary["aggregate"] else 0
    for j in range(horizon):
        batches.append(({f"backtest/{name}/step_rmse": agg["rmse_by_step"][j]
                         for name, agg in summary["aggregate"].items()}, j + 1))
    return batches


# --- refit: the whole chain again before each fold ------------------------------------------------

def refit_forecasts(app, prep, plan_: Plan, n_val: int, season: Optional[int]) -> tuple:
    """(starts, actual, forecasts by name) over every fold, each fold's model, baselines and
    yardsticks fitted on the data before its first origin only (see module doc): the run's
    own chain (``chain.fit_chain``, ``build_network``, ``reference_forecasts``) on the
    fold's bounds."""

    progress = Progress("backtest fold", len(plan_.folds), enabled=app.training.verbose > 0)  # a terminal only
    try:
        return _refit_folds(app, prep, plan_, n_val, season, progress)
    finally:
        progress.close()


def _refit_folds(app, prep, plan_: Plan, n_val: int, season: Optional[int], progress: Progress) -> tuple:
    p = app.preprocess
    all_starts, all_actual, out = [], [], {}
    for k, fold in enumerate(plan_.folds):
        origin, fold_end = int(fold[0]), int(fold[-1]) + p.horizon
        bounds = np.array([0, origin - n_val, origin, fold_end], dtype=np.int64)
        raw = {c: v[:fold_end] for c, v in prep.raw_covariates.items()}
        chain = fit_chain(app, prep.values[:fold_end], prep.timestamps[:fold_end], raw, bounds,
                          prep.series.freq, f"backtest fold {k + 1}")
        sources = chain.sources
        if not len(sources[0]) or not len(sources[1]):
            raise InputInvalid(f"backtest fold {k + 1}: no training or validation window before origin {origin}; "
                               "lower evaluation.folds or evaluation.step")
        test = replace(sources[2], starts=sources[2].starts[np.isin(sources[2].starts, fold)])
        log.info("backtest fold %d/%d: train [0, %d), validation [%d, %d), %d origins from %s", k + 1,
                 len(plan_.folds), bounds[1], bounds[1], origin, len(test), prep.timestamps[origin])
        staging = Path(tempfile.mkdtemp(prefix="spline-lstm-backtest-"))
        try:
            train.seed_everything(app.seed, app.deterministic)
            net = build_network(app, chain.pre)
            with train.distribution_scope(app.training):
                train.fit(net, sources[0], sources[1], app.training, app.seed, staging, verbose=0)
            best = network.load_model_safely(staging / "best.keras")
            pred = chain.pre.inverse_transform(chain.filled, test.starts,
                                               train.predict(best, test, max(app.training.batch_size, 256)))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        fcs, _ = reference_forecasts(chain.filled, int(bounds[1]), test.starts, p.lookback, p.horizon, season)
        for name, fc in {"model": pred, **fcs}.items():
            out.setdefault(name, []).append(fc)
        all_starts.append(test.starts)
        all_actual.append(transforms.target_matrix(prep.values, test.starts, p.horizon))
        progress.update(k + 1)
    # a yardstick that failed on some fold is left out of every fold (same windows for all)
    names = [n for n, parts in out.items() if len(parts) == len(plan_.folds)]
    return (np.concatenate(all_starts), np.concatenate(all_actual),
            {n: np.concatenate(out[n]) for n in names})
