#!/usr/bin/env python
"""Golden values of three runs (one series, a real file, many series), so a refactor that
must not change behaviour can prove it did not.

    python tests/golden/record.py            # record tests/golden/<name>.json
    python tests/golden/record.py --compare  # re-run and compare with them (exit 1 on a difference)

Each run goes through launch.py's own entry (``launcher.launch``) in a child process
(``child.py``), which wraps ``pipeline.run._evaluate`` to keep the test forecasts, which no
artifact holds.
Stored: the test and validation metrics (model, every baseline, per series), the forecasts,
the choices, the structure of every artifact (keys, array names, shapes and dtypes) and
the sha256 of the processed arrays and of ``predict``'s output. Floats are rounded to 12
significant digits.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATASETS = REPO.parent / "shared" / "datasets"
DIGITS = 12

CONFIGS = {
    "smoke": ["+preset=smoke"],
    "airline": ["+preset=airline", f"data.path={DATASETS / 'airline-passengers.csv'}"],
    "smoke_panel4": ["+preset=smoke", "data.n_series=4"],
}
COMMON = ["tracking=none", "run_id=golden-run"]


def rounded(x):
    """Floats to 12 significant digits, NaN and infinities as strings (JSON compares them)."""
    if isinstance(x, dict):
        return {str(k): rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    if isinstance(x, np.ndarray):
        return rounded(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return float(f"{x:.{DIGITS}g}") if np.isfinite(x) else str(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def structure(x):
    """Keys and types, not values: what the artifact looks like."""
    if isinstance(x, dict):
        return {str(k): structure(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [structure(v) for v in x[:1]] if x and isinstance(x[0], (dict, list, tuple)) else type(x).__name__
    if isinstance(x, np.ndarray):
        return f"ndarray{list(x.shape)}:{x.dtype}"
    return type(x).__name__


def _machine_free(metadata: dict) -> dict:
    """The metadata without what belongs to the machine or the caller's shell, not the code:
    timings, versions, and the BLAS thread variables (``threads.env``: set or unset by whoever
    started the run, e.g. a pytest worker)."""
    out = {k: v for k, v in metadata.items() if k not in ("timings_s", "versions")}
    if isinstance(out.get("threads"), dict):
        out["threads"] = {k: v for k, v in out["threads"].items() if k != "env"}
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _predict(outputs: Path, name: str) -> dict:
    """``predict`` on the airline file: the output's columns and values."""
    if name != "airline":
        return {}
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "spline_lstm", "predict", "golden-run", "--input",
                          str(DATASETS / "airline-passengers.csv"), "--horizon", "3", "--level", "80",
                          "--outputs-dir", str(outputs)], capture_output=True, text=True, env=env, cwd=str(REPO))
    if out.returncode:
        raise RuntimeError(f"predict failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return {"predict_csv": out.stdout}


def record_one(name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as tmp:
        outputs, capture = Path(tmp) / "outputs", Path(tmp) / "capture.json"
        t0 = time.time()
        env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, str(HERE / "child.py"), str(capture), "--",
                               *CONFIGS[name], *COMMON, f"paths.outputs_dir={outputs}"],
                              capture_output=True, text=True, env=env, cwd=str(REPO))
        seconds = time.time() - t0
        if proc.returncode:
            raise RuntimeError(f"{name}: run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        root = outputs / "artifacts"
        if not root.is_dir():
            root = next(p.parent.parent for p in outputs.rglob("metrics/golden-run.json"))
        metrics = json.loads((root / "metrics" / "golden-run.json").read_text())
        meta = json.loads((root / "processed" / "golden-run" / "meta.json").read_text())
        metadata = json.loads((root / "metadata" / "golden-run.json").read_text())
        with open(root / "models" / "golden-run" / "preprocessor.pkl", "rb") as fh:
            payload = pickle.load(fh)
        npz = np.load(root / "processed" / "golden-run" / "processed.npz")
        arrays = {k: npz[k] for k in npz.files}
        report = (root / "reports" / "golden-run.md").read_text()
        captured = json.loads(capture.read_text())
        predicted = _predict(outputs, name)
    doc = {
        "config": CONFIGS[name],
        "choices": rounded(metadata.get("choices")),
        "metrics": rounded(metrics["metrics"]),
        "baselines": rounded(metrics["baselines"]),
        "improvement_pct": rounded(metrics["improvement_pct"]),
        "validation": rounded(metrics["validation"]),
        "skill": rounded(metrics.get("skill")),
        "series": rounded(metrics.get("series")),
        "history": rounded(metrics.get("history")),
        "yardsticks": rounded({k: {kk: vv for kk, vv in v.items() if kk != "fit_s"}
                               for k, v in (metrics.get("yardsticks") or {}).items()}),
        "test_windows": metrics.get("test_windows"),
        "evaluated_points": metrics.get("evaluated_points"),
        "forecasts": captured,
        "processed_sha256": {k: _sha(np.ascontiguousarray(v).tobytes()) for k, v in arrays.items() if k != "run_id"},
        "preprocessor": rounded({k: v for k, v in payload.items() if k != "run_id"}),
        "summary": rounded({k: v for k, v in meta.items() if k != "run_id"}),
        "structure": {
            "metrics": structure(metrics),
            "meta": structure(meta),
            "metadata": structure(_machine_free(metadata)),
            "preprocessor": structure(payload),
            "processed": {k: structure(v) for k, v in arrays.items()},
            "report_headings": [line for line in report.splitlines() if line.startswith("#")],
        },
        **predicted,
    }
    doc = json.loads(json.dumps(doc).replace(str(DATASETS), "<datasets>"))  # the same on every checkout
    return {"doc": doc, "seconds": round(seconds, 1)}


def differences(want, got, path="") -> list:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}/{k}: missing" for k in want if k not in got]
        out += [f"{path}/{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{path}/{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: length {len(want)} != {len(got)}"]
        out = []
        for i, (a, b) in enumerate(zip(want, got)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    return [] if want == got else [f"{path}: {str(want)[:200]!s} != {str(got)[:200]!s}"]


def compare(name: str) -> tuple:
    """(differences, seconds) of a fresh run against the stored values."""
    want = json.loads((HERE / f"{name}.json").read_text())
    fresh = record_one(name)
    got = json.loads(json.dumps(fresh["doc"]))
    return differences(want, got), fresh["seconds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", action="store_true", help="compare with the stored values instead of recording")
    ap.add_argument("names", nargs="*", default=list(CONFIGS), help=f"which runs (default: {' '.join(CONFIGS)})")
    args = ap.parse_args()
    failed = 0
    for name in args.names:
        if args.compare:
            diffs, seconds = compare(name)
            print(f"{name}: {'identical' if not diffs else f'{len(diffs)} differences'} ({seconds} s)")
            for d in diffs[:40]:
                print("   ", d)
            failed += bool(diffs)
        else:
            fresh = record_one(name)
            (HERE / f"{name}.json").write_text(json.dumps(fresh["doc"], indent=1, sort_keys=True) + "\n")
            print(f"{name}: recorded ({fresh['seconds']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
