"""Performance properties that do not depend on machine speed.

Timings belong in the benchmark (``python bench/run.py``, docs/performance.md);
these tests only check what stays true on any machine: which heavy packages a
command imports, how many bytes the window source and the preprocessing hold,
that the fast PCHIP gap filling gives the full spline's values bit for bit, and
that the benchmark's plain-Keras baseline trains on the framework's exact data.
No test here trains a model; the file runs in a few seconds.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spline_lstm.preprocessing import transforms
from spline_lstm.core.config import DataConfig, Interpolation, PreprocessConfig

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
HEAVY = {"tensorflow", "keras", "mlflow", "statsmodels"}


def _probe(*args: str, cwd: Path = REPO) -> dict:
    """Run ``python ARGS`` through bench/imports_probe.py: exit code + heavy packages imported."""
    proc = subprocess.run([sys.executable, str(BENCH / "imports_probe.py"), *args], capture_output=True,
                          text=True, timeout=120, cwd=str(cwd),
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    assert lines, f"probe printed nothing:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    doc = json.loads(lines[-1][len("BENCH_JSON "):])
    doc["output"] = proc.stdout[-1500:] + proc.stderr[-1500:]
    return doc


def _fake_run(outputs: Path, run_id: str) -> None:
    """A complete run's 8 artifacts, written without training, that passes the gate."""
    from spline_lstm.artifacts.layout import ArtifactLayout, atomic_write_bytes, atomic_write_json, dump_plain_pickle

    layout = ArtifactLayout(outputs / "artifacts")
    paths = layout.paths(run_id)
    for d in layout.run_dirs(run_id).values():
        d.mkdir(parents=True, exist_ok=True)
    hashes = {}

    def keras_zip() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("config.json", "{}")
            zf.writestr("metadata.json", "{}")
            zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
        return buf.getvalue()

    for kind, path in paths.items():
        if kind == "metadata":
            continue
        if kind == "processed":
            buf = io.BytesIO()
            np.savez(buf, run_id=np.array(run_id), processed=np.zeros(16, dtype=np.float32))
            hashes[kind] = atomic_write_bytes(path, buf.getvalue())
        elif kind == "preprocessor":
            hashes[kind] = atomic_write_bytes(path, dump_plain_pickle({"run_id": run_id, "format": 1}))
        elif kind in ("best", "last"):
            hashes[kind] = atomic_write_bytes(path, keras_zip())
        elif kind == "metrics":
            hashes[kind] = atomic_write_json(path, {"run_id": run_id, "metrics": {"rmse": 1.0},
                                                    "checkpoints": {"best": str(paths["best"]),
                                                                    "last": str(paths["last"])}})
        elif kind == "report":
            hashes[kind] = atomic_write_bytes(path, b"# report\n")
        else:  # meta and any kind added later: a JSON object carrying the run_id
            hashes[kind] = atomic_write_json(path, {"run_id": run_id})
    record = {k: {"path": str(paths[k].relative_to(layout.root)), **h} for k, h in hashes.items()}
    atomic_write_json(paths["metadata"], {"run_id": run_id, "artifacts": record, "timings_s": {}})
    from spline_lstm.artifacts import health

    health.commit(health.run_gate(layout.root, run_id, require_commit=False), final=False)  # sealed, as a run ends


@pytest.fixture(scope="module")
def fake_outputs(tmp_path_factory) -> Path:
    outputs = tmp_path_factory.mktemp("perf") / "outputs"
    _fake_run(outputs, "perf-fake-run")
    return outputs


# --- commands that do not train import no TensorFlow, Keras or MLflow --------------------

@pytest.mark.unit
def test_probe_sees_heavy_imports(tmp_path):
    script = tmp_path / "imports_mlflow.py"
    script.write_text("import sys, types\nsys.modules['mlflow'] = types.ModuleType('mlflow')\nsys.exit(3)\n")
    doc = _probe(str(script))
    assert doc["exit"] == 3 and doc["heavy"] == ["mlflow"]


