"""Load a univariate series (synthetic, CSV or Parquet), validate it, and put it on
a regular time grid so that absent timestamps become explicit gaps.

Every rule violation raises InputInvalid with one line naming the file, the
column and the count; nothing here writes files. Training and ``predict`` share
these functions; ``Hints`` says how each caller's user changes a setting, so a
training error names ``data.*`` keys and a predict error names ``--input``.
"""
from __future__ import annotations

import decimal
import hashlib
import logging
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from spline_lstm.core.config import DataConfig, DuplicatePolicy
from spline_lstm.core.errors import ConfigInvalid, InputInvalid

log = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".csv", ".parquet", ".pq")
# |value| above this is refused: squares of differences of such values, summed over
# the largest grid allowed, stay far below the float64 maximum (~1.8e308).
MAX_ABS_VALUE = 1e100
# The regular grid is bounded before it is built: at most GRID_PER_ROW points per
# input row (but always up to GRID_FLOOR) and never above MAX_GRID_POINTS, so a
# stray timestamp decades away is refused in O(rows), not by a MemoryError.
MAX_GRID_POINTS = 10**8
GRID_PER_ROW = 1_000
GRID_FLOOR = 10**6
# What an input file may be before it is parsed (training data and predict's --input
# alike): a parser handed one line of millions of cells spends minutes and gigabytes
# before any other check runs. The file's size, its longest line and its header's
# column count are checked with a bounded read first; breaking one is INPUT_INVALID (5).
MAX_INPUT_BYTES = 4 * 1024**3  # 4 GiB: room for data.n_points' 10^8 rows of a timestamp and a value
MAX_LINE_BYTES = 1024**2  # 1 MiB: a CSV line (the header too)
MAX_COLUMNS = 10_000  # columns of a CSV header or a Parquet schema


@dataclass(frozen=True)
class Hints:
    """How the caller's user changes each setting that an input error is about."""

    path: str = "pass data.path=/path/to/file.csv"
    columns: str = "set data.timestamp_col / data.target_col"
    timestamp_col: str = "or set data.timestamp_col to the date column"
    coerce: str = "fix the file or set data.coerce_errors=true to treat them as gaps"
    duplicates: str = "set data.duplicates=mean or data.duplicates=last"
    freq: str = "set data.freq to the series' frequency"
    covariates: str = "fix data.past_covariates / data.future_covariates"
    extra_role: str = "covariate column"  # what read_table's ``extra`` columns are (wide format: series)


TRAINING_HINTS = Hints()


def predict_hints(timestamp_col: str, target_col: str, freq: str) -> Hints:
    """Predict cannot change the run's settings: every hint is about the --input file."""
    return Hints(covariates="the run was trained with these covariates: pass an --input that has them",
                 path="pass --input /path/to/recent.csv",
                 columns=f"the run reads columns {timestamp_col!r} and {target_col!r}: pass an --input with both",
                 timestamp_col=f"the run reads its dates from column {timestamp_col!r}",
                 coerce="fix the --input file (the run was trained with data.coerce_errors=false)",
                 duplicates="fix the --input file (the run was trained with data.duplicates=error)",
                 freq=f"pass an --input sampled every {freq!r}, the run's frequency")


