"""Many series in one run: load them onto one shared time grid, and the per-series
bookkeeping a global model needs (spans, split bounds, window starts, metrics).

Input (``data`` group):
- long format, ``data.id_col``: one row per (id, timestamp); the target, covariate and
  static columns beside them; ``data.paths`` adds files of the same layout;
- wide format, ``data.target_cols``: each listed column is one series; with
  ``data.paths`` the ids are ``<file stem>:<column>`` (ETTh1:OT, ETTh2:OT);
- synthetic, ``data.n_series=N``: ``synthetic.related_series`` (shared season, gaps,
  one static covariate ``category``).

Every series is validated by the single-series rules (``data.to_series`` and
``regularise``: numeric, duplicates, coercion, its frequency) and placed on the
shared grid from the earliest to the latest timestamp of any series. A panel is
an [n, T] array: NaN = gap, or outside the series' observed span ``spans[k]``.

Splits are by time: the same cut-offs on the grid for every series (no series'
future leaks into another's training). A series whose span starts later simply has
a shorter training split; every series must pass the run's input rules
(``preprocess.check_series``) on its own span.

The model sees the flattened panel (row k at offset k*T): a window start ``k*T + t``
never reaches outside series k (``window_starts``), so one ``WindowSource`` streams
windows of every series without materialising them.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from spline_lstm.config import DataConfig, DataSource
from spline_lstm.errors import InputInvalid

log = logging.getLogger("spline_lstm")
MAX_SHOWN_IDS = 5


@dataclass
class Panel:
    ids: Tuple[str, ...]
    timestamps: pd.DatetimeIndex  # the shared grid, T points
    values: np.ndarray  # [n, T] float64, NaN = gap or outside the series' span
    freq: str
    source: str
    summary: dict
    file_sha256: Optional[str] = None  # one file: its sha256; several: the sha256 of their sha256s
    covariates: Dict[str, np.ndarray] = field(default_factory=dict)  # column -> [n, T]
    statics: Dict[str, list] = field(default_factory=dict)  # column -> one raw value per series

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def length(self) -> int:
        return len(self.timestamps)


# --- loading ----------------------------------------------------------------------------------------

def load_panel(cfg: DataConfig, seed: int, preset: Optional[str] = None) -> Panel:
    """Read and validate the configured series (see module doc) onto one grid; with
    ``data.shard=i/N`` only that shard's series (``in_shard``)."""
    panel = _load(cfg, seed, preset)
    if cfg.shard is None:
        return panel
    keep = in_shard(panel.ids, cfg.shard)
    if not keep.any():
        raise InputInvalid(f"data.shard={cfg.shard}: none of the {panel.n} series falls in this shard; use fewer shards")
    log.info("data.shard=%s: %d of %d series", cfg.shard, int(keep.sum()), panel.n)
    return replace(panel, ids=tuple(i for i, k in zip(panel.ids, keep) if k), values=panel.values[keep],
                   covariates={c: v[keep] for c, v in panel.covariates.items()},
                   statics={c: [v for v, k in zip(vals, keep) if k] for c, vals in panel.statics.items()},
                   summary={**panel.summary, "series": int(keep.sum()), "shard": cfg.shard, "series_before_shard": panel.n})


def in_shard(ids: Tuple[str, ...], shard: str) -> np.ndarray:
    """Series i of shard "k/N": crc32(id) % N == k. Stable across runs, machines and
    Python versions (not ``hash``), so every job of a sweep over k = 0..N-1 takes a
    disjoint share and together they take every series."""
    import zlib

    k, n = (int(x) for x in str(shard).split("/"))
    return np.array([zlib.crc32(i.encode("utf-8")) % n == k for i in ids], dtype=bool)


def _load(cfg: DataConfig, seed: int, preset: Optional[str]) -> Panel:
    if cfg.source == DataSource.synthetic:
        return _synthetic(cfg, seed)
    from spline_lstm.data import _sha256

    if not cfg.path:
        which = f"preset {preset}" if preset else "data=csv"
        raise InputInvalid(f"data.path is required for {which}: pass data.path=/path/to/file.csv")
    files = [Path(os.path.expanduser(p)).absolute() for p in [cfg.path, *cfg.paths]]
    if len(set(files)) < len(files):
        raise InputInvalid(f"data.path / data.paths name a file twice: {', '.join(map(str, files))}")
    series: List[tuple] = []  # (id, regular pd.Series, covariates {col: pd.Series}, statics {col: value}, where)
    rows = 0
    for path in files:
        read = _long if cfg.id_col else _wide
        got, n_rows = read(path, cfg, prefix=f"{path.stem}:" if len(files) > 1 else "")
        series += got
        rows += n_rows
    ids = [s[0] for s in series]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if dup:
        raise InputInvalid(f"series id {dup[0]!r} appears in more than one file; ids must be unique")
    shas = [_sha256(p) for p in files]
    sha = shas[0] if len(shas) == 1 else hashlib.sha256("".join(shas).encode()).hexdigest()
    where = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
    return _on_grid(series, cfg, where, sha, rows)


