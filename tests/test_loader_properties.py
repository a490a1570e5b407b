"""Property tests for the CSV / Parquet loader (Hypothesis).

Whatever a file holds (random bytes, or a random small frame of any dtype written
by pandas), the loader used by training (``panel.load_panel``) and the one used by
``predict`` (``read_table`` + ``to_series`` + ``check_freq`` + ``regularise`` with
predict's hints) either returns a valid regular series or raises one of our typed
errors (a ``SplineLSTMError``, i.e. an exit code and one ERROR line), never another
exception (exit 1 with a traceback); and it writes nothing, in its folder or outside.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from spline_lstm.data import loading
from spline_lstm.data.panel import load_panel
from spline_lstm.core.config import DataConfig, DataSource, DuplicatePolicy
from spline_lstm.core.errors import SplineLSTMError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
# 150 examples per property keep the default run at a few seconds; LOADER_EXAMPLES=5000 searches harder
SETTINGS = settings(max_examples=int(os.environ.get("LOADER_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=list(HealthCheck))
FREQS = st.sampled_from([None, "h", "D", "s", "MS", "15min"])
POLICIES = st.sampled_from(list(DuplicatePolicy))
TRAINING_KEYS = re.compile(r"data\.(path|freq|timestamp_col|target_col)|data\.coerce_errors=true|data\.duplicates=m")


def _snapshot(folder: Path) -> dict:
    """Names, sizes and mtimes of a folder's entries and of the repo root's (the
    working directory; pytest's and Hypothesis's own dot-folders aside)."""
    entries = {}
    for root in (folder, REPO):
        for entry in os.scandir(root):
            if root == REPO and entry.name.startswith((".", "__")):
                continue
            st_ = entry.stat(follow_symlinks=False)
            entries[entry.path] = (st_.st_size, st_.st_mtime_ns)
    return entries


def _valid(series: pd.Series, freq: str) -> None:
    """What every caller may rely on: a regular, sorted grid of float64 values, each
    NaN (a gap) or finite and within the magnitude bound."""
    values = series.to_numpy()
    assert values.dtype == np.float64 and values.ndim == 1
    assert isinstance(series.index, pd.DatetimeIndex) and series.index.is_monotonic_increasing
    assert series.index.is_unique and len(series) <= loading.MAX_GRID_POINTS
    assert isinstance(freq, str) and freq
    observed = values[~np.isnan(values)]
    assert np.isfinite(observed).all() and (np.abs(observed) <= loading.MAX_ABS_VALUE).all()
    if len(series) > 1:
        assert (series.index == pd.date_range(series.index[0], periods=len(series), freq=freq,
                                              unit=series.index.unit)).all()


def _load_both_ways(path: Path, freq: Optional[str], policy: DuplicatePolicy, coerce: bool,
                    run_freq: str) -> None:
    """Training's loader and predict's; each must succeed validly or raise a typed error."""
    cfg = DataConfig(source=DataSource.file, path=str(path), freq=freq, duplicates=policy, coerce_errors=coerce)
    try:
        loaded = load_panel(cfg, seed=0)
    except SplineLSTMError as exc:
        event(f"training: {type(exc).__name__}")
    else:
        event("training: loaded")
        assert loaded.values.shape == (1, len(loaded.timestamps))  # one series: a panel of one
        _valid(pd.Series(loaded.values[0], index=loaded.timestamps), loaded.freq)
        assert not np.isnan(loaded.values).all()
    hints = loading.predict_hints(cfg.timestamp_col, cfg.target_col, run_freq)
    where = f"--input {path}"
    try:
        frame = loading.read_table(path, cfg.timestamp_col, cfg.target_col, hints)
        raw = loading.to_series(frame, cfg, where, hints)
        loading.check_freq(raw.index, run_freq, where, hints)
        series, used = loading.regularise(raw, run_freq, where, hints)
    except SplineLSTMError as exc:
        event(f"predict: {type(exc).__name__}")
        assert not TRAINING_KEYS.search(str(exc)), str(exc)  # predict names --input, not training's keys
    else:
        event("predict: loaded")
        _valid(series, used)


def _check_file(write, suffix: str, freq, policy, coerce, run_freq: str = "h") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / f"input{suffix}"
        try:
            write(path)
        except Exception:  # pandas / pyarrow cannot write this frame: nothing to load
            event("not writable")
            return
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        before = _snapshot(folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _load_both_ways(path, freq, policy, coerce, run_freq)
        assert _snapshot(folder) == before, "the loader wrote a file"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


# --- random bytes ---------------------------------------------------------------------------

PREFIXES = st.sampled_from([b"", b"timestamp,value\n", b"PAR1", b"\xef\xbb\xbftimestamp,value\n",
                            b"timestamp,value\n2024-01-01 00:00:00,1\n"])


@SETTINGS
@given(prefix=PREFIXES, body=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet"]),
       freq=FREQS)
def test_random_bytes_never_escape_as_untyped_errors(prefix, body, suffix, freq):
    _check_file(lambda p: p.write_bytes(prefix + body + (b"PAR1" if suffix == ".parquet" else b"")),
                suffix, freq, DuplicatePolicy.error, False)


@SETTINGS
@given(lines=st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=30), max_size=30), freq=FREQS,
       coerce=st.booleans())
def test_random_text_under_the_right_header_never_escapes(lines, freq, coerce):
    text = "timestamp,value\n" + "\n".join(lines) + "\n"
    _check_file(lambda p: p.write_text(text, encoding="utf-8"), ".csv", freq, DuplicatePolicy.mean, coerce)


# --- random frames --------------------------------------------------------------------------

BASE = pd.Timestamp("2024-01-01")
STEPS = st.sampled_from([pd.Timedelta(hours=1), pd.Timedelta(days=1), pd.Timedelta(seconds=1),
                         pd.Timedelta(minutes=15)])
huge_floats = st.sampled_from([1e308, -1e308, 1e150, 1e100, 1e50, 5e-324, float("inf"), float("-inf"),
                               float("nan")])
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), huge_floats, st.floats(-100, 100))


@st.composite
def timestamps(draw, n: int):
    """Mostly a regular grid, with duplicates, shuffles, stray dates, time zones or junk."""
    step = draw(STEPS)
    kind = draw(st.sampled_from(["grid", "grid", "gaps", "stray", "dup", "shuffled", "tz", "text", "ints",
                                 "mixed-tz", "bools", "nat", "extreme"]))
    stamps = pd.date_range(BASE, periods=n, freq=step)
    if kind == "gaps":
        keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        stamps = stamps[np.array(keep, dtype=bool)] if any(keep) else stamps[:1]
        n = len(stamps)
    if kind == "stray":
        years = draw(st.integers(1, 60))
        stamps = stamps.insert(0, BASE - pd.DateOffset(years=years))
    if kind == "dup" and n > 1:
        i = draw(st.integers(0, n - 2))
        stamps = stamps.insert(i, stamps[i])
    if kind == "shuffled":
        order = draw(st.permutations(range(len(stamps))))
        stamps = stamps[list(order)]
    if kind == "tz":
        stamps = stamps.tz_localize(draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
                                    ambiguous="NaT", nonexistent="NaT")
    if kind == "text":
        return draw(st.lists(st.text(max_size=20), min_size=len(stamps), max_size=len(stamps)))
    if kind == "ints":
        return list(range(len(stamps)))
    if kind == "mixed-tz":
        return [f"{t}+02:00" if i % 2 else str(t) for i, t in enumerate(stamps)]
    if kind == "bools":
        return [bool(i % 2) for i in range(len(stamps))]
    if kind == "nat" and len(stamps):
        return list(stamps[:-1]) + [pd.NaT]
    if kind == "extreme":
        return [pd.Timestamp.min.ceil("s"), pd.Timestamp.max.floor("s")][: len(stamps)] + list(stamps[2:])
    return stamps


@st.composite
def values(draw, n: int):
    """Target cells of any kind pandas can write."""
    kind = draw(st.sampled_from(["floats", "floats", "ints", "bools", "text", "numeric-text", "dates",
                                 "timedeltas", "lists", "mixed", "categorical", "none"]))
    if kind == "floats":
        return np.array(draw(st.lists(floats, min_size=n, max_size=n)), dtype=np.float64)
    if kind == "ints":
        return np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)), dtype=np.int64)
    if kind == "bools":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if kind == "text":
        return draw(st.lists(st.text(max_size=12), min_size=n, max_size=n))
    if kind == "numeric-text":
        return [repr(v) for v in draw(st.lists(floats, min_size=n, max_size=n))]
    if kind == "dates":
        return pd.date_range("2000-01-01", periods=n, freq="D")
    if kind == "timedeltas":
        return pd.to_timedelta(np.arange(n), unit="s")
    if kind == "lists":
        return [[i, i + 1] for i in range(n)]
    if kind == "mixed":
        pool = st.one_of(floats, st.text(max_size=5), st.booleans(), st.none(), st.integers(-10, 10))
        return draw(st.lists(pool, min_size=n, max_size=n))
    if kind == "categorical":
        return pd.Categorical(draw(st.lists(st.sampled_from(["1.5", "2", "x", "3e400"]), min_size=n, max_size=n)))
    return [None] * n


@st.composite
def frames(draw):
    n = draw(st.integers(0, 60))
    ts = draw(timestamps(n))
    y = draw(values(len(ts)))
    extra = draw(st.booleans())
    frame = pd.DataFrame({"timestamp": ts, "value": y})
    if extra:
        frame.insert(0, "note", "x")
    return frame


@SETTINGS
@given(frame=frames(), suffix=st.sampled_from([".csv", ".parquet"]), freq=FREQS, policy=POLICIES,
       coerce=st.booleans(), run_freq=st.sampled_from(["h", "D", "MS"]))
@example(frame=pd.DataFrame({"timestamp": [pd.Timestamp("2024-01-02")], "value": [0.0]}), suffix=".csv",
         freq=None, policy=DuplicatePolicy.error, coerce=False, run_freq="MS")  # found: no month start in range
def test_random_frames_load_validly_or_fail_typed(frame, suffix, freq, policy, coerce, run_freq):
    def write(path: Path) -> None:
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)

    _check_file(write, suffix, freq, policy, coerce, run_freq)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_clean_hourly_frame_loads(tmp_path: Path, suffix: str):
    """The properties above are not vacuous: a plain frame loads, with its gaps."""
    stamps = pd.date_range(BASE, periods=50, freq="h").delete([10, 11])
    frame = pd.DataFrame({"timestamp": stamps, "value": np.arange(48, dtype=float)})
    path = tmp_path / f"in{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    series = load_panel(DataConfig(source=DataSource.file, path=str(path)), seed=0)
    assert series.freq == "h" and series.values.shape == (1, 50) and np.isnan(series.values).sum() == 2


def test_the_grid_is_bounded_before_it_is_built():
    """A per-second series with one row 30 years earlier: refused by arithmetic,
    in milliseconds and without allocating the 10^9-point grid."""
    import time
    import tracemalloc

    stamps = pd.date_range(BASE, periods=10_000, freq="s").insert(0, BASE - pd.DateOffset(years=30))
    series = pd.Series(np.arange(len(stamps), dtype=float), index=stamps)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(SplineLSTMError, match="grid-size rule.*1994-01-01"):
            loading.regularise(series, None, "x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20 and time.perf_counter() - t0 < 5
    assert loading.grid_limit(10) == loading.GRID_FLOOR and loading.grid_limit(10**9) == loading.MAX_GRID_POINTS


@pytest.mark.parametrize("found, expected, same", [("h", "60min", True), ("D", "24h", True), ("D", "h", False),
                                                   ("MS", "MS", True), ("MS", "ME", False)])
def test_the_frequency_rule_compares_steps_not_spellings(found, expected, same):
    stamps = pd.date_range("2024-01-01", periods=30, freq=found)
    hints = loading.predict_hints("timestamp", "value", expected)
    if same:
        loading.check_freq(stamps, expected, "--input x", hints)
    else:
        with pytest.raises(SplineLSTMError, match="frequency rule"):
            loading.check_freq(stamps, expected, "--input x", hints)
