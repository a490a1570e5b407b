"""``predict`` holds its input to training's rules (``preprocess.InputRules``) plus
the run's frequency: each rule, broken on its own, ends in exit 5 with one ERROR
line that names the rule and predict's own option (``--input``), never a training
key, and no forecast. End to end: ``python -m spline_lstm predict`` on the
session's smoke run."""
from __future__ import annotations

from pathlib import Path
import numpy as np
import pandas as pd
import pytest

from spline_lstm.artifacts.layout import safe_load_pickle
from tests.conftest import Run, cli, last_line
from tests.test_hardening import PREDICT_INPUT_CASES, Scenario
from tests.helpers.tamper import input_csv


def _history(run: Run, tmp: Path) -> pd.DataFrame:
    """The run's own recent history, fully observed (gaps filled linearly)."""
    frame = input_csv(run.path("processed"), tmp / "history.csv", rows=200)
    frame = frame.assign(value=frame["value"].interpolate(limit_direction="both"))
    return frame.reset_index(drop=True)


def _daily(f: pd.DataFrame) -> pd.DataFrame:
    """A daily file fed to the hourly model."""
    return f.assign(timestamp=pd.date_range("2024-01-01", periods=len(f), freq="D"))


def _mostly_gaps(f: pd.DataFrame) -> pd.DataFrame:
    """87% missing in blocks (3 observed hours, 20 absent): the rows still step hourly
    and no gap exceeds max_gap, so only the missing ratio is wrong."""
    stamps = pd.date_range("2024-01-01", periods=23 * 20, freq="h")
    keep = (np.arange(len(stamps)) % 23) < 3
    return pd.DataFrame({"timestamp": stamps[keep], "value": np.resize(f["value"].to_numpy(), int(keep.sum()))})


def _one_long_gap(f: pd.DataFrame) -> pd.DataFrame:
    return f.drop(index=range(100, 140))  # 40 absent hours


def _overflows_when_scaled(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[150, "value"] = 1e50  # under the magnitude bound, beyond float32 once scaled
    return f


def _huge(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[150, "value"] = 1e308
    return f


def _short(f: pd.DataFrame) -> pd.DataFrame:
    return f.tail(10)


def _two_centuries_earlier(f: pd.DataFrame) -> pd.DataFrame:
    stray = pd.DataFrame({"timestamp": [pd.Timestamp("1824-01-01")], "value": [1.0]})
    return pd.concat([stray, f], ignore_index=True)


def _ninety_two_percent_gaps(f: pd.DataFrame) -> pd.DataFrame:
    """Every 12th hour only: the rows step 12 h, not the run's 1 h."""
    stamps = pd.date_range("2024-01-01", periods=len(f) * 12, freq="h")[::12]
    return f.assign(timestamp=stamps)


# the rows of tests.test_hardening.PREDICT_INPUT_CASES (the reliability table): how to
# break the history, and what the ERROR line must name
BREAKS = {
    "predict-daily-for-hourly": (_daily, ("frequency rule", "'D'", "'h'")),
    "predict-mostly-gaps": (_mostly_gaps, ("missing-ratio rule", "the run's max_missing_ratio=0.2")),
    "predict-92-percent-gaps": (_ninety_two_percent_gaps, ("frequency rule", "'12h'")),
    "predict-long-gap": (_one_long_gap, ("longest-gap rule", "gap of 40", "the run's max_gap=")),
    "predict-overflow-after-scaling": (_overflows_when_scaled, ("finite-after-scaling rule", "1e+50")),
    "predict-huge-value": (_huge, ("magnitude rule", "1e+308")),
    "predict-too-short": (_short, ("minimum-length rule", "the model needs lookback")),
    "predict-stray-row": (_two_centuries_earlier, ("grid-size rule", "1824-01-01")),
}


@pytest.mark.unit
def test_every_table_row_has_a_case():
    assert {c.id for c in PREDICT_INPUT_CASES} == set(BREAKS)


@pytest.mark.parametrize("case", PREDICT_INPUT_CASES, ids=[c.id for c in PREDICT_INPUT_CASES])
def test_predict_refuses_an_input_that_breaks_a_rule(smoke_run: Run, tmp_path: Path, case: Scenario):
    breaks, fragments = BREAKS[case.id]
    path = tmp_path / "recent.csv"
    breaks(_history(smoke_run, tmp_path)).to_csv(path, index=False)
    out = tmp_path / "forecast.csv"
    proc = cli("predict", smoke_run.run_id, "--input", str(path), "--output", str(out),
               "--outputs-dir", str(smoke_run.outputs))
    assert proc.returncode == case.code, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    line = last_line(proc.stderr)
    assert errors == [line] and line.startswith(f"ERROR [{case.name}] --input {path} "), proc.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert "data." not in line and "preprocess." not in line, line  # predict's options, not training's
    assert "Traceback" not in proc.stderr and not out.exists()


def test_the_unbroken_history_forecasts(smoke_run: Run, tmp_path: Path):
    """The cases above differ from a valid input only by what each one breaks."""
    path = tmp_path / "recent.csv"
    _history(smoke_run, tmp_path).to_csv(path, index=False)
    proc = cli("predict", smoke_run.run_id, "--input", str(path), "--outputs-dir", str(smoke_run.outputs))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    horizon = safe_load_pickle(smoke_run.path("preprocessor"))["window"]["horizon"]
    assert len(proc.stdout.strip().splitlines()) == horizon + 1


def test_predict_refuses_a_52_mb_header_line_in_seconds(smoke_run: Run, tmp_path: Path):
    """Issue 24: one header line of 6 million cells once kept predict busy > 5 min at 2 GB+."""
    import time

    path = tmp_path / "wide.csv"
    with open(path, "w") as fh:
        fh.write("timestamp,value," + ",".join(f"c{i}" for i in range(6_000_000)) + "\n2024-01-01 00:00:00,1\n")
    t0 = time.perf_counter()
    proc = cli("predict", smoke_run.run_id, "--input", str(path), "--outputs-dir", str(smoke_run.outputs), timeout=120)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith("ERROR [INPUT_INVALID] input file ") and "line limit" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert seconds < 30, f"took {seconds:.1f} s"
