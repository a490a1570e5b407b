"""The MLflow run's lifecycle, the store's initialisation and secrets, with real faults.

Real launches, a real SQLite store, a real helper process killed (SIGKILL) or
stopped (SIGSTOP), a store held with ``BEGIN EXCLUSIVE``, concurrent launches on a
fresh store, a live MLflow server behind a basic-auth proxy; nothing is mocked.
"""
from __future__ import annotations

import io
import json
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SMOKE_FAST, cli, last_line, launch
from tests.helpers.processes import (Watched, auth_mlflow_server, env, epochs_logged, store_health, store_runs,
                                     tracking_helper_pid)

LONG = ["+preset=smoke", "data.n_points=400", "training.epochs=3000", "training.patience=0"]
PASSWORD = "pw-" + secrets.token_hex(10)


def _store(tmp_path: Path):
    from spline_lstm.tracking.store import Store

    db = tmp_path / "mlflow.db"
    return Store(f"sqlite:///{db}", (tmp_path / "art").as_uri(), "lifecycle"), db


def _watched_training(run_id: str, outputs: Path) -> Watched:
    """A launch once it trains and its MLflow run exists (the helper has set the store up)."""
    w = Watched([*LONG, f"run_id={run_id}"], outputs)
    started = w.wait_for(epochs_logged(3))
    deadline = time.time() + 120
    while started and time.time() < deadline:
        try:
            if store_runs(outputs / "mlflow.db", run_id):
                return w
        except sqlite3.OperationalError:
            pass  # no store, or no schema yet
        time.sleep(0.2)
    w.proc.kill()
    w.finish()
    pytest.fail(f"training or its MLflow run never started:\n{w.out[-3000:]}\n{w.stderr[-3000:]}")


def _assert_one_error_line(w: Watched, name: str) -> str:
    line = last_line(w.stderr)
    assert line.startswith(f"ERROR [{name}] "), w.stderr[-3000:]
    assert "Traceback" not in w.out + w.stderr
    return line


# --- one owner: later terminal states win -------------------------------------------------

def test_a_later_terminal_state_replaces_a_queued_finished(tmp_path):
    """The helper applies requests in order: FINISHED (with health=PASS) queued, then KILLED
    -> the run ends KILLED and health turns FAIL."""
    from spline_lstm.tracking.helper import serve

    store, db = _store(tmp_path)
    from dataclasses import asdict

    requests = [{"op": "start", "store": asdict(store), "run_id": "later-wins", "tags": {}, "params": {"a": 1}},
                {"op": "verdict", "passed": True}, {"op": "end", "status": "KILLED"}]
    replies = io.StringIO()
    serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), replies)
    assert [json.loads(line)["ok"] for line in replies.getvalue().splitlines()] == [True, True, True]
    [(status, tags)] = store_runs(db, "later-wins")
    assert status == "KILLED" and tags["health"] == "FAIL"


def test_the_tracker_owns_the_run_until_it_is_closed(tmp_path):
    """Through the real helper process: the gate's PASS ends the run FINISHED; a failure
    after it (abort) still wins; closing leaves nothing RUNNING and no helper behind."""
    from spline_lstm.tracking.tracker import Tracker

    store, db = _store(tmp_path)
    tracker = Tracker(store)
    tracker.start("owned", {"k": "v"}, {"p": 1})
    tracker.log_metrics({"loss": 1.0}, step=0)
    assert tracker.info()["mlflow_run_id"]
    tracker.finish(True)
    assert [s for s, _ in store_runs(db, "owned")] == ["FINISHED"]
    proc = tracker._proc
    tracker.abort("FAILED")
    [(status, tags)] = store_runs(db, "owned")
    assert status == "FAILED" and tags["health"] == "FAIL"
    assert proc.poll() is not None, "the helper outlived its run"


