"""Typed configuration: one dataclass per Hydra group, registered in the ConfigStore.

The schemas make OmegaConf reject unknown keys, wrong types and unknown enum
values while Hydra composes the config; ``validate`` adds the ranges and
cross-field rules a type cannot express (every float finite, seeds 0..2^32-1,
bounded sizes, known frequencies, a parseable start date). Composition is pure:
the resolvers below only compute names and paths. Validation, the run_id checks
and the folder lock run in ``spline_lstm.app.containment`` before Hydra writes.
"""
from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from spline_lstm.core.errors import ConfigInvalid, _config_message, one_line
from spline_lstm.core.ids import current_sweep_id, new_run_id, validate_run_id
from spline_lstm.core.paths import absolute_root
from spline_lstm.core.secrets import mask_uri


class DataSource(str, Enum):
    synthetic = "synthetic"
    file = "file"


class DuplicatePolicy(str, Enum):
    error = "error"
    mean = "mean"
    last = "last"


class Interpolation(str, Enum):
    auto = "auto"  # seasonal when the run has a season, else pchip (spline_lstm.preprocessing.seasonality)
    seasonal = "seasonal"  # pchip of the seasonally adjusted series + the seasonal component
    cubic = "cubic"
    pchip = "pchip"
    akima = "akima"
    linear = "linear"


class Smoothing(str, Enum):
    none = "none"
    spline = "spline"


class Scaling(str, Enum):
    standard = "standard"
    minmax = "minmax"
    robust = "robust"
    none = "none"


class Cell(str, Enum):
    lstm = "lstm"
    gru = "gru"


class Distribute(str, Enum):
    none = "none"  # one device (TensorFlow's default strategy)
    mirrored = "mirrored"  # tf.distribute.MirroredStrategy over the host's GPUs, or its (logical) CPUs


class EvaluationMode(str, Enum):
    holdout = "holdout"
    backtest = "backtest"


class QualityMode(str, Enum):
    warn = "warn"
    strict = "strict"
    off = "off"


class HeadInit(str, Enum):
    default = "default"  # Glorot-uniform output layer
    zeros = "zeros"  # an untrained network predicts 0 in the modelled space


class FutureHead(str, Enum):
    flat = "flat"  # the future-known inputs of every step flattened beside the state (horizon x known weights per step)
    per_step = "per_step"  # one Dense shared by all steps, its output added to that step's forecast


class Revin(str, Enum):
    auto = "auto"  # last unless the forecast integrates its own differences (spline_lstm.models.network)
    none = "none"
    last = "last"  # each window shifted by its last value, scaled by its std
    mean = "mean"


class Calendar(str, Enum):
    """Calendar features generated from the timestamps (spline_lstm.preprocessing.covariates), each as a
    sin/cos pair over its cycle: known over any horizon by construction."""

    minute = "minute"
    hour = "hour"
    dayofweek = "dayofweek"
    dayofmonth = "dayofmonth"
    dayofyear = "dayofyear"
    weekofyear = "weekofyear"
    month = "month"
    quarter = "quarter"


