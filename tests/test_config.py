"""Config composition: presets, overrides winning in any order, schema errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from spline_lstm.core.config import register_configs, validate
from spline_lstm.core.errors import ConfigInvalid
from tests.conftest import REPO, launch, last_line, run_cmd

CONF = str(REPO / "conf")


def _compose(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.unit
def test_defaults_compose_and_validate():
    app = validate(_compose())
    assert app.data.source.value == "synthetic"
    assert app.preprocess.split_ratios == [0.7, 0.15, 0.15]
    assert app.tracking.enabled and app.tracking.experiment == "spline-lstm"
    assert Path(app.paths.artifacts_dir).is_absolute()
    assert app.paths.artifacts_dir.endswith("outputs/artifacts")


@pytest.mark.unit
def test_smoke_preset_values():
    app = validate(_compose("+preset=smoke"))
    assert (app.preset, app.run_prefix, app.seed, app.training.epochs) == ("smoke", "phase4-smoke", 42, 3)
    assert app.run_id.startswith("phase4-smoke-")
    prefix, date, clock, tail = app.run_id.rsplit("-", 3)
    assert len(date) == 8 and len(clock) == 6 and len(tail) == 4 and int(tail, 16) >= 0


@pytest.mark.unit
@pytest.mark.parametrize("order", ["before", "after"])
def test_cli_override_wins_over_preset_in_any_order(order):
    overrides = ["training.epochs=7", "+preset=smoke"]
    if order == "after":
        overrides.reverse()
    assert validate(_compose(*overrides)).training.epochs == 7


@pytest.mark.unit
@pytest.mark.parametrize("preset,target,freq", [("airline", "Passengers", "MS"), ("milk", "Pounds per cow", "MS"),
                                                ("etth1", "OT", "h")])
def test_file_presets_switch_to_csv(preset, target, freq):
    app = validate(_compose(f"+preset={preset}", "data.path=x.csv"))
    assert app.data.source.value == "file"
    assert (app.data.target_col, app.data.freq, app.preset) == (target, freq, preset)


@pytest.mark.unit
def test_gru_swaps_the_cell():
    assert validate(_compose("model=gru")).model.cell.value == "gru"


@pytest.mark.unit
@pytest.mark.parametrize("override,key", [
    ("training.epochs=abc", "training.epochs"),
    ("preprocess.scaling=foo", "preprocess.scaling"),
    ("model.nope=1", "nope"),
])
def test_schema_rejects_at_compose_time(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        _compose(override)
    assert key in str(info.value) or key in str(info.value.__cause__)


@pytest.mark.unit
@pytest.mark.parametrize("override,key", [
    ("training.epochs=-1", "training.epochs"),
    ("training.batch_size=0", "training.batch_size"),
    ("preprocess.lookback=0", "preprocess.lookback"),
    ("preprocess.split_ratios=[0.5,0.3,0.3]", "preprocess.split_ratios"),
    ("preprocess.split_ratios=[1.0,0.0,0.0]", "preprocess.split_ratios"),
    ("model.dropout=1.5", "model.dropout"),
    ("seed=-1", "seed"),
    ("seed=4294967296", "seed"),
    ("data.synthetic_freq=foo", "data.synthetic_freq"),
    ("data.synthetic_freq=-1h", "data.synthetic_freq"),
    ("data.freq=foo", "data.freq"),
    ("data.start=x", "data.start"),
    ("data.synthetic_freq=MS data.n_points=100000000", "data.start"),  # past pandas' last timestamp
    ("data.noise=inf", "data.noise"),
    ("data.noise=-1", "data.noise"),
    ("data.gap_ratio=nan", "data.gap_ratio"),
    ("data.n_points=100000001", "data.n_points"),
    ("preprocess.smoothing_lambda=inf", "preprocess.smoothing_lambda"),
    ("preprocess.split_ratios=[0.7,0.15,inf]", "preprocess.split_ratios"),
    ("training.learning_rate=inf", "training.learning_rate"),
    ("training.learning_rate=nan", "training.learning_rate"),
    ("model.dropout=nan", "model.dropout"),
    ("model.units=1000000", "model.units"),
])
def test_ranges_rejected_by_validate(override, key):
    with pytest.raises(ConfigInvalid, match=key):
        validate(_compose(*override.split()))


@pytest.mark.unit
@pytest.mark.parametrize("override", ["seed=0", "seed=4294967295", "data.synthetic_freq=15min",
                                      "data.synthetic_freq=W-MON", "data.start=2024-03-01T06:00",
                                      "data.freq=MS", "model.dropout=0.5"])
def test_range_boundaries_accepted(override):
    validate(_compose(override))


@pytest.mark.unit
@pytest.mark.parametrize("override,key", [
    ("hydra.run.dir=/tmp/elsewhere", "hydra.run.dir"),
    ("hydra.sweep.dir=/tmp/elsewhere", "hydra.sweep.dir"),
    ("hydra.sweep.subdir=../x", "hydra.sweep.subdir"),
    ("hydra.output_subdir=../other", "hydra.output_subdir"),
    ("hydra.job.chdir=true", "hydra.job.chdir"),
    ("hydra.job_logging.handlers.file.filename=/tmp/x.log", "hydra.job_logging.handlers.file.filename"),
])
def test_hydra_write_locations_cannot_be_set(override, key, tmp_path):
    """The callback's check (for presets and config files); the command line is refused
    earlier by containment.check_overrides, see the matrix."""
    from spline_lstm.app.containment import check_overrides, plan_job

    cfg = _compose_with_hydra(f"paths.outputs_dir={tmp_path / 'out'}", override)
    with pytest.raises(ConfigInvalid, match=key.replace(".", r"\.")):
        plan_job(cfg)
    with pytest.raises(ConfigInvalid, match=key.split("=")[0].rsplit(".", 1)[0].replace(".", r"\.")):
        check_overrides([override])
    assert not any(tmp_path.iterdir())


def _compose_with_hydra(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def _listing(*dirs: Path) -> dict:
    return {str(d): sorted(os.listdir(d)) for d in dirs}


@pytest.mark.unit
def test_composing_touches_no_disk(tmp_path, monkeypatch):
    """Composition is pure: composing (with Hydra's own settings), resolving every
    path and validating writes nothing: not in the outputs dir, the cwd, the repo or /."""
    from spline_lstm.app.containment import plan_job

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    watched = (cwd, tmp_path, REPO, Path("/"))
    before = _listing(*watched)
    for overrides in (["+preset=smoke"], ["+preset=airline", "data.path=x.csv", "run_id=fixed"],
                      ["paths.outputs_dir=rel-out", "model=gru", "tracking=none"]):
        cfg = _compose_with_hydra(f"paths.outputs_dir={tmp_path / 'out'}", *overrides)
        run_dir = Path(str(cfg.hydra.run.dir))
        assert run_dir == Path(str(cfg.paths.outputs_dir)).absolute() / "runs" / str(cfg.run_id)
        assert Path(str(cfg.hydra.sweep.dir)).parent == run_dir.parent.parent / "sweeps"
        assert str(cfg.hydra.sweep.subdir) == str(cfg.run_id)
        plan_job(cfg)  # every check of a launch, read only
    assert _listing(*watched) == before
    assert not (tmp_path / "out").exists() and not (cwd / "rel-out").exists()


@pytest.mark.parametrize("cfg_type", ["job", "hydra", "all"])
def test_cfg_flag_writes_nothing(tmp_path, cfg_type):
    before = _listing(REPO, Path("/"))
    proc = run_cmd([str(REPO / "launch.py"), "+preset=smoke", f"paths.outputs_dir={tmp_path / 'out'}",
                    "--cfg", cfg_type])
    assert proc.returncode == 0, proc.stderr
    assert not any(tmp_path.iterdir()) and _listing(REPO, Path("/")) == before


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


# issue 24: what the registry would refuse at the end of a run is refused before it starts
REGISTRY_NAMES = ["../x", "a/b", "x:1", "a@b", ".", "..", "..x", "./x", "x/", " ", "", "a\nb", "x" * 257,
                  "good-name", "Good_Name.v2", "a b", "x" * 256, "ünï"]


@pytest.mark.unit
@pytest.mark.parametrize("name", REGISTRY_NAMES, ids=lambda n: repr(n)[:20])
def test_register_model_names_refused_in_validation_as_mlflow_would(name):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
        mlflow_ok = len(name) <= 256  # the registry's name column
    except MlflowException:
        mlflow_ok = False
    ours_ok = "@" not in name and name == name.strip() and all(c.isprintable() for c in name)
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+preset=smoke"])
    cfg.tracking.register_model = name
    if mlflow_ok and ours_ok:
        assert validate(cfg).tracking.register_model == name
    else:
        with pytest.raises(ConfigInvalid, match="tracking.register_model"):
            validate(cfg)


@pytest.mark.unit
@pytest.mark.parametrize("alias", ["candidate", "champion-2", "latest", "LATEST", "v1", "V12", "a b", "a/b", "",
                                   "x" * 256, "é"])
def test_alias_rules_mirror_mlflow(alias):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    from spline_lstm.core.config import alias_problem

    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
        mlflow_ok = True
    except MlflowException:
        mlflow_ok = False
    assert (alias_problem(alias) is None) == mlflow_ok, alias


@pytest.mark.unit
def test_register_model_without_tracking_is_refused():
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+preset=smoke", "tracking=none",
                                                       "tracking.register_model=m"])
    with pytest.raises(ConfigInvalid, match="tracking.register_model.*needs tracking"):
        validate(cfg)


@pytest.mark.unit
@pytest.mark.parametrize("uri", ["mlruns", "/abs/path/mlruns", "file:///tmp/mlruns", "FILE:///x", "://x"])
def test_tracking_uri_that_is_no_uri_is_refused_in_validation(uri):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+preset=smoke"])
    cfg.tracking.uri = uri
    with pytest.raises(ConfigInvalid, match="tracking.uri.*not a URI"):
        validate(cfg)
