"""A test-only Hydra callback that stops a finished job at a chosen point of its end,
announces it on stdout and sleeps, so a test can send a real signal exactly there::

    +hydra.callbacks.pause._target_=tests.helpers.pause.Pause

``SPLINE_LSTM_TEST_PAUSE``:

- ``before-gate``: in ``on_job_end``, which Hydra calls for this callback before the
  health gate's (reverse registration order): the pipeline has written every artifact
  and ended the MLflow run FINISHED; nothing is gated, tagged or committed yet.
- ``after-commit``: in ``on_run_end`` (a single run), after the gate committed the run.

``SPLINE_LSTM_TEST_PAUSE_S``: how long to sleep (default 20 s).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

ENV_PAUSE = "SPLINE_LSTM_TEST_PAUSE"
ENV_SECONDS = "SPLINE_LSTM_TEST_PAUSE_S"  # default 20


def _pause(where: str) -> None:
    if os.environ.get(ENV_PAUSE) == where:
        print(f"TEST-PAUSE {where} pid={os.getpid()}", flush=True)
        sys.stdout.flush()
        time.sleep(float(os.environ.get(ENV_SECONDS, "20")))


class Pause(Callback):
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        _pause("before-gate")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        _pause("after-commit")
