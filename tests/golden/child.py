"""record.py's child: launch.py's task in this process, keeping ``_evaluate``'s test forecasts
(no artifact holds them) in the file named by the first argument.

    python tests/golden/child.py CAPTURE.json -- OVERRIDES...   (PYTHONPATH = the repository)
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from spline_lstm.app.launcher import launch
from spline_lstm.pipeline import run
from tests.golden.record import REPO, rounded


def main(capture: Path, overrides: list) -> int:
    inner = run._evaluate

    def evaluate(ctx, prep):
        ev = inner(ctx, prep)
        capture.write_text(json.dumps({"starts": rounded(ev.test.starts), "forecasts": rounded(dict(ev.forecasts)),
                                       "actual": rounded(ev.actual)}))
        return ev

    run._evaluate = evaluate
    os.environ["SPLINE_LSTM_STARTED"] = f"{os.getpid()}:{time.time()}"  # as launch.py does
    sys.argv = [str(REPO / "launch.py")]
    return launch(config_path=str(REPO / "conf"), argv=overrides)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[3:]))
