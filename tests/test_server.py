"""tracking=server: a real MLflow tracking server on PostgreSQL, under parallel sweeps.

The slow cases start PostgreSQL (installed from Debian packages if missing) and
``mlflow server --serve-artifacts`` on loopback ports (tests/helpers/postgres.py), run
8-job sweeps through joblib and submitit_local against it, SIGKILL and restart the
server in the middle of one, and read everything back through the server. Where
PostgreSQL cannot be had they skip with the reason; with CI=true they fail instead.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, List

import pytest

from spline_lstm.core.config import TrackingConfig
from spline_lstm.tracking.server import http_env, retry_delays, with_retries
from tests.conftest import REPO, last_line, launch, run_cmd
from tests.helpers.postgres import Unavailable, free_port, tracking_server

TINY = ["+preset=smoke", "training.epochs=1", "data.n_points=300"]
SERVER_RETRIES = 6  # conf/tracking/server.yaml
SEEDS = list(range(1, 9))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def server():
    """(postgres, mlflow server) for the module, stopped by pid at its end."""
    with ExitStack() as stack:
        try:
            pg, srv = stack.enter_context(tracking_server(workers=2))
        except Unavailable as exc:
            if _in_ci():
                pytest.fail(f"CI=true and no tracking server could be started: {exc}")
            pytest.skip(f"no PostgreSQL-backed MLflow server here: {exc}")
        yield pg, srv
    for proc in (srv.proc, pg.proc):
        assert proc.poll() is not None, "a server process outlived the tests"


def _sweep(url: str, experiment: str, outputs: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    args = [sys.executable, str(REPO / "launch.py"), "-m", *TINY, "tracking=server", f"tracking.uri={url}",
            f"tracking.experiment={experiment}", f"paths.outputs_dir={outputs}", *overrides]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: int = 400) -> tuple:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the sweep did not end within {timeout} s:\n{err[-3000:]}")
    return out, err


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def _all_runs(url: str, experiment: str) -> list:
    from mlflow.entities import ViewType

    client = _client(url)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                                     max_results=1000)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_sweep(url: str, experiment: str, outputs: Path, param: str, values: List[str], tmp: Path) -> Dict:
    """8 FINISHED runs, nothing lost, duplicated or RUNNING; tags, params, metrics and
    artifacts as the jobs wrote them, read back through the server."""
    client = _client(url)
    exp = client.get_experiment_by_name(experiment)
    assert exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location
    every = _all_runs(url, experiment)
    assert not [r.info.run_id for r in every if r.info.status == "RUNNING"], "a run was left RUNNING"
    (parent,) = [r for r in every if r.data.tags.get("kind") == "sweep"]  # the sweep's own run (test_sweeps.py)
    assert parent.info.status == "FINISHED"
    runs = [r for r in every if r.info.lifecycle_stage == "active" and r is not parent]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    local_ids = sorted(p.stem for p in (outputs / "artifacts" / "metrics").glob("*.json"))
    assert len(local_ids) == len(values)
    assert sorted(r.data.tags["run_id"] for r in runs) == local_ids, "lost or duplicated runs"
    sweeps = list((outputs / "sweeps").iterdir())
    assert len(sweeps) == 1
    for run in runs:
        tags, run_id = run.data.tags, run.data.tags["run_id"]
        assert run.info.status == "FINISHED" and run.info.run_name == run_id
        assert tags["sweep_id"] == sweeps[0].name and tags["health"] == "PASS"
        assert not [k for k in run.data.params if k.startswith("tracking.")], "tracking internals are no params"
        local = json.loads((outputs / "artifacts" / "metrics" / f"{run_id}.json").read_text())
        assert math.isclose(run.data.metrics["test/rmse"], local["metrics"]["rmse"], rel_tol=1e-6)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [0]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics", "metadata", "checkpoints", "report", "hydra", "health", "run.log"} <= names, names
        got = Path(client.download_artifacts(run.info.run_id, "checkpoints/best.keras", str(tmp / run_id)))
        assert _sha256(got) == _sha256(outputs / "artifacts" / "checkpoints" / run_id / "best.keras")
    assert sorted(r.data.params[param] for r in runs) == sorted(values)
    return {r.data.tags["run_id"]: r for r in runs}


def _job_logs(outputs: Path) -> Dict[str, str]:
    return {p.parent.name: p.read_text(errors="replace") for p in (outputs / "sweeps").glob("*/*/run.log")}


# --- quick: the settings, the schedule, the preflight -----------------------------------------

@pytest.mark.unit
def test_server_settings_reach_mlflow_as_its_environment():
    cfg = TrackingConfig(uri="http://h:5000", http_timeout_s=60, http_retries=6, http_backoff_factor=1)
    assert http_env(cfg) == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6",
                             "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    assert http_env(TrackingConfig()) == {}
    assert retry_delays(6, 1) == [0, 2, 4, 8, 16, 32]


@pytest.mark.unit
def test_the_preflight_retries_a_refused_connection_on_mlflows_schedule():
    import urllib.request

    waits: List[float] = []
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(OSError):
        with_retries(lambda: urllib.request.urlopen(url, timeout=2).status, 3, 1, lambda status: status == 503,
                     sleep=waits.append)
    assert waits == [0, 2, 4]


def test_server_unreachable_past_the_retries_exits_8_before_anything_is_written(tmp_path):
    port = free_port()
    t0 = time.time()
    proc = launch(*TINY, "tracking=server", f"tracking.uri=http://127.0.0.1:{port}", "tracking.http_retries=2",
                  "tracking.http_backoff_factor=1", outputs=tmp_path / "out")
    assert proc.returncode == 8, proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith(f"ERROR [TRACKING_FAILED] tracking server http://127.0.0.1:{port} "
                                             "is unreachable (tried 3 times over 2 s)")
    assert time.time() - t0 >= 2  # it did wait for the retries
    assert not (tmp_path / "out" / "artifacts").exists()


def test_credentials_come_from_the_environment_and_a_refusal_exits_8(tmp_path):
    """A stand-in server that answers 401 to everything: the preflight sends the
    environment's credentials (nothing on the command line) and names the refusal."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: List[str] = []

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        proc = launch(*TINY, "tracking=server", f"tracking.uri=http://127.0.0.1:{httpd.server_port}",
                      outputs=tmp_path / "out", env={"MLFLOW_TRACKING_USERNAME": "alice",
                                                     "MLFLOW_TRACKING_PASSWORD": "s3cret-from-env"})
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 8, proc.stderr[-2000:]
    assert "refused the credentials (HTTP 401): export MLFLOW_TRACKING_USERNAME" in last_line(proc.stderr)
    assert seen == ["Basic " + base64.b64encode(b"alice:s3cret-from-env").decode()]
    assert "s3cret-from-env" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "artifacts").exists()


