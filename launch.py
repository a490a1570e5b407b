#!/usr/bin/env python
"""spline-lstm entry point: ``python launch.py +preset=smoke [key=value ...] [-m]``.

Hydra composes the config from conf/; this wrapper turns every failure into the
exit code and one ``ERROR [NAME] ...`` line of docs/exit-codes.md (Hydra alone would
exit 0 after a failing callback and print tracebacks). Imports no TensorFlow or
MLflow: ``--help`` and ``--cfg job`` stay fast.
"""
import os
import sys
import time

_STARTED = time.time()


def _quiet_backends() -> None:
    if not any(a.lower() in ("verbose=true", "verbose=1", "verbose=yes") for a in sys.argv[1:]):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


if __name__ == "__main__":
    _quiet_backends()
    os.environ["SPLINE_LSTM_STARTED"] = f"{os.getpid()}:{_STARTED}"  # metadata's timings_s.startup
    from spline_lstm.app.launcher import launch

    code = launch(config_path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf"))
    # Every file is closed and every MLflow call has returned: skip the interpreter's
    # teardown of TensorFlow and MLflow (1-3 s of finalisers that write nothing).
    import logging

    if {"-m", "--multirun", "hydra.mode=MULTIRUN"} & set(sys.argv[1:]):
        sys.exit(code)  # a sweep: let its launcher (joblib workers, shared memory) clean up
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):
            pass
    os._exit(code)
