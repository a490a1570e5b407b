"""One logging-throughput client (a child of bench/server.py): metrics/s into one MLflow run.

    python bench/server_logging.py URI --mode single|batch --metrics N [--start-at EPOCH_S]

``single``: one ``log_metric`` request per value (per-epoch logging done naively);
``batch``: ``log_batch`` of 1000 values per request (what the pipeline does). Waits
until ``--start-at`` after its imports, so parallel clients start together.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

BATCH = 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    parser.add_argument("--mode", choices=("single", "batch"), required=True)
    parser.add_argument("--metrics", type=int, required=True)
    parser.add_argument("--experiment", default="bench-logging")
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.uri)
    exp = client.get_experiment_by_name(args.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(args.experiment)
    run_id = client.create_run(exp_id).info.run_id
    time.sleep(max(0.0, args.start_at - time.time()))
    t0 = time.time()
    if args.mode == "single":
        for i in range(args.metrics):
            client.log_metric(run_id, "loss", float(i), step=i)
    else:
        now = int(t0 * 1000)
        for start in range(0, args.metrics, BATCH):
            client.log_batch(run_id, metrics=[Metric("loss", float(i), now, i)
                                              for i in range(start, min(start + BATCH, args.metrics))])
    t1 = time.time()
    client.set_terminated(run_id)
    emit({"mode": args.mode, "metrics": args.metrics, "start": t0, "end": t1,
          "per_s": round(args.metrics / (t1 - t0), 1)})


if __name__ == "__main__":
    main()