def synthetic_series(cfg: DataConfig, seed: int) -> pd.Series:
    """Trend + two seasonalities + noise, with isolated gaps and a few missing stretches."""
    rng = np.random.default_rng(seed)
    n = cfg.n_points
    t = np.arange(n, dtype=np.float64)
    values = (10.0 + 0.01 * t + 2.0 * np.sin(2 * np.pi * t / 24) + 1.0 * np.sin(2 * np.pi * t / 168)
              + cfg.noise * rng.standard_normal(n))
    missing = rng.random(n) < cfg.gap_ratio
    for _ in range(cfg.gap_stretches):
        length = int(rng.integers(3, 7))
        start = int(rng.integers(1, max(2, n - length - 1)))
        missing[start:start + length] = True
    missing[0] = missing[-1] = False
    values[missing] = np.nan
    index = pd.date_range(cfg.start, periods=n, freq=cfg.synthetic_freq)
    return pd.Series(values, index=index, name="value")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_table(path: Path, timestamp_col: str, target_col: str, hints: Hints = TRAINING_HINTS,
               extra: Sequence[str] = (), text: Optional[Dict[str, str]] = None) -> pd.DataFrame:
    """Read the needed columns of a CSV or Parquet file (by extension): timestamp,
    target and the ``extra`` (covariate) columns. ``text`` maps columns read as text
    (a CSV's "007" stays "007", not 7.0) to the setting that names them."""
    text = text or {}
    if timestamp_col == target_col:
        raise ConfigInvalid(f"data.target_col: {target_col!r} is also data.timestamp_col; "
                            "set them to two different columns")
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputInvalid(f"input file {path} does not exist; {hints.path}") from None
    except NotADirectoryError:
        raise InputInvalid(f"input file {path} does not exist (a parent is not a folder); "
                           f"{hints.path}") from None
    except OSError as exc:  # e.g. a parent folder without search permission
        raise InputInvalid(f"input file {path} is not readable: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputInvalid(f"input path {path} is a directory, not a CSV or Parquet file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputInvalid(f"input file {path} has unsupported extension '{ext or '(none)'}'; "
                           "use .csv or .parquet")
    if not stat.S_ISREG(info.st_mode):
        raise InputInvalid(f"input path {path} is not a regular file (a pipe or a device?)")
    if info.st_size == 0:
        raise InputInvalid(f"input file {path} is empty (0 bytes)")
    try:
        check_bounds(path, ext, info.st_size)  # reads the file too: an unreadable input fails here first
        if ext == ".csv":
            frame = _read_csv(path, list(text))
        else:
            frame = pd.read_parquet(path)
    except InputInvalid:
        raise
    except PermissionError as exc:
        raise InputInvalid(f"input file {path} is not readable: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputInvalid(f"input file {path} is not valid UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})") from exc
    except MemoryError as exc:
        raise InputInvalid(f"input file {path} does not fit in memory ({info.st_size} bytes)") from exc
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise InputInvalid(f"input file {path} cannot be parsed as {ext[1:].upper()}: {msg}") from exc
    if ext == ".csv":
        _check_header(path, (timestamp_col, target_col, *extra))
    missing = [c for c in (timestamp_col, target_col) if c not in frame.columns]
    absent = [c for c in extra if c not in frame.columns]
    keyed = [c for c in absent if c in text]
    if keyed and not missing:
        cols = ", ".join(map(str, list(frame.columns)[:20]))
        raise InputInvalid(f"input file {path} has no column {keyed[0]!r} ({text[keyed[0]]}); columns are: {cols}")
    if absent and not missing:
        cols = ", ".join(map(str, list(frame.columns)[:20]))
        raise InputInvalid(f"input file {path} has no {hints.extra_role} {', '.join(map(repr, absent))}; columns "
                           f"are: {cols}; {hints.covariates}")
    if missing:
        cols = ", ".join(map(str, list(frame.columns)[:10]))
        hint = " (one column only: wrong delimiter? CSV must be comma-separated)" if frame.shape[1] == 1 else ""
        raise InputInvalid(f"input file {path} has no column {missing[0]!r}{hint}; columns are: {cols}; "
                           f"{hints.columns}")
    if len(frame) == 0:
        raise InputInvalid(f"input file {path} has a header but no data rows")
    return frame[[timestamp_col, target_col, *extra]]


