"""The run as an MLflow pyfunc model (a LoggedModel named ``model`` of the run): ``best.keras`` plus
the preprocessor payload (JSON), served by ``predict.forecast_frame``, the same
core as ``spline_lstm predict``, so both give the same numbers.

The run_id gate: the model's config records the run_id and the sha256 of the
Keras archive it was saved with; ``load_context`` refuses to load a payload of
another run or a swapped archive (RunIdMismatch), as the pre-inference gate does
for a run's files. Imported only by the tracking helper and by MLflow itself.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from spline_lstm.core.errors import InputInvalid, RunIdMismatch
from spline_lstm.preprocessing.preprocessor import Preprocessor
from spline_lstm.serving.predict import check_options, check_series_option, forecast_frame, load_keras

PACKAGE = Path(__file__).resolve().parent


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class SplineForecaster(mlflow.pyfunc.PythonModel):
    """``predict(frame, params={"horizon": H, "levels": [80, 95]})`` -> the forecast table; a
    many-series run reads a long-format frame and takes ``"series": [ids]`` (default: all)."""

    def load_context(self, context) -> None:
        expected = (context.model_config or {}).get("run_id")
        payload = json.loads(Path(context.artifacts["preprocessor"]).read_text(encoding="utf-8"))
        keras_path = Path(context.artifacts["model"])
        if payload.get("run_id") != expected:
            raise RunIdMismatch(f"MLflow model of run_id {expected!r} holds the preprocessor of run_id "
                                f"{payload.get('run_id')!r}; refusing to load (see runbook: a model that "
                                "refuses to load)")
        if _sha256(keras_path) != (context.model_config or {}).get("keras_sha256"):
            raise RunIdMismatch(f"MLflow model of run_id {expected!r}: {keras_path.name} is not the archive "
                                "it was logged with (sha256 differs); refusing to load")
        self.pre = Preprocessor.from_dict(payload)
        self.model = load_keras(keras_path)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """The CLI's rules (``predict.check_options``, ``check_frame``), applied to ``params``
        and ``model_input``: a violation raises InputInvalid with one line naming the param
        or the input, never an error from inside the package. A ``horizon`` of 0 is refused,
        not replaced: only an absent (None) one means the trained horizon."""
        params = dict(params or {})
        unknown = sorted(set(params) - {"horizon", "levels", "series"})
        if unknown:
            raise InputInvalid(f"params: unknown {', '.join(map(repr, unknown))}; the model takes 'horizon', "
                               "'levels' and (many series) 'series'")
        horizon = params.get("horizon")
        if isinstance(horizon, np.ndarray) and horizon.ndim == 0:
            horizon = horizon.item()
        levels = params.get("levels")
        levels = check_options(horizon, [] if levels is None else levels,
                               names=("params['horizon']", "params['levels']"))
        series = check_series_option(params.get("series"), "params['series']")
        return forecast_frame(self.model, self.pre, model_input, horizon, levels, where="model input", series=series)


def id_column(payload: dict) -> str:
    """The id column of a many-series run's model input (``predict.id_column``); None: one series."""
    ser = payload.get("series") or {}
    return (ser.get("id_col") or "series") if ser.get("ids") else None


def input_example(payload: dict, timestamps, values, covariates=None) -> pd.DataFrame:
    """The last lookback + difference + 1 points of the training series: the
    shortest history the model accepts; with covariates their columns too, and with
    future-known ones ``horizon`` more rows whose target is empty (the forecast steps).
    Many series: ``timestamps``, ``values`` (and ``covariates``) map a few series' ids
    to theirs; the example is long format, the id column first."""
    col = id_column(payload)
    if col is not None:
        frames = [_series_example(payload, timestamps[i], values[i], (covariates or {}).get(i)) for i in values]
        frame = pd.concat(frames, keys=list(values), names=[col, None]).reset_index(level=0)
        return frame.reset_index(drop=True)
    return _series_example(payload, timestamps, values, covariates)


def _series_example(payload: dict, timestamps, values, covariates=None) -> pd.DataFrame:
    w = payload["window"]
    n = int(w["lookback"]) + int(w.get("difference", 0)) + 1
    d = payload["data"]
    cov = payload.get("covariates") or {}
    ahead = int(w["horizon"]) if cov.get("future") else 0
    target = [float(v) for v in list(values)[-(n + ahead):]]
    frame = {d["timestamp_col"]: pd.to_datetime(list(timestamps)[-(n + ahead):]),
             d["target_col"]: target[: len(target) - ahead] + [float("nan")] * ahead}
    for col in [*cov.get("past", []), *cov.get("future", [])]:
        column = [float(v) for v in (covariates or {})[col][-(n + ahead):]]
        frame[col] = column if col in cov.get("future", []) else column[: len(column) - ahead] + [float("nan")] * ahead
    return pd.DataFrame(frame)


def output_example(payload: dict, params: dict) -> pd.DataFrame:
    """The shape of ``predict``'s table, for the signature (no model run: logging
    must not import TensorFlow)."""
    h = params["horizon"]
    out = {"timestamp": pd.date_range("2000-01-01", periods=h, freq="D"), "step": list(range(1, h + 1)),
           "forecast": [0.0] * h}
    for level in params["levels"]:
        out.update({f"lo_{level}": [0.0] * h, f"hi_{level}": [0.0] * h})
    col = id_column(payload)
    ids = {col: [str(payload["series"]["ids"][0])] * h} if col is not None else {}
    return pd.DataFrame({**ids, **out, "run_id": [payload["run_id"]] * h})


def save(target: Path, keras_path: Path, payload: dict, example: pd.DataFrame, card=None) -> Path:
    """Write the pyfunc model folder at ``target`` (no pip inference: the serving
    environment is this project's own, ``--env-manager local``); ``card``: the
    ``mlflow.models.Model`` naming the LoggedModel and run it is logged for."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import DataType, ParamSchema, ParamSpec

    staging = Path(target).parent / "inputs"
    staging.mkdir(parents=True, exist_ok=True)
    pre_json = staging / "preprocessor.json"
    pre_json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    code = staging / "spline_lstm"  # the package's sources only, no caches
    shutil.copytree(PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    params = {"horizon": int(payload["window"]["horizon"]), "levels": [80, 95]}
    signature = infer_signature(example, output_example(payload, params), params=params)
    if id_column(payload) is not None:  # many series: which to forecast (default: every one in the input)
        signature.params = ParamSchema([*signature.params.params, ParamSpec("series", DataType.string, [], (-1,))])
    mlflow.pyfunc.save_model(
        str(target), python_model=SplineForecaster(), artifacts={"model": str(keras_path),
                                                                  "preprocessor": str(pre_json)},
        model_config={"run_id": payload["run_id"], "keras_sha256": _sha256(keras_path)},
        signature=signature, input_example=example, code_paths=[str(code)], pip_requirements=[], mlflow_model=card)
    shutil.rmtree(staging, ignore_errors=True)
    return Path(target)
