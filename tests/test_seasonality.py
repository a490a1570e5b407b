"""Season-aware defaults (spline_lstm.preprocessing.seasonality) and the seasonal gap fill: season
from the frequency, overrides, the difference / lookback choices on series of known
structure, causal and more accurate seasonal filling, one fill path for predict."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spline_lstm.preprocessing import transforms
from spline_lstm.preprocessing import seasonality
from spline_lstm.artifacts.layout import safe_load_pickle
from spline_lstm.core.config import DataConfig, Interpolation, PreprocessConfig, validate
from spline_lstm.core.errors import ConfigInvalid, InputInvalid
from spline_lstm.preprocessing.preprocessor import Preprocessor
from tests.conftest import Run, launch, last_line
from tests.test_config import _compose


@pytest.mark.unit
@pytest.mark.parametrize("freq,season", [("h", 24), ("D", 7), ("W-SUN", 52), ("MS", 12), ("ME", 12),
                                         ("QS-OCT", 4), ("QE-DEC", 4), ("7D", 52), ("60min", 24), ("2h", None), ("15min", None),
                                         ("YS", None), (None, None)])
def test_season_is_inferred_from_the_frequency(freq, season):
    assert seasonality.infer_season(freq) == season


@pytest.mark.unit
@pytest.mark.parametrize("overrides,season,difference,lookback", [
    ((), 24, "auto", "auto"),  # synthetic.yaml: season: 24 (a YAML int)
    (("data=csv", "data.path=x.csv"), "auto", "auto", "auto"),
    (("data.season=none",), None, "auto", "auto"),
    (("data.season=null",), None, "auto", "auto"),
    (("data=csv", "data.path=x.csv", "data.season=12"), 12, "auto", "auto"),
    (("+preset=smoke",), 24, "auto", 24),
    (("+preset=airline", "data.path=x.csv"), 12, 12, 12),
    (("preprocess.difference=first",), 24, 1, "auto"),
    (("preprocess.difference=none", "preprocess.lookback=48"), 24, 0, 48),
    (("preprocess.difference=seasonal",), 24, "seasonal", "auto"),
    (("preprocess.difference=12", "preprocess.lookback=36"), 24, 12, 36),
])
def test_season_difference_and_lookback_settings(overrides, season, difference, lookback):
    app = validate(_compose(*overrides))
    assert (app.data.season, app.preprocess.difference, app.preprocess.lookback) == (season, difference, lookback)


@pytest.mark.unit
@pytest.mark.parametrize("override,key", [
    ("data.season=0", "data.season"), ("data.season=abc", "data.season"), ("data.season=1.5", "data.season"),
    ("data.season=true", "data.season"), ("data.season=[12]", "data.season"),
    ("preprocess.difference=-1", "preprocess.difference"), ("preprocess.difference=second", "preprocess.difference"),
    ("preprocess.lookback=0", "preprocess.lookback"), ("preprocess.lookback=many", "preprocess.lookback"),
    ("data.season=none preprocess.difference=seasonal", "preprocess.difference"),
    ("data.season=none preprocess.interpolation=seasonal", "preprocess.interpolation"),
    ("preprocess.interpolation=spline", "preprocess.interpolation"),
])
def test_bad_season_settings_are_config_errors(override, key):
    with pytest.raises(Exception) as info:
        validate(_compose(*override.split()))
    assert key in str(info.value) or key in str(info.value.__cause__)


def test_bad_season_exits_2_before_anything_is_written(tmp_path):
    proc = launch("+preset=smoke", "data.season=weekly", "tracking=none", outputs=tmp_path / "out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith("ERROR [CONFIG_INVALID] data.season")
    assert not (tmp_path / "out" / "artifacts").exists()


# --- the choices on series of known structure ---------------------------------------------

def _series(kind: str, n: int = 240, m: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    noise = rng.standard_normal(n)
    if kind == "season":
        return 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / m) + noise
    if kind == "trend":
        return np.cumsum(rng.standard_normal(n)) + 0.3 * t
    return noise


@pytest.mark.unit
@pytest.mark.parametrize("kind,lag", [("season", 12), ("trend", 1), ("none", 0)])
def test_difference_auto_finds_the_structure(kind, lag):
    y = _series(kind)
    chosen, why = seasonality.choose_difference(y, transforms.split_bounds(len(y), PreprocessConfig()), 12)
    assert chosen == lag, why
    assert "lowest validation rmse" in why and "KPSS" in why


@pytest.mark.unit
def test_difference_auto_without_a_season_never_differences_seasonally():
    y = _series("season")
    assert seasonality.choose_difference(y, transforms.split_bounds(len(y), PreprocessConfig()), None)[0] == 1


@pytest.mark.unit
def test_difference_auto_never_looks_at_the_test_split():
    y = _series("season")
    bounds = transforms.split_bounds(len(y), PreprocessConfig())
    other = y.copy()
    other[bounds[2]:] = 0.0
    assert seasonality.choose_difference(y, bounds, 12) == seasonality.choose_difference(other, bounds, 12)


@pytest.mark.unit
def test_lookback_auto_finds_the_lag_that_carries_the_signal():
    """y[t] = 0.95 y[t-12] + noise with season 6: one season of history is not enough, two are."""
    rng = np.random.default_rng(1)
    y = np.zeros(600)
    for t in range(12, 600):
        y[t] = 0.95 * y[t - 12] + rng.standard_normal()
    bounds = transforms.split_bounds(600, PreprocessConfig())
    lookback, why = seasonality.choose_lookback(y, bounds, 0, 1, 6)
    assert lookback == 12, why


def _app(**pre):
    app = validate(_compose("data=csv", "data.path=x.csv", *[f"preprocess.{k}={v}" for k, v in pre.items()]))
    return app


@pytest.mark.unit
def test_resolve_gives_plain_values_in_a_copy_and_says_why():
    y = _series("season", n=200)
    y[[30, 31, 77]] = np.nan
    app = _app(difference="auto", lookback="auto")
    bounds = transforms.split_bounds(len(y), app.preprocess)
    choices = seasonality.resolve(app, y, bounds, "MS")
    resolved = choices.applied_to(app)
    assert (resolved.data.season, resolved.preprocess.difference) == (12, 12)
    assert resolved.preprocess.interpolation == Interpolation.seasonal
    assert isinstance(resolved.preprocess.lookback, int) and resolved.preprocess.lookback % 12 == 0
    # the validated config itself is never changed: one owner, a new object for the resolved values
    assert (app.data.season, app.preprocess.difference, app.preprocess.lookback) == ("auto", "auto", "auto")
    assert app.preprocess.interpolation == Interpolation.auto
    lines = choices.lines()
    assert lines[0] == "season: 12 because inferred from the frequency 'MS'"
    assert lines[2].startswith("difference: seasonal (12) because its zero-output forecast had the lowest")
    assert choices.to_dict()["requested"] == {"season": "auto", "interpolation": "auto", "difference": "auto",
                                              "lookback": "auto"}


@pytest.mark.unit
def test_resolve_without_a_season_uses_pchip_and_refuses_seasonal_difference():
    y = _series("none", n=120)
    app = _app()
    choices = seasonality.resolve(app, y, transforms.split_bounds(120, app.preprocess), "YS")
    assert (choices.season, choices.interpolation) == (None, "pchip")
    app = _app(difference="seasonal")  # the config is fine; the data has no season: an input error
    with pytest.raises(InputInvalid, match="preprocess.difference=seasonal needs a season"):
        seasonality.resolve(app, y, transforms.split_bounds(120, app.preprocess), "YS")


# --- seasonal gap filling ------------------------------------------------------------------

def _gappy(seed: int = 0, n: int = 240):
    truth = _series("season", n=n, seed=seed)
    values = truth.copy()
    rng = np.random.default_rng(seed)
    for start in rng.choice(np.arange(2, n - 8), size=12, replace=False):
        values[start:start + int(rng.integers(1, 5))] = np.nan
    return truth, values


@pytest.mark.unit
def test_seasonal_fill_is_more_accurate_than_pchip_on_a_seasonal_series():
    for seed in range(3):
        truth, values = _gappy(seed)
        bounds = np.array([0, len(values), len(values), len(values)])
        gaps = np.isnan(values)
        err = {m: np.sqrt(np.mean((transforms.fill_gaps(values, bounds, m, 12)[gaps] - truth[gaps]) ** 2))
               for m in (Interpolation.pchip, Interpolation.seasonal)}
        assert err[Interpolation.seasonal] < 0.5 * err[Interpolation.pchip], err


@pytest.mark.unit
def test_seasonal_fill_is_causal_by_split_and_keeps_observed_points():
    _, values = _gappy()
    bounds = transforms.split_bounds(len(values), PreprocessConfig())
    a = transforms.fill_gaps(values, bounds, Interpolation.seasonal, 12)
    changed = values.copy()
    changed[bounds[2]:] = changed[bounds[2]:] * 3 + 50  # other test-split values
    changed[bounds[1]:bounds[2]] += 7.0  # and other validation values
    b = transforms.fill_gaps(changed, bounds, Interpolation.seasonal, 12)
    assert np.array_equal(a[: bounds[1]], b[: bounds[1]])
    assert not np.isnan(a).any()
    obs = ~np.isnan(values)
    assert np.array_equal(a[obs], values[obs])


@pytest.mark.unit
def test_seasonal_fill_needs_a_season_and_auto_picks_by_season():
    _, values = _gappy()
    bounds = np.array([0, len(values), len(values), len(values)])
    with pytest.raises(ConfigInvalid, match="preprocess.interpolation"):
        transforms.fill_gaps(values, bounds, Interpolation.seasonal, None)
    assert np.array_equal(transforms.fill_gaps(values, bounds, Interpolation.auto, None),
                          transforms.fill_gaps(values, bounds, Interpolation.pchip))
    assert np.array_equal(transforms.fill_gaps(values, bounds, Interpolation.auto, 12),
                          transforms.fill_gaps(values, bounds, Interpolation.seasonal, 12))


@pytest.mark.unit
def test_predict_fills_exactly_as_training_filled_the_training_split():
    _, values = _gappy()
    cfg = PreprocessConfig(interpolation=Interpolation.seasonal, lookback=12, difference=12)
    bounds = transforms.split_bounds(len(values), cfg)
    pre, filled, _ = Preprocessor.fit(values, bounds, cfg, run_id="r1", data=DataConfig(season=12), freq="MS",
                                      last_timestamp="", where="test", choices={"season": 12})
    pre = Preprocessor.from_dict(pre.to_dict())
    assert (pre.interpolation, pre.season, pre.choices) == ("seasonal", 12, {"season": 12})
    again, _ = pre.transform(values[: bounds[1]], "input")
    assert np.array_equal(again, filled[: bounds[1]])


def test_a_monthly_csv_with_defaults_reports_the_choices_and_seasonal_naive(tmp_path):
    idx = pd.date_range("2000-01-01", periods=120, freq="MS")
    y = _series("season", n=120)
    frame = pd.DataFrame({"month": idx.strftime("%Y-%m"), "y": y}).drop(index=[20, 21, 50]).reset_index(drop=True)
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    proc = launch("data=csv", f"data.path={path}", "data.timestamp_col=month", "data.target_col=y",
                  "training.epochs=1",
                  "tracking=none", "run_id=m-run", outputs=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = Run(tmp_path / "out", "m-run")
    assert "seasonal_naive" in run.json("metrics")["baselines"]
    choices = run.json("metadata")["choices"]
    assert (choices["season"], choices["interpolation"], choices["difference"]) == (12, "seasonal", 12)
    assert run.json("meta")["choices"] == choices
    assert run.json("metadata")["config"]["preprocess"]["difference"] == 12
    payload = safe_load_pickle(run.path("preprocessor"))
    assert payload["choices"] == json.loads(json.dumps(choices))
    assert (payload["window"]["difference"], payload["data"]["season"]) == (12, 12)
    assert "- difference: seasonal (12) because its zero-output forecast" in run.path("report").read_text()


@pytest.mark.unit
def test_the_payload_never_holds_auto():
    _, values = _gappy()
    bounds = transforms.split_bounds(len(values), PreprocessConfig())
    pre, *_ = Preprocessor.fit(values, bounds, PreprocessConfig(lookback=12), run_id="r1", data=DataConfig(),
                               freq="MS", last_timestamp="", where="test")
    assert (pre.season, pre.interpolation) == (12, "seasonal")
    pre, *_ = Preprocessor.fit(values, bounds, PreprocessConfig(lookback=12), run_id="r1", data=DataConfig(),
                               freq="YS", last_timestamp="", where="test")
    assert (pre.season, pre.interpolation) == (None, "pchip")