@pytest.mark.unit
@pytest.mark.parametrize("args", [
    ["launch.py", "--help"],
    ["launch.py", "--cfg", "job", "+preset=smoke", "paths.outputs_dir={outputs}"],
    ["-m", "spline_lstm", "health", "perf-fake-run", "--outputs-dir", "{outputs}"],
    ["-m", "spline_lstm", "runs", "list", "--outputs-dir", "{outputs}"],
], ids=["launch --help", "launch --cfg job", "health", "runs list"])
def test_commands_that_do_not_train_import_no_heavy_package(args, fake_outputs):
    args = [a.format(outputs=fake_outputs) for a in args]
    doc = _probe(*args)
    assert doc["exit"] == 0, f"`python {' '.join(args)}` exited {doc['exit']} (if the gate changed, " \
                             f"update _fake_run):\n{doc['output']}"
    assert not set(doc["heavy"]) & HEAVY, f"`python {' '.join(args)}` imported {doc['heavy']}"


# --- windows are streamed: O(N) bytes, never N x lookback -----------------------------

def _source(n: int, lookback: int) -> transforms.WindowSource:
    bounds = transforms.split_bounds(n, PreprocessConfig(lookback=lookback))
    series = np.arange(n, dtype=np.float32)
    return transforms.WindowSource(series, transforms.window_starts(bounds, 0, lookback, 1), lookback, 1)


@pytest.mark.unit
def test_window_source_bytes_are_linear_in_n_and_independent_of_lookback():
    sizes = (2_000, 4_000, 8_000)
    for lookback in (24, 168):
        held = []
        for n in sizes:
            src = _source(n, lookback)
            assert src.nbytes == src.series.nbytes + src.starts.nbytes
            assert src.nbytes <= 12 * n  # float32 series + at most one int64 start per point
            assert src.nbytes * 5 < len(src) * lookback * 4  # far below a materialised X
            held.append(src.nbytes)
        assert 1.9 <= held[1] / held[0] <= 2.1 and 1.9 <= held[2] / held[1] <= 2.1
    assert abs(_source(8_000, 168).nbytes - _source(8_000, 24).nbytes) <= 8 * 168


@pytest.mark.unit
def test_window_gather_matches_materialised_windows():
    src = _source(1_000, 24)
    pick = src.starts[[0, 1, 17, len(src) - 1]]
    x, y = src.gather(pick)
    view = np.lib.stride_tricks.sliding_window_view(src.series, 24)
    assert x.shape == (4, 24, 1) and y.shape == (4, 1)
    assert np.array_equal(x[..., 0], view[pick - 24]) and np.array_equal(y[:, 0], src.series[pick])


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.unit
def test_window_setup_allocates_no_window_matrix():
    n, lookback = 200_000, 168
    series = np.zeros(n, dtype=np.float32)
    bounds = transforms.split_bounds(n, PreprocessConfig(lookback=lookback))
    peak = _traced_peak(lambda: [transforms.WindowSource(
        series, transforms.window_starts(bounds, k, lookback, 1), lookback, 1) for k in range(3)])
    assert peak <= 8 * n + 4096, f"window setup allocated {peak} bytes for {n} points"


# --- preprocessing memory grows linearly, with a small constant ----------------------

def _gappy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.sin(np.arange(n) / 30.0) + 0.1 * rng.standard_normal(n)
    values[rng.random(n) < 0.05] = np.nan
    values[0] = values[-1] = 0.0
    return values


@pytest.mark.unit
def test_preprocessing_memory_is_linear():
    import scipy.interpolate  # noqa: F401 - keep the import out of the traced peak

    cfg = PreprocessConfig(lookback=168)
    peaks = {}
    for n in (100_000, 400_000):
        values = _gappy(n)
        bounds = transforms.split_bounds(n, cfg)

        def chain():
            transforms.check_series(values, bounds, cfg, "test")
            filled = transforms.fill_gaps(values, bounds, Interpolation.pchip)
            scaler = transforms.Scaler.fit(cfg.scaling, filled[: bounds[1]])
            np.nan_to_num(scaler.transform(filled)).astype(np.float32)

        peaks[n] = _traced_peak(chain)
        assert peaks[n] <= 8 * (8 * n), f"{peaks[n] / (8 * n):.1f} x the series' float64 size at n={n}"
    assert 3.6 <= peaks[400_000] / peaks[100_000] <= 4.4