@dataclass
class DataConfig:
    source: DataSource = DataSource.synthetic
    path: Optional[str] = None  # CSV or Parquet (chosen by extension) when source=file
    timestamp_col: str = "timestamp"
    target_col: str = "value"
    freq: Optional[str] = None  # pandas offset alias; None = inferred from the timestamps
    # seasonal period in steps (seasonal naive, seasonal MASE, seasonal fill and differencing):
    # auto = from the frequency (spline_lstm.preprocessing.seasonality), an integer, or none / null = no season
    season: Any = "auto"
    duplicates: DuplicatePolicy = DuplicatePolicy.error
    coerce_errors: bool = False  # non-numeric target cells become gaps instead of an error
    # covariates (spline_lstm.preprocessing.covariates): columns of the same file, on the target's grid
    past_covariates: List[str] = field(default_factory=list)  # observed up to the forecast origin
    future_covariates: List[str] = field(default_factory=list)  # known over the horizon too (predict needs them)
    calendar: List[Calendar] = field(default_factory=list)  # generated from the timestamps, sin/cos
    static_covariates: List[str] = field(default_factory=list)  # per-series attributes: with many series only
    # many series in one run (spline_lstm.data.panel): long format (one row per id and timestamp) ...
    id_col: Optional[str] = None
    # ... or wide format: several target columns, one series each (data.target_col unused)
    target_cols: List[str] = field(default_factory=list)
    paths: List[str] = field(default_factory=list)  # more files of the same layout: more series
    n_series: int = 1  # synthetic: that many related series (spline_lstm.data.synthetic.related_series)
    shard: Optional[str] = None  # "i/N": only the series whose id hashes to shard i of N (a sweep over shards)
    # synthetic generator
    n_points: int = 720
    start: str = "2024-01-01"
    synthetic_freq: str = "h"
    gap_ratio: float = 0.03  # share of isolated missing points
    gap_stretches: int = 3  # number of multi-step missing stretches
    noise: float = 0.3


@dataclass
class PreprocessConfig:
    interpolation: Interpolation = Interpolation.auto
    smoothing: Smoothing = Smoothing.none
    smoothing_lambda: Optional[float] = None  # None = chosen by GCV
    scaling: Scaling = Scaling.standard
    max_missing_ratio: float = 0.2
    max_gap: int = 24  # longest run of consecutive missing steps that may be filled
    # model y[t] - y[t-difference]: an integer lag (0 = levels), none, first (1), seasonal (the
    # season) or auto (chosen from the training split, spline_lstm.preprocessing.seasonality)
    difference: Any = 0
    # past covariates modelled as y[t] - y[t-difference] like the target (spline_lstm.preprocessing.covariates)
    difference_past_covariates: bool = False
    lookback: Any = 24  # an integer, or auto (chosen by validation error, spline_lstm.preprocessing.seasonality)
    horizon: int = 1
    split_ratios: List[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_indices: Optional[List[int]] = None  # [train_end, val_end, test_end] row indices


@dataclass
class ModelConfig:
    cell: Cell = Cell.lstm
    units: int = 32
    layers: int = 1
    dropout: float = 0.0
    head_init: HeadInit = HeadInit.zeros  # measured: bench/model_options.py (docs/modelling.md#a-model-that-starts-from-the-baseline)
    revin: Revin = Revin.auto
    future_head: FutureHead = FutureHead.flat  # how future-known inputs reach the forecast (spline_lstm.models.network)


@dataclass
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 5
    shuffle: bool = True
    ensemble: int = 1  # members averaged into one model (spline_lstm.models.network)
    min_val_windows: int = 0  # model selection on at least this many windows (spline_lstm.models.train)
    # data-parallel training (spline_lstm.models.train.distribution); batch_size is then the global batch
    distribute: Distribute = Distribute.none
    cpu_devices: int = 0  # > 0: split the CPU into this many logical devices for mirrored (no GPU needed)
    verbose: int = 1  # 0: no per-epoch output; else a progress line with ETA on a terminal (spline_lstm.core.progress)


@dataclass
class EvaluationConfig:
    """How the model is scored (spline_lstm.pipeline.backtest): ``holdout`` = the test split once;
    ``backtest`` = ``folds`` rolling origins ``step`` points apart at the end of the series
    (null = the test split divided by ``folds``), each fold retrained (``refit``) or not."""

    mode: EvaluationMode = EvaluationMode.holdout
    folds: int = 3
    step: Optional[int] = None
    refit: bool = False


@dataclass
class GateConfig:
    """The quality gate, after the health gate: the model's rmse (test, or backtest mean)
    against the best baseline. warn: verdict recorded; strict: an unskilled model fails
    the run (12); off: no verdict."""

    quality: QualityMode = QualityMode.warn
    min_improvement_pct: float = 0.0  # rmse improvement over the best baseline the model needs, in %


@dataclass
class PathsConfig:
    outputs_dir: str = "outputs"
    artifacts_dir: str = "${paths.outputs_dir}/artifacts"


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None  # None = sqlite:///<outputs_dir>/mlflow.db (absolute)
    artifact_location: Optional[str] = None  # None = <outputs_dir>/mlartifacts; a server's own store for http(s)
    experiment: str = "spline-lstm"
    # http(s) servers only (tracking=server); None = fail fast (15 s timeout, no retry)
    http_timeout_s: Optional[int] = None  # per request
    http_retries: Optional[int] = None  # per request, with exponential backoff (also the preflight)
    http_backoff_factor: Optional[int] = None  # retry n waits factor * 2**(n-1) s
    register_model: Optional[str] = None  # registry name: a version + alias "candidate" once the gate passed


@dataclass
class AppConfig:
    data: DataConfig = MISSING
    preprocess: PreprocessConfig = MISSING
    model: ModelConfig = MISSING
    training: TrainingConfig = MISSING
    paths: PathsConfig = MISSING
    tracking: TrackingConfig = MISSING
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    run_prefix: str = "run"
    # the job number keeps the ids of one sweep's jobs apart (see new_run_id)
    run_id: str = "${run_id_default:${run_prefix},${oc.select:hydra.job.num,null}}"
    preset: Optional[str] = None
    seed: int = 42
    deterministic: bool = True
    verbose: bool = False


GROUPS = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "paths": PathsConfig,
    "tracking": TrackingConfig,
    "evaluation": EvaluationConfig,
}


