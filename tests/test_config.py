"""Config composition: presets, overrides winning in any order, schema errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from spline_lstm.config import register_configs, validate
from spline_lstm.errors import ConfigInvalid
from tests.conftest import REPO, launch, last_line, run_cmd

CONF = str(REPO / "conf")


def _compose(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_defaults_compose_and_validate():
    app = validate(_compose())
    assert app.data.source.value == "synthetic"
    assert app.preprocess.split_ratios == [0.7, 0.15, 0.15]
    assert app.tracking.enabled and app.tracking.experiment == "spline-lstm"
    assert Path(app.paths.artifacts_dir).is_absolute()
    assert app.paths.artifacts_dir.endswith("outputs/artifacts")


def test_smoke_preset_values():
    app = validate(_compose("+preset=smoke"))
    assert (app.preset, app.run_prefix, app.seed, app.training.epochs) == ("smoke", "phase4-smoke", 42, 3)
    assert app.run_id.startswith("phase4-smoke-")
    prefix, date, clock, tail = app.run_id.rsplit("-", 3)
    assert len(date) == 8 and len(clock) == 6 and len(tail) == 4 and int(tail, 16) >= 0


@pytest.mark.parametrize("order", ["before", "after"])
def test_cli_override_wins_over_preset_in_any_order(order):
    overrides = ["training.epochs=7", "+preset=smoke"]
    if order == "after":
        overrides.reverse()
    assert validate(_compose(*overrides)).training.epochs == 7


@pytest.mark.parametrize("preset,target,freq", [("airline", "Passengers", "MS"), ("milk", "Pounds per cow", "MS"),
                                                ("etth1", "OT", "h")])
def test_file_presets_switch_to_csv(preset, target, freq):
    app = validate(_compose(f"+preset={preset}", "data.path=x.csv"))
    assert app.data.source.value == "file"
    assert (app.data.target_col, app.data.freq, app.preset) == (target, freq, preset)


def test_gru_swaps_the_cell():
    assert validate(_compose("model=gru")).model.cell.value == "gru"


@pytest.mark.parametrize("override,key", [
    ("training.epochs=abc", "training.epochs"),
    ("preprocess.scaling=foo", "preprocess.scaling"),
    ("model.nope=1", "nope"),
])
def test_schema_rejects_at_compose_time(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        _compose(override)
    assert key in str(info.value) or key in str(info.value.__cause__)


@pytest.mark.parametrize("override,key", [
    ("training.epochs=-1", "training.epochs"),
    ("training.batch_size=0", "training.batch_size"),
    ("preprocess.lookback=0", "preprocess.lookback"),
    ("preprocess.split_ratios=[0.5,0.3,0.3]", "preprocess.split_ratios"),
    ("preprocess.split_ratios=[1.0,0.0,0.0]", "preprocess.split_ratios"),
    ("model.dropout=1.5", "model.dropout"),
])
def test_ranges_rejected_by_validate(override, key):
    with pytest.raises(ConfigInvalid, match=key):
        validate(_compose(override))


@pytest.mark.parametrize("override,key", [("training.epochs=abc", "training.epochs"),
                                          ("training.epochs=-1", "training.epochs"),
                                          ("bogus_key=1", "bogus_key")])
def test_launch_exits_2_before_writing(tmp_path, override, key):
    proc = launch("+preset=smoke", override, outputs=tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("ERROR [CONFIG_INVALID]") and key in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cfg_job_prints_config_without_running(tmp_path):
    proc = run_cmd([str(REPO / "launch.py"), "+preset=smoke", f"paths.outputs_dir={tmp_path / 'out'}",
                    "--cfg", "job"])
    assert proc.returncode == 0
    assert "run_prefix: phase4-smoke" in proc.stdout and "epochs: 3" in proc.stdout
    assert not (tmp_path / "out").exists()
