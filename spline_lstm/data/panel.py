"""Many series in one run: load them onto one shared time grid, and the per-series
bookkeeping a global model needs (spans, split bounds, window starts, metrics).

Input (``data`` group):
- long format, ``data.id_col``: one row per (id, timestamp); the target, covariate and
  static columns beside them; ``data.paths`` adds files of the same layout;
- wide format, ``data.target_cols``: each listed column is one series; with
  ``data.paths`` the ids are ``<file stem>:<column>`` (ETTh1:OT, ETTh2:OT);
- synthetic, ``data.n_series=N``: ``synthetic.related_series`` (shared season, gaps,
  one static covariate ``category``).

Every series is held to the single-series rules (numeric cells, coercion, duplicates,
its frequency, a grid it steps on): a long file column by column over the whole file
(``data.to_series``'s rules, so messages name the file's row), then per id with numpy;
each wide column by ``data.to_series``. The series are placed on the shared grid from
the earliest to the latest timestamp of any series (same frequency and phase). A panel is
an [n, T] array: NaN = gap, or outside the series' observed span ``spans[k]``.

Splits are by time: the same cut-offs on the grid for every series (no series'
future leaks into another's training). A series whose span starts later simply has
a shorter training split; every series must pass the run's input rules
(``preprocessing.transforms.check_series``) on its own span.

The model sees the flattened panel (row k at offset k*T): a window start ``k*T + t``
never reaches outside series k (``preprocessing.transforms.window_starts``), so one ``WindowSource`` streams
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

from spline_lstm.core.config import DataConfig, DataSource, DuplicatePolicy, is_panel
from spline_lstm.core.errors import InputInvalid
from spline_lstm.data.loading import (
    TRAINING_HINTS,
    _offset,
    _row,
    _sha256,
    _step_ns,
    covariate_values,
    grid_limit,
    infer_freq,
    parse_timestamps,
    read_table,
    regularise,
    require_observed,
    synthetic_series,
    to_series,
)
from spline_lstm.data.synthetic import related_series

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

@dataclass
class _Rows:
    """Series read from one or more files, before the shared grid: one row per (series,
    timestamp), sorted by series then time. What each series' messages name is kept."""

    ids: List[str]
    files: List[str]  # the file of each series
    wheres: List[str]  # "<file> series 'id'" / "<file> column 'col'"
    cols: List[str]  # the target column of each series
    freqs: List[str]
    statics: List[dict]
    codes: np.ndarray  # [N] series number of each row
    stamps: pd.DatetimeIndex  # [N]
    values: np.ndarray  # [N] float64, NaN = gap
    covariates: Dict[str, np.ndarray]  # column -> [N]
    counts: Dict[str, int]  # non_numeric, infinite, duplicates (target cells)


def load_panel(cfg: DataConfig, seed: int, preset: Optional[str] = None) -> Panel:
    """Read and validate the configured series (see module doc) onto one grid; with
    ``data.shard=i/N`` only that shard's series (``in_shard``). One series (``data.target_col``
    of one file, or the synthetic series) is a panel of one (``_one``)."""
    panel = _load(cfg, seed, preset) if is_panel(cfg) else _one(cfg, seed, preset)
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