def register_configs() -> None:
    """Register the schemas; conf/ YAML files extend them via their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="app_schema", node=AppConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"{group}_schema", node=node)
    _register_resolvers()


# --- run_id ---------------------------------------------------------------

def _run_id_default(prefix: str, job_num: Any = None) -> str:
    return new_run_id(prefix, job_num if isinstance(job_num, int) else None)


def _run_dir(outputs_dir: Any, run_id: Any) -> str:
    """``hydra.run.dir``: <outputs_dir>/runs/<run_id>, absolute; computes only."""

    return str(absolute_root("paths.outputs_dir", outputs_dir) / "runs" / validate_run_id(run_id))


def _sweep_dir(outputs_dir: Any) -> str:
    return str(absolute_root("paths.outputs_dir", outputs_dir) / "sweeps" / current_sweep_id())


def _job_subdir(run_id: Any) -> str:
    return validate_run_id(run_id)


def _register_resolvers() -> None:
    # run_id_default is cached per config object: every later access in the same job sees
    # the same id, while each sweep job (composed separately) gets its own.
    resolvers = {"run_id_default": (_run_id_default, True), "run_dir": (_run_dir, False),
                 "sweep_dir": (_sweep_dir, False), "job_subdir": (_job_subdir, False)}
    for name, (fn, cache) in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=cache)


# --- validation -------------------------------------------------------------

def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigInvalid(f"{key}: {message}")


def validate(cfg: DictConfig, resolve_run_id: bool = True) -> AppConfig:
    """Typed, range-checked view of a composed config (raises ConfigInvalid).

    ``resolve_run_id=False`` leaves ``cfg.run_id`` unresolved: Hydra copies a sweep's
    master config's resolver cache into every job, so resolving it there would
    give every job the same run_id."""
    keys = [k for k in cfg.keys() if k != "hydra"]
    plain = OmegaConf.masked_copy(cfg, keys) if "hydra" in cfg else cfg
    try:
        app: AppConfig = OmegaConf.to_object(plain)  # type: ignore[assignment]
        if not isinstance(app, AppConfig):
            base = OmegaConf.structured(AppConfig)
            app = OmegaConf.to_object(OmegaConf.merge(base, plain))  # type: ignore[assignment]
    except ConfigInvalid:
        raise
    except Exception as exc:  # OmegaConf validation / missing values

        raise ConfigInvalid(_config_message(exc)) from exc
    # Keep the interpolated run_id from the original (cached) config object.
    if resolve_run_id:
        app.run_id = str(cfg.run_id)
    _check_finite(app)
    _parse_step_settings(app)
    _check_ranges(app)
    _check_data(app.data)
    _check_covariates(app.data)
    _check_panel(app)

    check_http_settings(app.tracking)
    check_registry_settings(app.tracking)

    app.paths.outputs_dir = str(absolute_root("paths.outputs_dir", app.paths.outputs_dir))
    app.paths.artifacts_dir = str(absolute_root("paths.artifacts_dir", app.paths.artifacts_dir))
    return app


SEED_MAX = 2**32 - 1  # numpy's and TensorFlow's seed range
MAX_POINTS = 10**8  # a series longer than this would not fit in memory as float64 windows
MAX_STEPS = 10**7  # lookback, horizon, season, difference, max_gap: steps of one series
MAX_UNITS = 100_000


def _check_finite(app: AppConfig) -> None:
    """Every float of the config is a finite number (``inf`` / ``nan`` parse as floats)."""
    for key, value in flatten(to_plain(app)).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            _require(not isinstance(v, float) or math.isfinite(v), key, f"must be a finite number, got {v}")


def _check_ranges(app: AppConfig) -> None:
    d, p, m, t = app.data, app.preprocess, app.model, app.training
    _require(0 <= app.seed <= SEED_MAX, "seed", f"must be >= 0 and <= 2^32-1, got {app.seed}")
    _require(1 <= t.epochs <= 10**6, "training.epochs", f"must be >= 1 and <= 10^6, got {t.epochs}")
    _require(1 <= t.batch_size <= MAX_POINTS, "training.batch_size", f"must be >= 1 and <= 10^8, got {t.batch_size}")
    # no upper bound: a huge rate diverges, which training reports (7)
    _require(t.learning_rate > 0, "training.learning_rate", f"must be > 0, got {t.learning_rate}")
    _require(0 <= t.patience <= 10**6, "training.patience", f"must be >= 0 and <= 10^6, got {t.patience}")
    _require(1 <= t.ensemble <= 100, "training.ensemble", f"must be >= 1 and <= 100, got {t.ensemble}")
    _require(0 <= t.min_val_windows <= MAX_POINTS, "training.min_val_windows",
             f"must be >= 0 and <= 10^8, got {t.min_val_windows}")
    _require(0 <= t.cpu_devices <= 256, "training.cpu_devices", f"must be >= 0 and <= 256, got {t.cpu_devices}")
    _require(t.cpu_devices == 0 or Distribute(t.distribute) == Distribute.mirrored, "training.cpu_devices",
             "splits the CPU for training.distribute=mirrored only; set both or neither")
    _require(1 <= m.units <= MAX_UNITS, "model.units", f"must be >= 1 and <= {MAX_UNITS}, got {m.units}")
    _require(1 <= m.layers <= 100, "model.layers", f"must be >= 1 and <= 100, got {m.layers}")
    _require(0 <= m.dropout < 1, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    _require(1 <= p.horizon <= MAX_STEPS, "preprocess.horizon", f"must be >= 1 and <= 10^7, got {p.horizon}")
    _require(0 <= p.max_missing_ratio < 1, "preprocess.max_missing_ratio",
             f"must be in [0, 1), got {p.max_missing_ratio}")
    _require(0 <= p.max_gap <= MAX_POINTS, "preprocess.max_gap", f"must be >= 0 and <= 10^8, got {p.max_gap}")
    _require(p.smoothing_lambda is None or p.smoothing_lambda > 0, "preprocess.smoothing_lambda",
             f"must be > 0 or null (GCV), got {p.smoothing_lambda}")
    r = p.split_ratios
    _require(len(r) == 3, "preprocess.split_ratios", f"needs 3 values (train, val, test), got {len(r)}")
    _require(all(x > 0 for x in r), "preprocess.split_ratios", f"every split must be > 0, got {list(r)}")
    _require(abs(sum(r) - 1.0) < 1e-6, "preprocess.split_ratios", f"must sum to 1, got {sum(r):g}")
    if p.split_indices is not None:
        s = p.split_indices
        _require(len(s) == 3 and 0 < s[0] < s[1] < s[2] <= MAX_POINTS, "preprocess.split_indices",
                 f"needs increasing [train_end, val_end, test_end] in [1, 10^8], got {list(s)}")
    _require(1 <= d.n_points <= MAX_POINTS, "data.n_points", f"must be >= 1 and <= 10^8, got {d.n_points}")
    _require(0 <= d.gap_ratio < 1, "data.gap_ratio", f"must be in [0, 1), got {d.gap_ratio}")
    _require(not app.tracking.enabled or bool(app.tracking.experiment.strip()), "tracking.experiment",
             "must not be empty (default: spline-lstm)")
    _require(0 <= d.gap_stretches <= d.n_points, "data.gap_stretches",
             f"must be in [0, data.n_points, got {d.gap_stretches}")
    _require(d.noise >= 0, "data.noise", f"must be >= 0, got {d.noise}")
    _require(bool(app.run_prefix), "run_prefix", "must not be empty")
    e, g = app.evaluation, app.gate
    _require(1 <= e.folds <= 1000, "evaluation.folds", f"must be >= 1 and <= 1000, got {e.folds}")
    _require(e.step is None or 1 <= e.step <= MAX_POINTS, "evaluation.step",
             f"must be >= 1 and <= 10^8 or null, got {e.step}")
    _require(-100 < g.min_improvement_pct < 100, "gate.min_improvement_pct",
             f"must be in (-100, 100), got {g.min_improvement_pct}")


AUTO = "auto"


def _parse_step_settings(app: AppConfig) -> None:
    """Season, difference and lookback in their canonical forms: an int, "auto",
    "seasonal" (difference) or None (season); ``seasonality.resolve`` turns them into
    the plain integers a run uses."""
    d, p = app.data, app.preprocess
    d.season = parse_season(d.season)
    p.lookback = parse_lookback(p.lookback)
    p.difference = parse_difference(p.difference, d.season)
    _require(d.season is not None or Interpolation(p.interpolation) != Interpolation.seasonal,
             "preprocess.interpolation", "seasonal needs a season; set data.season (auto or an integer), "
             "not none, or choose pchip")


def _steps(value: Any, key: str, low: int, words: str) -> Optional[int]:
    """An integer number of steps in [low, 10^7] (an int or its digits as text), or
    None when ``value`` is not integer-like; out of range raises."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    if not text.lstrip("+-").isdigit():
        return None
    n = int(text)
    _require(low <= n <= MAX_STEPS, key, f"must be {words} or an integer >= {low} and <= 10^7, got {n}")
    return n


