"""Operator commands end to end (``python -m spline_lstm``): --help with an example each,
``predict`` on a healthy and on a tampered run, ``runs list`` and ``runs quarantine``."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spline_lstm.artifacts.layout import ArtifactLayout, quarantine, safe_load_pickle
from tests.conftest import Run, cli, last_line
from tests.helpers.tamper import (files_under, input_csv, malicious_pickle, mlflow_runs,
                                  rewrite_pickle)


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# --- help -------------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("argv", [[], ["health"], ["predict"], ["runs"], ["runs", "list"],
                                  ["runs", "quarantine"]], ids=lambda a: " ".join(a) or "main")
def test_every_command_has_help_with_an_example(argv):
    proc = cli(*argv, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: spline-lstm" in proc.stdout
    assert re.search(r"examples?:\s*\n?\s*python -m spline_lstm " + " ".join(argv), proc.stdout), proc.stdout


@pytest.mark.unit
def test_no_command_is_one_config_invalid_line():
    proc = cli()
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [last_line(proc.stderr)], proc.stderr
    assert last_line(proc.stderr).startswith("ERROR [CONFIG_INVALID] spline-lstm: ")
    no_traceback(proc)


# issue 24: every argparse error is one ERROR [CONFIG_INVALID] line (exit 2), never the usage text
ARGPARSE_ERRORS = [
    (["predict", "r", "--input", "x.csv", "--level", "nan"], "--level: invalid int value: 'nan'"),
    (["predict", "r", "--input", "x.csv", "--level", "80.5"], "--level: invalid int value: '80.5'"),
    (["predict", "r", "--input", "x.csv", "--horizon", "ten"], "--horizon: invalid int value"),
    (["predict", "r", "--input", "x.csv", "--format", "xml"], "--format: invalid choice: 'xml'"),
    (["predict", "r"], "required: --input"),
    (["predict"], "required"),
    (["nope"], "invalid choice: 'nope'"),
    (["health", "a", "b"], "unrecognized arguments: b"),
    (["health", "a", "--bogus"], "unrecognized arguments: --bogus"),
    (["runs"], "required"),
    (["runs", "list", "--json=x"], "--json"),
]


@pytest.mark.unit
@pytest.mark.parametrize("argv,fragment", ARGPARSE_ERRORS, ids=[" ".join(a) for a, _ in ARGPARSE_ERRORS])
def test_argparse_errors_are_one_config_invalid_line(argv, fragment, capsys):
    from spline_lstm.cli.main import main

    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR [CONFIG_INVALID] spline-lstm"), err
    assert fragment in lines[0] and "usage:" not in out + err


# --- predict ----------------------------------------------------------------------------------

def test_predict_forecasts_horizon_steps_in_original_units(smoke_run: Run, tmp_path: Path):
    history = input_csv(smoke_run.path("processed"), tmp_path / "recent.csv")
    out = tmp_path / "forecast.csv"
    proc = cli("predict", smoke_run.run_id, "--input", str(tmp_path / "recent.csv"), "--output", str(out),
               "--outputs-dir", str(smoke_run.outputs))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    no_traceback(proc)
    payload = safe_load_pickle(smoke_run.path("preprocessor"))
    horizon, freq = payload["window"]["horizon"], payload["data"]["freq"]
    assert f"wrote {horizon} forecasts to {out}" in proc.stdout

    frame = pd.read_csv(out, parse_dates=["timestamp"])
    assert list(frame.columns) == ["timestamp", "step", "forecast", "run_id"]
    assert list(frame["step"]) == list(range(1, horizon + 1)) and set(frame["run_id"]) == {smoke_run.run_id}
    assert len(frame) == horizon
    last = pd.Timestamp(history["timestamp"].iloc[-1])
    expected = pd.date_range(last, periods=horizon + 1, freq=freq)[1:]
    assert list(frame["timestamp"]) == list(expected)
    assert (frame["timestamp"] > last).all()
    # original units, not the scaled ones: near the level of the input, far from 0 +- 3
    values = frame["forecast"].to_numpy()
    recent = history["value"].dropna().to_numpy()[-48:]  # the scaler may be fitted on differences
    assert np.isfinite(values).all()
    assert abs(recent.mean()) > 5 * recent.std(), "the check below needs a non-zero level"
    assert (np.abs(values - recent.mean()) < 5 * recent.std()).all(), (values, recent.mean(), recent.std())
    lo, hi = history["value"].min(), history["value"].max()
    assert ((values > lo - (hi - lo)) & (values < hi + (hi - lo))).all(), (values, lo, hi)


def test_predict_refuses_a_swapped_preprocessor_with_10(fresh_run: Run, tmp_path: Path):
    input_csv(fresh_run.path("processed"), tmp_path / "recent.csv")
    rewrite_pickle(fresh_run.path("preprocessor"), lambda p: p.update(run_id="another-run"))
    out = tmp_path / "forecast.csv"
    proc = cli("predict", fresh_run.run_id, "--input", str(tmp_path / "recent.csv"), "--output", str(out),
               "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 10, proc.stdout + proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("ERROR [RUN_ID_MISMATCH] ") and "preprocessor.pkl='another-run'" in line
    no_traceback(proc)
    assert not out.exists()


def test_predict_refuses_a_malicious_pickle_with_11(fresh_run: Run, tmp_path: Path):
    input_csv(fresh_run.path("processed"), tmp_path / "recent.csv")
    marker = tmp_path / "pwned"
    fresh_run.path("preprocessor").write_bytes(malicious_pickle(fresh_run.run_id, os.system, (f"touch {marker}",)))
    proc = cli("predict", fresh_run.run_id, "--input", str(tmp_path / "recent.csv"),
               "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 11, proc.stdout + proc.stderr
    assert last_line(proc.stderr).startswith("ERROR [UNSAFE_ARTIFACT] ")
    no_traceback(proc)
    assert not marker.exists()
    assert proc.stdout == ""


@pytest.mark.parametrize("rows, fragment", [(None, "does not exist"), (10, "the model needs lookback")])
def test_predict_bad_input_exits_5(smoke_run: Run, tmp_path: Path, rows, fragment):
    path = tmp_path / "recent.csv"
    if rows is not None:
        input_csv(smoke_run.path("processed"), path, rows=rows)
    proc = cli("predict", smoke_run.run_id, "--input", str(path), "--outputs-dir", str(smoke_run.outputs))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("ERROR [INPUT_INVALID] ") and fragment in line, line
    no_traceback(proc)


# --- runs list ---------------------------------------------------------------------------------

def rows_of(proc) -> dict:
    return {r["run_id"]: r for r in json.loads(proc.stdout)}


def test_runs_list_shows_pass_fail_running_and_incomplete(fresh_run: Run):
    layout = ArtifactLayout(fresh_run.artifacts)
    layout.claim("failed-early")  # what a run that failed before writing anything leaves behind
    for kind, path in layout.paths("half-done").items():  # every file, never committed
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fresh_run.path(kind).read_bytes())
    layout.claim("live")
    hold = _hold_lock(fresh_run.outputs / "runs" / "live")  # a live launch holds its Hydra folder
    try:
        proc = cli("runs", "list", "--outputs-dir", str(fresh_run.outputs))
    finally:
        hold.kill()
        hold.wait()
    assert proc.returncode == 0, proc.stderr
    table = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert table[fresh_run.run_id][2:4] == ["PASS", "8/8"]
    assert table["failed-early"][2:4] == ["incomplete", "0/8"]
    assert table["half-done"][2:4] == ["incomplete", "8/8"]  # all files, no completion record
    assert table["live"][2:4] == ["running", "0/8"]
    assert proc.stdout.splitlines()[0].split() == ["run_id", "age", "status", "files", "test_rmse"]

    rows = rows_of(cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs)))
    assert rows[fresh_run.run_id]["status"] == "PASS"
    assert rows[fresh_run.run_id]["test_rmse"] == fresh_run.json("metrics")["metrics"]["rmse"]
    assert rows["failed-early"] == {**rows["failed-early"], "status": "incomplete", "artifacts": "0/8",
                                    "test_rmse": None}
    assert rows["live"]["status"] == "incomplete"  # the lock is gone with its process

    fresh_run.path("report").unlink()
    rows = rows_of(cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs)))
    assert rows[fresh_run.run_id]["status"] == "FAIL" and rows[fresh_run.run_id]["artifacts"] == "7/8"
    assert "1 of 8 artifacts missing" in rows[fresh_run.run_id]["reason"]


def test_runs_list_never_trusts_a_stale_pass(fresh_run: Run):
    """The verdict cache is keyed on every file's size and mtime: truncating best.keras
    after a PASS (record and all) shows FAIL at once."""
    assert cli("health", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs)).returncode == 0
    record = fresh_run.artifacts / "health" / f"{fresh_run.run_id}.json"
    assert json.loads(record.read_text())["fingerprint"]
    rows = rows_of(cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs)))
    assert rows[fresh_run.run_id]["status"] == "PASS"
    best = fresh_run.path("best")
    best.write_bytes(best.read_bytes()[:100])
    rows = rows_of(cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs)))
    assert rows[fresh_run.run_id]["status"] == "FAIL"
    assert json.loads(record.read_text())["verdict"] == "PASS"  # the stale record is still there, unused


@pytest.mark.parametrize("doc", ["[1, 2]", "[" * 100_000, '{"verdict": "PASS", "fingerprint": ' + "1" * 400 + "}"],
                         ids=["list", "deep", "400-digits"])
def test_runs_list_survives_a_hostile_health_record(fresh_run: Run, doc: str):
    (fresh_run.artifacts / "health" / f"{fresh_run.run_id}.json").write_text(doc)
    proc = cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert rows_of(proc)[fresh_run.run_id]["status"] == "PASS"  # re-verified from the files


def _hold_lock(folder: Path):
    """A separate process holding folder/.lock the way a live launch does."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(folder / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.unit
