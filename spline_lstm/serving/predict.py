"""Inference with a finished run. One core, ``forecast_frame``, serves the CLI and
the MLflow pyfunc model alike: the run's fitted ``Preprocessor`` on a new input
frame, the Keras model, then the forecast table.

Beyond the trained horizon the forecast is recursive: each block of ``horizon``
steps is appended to the history (in original units) and fed back as input, so
errors compound; intervals widen accordingly (``Preprocessor.interval_width``).

A many-series run forecasts every series of the input (or those asked for) in one
call: each series takes the one-series path on its own rows (its scaler, its static
covariates), then one batched model call per block serves them all. Its input is the
training layout: long format (id column ``id_column``) or, for a wide-format run, the
wide file(s); the table gains the id column first."""
from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from spline_lstm.artifacts.health import run_gate
from spline_lstm.artifacts.layout import ArtifactLayout, atomic_write_bytes, atomic_write_new, safe_load_pickle
from spline_lstm.core.config import DataConfig, DuplicatePolicy
from spline_lstm.core.errors import InputInvalid, TrackingFailed, UnsafeArtifact
from spline_lstm.data import loading
from spline_lstm.models import network, train
from spline_lstm.preprocessing import covariates, transforms
from spline_lstm.preprocessing.preprocessor import Preprocessor

FORMATS = ("csv", "parquet", "json")
MAX_HORIZON = 10000
SIGNIFICANT = 6


def significant(values: np.ndarray, digits: int = SIGNIFICANT) -> np.ndarray:
    """Round to ``digits`` significant digits (readable tables; NaN stays NaN)."""
    return np.array([float(f"{x:.{digits}g}") for x in np.asarray(values, dtype=np.float64)])


class Part(NamedTuple):
    """One series of the input: its id (None: a one-series run), its rows, the column
    holding its target, and how errors name it."""
    sid: Optional[str]
    frame: pd.DataFrame
    target: str
    where: str


def id_column(pre: Preprocessor) -> str:
    """The id column of a many-series run's long input and of its forecast table."""
    return pre.id_col or "series"


def _input_cfg(pre: Preprocessor, target: Optional[str] = None) -> tuple:
    cfg = DataConfig(timestamp_col=pre.timestamp_col, target_col=target or pre.target_col, freq=pre.freq,
                     duplicates=DuplicatePolicy(pre.duplicates), coerce_errors=pre.coerce_errors)
    return cfg, loading.predict_hints(cfg.timestamp_col, cfg.target_col, pre.freq)


def input_series(pre: Preprocessor, frame: pd.DataFrame, where: str, target: Optional[str] = None) -> tuple:
    """A table with the run's timestamp and target columns (and its covariate columns)
    -> (trimmed values on the run's grid, their timestamps), held to the file rules
    training applies. Rows after the last observed target (future-known covariates'
    values) are trimmed here and read by ``input_covariates``."""

    cfg, hints = _input_cfg(pre, target)
    missing = [c for c in (cfg.timestamp_col, cfg.target_col) if c not in frame.columns]
    if missing:
        raise InputInvalid(f"{where}: no column {', '.join(map(repr, missing))}; {hints.columns}")
    absent = [c for c in pre.covariate_columns if c not in frame.columns]
    if absent:
        raise InputInvalid(f"{where}: no covariate column {', '.join(map(repr, absent))}; {hints.covariates}")
    raw = loading.to_series(frame, cfg, where, hints)
    loading.check_freq(raw.index, pre.freq, where, hints)
    series, _ = loading.regularise(raw, pre.freq, where, hints)
    values = series.to_numpy(dtype=np.float64)
    loading.require_observed(values, cfg.target_col, where)
    lo, hi = transforms.observed_span(values)
    return values[lo:hi], series.index[lo:hi]