def parse_season(value: Any) -> Any:
    """``data.season``: "auto", an int >= 1, or None (none / null: no season)."""
    if value is None or str(value).strip().lower() in ("none", "null"):
        return None
    if str(value).strip().lower() == AUTO:
        return AUTO
    n = _steps(value, "data.season", 1, "auto, none")
    _require(n is not None, "data.season", f"must be auto, none or an integer >= 1 and <= 10^7, got {value!r}")
    return n


def parse_lookback(value: Any) -> Any:
    """``preprocess.lookback``: "auto" or an int >= 1."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    n = _steps(value, "preprocess.lookback", 1, "auto")
    _require(n is not None, "preprocess.lookback", f"must be auto or an integer >= 1 and <= 10^7, got {value!r}")
    return n


DIFFERENCE_WORDS = {"none": 0, "first": 1}


def parse_difference(value: Any, season: Any) -> Any:
    """``preprocess.difference``: "auto", "seasonal" (needs a season) or an int lag >= 0
    (none = 0, first = 1)."""
    word = str(value).strip().lower() if isinstance(value, str) else None
    if word in DIFFERENCE_WORDS:
        return DIFFERENCE_WORDS[word]
    if word in (AUTO, "seasonal"):
        _require(word == AUTO or season is not None, "preprocess.difference",
                 "seasonal needs a season; set data.season (auto or an integer), not none")
        return word
    n = _steps(value, "preprocess.difference", 0, "auto, none, first, seasonal")
    _require(n is not None, "preprocess.difference",
             f"must be auto, none, first, seasonal or an integer lag >= 0 and <= 10^7, got {value!r}")
    return n


def _check_data(d: DataConfig) -> None:
    """Frequencies pandas knows, a start date it can parse, a synthetic grid that fits
    in pandas' timestamp range."""
    freqs = {"data.freq": d.freq, "data.synthetic_freq": d.synthetic_freq}
    offsets = {key: _offset(key, value) for key, value in freqs.items() if value is not None}
    if d.source != DataSource.synthetic:
        return
    import pandas as pd

    try:
        start = pd.Timestamp(d.start)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigInvalid(f"data.start: {d.start!r} is not a date pandas can parse "
                            f"(e.g. 2024-01-01): {one_line(str(exc), 120)}") from None
    _require(start is not pd.NaT, "data.start", f"{d.start!r} is not a date (NaT)")
    try:
        pd.date_range(start, periods=2, freq=offsets["data.synthetic_freq"])
        start + offsets["data.synthetic_freq"] * d.n_points
    except (ValueError, OverflowError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise ConfigInvalid(f"data.start: {d.n_points} steps of {d.synthetic_freq} from {d.start} leave "
                            f"pandas' timestamp range: {one_line(str(exc), 120)}") from None


def is_panel(d: DataConfig) -> bool:
    """Many series in one run (spline_lstm.data.panel): long format, wide format or a synthetic panel."""
    return bool(d.id_col or d.target_cols or d.paths or d.n_series > 1)


def _check_panel(app: "AppConfig") -> None:
    """Many-series settings that fit together; what this version does not do with many
    series is refused here, before anything is read."""
    d = app.data
    _require(d.n_series >= 1, "data.n_series", f"must be >= 1, got {d.n_series}")
    _require(d.n_series <= 10**6, "data.n_series", f"at most 1,000,000 series, got {d.n_series}")
    if d.source == DataSource.synthetic:
        _require(not (d.id_col or d.target_cols or d.paths), "data.id_col",
                 "data.id_col / target_cols / paths read files (data=csv); the synthetic panel is data.n_series=N")
    else:
        _require(d.n_series == 1, "data.n_series", "is for the synthetic source; a file's series come from "
                 "data.id_col (long format) or data.target_cols (wide format)")
        _require(not (d.id_col and d.target_cols), "data.target_cols",
                 "long format (data.id_col) and wide format (data.target_cols) exclude each other")
        _require(not d.paths or bool(d.id_col or d.target_cols), "data.paths",
                 "more files need data.id_col (long format) or data.target_cols (wide format)")
        _require(not d.target_cols or not (d.past_covariates or d.future_covariates), "data.target_cols",
                 "in wide format every listed column is a series; covariate columns need long format (data.id_col)")
        _require(not d.target_cols or not d.static_covariates, "data.static_covariates",
                 "static covariates are columns of a long-format file (data.id_col), constant per id")
        seen = set()
        for col in d.target_cols:
            _require(bool(str(col).strip()) and col != d.timestamp_col and col not in seen, "data.target_cols",
                     f"{col!r}: each target column once, none empty or the timestamp column")
            seen.add(col)
        if d.id_col:
            _require(d.id_col not in (d.timestamp_col, d.target_col, *d.past_covariates, *d.future_covariates,
                                      *d.static_covariates), "data.id_col",
                     f"{d.id_col!r} is also the timestamp, target or a covariate column")
    if d.shard is not None:
        i, _, n = str(d.shard).partition("/")
        ok = i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)
        _require(ok and is_panel(d), "data.shard", f"{d.shard!r}: 'i/N' with 0 <= i < N, e.g. 0/4, and many series "
                 "(data.id_col, data.target_cols or data.n_series)")
    other = (d.timestamp_col, d.target_col, d.id_col, *d.past_covariates, *d.future_covariates)
    for k, col in enumerate(d.static_covariates):
        _require(bool(str(col).strip()) and col not in other and col not in d.static_covariates[:k],
                 "data.static_covariates", f"{col!r}: each static column once, none empty or the timestamp, "
                 "target, id or a covariate column")
    if not is_panel(d):
        _require(not d.static_covariates, "data.static_covariates",
                 "static (per-series) covariates need many series (data.id_col, or data.n_series > 1 for the "
                 "synthetic panel); for one series a constant column adds nothing: leave it empty")
        return
    if d.source == DataSource.synthetic:
        _require(all(c == "category" for c in d.static_covariates), "data.static_covariates",
                 "the synthetic panel has one static covariate, 'category'")
    _require(app.evaluation.mode != EvaluationMode.backtest, "evaluation",
             "backtests of many series are not built in this version: use evaluation=holdout")
    _require(Smoothing(app.preprocess.smoothing) == Smoothing.none, "preprocess.smoothing",
             "smoothing splines are for one series; with many series use preprocess.smoothing=none")
    _require(not app.preprocess.difference_past_covariates, "preprocess.difference_past_covariates",
             "not available with many series")


