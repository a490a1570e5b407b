#!/usr/bin/env python
"""What-if: ``launch.py`` ending with ``os._exit`` instead of a normal interpreter exit.

    python bench/fast_exit_launch.py launch.py +preset=smoke ...

Runs launch.py unchanged; when it exits, flushes logging and the standard streams
and leaves with os._exit(code), skipping interpreter finalisation (module teardown,
TensorFlow / MLflow destructors). Measures the gain of the change proposed in
docs/PERFORMANCE.md; not a supported entry point.
"""
import logging
import os
import runpy
import sys

if __name__ == "__main__":
    script, *args = sys.argv[1:]
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
