"""A remote MLflow tracking server (``tracking=server``): HTTP settings, preflight, run dedup.

Jobs speak only HTTP to the server: runs, params and metrics go to its database
(PostgreSQL), artifacts through the server itself (``mlflow server --serve-artifacts``,
``mlflow-artifacts:`` URIs), so sweep workers need no shared filesystem. Timeouts and
retries come from the config and reach MLflow as its own environment variables; the
preflight follows the same retry schedule, so a server restart inside that window
costs a job time, not its run. Standard library only until MLflow is needed: the
launch process imports this module, the tracking helper imports MLflow.
"""
from __future__ import annotations

import base64
import logging
import ssl
import sys
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Tuple

from spline_lstm.core import environment
from spline_lstm.core.config import TrackingConfig
from spline_lstm.core.errors import TrackingFailed, error_line, one_line
from spline_lstm.core.secrets import mask_uri
from spline_lstm.tracking.store import Store

log = logging.getLogger(__name__)


MAX_BACKOFF_S = 120.0  # urllib3's cap on one wait
PROBE_TIMEOUT_S = 5
RETRY_STATUSES = (429, 502, 503, 504)  # a proxy in front of a restarting server
ARTIFACTS_PROBE = "/api/2.0/mlflow-artifacts/artifacts?path=.spline-lstm-preflight"


def http_env(tracking: TrackingConfig) -> Dict[str, str]:
    """MLflow's HTTP client settings for the values the config sets (null keeps the default)."""
    names = {"MLFLOW_HTTP_REQUEST_TIMEOUT": tracking.http_timeout_s,
             "MLFLOW_HTTP_REQUEST_MAX_RETRIES": tracking.http_retries,
             "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": tracking.http_backoff_factor}
    return {name: str(value) for name, value in names.items() if value is not None}


def retry_delays(retries: int, factor: int) -> List[float]:
    """The waits before each retry, as urllib3 schedules MLflow's: none before the first,
    then ``factor * 2**(n-1)`` seconds (capped), MLflow's up-to-1 s jitter aside."""
    return [0.0 if n == 1 else min(MAX_BACKOFF_S, float(factor * 2 ** (n - 1))) for n in range(1, retries + 1)]


def _env_int(name: str, default: int) -> int:
    try:
        return int(environment.read(name, str(default)))
    except ValueError:
        return default


def _headers(store: Store) -> Dict[str, str]:
    """The credentials MLflow itself sends: basic auth from the environment, or a bearer token."""
    user = store.user or environment.read(environment.MLFLOW_USERNAME)
    if user:
        token = f"{user}:{environment.read(environment.MLFLOW_PASSWORD, '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode()}
    token = environment.read(environment.MLFLOW_TOKEN)
    if token:
        return {"Authorization": "Bearer " + token}
    return {}


def _tls() -> Optional[ssl.SSLContext]:
    """The TLS settings MLflow honours, so the preflight trusts what the jobs will trust."""
    if environment.read(environment.MLFLOW_INSECURE_TLS, "").lower() == "true":
        return ssl._create_unverified_context()  # noqa: S323 - the user asked for it, as MLflow does
    cafile = environment.read(environment.MLFLOW_SERVER_CERT)
    return ssl.create_default_context(cafile=cafile) if cafile else None


def _get(url: str, headers: Dict[str, str], timeout: float) -> Tuple[int, str]:
    """Status and the start of the body of a GET (an HTTP error is an answer too);
    raises OSError when nothing answers."""
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    try:
        with urlopen(Request(url, headers=headers), timeout=timeout, context=_tls()) as reply:
            return reply.status, reply.read(256).decode(errors="replace")
    except HTTPError as exc:
        return exc.code, exc.read(512).decode(errors="replace")


def _transient(answer: Tuple[int, str]) -> bool:
    """Worth a retry: a proxy's 502/503/504 while the server restarts, but not MLflow's own
    503 for a server started with --no-serve-artifacts (that one is final)."""
    status, body = answer
    return status in RETRY_STATUSES and "serve-artifacts" not in body


