"""Typed configuration: one dataclass per Hydra group, registered in the ConfigStore.

The schemas make OmegaConf reject unknown keys, wrong types and unknown enum
values while Hydra composes the config; ``validate`` adds the range and
cross-field rules a type cannot express. Both run before anything is written:
``hydra.run.dir`` is computed by the ``held_run_dir`` resolver, which
validates the whole config and the run_id first.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from spline_lstm.errors import ConfigInvalid


class DataSource(str, Enum):
    synthetic = "synthetic"
    file = "file"


class DuplicatePolicy(str, Enum):
    error = "error"
    mean = "mean"
    last = "last"


class Interpolation(str, Enum):
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


@dataclass
class DataConfig:
    source: DataSource = DataSource.synthetic
    path: Optional[str] = None  # CSV or Parquet (chosen by extension) when source=file
    timestamp_col: str = "timestamp"
    target_col: str = "value"
    freq: Optional[str] = None  # pandas offset alias; None = inferred from the timestamps
    season: Optional[int] = None  # seasonal period in steps (seasonal naive, seasonal MASE)
    duplicates: DuplicatePolicy = DuplicatePolicy.error
    coerce_errors: bool = False  # non-numeric target cells become gaps instead of an error
    # synthetic generator
    n_points: int = 720
    start: str = "2024-01-01"
    synthetic_freq: str = "h"
    gap_ratio: float = 0.03  # share of isolated missing points
    gap_stretches: int = 3  # number of multi-step missing stretches
    noise: float = 0.3


@dataclass
class PreprocessConfig:
    interpolation: Interpolation = Interpolation.pchip
    smoothing: Smoothing = Smoothing.none
    smoothing_lambda: Optional[float] = None  # None = chosen by GCV
    scaling: Scaling = Scaling.standard
    max_missing_ratio: float = 0.2
    max_gap: int = 24  # longest run of consecutive missing steps that may be filled
    difference: int = 0  # model y[t] - y[t-difference] (1 = trend, season = seasonal); 0 = levels
    lookback: int = 24
    horizon: int = 1
    split_ratios: List[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_indices: Optional[List[int]] = None  # [train_end, val_end, test_end] row indices


@dataclass
class ModelConfig:
    cell: Cell = Cell.lstm
    units: int = 32
    layers: int = 1
    dropout: float = 0.0


@dataclass
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 5
    shuffle: bool = True


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


@dataclass
class AppConfig:
    data: DataConfig = MISSING
    preprocess: PreprocessConfig = MISSING
    model: ModelConfig = MISSING
    training: TrainingConfig = MISSING
    paths: PathsConfig = MISSING
    tracking: TrackingConfig = MISSING
    run_prefix: str = "run"
    run_id: str = "${run_id_default:${run_prefix}}"
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
}


def register_configs() -> None:
    """Register the schemas; conf/ YAML files extend them via their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="app_schema", node=AppConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"{group}_schema", node=node)
    _register_resolvers()


# --- run_id ---------------------------------------------------------------

