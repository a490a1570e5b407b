"""Real processes for the tracking tests: a watched launch, its tracking helper, a live
MLflow server behind a basic-auth proxy, and a reader of a SQLite store's runs."""
from __future__ import annotations

import base64
import http.client
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]


def env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", **(extra or {})}


class Watched:
    """A launch.py whose stdout is read line by line while it runs."""

    def __init__(self, args: List[str], outputs: Path, extra_env: Optional[Dict[str, str]] = None):
        self.proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args, f"paths.outputs_dir={outputs}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(extra_env),
                                     cwd=str(REPO))
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.stdout: List[str] = []
        self.stderr = ""
        self._threads = [threading.Thread(target=self._pump, daemon=True),
                         threading.Thread(target=self._pump_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def _pump_err(self) -> None:
        self.stderr = self.proc.stderr.read()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 300) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    return False
                continue
            if predicate(line):
                return True
        return False

    def finish(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for t in self._threads:
            t.join(10)
        return code

    @property
    def out(self) -> str:
        return "".join(self.stdout)


def epochs_logged(n: int) -> Callable[[str], bool]:
    """True once the n-th Keras epoch line (``val_loss``) after ``== fit`` is printed."""
    state = {"fit": False, "seen": 0}

    def check(line: str) -> bool:
        state["fit"] = state["fit"] or "== fit" in line
        if state["fit"] and "val_loss" in line:
            state["seen"] += 1
        return state["seen"] >= n

    return check


def tracking_helper_pid(parent: int, timeout: float = 60) -> int:
    """The pid of ``python -m spline_lstm.tracking.helper`` started by ``parent``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmd = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and b"spline_lstm.tracking.helper" in cmd:
                return int(stat.parent.name)
        time.sleep(0.2)
    raise AssertionError(f"no tracking helper under pid {parent}")


def store_runs(db: Path, run_id: str) -> List[Tuple[str, Dict[str, str]]]:
    """(status, tags) of every MLflow run tagged run_id, read with sqlite3 (no MLflow)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                           "WHERE t.key = 'run_id' AND t.value = ? ORDER BY r.start_time", (run_id,)).fetchall()
        return [(status, dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (uuid,)).fetchall()))
                for uuid, status in rows]
    finally:
        con.close()


def store_health(db: Path) -> Dict[str, object]:
    """What a healthy store shows: integrity ok, no leftover migration table, one schema version."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {"integrity": con.execute("PRAGMA integrity_check").fetchone()[0],
                "leftovers": [r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE name LIKE '%alembic_tmp%'")],
                "versions": [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]}
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AuthServer:
    """A live MLflow server reachable only through a proxy that demands basic auth."""

    url: str  # the proxy, without credentials
    user: str
    password: str
    store_dir: Path  # the server's backend store and artifact root: scanned for leaks
    seen: Dict[str, int]  # authorised / refused requests

    def uri_with_password(self) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{self.user}:{self.password}@{rest}"


def _proxy(upstream: int, token: str, seen: Dict[str, int]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if self.headers.get("Authorization") != f"Basic {token}":
                seen["refused"] += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen["authorised"] += 1
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *args) -> None:  # quiet
            pass

    return ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)


@contextmanager
def mlflow_server(tmp: Path) -> Iterator[Optional[Tuple[int, Path]]]:
    """A plain ``mlflow server`` on a free loopback port with its SQLite store in ``tmp``:
    yields (port, store folder), or None when the mlflow CLI is missing or the server
    does not answer within 90 s. Stopped by its process group at the end."""
    import urllib.request

    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists():
        yield None
        return
    port = free_port()
    store_dir = tmp / "server-store"
    store_dir.mkdir(parents=True)
    server = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{store_dir / 'srv.db'}",
                               "--default-artifact-root", (store_dir / "art").as_uri(), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(store_dir),
                              env=env(), start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    yield None
                    return
                time.sleep(1)
        yield port, store_dir
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextmanager
def auth_mlflow_server(tmp: Path, user: str, password: str) -> Iterator[Optional[AuthServer]]:
    """``mlflow_server`` behind a proxy that requires basic auth; None as there."""
    with mlflow_server(tmp) as found:
        if found is None:
            yield None
            return
        port, store_dir = found
        seen = {"authorised": 0, "refused": 0}
        proxy = _proxy(port, base64.b64encode(f"{user}:{password}".encode()).decode(), seen)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            yield AuthServer(f"http://127.0.0.1:{proxy.server_address[1]}", user, password, store_dir, seen)
        finally:
            proxy.shutdown()
            proxy.server_close()

