"""Past one machine and many series: data-parallel training over two logical CPU
devices (a real run, gate and predict), its config rules, and the synthetic panel
of related series (shapes, recoverable season, gap ratio, seed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spline_lstm.preprocessing.statistics import seasonal_index
from spline_lstm.data.synthetic import related_series
from tests.conftest import SMOKE_FAST, Run, cli, launch, last_line, sweep_runs
from tests.helpers.tamper import input_csv
from tests.test_config import _compose

# --- the synthetic panel --------------------------------------------------------------------


@pytest.mark.unit
def test_a_panel_has_the_requested_shapes_and_covariates():
    p = related_series(7, 300, period=12, seed=1, k_past=3, k_future=2, categories=4)
    assert p.values.shape == p.truth.shape == (7, 300)
    assert p.past.shape == (7, 300, 3) and p.future.shape == (7, 300, 2) and p.static.shape == (7,)
    assert p.season.shape == (12,) and p.period == 12
    assert abs(p.season.mean()) < 1e-12 and np.isclose(np.abs(p.season).max(), 1.0)
    assert set(np.unique(p.future)) <= {0.0, 1.0} and set(np.unique(p.static)) <= set(range(4))
    assert np.isfinite(p.past).all() and np.isfinite(p.truth).all()
    np.testing.assert_array_equal(p.values[p.observed], p.truth[p.observed])


@pytest.mark.unit
@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.15])
def test_gaps_come_at_the_requested_ratio_and_never_at_the_ends(ratio):
    p = related_series(200, 1000, seed=3, gap_ratio=ratio, gap_stretches=1 if ratio else 0)
    missing = np.isnan(p.values)
    assert abs(missing.mean() - ratio) < 0.005, missing.mean()
    assert not missing[:, 0].any() and not missing[:, -1].any()


@pytest.mark.unit
def test_the_shared_season_is_recoverable_from_each_series_and_from_the_panel():
    p = related_series(50, 1200, period=24, seed=5, gap_ratio=0.0, gap_stretches=0)
    per_series = np.array([seasonal_index(y, 24) for y in p.truth])  # [n, 24]
    corr = [np.corrcoef(s, p.season)[0, 1] for s in per_series]
    assert np.median(corr) > 0.95 and min(corr) > 0.8, (np.median(corr), min(corr))
    pooled = (per_series / p.amplitude[:, None]).mean(axis=0)  # a global model's view: one profile
    np.testing.assert_allclose(pooled, p.season, atol=0.1)


@pytest.mark.unit
def test_the_covariate_effects_are_what_a_regression_recovers():
    p = related_series(20, 2000, seed=8, gap_ratio=0.0, gap_stretches=0, noise=0.1)
    phase = np.arange(2000) % p.period
    resid = p.truth - p.level[:, None] - p.trend[:, None] * np.arange(2000) \
        - p.amplitude[:, None] * p.season[phase] - p.static_effect * p.static[:, None]
    x = np.concatenate([p.past, p.future], axis=-1).reshape(-1, p.past.shape[-1] + p.future.shape[-1])
    coef, *_ = np.linalg.lstsq(x, resid.ravel(), rcond=None)
    np.testing.assert_allclose(coef, np.concatenate([p.past_effects, p.future_effects]), atol=0.02)


@pytest.mark.unit
def test_a_panel_is_reproducible_by_seed():
    a, b, c = related_series(5, 200, seed=11), related_series(5, 200, seed=11), related_series(5, 200, seed=12)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.past, b.past)
    assert not np.array_equal(np.nan_to_num(a.values), np.nan_to_num(c.values))


# --- training.distribute ----------------------------------------------------------------------

@pytest.mark.unit
def test_cpu_devices_needs_mirrored_and_a_sane_count():
    from spline_lstm.core.config import validate
    from spline_lstm.core.errors import ConfigInvalid

    assert validate(_compose("training.distribute=mirrored", "training.cpu_devices=2")).training.cpu_devices == 2
    with pytest.raises(ConfigInvalid, match="training.cpu_devices: splits the CPU"):
        validate(_compose("training.cpu_devices=2"))
    with pytest.raises(ConfigInvalid, match="training.cpu_devices: must be >= 0"):
        validate(_compose("training.distribute=mirrored", "training.cpu_devices=-1"))


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_passes_the_gate_and_predicts(tmp_path: Path):
    outputs = tmp_path / "outputs"
    proc = launch(*SMOKE_FAST, "training.epochs=2", "training.distribute=mirrored", "training.cpu_devices=2",
                  "tracking=none", "run_id=mirrored-2cpu", outputs=outputs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distribute mirrored: 2 replicas" in proc.stdout + proc.stderr
    assert "Reduce to" not in proc.stdout + proc.stderr  # TensorFlow's INFO chatter stays out of the log
    run = Run(outputs, "mirrored-2cpu")
    meta = run.json("metadata")
    det = meta["determinism"]
    assert (det["distribute"], det["strategy"], det["replicas"]) == ("mirrored", "MirroredStrategy", 2)
    assert [d.rsplit("/", 1)[-1] for d in det["replica_devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert meta["config"]["training"]["distribute"] == "mirrored"
    health = outputs / "artifacts" / "health" / "mirrored-2cpu.json"
    assert json.loads(health.read_text())["verdict"] == "PASS"
    assert len(run.json("metrics")["history"]["loss"]) == 2

    input_csv(run.path("processed"), tmp_path / "recent.csv")
    out = tmp_path / "forecast.csv"
    proc = cli("predict", run.run_id, "--input", str(tmp_path / "recent.csv"), "--output", str(out),
               "--outputs-dir", str(outputs))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    frame = pd.read_csv(out)
    assert len(frame) >= 1 and np.isfinite(frame["forecast"]).all(), last_line(proc.stdout)


@pytest.mark.slow
def test_a_sweep_over_series_files_shards_them_across_submitit_jobs_under_one_parent_run(tmp_path: Path):
    """The SLURM route (docs/sweeps.md#past-one-machine) on one machine: one job per series
    file through the submitit launcher, every job a child of the sweep's MLflow run."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    p = related_series(2, 400, period=24, seed=4, gap_ratio=0.03)
    stamps = pd.date_range("2024-01-01", periods=400, freq="h")
    paths = []
    for i, y in enumerate(p.values):
        path = tmp_path / f"meter_{i}.csv"
        pd.DataFrame({"timestamp": stamps, "value": y}).to_csv(path, index=False)
        paths.append(str(path))
    out = tmp_path / "out"
    proc = launch("-m", "+preset=smoke", "data=csv", "data.path=" + ",".join(paths), "training.epochs=1",
                  "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", outputs=out, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parent, jobs = sweep_runs(out)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert sorted(r.data.tags["data_source"] for r in jobs) == ["meter_0.csv", "meter_1.csv"]
    assert {r.data.tags["health"] for r in jobs} == {"PASS"} and parent.info.status == "FINISHED"