def with_retries(probe: Callable[[], Any], retries: int, factor: int, transient: Callable[[Any], bool],
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run ``probe`` until its answer is not ``transient``, waiting ``retry_delays`` in
    between; the last answer, or the last OSError, once the retries are spent."""
    delays = retry_delays(retries, factor)
    for attempt in range(retries + 1):
        try:
            answer = probe()
            if not transient(answer) or attempt == retries:
                return answer
            why = f"answer {answer!r:.60}"
        except OSError as exc:
            if attempt == retries:
                raise
            why = f"{type(exc).__name__}: {exc}"
        log.warning("Retrying the tracking server in %g s (try %d of %d failed: %s)", delays[attempt], attempt + 1,
                    retries + 1, why)  # an operator sees an outage being ridden out, not a hang
        sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


def preflight(store: Store) -> None:
    """Before any work: the server answers, accepts the credentials and, when the jobs
    rely on it for artifacts (``tracking.artifact_location`` null), serves them."""
    base = store.uri.rstrip("/")
    retries = _env_int("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 0)
    factor = _env_int("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)
    timeout = min(_env_int("MLFLOW_HTTP_REQUEST_TIMEOUT", PROBE_TIMEOUT_S), 60)
    headers = _headers(store)
    where = f"tracking server {store.display_uri}"
    try:
        status, body = with_retries(lambda: _get(base + "/health", headers, timeout), retries, factor, _transient)
        if status not in (401, 403) and store.artifact_location is None:
            status, body = with_retries(lambda: _get(base + ARTIFACTS_PROBE, headers, timeout), retries, factor,
                                        _transient)
            if status in (404, 501, 503):
                raise TrackingFailed(f"{where} does not serve artifacts (HTTP {status}): start it with "
                                     "`mlflow server --serve-artifacts --artifacts-destination DIR_OR_URI`, or set "
                                     "tracking.artifact_location to a store every job can write")
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        tried = f" (tried {retries + 1} times over {sum(retry_delays(retries, factor)):.0f} s)" if retries else ""
        raise TrackingFailed(f"{where} is unreachable{tried}: {reason}") from exc
    if status == 403 and "Invalid Host header" in body:  # MLflow's DNS-rebinding guard, not an auth failure
        host = urllib.parse.urlparse(store.uri).netloc.rsplit("@", 1)[-1]
        raise TrackingFailed(f"{where} refuses requests addressed to {host} (HTTP 403, Invalid Host header): "
                             f"start it with `mlflow server --allowed-hosts {host} ...`")
    if status in (401, 403):
        raise TrackingFailed(f"{where} refused the credentials (HTTP {status}): export MLFLOW_TRACKING_USERNAME "
                             "and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
    if status in RETRY_STATUSES:
        raise TrackingFailed(f"{where} is unavailable (HTTP {status} after {retries + 1} tries)")


def drop_duplicate_runs(client, experiment_id: str, created) -> int:
    """Soft-delete the twins of ``created``; returns how many.

    A ``create_run`` that the server committed but could not answer (killed, restarted)
    is retried by MLflow and creates a second run with the same request: same run_id tag,
    same client-side start_time. The job keeps the one it got back."""
    run_id = created.data.tags.get("run_id") or created.info.run_name
    quoted = run_id.replace("'", "\\'")
    twins = client.search_runs([experiment_id], filter_string=f"tags.run_id = '{quoted}' and "
                                                             "attributes.status = 'RUNNING'")
    extra = [r for r in twins if r.info.run_id != created.info.run_id and r.info.start_time == created.info.start_time]
    for run in extra:
        client.set_terminated(run.info.run_id, "KILLED")  # not left RUNNING, even in the trash
        client.delete_run(run.info.run_id)
    return len(extra)


def stale_runs(client, experiment: str, run_id: Optional[str] = None) -> list:
    """RUNNING runs of an experiment (optionally one run_id): a job that died while the
    server was unreachable leaves its run RUNNING, since nobody could tell the server."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = "attributes.status = 'RUNNING'"
    if run_id:
        query += " and tags.run_id = '{}'".format(run_id.replace("'", "\\'"))
    return client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"])


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m spline_lstm.tracking.server",
        description="Find MLflow runs left RUNNING on a tracking server by jobs that died, and end them.",
        epilog="example: python -m spline_lstm.tracking.server stale --tracking-uri http://mlflow.internal:5000 "
               "--run-id RUN_ID --end")
    sub = parser.add_subparsers(dest="command", required=True)
    stale = sub.add_parser("stale", help="list RUNNING runs; --end marks them FAILED")
    stale.add_argument("--tracking-uri", required=True, help="http(s)://host:port (credentials: MLFLOW_TRACKING_*)")
    stale.add_argument("--experiment", default="spline-lstm")
    stale.add_argument("--run-id", help="only the MLflow runs tagged with this run_id")
    stale.add_argument("--end", action="store_true", help="set them FAILED (only for jobs you know are dead)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m spline_lstm.tracking.server stale``: list (and with --end, end FAILED) RUNNING runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    environment.write_defaults({environment.MLFLOW_HTTP_TIMEOUT: "30", environment.MLFLOW_HTTP_RETRIES: "2"})
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=args.tracking_uri)
        runs = stale_runs(client, args.experiment, args.run_id)
        now = time.time()
        for run in runs:
            state = "RUNNING"
            if args.end:
                client.set_terminated(run.info.run_id, "FAILED")
                state = "ended FAILED"
            age = (now - run.info.start_time / 1000) / 60
            print(f"{run.data.tags.get('run_id', '-')}\t{run.info.run_id}\tstarted {age:.0f} min ago\t{state}")
    except Exception as exc:  # noqa: BLE001 - one typed line, no traceback

        err = TrackingFailed(f"tracking server {mask_uri(args.tracking_uri)}: {one_line(str(exc), 300)}")
        print(error_line(err), file=sys.stderr)
        return err.code
    print(f"{len(runs)} RUNNING run(s) in experiment {args.experiment!r}" + (", ended FAILED" if args.end and runs else ""))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())