def test_a_stopped_helper_is_killed_and_the_run_ended_directly(tmp_path):
    from spline_lstm.tracking.tracker import Tracker

    store, db = _store(tmp_path)
    tracker = Tracker(store)
    tracker.start("stopped", {}, {})
    tracker.info()
    proc = tracker._proc
    os.kill(proc.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    tracker.abort("KILLED")
    assert time.monotonic() - t0 < 10
    assert proc.poll() == -signal.SIGKILL
    assert [s for s, _ in store_runs(db, "stopped")] == ["KILLED"]


def test_a_helper_stopped_before_it_created_the_run_still_leaves_a_killed_record(tmp_path):
    """Interrupted while the helper still imports MLflow: the claimed run gets its record."""
    from spline_lstm.tracking.tracker import Tracker

    store, db = _store(tmp_path)
    tracker = Tracker(store)
    tracker.start("early", {"preset": "smoke"}, {})
    os.kill(tracker._proc.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    tracker.abort("KILLED")
    assert time.monotonic() - t0 < 10
    [(status, tags)] = store_runs(db, "early")
    assert status == "KILLED" and tags["preset"] == "smoke"


# --- store initialisation -----------------------------------------------------------------

def test_a_half_migrated_store_is_repaired_under_the_lock(tmp_path):
    from spline_lstm.tracking.tracker import ensure_store

    store, db = _store(tmp_path)
    exp_id = ensure_store(store)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _alembic_tmp_runs AS SELECT * FROM runs")  # what a dead migration leaves
    con.commit()
    con.close()
    assert ensure_store(store) == exp_id
    health = store_health(db)
    assert health["integrity"] == "ok" and health["leftovers"] == [] and len(health["versions"]) == 1
    assert Path(f"{db}.init.lock").exists()


def test_a_store_that_cannot_be_migrated_is_refused_with_the_runbook_action(tmp_path):
    from spline_lstm.core.errors import TrackingFailed
    from spline_lstm.tracking.tracker import ensure_store

    store, db = _store(tmp_path)
    ensure_store(store)
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
    con.commit()
    con.close()
    with pytest.raises(TrackingFailed, match="half-migrated.*runbook: 'Tracking store half-migrated'"):
        ensure_store(store)


def test_two_plain_runs_on_a_fresh_store(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / "launch.py"), *SMOKE_FAST, f"paths.outputs_dir={out}"]
    procs = [subprocess.Popen([*args, f"run_id=pair-{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env(), cwd=str(REPO)) for i in (1, 2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    health = store_health(out / "mlflow.db")
    assert health["integrity"] == "ok" and health["leftovers"] == [] and len(health["versions"]) == 1
    for i in (1, 2):
        assert [s for s, _ in store_runs(out / "mlflow.db", f"pair-{i}")] == ["FINISHED"]
    again = launch(*SMOKE_FAST, "run_id=pair-3", outputs=out)
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.slow
def test_two_sweeps_on_a_fresh_store(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / "launch.py"), "-m", *SMOKE_FAST, "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2", f"paths.outputs_dir={out}"]
    procs = [subprocess.Popen([*args, f"seed={2 * i},{2 * i + 1}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env(), cwd=str(REPO)) for i in (1, 2)]
    results = [p.communicate(timeout=1200) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    health = store_health(out / "mlflow.db")
    assert health["integrity"] == "ok" and health["leftovers"] == [] and len(health["versions"]) == 1
    con = sqlite3.connect(f"file:{out / 'mlflow.db'}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall() == [("FINISHED", 6)]  # 4 jobs, 2 sweep parents
    finally:
        con.close()


def test_an_empty_experiment_name_is_a_config_error(tmp_path):
    out = tmp_path / "out"
    proc = launch(*SMOKE_FAST, "tracking.experiment=", outputs=out)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith("ERROR [CONFIG_INVALID] tracking.experiment")
    assert not (out / "mlflow.db").exists() and not (out / "artifacts").exists()


# --- faults mid-run -----------------------------------------------------------------------

@pytest.mark.slow
def test_helper_killed_mid_training_fails_the_run(tmp_path):
    out = tmp_path / "out"
    w = _watched_training("lc-kill9", out)
    os.kill(tracking_helper_pid(w.proc.pid), signal.SIGKILL)
    t0 = time.monotonic()
    code = w.finish(timeout=180)
    assert code == 8, w.stderr[-3000:]
    assert time.monotonic() - t0 < 60
    assert "tracking helper exited" in _assert_one_error_line(w, "TRACKING_FAILED")
    assert [s for s, _ in store_runs(out / "mlflow.db", "lc-kill9")] == ["FAILED"]
    assert cli("health", "lc-kill9", "--outputs-dir", str(out)).returncode != 0


@pytest.mark.slow
def test_sigterm_with_a_stopped_helper_exits_130_within_10_s(tmp_path):
    out = tmp_path / "out"
    w = _watched_training("lc-stopped", out)
    helper = tracking_helper_pid(w.proc.pid)
    os.kill(helper, signal.SIGSTOP)
    time.sleep(1)
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    try:
        code = w.proc.wait(timeout=10)
    finally:
        elapsed = time.monotonic() - t0
        w.finish(timeout=60)
        if Path(f"/proc/{helper}").exists():
            os.kill(helper, signal.SIGKILL)
    assert code == 130 and elapsed <= 10, (code, elapsed, w.stderr[-2000:])
    _assert_one_error_line(w, "INTERRUPTED")
    assert [s for s, _ in store_runs(out / "mlflow.db", "lc-stopped")] == ["KILLED"]
    assert cli("health", "lc-stopped", "--outputs-dir", str(out)).returncode != 0


@pytest.mark.slow
def test_a_store_locked_mid_run_fails_it_and_it_never_passes(tmp_path):
    """SQLite held with BEGIN EXCLUSIVE beyond MLflow's 20 s busy timeout while training."""
    out = tmp_path / "out"
    w = _watched_training("lc-locked", out)
    con = sqlite3.connect(out / "mlflow.db", timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        time.sleep(25)
        con.execute("ROLLBACK")
    finally:
        con.close()
    code = w.finish(timeout=300)
    assert code == 8, w.stderr[-3000:]
    assert "database is locked" in _assert_one_error_line(w, "TRACKING_FAILED")
    statuses = [s for s, _ in store_runs(out / "mlflow.db", "lc-locked")]
    assert statuses == ["FAILED"], statuses
    assert cli("health", "lc-locked", "--outputs-dir", str(out)).returncode != 0


# --- secrets ------------------------------------------------------------------------------

@pytest.mark.unit
def test_masking_covers_text_nested_values_and_logs(monkeypatch):
    from spline_lstm.core.secrets import MaskingFilter, hide_passwords, mask_obj, mask_text

    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert hide_passwords([f"tracking.uri=http://bob:{PASSWORD}@h:1"]) == ["tracking.uri=http://bob:***@h:1"]
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
    assert mask_text(f"token {PASSWORD} in prose") == "token *** in prose"
    doc = {"a": [f"x{PASSWORD}y", {"b": (f"http://u:{PASSWORD}@h",)}], PASSWORD: 3, "n": 1.5}
    assert PASSWORD not in json.dumps(mask_obj(doc))
    assert mask_obj(doc)["n"] == 1.5
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "uri %s", (f"http://u:{PASSWORD}@h",), None)
    try:
        raise RuntimeError(f"failed with {PASSWORD}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    MaskingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert PASSWORD not in text and "u:***@h" in text and "failed with ***" in text


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    with auth_mlflow_server(tmp_path_factory.mktemp("auth"), "alice", PASSWORD) as server:
        if server is None:
            pytest.skip("mlflow server did not start")
        yield server


def _way(way: str, server, tmp: Path):
    """(extra overrides, extra environment) for one way a URI with a password arrives."""
    uri = server.uri_with_password()
    if way == "override":
        return [f"tracking.uri={uri}"], {}
    if way == "yaml":
        conf = tmp / "conf" / "leak"
        conf.mkdir(parents=True)
        (conf / "uri.yaml").write_text(f"# @package _global_\ntracking:\n  uri: {uri}\n")
        return [f"hydra.searchpath=[file://{tmp / 'conf'}]", "+leak=uri"], {}
    if way == "oc-env":
        return ["tracking.uri=${oc.env:URI_WITH_PASSWORD}"], {"URI_WITH_PASSWORD": uri}
    return [], {"MLFLOW_TRACKING_URI": uri}


@pytest.mark.slow
@pytest.mark.parametrize("way", ["override", "yaml", "oc-env", "environment"])
def test_a_tracking_password_is_never_written(way, auth_server, tmp_path):
    out = tmp_path / "out"
    overrides, extra = _way(way, auth_server, tmp_path)
    before = auth_server.seen["authorised"]
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *SMOKE_FAST, *overrides, f"run_id=pw-{way}",
                           f"paths.outputs_dir={out}"], capture_output=True, text=True, timeout=600,
                          env=env({k: v for k, v in extra.items()}), cwd=str(REPO))
    assert PASSWORD not in proc.stdout + proc.stderr, "password on the console"
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert auth_server.seen["authorised"] > before, "the run never reached the password-protected server"
    leaked = [str(p) for root in (out, auth_server.store_dir) for p in root.rglob("*")
              if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert not leaked, f"password written to {leaked}"
    meta = json.loads((out / "artifacts" / "metadata" / f"pw-{way}.json").read_text())
    assert meta["mlflow"]["tracking_uri"] == auth_server.url.replace("://", "://alice:***@")
