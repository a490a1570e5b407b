#!/usr/bin/env python
"""spline-lstm entry point: ``python launch.py +preset=smoke [key=value ...] [-m]``.

Hydra composes the config from conf/; this wrapper turns every failure into the
exit code and one ``ERROR [NAME] ...`` line of CONTRACT §7 (Hydra alone would
exit 0 after a failing callback and print tracebacks). Imports no TensorFlow or
MLflow: ``--help`` and ``--cfg job`` stay fast.
"""
import os
import sys


def _quiet_backends() -> None:
    if not any(a.lower() in ("verbose=true", "verbose=1", "verbose=yes") for a in sys.argv[1:]):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


if __name__ == "__main__":
    _quiet_backends()
    from spline_lstm.launcher import launch

    sys.exit(launch(config_path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")))