def _check_covariates(d: DataConfig) -> None:
    """Covariate columns: from a file, each named once, none the timestamp or the target."""
    named = [("data.past_covariates", c) for c in d.past_covariates] + \
        [("data.future_covariates", c) for c in d.future_covariates]
    _require(not named or d.source == DataSource.file, named[0][0] if named else "",
             "covariate columns need a file (data=csv); the synthetic series has none (data.calendar works)")
    seen: dict = {}
    for key, col in named:
        _require(bool(str(col).strip()), key, "column names must not be empty")
        _require(col not in (d.timestamp_col, d.target_col), key,
                 f"{col!r} is data.timestamp_col or data.target_col, not a covariate")
        _require(col not in seen, key, f"{col!r} is also listed in {seen.get(col)}; name each column once")
        seen[col] = key
    cal = [Calendar(c).value for c in d.calendar]
    _require(len(set(cal)) == len(cal), "data.calendar", f"names a feature twice: {cal}")


def _offset(key: str, value: str):
    """A pandas offset alias with a positive step (``h``, ``15min``, ``MS``, ``W-MON``)."""
    from pandas.tseries.frequencies import to_offset

    try:
        offset = to_offset(value)
    except (ValueError, TypeError) as exc:
        raise ConfigInvalid(f"{key}: {value!r} is not a pandas frequency (e.g. h, 15min, D, MS, W-MON)") from exc
    _require(offset is not None and offset.n > 0, key, f"{value!r} must step forward in time")
    return offset


