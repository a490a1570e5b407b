"""PostgreSQL and an MLflow tracking server on loopback ports, for the server tests and bench/.

``python3 tests/helpers/postgres.py install`` installs PostgreSQL from Debian packages
(root + apt-get; ``.ci/run`` calls it). ``tracking_server()`` starts a throwaway
cluster (data in a temp folder, run as the ``postgres`` user when we are root: initdb
refuses root) and ``mlflow server --backend-store-uri postgresql+psycopg2://... --serve-artifacts``
in front of it, and stops every process it started by pid. Standard library only, so
``.ci/run`` can call it before the virtualenv exists.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

DB_USER = "mlflow"
DB_NAME = "mlflow"
INSTALL_HINT = "sudo apt-get install -y postgresql (or: sudo python3 tests/helpers/postgres.py install)"


class Unavailable(RuntimeError):
    """PostgreSQL or the MLflow server cannot run here; the message says why."""


def bindir() -> Optional[Path]:
    """The newest PostgreSQL server binaries: Debian's versioned folders, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def install() -> Path:
    """apt-get install PostgreSQL without the Debian default cluster (no server left running)."""
    if bindir():
        return bindir()
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(f"PostgreSQL is not installed and this is not root with apt-get: {INSTALL_HINT}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold"]
    conf = Path("/etc/postgresql-common/createcluster.conf")
    steps = [["apt-get", "update", "-q"], apt + ["postgresql-common"], None, apt + ["postgresql"]]
    for step in steps:
        if step is None:  # as the official postgres image does: no "main" cluster started on install
            if conf.exists():
                text = conf.read_text()
                conf.write_text(text.replace("#create_main_cluster = true", "create_main_cluster = false"))
            continue
        proc = subprocess.run(step, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise Unavailable(f"{' '.join(step)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    if not bindir():
        raise Unavailable("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
    return bindir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner() -> Optional[pwd.struct_passwd]:
    """The account that runs PostgreSQL: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise Unavailable("running as root and there is no 'postgres' user to run the database as") from exc


def stop_group(proc: Optional[subprocess.Popen], sig: int, grace: float) -> None:
    """Signal a process group we started (its leader's pid), then SIGKILL it after ``grace``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    except ProcessLookupError:
        pass


@dataclass
class Postgres:
    """A throwaway cluster: trust auth on 127.0.0.1 only, no Unix socket outside its folder."""

    bin: Path
    root: Path
    port: int = field(default_factory=free_port)
    proc: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        owner = _owner()
        user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
        return subprocess.run(argv, capture_output=True, text=True, cwd=self.root, timeout=120, **user, **kw)

    def start(self) -> "Postgres":
        owner = _owner()
        if owner:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        data = self.root / "data"
        init = self._run(str(self.bin / "initdb"), "-D", str(data), "-U", DB_USER, "--auth=trust",
                         "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            raise Unavailable(f"initdb failed: {init.stderr.strip()[-400:]}")
        log = open(self.root / "postgres.log", "ab")
        user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1"],
            stdout=log, stderr=log, cwd=self.root, start_new_session=True, **user)
        log.close()
        deadline = time.time() + 60
        while self._run(str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)).returncode:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise Unavailable(f"PostgreSQL did not start: {self.log_tail()}")
            time.sleep(0.2)
        made = self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DB_NAME)
        if made.returncode != 0:
            raise Unavailable(f"createdb failed: {made.stderr.strip()[-400:]}")
        return self

    def sql(self, query: str) -> str:
        """One query through psql (tests and bench read pg_stat_activity with it)."""
        psql = str(self.bin / "psql") if (self.bin / "psql").exists() else (shutil.which("psql") or "psql")
        out = self._run(psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", DB_NAME,
                        "-At", "-c", query)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return out.stdout.strip()

    def connections(self) -> int:
        return int(self.sql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{DB_NAME}'")) - 1  # not psql

    def log_tail(self) -> str:
        try:
            return (self.root / "postgres.log").read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGINT, 30)  # SIGINT = PostgreSQL's fast shutdown


@dataclass
class MlflowServer:
    """``mlflow server`` on PostgreSQL, serving artifacts from a local folder; restartable."""

    backend_uri: str
    artifacts: Path
    log: Path
    workers: int = 2
    serve_artifacts: bool = True  # False, or allowed_hosts: misconfigurations the preflight must refuse
    allowed_hosts: Optional[str] = None  # mlflow server --allowed-hosts (default: localhost, private IPs)
    port: int = field(default_factory=free_port)
    proc: Optional[subprocess.Popen] = None
    starts: List[float] = field(default_factory=list)  # seconds each start took to answer /health

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> List[str]:
        artifacts = (["--serve-artifacts", "--artifacts-destination", str(self.artifacts)] if self.serve_artifacts
                     else ["--no-serve-artifacts"])
        return [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", self.backend_uri,
                *artifacts, "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
                *(["--allowed-hosts", self.allowed_hosts] if self.allowed_hosts else [])]

    def start(self, timeout: float = 180) -> "MlflowServer":
        t0 = time.time()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        env["GIT_PYTHON_REFRESH"] = "quiet"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=env, cwd=self.artifacts.parent,
                                         start_new_session=True)
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() - t0 > timeout:
                self.stop()
                raise Unavailable(f"mlflow server did not answer /health within {timeout:.0f} s: "
                                  f"{self.log.read_text(errors='replace')[-800:]}")
            time.sleep(0.25)
        self.starts.append(time.time() - t0)
        return self

    def kill(self) -> None:
        """SIGKILL the server and its workers (its process group), as a crash would."""
        stop_group(self.proc, signal.SIGKILL, 30)

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGTERM, 5)  # uvicorn would wait for idle keep-alive clients


@contextmanager
def tracking_server(workers: int = 2) -> Iterator[tuple]:
    """``(postgres, server)`` running for the block; everything stopped by pid afterwards."""
    pg_bin = install()
    root = Path(tempfile.mkdtemp(prefix="spline-lstm-pg-"))
    pg = Postgres(pg_bin, root)
    server = MlflowServer(pg.uri, root / "artifacts", root / "mlflow-server.log", workers)
    server.artifacts.mkdir()
    try:
        pg.start()
        server.start()
        yield pg, server
    finally:
        server.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python3 tests/helpers/postgres.py install")
    try:
        print(f"PostgreSQL server binaries: {install()}")
    except Unavailable as exc:
        sys.exit(f"cannot install PostgreSQL: {exc}")