def _long(path: Path, cfg: DataConfig, prefix: str) -> tuple:
    from spline_lstm.data import read_table

    extra = [cfg.id_col, *cfg.past_covariates, *cfg.future_covariates, *cfg.static_covariates]
    frame = read_table(path, cfg.timestamp_col, cfg.target_col, extra=extra)
    ids = frame[cfg.id_col]
    if ids.isna().any():
        first = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise InputInvalid(f"{path}: column {cfg.id_col!r} (data.id_col) is empty in {int(ids.isna().sum())} rows "
                           f"(first at data row {first + 1}); every row needs its series id")
    out = []
    for key, part in frame.groupby(ids.astype(str), sort=False):
        where = f"{path} series {key!r}"
        statics = {}
        for col in cfg.static_covariates:
            vals = part[col].dropna().unique()
            if len(vals) != 1:
                raise InputInvalid(f"{where}: static covariate {col!r} must hold one value per series, found "
                                   f"{len(vals)} ({', '.join(map(repr, vals[:3].tolist()))}); fix the file")
            statics[col] = vals[0].item() if hasattr(vals[0], "item") else vals[0]
        out.append((prefix + key, part.reset_index(drop=True), statics, where, cfg.target_col))
    return _regular(out, cfg), len(frame)


def _wide(path: Path, cfg: DataConfig, prefix: str) -> tuple:
    from spline_lstm.data import read_table

    first, *rest = cfg.target_cols
    frame = read_table(path, cfg.timestamp_col, first, extra=rest)
    out = [(prefix + col, frame, {}, f"{path} column {col!r}", col) for col in cfg.target_cols]
    return _regular(out, cfg), len(frame)


def _regular(parts: list, cfg: DataConfig) -> list:
    """Each series by the single-series rules, on its own regular grid."""
    from spline_lstm.data import covariate_values, regularise, to_series

    out = []
    for sid, frame, statics, where, col in parts:
        one = replace(cfg, target_col=col)
        raw = to_series(frame, one, where)
        regular, freq = regularise(raw, cfg.freq, where)
        cov = {c: covariate_values(frame, c, one, regular.index, freq, where)
               for c in [*cfg.past_covariates, *cfg.future_covariates]}
        out.append((sid, regular, freq, cov, statics, where,
                    {**raw.attrs, "absent": len(regular) - len(raw.index.unique())}))
    return out


def _on_grid(series: list, cfg: DataConfig, where: str, sha: str, rows: int) -> Panel:
    """Every series on the grid from the earliest to the latest timestamp, at one frequency."""
    from spline_lstm.data import _offset, check_grid_size, require_observed

    freqs = {s[2] for s in series}
    if len(freqs) > 1:
        shown = ", ".join(f"{s[0]!r}: {s[2]}" for s in series[:MAX_SHOWN_IDS])
        raise InputInvalid(f"{where}: the series have different frequencies ({shown}); set data.freq, or give "
                           "series of one frequency")
    freq = freqs.pop()
    start = min(s[1].index[0] for s in series)
    end = max(s[1].index[-1] for s in series)
    offset = _offset(freq, where, _hints())
    check_grid_size(pd.DatetimeIndex([start, end]), offset, freq, where, _hints())
    grid = pd.date_range(start, end, freq=offset, unit=series[0][1].index.unit)
    n, t = len(series), len(grid)
    values = np.full((n, t), np.nan)
    covariates = {c: np.full((n, t), np.nan) for c in [*cfg.past_covariates, *cfg.future_covariates]}
    for k, (sid, regular, _, cov, _, swhere, _) in enumerate(series):
        require_observed(regular.to_numpy(), sid, swhere)
        pos = grid.get_indexer(regular.index)
        if (pos < 0).any():
            raise InputInvalid(f"{swhere}: timestamps are off the shared {freq!r} grid of the other series (first "
                               f"{regular.index[pos < 0][0]}); give every series the same phase")
        values[k, pos] = regular.to_numpy(dtype=np.float64)
        for c, v in cov.items():
            covariates[c][k, pos] = v
    attrs = [s[6] for s in series]
    summary = {"rows": int(rows), "series": n,
               "non_numeric_coerced": int(sum(a.get("non_numeric", 0) for a in attrs)),
               "infinite_as_missing": int(sum(a.get("infinite", 0) for a in attrs)),
               "duplicates_merged": int(sum(a.get("duplicates", 0) for a in attrs)),
               "grid_points": int(n * t), "absent_timestamps": int(sum(a["absent"] for a in attrs)), "freq": freq}
    statics = {c: [s[4][c] for s in series] for c in cfg.static_covariates}
    return Panel(tuple(s[0] for s in series), grid, values, freq, where, summary, sha, covariates, statics)