def to_plain(app: Any) -> Any:
    """A JSON-ready dict of a (typed) config: enums become their values."""
    return OmegaConf.to_container(OmegaConf.structured(app), resolve=True, enum_to_str=True)


def flatten(tree: Any, prefix: str = "") -> dict:
    """``{"training.epochs": 3, ...}`` from a nested dict."""
    out: dict = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = tree
    return out


MAX_RETRIES = 10  # MLflow refuses more (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)


MAX_BACKOFF_FACTOR = 120  # and a larger factor (_MLFLOW_HTTP_REQUEST_MAX_BACKOFF_FACTOR_LIMIT)


def is_http(uri: Optional[str]) -> bool:
    return bool(uri) and uri.startswith(("http://", "https://"))


def check_http_settings(tracking: TrackingConfig) -> None:
    """Refuse values MLflow would reject only at the first request, and HTTP settings
    without an HTTP server (``tracking=server`` with no ``tracking.uri``): ConfigInvalid, exit 2."""
    settings = (tracking.http_timeout_s, tracking.http_retries, tracking.http_backoff_factor)
    if tracking.enabled and not is_http(tracking.uri) and any(v is not None for v in settings):
        raise ConfigInvalid("tracking.uri: tracking=server needs the server's address, e.g. "
                            "tracking.uri=http://mlflow.internal:5000")
    checks = (("http_timeout_s", tracking.http_timeout_s, 1, None),
              ("http_retries", tracking.http_retries, 0, MAX_RETRIES),
              ("http_backoff_factor", tracking.http_backoff_factor, 0, MAX_BACKOFF_FACTOR))
    for key, value, low, high in checks:
        if value is not None and (value < low or (high is not None and value > high)):
            span = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigInvalid(f"tracking.{key}: must be {span} or null, got {value}")