def test_tracking_server_needs_its_uri(tmp_path):
    proc = launch(*TINY, "tracking=server", outputs=tmp_path / "out")
    assert proc.returncode == 2 and "tracking.uri: tracking=server needs the server's address" in proc.stderr


# --- slow: the real server --------------------------------------------------------------------

@pytest.mark.slow
def test_joblib_sweep_rides_out_a_server_kill_and_restart(server, tmp_path):
    """SIGKILL of the server (and its workers) mid-sweep, restart on the same port: the
    jobs' requests retry (tracking.http_retries) and all 8 runs finish; none stays RUNNING."""
    pg, srv = server
    out = tmp_path / "out"
    proc = _sweep(srv.url, "server-joblib", out, "seed=" + ",".join(map(str, SEEDS)),
                  "hydra/launcher=joblib", "hydra.launcher.n_jobs=4")
    deadline = time.time() + 240
    while len(_all_runs(srv.url, "server-joblib")) < 3:  # jobs are writing to the server (beside the sweep's run)
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before it reached the server"
        time.sleep(0.3)
    connections = pg.connections()
    finished_before = sum(r.info.status == "FINISHED" for r in _all_runs(srv.url, "server-joblib"))
    srv.kill()
    outage = time.time() + 45  # down until a job meets the outage (its retries span about a minute)
    while time.time() < outage and not any("Retrying" in log for log in _job_logs(out).values()):
        time.sleep(0.3)
    srv.start()
    out_text, err_text = _finish(proc)
    assert proc.returncode == 0, err_text[-4000:]
    assert finished_before < len(SEEDS) and "all 8 jobs passed the health gate" in out_text
    check_sweep(srv.url, "server-joblib", out, "seed", [str(s) for s in SEEDS], tmp_path / "dl")
    retried = [rid for rid, log in _job_logs(out).items() if "Retrying" in log]
    assert retried, "no job met the outage: the kill came too late to test anything"
    assert 0 < connections <= 2 * 2 * 15  # workers x (tracking + registry) pools x SQLAlchemy's 5 + 10