def input_covariates(pre: Preprocessor, frame: pd.DataFrame, stamps: pd.DatetimeIndex, horizon: int,
                     where: str, series: Optional[int] = None) -> Optional[np.ndarray]:
    """The covariate matrix over the history ``stamps`` and the forecast steps (whole
    blocks of the trained horizon), or None without covariates. Future-known columns
    must be given at every requested step (else 5, naming columns and timestamps); a
    last partial block holds their last value. A run with past covariates forecasts at
    most its trained horizon: later blocks would need values not yet observed.
    ``series``: of a many-series run (its static channels are appended)."""

    if pre.channels == 1:
        return None
    if pre.past_covariates and horizon > pre.horizon:
        raise InputInvalid(f"--horizon {horizon}: the run has past covariates "
                           f"({', '.join(map(repr, pre.past_covariates))}), observed only up to the forecast "
                           f"origin, so it forecasts at most its trained horizon {pre.horizon}")
    cfg, hints = _input_cfg(pre)
    n, steps = len(stamps), math.ceil(horizon / pre.horizon) * pre.horizon
    grid = stamps.append(pd.date_range(stamps[-1], periods=steps + 1, freq=pre.freq)[1:])
    raw = {c: loading.covariate_values(frame, c, cfg, grid, pre.freq, where, hints) for c in pre.covariate_columns}
    for c in pre.past_covariates:
        raw[c][n:] = np.nan  # values after the origin are not the run's to use
    covariates.require_future({c: raw[c][n:] for c in pre.future_covariates}, grid[n:], horizon, where)
    for c in pre.future_covariates:  # steps past --horizon (the model's last block) hold the last value given
        tail = raw[c][n + horizon:]
        tail[np.isnan(tail)] = raw[c][n + horizon - 1]
    return pre.covariate_inputs(raw, grid, np.array([0, n, n, n]), where, series=series)


def _model_input(pre: Preprocessor, scaled: np.ndarray, cov: Optional[np.ndarray], end: int):
    """The model's input for the forecast from origin ``end`` (history length)."""
    window = scaled[-pre.lookback:][None, :, None]
    if cov is None:
        return window
    window = np.concatenate([window, cov[end - pre.lookback:end][None]], axis=-1)
    if not pre.known:
        return window
    return {"window": window, "future": cov[end:end + pre.horizon, cov.shape[1] - pre.known:][None]}


def _whole(value) -> bool:
    """An integer as the CLI's ``type=int`` gives it: not a bool, not a float (80.5, nan, 80.0)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_options(horizon: Optional[int], levels: Sequence[int], names: Tuple[str, str] = ("--horizon", "--level")
                  ) -> list:
    """The one set of request rules of ``predict`` and the MLflow model: ``horizon`` None
    (the trained one) or an integer 1..MAX_HORIZON, ``levels`` integers 1..99; checked
    before any model loads; the levels sorted and unique. Errors name the option as the
    caller knows it (``names``: ``--horizon``/``--level``, or the pyfunc params)."""
    h_name, l_name = names
    if horizon is not None and not _whole(horizon):
        raise InputInvalid(f"{h_name} {horizon!r}: must be an integer 1..{MAX_HORIZON}, not {type(horizon).__name__}")
    if horizon is not None and not 1 <= int(horizon) <= MAX_HORIZON:
        raise InputInvalid(f"{h_name} {horizon}: must be 1..{MAX_HORIZON} (beyond the trained horizon the "
                           "forecast is recursive)")
    if isinstance(levels, (str, bytes)) or not isinstance(levels, (list, tuple, np.ndarray)):
        raise InputInvalid(f"{l_name}: must be a list of integer percentages 1..99, got {type(levels).__name__}")
    odd = [x for x in levels if not _whole(x)]
    if odd:
        raise InputInvalid(f"{l_name} {odd[0]!r}: interval levels are integer percentages 1..99 (e.g. 80 95)")
    levels = sorted({int(x) for x in levels})
    bad = [x for x in levels if not 1 <= x <= 99]
    if bad:
        raise InputInvalid(f"{l_name} {bad[0]}: interval levels are percentages 1..99 (e.g. --level 80 95)")
    return levels


def check_series_option(series, name: str = "--series") -> Optional[list]:
    """``--series`` / params["series"]: None or a list of ids (text), none empty."""
    if series is None:
        return None
    if isinstance(series, (str, bytes)) or not isinstance(series, (list, tuple, np.ndarray)):
        raise InputInvalid(f"{name}: must be a list of series ids, got {type(series).__name__}")
    ids = [str(x) for x in series]
    if any(not i.strip() for i in ids):
        raise InputInvalid(f"{name}: a series id is empty")
    return ids or None


def check_frame(pre: Preprocessor, frame, where: str) -> None:
    """The table rules every input meets before any transform, whether it came from an
    ``--input`` file (after ``loading.read_table``) or straight to the MLflow model: a
    DataFrame, the run's columns each named once, at least one row."""
    if not isinstance(frame, pd.DataFrame):
        raise InputInvalid(f"{where}: must be a table (pandas DataFrame), got {type(frame).__name__}")
    needed = [pre.timestamp_col, *(pre.target_cols or [pre.target_col]), *pre.covariate_columns]
    if pre.is_panel and not pre.target_cols:
        needed.insert(0, id_column(pre))
    cols = [str(c) for c in frame.columns]
    for col in needed:
        if cols.count(col) > 1:
            raise InputInvalid(f"{where}: {cols.count(col)} columns named {col!r}; rename them so the column to use "
                               "is unambiguous")
    missing = [c for c in needed if c not in cols]
    if missing:
        raise InputInvalid(f"{where}: no column {', '.join(map(repr, missing))}; columns are: "
                           f"{', '.join(map(repr, cols[:10]))}")
    if len(frame) == 0:
        raise InputInvalid(f"{where} has no data rows; give at least the run's lookback of {pre.lookback} rows")