def _one(cfg: DataConfig, seed: int, preset: Optional[str]) -> Panel:
    """One series, a panel of one (its id the target column): the synthetic series, or one
    column of one file on its own regular grid; its summary has no per-series counts."""
    if cfg.source == DataSource.synthetic:
        raw, where, sha = synthetic_series(cfg, seed), "synthetic", None
        raw.attrs.update(rows=len(raw), non_numeric=0, infinite=0, duplicates=0)
    else:
        if not cfg.path:
            which = f"preset {preset}" if preset else "data=csv"
            raise InputInvalid(f"data.path is required for {which}: pass data.path=/path/to/file.csv")
        path = Path(os.path.expanduser(cfg.path)).absolute()
        names = [*cfg.past_covariates, *cfg.future_covariates]
        frame = read_table(path, cfg.timestamp_col, cfg.target_col, extra=names)
        where, sha = str(path), _sha256(path)
        raw = to_series(frame, cfg, where)
    regular, freq = regularise(raw, cfg.freq, where)
    covariates = {col: covariate_values(frame, col, cfg, regular.index, freq, where)[None]
                  for col in ([*cfg.past_covariates, *cfg.future_covariates] if cfg.source != DataSource.synthetic
                              else [])}
    values = regular.to_numpy(dtype=np.float64)
    require_observed(values, cfg.target_col, where)
    summary = {
        "rows": int(raw.attrs.get("rows", len(raw))),
        "non_numeric_coerced": int(raw.attrs.get("non_numeric", 0)),
        "infinite_as_missing": int(raw.attrs.get("infinite", 0)),
        "duplicates_merged": int(raw.attrs.get("duplicates", 0)),
        "grid_points": int(len(values)),
        "absent_timestamps": int(len(values) - len(raw.index.unique())),
        "freq": freq,
    }
    return Panel((cfg.target_col,), regular.index, values[None], freq, where, summary, sha, covariates)


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

    if not cfg.path:
        which = f"preset {preset}" if preset else "data=csv"
        raise InputInvalid(f"data.path is required for {which}: pass data.path=/path/to/file.csv")
    files = [Path(os.path.expanduser(p)).absolute() for p in [cfg.path, *cfg.paths]]
    if len(set(files)) < len(files):
        raise InputInvalid(f"data.path / data.paths name a file twice: {', '.join(map(str, files))}")
    blocks, rows = [], 0
    for path in files:
        block, n_rows = _long(path, cfg) if cfg.id_col else _wide(path, cfg, f"{path.stem}:" if len(files) > 1 else "")
        blocks.append(block)
        rows += n_rows
    series = _concat(blocks)
    shas = [_sha256(p) for p in files]
    sha = shas[0] if len(shas) == 1 else hashlib.sha256("".join(shas).encode()).hexdigest()
    where = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
    return _on_grid(series, cfg, where, sha, rows)


def _long(path: Path, cfg: DataConfig) -> Tuple[_Rows, int]:
    """A long-format file, validated column by column over the whole file (so a message
    names the file's row), then split by id: one sort, no per-id pandas work."""

    covs = [*cfg.past_covariates, *cfg.future_covariates]
    hints = replace(TRAINING_HINTS, covariates="fix data.static_covariates / data.past_covariates / "
                    "data.future_covariates")
    frame = read_table(path, cfg.timestamp_col, cfg.target_col, hints,
                       extra=[cfg.id_col, *covs, *cfg.static_covariates], text={cfg.id_col: "data.id_col"})
    frame = frame.reset_index(drop=True)
    where = str(path)
    ids = frame[cfg.id_col].astype("string").str.strip()
    empty = (ids.isna() | (ids == "")).to_numpy(dtype=bool)
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise InputInvalid(f"{where}: column {cfg.id_col!r} (data.id_col) is empty in {int(empty.sum())} of "
                           f"{len(frame)} rows (first at {_row(first, where)}); every row needs its series id")
    codes, names = pd.factorize(ids.to_numpy(dtype=object), sort=False)
    names = [str(i) for i in names]
    wheres = [f"{where} series {i!r}" for i in names]
    stamps = pd.DatetimeIndex(parse_timestamps(frame[cfg.timestamp_col], cfg.timestamp_col, where))
    values, counts = _cells(frame, cfg.target_col, cfg, where)
    cov = {c: _cells(frame, c, cfg, where)[0] for c in covs}
    statics = _statics(frame, codes, names, wheres, cfg)
    order = np.lexsort((stamps.asi8, codes))
    if (order[1:] < order[:-1]).any() and _unsorted_within(codes, stamps.asi8):
        log.warning("%s: rows of a series are not in time order; sorted them", where)
    codes, stamps, values = codes[order], stamps[order], values[order]
    cov = {c: v[order] for c, v in cov.items()}
    codes, stamps, values, cov, counts["duplicates"] = _merge_duplicates(codes, stamps, values, cov, cfg, wheres,
                                                                          where)
    cuts = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(codes)]
    freqs = [cfg.freq or infer_freq(stamps[a:b], w) for a, b, w in zip(starts, ends, wheres)]
    return _Rows(names, [where] * len(names), wheres, [cfg.target_col] * len(names), freqs, statics, codes, stamps,
                 values, cov, counts), len(frame)