def check_bounds(path: Path, ext: str, size: int) -> None:
    """Refuse, before any parser sees it, a file larger than MAX_INPUT_BYTES, a CSV whose
    header has more than MAX_COLUMNS cells, and a Parquet file whose schema has more
    than MAX_COLUMNS columns (its footer only is read). Line lengths are checked in the
    text scan (``_check_text``), which reads in bounded blocks."""
    if size > MAX_INPUT_BYTES:
        raise InputInvalid(f"input file {path} is {size / 1024**3:.1f} GiB, above the {MAX_INPUT_BYTES // 1024**3} GiB "
                           "input limit; split it or keep only the rows and columns the run needs")
    if ext == ".csv":
        with open(path, "rb") as fh:
            head = fh.read(MAX_LINE_BYTES + 1)
        end = head.find(b"\n")
        if end < 0 and len(head) > MAX_LINE_BYTES:
            raise InputInvalid(f"input file {path} has a header line longer than the {MAX_LINE_BYTES} byte line "
                               "limit; is it CSV with one row per line?")
        columns = head[: end if end >= 0 else len(head)].count(b",") + 1
        if columns > MAX_COLUMNS:
            raise InputInvalid(f"input file {path} has {columns} columns in its header, above the {MAX_COLUMNS} "
                               "column limit; keep the timestamp, target and covariate columns")
        return
    try:
        import pyarrow.parquet as pq

        columns = pq.ParquetFile(path).metadata.num_columns
    except Exception:  # noqa: BLE001 - not Parquet: the parser below says so
        return
    if columns > MAX_COLUMNS:
        raise InputInvalid(f"input file {path} has {columns} columns, above the {MAX_COLUMNS} column limit; keep the "
                           "timestamp, target and covariate columns")


def _check_text(path: Path) -> None:
    """The whole file must be UTF-8 (a BOM is fine) without NUL bytes: pyarrow would
    otherwise hand back undecodable cells as raw bytes, and NUL-laden cells as text,
    far from where the problem is."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line, run = 0, 1, 0  # run: bytes of the current line so far
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                line += block.count(b"\n", 0, exc.start)
                raise InputInvalid(f"input file {path} is not valid UTF-8 text ({exc.reason} at byte {at}, "
                                   f"line {line}); save it as UTF-8") from None
            nul = block.find(b"\0")
            if nul >= 0:
                at_line = line + block.count(b"\n", 0, nul)
                raise InputInvalid(f"input file {path} contains a NUL byte (at byte {offset + nul}, line "
                                   f"{at_line}): binary or corrupt data, not CSV text")
            pieces = block.split(b"\n")
            run += len(pieces[0])  # the line that started in an earlier block
            longest = max(run, *map(len, pieces[1:-1])) if len(pieces) > 2 else run
            if longest > MAX_LINE_BYTES:
                at = line if run > MAX_LINE_BYTES else line + 1 + next(
                    i for i, piece in enumerate(pieces[1:-1]) if len(piece) > MAX_LINE_BYTES)
                raise InputInvalid(f"input file {path} has a line longer than the {MAX_LINE_BYTES} byte line limit "
                                   f"(line {at}); is it CSV with one row per line?")
            if len(pieces) > 1:
                run = len(pieces[-1])
            offset += len(block)
            line += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputInvalid(f"input file {path} is not valid UTF-8 text (truncated character at "
                               f"the end of the file); save it as UTF-8") from None


def _check_header(path: Path, needed: tuple) -> None:
    """A needed column named twice is ambiguous (pandas would silently rename one)."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as fh:
        try:
            header = next(csv.reader([fh.readline()]), [])
        except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
            raise InputInvalid(f"input file {path} has a header line that is not CSV: {exc}") from None
    for col in needed:
        count = [h.strip() for h in header].count(col)
        if count > 1:
            raise InputInvalid(f"input file {path} has {count} columns named {col!r} in its header; "
                               "rename them so the column to use is unambiguous")


def _read_csv(path: Path, text: Sequence[str] = ()) -> pd.DataFrame:
    _check_text(path)
    dtype = {c: "string" for c in text} or None
    try:
        return pd.read_csv(path, engine="pyarrow", dtype=dtype)
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return pd.read_csv(path, dtype=dtype)
    except Exception:
        # pyarrow is strict about ragged rows; the C parser gives a clearer message
        return pd.read_csv(path, dtype=dtype)