# What MLflow's registry accepts (mlflow.utils.validation: _validate_model_name,
# _validate_model_alias_name, _validate_model_alias_name_reserved; the name column is
# 256 characters), mirrored so a name it would refuse stops the run before training (exit 2).
MAX_MODEL_NAME_LENGTH = 256
MAX_ALIAS_LENGTH = 255
MAX_EXPERIMENT_NAME_LENGTH = 500
REGISTRY_ALIAS = "candidate"  # the alias a run sets on its new version once its gate passed
_ALIAS_RE = re.compile(r"^[\w\-]+$")


def registered_model_name_problem(name: str) -> Optional[str]:
    """Why MLflow (or a ``models:/NAME@ALIAS`` URI) would refuse ``name``; None when it is fine."""
    if not name.strip():
        return "must not be empty or blank"
    if len(name) > MAX_MODEL_NAME_LENGTH:
        return f"is {len(name)} characters long, the registry keeps at most {MAX_MODEL_NAME_LENGTH}"
    bad = sorted({c for c in name if c in "/:@" or not c.isprintable()})
    if bad:
        return (f"contains {', '.join(repr(c) for c in bad)}; MLflow names cannot contain '/' or ':', "
                "and '@' separates the alias in models:/NAME@ALIAS")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(".."):
        return f"would resolve to the path {norm!r}; MLflow refuses names that are not unique as paths"
    if name != name.strip():
        return "has leading or trailing whitespace"
    return None