def _cells(frame: pd.DataFrame, col: str, cfg: DataConfig, where: str) -> Tuple[np.ndarray, Dict[str, int]]:
    """One column's cells by the single-series rules (numeric, data.coerce_errors,
    magnitude), in row order: ``to_series`` over row-order stand-in timestamps, so its
    messages name the file's rows."""

    ts = cfg.timestamp_col
    stand_in = pd.DataFrame({ts: pd.DatetimeIndex(np.arange(len(frame)).view("M8[ns]")),
                             col: frame[col].reset_index(drop=True)})
    raw = to_series(stand_in, replace(cfg, target_col=col), where)
    return raw.to_numpy(dtype=np.float64), {"non_numeric": int(raw.attrs["non_numeric"]),
                                            "infinite": int(raw.attrs["infinite"])}


def _unsorted_within(codes: np.ndarray, stamps: np.ndarray) -> bool:
    by_id = np.argsort(codes, kind="stable")
    c, t = codes[by_id], stamps[by_id]
    return bool(((c[1:] == c[:-1]) & (t[1:] < t[:-1])).any())


def _statics(frame: pd.DataFrame, codes: np.ndarray, names: List[str], wheres: List[str], cfg: DataConfig) -> list:
    """Each static covariate's one value per series (blank cells ignored)."""
    out: List[dict] = [{} for _ in names]
    for col in cfg.static_covariates:
        pairs = pd.DataFrame({"k": codes, "v": frame[col].to_numpy(dtype=object)}).dropna().drop_duplicates()
        count = np.bincount(pairs["k"].to_numpy(dtype=np.int64), minlength=len(names))
        bad = np.flatnonzero(count != 1)
        if bad.size:
            k = int(bad[0])
            if not count[k]:
                raise InputInvalid(f"{wheres[k]}: static covariate {col!r} is empty in every row of the series; "
                                   "give each series its value")
            vals = pairs["v"][pairs["k"] == k].tolist()
            raise InputInvalid(f"{wheres[k]}: static covariate {col!r} must hold one value per series, found "
                               f"{len(vals)} ({', '.join(map(repr, vals[:3]))}); fix the file")
        first = pairs.groupby("k", sort=True)["v"].first().tolist()
        for k, v in enumerate(first):
            out[k][col] = v.item() if hasattr(v, "item") else v
    return out


def _merge_duplicates(codes, stamps, values, cov, cfg: DataConfig, wheres: List[str], where: str) -> tuple:
    """data.duplicates per series: rows of one id at one timestamp are refused, or merged
    as ``to_series`` merges them (mean or last of the non-missing values, per column)."""

    i8 = stamps.asi8
    same = (codes[1:] == codes[:-1]) & (i8[1:] == i8[:-1])
    n_dup = int(same.sum())
    if not n_dup:
        return codes, stamps, values, cov, 0
    if cfg.duplicates == DuplicatePolicy.error:
        at = int(np.flatnonzero(same)[0]) + 1
        k = int(codes[at])
        in_k = int(same[codes[1:] == k].sum())
        raise InputInvalid(f"{wheres[k]}: column {cfg.timestamp_col!r} has {in_k} duplicated timestamps "
                           f"(first {stamps[at]}); {TRAINING_HINTS.duplicates}")
    keep = np.r_[True, ~same]
    group = np.cumsum(keep) - 1
    heads = np.flatnonzero(keep)
    how = "mean" if cfg.duplicates == DuplicatePolicy.mean else "last"

    def merged(v: np.ndarray) -> np.ndarray:
        seen = ~np.isnan(v)
        if how == "mean":
            total = np.bincount(group, weights=np.where(seen, v, 0.0))
            count = np.bincount(group, weights=seen)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, total / np.maximum(count, 1), np.nan)
        last = np.maximum.reduceat(np.where(seen, np.arange(len(v)), -1), heads)
        return np.where(last >= heads, v[np.maximum(last, 0)], np.nan)

    log.warning("%s: %d duplicated (id, timestamp) rows merged by '%s'", where, n_dup, how)
    return codes[keep], stamps[keep], merged(values), {c: merged(v) for c, v in cov.items()}, n_dup


