"""Many series (spline_lstm.data.panel): the per-series bookkeeping on hand-made tables,
loading long and wide files as a new user and an attacker would write them (each bad
file one message naming the series, exit 5 or 2, nothing written), the loading speed
of many tiny series, and end-to-end runs of the long, wide and synthetic panels."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spline_lstm.data import panel
from spline_lstm.evaluation import metrics
from spline_lstm.preprocessing import transforms
from spline_lstm.core.config import DataConfig, DataSource
from spline_lstm.core.errors import ConfigInvalid, InputInvalid
from tests.conftest import Run, last_line, launch
from tests.test_config import _compose

# --- spans, windows and metrics on hand-made tables ------------------------------------------------


def _ragged() -> np.ndarray:
    """Four series on a 40-point grid: full, later start, earlier end, both."""
    values = np.arange(160, dtype=np.float64).reshape(4, 40)
    values[1, :7] = np.nan
    values[2, 31:] = np.nan
    values[3, :12] = np.nan
    values[3, 35:] = np.nan
    values[0, 20] = np.nan  # an inner gap does not cut the span
    return values


@pytest.mark.unit
def test_spans_are_first_and_last_observed_point_plus_one():
    assert panel.spans(_ragged()).tolist() == [[0, 40], [7, 40], [0, 31], [12, 35]]


@pytest.mark.unit
@pytest.mark.parametrize("lookback,horizon,diff", [(3, 1, 0), (4, 2, 1), (2, 3, 2), (10, 1, 0)])
def test_window_starts_are_each_series_own_windows_shifted_onto_the_grid(lookback, horizon, diff):
    values = _ragged()
    spans = panel.spans(values)
    bounds = np.array([0, 24, 32, 40])
    for split in range(3):
        flat = transforms.window_starts(bounds, split, lookback, horizon, diff, spans, 40)
        rows = panel.series_of(flat, 40)
        assert (np.diff(flat) > 0).all()
        for k, (lo, hi) in enumerate(spans):
            own = transforms.window_starts(panel.local_bounds(bounds, (lo, hi)), split, lookback, horizon, diff)
            np.testing.assert_array_equal(flat[rows == k] - k * 40, own + lo, err_msg=f"series {k} split {split}")
            got = flat[rows == k] - k * 40
            assert ((got - lookback - diff >= lo) & (got + horizon <= hi)).all()  # never outside the series


@pytest.mark.unit
def test_a_series_ending_before_a_split_has_no_windows_there():
    values = _ragged()
    spans = panel.spans(values)
    starts = transforms.window_starts(np.array([0, 24, 32, 40]), 2, 3, 1, 0, spans, 40)  # test split 32..40
    assert set(panel.series_of(starts, 40).tolist()) == {0, 1, 3}  # series 2 ends at 31
    assert panel.local_bounds(np.array([0, 24, 32, 40]), spans[2]).tolist() == [0, 24, 31, 31]


def _table() -> dict:
    return {"a": {"model": {"mase": 0.5, "smape": 10.0}, "naive_last": {"mase": 1.0, "smape": 20.0}},
            "b": {"model": {"mase": 2.0, "smape": 30.0}, "naive_last": {"mase": 1.0, "smape": 25.0}},
            "c": {"model": {"mase": 1.5, "smape": 20.0}, "naive_last": {"mase": float("nan"), "smape": 5.0}},
            "d": {"model": {"mase": float("nan"), "smape": float("nan")}, "naive_last": {"mase": 1.0, "smape": 1.0}}}


@pytest.mark.unit
def test_aggregate_pools_errors_and_averages_scale_free_metrics_over_series():
    actual = np.array([[1.0], [2.0], [3.0], [5.0]])
    forecast = np.array([[2.0], [2.0], [3.0], [1.0]])
    agg = metrics.aggregate(actual, forecast, _table(), "model")
    assert agg["rmse"] == pytest.approx(np.sqrt((1 + 0 + 0 + 16) / 4)) == agg["rmse_weighted"]
    assert agg["mae"] == pytest.approx(5 / 4)
    assert agg["mase"] == pytest.approx((0.5 + 2.0 + 1.5) / 3)  # the unscored series 'd' left out
    assert agg["mase_median"] == pytest.approx(1.5)
    assert (agg["smape_mean"], agg["smape_median"]) == (pytest.approx(20.0), pytest.approx(20.0))


@pytest.mark.unit
def test_distribution_ranks_series_and_counts_wins_over_naive_last():
    dist = metrics.distribution(_table(), shown=2)
    assert (dist["series"], dist["scored"]) == (4, 3)
    assert [b["id"] for b in dist["best"]] == ["a", "c"] and [w["id"] for w in dist["worst"]] == ["b", "c"]
    assert dist["mase_quantiles"]["median"] == 1.5 and dist["mase_quantiles"]["max"] == 2.0
    assert (dist["beats_naive_last"], dist["compared_with_naive_last"]) == (1, 2)  # a wins, b loses; c, d unknown


# --- loading ---------------------------------------------------------------------------------------

STAMP = "%Y-%m-%d %H:%M:%S"


def _long(ids=("north", "south", "east"), n: int = 240, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """One row per (id, hour): a daily season, a past covariate and a text static."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, sid in enumerate(ids):
        t = np.arange(n)
        parts.append(pd.DataFrame({
            "timestamp": pd.date_range("2024-01-01", periods=n, freq=freq).strftime(STAMP), "store": sid,
            "sales": 20 + 5 * k + 3 * np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(n),
            "load": np.cos(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
            "kind": ["mall", "street"][k % 2]}))
    return pd.concat(parts, ignore_index=True)


def _cfg(path: Path, **kw) -> DataConfig:
    kw.setdefault("id_col", "store")
    return DataConfig(source=DataSource.file, path=str(path), target_col="sales", season=24, **kw)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.mark.unit
def test_long_format_puts_every_id_on_one_grid_with_its_covariates_and_statics(tmp_path):
    frame = _long()
    late = frame["store"] == "east"
    frame = frame[~late | (pd.to_datetime(frame["timestamp"]) >= "2024-01-02")]  # east starts a day later
    frame = frame.sample(frac=1.0, random_state=0)  # any row order
    p = panel.load_panel(_cfg(_write(frame, tmp_path / "x.csv"), past_covariates=["load"],
                              static_covariates=["kind"]), 0)
    assert set(p.ids) == {"north", "south", "east"}
    assert p.values.shape == (3, 240) and p.covariates["load"].shape == (3, 240) and p.freq == "h"
    k = p.ids.index("east")
    assert panel.spans(p.values)[k].tolist() == [24, 240] and np.isnan(p.covariates["load"][k, :24]).all()
    assert dict(zip(p.ids, p.statics["kind"])) == {"north": "mall", "south": "street", "east": "mall"}
    for sid in p.ids:  # each row is what the single-series loader reads from that id's rows alone
        one = _write(frame[frame["store"] == sid].drop(columns=["store", "kind"]), tmp_path / f"{sid}.csv")
        alone = panel.load_panel(DataConfig(source=DataSource.file, path=str(one), target_col="sales",
                                            past_covariates=["load"]), 0)
        lo, hi = panel.spans(p.values)[p.ids.index(sid)]
        np.testing.assert_array_equal(p.values[p.ids.index(sid), lo:hi], alone.values[0])
        np.testing.assert_array_equal(p.covariates["load"][p.ids.index(sid), lo:hi], alone.covariates["load"][0])


@pytest.mark.unit
def test_ids_are_text_as_written(tmp_path):
    frame = _long(ids=("007", "7", "x"))
    p = panel.load_panel(_cfg(_write(frame, tmp_path / "x.csv")), 0)
    assert p.ids == ("007", "7", "x")
    p = panel.load_panel(_cfg(_write(_long(ids=(1, 2)), tmp_path / "n.csv")), 0)
    assert p.ids == ("1", "2")


@pytest.mark.unit
def test_one_id_in_long_format_is_a_panel_of_one(tmp_path):
    p = panel.load_panel(_cfg(_write(_long(ids=("only",)), tmp_path / "x.csv")), 0)
    assert p.ids == ("only",) and p.values.shape == (1, 240)


@pytest.mark.unit
@pytest.mark.parametrize("policy", ["mean", "last"])
def test_the_duplicates_policy_applies_per_series(tmp_path, policy):
    frame = _long()
    again = frame[frame["store"] == "south"].iloc[[5]].assign(sales=1000.0)
    p = panel.load_panel(_cfg(_write(pd.concat([frame, again]), tmp_path / "x.csv"), duplicates=policy), 0)
    k = p.ids.index("south")
    first = frame[frame["store"] == "south"]["sales"].iloc[5]
    assert p.values[k, 5] == pytest.approx((first + 1000.0) / 2 if policy == "mean" else 1000.0)
    assert p.summary["duplicates_merged"] == 1  # the same hour in other ids is no duplicate


@pytest.mark.unit
def test_wide_format_of_two_files_names_series_by_file_and_column(tmp_path):
    grid = pd.date_range("2024-01-01", periods=200, freq="D").strftime("%Y-%m-%d")
    rng = np.random.default_rng(1)
    for name in ("shop_a", "shop_b"):
        _write(pd.DataFrame({"timestamp": grid, "x": rng.standard_normal(200), "y": rng.standard_normal(200)}),
               tmp_path / f"{name}.csv")
    cfg = DataConfig(source=DataSource.file, path=str(tmp_path / "shop_a.csv"), paths=[str(tmp_path / "shop_b.csv")],
                     target_cols=["x", "y"], season=7)
    p = panel.load_panel(cfg, 0)
    assert p.ids == ("shop_a:x", "shop_a:y", "shop_b:x", "shop_b:y") and p.values.shape == (4, 200)


def _shift(frame: pd.DataFrame, sid: str, by: str) -> pd.DataFrame:
    frame = frame.copy()
    rows = frame["store"] == sid
    frame.loc[rows, "timestamp"] = (pd.to_datetime(frame.loc[rows, "timestamp"]) + pd.Timedelta(by)).dt.strftime(STAMP)
    return frame


def _bad(name: str):
    """(frame, config overrides) of each bad long-format file."""
    f = _long()
    south = f["store"] == "south"
    if name == "empty-id":
        f["store"] = f["store"].astype(object)
        f.loc[7, "store"] = " "
    elif name == "static-varies":
        f.loc[f.index[south][3], "kind"] = "kiosk"
    elif name == "static-empty":
        f.loc[south, "kind"] = np.nan
    elif name == "other-frequency":
        f = pd.concat([f[~south], _long(ids=("south",), freq="2h")])
    elif name == "off-phase":
        f = _shift(f, "south", "30min")
    elif name == "duplicate-row":
        f = pd.concat([f, f[south].iloc[[9]]])
    elif name == "all-nan":
        f.loc[south, "sales"] = np.nan
    elif name == "non-numeric":
        f["sales"] = f["sales"].astype(object)
        f.loc[500, "sales"] = "twelve"
    elif name == "far-apart":  # 70 years apart: a shared hourly grid of 2 x 600,000 mostly empty points
        f = pd.concat([_shift(f[f["store"] == s], s, f"{70 * 366 * 24 * k}h") for k, s in enumerate(("north", "south"))])
    return f


BAD = [  # name, config, what the one line must say
    ("empty-id", {}, ["column 'store' (data.id_col) is empty in 1 of 720 rows", "row 7 (line 9)"]),
    ("static-varies", {"static_covariates": ["kind"]}, ["series 'south'", "static covariate 'kind'", "'kiosk'"]),
    ("static-empty", {"static_covariates": ["kind"]}, ["series 'south'", "empty in every row"]),
    ("other-frequency", {}, ["different frequencies", "2h: 1 series (e.g. 'south')"]),
    ("off-phase", {}, ["series 'south'", "240 of 240 timestamps are off the shared 'h' grid", "same phase"]),
    ("duplicate-row", {}, ["series 'south'", "1 duplicated timestamps", "data.duplicates=mean"]),
    ("all-nan", {}, ["series 'south'", "column 'sales' has no numeric value"]),
    ("non-numeric", {}, ["column 'sales' has 1 of 720 non-numeric cells", "row 500 (line 502)"]),
    ("far-apart", {}, ["grid-size rule", "2 series"]),
]


@pytest.mark.unit
@pytest.mark.parametrize("name,overrides,words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_long_file_is_one_message_naming_the_series(tmp_path, name, overrides, words):
    path = _write(_bad(name), tmp_path / "x.csv")
    with pytest.raises(InputInvalid) as info:
        panel.load_panel(_cfg(path, **overrides), 0)
    for word in words:
        assert word in str(info.value), str(info.value)


@pytest.mark.unit
def test_an_id_in_two_files_is_refused(tmp_path):
    a = _write(_long(ids=("north", "south")), tmp_path / "a.csv")
    b = _write(_long(ids=("east", "south")), tmp_path / "b.csv")
    with pytest.raises(InputInvalid, match=r"series id 'south' is in two files .*a\.csv and .*b\.csv"):
        panel.load_panel(_cfg(a, paths=[str(b)]), 0)


@pytest.mark.unit
def test_a_missing_id_column_is_named_as_the_id_column(tmp_path):
    with pytest.raises(InputInvalid, match=r"has no column 'shop' \(data.id_col\)"):
        panel.load_panel(_cfg(_write(_long(), tmp_path / "x.csv"), id_col="shop"), 0)


@pytest.mark.unit
@pytest.mark.parametrize("overrides,key", [
    (["data.id_col=sales"], "data.id_col"),
    (["data.id_col=store", "data.static_covariates=[load]", "data.past_covariates=[load]"], "data.static_covariates"),
    (["data.id_col=store", "data.static_covariates=[kind,kind]"], "data.static_covariates"),
    (["data.id_col=store", "data.static_covariates=[sales]"], "data.static_covariates"),
])
def test_columns_with_two_roles_are_config_errors(overrides, key):
    from spline_lstm.core.config import validate

    with pytest.raises(ConfigInvalid, match=key):
        validate(_compose("data=csv", "data.path=x.csv", "data.target_col=sales", *overrides))


@pytest.mark.unit
def test_two_thousand_tiny_series_load_in_seconds(tmp_path):
    n_ids, n = 2000, 60
    rng = np.random.default_rng(0)
    stamps = pd.date_range("2024-01-01", periods=n, freq="h").strftime(STAMP)
    frame = pd.DataFrame({"timestamp": np.tile(stamps, n_ids), "store": np.repeat([f"s{k}" for k in range(n_ids)], n),
                          "sales": rng.standard_normal(n_ids * n), "load": rng.standard_normal(n_ids * n),
                          "kind": np.repeat(rng.choice(["a", "b"], n_ids), n)})
    path = _write(frame, tmp_path / "many.csv")
    began = time.perf_counter()
    p = panel.load_panel(_cfg(path, past_covariates=["load"], static_covariates=["kind"]), 0)
    took = time.perf_counter() - began
    assert p.values.shape == (2000, 60) and not np.isnan(p.values).any()
    assert took < 10, f"{took:.1f} s"  # ~1 s; the per-id pandas loop it replaced took ~8 s


# --- end to end ------------------------------------------------------------------------------------

FAST = ["training.epochs=1", "tracking=none", "model.units=8", "preprocess.lookback=12"]


def _refused(proc, code: int, outputs: Path, *words: str) -> None:
    line = last_line(proc.stderr)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert line.startswith("ERROR [") and all(w in line for w in words), line
    assert "Traceback" not in proc.stderr
    assert not [p for p in (outputs / "artifacts").rglob("*") if p.is_file()]


def test_bad_panels_exit_5_or_2_with_one_line_and_nothing_written(tmp_path):
    path = _write(_bad("off-phase"), tmp_path / "x.csv")
    proc = launch("data=csv", f"data.path={path}", "data.id_col=store", "data.target_col=sales", *FAST,
                  outputs=tmp_path / "a")
    _refused(proc, 5, tmp_path / "a", "ERROR [INPUT_INVALID]", "series 'south'", "same phase")
    proc = launch("data=csv", f"data.path={path}", "data.id_col=sales", "data.target_col=sales", *FAST,
                  outputs=tmp_path / "b")
    _refused(proc, 2, tmp_path / "b", "ERROR [CONFIG_INVALID]", "data.id_col")


def test_a_too_short_or_constant_series_is_named(tmp_path):
    frame = _long()
    short = pd.concat([frame[frame["store"] != "east"], _long(ids=("east",), n=30)])
    proc = launch("data=csv", f"data.path={_write(short, tmp_path / 's.csv')}", "data.id_col=store",
                  "data.target_col=sales", *FAST, outputs=tmp_path / "a")
    _refused(proc, 5, tmp_path / "a", "series 'east'", "minimum-length rule")
    frame.loc[frame["store"] == "east", "sales"] = 4.0
    proc = launch("data=csv", f"data.path={_write(frame, tmp_path / 'c.csv')}", "data.id_col=store",
                  "data.target_col=sales", *FAST, outputs=tmp_path / "b")
    _refused(proc, 5, tmp_path / "b", "series 'east'", "constant")


def _series_run(out: Path, run_id: str, n: int) -> Run:
    run = Run(out, run_id)
    doc = run.json("metrics")
    assert doc["series"]["count"] == n and len(doc["series"]["per_series"]) == n
    with np.load(run.path("processed"), allow_pickle=False) as npz:
        assert len(npz["series_ids"]) == n and npz["processed"].shape[0] == n
    assert "## Series" in run.path("report").read_text()
    import json

    assert json.loads((run.artifacts / "health" / f"{run_id}.json").read_text())["verdict"] == "PASS"
    return run


def test_long_format_run_with_a_text_static_and_a_past_covariate(tmp_path):
    path = _write(_long(), tmp_path / "stores.csv")
    proc = launch("data=csv", f"data.path={path}", "data.id_col=store", "data.target_col=sales",
                  "data.past_covariates=[load]", "data.static_covariates=[kind]", "data.season=24", *FAST,
                  "run_id=panel-long", outputs=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _series_run(tmp_path / "out", "panel-long", 3)
    assert set(run.json("metrics")["series"]["per_series"]) == {"north", "south", "east"}


@pytest.mark.slow
def test_wide_format_run_of_two_files(tmp_path):
    grid = pd.date_range("2024-01-01", periods=240, freq="h").strftime(STAMP)
    t = np.arange(240)
    for k, name in enumerate(("site1", "site2")):
        _write(pd.DataFrame({"timestamp": grid, "a": 10 + k + np.sin(2 * np.pi * t / 24) + 0.1 * np.cos(t),
                             "b": 5 + np.cos(2 * np.pi * t / 24) + 0.1 * np.sin(3 * t)}), tmp_path / f"{name}.csv")
    proc = launch("data=csv", f"data.path={tmp_path / 'site1.csv'}", f"data.paths=[{tmp_path / 'site2.csv'}]",
                  "data.target_cols=[a,b]", "data.season=24", *FAST, "run_id=panel-wide", outputs=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _series_run(tmp_path / "out", "panel-wide", 4)
    assert set(run.json("metrics")["series"]["per_series"]) == {"site1:a", "site1:b", "site2:a", "site2:b"}


@pytest.mark.slow
def test_synthetic_panel_run_with_the_category_static(tmp_path):
    proc = launch("+preset=smoke", "data.n_series=3", "data.n_points=300", "data.static_covariates=[category]",
                  *FAST, "run_id=panel-syn", outputs=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _series_run(tmp_path / "out", "panel-syn", 3)


def test_one_series_gives_the_numbers_it_gave_before_many_series(smoke_run: Run):
    """The single-series path is untouched by many series: the session's smoke run (no
    id_col) reproduces what the commit before spline_lstm.data.panel gave, bit for bit on
    the reference machine (the model's rmse within 1e-4, for other CPUs' float order).
    If a deliberate change moves these numbers, update them in the same commit."""
    import hashlib

    doc = smoke_run.json("metrics")
    assert "series" not in doc or doc["series"] is None
    assert doc["baselines"]["naive_last"]["rmse"] == pytest.approx(0.537342912316452, rel=1e-9)
    assert doc["metrics"]["rmse"] == pytest.approx(0.5356108243057224, rel=1e-4)
    assert doc["history"]["loss"][0] == pytest.approx(0.9994521737098694, rel=1e-4)
    with np.load(smoke_run.path("processed"), allow_pickle=False) as npz:
        assert "series_ids" not in npz.files and npz["split_bounds"].tolist() == [0, 280, 340, 400]
        digest = hashlib.sha256(np.round(npz["processed"].astype(np.float64), 6).tobytes()).hexdigest()
    assert digest.startswith("d41b9b59d2d4cc26")


@pytest.mark.unit
def test_a_series_id_with_a_pipe_stays_one_cell_of_the_report_tables():
    from spline_lstm.evaluation.report import _series_lines, markdown_to_html

    entry = {"model": {"mase": 0.5}, "naive_last": {"mase": 1.0}}
    table = {"a|b": entry, "c": {"model": {"mase": 0.7}, "naive_last": {"mase": 1.0}}}
    doc = {"metrics": {}, "series": {"count": 2, "per_series": table, "distribution": metrics.distribution(table)}}
    md = "\n".join(_series_lines(doc, "plots"))
    rows = [line for line in md.splitlines() if line.startswith("| a")]
    assert rows == ["| a\\|b | 0.5 | | c | 0.7 |"]
    html = markdown_to_html(md, {})
    assert "<td>a|b</td><td>0.5</td><td></td><td>c</td><td>0.7</td>" in html