def new_run_id(prefix: str) -> str:
    """``<prefix>-<YYYYmmdd-HHMMSS>-<4 hex>`` (CONTRACT §3)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def new_sweep_id() -> str:
    return new_run_id("sweep")


def _checked_run_id(_root_: DictConfig) -> str:
    """Validate config and run_id before Hydra creates the job directory."""
    from spline_lstm.artifacts import ArtifactLayout, validate_run_id

    app = validate(_root_)
    validate_run_id(app.run_id)
    ArtifactLayout(Path(app.paths.artifacts_dir)).ensure_unclaimed(app.run_id)
    return app.run_id


def _held_run_dir(outputs_dir: str, _root_: DictConfig) -> str:
    """``hydra.run.dir``: runs/<run_id>, validated, then held against a second
    launch with the same run_id (see artifacts.hold_run_dir)."""
    from spline_lstm.artifacts import hold_run_dir

    run_id = _checked_run_id(_root_)
    run_dir = f"{outputs_dir}/runs/{run_id}"
    hold_run_dir(Path(run_dir), run_id)
    return run_dir


def _register_resolvers() -> None:
    # Cached per config object: every later access in the same job sees the same
    # id, while each sweep job (composed separately) gets its own.
    if not OmegaConf.has_resolver("run_id_default"):
        OmegaConf.register_new_resolver("run_id_default", new_run_id, use_cache=True)
    if not OmegaConf.has_resolver("checked_run_id"):
        OmegaConf.register_new_resolver("checked_run_id", _checked_run_id)
    if not OmegaConf.has_resolver("held_run_dir"):
        OmegaConf.register_new_resolver("held_run_dir", _held_run_dir)
    if not OmegaConf.has_resolver("sweep_id"):
        # launch.py fixes one sweep id per process tree so every job shares it.
        OmegaConf.register_new_resolver(
            "sweep_id", lambda: os.environ.setdefault("SPLINE_LSTM_SWEEP_ID", new_sweep_id()))


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
        from spline_lstm.errors import _config_message

        raise ConfigInvalid(_config_message(exc)) from exc
    # Keep the interpolated run_id from the original (cached) config object.
    if resolve_run_id:
        app.run_id = str(cfg.run_id)
    d, p, m, t = app.data, app.preprocess, app.model, app.training
    _require(t.epochs >= 1, "training.epochs", f"must be >= 1, got {t.epochs}")
    _require(t.batch_size >= 1, "training.batch_size", f"must be >= 1, got {t.batch_size}")
    _require(t.learning_rate > 0, "training.learning_rate", f"must be > 0, got {t.learning_rate}")
    _require(t.patience >= 0, "training.patience", f"must be >= 0, got {t.patience}")
    _require(m.units >= 1, "model.units", f"must be >= 1, got {m.units}")
    _require(m.layers >= 1, "model.layers", f"must be >= 1, got {m.layers}")
    _require(0 <= m.dropout < 1, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    _require(p.lookback >= 1, "preprocess.lookback", f"must be >= 1, got {p.lookback}")
    _require(p.horizon >= 1, "preprocess.horizon", f"must be >= 1, got {p.horizon}")
    _require(0 <= p.max_missing_ratio < 1, "preprocess.max_missing_ratio",
             f"must be in [0, 1), got {p.max_missing_ratio}")
    _require(p.difference >= 0, "preprocess.difference", f"must be >= 0, got {p.difference}")
    _require(p.max_gap >= 0, "preprocess.max_gap", f"must be >= 0, got {p.max_gap}")
    _require(p.smoothing_lambda is None or p.smoothing_lambda > 0, "preprocess.smoothing_lambda",
             f"must be > 0 or null (GCV), got {p.smoothing_lambda}")
    r = p.split_ratios
    _require(len(r) == 3, "preprocess.split_ratios", f"needs 3 values (train, val, test), got {len(r)}")
    _require(all(x > 0 for x in r), "preprocess.split_ratios", f"every split must be > 0, got {list(r)}")
    _require(abs(sum(r) - 1.0) < 1e-6, "preprocess.split_ratios", f"must sum to 1, got {sum(r):g}")
    if p.split_indices is not None:
        s = p.split_indices
        _require(len(s) == 3 and 0 < s[0] < s[1] < s[2], "preprocess.split_indices",
                 f"needs increasing [train_end, val_end, test_end] > 0, got {list(s)}")
    _require(d.season is None or d.season >= 1, "data.season", f"must be >= 1 or null, got {d.season}")
    _require(d.n_points >= 1, "data.n_points", f"must be >= 1, got {d.n_points}")
    _require(0 <= d.gap_ratio < 1, "data.gap_ratio", f"must be in [0, 1), got {d.gap_ratio}")
    _require(bool(app.run_prefix), "run_prefix", "must not be empty")
    from spline_lstm.tracking_server import check_http_settings

    check_http_settings(app.tracking)
    app.paths.outputs_dir = str(Path(app.paths.outputs_dir).expanduser().absolute())
    app.paths.artifacts_dir = str(Path(app.paths.artifacts_dir).expanduser().absolute())
    return app


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