def alias_problem(alias: str) -> Optional[str]:
    """Why MLflow would refuse ``alias`` as a registered model alias; None when it is fine."""
    if not _ALIAS_RE.match(alias):
        return "may only contain letters, digits, '_' and '-' (and not be empty)"
    if len(alias) > MAX_ALIAS_LENGTH:
        return f"is {len(alias)} characters long, MLflow keeps at most {MAX_ALIAS_LENGTH}"
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        return "is reserved by MLflow ('latest' and version aliases like v1)"
    return None


def check_registry_settings(tracking: TrackingConfig) -> None:
    """``tracking.register_model`` and ``tracking.experiment`` as MLflow will take them,
    registration only with tracking on, and ``tracking.uri`` a URI (not a plain path):
    ConfigInvalid (exit 2) before anything is written."""
    if tracking.experiment is not None and len(tracking.experiment) > MAX_EXPERIMENT_NAME_LENGTH:
        raise ConfigInvalid(f"tracking.experiment: is {len(tracking.experiment)} characters long, MLflow keeps at "
                            f"most {MAX_EXPERIMENT_NAME_LENGTH}")
    uri = tracking.uri
    if tracking.enabled and uri is not None:
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else None
        if not scheme or scheme == "file":
            raise ConfigInvalid(f"tracking.uri: {mask_uri(uri)!r} is not a URI (file stores are not supported); "
                                "use sqlite:///path/mlflow.db or http://host:port")
    name = tracking.register_model
    if name is None:
        return
    problem = registered_model_name_problem(name)
    if problem:
        raise ConfigInvalid(f"tracking.register_model: {name!r} {problem}")
    if not tracking.enabled:
        raise ConfigInvalid("tracking.register_model: registering a model needs tracking; drop tracking=none "
                            "or tracking.register_model")
    problem = alias_problem(REGISTRY_ALIAS)
    if problem:  # a constant, checked like any alias
        raise ConfigInvalid(f"alias {REGISTRY_ALIAS!r} {problem}")