# --- the fast PCHIP path is the full spline, bit for bit ------------------------------

def _reference_fill(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """fill_gaps as first written: a PchipInterpolator through every observed point."""
    from scipy.interpolate import PchipInterpolator

    filled = values.copy()
    observed = ~np.isnan(values)
    for k in range(3):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        gaps = np.flatnonzero(~observed[lo:hi]) + lo
        if gaps.size == 0:
            continue
        x = np.flatnonzero(observed[:hi])
        if len(x) < 4:
            est = np.interp(gaps.astype(np.float64), x.astype(np.float64), values[x])
        else:
            est = np.asarray(PchipInterpolator(x.astype(np.float64), values[x], extrapolate=False)(
                gaps.astype(np.float64)), dtype=np.float64)
        est[gaps > x[-1]] = values[x[-1]]
        filled[gaps] = est
    return filled


@pytest.mark.unit
def test_pchip_fill_is_bit_identical_to_the_full_spline():
    rng = np.random.default_rng(1)
    for trial in range(150):
        n = int(rng.integers(8, 2_000))
        values = np.cumsum(rng.standard_normal(n))
        if trial % 5 == 0:
            values = np.round(values)  # flat steps: zero slopes, sign changes
        if trial % 7 == 0:
            values = np.sin(np.arange(n) / 3.0)
        missing = rng.random(n) < rng.uniform(0.0, 0.4)
        if trial % 3 == 0:
            for _ in range(int(rng.integers(1, 5))):
                start = int(rng.integers(0, n))
                missing[start:start + int(rng.integers(1, 20))] = True
        missing[0] = False
        if trial % 2:
            missing[-1] = False
        if (~missing).sum() < 2:
            continue
        values[missing] = np.nan
        bounds = np.array([0, int(n * 0.7), int(n * 0.85), n])
        got = transforms.fill_gaps(values, bounds, Interpolation.pchip)
        want = _reference_fill(values, bounds)
        assert got.tobytes() == want.tobytes(), f"trial {trial}: n={n}"


# --- the benchmark's plain-Keras baseline trains on the framework's data ----------------

def test_plain_keras_baseline_uses_the_framework_data():
    sys.path.insert(0, str(BENCH))
    try:
        import plain_keras
    finally:
        sys.path.remove(str(BENCH))
    from spline_lstm.data.loading import synthetic_series

    cfg, p = DataConfig(n_points=720), PreprocessConfig(lookback=24, horizon=1)
    framework = synthetic_series(cfg, 42).to_numpy()
    plain = plain_keras.make_series(720, 42, cfg.gap_ratio, cfg.gap_stretches, cfg.noise)
    assert framework.tobytes() == plain.tobytes()

    lo, hi = transforms.observed_span(framework)
    assert (lo, hi) == (0, len(framework))
    bounds = transforms.split_bounds(len(framework), p)
    filled = transforms.fill_gaps(framework, bounds, p.interpolation)
    scaler = transforms.Scaler.fit(p.scaling, filled[: bounds[1]])
    scaled = np.nan_to_num(scaler.transform(filled)).astype(np.float32)
    plain_scaled, plain_bounds = plain_keras.prepare(plain)
    assert list(plain_bounds) == [int(b) for b in bounds]
    assert scaled.tobytes() == plain_scaled.tobytes()
    x, y = plain_keras.windows(scaled[: bounds[1]], 0, int(bounds[1]), 24, 1)
    assert len(x) == len(transforms.window_starts(bounds, 0, 24, 1))


@pytest.mark.unit
def test_bench_growth_exponent_and_ratios():
    sys.path.insert(0, str(BENCH))
    try:
        from common import growth_exponent, paired_ratio
    finally:
        sys.path.remove(str(BENCH))
    assert growth_exponent([1e5, 1e6, 1e7], [0.1, 1.0, 10.0]) == pytest.approx(1.0)
    assert growth_exponent([1e5, 1e6, 1e7], [1.0, 100.0, 10_000.0]) == pytest.approx(2.0)
    r = paired_ratio([2.0, 3.0, 4.0], [1.0, 2.0, 2.0])
    assert r["median"] == 2.0 and r["min"] == 1.5 and r["max"] == 2.0