# "2024-01-01 00:00:00+02:00", "...T00:00Z": a time of day followed by a UTC offset
_OFFSET_RE = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"


def _row(i: int, where: str) -> str:
    """A data row by its 0-based index (and its line, in a CSV with one header line)."""
    return f"row {i} (line {i + 2})" if where.lower().endswith(".csv") else f"row {i}"


def _shown(value) -> str:
    return repr(value.item() if hasattr(value, "item") else value)


def parse_timestamps(raw: pd.Series, col: str, where: str, hints: Hints = TRAINING_HINTS) -> pd.Series:
    """Timestamps as naive UTC (or naive local, if the file has no offsets at all).

    Refused: numbers (epoch units are ambiguous), a mix of rows with and without a
    UTC offset (no single reading is right), and anything that is not a date.
    Rows that all carry offsets (e.g. across a DST change) are converted to UTC."""
    rows = len(raw)
    if pd.api.types.is_bool_dtype(raw) or (pd.api.types.is_numeric_dtype(raw)
                                           and not pd.api.types.is_datetime64_any_dtype(raw)):
        raise InputInvalid(f"{where}: column {col!r} holds numbers (first {_shown(raw.iloc[0])}), not dates; "
                           f"write timestamps as ISO 8601 text such as 2024-01-01 00:00:00, {hints.timestamp_col}")
    if not pd.api.types.is_datetime64_any_dtype(raw):
        text = raw.astype("string").str.strip()
        present = text.notna() & (text != "")
        aware = text.str.contains(_OFFSET_RE, regex=True, na=False).to_numpy(dtype=bool)
        n_aware = int(aware[present.to_numpy(dtype=bool)].sum())
        n_present = int(present.sum())
        if 0 < n_aware < n_present:
            naive = present.to_numpy(dtype=bool) & ~aware
            first_naive, first_aware = int(np.flatnonzero(naive)[0]), int(np.flatnonzero(aware)[0])
            raise InputInvalid(
                f"{where}: column {col!r} mixes time zones: {n_aware} of {rows} rows carry a UTC offset "
                f"(first at {_row(first_aware, where)}: {raw.iloc[first_aware]!r}) and {n_present - n_aware} do "
                f"not (first at {_row(first_naive, where)}: {raw.iloc[first_naive]!r}); write every timestamp "
                "with an offset or none")
        try:
            ts = pd.to_datetime(raw, errors="coerce", utc=n_aware > 0)
        except (ValueError, TypeError, OverflowError) as exc:
            msg = " ".join(str(exc).split())[:160]
            raise InputInvalid(f"{where}: column {col!r} has timestamps that cannot be read together: "
                               f"{msg}") from exc
    else:
        ts = raw
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = ts.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputInvalid(f"{where}: column {col!r} has {int(bad.sum())} of {rows} rows that are not "
                           f"timestamps (first at {_row(first, where)}: {raw.iloc[first]!r}); every row needs a "
                           "date in one format, e.g. 2024-01-01 00:00:00")
    return ts


