"""A model that starts from the baseline (issue 13, item 2), model selection on more
than a couple of dozen windows (item 4) and the hyperparameter search (item 7).

Real Keras models on tiny inputs; the search is a real Optuna sweep of real
launch.py runs (2 trials, 1 epoch)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from spline_lstm.core.config import HeadInit, ModelConfig, Revin
from spline_lstm.preprocessing.transforms import WindowSource
from tests.conftest import cli, launch, last_line

TINY_SEARCH = ["-m", "+hpo=lstm", "+preset=smoke", "data.n_points=240", "training.epochs=1",
               "hydra.sweeper.n_trials=2"]


def _window(n: int = 5, lookback: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, lookback, 1)).astype("float32")


def _roundtrip(model, tmp_path: Path):
    from spline_lstm.models.network import load_model_safely

    path = tmp_path / "m.keras"
    model.save(str(path))
    return load_model_safely(path)


def test_with_the_options_off_the_model_is_the_plain_sequential_one():
    from spline_lstm.models.network import build_model

    model = build_model(ModelConfig(head_init=HeadInit.default, revin=Revin.none), 12, 2, 1e-3)
    assert type(model).__name__ == "Sequential"
    assert [layer.name for layer in model.layers] == ["lstm_0", "forecast"]


def test_an_untrained_zero_head_with_revin_last_is_naive_and_survives_a_safe_mode_reload(tmp_path):
    from spline_lstm.models.network import build_model

    model = build_model(ModelConfig(head_init=HeadInit.zeros, revin=Revin.last), 12, 3, 1e-3)
    x = _window()
    pred = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(pred, np.repeat(x[:, -1, :], 3, axis=1), atol=1e-6)  # every step = last value
    again = _roundtrip(model, tmp_path)
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)), pred, atol=1e-6)


def test_an_untrained_zero_head_predicts_zero_in_the_modelled_space():
    from spline_lstm.models.network import build_model

    model = build_model(ModelConfig(head_init=HeadInit.zeros, revin=Revin.none), 12, 2, 1e-3)
    assert np.all(np.asarray(model.predict(_window(), verbose=0)) == 0)


def test_an_ensemble_is_one_archive_averaging_its_members(tmp_path):
    from spline_lstm.models.network import build_model, members_view

    model = build_model(ModelConfig(units=4, revin=Revin.mean, head_init=HeadInit.default), 12, 2, 1e-3, ensemble=3)
    x = _window()
    members = np.asarray(members_view(model).predict(x, verbose=0)).reshape(len(x), 3, 2)
    assert not np.allclose(members[:, 0], members[:, 1])  # independent weights
    pred = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(pred, members.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(_roundtrip(model, tmp_path).predict(x, verbose=0)), pred, atol=1e-6)


def _source(starts, horizon: int = 1) -> WindowSource:
    return WindowSource(np.zeros(200, np.float32), np.asarray(starts, np.int64), 12, horizon)


@pytest.mark.unit
def test_selection_tops_up_a_small_validation_split_with_held_out_training_windows():
    from spline_lstm.models.train import selection_split

    train, val = _source(range(12, 100)), _source(range(100, 120))
    fit, select = selection_split(train, val, 48)
    assert len(select) == 48 and select.starts[-20:].tolist() == list(range(100, 120))
    assert fit.starts.tolist() == list(range(12, 72)) and select.starts[0] == 72  # no window in both
    assert selection_split(train, val, 0) == (train, val)  # enough windows (or off): unchanged
    fit, select = selection_split(train, val, 500)  # training keeps two thirds of its windows
    assert len(fit) == len(train) - len(train) // 3


@pytest.mark.unit
def test_selection_drops_the_training_windows_whose_targets_reach_the_held_out_ones():
    from spline_lstm.models.train import selection_split

    horizon = 4
    fit, select = selection_split(_source(range(12, 100), horizon), _source(range(100, 117), horizon), 30)
    held = select.starts[: len(select) - 17]
    assert fit.starts[-1] + horizon - 1 < held[0]  # no training target is a selection target


@pytest.mark.unit
def test_the_task_result_is_a_float_that_leaves_its_tracker_with_the_gate():
    from hydra.core.utils import JobReturn, JobStatus

    from spline_lstm.app.hydra_app import Objective, _take_tracker
    from spline_lstm.tracking.tracker import NullTracker

    tracker = NullTracker()
    ret = JobReturn(_return_value=Objective(2.5, "run-x", tracker), status=JobStatus.COMPLETED)
    assert _take_tracker(ret) is tracker
    assert "tracker" not in vars(ret.return_value)
    value = pickle.loads(pickle.dumps(ret.return_value))  # what joblib sends back
    assert float(value) == 2.5 and value.run_id == "run-x" and value.tracker is None


@pytest.mark.unit
def test_a_search_space_is_probed_at_its_choices_and_interval_ends():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from spline_lstm.app.containment import search_probes

    parsed = OverridesParser.create().parse_overrides(
        ["model.units=choice(8,16)", "model.dropout=interval(0.0,0.3)", "seed=3"])
    assert search_probes(parsed) == [["seed=3"], ["seed=3", "model.units=8"], ["seed=3", "model.units=16"],
                                     ["seed=3", "model.dropout=0.0"], ["seed=3", "model.dropout=0.3"]]


def test_a_search_value_out_of_range_is_refused_before_any_trial(tmp_path):
    proc = launch(*TINY_SEARCH, "model.dropout=interval(0.0,1.5)", outputs=tmp_path / "outputs")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith("ERROR [CONFIG_INVALID] model.dropout")
    assert not (tmp_path / "outputs" / "artifacts").exists()


def _sweep_summary(outputs: Path) -> dict:
    (sweep_dir,) = (outputs / "sweeps").iterdir()
    return json.loads((sweep_dir / "summary.json").read_text())


@pytest.mark.slow
def test_a_search_ends_with_its_best_trial_a_gated_run_selected_on_validation(tmp_path):
    outputs = tmp_path / "outputs"
    proc = launch(*TINY_SEARCH, "model.revin=last", "model.head_init=zeros", "training.ensemble=2",
                  outputs=outputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = _sweep_summary(outputs)
    best = summary["best"]
    assert len(summary["rows"]) == 2 and best == summary["rows"][0] and best["gate"] == "PASS"
    assert f"best       {best['run_id']} val_rmse" in proc.stdout
    # Optuna's best value is the best trial's validation rmse (never test)
    metrics = json.loads((outputs / "artifacts" / "metrics" / f"{best['run_id']}.json").read_text())
    assert f"Best value: {metrics['validation']['rmse']}" in proc.stdout
    assert best["val_rmse"] == metrics["validation"]["rmse"] == min(r["val_rmse"] for r in summary["rows"])
    health = cli("health", best["run_id"], "--artifacts-dir", str(outputs / "artifacts"))
    assert health.returncode == 0, health.stdout + health.stderr


@pytest.mark.slow
def test_failed_trials_do_not_stop_the_search_and_name_the_exit_code(tmp_path):
    """Every trial's lookback is longer than the series: both run (and fail), then the
    sweep exits with their code, not a crash of the sweeper."""
    proc = launch(*TINY_SEARCH, "preprocess.lookback=choice(500)", "tracking=none", outputs=tmp_path / "outputs")
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert last_line(proc.stderr).startswith("ERROR [INPUT_INVALID]")
    summary = _sweep_summary(tmp_path / "outputs")
    assert [r["gate"] for r in summary["rows"]] == ["FAIL", "FAIL"] and summary["best"] is None
    assert "best       none: no job passed the gate" in proc.stdout


@pytest.mark.unit
def test_revin_auto_is_last_unless_the_forecast_integrates_its_own_differences():
    from spline_lstm.models.network import resolve_revin

    assert resolve_revin(Revin.auto, 0, 24) == Revin.last  # levels
    assert resolve_revin(Revin.auto, 12, 1) == Revin.last  # each step adds to a known level
    assert resolve_revin(Revin.auto, 1, 24) == Revin.none  # steps add to earlier forecast steps
    assert resolve_revin(Revin.auto, 1, 1) == Revin.none  # first differences: last would be momentum
    assert resolve_revin(Revin.mean, 1, 24) == Revin.mean  # an explicit choice stands


def test_the_untrained_network_is_a_selection_candidate_that_training_must_beat(tmp_path):
    """Epoch 0: with a zero head the untrained network is the baseline forecast; when no
    epoch beats it on validation (here: a learning rate of 0, so no epoch changes it),
    the kept checkpoint is that network and the run reports best_epoch 0."""
    from spline_lstm.core.config import TrainingConfig
    from spline_lstm.models.network import build_model, load_model_safely
    from spline_lstm.pipeline.run import best_epoch_of
    from spline_lstm.models.train import fit

    rng = np.random.default_rng(1)
    series = np.cumsum(rng.normal(size=300)).astype(np.float32)
    train_src = WindowSource(series, np.arange(12, 200), 12, 1)
    val_src = WindowSource(series, np.arange(200, 280), 12, 1)
    model = build_model(ModelConfig(units=4, head_init=HeadInit.zeros, revin=Revin.last), 12, 1, 0.0)
    history = fit(model, train_src, val_src, TrainingConfig(epochs=2, batch_size=32, learning_rate=0.0, patience=0),
                  seed=0, staging=tmp_path, verbose=0)
    assert best_epoch_of(history) == 0
    x = np.stack([series[s - 12:s] for s in val_src.starts[:5]])[..., None]
    kept = np.asarray(load_model_safely(tmp_path / "best.keras").predict(x, verbose=0))
    np.testing.assert_allclose(kept, x[:, -1, :], atol=1e-5)  # naive-last: the baseline it starts from
    # a network that learns something is kept from its best epoch on
    assert best_epoch_of({"val_loss": [0.5, 0.4], "initial_val_loss": [1.0]}) == 2
    assert best_epoch_of({"val_loss": [0.5, 0.4]}) == 2  # runs before the rule