def _hints():
    from spline_lstm.data import TRAINING_HINTS

    return TRAINING_HINTS


def _synthetic(cfg: DataConfig, seed: int) -> Panel:
    from spline_lstm.synthetic import related_series

    n = cfg.n_series
    period = cfg.season if isinstance(cfg.season, int) and cfg.season >= 2 else 24
    gen = related_series(n, cfg.n_points, period=period, seed=seed, gap_ratio=cfg.gap_ratio,
                         gap_stretches=cfg.gap_stretches, noise=cfg.noise, k_past=0, k_future=0)
    grid = pd.date_range(cfg.start, periods=cfg.n_points, freq=cfg.synthetic_freq)
    width = len(str(n - 1))
    ids = tuple(f"s{k:0{width}d}" for k in range(n))
    summary = {"rows": int(n * cfg.n_points), "series": n, "non_numeric_coerced": 0, "infinite_as_missing": 0,
               "duplicates_merged": 0, "grid_points": int(n * cfg.n_points), "absent_timestamps": 0,
               "freq": cfg.synthetic_freq}
    statics = {"category": [int(c) for c in gen.static]} if "category" in cfg.static_covariates else {}
    return Panel(ids, grid, gen.values, cfg.synthetic_freq, "synthetic", summary, None, {}, statics)


# --- spans, bounds and windows ---------------------------------------------------------------------

def spans(values: np.ndarray) -> np.ndarray:
    """[n, 2] (first observed index, last observed index + 1) of every series."""
    observed = ~np.isnan(values)
    lo = observed.argmax(axis=1)
    hi = values.shape[1] - observed[:, ::-1].argmax(axis=1)
    return np.stack([lo, hi], axis=1).astype(np.int64)


def local_bounds(bounds: np.ndarray, span) -> np.ndarray:
    """The grid's split bounds seen from inside one series' span."""
    lo, hi = int(span[0]), int(span[1])
    return np.clip(np.asarray(bounds, dtype=np.int64) - lo, 0, hi - lo)


def window_starts(bounds: np.ndarray, spans_: np.ndarray, length: int, split: int, lookback: int, horizon: int,
                  difference: int) -> np.ndarray:
    """Flat start indices ``k * length + t`` of every series' windows of a split: what
    ``preprocess.window_starts`` gives for the series' own span, shifted onto the grid."""
    lo, hi = spans_[:, 0], spans_[:, 1]
    first = np.maximum(np.clip(bounds[split], lo, hi), lo + lookback + difference)
    last = np.clip(bounds[split + 1], lo, hi) - horizon
    count = np.maximum(last - first + 1, 0)
    if not count.sum():
        return np.empty(0, dtype=np.int64)
    base = np.repeat(first + np.arange(len(lo)) * length, count)
    step = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return (base + step).astype(np.int64)


