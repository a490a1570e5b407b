"""``python -m spline_lstm predict RUN_ID --input F``: forecast with a healthy run's model,
or with a registered model (``models:/NAME@ALIAS``)."""
from __future__ import annotations

import sys
from pathlib import Path

from spline_lstm.app.containment import check_predict_output
from spline_lstm.cli.common import common_options, dirs
from spline_lstm.core.errors import InputInvalid
from spline_lstm.core.ids import validate_run_id
from spline_lstm.serving.predict import forecast, forecast_registered, write_forecast


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("predict", help="forecast with a run's model", formatter_class=fmt,
                       description="Gate the run (or load a registered model), then forecast the steps after "
                                   "the input's last timestamp.\n\nA --horizon beyond the trained one is "
                                   "forecast recursively (each block fed back as input). --level intervals are "
                                   "split-conformal: quantiles of the validation split's absolute errors per "
                                   "step; recursive steps widen the last step's by sqrt(step/horizon).\n\n"
                                   "A many-series run forecasts every series of the input (or those --series "
                                   "names) in one call: --input in the training layout (long format with the id "
                                   "column, or the wide file(s), once per training file in order); the table "
                                   "starts with the id column.\n\n"
                                   "examples:\n  python -m spline_lstm predict RUN_ID --input recent.csv "
                                   "--horizon 24 --level 80 95\n  python -m spline_lstm predict "
                                   "models:/NAME@candidate --input recent.csv --format json")
    p.add_argument("run_id", metavar="RUN_ID|models:/NAME@ALIAS")
    p.add_argument("--input", required=True, action="append", metavar="FILE",
                   help="CSV or Parquet with the run's columns (a many-series run trained on several "
                        "files: repeat --input, one per training file, in order)")
    p.add_argument("--series", nargs="+", default=None, metavar="ID",
                   help="many-series run: forecast only these series (default: every series of the input; an "
                        "input series the run was not trained on is an error unless --series leaves it out)")
    p.add_argument("--horizon", type=int, default=None,
                   help="steps to forecast (default: the trained horizon; beyond it: recursive)")
    p.add_argument("--level", type=int, nargs="+", default=[], metavar="L",
                   help="prediction interval levels in %% (e.g. --level 80 95)")
    p.add_argument("--format", choices=("csv", "parquet", "json"), default="csv", help="output format")
    p.add_argument("--output", help="file to write (default: print to stdout); never inside the artifacts "
                                    "tree, never the input, not an existing file unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store of a models:/ URI (default: sqlite:///OUTPUTS_DIR/mlflow.db)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own logs")
    common_options(p)
    p.set_defaults(fn=run)


def run(args) -> int:
    outputs, artifacts = dirs(args)
    if args.format == "parquet" and not args.output:
        raise InputInvalid("--format parquet needs --output PATH (Parquet is not printed to a terminal)")
    target = None  # checked before the forecast: a refused --output costs no model load
    if args.output:
        for source in args.input:
            target = check_predict_output(args.output, source, outputs, artifacts, args.overwrite)
    if args.run_id.startswith("models:/"):
        default_db = outputs / "mlflow.db"
        if not args.tracking_uri and not default_db.is_file():  # MLflow would create an empty store there
            raise InputInvalid(f"{args.run_id}: no MLflow store at {default_db}; pass --tracking-uri URI "
                               "(the store the model was registered in) or --outputs-dir")
        frame = forecast_registered(args.run_id, args.tracking_uri or f"sqlite:///{default_db}",
                                    [Path(p) for p in args.input], args.horizon, args.level, args.series)
    else:

        validate_run_id(args.run_id)
        frame = forecast(artifacts, args.run_id, [Path(p) for p in args.input], args.horizon, args.level,
                         verbose=args.verbose, series=args.series)
    data = write_forecast(frame, target, overwrite=args.overwrite, fmt=args.format)
    if target is not None:
        print(f"wrote {len(frame)} forecasts to {target}")
    else:
        sys.stdout.write(data.decode("utf-8"))
    return 0