def _wide(path: Path, cfg: DataConfig, prefix: str) -> Tuple[_Rows, int]:
    """A wide-format file: each listed column is one series, by the single-series rules."""

    first, *rest = cfg.target_cols
    hints = replace(TRAINING_HINTS, extra_role="series column (data.target_cols)",
                    columns="set data.timestamp_col / data.target_cols (each a column of every file)",
                    covariates="fix data.target_cols: in wide format every listed column is a series of every file")
    frame = read_table(path, cfg.timestamp_col, first, hints, extra=rest)
    parts = []
    for col in cfg.target_cols:
        where = f"{path} column {col!r}"
        raw = to_series(frame, replace(cfg, target_col=col), where)
        parts.append((prefix + col, where, col, cfg.freq or infer_freq(raw.index, where), raw))
    index = [p[4].index for p in parts]
    counts = {k: int(sum(p[4].attrs[k] for p in parts)) for k in ("non_numeric", "infinite", "duplicates")}
    return _Rows([p[0] for p in parts], [str(path)] * len(parts), [p[1] for p in parts], [p[2] for p in parts],
                 [p[3] for p in parts], [{} for _ in parts], np.repeat(np.arange(len(parts)), [len(i) for i in index]),
                 index[0].append(index[1:]) if len(index) > 1 else index[0],
                 np.concatenate([p[4].to_numpy(dtype=np.float64) for p in parts]), {}, counts), len(frame)


def _concat(blocks: List[_Rows]) -> _Rows:
    """The series of every file; an id in two files is refused."""
    if len(blocks) == 1:
        return blocks[0]
    seen: Dict[str, str] = {}
    for b in blocks:
        for sid, file in zip(b.ids, b.files):
            if sid in seen:
                raise InputInvalid(f"series id {sid!r} is in two files ({seen[sid]} and {file}); ids must be unique "
                                   "across data.path and data.paths: put each series' rows in one file (wide format: ids are "
                                   "<file stem>:<column>, so two files need different names)")
            seen[sid] = file
    offsets = np.cumsum([0, *[len(b.ids) for b in blocks[:-1]]])
    unit = min((b.stamps.unit for b in blocks), key=["ns", "us", "ms", "s"].index)
    try:
        stamps = blocks[0].stamps.as_unit(unit).append([b.stamps.as_unit(unit) for b in blocks[1:]])
    except (ValueError, OverflowError) as exc:
        raise InputInvalid(f"the files' timestamps do not fit one time unit ({unit}): {exc}") from exc
    return _Rows([i for b in blocks for i in b.ids], [f for b in blocks for f in b.files],
                 [w for b in blocks for w in b.wheres],
                 [c for b in blocks for c in b.cols], [f for b in blocks for f in b.freqs],
                 [s for b in blocks for s in b.statics],
                 np.concatenate([b.codes + o for b, o in zip(blocks, offsets)]), stamps,
                 np.concatenate([b.values for b in blocks]),
                 {c: np.concatenate([b.covariates[c] for b in blocks]) for c in blocks[0].covariates},
                 {k: sum(b.counts[k] for b in blocks) for k in blocks[0].counts})


