"""Run ``launch.py`` unchanged, recording when the framework's phases start and end.

    python bench/instrumented_launch.py TIMINGS.json launch.py ARGS...

Wraps (without changing behaviour) the functions that bound each phase and writes
``{"t0": wall time at interpreter start of this script, "events": [[name, start, end], ...],
"exit": wall time at exit}`` to TIMINGS.json, from ``os._exit`` (how launch.py ends) or
atexit. Process start-up before this file runs and the exit itself are measured by the
caller from the outside.
Timestamps are ``time.time()`` so the caller's clock is comparable.
"""
import atexit
import functools
import inspect
import json
import os
import runpy
import sys
import time

T0 = time.time()
EVENTS = []


def _wrap(owner, name, label):
    raw = inspect.getattr_static(owner, name)
    fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            EVENTS.append([label, start, time.time()])

    if isinstance(raw, staticmethod):
        timed = staticmethod(timed)
    elif isinstance(raw, classmethod):
        timed = classmethod(timed)
    setattr(owner, name, timed)


def _install():
    from spline_lstm.app import hydra_app  # noqa: F401
    from spline_lstm.pipeline import run
    from spline_lstm.tracking import tracker
    from spline_lstm.artifacts import health
    from spline_lstm.app import launcher

    EVENTS.append(["framework_imports", T0, time.time()])
    _wrap(run, "run", "pipeline.run")
    _wrap(hydra_app.HealthGateCallback, "_on_job_end", "gate callback (gate + mlflow tag + summary)")
    _wrap(health, "run_gate", "gate checks")
    _wrap(tracker.Tracker, "finish", "mlflow health tag")


def _dump(path):
    doc = {"t0": T0, "exit": time.time(), "events": EVENTS}
    with open(path, "w") as fh:
        json.dump(doc, fh)


if __name__ == "__main__":
    out, script, *args = sys.argv[1:]
    _install()
    atexit.register(_dump, out)
    real_exit = os._exit

    def _exit(code):
        _dump(out)
        real_exit(code)

    os._exit = _exit
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