def _refuse_non_numeric_kind(y_raw: pd.Series, col: str, where: str) -> None:
    """The target must hold numbers or numeric text: dates would silently become
    epoch counts, booleans 0/1, and nested values (lists, structs) cannot be read."""
    dtype = y_raw.dtype
    types = pd.api.types
    if isinstance(dtype, pd.CategoricalDtype):
        y_raw = y_raw.astype(object)
    elif types.is_bool_dtype(dtype):
        raise InputInvalid(f"{where}: column {col!r} is boolean, not numeric; the target must hold numbers")
    elif types.is_datetime64_any_dtype(dtype) or types.is_timedelta64_dtype(dtype) or \
            isinstance(dtype, pd.PeriodDtype):
        raise InputInvalid(f"{where}: column {col!r} holds {dtype} values, not numbers; the target "
                           "must hold numbers (is it the date column?)")
    elif isinstance(dtype, pd.IntervalDtype) or types.is_complex_dtype(dtype):
        raise InputInvalid(f"{where}: column {col!r} holds {dtype} values, not real numbers; the target "
                           "must hold numbers")
    if types.is_numeric_dtype(y_raw.dtype) or types.is_string_dtype(y_raw.dtype) and y_raw.dtype != object:
        return
    for i, cell in enumerate(y_raw.to_numpy(dtype=object)):
        if cell is None or isinstance(cell, (str, float, int, np.integer, np.floating, decimal.Decimal)) \
                and not isinstance(cell, (bool, np.bool_)):
            continue
        raise InputInvalid(f"{where}: column {col!r} holds {type(cell).__name__} values (first at "
                           f"{_row(i, where)}: {_shown_short(cell)}), not numbers; the target must hold numbers")


def _shown_short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_series(frame: pd.DataFrame, cfg: DataConfig, where: str, hints: Hints = TRAINING_HINTS) -> pd.Series:
    """Validate columns and rows; returns a sorted, de-duplicated float series."""
    ts_raw, y_raw = frame[cfg.timestamp_col], frame[cfg.target_col]
    rows = len(frame)
    ts = parse_timestamps(ts_raw, cfg.timestamp_col, where, hints)
    _refuse_non_numeric_kind(y_raw, cfg.target_col, where)
    y = pd.to_numeric(y_raw, errors="coerce")
    non_numeric = y.isna() & y_raw.notna()
    if non_numeric.any():  # stringify only the cells to_numeric rejected: blanks are gaps, text is not
        non_numeric[non_numeric] = y_raw[non_numeric].astype(str).str.strip() != ""
    n_bad = int(non_numeric.sum())
    if n_bad and not cfg.coerce_errors:
        first = int(np.flatnonzero(non_numeric.to_numpy())[0])
        raise InputInvalid(f"{where}: column {cfg.target_col!r} has {n_bad} of {rows} non-numeric cells "
                           f"(first at {_row(first, where)}: {_shown_short(y_raw.iloc[first])}); {hints.coerce}")
    values = y.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    n_inf = int(infinite.sum())
    if n_inf and not cfg.coerce_errors:
        first = int(np.flatnonzero(infinite)[0])
        raise InputInvalid(f"{where}: column {cfg.target_col!r} has {n_inf} infinite values (first at "
                           f"{_row(first, where)}: {values[first]:g}); {hints.coerce}")
    if n_inf:
        values = np.where(infinite, np.nan, values)
    huge = np.abs(values) > MAX_ABS_VALUE
    if huge.any():
        first = int(np.flatnonzero(huge)[0])
        raise InputInvalid(f"{where} fails the magnitude rule: column {cfg.target_col!r} has {int(huge.sum())} "
                           f"values beyond +-{MAX_ABS_VALUE:g} (first at {_row(first, where)}: {values[first]:g}); "
                           "values this large overflow when squared or scaled: fix the file or rescale the column")
    series = pd.Series(values, index=pd.DatetimeIndex(ts, copy=False), name=cfg.target_col, copy=False)
    if not series.index.is_monotonic_increasing:
        log.warning("%s: rows are not in time order; sorted them", where)
        series = series.sort_index(kind="stable")
    stamps = series.index.asi8
    n_dup = int(np.count_nonzero(stamps[1:] == stamps[:-1]))  # sorted: duplicates are neighbours
    if n_dup:
        if cfg.duplicates == DuplicatePolicy.error:
            first = series.index[series.index.duplicated()][0]
            raise InputInvalid(f"{where}: column {cfg.timestamp_col!r} has {n_dup} duplicated timestamps "
                               f"(first {first}); {hints.duplicates}")
        how = "mean" if cfg.duplicates == DuplicatePolicy.mean else "last"
        series = getattr(series.groupby(level=0, sort=True), how)()
        log.warning("%s: %d duplicated timestamps merged by '%s'", where, n_dup, how)
    series.attrs.update(rows=rows, non_numeric=n_bad, infinite=n_inf, duplicates=n_dup)
    return series