def series_of(starts: np.ndarray, length: int) -> np.ndarray:
    return (np.asarray(starts) // length).astype(np.int64)


def difference(values: np.ndarray, lag: int) -> np.ndarray:
    """``preprocess.difference`` of every row."""
    if lag == 0:
        return values.copy()
    out = np.full_like(values, np.nan)
    out[:, lag:] = values[:, lag:] - values[:, :-lag]
    return out


def representative(values: np.ndarray, bounds: np.ndarray) -> int:
    """The series with the most observed training points (the first on a tie): the one
    ``seasonality.resolve`` chooses auto settings on."""
    return int(np.argmax((~np.isnan(values[:, : int(bounds[1])])).sum(axis=1)))


# --- metrics per series ------------------------------------------------------------------------------

def per_series_metrics(actual: np.ndarray, forecasts: Dict[str, np.ndarray], series: np.ndarray,
                       scales: np.ndarray, ids: Tuple[str, ...]) -> Dict[str, Dict[str, dict]]:
    """{id: {forecaster: metrics}} on each series' own test windows and MASE scale:
    ``evaluate.forecast_metrics`` of each series, bit for bit, computed for all the series
    with the same number of observed targets at once (``_same_length_metrics``; one call
    per series and forecaster took 10 s at 10^4 series)."""
    from spline_lstm.evaluate import forecast_metrics

    order = np.argsort(series, kind="stable")
    a = actual[order].reshape(len(order), -1)
    finite = np.isfinite(a)
    ks, first, n_rows = np.unique(series[order], return_index=True, return_counts=True)
    owner = np.broadcast_to(np.repeat(np.arange(ks.size), n_rows)[:, None], a.shape)[finite]
    lengths = np.bincount(owner, minlength=ks.size)  # observed targets of each series
    offsets = np.cumsum(lengths) - lengths
    y_all = a[finite].astype(np.float64)
    scale = np.asarray(scales, dtype=np.float64)[ks]
    cols = {}
    for name, fc in forecasts.items():
        f = fc[order].reshape(len(order), -1)
        p_all = f[finite].astype(np.float64)
        got = {m: np.full(ks.size, np.nan) for m in ("mae", "mse", "rmse", "mape", "smape", "mase", "r2")}
        slow = []
        for length in np.unique(lengths[lengths > 0]):
            at = np.flatnonzero(lengths == length)
            take = offsets[at][:, None] + np.arange(length)
            y, p = y_all[take], p_all[take]
            plain = (y != 0).all(axis=1) & ((np.abs(y) + np.abs(p)) > 0).all(axis=1)
            slow += at[~plain].tolist()
            for m, v in _same_length_metrics(y[plain], p[plain], scale[at[plain]]).items():
                got[m][at[plain]] = v
        for i in slow + np.flatnonzero(lengths == 0).tolist():  # zero targets, or none observed
            rows = order[first[i]: first[i] + n_rows[i]]
            for m, v in forecast_metrics(actual[rows], fc[rows], float(scale[i])).items():
                got[m][i] = v
        cols[name] = {m: v.tolist() for m, v in got.items()}  # Python floats, as float(v[i])
    return {ids[int(k)]: {name: {m: v[i] for m, v in got.items()} for name, got in cols.items()}
            for i, k in enumerate(ks)}


def _same_length_metrics(y: np.ndarray, p: np.ndarray, scale: np.ndarray) -> Dict[str, np.ndarray]:
    """``evaluate.forecast_metrics`` of each row of y, p [series, targets] (every target
    observed and nonzero): the same operations row-wise (a row's mean along the last axis
    is NumPy's pairwise sum of that row, as for the row alone)."""
    err = p - y
    mae = np.mean(np.abs(err), axis=1)
    mse = np.mean(err ** 2, axis=1)
    ss_tot = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - np.sum(err ** 2, axis=1) / ss_tot, np.nan)
        mase = np.where(np.isfinite(scale) & (scale > 0), mae / scale, np.nan)
    return {"mae": mae, "mse": mse, "rmse": np.sqrt(mse), "mape": np.mean(np.abs(err / y), axis=1) * 100,
            "smape": np.mean(2 * np.abs(err) / (np.abs(y) + np.abs(p)), axis=1) * 100, "mase": mase, "r2": r2}


def aggregate(actual: np.ndarray, forecast: np.ndarray, table: Dict[str, Dict[str, dict]], name: str) -> dict:
    """One forecaster over every series: rmse, mae, mse, mape, smape and r2 pooled over all
    observed targets (so rmse weighs each series by its evaluated points); mase and smape
    also as mean and median over series (scale-free: each series counts once)."""
    from spline_lstm.evaluate import forecast_metrics

    pooled = forecast_metrics(actual, forecast, float("nan"))
    mase = np.array([m[name]["mase"] for m in table.values()], dtype=np.float64)
    smape = np.array([m[name]["smape"] for m in table.values()], dtype=np.float64)
    mase, smape = mase[np.isfinite(mase)], smape[np.isfinite(smape)]
    return {**pooled, "rmse_weighted": pooled["rmse"],
            "mase": float(mase.mean()) if mase.size else float("nan"),
            "mase_median": float(np.median(mase)) if mase.size else float("nan"),
            "smape_mean": float(smape.mean()) if smape.size else float("nan"),
            "smape_median": float(np.median(smape)) if smape.size else float("nan")}


def distribution(table: Dict[str, Dict[str, dict]], shown: int = 5) -> dict:
    """The model's MASE over series: quantiles, the best and worst series, and how many
    series it beats naive-last on."""
    names = list(table)
    mase = np.array([table[i]["model"]["mase"] for i in names], dtype=np.float64)
    naive = np.array([table[i].get("naive_last", {}).get("mase", np.nan) for i in names], dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(mase))
    ranked = ok[np.argsort(mase[ok], kind="stable")]
    q = np.quantile(mase[ok], [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]) if ok.size else [float("nan")] * 7
    both = np.isfinite(mase) & np.isfinite(naive)
    return {"series": len(names), "scored": int(ok.size),
            "mase_quantiles": {k: float(v) for k, v in zip(("min", "p10", "p25", "median", "p75", "p90", "max"), q)},
            "beats_naive_last": int((mase[both] < naive[both]).sum()), "compared_with_naive_last": int(both.sum()),
            "best": [{"id": names[i], "mase": float(mase[i])} for i in ranked[:shown]],
            "worst": [{"id": names[i], "mase": float(mase[i])} for i in ranked[::-1][:shown]]}
