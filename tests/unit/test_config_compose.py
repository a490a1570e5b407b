"""Every preset and every config group option composes in-process and passes
``validate``; values out of range are refused with ConfigInvalid naming the key."""
from __future__ import annotations

import copy
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spline_lstm.core.config import (AppConfig, Calendar, Cell, DataSource, EvaluationMode, Scaling,
                                     register_configs, validate)
from spline_lstm.core.errors import ConfigInvalid
from tests.conftest import REPO

pytestmark = pytest.mark.unit

CONF = REPO / "conf"
PRESETS = sorted(p.stem for p in (CONF / "preset").glob("*.yaml"))
FILE_PRESETS = [p for p in PRESETS if p != "smoke"]
GROUP_OPTIONS = [(group.name, option.stem) for group in sorted(CONF.iterdir())
                 if group.is_dir() and group.name not in ("preset", "hpo", "hydra")
                 for option in sorted(group.glob("*.yaml"))]
# what an option needs besides itself to be a runnable config
NEEDS = {("data", "csv"): ["data.path=x.csv"], ("tracking", "server"): ["tracking.uri=http://127.0.0.1:5000"]}


def compose_cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def base():
    """The default composition, composed once; cases change copies of it."""
    return compose_cfg("run_id=unit-base")


def with_values(cfg, **values):
    cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


def test_the_preset_and_group_lists_are_what_conf_holds():
    assert {"smoke", "airline", "milk", "etth1"} <= set(PRESETS)
    groups = {g for g, _ in GROUP_OPTIONS}
    assert groups == {"data", "preprocess", "model", "training", "paths", "tracking", "evaluation"}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_validates(preset):
    extra = [] if preset == "smoke" else ["data.path=x.csv"]
    app = validate(compose_cfg(f"+preset={preset}", *extra))
    assert isinstance(app, AppConfig)
    assert app.preset == preset
    assert app.run_id.startswith(app.run_prefix + "-")


@pytest.mark.parametrize("preset", FILE_PRESETS)
def test_file_presets_read_a_file_with_a_known_frequency_and_season(preset):
    app = validate(compose_cfg(f"+preset={preset}", "data.path=x.csv"))
    assert app.data.source == DataSource.file
    assert app.data.freq and isinstance(app.data.season, int) and app.data.season >= 1
    assert app.preprocess.horizon >= 1


@pytest.mark.parametrize("preset", PRESETS)
def test_a_command_line_value_beats_every_preset(preset):
    extra = [] if preset == "smoke" else ["data.path=x.csv"]
    app = validate(compose_cfg(f"+preset={preset}", *extra, "training.epochs=2", "model.units=5"))
    assert (app.training.epochs, app.model.units) == (2, 5)


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=lambda v: str(v))
def test_every_group_option_composes_and_validates(group, option):
    app = validate(compose_cfg(f"{group}={option}", *NEEDS.get((group, option), [])))
    assert isinstance(app, AppConfig)


@pytest.mark.parametrize("group,option,check", [
    ("model", "gru", lambda a: Cell(a.model.cell) == Cell.gru),
    ("model", "lstm", lambda a: Cell(a.model.cell) == Cell.lstm),
    ("tracking", "none", lambda a: a.tracking.enabled is False),
    ("tracking", "mlflow", lambda a: a.tracking.enabled and a.tracking.uri is None),
    ("evaluation", "backtest", lambda a: EvaluationMode(a.evaluation.mode) == EvaluationMode.backtest),
    ("evaluation", "holdout", lambda a: EvaluationMode(a.evaluation.mode) == EvaluationMode.holdout),
    ("data", "synthetic", lambda a: a.data.source == DataSource.synthetic and a.data.season == 24),
    ("data", "csv", lambda a: a.data.source == DataSource.file and a.data.season == "auto"),
])
def test_a_group_option_sets_what_it_names(group, option, check):
    assert check(validate(compose_cfg(f"{group}={option}", *NEEDS.get((group, option), []))))


def test_the_server_option_needs_its_uri_and_gets_its_http_settings():
    app = validate(compose_cfg("tracking=server", "tracking.uri=http://127.0.0.1:5000"))
    assert (app.tracking.http_timeout_s, app.tracking.http_retries, app.tracking.http_backoff_factor) == (60, 6, 1)