def infer_freq(index: pd.DatetimeIndex, where: str) -> str:
    """pandas' inference, or the regular step most timestamps follow (gaps allowed)."""
    if len(index) < 3:
        raise InputInvalid(f"{where}: too few rows ({len(index)}) to infer a frequency")
    with warnings.catch_warnings():  # pandas 3 warns that a later version returns an offset
        warnings.filterwarnings("ignore", message=".*infer_freq.*")
        freq = pd.infer_freq(index[:10_000])  # the head tells as well as all 10^7 rows, 100x sooner
    if freq is not None and not isinstance(freq, str):
        freq = freq.freqstr
    if freq:
        return freq
    # pandas 3 may parse to s, ms or us resolution: the step in the index's unit, then in ns
    head = index.asi8[:1_000_001]  # a million steps settle the median as well as all of them
    step = int(np.median(np.diff(head))) * int(pd.Timedelta(1, unit=index.unit).value)
    day = 86_400 * 10**9
    if 28 * day <= step <= 31 * day:
        return "MS" if (index.day == 1).all() else "ME"
    if 365 * day <= step <= 366 * day:
        return "YS" if ((index.day == 1) & (index.month == 1)).all() else "YE"
    if step % day == 0:
        days = step // day
        return "D" if days == 1 else f"{days}D"
    return pd.tseries.frequencies.to_offset(pd.Timedelta(step)).freqstr


def _offset(freq: str, where: str, hints: Hints):
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except ValueError as exc:
        raise InputInvalid(f"{where}: frequency {freq!r} is not a pandas frequency; {hints.freq}") from exc


def _step_ns(offset, at: pd.Timestamp) -> Optional[int]:
    """Length of one step in ns: exact for fixed steps, the step from ``at`` for
    calendar ones (months differ by a few days: close enough for a bound)."""
    if isinstance(offset, pd.offsets.Tick):
        return int(offset.nanos)
    try:
        return int(((at + offset) - at).value)
    except (ValueError, OverflowError):  # beyond the representable range
        return None


def grid_limit(rows: int) -> int:
    """The most grid points a file of ``rows`` rows may span (see MAX_GRID_POINTS)."""
    return min(MAX_GRID_POINTS, max(GRID_FLOOR, GRID_PER_ROW * rows))


def check_grid_size(index: pd.DatetimeIndex, offset, freq: str, where: str, hints: Hints) -> None:
    """The grid-size rule: the regular grid over ``index`` may have at most
    ``grid_limit`` points, counted by arithmetic without building it (a stray row
    years away would otherwise allocate gigabytes)."""
    stamps = index.asi8
    unit_ns = int(pd.Timedelta(1, unit=index.unit).value)
    span_ns = (int(stamps[-1]) - int(stamps[0])) * unit_ns  # Python ints: no overflow
    step = _step_ns(offset, index[0])
    if step is None or step <= 0:
        raise InputInvalid(f"{where}: frequency {freq!r} does not step forward in time; {hints.freq}")
    points = span_ns // step + 1
    limit = grid_limit(len(index))
    if points > limit:
        jumps = np.diff(stamps)
        at = int(np.argmax(jumps)) if len(jumps) else 0
        raise InputInvalid(
            f"{where} fails the grid-size rule: its timestamps span {index[0]} .. {index[-1]}, a regular "
            f"{freq!r} grid of {points:,} points for {len(index):,} rows (limit {limit:,}: {GRID_PER_ROW} per "
            f"row, at least {GRID_FLOOR:,}, at most {MAX_GRID_POINTS:,}); the largest jump is after {index[at]} "
            f"(to {index[min(at + 1, len(index) - 1)]}): a stray timestamp? Else {hints.freq}")


