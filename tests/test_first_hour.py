"""The first hour of a new user (issue 23): what the console says and what MLflow shows.

Cheap cases only (no training, or runs that fail before it); the real UI is
tests/test_browser.py, the sweep's MLflow record tests/test_sweeps.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from spline_lstm.core.config import register_configs, validate
from spline_lstm.core.errors import classify, error_line
from spline_lstm.pipeline.run import epoch_metrics, mlflow_metrics
from tests.conftest import REPO, launch


class _Evaluation:
    metrics = {"rmse": 1.0, "mae": 0.5}
    baselines = {"naive_last": {"rmse": 2.0}, "ets": {"rmse": 1.5}}
    improvement = {"naive_last": 50.0, "ets": 33.3}


@pytest.mark.unit
def test_the_models_own_metrics_sort_before_its_yardsticks():
    names = sorted(mlflow_metrics(_Evaluation()))
    assert names[:2] == ["test/mae", "test/rmse"]
    assert all(n.startswith(("test_baseline/", "test_improvement_pct/")) for n in names[2:])


@pytest.mark.unit
def test_train_and_validation_loss_share_one_group_and_keep_their_old_keys():
    assert epoch_metrics({"loss": 1.0, "val_loss": 2.0}) == {
        "train/loss": 1.0, "loss/train": 1.0, "val/loss": 2.0, "loss/val": 2.0}


def test_a_failed_run_prints_its_error_line_once(tmp_path: Path):
    """Once on the console (stdout and stderr together), the last line on stderr; no
    Hydra 'Error executing job' line; the run log keeps it too."""
    proc = launch("+preset=smoke", "data.n_points=30", "tracking=none", outputs=tmp_path / "outputs")
    assert proc.returncode == 5
    both = proc.stdout + proc.stderr
    assert both.count("ERROR [INPUT_INVALID]") == 1, both[-3000:]
    assert "Error executing job" not in both
    assert proc.stderr.strip().splitlines()[-1].startswith("ERROR [INPUT_INVALID]")
    (log,) = (tmp_path / "outputs" / "runs").glob("*/run.log")
    assert "ERROR [INPUT_INVALID]" in log.read_text()


@pytest.mark.unit
@pytest.mark.parametrize("override, expected", [
    ("+preset=airlines", "did you mean 'airline'? available: airline, "),
    ("tracking=mlfow", "did you mean 'mlflow'? available: mlflow, none, server"),
    ("model.units=16,32", "to sweep over the values add -m (--multirun)"),
    ("model.unitz=3", "did you mean model.units?"),
])
def test_hydras_help_stays_on_the_one_error_line(override, expected):
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        with pytest.raises(Exception) as info:
            validate(compose("config", [override]))
    line = error_line(classify(info.value))
    assert line.startswith("ERROR [CONFIG_INVALID] ") and "\n" not in line and expected in line, line