@pytest.mark.slow
def test_submitit_local_sweep_of_8_workers(server, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    _, srv = server
    out = tmp_path / "out"
    units = [str(u) for u in range(4, 20, 2)]
    proc = _sweep(srv.url, "server-submitit", out, "model.units=" + ",".join(units),
                  "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    _, err_text = _finish(proc)
    assert proc.returncode == 0, err_text[-4000:]
    check_sweep(srv.url, "server-submitit", out, "model.units", units, tmp_path / "dl")


@pytest.mark.slow
def test_a_job_that_outlives_the_retries_exits_8_and_its_run_is_found_and_ended(server, tmp_path):
    """The runbook's case: the server is gone longer than the retries, the job exits 8 and
    its run stays RUNNING (nobody can tell the server); once the server is back, the
    runbook's command finds it by run_id and ends it FAILED."""
    _, srv = server
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), *TINY, "tracking=server",
                             f"tracking.uri={srv.url}", "tracking.experiment=server-outage", "tracking.http_retries=1",
                             "tracking.http_backoff_factor=0", "run_id=outage-1", f"paths.outputs_dir={out}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not _all_runs(srv.url, "server-outage"):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
            time.sleep(0.2)
        srv.kill()
        _, err_text = _finish(proc, timeout=200)
    finally:
        if srv.proc.poll() is not None:
            srv.start()
    assert proc.returncode == 8, err_text[-3000:]
    assert last_line(err_text).startswith("ERROR [TRACKING_FAILED]")
    assert [r.info.status for r in _all_runs(srv.url, "server-outage")] == ["RUNNING"]
    found = run_cmd(["-m", "spline_lstm.tracking.server", "stale", "--tracking-uri", srv.url,
                     "--experiment", "server-outage", "--run-id", "outage-1"])
    assert found.returncode == 0 and found.stdout.startswith("outage-1\t"), found.stdout + found.stderr
    ended = run_cmd(["-m", "spline_lstm.tracking.server", "stale", "--tracking-uri", srv.url,
                     "--experiment", "server-outage", "--run-id", "outage-1", "--end"])
    assert ended.returncode == 0 and "ended FAILED" in ended.stdout
    assert [r.info.status for r in _all_runs(srv.url, "server-outage")] == ["FAILED"]


@pytest.mark.slow
def test_a_create_run_twin_from_a_retried_request_is_removed(server):
    from spline_lstm.tracking.server import drop_duplicate_runs

    _, srv = server
    client = _client(srv.url)
    exp_id = client.create_experiment("server-twins")
    start, tags = int(time.time() * 1000), {"run_id": "twin-1"}
    kept = client.create_run(exp_id, start_time=start, tags=tags, run_name="twin-1")
    twin = client.create_run(exp_id, start_time=start, tags=tags, run_name="twin-1")  # the retried request
    other = client.create_run(exp_id, start_time=start - 5000, tags=tags, run_name="twin-1")  # an older launch
    assert drop_duplicate_runs(client, exp_id, kept) == 1
    assert client.get_run(twin.info.run_id).info.lifecycle_stage == "deleted"
    assert client.get_run(twin.info.run_id).info.status == "KILLED"
    assert client.get_run(other.info.run_id).info.lifecycle_stage == "active"


@pytest.mark.unit
def test_the_runbooks_stale_run_commands_parse():
    from spline_lstm.tracking.server import build_parser
    from tests.test_runbook import commands, text

    argvs = commands(text(), "python -m spline_lstm.tracking.server")
    assert len(argvs) >= 2 and any("--end" in a for a in argvs)
    for argv in argvs:
        build_parser().parse_args(argv[3:])


@pytest.mark.slow
def test_a_misconfigured_server_is_refused_before_any_work(server, tmp_path):
    """Two mistakes in setting up the server, each named with its fix before any work:
    no --serve-artifacts (MLflow's 503, final: not retried), and an address missing from
    --allowed-hosts (MLflow's 403 against DNS rebinding, not a credentials problem)."""
    from tests.helpers.postgres import MlflowServer

    pg, _ = server
    bare = MlflowServer(pg.uri, tmp_path / "unused", tmp_path / "bare.log", workers=1, serve_artifacts=False)
    bare.allowed_hosts = f"127.0.0.1:{bare.port}"
    bare.start()
    try:
        t0 = time.time()
        no_artifacts = launch(*TINY, "tracking=server", f"tracking.uri={bare.url}", outputs=tmp_path / "a")
        took = time.time() - t0
        other_name = launch(*TINY, "tracking=server", f"tracking.uri=http://localhost:{bare.port}",
                            outputs=tmp_path / "b")
    finally:
        bare.stop()
    assert no_artifacts.returncode == 8, no_artifacts.stderr[-2000:]
    assert "does not serve artifacts (HTTP 503): start it with `mlflow server --serve-artifacts" in \
        last_line(no_artifacts.stderr)
    assert took < sum(retry_delays(SERVER_RETRIES, 1)), "MLflow's 503 for --no-serve-artifacts is final, not retried"
    assert other_name.returncode == 8, other_name.stderr[-2000:]
    assert (f"refuses requests addressed to localhost:{bare.port} (HTTP 403, Invalid Host header): start it with "
            f"`mlflow server --allowed-hosts localhost:{bare.port} ...`") in last_line(other_name.stderr)
    assert not (tmp_path / "a" / "artifacts").exists() and not (tmp_path / "b" / "artifacts").exists()
    assert bare.proc.poll() is not None
