"""A test-only Hydra callback that breaks one artifact of a finished job, before the gate.

Hydra calls ``on_job_end`` callbacks in reverse registration order, so this callback,
added on the command line with::

    +hydra.callbacks.breaker._target_=tests.helpers.breaker.BreakArtifact

runs *before* the health gate registered in conf/config.yaml. What it does is read
from the environment, so one command line serves every case:

- ``SPLINE_LSTM_TEST_BREAK``: ``KIND[:ACTION]`` where KIND is an artifact kind of
  ``ArtifactLayout.paths`` (processed, meta, preprocessor, best, last, metrics, report,
  metadata) and ACTION is ``delete`` (default), ``flip`` (one byte inverted) or
  ``truncate`` (cut to half). Unset: the callback does nothing.
- ``SPLINE_LSTM_TEST_BREAK_RUN_ID``: only break the job with this run_id (sweeps);
  unset: break every job.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

ENV_BREAK = "SPLINE_LSTM_TEST_BREAK"
ENV_RUN_ID = "SPLINE_LSTM_TEST_BREAK_RUN_ID"


def break_file(path: Path, action: str) -> None:
    if action == "delete":
        path.unlink()
    elif action == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif action == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        raise ValueError(f"unknown break action {action!r}")


class BreakArtifact(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        spec = os.environ.get(ENV_BREAK)
        if not spec or job_return.status != JobStatus.COMPLETED:
            return
        run_id = str(config.run_id)
        only = os.environ.get(ENV_RUN_ID)
        if only and only != run_id:
            return
        from spline_lstm.artifacts.layout import ArtifactLayout

        kind, _, action = spec.partition(":")
        path = ArtifactLayout(Path(str(config.paths.artifacts_dir)).absolute()).paths(run_id)[kind]
        break_file(path, action or "delete")
        # a marker so a test can prove the breaker ran before the gate (not after)
        marker = Path(str(config.hydra.runtime.output_dir)) / "broken-by-test.txt"
        marker.write_text(f"{kind}:{action or 'delete'}\n")