def test_the_hpo_option_composes_with_its_search_space():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=["+hpo=lstm"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert set(params) >= {"model.units", "preprocess.lookback"}
    assert str(params["model.units"]).startswith("choice(")
    validate(cfg)


def test_an_unknown_preset_is_a_composition_error():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):
        compose_cfg("+preset=no-such-preset")


@pytest.mark.parametrize("key,value", [
    ("seed", -1), ("seed", 2**32), ("training.epochs", 0), ("training.epochs", 10**6 + 1),
    ("training.batch_size", 0), ("training.learning_rate", 0.0), ("training.learning_rate", -1e-3),
    ("training.patience", -1), ("training.ensemble", 0), ("training.ensemble", 101),
    ("training.min_val_windows", -1), ("training.cpu_devices", -1), ("training.cpu_devices", 2),
    ("model.units", 0), ("model.units", 100_001), ("model.layers", 0), ("model.layers", 101),
    ("model.dropout", -0.1), ("model.dropout", 1.0), ("preprocess.horizon", 0), ("preprocess.horizon", 10**7 + 1),
    ("preprocess.max_missing_ratio", 1.0), ("preprocess.max_missing_ratio", -0.1), ("preprocess.max_gap", -1),
    ("preprocess.smoothing_lambda", 0.0), ("preprocess.smoothing_lambda", -2.0),
    ("preprocess.split_ratios", [0.7, 0.3]), ("preprocess.split_ratios", [0.8, 0.2, 0.0]),
    ("preprocess.split_ratios", [0.6, 0.2, 0.1]), ("preprocess.split_indices", [10, 5, 20]),
    ("preprocess.split_indices", [0, 5, 20]), ("preprocess.split_indices", [5, 10]),
    ("preprocess.lookback", 0), ("preprocess.lookback", "soon"), ("preprocess.difference", -2),
    ("preprocess.difference", "twice"), ("data.season", 0), ("data.season", "yearly"),
    ("data.n_points", 0), ("data.gap_ratio", 1.0), ("data.gap_ratio", -0.5), ("data.gap_stretches", -1),
    ("data.gap_stretches", 10_000), ("data.noise", -0.01), ("data.noise", float("nan")),
    ("data.n_series", 0), ("data.n_series", 10**6 + 1), ("evaluation.folds", 0), ("evaluation.folds", 1001),
    ("evaluation.step", 0), ("gate.min_improvement_pct", 100.0), ("gate.min_improvement_pct", -100.0),
    ("run_prefix", ""), ("tracking.experiment", "  "), ("data.synthetic_freq", "0h"), ("data.freq", "fortnightly"),
])
def test_a_value_out_of_range_is_config_invalid_naming_its_key(base, key, value):
    cfg = with_values(base, **{key: value})
    with pytest.raises(ConfigInvalid, match=re.escape(key)):
        validate(cfg)


@pytest.mark.parametrize("key,value", [
    ("seed", 0), ("seed", 2**32 - 1), ("training.epochs", 1), ("training.epochs", 10**6),
    ("training.patience", 0), ("training.ensemble", 100), ("model.units", 100_000), ("model.layers", 100),
    ("model.dropout", 0.0), ("model.dropout", 0.99), ("preprocess.max_missing_ratio", 0.0),
    ("preprocess.max_gap", 0), ("preprocess.smoothing_lambda", 1e-6), ("preprocess.split_ratios", [0.5, 0.25, 0.25]),
    ("preprocess.split_indices", [100, 200, 300]), ("preprocess.lookback", "auto"), ("preprocess.lookback", "12"),
    ("preprocess.difference", "none"), ("preprocess.difference", "first"), ("preprocess.difference", "seasonal"),
    ("data.season", "none"), ("data.gap_ratio", 0.0), ("data.noise", 0.0), ("evaluation.folds", 1000),
    ("evaluation.step", 1), ("gate.min_improvement_pct", 99.9), ("gate.min_improvement_pct", -99.9),
    ("tracking.enabled", False), ("data.synthetic_freq", "30min"),
])
def test_a_value_at_its_bound_is_accepted(base, key, value):
    validate(with_values(base, **{key: value}))


def test_an_empty_experiment_name_is_fine_without_tracking(base):
    validate(with_values(base, **{"tracking.enabled": False, "tracking.experiment": ""}))


def test_validation_turns_step_words_into_their_canonical_values(base):
    app = validate(with_values(base, **{"preprocess.difference": "first", "preprocess.lookback": "36",
                                        "data.season": "12"}))
    assert (app.preprocess.difference, app.preprocess.lookback, app.data.season) == (1, 36, 12)


