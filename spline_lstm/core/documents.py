"""Typed documents of a run: the JSON files the pipeline writes and the commands read.

Each is a dataclass written in one place (``to_dict``; for metadata key order = field
order, so the JSON stays what docs/concepts.md#canonical-artifacts shows) and read in one place (``from_dict`` /
``read_metadata``), by health, the console summary, the sweep table and ``runs``.
Reading is lenient: a key an older run lacks takes its default, and values keep the
types found in the file, so the health gate can still report a tampered field rather
than fail on it here. Standard library only: commands that do not train read these too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from spline_lstm.core.jsonio import read_json


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def skill_scores(skill: Optional[dict]) -> tuple:
    """See ``MetricsDoc.skill_scores``; for the plain metrics dict the report reads."""
    s = skill if isinstance(skill, dict) else {}
    metric = s.get("metric") if isinstance(s.get("metric"), str) else "rmse"
    return (metric, _number(s.get("model_score", s.get("model_rmse"))),
            _number(s.get("best_baseline_score", s.get("best_baseline_rmse"))))


@dataclass
class MetricsDoc:
    """``metrics/<run_id>.json``: the model's test metrics, every baseline's (the naive ones
    and the classical yardsticks, by name), the quality verdict and, with
    ``evaluation=backtest``, the per-fold / per-step backtest."""

    run_id: str
    metrics: Dict[str, float]
    checkpoints: Dict[str, str]
    baselines: Dict[str, Dict[str, float]] = field(default_factory=dict)
    improvement_pct: Dict[str, float] = field(default_factory=dict)
    units: str = "original"
    evaluated_on: str = "observed test targets"
    test_windows: Optional[int] = None
    evaluated_points: Optional[int] = None
    horizon: Optional[int] = None
    epochs_run: Optional[int] = None
    best_epoch: Optional[int] = None
    history: Dict[str, List[float]] = field(default_factory=dict)
    yardsticks: Dict[str, dict] = field(default_factory=dict)  # name -> status, detail, fit_s
    skill: Optional[dict] = None  # evaluate.skill_verdict; None in runs before the quality gate
    backtest: Optional[dict] = None  # backtest.summary; None with evaluation=holdout
    validation: Dict[str, float] = field(default_factory=dict)  # the best model on the validation split (HPO objective)
    # many series (spline_lstm.data.panel): count, per_series {id: {forecaster: metrics}}, distribution
    series: Optional[dict] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    REQUIRED = ("run_id", "metrics", "checkpoints")

    @staticmethod
    def problems(doc: dict) -> List[str]:
        """What the health gate refuses in a metrics document (docs/concepts.md#health-gate, check 3)."""
        out = [f"metrics has no '{key}'" for key in MetricsDoc.REQUIRED if key not in doc]
        metrics = doc.get("metrics")
        rmse = metrics.get("rmse") if isinstance(metrics, dict) else None
        if _number(rmse) is None or not math.isfinite(rmse):
            out.append(f"metrics.rmse is not a finite number ({rmse!r})")
        series = doc.get("series")
        if series is not None:
            out.extend(MetricsDoc.series_problems(series))
        return out

    @staticmethod
    def series_problems(series: Any) -> List[str]:
        """Many series: a table with one entry per series, each with the model's metrics,
        and at least one series scored."""
        if not isinstance(series, dict) or not isinstance(series.get("per_series"), dict):
            return ["metrics.series has no per_series table"]
        table, count = series["per_series"], series.get("count")
        out = []
        if not isinstance(count, int) or isinstance(count, bool) or count < 1 or len(table) != count:
            out.append(f"metrics.series.count ({count!r}) is not the number of per-series entries ({len(table)})")
        bad = [str(k) for k, v in table.items() if not isinstance(v, dict) or not isinstance(v.get("model"), dict)]
        if bad:
            out.append(f"metrics.series.per_series: {len(bad)} entries without the model's metrics (first {bad[0]!r})")
        scored = [v["model"].get("rmse") for v in table.values() if isinstance(v, dict) and isinstance(v.get("model"), dict)]
        if not any(_number(r) is not None and math.isfinite(r) for r in scored):
            out.append("metrics.series: no series has a finite model rmse")
        return out

    @classmethod
    def from_dict(cls, doc: dict) -> "MetricsDoc":
        """Lenient: missing fields take their defaults, wrong-typed ones are dropped."""
        if not isinstance(doc, dict):
            raise TypeError("a metrics document is a JSON object")
        names = {f.name for f in fields(cls)} - {"extra"}
        kwargs: Dict[str, Any] = {"run_id": doc.get("run_id"), "metrics": doc.get("metrics") or {},
                                  "checkpoints": doc.get("checkpoints") or {}}
        for f in fields(cls):
            if f.name in doc and f.name not in kwargs and f.name != "extra":
                kwargs[f.name] = doc[f.name]
        kwargs["extra"] = {k: v for k, v in doc.items() if k not in names}
        for key in ("metrics", "checkpoints", "baselines", "improvement_pct", "history", "yardsticks", "validation"):
            if not isinstance(kwargs.get(key, {}), dict):
                kwargs[key] = {}
        for key in ("skill", "backtest", "series"):
            if key in kwargs and not isinstance(kwargs[key], dict):
                kwargs[key] = None
        return cls(**kwargs)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {**out, **self.extra}

    # --- what readers ask ---------------------------------------------------------------

    @property
    def rmse(self) -> Optional[float]:
        return _number(self.metrics.get("rmse"))

    @property
    def val_rmse(self) -> Optional[float]:
        """The best model's validation rmse in the series' units (the HPO objective)."""
        return _number(self.validation.get("rmse"))

    def baseline_rmse(self) -> Dict[str, Optional[float]]:
        return {n: _number(b.get("rmse")) if isinstance(b, dict) else None for n, b in self.baselines.items()}

    @property
    def skill_verdict(self) -> Optional[str]:
        verdict = (self.skill or {}).get("verdict")
        return verdict if isinstance(verdict, str) else None

    @property
    def skill_scores(self) -> tuple:
        """(metric, model's score, best baseline's score) the verdict compared; runs before
        many series recorded them as ``model_rmse`` / ``best_baseline_rmse``."""
        return skill_scores(self.skill)

    @property
    def skill_mode(self) -> Optional[str]:
        mode = (self.skill or {}).get("mode")
        return mode if isinstance(mode, str) else None

    def val_rmse_scaled(self) -> Optional[float]:
        """The best epoch's validation rmse, in the scaled units training minimises."""
        val_loss = self.history.get("val_loss") or []
        best = self.best_epoch
        if isinstance(best, int) and 0 < best <= len(val_loss) and _number(val_loss[best - 1]) is not None:
            return math.sqrt(val_loss[best - 1]) if val_loss[best - 1] >= 0 else None
        return None


@dataclass
class MetadataDoc:
    """``metadata/<run_id>.json``: the run's reproducibility record."""

    run_id: Any = None
    sweep_id: Optional[str] = None
    preset: Optional[str] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    duration_s: Optional[float] = None
    config: Dict[str, Any] = field(default_factory=dict)
    overrides: List[str] = field(default_factory=list)
    command: List[str] = field(default_factory=list)
    seed: Optional[int] = None
    determinism: Dict[str, Any] = field(default_factory=dict)
    splits: Dict[str, Any] = field(default_factory=dict)
    choices: Optional[Dict[str, Any]] = None  # season / fill / difference / lookback as resolved, and why
    versions: Dict[str, Optional[str]] = field(default_factory=dict)
    git_commit: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)
    artifacts: Any = None  # kind -> {path, sha256, size}; None: no hash record (the gate fails it)
    plots: Any = field(default_factory=dict)  # plot file name -> {sha256, size}
    mlflow: Dict[str, Optional[str]] = field(default_factory=dict)  # tracking_uri, experiment, ids
    hydra_run_dir: Optional[str] = None
    log_path: Optional[str] = None
    timings_s: Dict[str, float] = field(default_factory=dict)
    host: Dict[str, Any] = field(default_factory=dict)
    threads: Dict[str, Any] = field(default_factory=dict)  # thread budget in effect (spline_lstm.core.threads)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> "MetadataDoc":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def experiment(self) -> Optional[str]:
        """The MLflow experiment the run was recorded in (None: not tracked or not recorded)."""
        return self.mlflow.get("experiment") if isinstance(self.mlflow, dict) else None


def read_metadata(path: Path) -> MetadataDoc:
    """Parse ``metadata/<run_id>.json`` with the project's bounded JSON reader
    (a malformed file raises its typed error, exit code 9)."""

    return MetadataDoc.from_dict(read_json(path))
