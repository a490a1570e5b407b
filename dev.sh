#!/usr/bin/env bash
# Set up a virtual environment with the pinned dependencies, then run something in it.
#   ./dev.sh smoke          set up + python launch.py +preset=smoke
#   ./dev.sh test [ARGS]    set up + pytest on 2 workers, a test file per worker (ARGS passed on,
#                           e.g. -m "not slow"; SPLINE_LSTM_TEST_WORKERS=0 runs in one process)
#   ./dev.sh test -m unit   the inner loop: the unit layer only (no model trained, under 150 s on 2 cores)
#   ./dev.sh setup          set up only
#   ./dev.sh bench [--quick]
set -euo pipefail
cd "$(dirname "$0")"
VENV="${SPLINE_LSTM_VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.installed-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "== setting up $VENV (pinned versions from requirements.lock)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.lock
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
cmd="${1:-smoke}"; shift || true
case "$cmd" in
  setup) echo "ready: $VENV" ;;
  smoke) exec "$VENV/bin/python" launch.py +preset=smoke "$@" ;;
  # Most tests wait on one single-threaded child process (a training run, a server): two workers
  # keep both cores busy. --dist loadfile keeps a file's module fixtures in one worker.
  test)  exec "$VENV/bin/python" -m pytest -n "${SPLINE_LSTM_TEST_WORKERS:-2}" --dist loadfile "$@" ;;
  bench) exec "$VENV/bin/python" bench/run.py "$@" ;;
  *) echo "usage: ./dev.sh {smoke|test|setup|bench} [args]" >&2; exit 2 ;;
esac
