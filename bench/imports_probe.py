#!/usr/bin/env python
"""Run a command in this interpreter, then report which heavy packages it imported.

    python bench/imports_probe.py launch.py --help
    python bench/imports_probe.py -m spline_lstm runs list

The command runs exactly as ``python ARGS`` would (runpy, ``__main__``, sys.argv), its
SystemExit is caught, and the last stdout line is ``BENCH_JSON {"exit": CODE,
"heavy": [...], "loaded": {...}}`` where ``heavy`` lists the top-level packages among
tensorflow / keras / mlflow / statsmodels that ended up in sys.modules. Used by the benchmark
(item 5) and by tests/test_perf_properties.py.
"""
from __future__ import annotations

import json
import os
import runpy
import sys

HEAVY = ("tensorflow", "keras", "mlflow", "statsmodels")
WATCH = HEAVY + ("torch", "jax", "sqlalchemy", "alembic", "matplotlib", "scipy", "pandas", "pyarrow",
                 "sklearn", "h5py", "numpy", "hydra", "omegaconf")


def main(argv) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    code = 0

    def _exit(status):  # launch.py ends with os._exit: turn it into SystemExit to report afterwards
        raise SystemExit(status)

    os._exit = _exit
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(argv[0])
            sys.argv = [script, *argv[1:]]
            sys.path.insert(0, os.path.dirname(script))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    tops = {name.split(".", 1)[0] for name in list(sys.modules)}
    doc = {"exit": code, "heavy": sorted(t for t in tops if t in HEAVY),
           "loaded": sorted(t for t in tops if t in WATCH), "modules": len(sys.modules)}
    sys.stdout.flush()
    sys.stderr.flush()
    print("BENCH_JSON " + json.dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