def test_cpu_devices_go_with_mirrored(base):
    app = validate(with_values(base, **{"training.cpu_devices": 2, "training.distribute": "mirrored"}))
    assert app.training.cpu_devices == 2


@pytest.mark.parametrize("overrides,key", [
    (["data.calendar=[hour,hour]"], "data.calendar"),
    (["data.past_covariates=[load]"], "data.past_covariates"),
    (["data.future_covariates=[promo]"], "data.future_covariates"),
    (["data=csv", "data.path=x.csv", "data.past_covariates=[value]"], "data.past_covariates"),
    (["data=csv", "data.path=x.csv", "data.past_covariates=[a]", "data.future_covariates=[a]"],
     "data.future_covariates"),
    (["data=csv", "data.path=x.csv", "data.past_covariates=['']"], "data.past_covariates"),
    (["data.static_covariates=[category]"], "data.static_covariates"),
    (["data.n_series=3", "data.static_covariates=[colour]"], "data.static_covariates"),
    (["data.id_col=store"], "data.id_col"),
    (["data=csv", "data.path=x.csv", "data.n_series=2"], "data.n_series"),
    (["data=csv", "data.path=x.csv", "data.id_col=store", "data.target_cols=[a,b]"], "data.target_cols"),
    (["data=csv", "data.path=x.csv", "data.paths=[y.csv]"], "data.paths"),
    (["data=csv", "data.path=x.csv", "data.target_cols=[a,a]"], "data.target_cols"),
    (["data=csv", "data.path=x.csv", "data.target_cols=[a,timestamp]"], "data.target_cols"),
    (["data=csv", "data.path=x.csv", "data.id_col=value"], "data.id_col"),
    (["data.n_series=3", "data.shard=3/3"], "data.shard"),
    (["data.n_series=3", "data.shard=a/b"], "data.shard"),
    (["data.shard=0/2"], "data.shard"),
    (["data.n_series=3", "evaluation=backtest"], "evaluation"),
    (["data.n_series=3", "preprocess.smoothing=spline"], "preprocess.smoothing"),
    (["data.n_series=3", "preprocess.difference_past_covariates=true"], "preprocess.difference_past_covariates"),
    (["data.season=none", "preprocess.interpolation=seasonal"], "preprocess.interpolation"),
    (["data.season=none", "preprocess.difference=seasonal"], "preprocess.difference"),
    (["data.start=not-a-date"], "data.start"),
])
def test_settings_that_do_not_fit_together_are_config_invalid(overrides, key):
    with pytest.raises(ConfigInvalid, match=re.escape(key)):
        validate(compose_cfg(*overrides))


@pytest.mark.parametrize("overrides", [
    ["data.n_series=3", "data.shard=0/3"],
    ["data.n_series=2", "data.static_covariates=[category]"],
    ["data=csv", "data.path=x.csv", "data.id_col=store", "data.static_covariates=[region]"],
    ["data=csv", "data.path=x.csv", "data.target_cols=[a,b]", "data.paths=[y.csv]"],
    ["data=csv", "data.path=x.csv", "data.past_covariates=[load]", "data.future_covariates=[promo]"],
    ["data.calendar=[hour,dayofweek,month]"],
])
def test_settings_that_fit_together_validate(overrides):
    validate(compose_cfg(*overrides))


@pytest.mark.parametrize("scaling", [s.value for s in Scaling])
def test_every_scaling_composes(scaling):
    assert Scaling(validate(compose_cfg(f"preprocess.scaling={scaling}")).preprocess.scaling).value == scaling


@pytest.mark.parametrize("feature", [c.value for c in Calendar])
def test_every_calendar_feature_composes(feature):
    assert [Calendar(c).value for c in validate(compose_cfg(f"data.calendar=[{feature}]")).data.calendar] == [feature]


def test_paths_become_absolute_and_the_artifacts_dir_follows_the_outputs_dir(tmp_path):
    app = validate(compose_cfg(f"paths.outputs_dir={tmp_path / 'o'}"))
    assert app.paths.outputs_dir == str(tmp_path / "o")
    assert app.paths.artifacts_dir == str(tmp_path / "o" / "artifacts")


def test_a_chosen_run_id_is_kept(base):
    assert validate(base).run_id == "unit-base"