def _on_grid(s: _Rows, cfg: DataConfig, where: str, sha: str, rows: int) -> Panel:
    """Every series on the grid from the earliest to the latest timestamp, at one frequency."""

    hints = _hints()
    n = len(s.ids)
    if len(set(s.freqs)) > 1:
        by = {}
        for sid, f in zip(s.ids, s.freqs):
            by.setdefault(f, []).append(sid)
        ranked = sorted(by.items(), key=lambda fv: -len(fv[1]))
        shown = "; ".join(f"{f}: {len(v)} series (e.g. {v[0]!r})" for f, v in ranked)
        raise InputInvalid(f"{where}: the series have different frequencies ({shown}); give series of one "
                           "frequency, or set data.freq to put them all on one grid")
    freq = s.freqs[0]
    offset = _offset(freq, where, hints)
    i8 = s.stamps.asi8
    lo, hi = int(i8.min()), int(i8.max())
    start, end = s.stamps[int(i8.argmin())], s.stamps[int(i8.argmax())]
    step = _step_ns(offset, start)
    if step is None or step <= 0:
        raise InputInvalid(f"{where}: frequency {freq!r} does not step forward in time; {hints.freq}")
    points = (hi - lo) * int(pd.Timedelta(1, unit=s.stamps.unit).value) // step + 1
    limit = grid_limit(rows)
    if n * points > limit:
        raise InputInvalid(f"{where} fails the grid-size rule: {n:,} series on one {freq!r} grid from {start} to "
                           f"{end} ({points:,} points) make {n * points:,} cells for {rows:,} rows (limit {limit:,}); "
                           f"series far apart in time, or a stray timestamp? Else {hints.freq}")
    try:
        grid = pd.date_range(start, end, freq=offset, unit=s.stamps.unit)
    except (ValueError, OverflowError) as exc:
        raise InputInvalid(f"{where}: no regular {freq!r} grid from {start} to {end}: "
                           f"{' '.join(str(exc).split())[:160]}") from exc
    pos = grid.get_indexer(s.stamps)
    if (pos < 0).any():
        k = int(s.codes[np.flatnonzero(pos < 0)[0]])
        mine = s.codes == k
        off = mine & (pos < 0)
        raise InputInvalid(f"{s.wheres[k]}: {int(off.sum())} of {int(mine.sum())} timestamps are off the shared "
                           f"{freq!r} grid that starts at {grid[0]} (first {s.stamps[np.flatnonzero(off)[0]]}); every "
                           f"series must step on one grid (same phase, e.g. all on the hour)")
    seen = np.bincount(s.codes, weights=~np.isnan(s.values), minlength=n)
    if (seen == 0).any():
        k = int(np.flatnonzero(seen == 0)[0])
        raise InputInvalid(f"{s.wheres[k]}: column {s.cols[k]!r} has no numeric value at all")
    values = np.full((n, len(grid)), np.nan)
    values[s.codes, pos] = s.values
    covariates = {}
    for c, v in s.covariates.items():
        covariates[c] = np.full((n, len(grid)), np.nan)
        covariates[c][s.codes, pos] = v
    cuts = np.flatnonzero(np.diff(s.codes)) + 1
    first, last = pos[np.r_[0, cuts]], pos[np.r_[cuts, len(pos)] - 1]
    summary = {"rows": int(rows), "series": n, "non_numeric_coerced": s.counts["non_numeric"],
               "infinite_as_missing": s.counts["infinite"], "duplicates_merged": s.counts["duplicates"],
               "grid_points": int(n * len(grid)), "absent_timestamps": int((last - first + 1).sum() - len(pos)),
               "freq": freq}
    statics = {c: [st[c] for st in s.statics] for c in cfg.static_covariates}
    return Panel(tuple(s.ids), grid, values, freq, where, summary, sha, covariates, statics)


def _hints():
    return TRAINING_HINTS


def _synthetic(cfg: DataConfig, seed: int) -> Panel:
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


def series_of(starts: np.ndarray, length: int) -> np.ndarray:
    return (np.asarray(starts) // length).astype(np.int64)


def representative(values: np.ndarray, bounds: np.ndarray) -> int:
    """The series with the most observed training points (the first on a tie): the one
    ``seasonality.resolve`` chooses auto settings on."""
    return int(np.argmax((~np.isnan(values[:, : int(bounds[1])])).sum(axis=1)))


# --- metrics per series ------------------------------------------------------------------------------