def test_runs_list_on_an_empty_outputs_dir(tmp_path: Path):
    proc = cli("runs", "list", "--outputs-dir", str(tmp_path))
    assert proc.returncode == 0 and "no runs under" in proc.stdout


# --- runs quarantine ----------------------------------------------------------------------------

def digest(paths) -> list:
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in paths)


def test_quarantine_moves_everything_deletes_nothing_and_frees_the_run_id(fresh_run: Run):
    rid, layout = fresh_run.run_id, ArtifactLayout(fresh_run.artifacts)
    hydra_dir = fresh_run.outputs / "runs" / rid
    before = [f for p in layout.existing(rid) for f in ([p] if p.is_file() else files_under(p))]
    before += files_under(hydra_dir)
    assert len(before) >= 8 + 1 + 2  # 8 artifacts, the health record, run.log + .hydra files
    fresh_run.path("processed").write_bytes(b"broken")  # quarantine is for broken runs
    expected = digest(before)

    proc = cli("runs", "quarantine", rid, "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    no_traceback(proc)
    match = re.search(r"quarantined run_id (\S+): (\d+) files moved to (\S+)", proc.stdout)
    assert match and match.group(1) == rid, proc.stdout
    target = Path(match.group(3))
    assert target.parent == fresh_run.artifacts / "quarantine" and target.name.startswith(f"{rid}-")
    moved = files_under(target)
    assert len(moved) == int(match.group(2)) == len(before)
    assert digest(moved) == expected  # every byte kept
    assert (target / "processed" / rid / "processed.npz").read_bytes() == b"broken"
    assert (target / "hydra" / rid / "run.log").is_file()
    assert not any(p.exists() for p in before) and not hydra_dir.exists()
    assert layout.existing(rid) == []
    layout.ensure_unclaimed(rid)  # the run_id is free again (no RunIdConflict)
    assert f"run_id={rid}" in proc.stdout

    (mlrun,) = mlflow_runs(fresh_run.outputs, rid)
    assert mlrun.data.tags["quarantined"] == "true"

    listing = cli("runs", "list", "--json", "--outputs-dir", str(fresh_run.outputs))
    assert rid not in rows_of(listing)
    again = cli("runs", "quarantine", rid, "--outputs-dir", str(fresh_run.outputs))
    assert again.returncode == 0 and "nothing to quarantine" in again.stdout
    assert files_under(target) == moved


def test_quarantine_refuses_an_invalid_run_id_with_3(fresh_run: Run):
    proc = cli("runs", "quarantine", "../../etc", "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 3 and last_line(proc.stderr).startswith("ERROR [RUN_ID_INVALID] ")
    no_traceback(proc)
    assert fresh_run.path("metrics").exists()


def test_quarantine_takes_exactly_one_run_id(fresh_run: Run):
    """Regression (issue 11): ``runs quarantine <id>.md`` moved <id>'s report, whose path is
    run ``<id>.md``'s plot folder. Prefixes and suffixes of a run_id own nothing of it."""
    rid, layout = fresh_run.run_id, ArtifactLayout(fresh_run.artifacts)
    before = {p: p.read_bytes() for p in files_under(fresh_run.artifacts)}
    for other in (f"{rid}.md", rid[:5], f"{rid}-2", f"{rid}.json"):
        proc = cli("runs", "quarantine", other, "--outputs-dir", str(fresh_run.outputs))
        assert proc.returncode == 0 and "nothing to quarantine" in proc.stdout, proc.stdout + proc.stderr
    assert {p: p.read_bytes() for p in files_under(fresh_run.artifacts)} == before
    assert not (fresh_run.artifacts / "quarantine").exists()

    # the other way round: run 'solo.md' has a plot folder named like run 'solo''s report
    layout.claim("solo.md")
    plot = layout.plot_dir("solo.md") / "series.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"\x89PNG")
    proc = cli("runs", "quarantine", "solo", "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0 and "nothing to quarantine" in proc.stdout
    assert plot.read_bytes() == b"\x89PNG"
    proc = cli("runs", "quarantine", "solo.md", "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0 and "quarantined run_id solo.md: 1 files moved" in proc.stdout, proc.stdout
    assert not plot.exists() and fresh_run.path("report").is_file()


def test_quarantine_moves_the_completion_record(fresh_run: Run):
    rid = fresh_run.run_id
    record = ArtifactLayout(fresh_run.artifacts).complete_path(rid)
    assert record.is_file()
    proc = cli("runs", "quarantine", rid, "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0, proc.stderr
    target = Path(re.search(r"files moved to (\S+)", proc.stdout).group(1))
    assert not record.exists() and (target / "complete" / f"{rid}.json").is_file()
    assert cli("health", rid, "--outputs-dir", str(fresh_run.outputs)).returncode == 9


def test_quarantine_never_connects_to_a_store_named_in_the_run(fresh_run: Run, tmp_path: Path):
    """Regression: the MLflow tag followed metadata's tracking_uri (a planted one created a
    database elsewhere, or sent a request anywhere). Only the configured store is used."""
    planted = tmp_path / "elsewhere" / "planted.db"
    doc = fresh_run.json("metadata")
    doc["mlflow"]["tracking_uri"] = f"sqlite:///{planted}"
    fresh_run.path("metadata").write_text(json.dumps(doc))
    proc = cli("runs", "quarantine", fresh_run.run_id, "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not planted.parent.exists()
    assert "MLflow: tagged 1 run(s) quarantined=true" in proc.stdout
    (mlrun,) = mlflow_runs(fresh_run.outputs, fresh_run.run_id)
    assert mlrun.data.tags["quarantined"] == "true"


def test_quarantine_refuses_a_run_that_is_still_running_with_4(fresh_run: Run):
    rid = fresh_run.run_id
    before = {p: p.read_bytes() for p in files_under(fresh_run.outputs) if "mlflow" not in p.name}
    hold = _hold_lock(fresh_run.outputs / "runs" / rid)
    try:
        proc = cli("runs", "quarantine", rid, "--outputs-dir", str(fresh_run.outputs))
    finally:
        hold.kill()
        hold.wait()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("ERROR [RUN_ID_CONFLICT] ") and "is running right now" in line, line
    no_traceback(proc)
    after = {p: p.read_bytes() for p in files_under(fresh_run.outputs) if "mlflow" not in p.name}
    assert after == before  # nothing moved
    assert cli("runs", "quarantine", rid, "--outputs-dir", str(fresh_run.outputs)).returncode == 0  # once it ended


def test_two_quarantines_in_the_same_second(fresh_run: Run):
    """Together: one moves the run, the other finds nothing to do; one after the other
    within a second (the run_id reused in between): two distinct folders. All exit 0."""
    rid, layout = fresh_run.run_id, ArtifactLayout(fresh_run.artifacts)
    argv = [sys.executable, "-m", "spline_lstm", "runs", "quarantine", rid, "--outputs-dir", str(fresh_run.outputs)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = sorted("nothing to quarantine" in out for out, _ in outs)
    assert said == [False, True], outs
    assert not any("Traceback" in err for _, err in outs)

    targets = []
    for _ in range(2):  # in-process: both within one second, as a script looping over runs would
        layout.claim(rid)  # the run_id reused, then quarantined again at once
        targets.append(quarantine(layout, rid))
    assert targets[0] != targets[1] and all(t.is_dir() for t in targets)  # same second: '<name>-2'
    folders = list((fresh_run.artifacts / "quarantine").iterdir())
    assert len(folders) == 3, folders


# issue 24: nothing is left in the temp dir once a command ends (TensorFlow's autograph files
# were, because launch.py ends with os._exit and skips their atexit clean-up)
def test_a_run_leaves_nothing_in_its_temp_dir(smoke_run: Run):
    assert smoke_run.temp_left == [], smoke_run.temp_left


def test_predict_leaves_nothing_in_its_temp_dir(smoke_run: Run, tmp_path: Path):
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    input_csv(smoke_run.path("processed"), tmp_path / "recent.csv")
    proc = cli("predict", smoke_run.run_id, "--input", str(tmp_path / "recent.csv"), "--outputs-dir",
               str(smoke_run.outputs), env={"TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(temp)) == []


@pytest.mark.unit
def test_scratch_dir_is_private_and_removed(tmp_path, monkeypatch):
    import tempfile

    from spline_lstm.core.scratch import scratch_dir, system_tempdir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch_dir() as scratch:
        assert tempfile.gettempdir() == str(scratch) and os.environ["TMPDIR"] == str(scratch)
        assert system_tempdir() == str(tmp_path)
        tempfile.NamedTemporaryFile(prefix="__autograph_generated_file", suffix=".py", delete=False).close()
    assert os.listdir(tmp_path) == [] and tempfile.gettempdir() == str(tmp_path)
