"""The commit protocol end to end (issue 11): a run counts only once its completion
record ``complete/<run_id>.json`` is written, as its very last write. Real launches,
real signals, a really killed tracking helper: a process that exits non-zero never
leaves a record, so ``health`` refuses the run afterwards, and once the record is
written nothing can turn the exit code non-zero.

Every COMMIT_CASES row of tests/test_hardening.py names the test that asserts it
(``COVERED_BY``); a test below checks that the two stay in step."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Run, cli, last_line
from tests.helpers.pause import ENV_PAUSE, ENV_SECONDS
from tests.test_hardening import COMMIT_CASES, _mlflow_runs, _Watched

PAUSE = "+hydra.callbacks.pause._target_=tests.helpers.pause.Pause"
FAST = ["+preset=smoke", "training.epochs=1", "data.n_points=400"]

COVERED_BY = {
    "commit-sigterm-writing-artifacts": "test_commit_protocol.py::test_sigterm_while_writing_artifacts",
    "commit-sigterm-before-gate": "test_commit_protocol.py::test_sigterm_before_the_gate",
    "commit-helper-killed-before-tag": "test_commit_protocol.py::test_tracking_helper_killed_before_the_tag",
    "commit-signals-after-commit": "test_commit_protocol.py::test_signals_after_the_commit_are_ignored",
    "commit-killed-before-record": "test_commit_protocol.py::test_killed_before_the_record",
    "quarantine-suffix-run-id": "test_cli.py::test_quarantine_takes_exactly_one_run_id",
    "quarantine-planted-uri": "test_cli.py::test_quarantine_never_connects_to_a_store_named_in_the_run",
    "quarantine-live-run": "test_cli.py::test_quarantine_refuses_a_run_that_is_still_running_with_4",
    "quarantine-same-second": "test_cli.py::test_two_quarantines_in_the_same_second",
    "quarantine-moves-record": "test_cli.py::test_quarantine_moves_the_completion_record",
    "runs-list-stale-pass": "test_cli.py::test_runs_list_never_trusts_a_stale_pass",
    "runs-list-hostile-record": "test_cli.py::test_runs_list_survives_a_hostile_health_record",
}


@pytest.mark.unit
def test_every_commit_case_names_an_existing_test():
    assert set(COVERED_BY) == {c.id for c in COMMIT_CASES}
    here = Path(__file__).parent
    for target in COVERED_BY.values():
        module, name = target.split("::")
        assert f"def {name}(" in (here / module).read_text(), target


def status_of(outputs: Path, run_id: str) -> str:
    proc = cli("runs", "list", "--json", "--outputs-dir", str(outputs))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return {r["run_id"]: r["status"] for r in json.loads(proc.stdout)}[run_id]


def assert_never_passes(outputs: Path, run_id: str, listed: str = "incomplete") -> None:
    """No completion record; runs list shows ``listed``; the standalone gate exits 9 naming
    the missing record (its FAIL report then makes runs list say FAIL)."""
    assert not (outputs / "artifacts" / "complete" / f"{run_id}.json").exists()
    assert status_of(outputs, run_id) == listed
    health = cli("health", run_id, "--outputs-dir", str(outputs))
    assert health.returncode == 9, health.stdout + health.stderr
    assert last_line(health.stderr).startswith("ERROR [HEALTH_FAILED] ") and "Traceback" not in health.stderr
    assert "no completion record" in health.stdout
    assert status_of(outputs, run_id) == "FAIL"


def _launch_and_signal(tmp_path: Path, run_id: str, args, trigger: str, env=None, sig=signal.SIGTERM):
    """A launch, and ``sig`` (None: no signal) the moment ``trigger`` shows on its stdout."""
    out = tmp_path / "outputs"
    w = _Watched([*args, f"run_id={run_id}"], out, env)
    if not w.wait_for(lambda line: trigger in line):
        w.proc.kill()
        w.finish()
        pytest.fail(f"'{trigger}' never came:\n{w.out[-3000:]}\n{w.stderr[-3000:]}")
    if sig is not None:
        w.proc.send_signal(sig)
    return w, out


def _assert_interrupted(w: _Watched, code: int) -> None:
    assert code == 130, w.out[-2000:] + w.stderr[-2000:]
    assert last_line(w.stderr).startswith("ERROR [INTERRUPTED] "), w.stderr[-2000:]
    assert "Traceback" not in w.out + w.stderr


@pytest.mark.slow
def test_sigterm_while_writing_artifacts(tmp_path: Path):
    """Regression: SIGTERM while MLflow logged left a run that passed ``health`` later."""
    w, out = _launch_and_signal(tmp_path, "cp-artifacts", FAST, "== artifacts")
    _assert_interrupted(w, w.finish())
    assert_never_passes(out, "cp-artifacts")
    assert [s for s, _ in _mlflow_runs(out / "mlflow.db", "cp-artifacts")] == ["KILLED"]
    (log,) = (out / "mlartifacts").glob("*/artifacts/run.log")  # the KILLED run has its log, traceback included
    assert "run cp-artifacts failed:" in log.read_text()


@pytest.mark.slow
def test_sigterm_before_the_gate(tmp_path: Path):
    """Every artifact written and the MLflow run ended FINISHED: still no run until the commit."""
    w, out = _launch_and_signal(tmp_path, "cp-gate", [*FAST, PAUSE], "TEST-PAUSE before-gate",
                                env={ENV_PAUSE: "before-gate"})
    _assert_interrupted(w, w.finish())
    assert "== summary" not in w.out  # the gate never ran
    assert_never_passes(out, "cp-gate")


@pytest.mark.slow
def test_tracking_helper_killed_before_the_tag(tmp_path: Path):
    """The gate passes but MLflow cannot record it: exit 8 and no completion record."""
    w, out = _launch_and_signal(tmp_path, "cp-helper", [*FAST, PAUSE], "TEST-PAUSE before-gate",
                                env={ENV_PAUSE: "before-gate", ENV_SECONDS: "3"}, sig=None)
    helpers = subprocess.run(["pgrep", "-P", str(w.proc.pid), "-f", "spline_lstm.tracking.helper"],
                             capture_output=True, text=True).stdout.split()
    assert helpers, "no tracking helper to kill"
    for pid in helpers:
        subprocess.run(["kill", "-9", pid])
    code = w.finish()
    assert code == 8, w.out[-2000:] + w.stderr[-2000:]
    assert last_line(w.stderr).startswith("ERROR [TRACKING_FAILED] ") and "Traceback" not in w.stderr
    assert_never_passes(out, "cp-helper")


@pytest.mark.slow
def test_signals_after_the_commit_are_ignored(tmp_path: Path):
    """Once the record is written the process exits 0, whatever signal comes."""
    w, out = _launch_and_signal(tmp_path, "cp-after", [*FAST, PAUSE], "TEST-PAUSE after-commit",
                                env={ENV_PAUSE: "after-commit", ENV_SECONDS: "4"})
    time.sleep(0.5)
    w.proc.send_signal(signal.SIGINT)
    code = w.finish()
    assert code == 0, w.out[-2000:] + w.stderr[-2000:]
    assert (out / "artifacts" / "complete" / "cp-after.json").is_file()
    assert cli("health", "cp-after", "--outputs-dir", str(out)).returncode == 0
    assert status_of(out, "cp-after") == "PASS"


def test_killed_before_the_record(fresh_run: Run):
    """A run whose gate passed but whose process died before the record (kill -9)."""
    (fresh_run.artifacts / "complete" / f"{fresh_run.run_id}.json").unlink()
    assert_never_passes(fresh_run.outputs, fresh_run.run_id)


def test_the_in_process_gate_commits_what_it_verified(fresh_run: Run):
    """``run_gate(require_commit=False)`` then ``commit``: the record seals exactly the files
    the gate hashed, and a failed gate is never committed."""
    from spline_lstm.core.errors import HealthFailed
    from spline_lstm.artifacts.health import commit, run_gate

    record = fresh_run.artifacts / "complete" / f"{fresh_run.run_id}.json"
    record.unlink()
    assert not run_gate(fresh_run.artifacts, fresh_run.run_id).passed
    result = run_gate(fresh_run.artifacts, fresh_run.run_id, require_commit=False)
    assert result.passed and len(result.files) == 11  # 8 artifacts + 3 plots
    before = signal.getsignal(signal.SIGTERM)
    assert commit(result, final=False) == record
    assert signal.getsignal(signal.SIGTERM) == before  # a sweep worker gets its handlers back
    assert set(json.loads(record.read_text())["files"]) == set(result.files)
    assert run_gate(fresh_run.artifacts, fresh_run.run_id).passed

    fresh_run.path("report").write_text("edited\n")
    failed = run_gate(fresh_run.artifacts, fresh_run.run_id, require_commit=False)
    with pytest.raises(HealthFailed, match="cannot be committed"):
        commit(failed, final=False)
