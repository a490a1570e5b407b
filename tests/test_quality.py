"""Forecast quality: the classical yardsticks (fitted once, scored on the model's exact
windows), the rolling-origin backtest's folds and aggregates, the skill verdict, the
metrics document, and the quality gate end to end (warn records, strict exits 12,
standalone health agrees)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from spline_lstm.pipeline import backtest
from spline_lstm.evaluation import metrics
from spline_lstm.evaluation import yardsticks
from spline_lstm.core.documents import MetricsDoc
from spline_lstm.core.errors import EXIT_CODES, InputInvalid
from tests.conftest import SMOKE_FAST, Run, cli, last_line, launch


def seasonal_series(n=360, m=12, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 20 + 0.05 * t + 4 * np.sin(2 * np.pi * t / m) + rng.normal(0, noise, n)


# --- yardsticks -------------------------------------------------------------------------------

@pytest.mark.unit
def test_yardsticks_score_on_the_models_windows_and_match_statsmodels():
    """Forecast rows are the given windows; the forward recursion at the training end
    equals statsmodels' own forecast (ETS for steps < season, Theta for all)."""
    from statsmodels.tsa.forecasting.theta import ThetaModel
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y, train_end, horizon = seasonal_series(), 240, 6
    starts = np.arange(train_end, len(y) - horizon + 1)
    out = yardsticks.forecast_all(y, train_end, starts, horizon, 12)
    for name in yardsticks.NAMES:
        assert out[name].available, out[name].detail
        assert out[name].forecasts.shape == (len(starts), horizon)
    ets = ExponentialSmoothing(y[:train_end], trend="add", damped_trend=True, seasonal="add", seasonal_periods=12,
                               initialization_method="estimated").fit()
    mine = yardsticks.ets_forward(y, 0, np.array([train_end, 100]), horizon, ets.params, "add", 12)
    np.testing.assert_allclose(mine[0], ets.forecast(horizon), rtol=1e-9)
    np.testing.assert_allclose(mine[1, 0], ets.fittedvalues[100], rtol=1e-9)  # the same recursion in-sample
    th = ThetaModel(y[:train_end], period=12, method="multiplicative").fit()
    mine = yardsticks.theta_forward(y, 0, np.array([train_end]), horizon, float(th.params["b0"]),
                                    float(th.params["alpha"]), np.asarray(th._seasonal), True)
    np.testing.assert_allclose(mine[0], np.asarray(th.forecast(horizon)), rtol=1e-9)


@pytest.mark.unit
def test_ets_beats_naive_on_a_clean_seasonal_series():
    y, train_end, horizon = seasonal_series(noise=0.1), 240, 3
    starts = np.arange(train_end, len(y) - horizon + 1)
    actual = y[starts[:, None] + np.arange(horizon)]
    naive = metrics.baseline_forecasts(y, starts, 12, horizon, 12)["naive_last"]
    ets = yardsticks.forecast_all(y, train_end, starts, horizon, 12)["ets"].forecasts
    scale = metrics.mase_scale(y[:train_end], 12)
    assert metrics.forecast_metrics(actual, ets, scale)["rmse"] < 0.5 * metrics.forecast_metrics(
        actual, naive, scale)["rmse"]


@pytest.mark.unit
def test_a_failed_yardstick_is_not_available_with_a_warning(caplog):
    y = seasonal_series()
    y[5] = np.nan  # a fit on a series with a hole fails: no forecasts, no exception
    with caplog.at_level(logging.WARNING, logger="spline_lstm"):
        out = yardsticks.forecast_all(y, 240, np.arange(240, 300), 2, 12)
    assert not out["ets"].available and out["ets"].summary()["status"] == "not available"
    assert any("yardstick ets not available" in r.message for r in caplog.records)


# --- backtest ---------------------------------------------------------------------------------

@pytest.mark.unit
def test_backtest_folds_metrics_shapes_and_aggregates():
    rng = np.random.default_rng(1)
    starts = np.arange(100, 160)  # 60 test windows, rows in start order
    horizon = 4
    actual = rng.normal(size=(60, horizon))
    forecasts = {"model": actual + 0.1, "naive_last": actual + rng.normal(0, 1, size=(60, horizon))}
    plan = backtest.plan(starts, 160 + horizon - 1, horizon, folds=3, step=None, refit=False, n_val=20,
                         min_train=10)
    assert [len(f) for f in plan.folds] == [20, 20, 20] and plan.folds[0][0] == 100 and plan.folds[-1][-1] == 159
    bt = backtest.score(actual, forecasts, starts, plan, scale=1.0)
    assert bt["folds"] == 3 and [o["windows"] for o in bt["origins"]] == [20, 20, 20]
    for name in forecasts:
        assert len(bt["per_fold"][name]) == 3
        assert all(len(s["rmse"]) == horizon for s in bt["per_step"][name])
        agg = bt["aggregate"][name]
        folds = np.array([r["rmse"] for r in bt["per_fold"][name]])
        assert agg["rmse_mean"] == pytest.approx(folds.mean()) and agg["rmse_std"] == pytest.approx(folds.std())
        assert len(agg["rmse_by_step"]) == horizon
    assert bt["aggregate"]["model"]["rmse_mean"] == pytest.approx(0.1)
    batches = backtest.mlflow_metrics(bt)
    assert len(batches) == 1 + 3 + horizon and "backtest/model/rmse_mean" in batches[0][0]
    json.dumps(bt)  # plain data for the metrics JSON


