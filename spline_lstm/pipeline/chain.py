"""The fitted chain a run and every refitted backtest fold share: preprocessing fitted on
one set of split bounds, a new network for it, and the reference forecasts it is judged against."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from spline_lstm.core.config import AppConfig
from spline_lstm.evaluation import metrics, yardsticks
from spline_lstm.models import network, train
from spline_lstm.preprocessing import transforms
from spline_lstm.preprocessing.preprocessor import Preprocessor

log = logging.getLogger("spline_lstm")


@dataclass
class Chain:
    """The preprocessing chain fitted on one set of split bounds (``fit_chain``)."""

    pre: object  # preprocessor.Preprocessor
    filled: np.ndarray  # gap-filled, original units
    scaled: np.ndarray  # model input series
    covariates: Optional[np.ndarray]  # the model's covariate channels, or None
    sources: list  # WindowSource per split


def fit_chain(app: AppConfig, values: np.ndarray, timestamps, raw_cov: dict, bounds: np.ndarray, freq: str,
              where: str, choices: Optional[dict] = None, spans: Optional[np.ndarray] = None,
              ids: Optional[tuple] = None, statics: Optional[dict] = None) -> Chain:
    """Gap filling, scalers and covariates fitted on the training split of ``bounds``, and the
    windows of each split: the one chain a run fits (one series [T], or many [n, T] with their
    ``spans``, ``ids`` and ``statics``), and a refitted backtest fold again. The windows of
    many series are flat starts into the arrays flattened row by row."""

    p = app.preprocess
    pre, filled, scaled = Preprocessor.fit(values, bounds, p, run_id=app.run_id, data=app.data, freq=freq,
                                           last_timestamp=str(timestamps[-1]), where=where, choices=choices,
                                           spans=spans, ids=ids)
    cov = None
    if pre.channels > 1 or statics:
        pre, cov = pre.fit_covariates(raw_cov, timestamps, bounds, p, where, spans, statics)
    sources = [transforms.WindowSource(
        scaled.ravel(), transforms.window_starts(bounds, k, p.lookback, p.horizon, p.difference, spans,
                                                 len(timestamps)),
        p.lookback, p.horizon, cov, pre.known) for k in range(3)]
    return Chain(pre, filled, scaled, cov, sources)


def reference_forecasts(filled: np.ndarray, train_end: int, starts: np.ndarray, lookback: int, horizon: int,
                        season: Optional[int]) -> tuple:
    """(forecasts by name, yardstick status by name): every naive baseline and every classical
    yardstick (ETS, Theta: fitted on ``filled[:train_end]``) at the windows ``starts``.
    A yardstick that fails is "not available" (a warning, no failure) and has no forecasts."""

    forecasts = metrics.baseline_forecasts(filled, starts, lookback, horizon, season)
    fitted = yardsticks.forecast_all(filled, int(train_end), starts, horizon, season)
    for name, y in fitted.items():
        log.info("yardstick  %s: %s (%.2f s)", name, y.detail, y.fit_s)
    return ({**forecasts, **{n: y.forecasts for n, y in fitted.items() if y.available}},
            {n: y.summary() for n, y in fitted.items()})


def build_network(app: AppConfig, pre):
    """A new network for ``pre``'s inputs (built under the distribution strategy's scope,
    where it must also be trained)."""

    p = app.preprocess
    with train.distribution_scope(app.training):
        return network.build_model(app.model, p.lookback, p.horizon, app.training.learning_rate,
                                     app.training.ensemble, pre.difference, pre.channels, pre.known)