def check_request(pre: Preprocessor, horizon: Optional[int], levels: Sequence[int]) -> tuple:
    """(horizon, levels): the trained horizon by default."""
    levels = check_options(horizon, levels)
    return (pre.horizon if horizon is None else int(horizon)), levels


def forecast_frame(model, pre: Preprocessor, frame: pd.DataFrame, horizon: Optional[int] = None,
                   levels: Sequence[int] = (), where: str = "--input",
                   series: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Forecast table ``timestamp, step, forecast, lo_L, hi_L, ..., run_id`` for the
    ``horizon`` steps after the input's last observed target (default: the trained
    horizon), values rounded to 6 significant digits. With future-known covariates the
    input has rows after that with their values (``input_covariates``). A many-series
    run reads ``frame`` in long format (``long_parts``) and forecasts every series in it,
    or the ``series`` asked for (``forecast_parts``)."""
    check_frame(pre, frame, where)
    parts = long_parts(pre, frame, where) if pre.is_panel else [Part(None, frame, pre.target_col, where)]
    return forecast_parts(model, pre, parts, horizon, levels, series, where)


def forecast_parts(model, pre: Preprocessor, parts: Sequence[Part], horizon: Optional[int] = None,
                   levels: Sequence[int] = (), series: Optional[Sequence[str]] = None,
                   where: str = "the input") -> pd.DataFrame:
    """The forecast of each part (see ``forecast_frame``): one model call per block of
    the trained horizon for all series; a many-series table has the id column first,
    rows grouped by series in input order."""
    horizon, levels = check_request(pre, horizon, levels)
    parts = select_series(pre, parts, series, where)
    ks = [None if p.sid is None else pre.series_index(p.sid) for p in parts]
    inputs = [_series_input(pre, p, k, horizon) for p, k in zip(parts, ks)]
    preds = _recursive(model, pre, parts, ks, inputs, horizon)
    tables = [_table(pre, p, k, stamps, pred, levels) for p, k, (_, _, stamps, _), pred in zip(parts, ks, inputs, preds)]
    return tables[0] if len(tables) == 1 and not pre.is_panel else pd.concat(tables, ignore_index=True)


def _series_input(pre: Preprocessor, part: Part, k: Optional[int], horizon: int) -> tuple:
    """(filled history in original units, model input series, timestamps, covariates) of one series."""
    values, stamps = input_series(pre, part.frame, part.where, part.target)
    cov = input_covariates(pre, part.frame, stamps, horizon, part.where, series=k)
    filled, scaled = pre.transform(values, part.where, series=k)
    return filled, scaled, stamps, cov


def _recursive(model, pre: Preprocessor, parts: Sequence[Part], ks: list, inputs: list, horizon: int) -> list:
    """Each series' ``horizon`` forecasts: blocks of the trained horizon, each block one
    batched model call, appended to every history and fed back (recursive beyond it)."""

    histories = [i[0] for i in inputs]
    scaled = [i[1] for i in inputs]
    preds: list = [[] for _ in inputs]
    for _ in range(math.ceil(horizon / pre.horizon)):
        batch = _stack([_model_input(pre, s, i[3], len(h)) for s, i, h in zip(scaled, inputs, histories)])
        out = np.asarray(model.predict(batch, verbose=0), dtype=np.float64)
        for j, k in enumerate(ks):
            rows = None if k is None else np.array([k])
            block = pre.inverse_transform(histories[j], np.array([len(histories[j])]), out[j:j + 1], series=rows)[0]
            preds[j].append(block)
            histories[j] = np.concatenate([histories[j], block])
            scaled[j] = transforms.scale_checked(pre.series_scaler(k),
                                                 transforms.difference(histories[j], pre.difference), parts[j].where)
    return [np.concatenate(p)[:horizon] for p in preds]


def _stack(inputs: list):
    """The model inputs of several series as one batch."""
    if isinstance(inputs[0], dict):
        return {key: np.concatenate([x[key] for x in inputs]) for key in inputs[0]}
    return np.concatenate(inputs)


def _table(pre: Preprocessor, part: Part, k: Optional[int], stamps: pd.DatetimeIndex, pred: np.ndarray,
           levels: Sequence[int]) -> pd.DataFrame:
    horizon = len(pred)
    future = pd.date_range(stamps[-1], periods=horizon + 1, freq=pre.freq)[1:]
    out = {id_column(pre): [part.sid] * horizon} if pre.is_panel else {}
    out.update({"timestamp": future, "step": np.arange(1, horizon + 1), "forecast": significant(pred)})
    for level in levels:
        width = pre.interval_width(level, horizon, series=k)
        out[f"lo_{level}"] = significant(pred - width)
        out[f"hi_{level}"] = significant(pred + width)
    out["run_id"] = pre.run_id
    return pd.DataFrame(out)


# --- many series: the input's series -----------------------------------------------------------------

def long_parts(pre: Preprocessor, frame: pd.DataFrame, where: str) -> list:
    """A long-format table (one row per id and timestamp) -> one part per id, in the
    order ids first appear; ids are text as written (as training reads them)."""
    col = id_column(pre)
    if col not in frame.columns:
        raise InputInvalid(f"{where}: no column {col!r}; the run has {len(pre.series_ids)} series and reads long "
                           f"format: one row per ({col}, {pre.timestamp_col}) with column {pre.target_col!r}")
    ids = frame[col]
    if ids.isna().any():
        first = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise InputInvalid(f"{where}: column {col!r} is empty in {int(ids.isna().sum())} rows (first at data row "
                           f"{first + 1}); every row needs its series id")
    return [Part(str(key), rows.reset_index(drop=True), pre.target_col, f"{where} series {key!r}")
            for key, rows in frame.groupby(ids.astype(str), sort=False)]


def wide_parts(pre: Preprocessor, frame: pd.DataFrame, where: str, prefix: str = "") -> list:
    """A wide-format table -> one part per target column of the run."""
    return [Part(prefix + col, frame, col, f"{where} column {col!r}") for col in pre.target_cols]


def training_stems(pre: Preprocessor) -> list:
    """The stems of a wide-format run's training files, in order, when it read several
    (its ids are ``<stem>:<column>``); [] for one file. Long-format ids are never stems."""
    ids = pre.series_ids
    if not pre.target_cols or list(ids) == list(pre.target_cols):
        return []
    cut = len(pre.target_cols[0]) + 1
    return [ids[i][:-cut] for i in range(0, len(ids), len(pre.target_cols))]


def select_series(pre: Preprocessor, parts: Sequence[Part], series: Optional[Sequence[str]],
                  where: str = "the input") -> list:
    """The parts to forecast: those in ``series`` (each must be the run's and in the
    input), else every input series (each must be the run's)."""
    if not pre.is_panel:
        if series:
            raise InputInvalid(f"--series {' '.join(series)}: the run has one series; leave --series out")
        return list(parts)
    if not parts:
        raise InputInvalid(f"{where} has no rows: no series to forecast")
    present = [p.sid for p in parts]
    if len(set(present)) < len(present):
        dup = next(i for i in present if present.count(i) > 1)
        raise InputInvalid(f"{where}: series {dup!r} appears twice in the input; give each series once")
    if series:
        wanted = list(dict.fromkeys(str(s) for s in series))
        for sid in wanted:
            pre.series_index(sid)
            if sid not in present:
                raise InputInvalid(f"series {sid!r} was asked for but is not in {where} ({len(present)} series: "
                                   f"{', '.join(map(repr, present[:5]))}{', ...' if len(present) > 5 else ''})")
        return [p for p in parts if p.sid in wanted]
    unknown = [i for i in present if i not in pre.series_positions]
    if unknown:
        raise InputInvalid(f"{where}: series {unknown[0]!r} is not one the run was trained on ({len(unknown)} "
                           f"such of {len(present)} input series; the run has {len(pre.series_ids)}); name the ids "
                           "to forecast (--series, or the MLflow model's params={'series': [...]}) to leave the "
                           "others out")
    return list(parts)


def load_run(artifacts_dir: Path, run_id: str, verbose: bool = False) -> tuple:
    """(Keras model, Preprocessor) of a run that passes the pre-inference gate."""
    pre, keras_path = gated_run(artifacts_dir, run_id)
    return load_keras(keras_path, verbose), pre


def gated_run(artifacts_dir: Path, run_id: str) -> tuple:
    """(Preprocessor, path of best.keras) of a run that passes the pre-inference gate."""

    result = run_gate(artifacts_dir, run_id)
    if not result.passed:
        raise result.error()
    paths = ArtifactLayout(Path(artifacts_dir).absolute()).paths(run_id)
    return Preprocessor.from_dict(safe_load_pickle(paths["preprocessor"])), paths["best"]


def load_keras(path: Path, verbose: bool = False):
    train.import_tensorflow(verbose)
    try:
        return network.load_model_safely(path)
    except Exception as exc:
        raise UnsafeArtifact(f"{path} cannot be loaded in Keras safe mode: {type(exc).__name__}") from exc


def read_input(pre: Preprocessor, input_path: Path) -> pd.DataFrame:
    """The --input file as a table (CSV or Parquet), checked like a training file: the
    run's columns (a many-series run's: its id column, or its wide target columns)."""

    target, extra = pre.target_col, list(pre.covariate_columns)
    if pre.target_cols:
        target, *extra = pre.target_cols
    elif pre.is_panel:
        extra = [id_column(pre), *extra]
    hints = loading.predict_hints(pre.timestamp_col, target, pre.freq)
    if pre.target_cols:
        hints = replace(hints, extra_role="series column",
                        covariates=f"the run's series are the columns {', '.join(map(repr, pre.target_cols))}: "
                                   "every --input file needs all of them (--series picks what is forecast)")
    frame = loading.read_table(Path(input_path).absolute(), pre.timestamp_col, target, hints, extra=extra)
    check_frame(pre, frame, f"--input {input_path}")  # the rules the MLflow model applies to its input
    return frame


def read_parts(pre: Preprocessor, input_paths: Sequence[Path]) -> tuple:
    """(parts, where) of the --input file(s), in the training layout. A long-format run
    reads one file, its ids as written (never file stems). A wide-format run trained on
    several files takes one --input per file, in the order of its training files, and
    their columns take those files' stems (``<stem>:<column>``)."""
    paths = [Path(p) for p in input_paths]
    where = f"--input {paths[0]}" + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")
    if not pre.is_panel:
        if len(paths) > 1:
            raise InputInvalid(f"--input given {len(paths)} times: the run has one series; pass one file")
        return [Part(None, read_input(pre, paths[0]), pre.target_col, where)], where
    if not pre.target_cols:
        if len(paths) > 1:
            raise InputInvalid(f"--input given {len(paths)} times: a long-format run takes one file with every "
                               "series to forecast (ids as written), even if it was not trained on one file")
        return long_parts(pre, read_input(pre, paths[0]), where), where
    stems = training_stems(pre)
    if stems and len(stems) != len(paths):
        raise InputInvalid(f"--input given {len(paths)} time{'' if len(paths) == 1 else 's'}: the run was trained "
                           f"on {len(stems)} files ({', '.join(stems)}); pass --input once per file, in that order")
    if len(paths) > 1 and not stems:
        raise InputInvalid(f"--input given {len(paths)} times: the run was trained on one file; pass one file "
                           "with every series")
    prefixes = [f"{s}:" for s in stems] or [""]
    parts = [p for path, prefix in zip(paths, prefixes)
             for p in wide_parts(pre, read_input(pre, path), f"--input {path}", prefix)]
    return parts, where


def _paths(input_path) -> list:
    return [input_path] if isinstance(input_path, (str, Path)) else list(input_path)


def forecast(artifacts_dir: Path, run_id: str, input_path: Union[Path, Sequence[Path]], horizon: Optional[int] = None,
             levels: Sequence[int] = (), verbose: bool = False, series: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Gate the run, then ``forecast_parts`` on the --input file(s)."""
    check_options(horizon, levels)  # a bad option costs no model load
    pre, keras_path = gated_run(artifacts_dir, run_id)
    parts, where = read_parts(pre, _paths(input_path))
    select_series(pre, parts, series, where)  # nor does a bad file or --series
    return forecast_parts(load_keras(keras_path, verbose), pre, parts, horizon, levels, series, where)


def forecast_registered(uri: str, tracking_uri: str, input_path: Union[Path, Sequence[Path]],
                        horizon: Optional[int] = None, levels: Sequence[int] = (),
                        series: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """A registered model (``models:/NAME@ALIAS``): its pyfunc model loaded through
    MLflow (which applies the run_id gate in ``load_context``), then the same core."""
    import mlflow
    from mlflow.exceptions import MlflowException

    check_options(horizon, levels)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        wrapped = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except MlflowException as exc:
        raise TrackingFailed(f"cannot load {uri} from {tracking_uri} (pass --tracking-uri for another store): "
                             f"{' '.join(str(exc).split())[:200]}") from exc
    pre = wrapped.pre
    parts, where = read_parts(pre, _paths(input_path))
    return forecast_parts(wrapped.model, pre, parts, horizon, levels, series, where)


def render(frame: pd.DataFrame, fmt: str) -> bytes:
    """The table as CSV, Parquet or JSON (records, ISO timestamps)."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    if fmt == "json":
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        return (json.dumps(rows, indent=1) + "\n").encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    raise InputInvalid(f"--format {fmt}: choose one of {', '.join(FORMATS)}")


def write_forecast(frame: pd.DataFrame, output: Optional[Path], overwrite: bool = False,
                   fmt: str = "csv") -> bytes:
    """The forecast rendered, written atomically to ``output`` when given (checked
    by containment.check_predict_output); without ``overwrite`` an existing file is
    never replaced, even one created after the check."""
    data = render(frame, fmt)
    if output is not None:
        write = atomic_write_bytes if overwrite else atomic_write_new
        write(Path(output), data)
    return data