@pytest.mark.unit
def test_backtest_without_refit_stays_in_the_test_split():
    starts = np.arange(100, 130)
    with pytest.raises(InputInvalid, match="reach before the test split"):
        backtest.plan(starts, 130, 1, folds=4, step=10, refit=False, n_val=20, min_train=10)
    plan = backtest.plan(starts, 130, 1, folds=4, step=10, refit=True, n_val=20, min_train=10)
    assert plan.folds[0][0] == 90  # refit may reach back: each fold trains on what precedes it


# --- verdict and document ---------------------------------------------------------------------

@pytest.mark.unit
def test_skill_verdict():
    base = {"naive_last": 2.0, "ets": 1.0, "theta": float("nan")}
    v = metrics.skill_verdict(0.9, base, 5.0, "warn", "test split")
    assert (v["verdict"], v["best_baseline"], v["improvement_pct"]) == ("SKILLED", "ets", pytest.approx(10.0))
    assert metrics.skill_verdict(0.97, base, 5.0, "strict", "test split")["verdict"] == "UNSKILLED"
    assert metrics.skill_verdict(1.0, base, 0.0, "strict", "test split")["verdict"] == "UNSKILLED"  # a tie
    assert metrics.skill_verdict(0.5, base, 0.0, "off", "test split")["verdict"] is None


@pytest.mark.unit
def test_metrics_doc_reads_old_runs_and_round_trips():
    old = {"run_id": "r", "metrics": {"rmse": 1.5}, "checkpoints": {"best": "b", "last": "l"},
           "baselines": {"naive_last": {"rmse": 2.0}}, "history": {"val_loss": [4.0, 1.0]}, "best_epoch": 2,
           "something_new": 1}
    doc = MetricsDoc.from_dict(old)
    assert doc.rmse == 1.5 and doc.skill is None and doc.backtest is None and doc.val_rmse_scaled() == 1.0
    assert doc.to_dict()["something_new"] == 1 and MetricsDoc.from_dict(doc.to_dict()) == doc
    assert MetricsDoc.problems(old) == []
    assert MetricsDoc.problems({"run_id": "r", "metrics": {"rmse": float("nan")}}) == [
        "metrics has no 'checkpoints'", "metrics.rmse is not a finite number (nan)"]


@pytest.mark.unit
def test_exit_code_12_is_model_unskilled():
    assert EXIT_CODES["MODEL_UNSKILLED"] == 12


# --- the quality gate end to end --------------------------------------------------------------

@pytest.mark.slow
def test_quality_gate_warn_records_and_strict_fails_with_12(tmp_path):
    """A 1-epoch model on a strongly seasonal series loses to ETS: warn passes with the verdict
    recorded; strict exits 12, its MLflow run ends FAILED with skill=UNSKILLED, and the
    standalone gate agrees (12, runs list FAIL)."""
    outputs = tmp_path / "outputs"
    warn = launch(*SMOKE_FAST, "run_id=q-warn", "tracking=none", outputs=outputs)
    assert warn.returncode == 0, warn.stdout[-3000:] + warn.stderr[-3000:]
    doc = Run(outputs, "q-warn").json("metrics")
    assert doc["skill"]["verdict"] == "UNSKILLED" and doc["skill"]["mode"] == "warn"
    assert {"ets", "theta"} <= set(doc["baselines"]) and doc["yardsticks"]["ets"]["status"] == "ok"
    assert "skill      UNSKILLED (warn)" in warn.stdout
    assert cli("health", "q-warn", "--outputs-dir", str(outputs)).returncode == 0

    strict = launch(*SMOKE_FAST, "run_id=q-strict", "gate.quality=strict", "gate.min_improvement_pct=50",
                    outputs=outputs)
    assert strict.returncode == 12, strict.stdout[-3000:] + strict.stderr[-3000:]
    assert last_line(strict.stderr).startswith("ERROR [MODEL_UNSKILLED] ")
    run = Run(outputs, "q-strict")
    assert run.json("metrics")["skill"]["verdict"] == "UNSKILLED"
    from tests.helpers.tamper import mlflow_runs

    (mlrun,) = mlflow_runs(outputs, "q-strict")
    assert mlrun.info.status == "FAILED" and mlrun.data.tags["skill"] == "UNSKILLED"
    assert "test_baseline/ets/rmse" in mlrun.data.metrics
    health = cli("health", "q-strict", "--outputs-dir", str(outputs), "--no-tracking", "--json")
    assert health.returncode == 12, health.stdout + health.stderr
    checks = {c["name"]: c["status"] for c in json.loads(health.stdout)["checks"]}
    assert checks["complete"] == "PASS" and checks["quality"] == "FAIL"  # sealed as evidence, never passes
    rows = {r["run_id"]: r for r in json.loads(cli("runs", "list", "--outputs-dir", str(outputs), "--json").stdout)}
    assert rows["q-strict"]["status"] == "FAIL" and rows["q-warn"]["status"] == "PASS"


def test_backtest_folds_that_do_not_fit_are_refused_before_anything_is_written(tmp_path):
    proc = launch(*SMOKE_FAST, "tracking=none", "evaluation=backtest", "evaluation.folds=200", outputs=tmp_path)
    assert proc.returncode == EXIT_CODES["INPUT_INVALID"], proc.stderr[-2000:]
    assert "evaluation.folds=200" in last_line(proc.stderr)
    artifacts = tmp_path / "artifacts"
    assert not artifacts.exists() or not [p for p in artifacts.rglob("*") if p.is_file()]


@pytest.mark.unit
def test_no_seasonal_naive_from_before_the_series():
    series = np.arange(100, dtype=float)
    out = metrics.baseline_forecasts(series, np.arange(30, 90), 24, 1, season=50)
    assert "seasonal_naive" not in out  # a window at 30 has no value 50 steps back
    assert "seasonal_naive" in metrics.baseline_forecasts(series, np.arange(60, 90), 24, 1, season=50)