def check_freq(index: pd.DatetimeIndex, expected: str, where: str, hints: Hints) -> None:
    """The frequency rule: the input steps as the run's series did. Fewer than 3
    rows cannot tell; the length and gap rules judge those."""
    if len(index) < 3:
        return
    found = infer_freq(index, where)
    a, b = _offset(found, where, hints), _offset(expected, where, hints)
    if a == b or _fixed(a) is not None and _fixed(a) == _fixed(b):
        return
    raise InputInvalid(f"{where} fails the frequency rule: its rows are {found!r} apart, the run was "
                       f"trained on {expected!r} steps; {hints.freq}")


def _fixed(offset) -> Optional[pd.Timedelta]:
    """The offset as a fixed duration ('D' == '24h'), or None for calendar steps."""
    try:
        return pd.Timedelta(offset)
    except (ValueError, TypeError):
        return None


def regularise(series: pd.Series, freq: Optional[str], where: str, hints: Hints = TRAINING_HINTS) -> tuple:
    """Reindex onto a fixed grid: absent timestamps become NaN gaps. The grid's size
    is checked by arithmetic before it is built."""
    freq = freq or infer_freq(series.index, where)
    offset = _offset(freq, where, hints)
    check_grid_size(series.index, offset, freq, where, hints)
    try:
        grid = pd.date_range(series.index[0], series.index[-1], freq=offset, unit=series.index.unit)
    except (ValueError, OverflowError) as exc:
        raise InputInvalid(f"{where}: no regular {freq!r} grid from {series.index[0]} to "
                           f"{series.index[-1]}: {' '.join(str(exc).split())[:160]}") from exc
    stamps, grid_stamps = series.index.asi8, grid.asi8
    if isinstance(offset, pd.offsets.Tick) and len(grid) > 1:  # a fixed step: positions by arithmetic
        step, gaps = grid_stamps[1] - grid_stamps[0], np.diff(stamps)
        moves = np.ones(len(stamps), dtype=np.int64)  # grid steps from the previous timestamp
        moves[0], irregular = 0, np.flatnonzero(gaps != step)  # divide only where a gap is
        moves[irregular + 1], rest = np.divmod(gaps[irregular], step)
        pos, on_grid = np.cumsum(moves, out=moves), np.ones(len(stamps), dtype=bool)
        on_grid[irregular + 1] = rest == 0
    elif len(grid):  # calendar steps (months, years): both sorted, one binary search each
        pos = np.minimum(np.searchsorted(grid_stamps, stamps), len(grid_stamps) - 1)
        on_grid = grid_stamps[pos] == stamps
    else:  # no anchor of a calendar step (a month start...) between the first and last row
        on_grid = np.zeros(len(stamps), dtype=bool)
    if not on_grid.all():
        off = series.index[~on_grid][0]
        raise InputInvalid(f"{where}: {int((~on_grid).sum())} timestamps are off the regular {freq!r} "
                           f"grid (first {off}); {hints.freq}")
    values = np.full(len(grid), np.nan)
    values[pos] = series.to_numpy(dtype=np.float64)
    return pd.Series(values, index=grid, name=series.name, copy=False), freq


def require_observed(values: np.ndarray, col: str, where: str) -> None:
    """At least one value on the grid (all gaps: nothing to fill from)."""
    if np.isnan(values).all():
        raise InputInvalid(f"{where}: column {col!r} has no numeric value at all")


def covariate_values(frame: pd.DataFrame, col: str, cfg: DataConfig, grid: pd.DatetimeIndex, freq: str,
                     where: str, hints: Hints = TRAINING_HINTS) -> np.ndarray:
    """One covariate column on the target's grid, held to the target's file rules
    (numeric, the coercion and duplicate policies, magnitude); NaN = gap."""
    from dataclasses import replace

    raw = to_series(frame, replace(cfg, target_col=col), where, hints)
    regular, _ = regularise(raw, freq, where, hints)
    return regular.reindex(grid).to_numpy(dtype=np.float64, copy=True)
