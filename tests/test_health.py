"""The health gate end to end (docs/concepts.md#health-gate, docs/exit-codes.md): real artifacts of a real smoke run, one
deliberate failure per test, checked through ``python -m spline_lstm health`` (exit code,
one ``ERROR [NAME]`` line, no traceback, the verdict record) and, for the in-run gate,
through ``launch.py`` itself with a test-only Hydra callback that breaks an artifact after
the pipeline wrote it and before the gate reads it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, SMOKE_FAST, Run, cli, last_line, launch
from tests.helpers.breaker import ENV_BREAK, ENV_RUN_ID
from tests.helpers.tamper import (flip_byte, malicious_pickle, mlflow_runs, rewrite_json, rewrite_npz_run_id,
                            rewrite_pickle, truncate)

KINDS = ("processed", "meta", "preprocessor", "best", "last", "metrics", "report", "metadata")
HASHED = tuple(k for k in KINDS if k != "metadata")
BREAKER = "+hydra.callbacks.breaker._target_=tests.helpers.breaker.BreakArtifact"
NAMES = {0: None, 9: "HEALTH_FAILED", 10: "RUN_ID_MISMATCH", 11: "UNSAFE_ARTIFACT"}


def gate(run: Run, *extra: str) -> subprocess.CompletedProcess:
    return cli("health", run.run_id, "--outputs-dir", str(run.outputs), *extra)


def assert_fails(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """Exit code, one ERROR line naming the code last on stderr, no traceback; returns the line."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out[-3000:]
    line = last_line(proc.stderr)
    assert line.startswith(f"ERROR [{NAMES[code]}] "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in line, line
    return line


CHECKS = ["storage", "exist", "parse", "pickle", "run_id", "hashes"]


def assert_record(run: Run, verdict: str, code: int, standalone: bool = True) -> dict:
    """The gate's report; the in-run gate runs before the completion record can exist."""
    record = json.loads((run.artifacts / "health" / f"{run.run_id}.json").read_text())
    assert record["run_id"] == run.run_id
    assert (record["verdict"], record["code"]) == (verdict, code)
    assert [c["name"] for c in record["checks"]] == CHECKS + (["complete"] if standalone else []) + ["quality"]
    return record


# --- healthy ------------------------------------------------------------------------------

def test_gate_passes_on_the_healthy_run(fresh_run: Run):
    proc = gate(fresh_run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: PASS" in proc.stdout and proc.stderr == ""
    record = assert_record(fresh_run, "PASS", 0)
    assert all(c["status"] == "PASS" for c in record["checks"])

    proc = gate(fresh_run, "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["verdict"] == "PASS" and doc["code"] == 0
    assert doc["record"] == str(fresh_run.artifacts / "health" / f"{fresh_run.run_id}.json")


def test_gate_reads_files_only(smoke_run: Run):
    """No TensorFlow / Keras / MLflow import, no model loading: a few file reads."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from spline_lstm.artifacts.health import run_gate\n"
        "t0 = time.perf_counter()\n"
        f"r = run_gate(Path({str(smoke_run.artifacts)!r}), {smoke_run.run_id!r})\n"
        "assert r.passed, r.to_dict()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mlflow', 'h5py', 'torch'))\n"
        "assert not heavy, heavy\n"
        "print(round(time.perf_counter() - t0, 3))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout) < 5.0


# --- missing / unparsable / invalid fields (9) -----------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_each_missing_artifact_fails_with_9(fresh_run: Run, kind: str):
    path = fresh_run.path(kind)
    path.unlink()
    line = assert_fails(gate(fresh_run), 9, "exist: 1 of 8 artifacts missing", str(path))
    assert f"'{fresh_run.run_id}'" in line
    assert_record(fresh_run, "FAIL", 9)


@pytest.mark.parametrize("kind", ("metrics", "meta", "metadata"))
def test_invalid_json_fails_with_9(fresh_run: Run, kind: str):
    path = fresh_run.path(kind)
    path.write_text(path.read_text()[:-20])  # cut mid-document: no longer JSON
    assert_fails(gate(fresh_run), 9, f"{path.name} is not valid JSON")


def test_json_array_instead_of_object_fails_with_9(fresh_run: Run):
    fresh_run.path("meta").write_text("[1, 2, 3]\n")
    assert_fails(gate(fresh_run), 9, "meta.json is not a JSON object")


@pytest.mark.parametrize("change, shown", [
    (lambda d: d["metrics"].pop("rmse"), "None"),
    (lambda d: d["metrics"].update(rmse=float("nan")), "nan"),
    (lambda d: d["metrics"].update(rmse=float("inf")), "inf"),
    (lambda d: d["metrics"].update(rmse="0.5"), "'0.5'"),
], ids=["missing", "nan", "inf", "string"])
def test_bad_rmse_fails_with_9(fresh_run: Run, change, shown: str):
    rewrite_json(fresh_run.path("metrics"), change)
    assert_fails(gate(fresh_run), 9, f"metrics.rmse is not a finite number ({shown})")
    assert_record(fresh_run, "FAIL", 9)


@pytest.mark.parametrize("key", ("metrics", "checkpoints"))
def test_missing_metrics_field_fails_with_9(fresh_run: Run, key: str):
    rewrite_json(fresh_run.path("metrics"), lambda d: d.pop(key))
    assert_fails(gate(fresh_run), 9, f"metrics has no '{key}'")


@pytest.mark.parametrize("kind", ("best", "last"))
def test_truncated_checkpoint_fails_with_9(fresh_run: Run, kind: str):
    truncate(fresh_run.path(kind))
    proc = gate(fresh_run)
    assert_fails(proc, 9, f"{kind} checkpoint {kind}.keras is not a Keras zip archive")
    assert f"{kind}: sha256 differs" in proc.stdout  # the hash check reports it too


def test_zip_without_keras_members_fails_with_9(fresh_run: Run):
    path = fresh_run.path("best")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    assert_fails(gate(fresh_run), 9, "best checkpoint lacks config.json, model.weights.h5")


def test_checkpoint_with_corrupt_member_fails_with_9(fresh_run: Run):
    """A flipped byte inside a member: the zip still opens, its CRC does not match."""
    path = fresh_run.path("last")
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.weights.h5")
    flip_byte(path, info.header_offset + len(info.FileHeader()) + info.compress_size // 2)
    assert_fails(gate(fresh_run), 9, "last checkpoint last.keras has a corrupt member")


# --- tampering and truncation against the metadata hash record (9) ---------------------------

def test_byte_flipped_in_processed_npz_fails_with_9(fresh_run: Run):
    flip_byte(fresh_run.path("processed"))
    assert_fails(gate(fresh_run), 9, "hashes: processed: sha256 differs from metadata")
    assert_record(fresh_run, "FAIL", 9)


@pytest.mark.parametrize("kind", ("processed", "preprocessor"))
def test_truncated_npz_or_pickle_is_corruption_not_mismatch(fresh_run: Run, kind: str):
    """Regression: an unreadable npz was reported as RUN_ID_MISMATCH (10) and an unreadable
    pickle as UNSAFE_ARTIFACT (11); both are corrupt files: 9."""
    truncate(fresh_run.path(kind))
    line = assert_fails(gate(fresh_run), 9)
    assert "not a readable" in line, line


@pytest.mark.parametrize("kind", HASHED)
def test_every_recorded_sha256_is_checked(fresh_run: Run, kind: str):
    path = fresh_run.path(kind)
    path.write_bytes(path.read_bytes() + b"\n")
    assert_fails(gate(fresh_run), 9, f"hashes: {kind}: sha256 differs from metadata")


def test_missing_hash_record_fails_with_9(fresh_run: Run):
    rewrite_json(fresh_run.path("metadata"), lambda d: d["artifacts"].pop("report"))
    assert_fails(gate(fresh_run), 9, "hashes: report: no recorded hash")


# --- run_id disagreement (10) ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ("metrics", "meta", "metadata", "preprocessor", "processed"))
def test_payload_with_another_run_id_fails_with_10(fresh_run: Run, kind: str):
    """The hash changes too (except for metadata itself): the most severe code wins, 10."""
    path = fresh_run.path(kind)
    if kind == "preprocessor":
        rewrite_pickle(path, lambda p: p.update(run_id="other-run"))
    elif kind == "processed":
        rewrite_npz_run_id(path, "other-run")
    else:
        rewrite_json(path, lambda d: d.update(run_id="other-run"))
    line = assert_fails(gate(fresh_run), 10, f"path says '{fresh_run.run_id}' but", "'other-run'")
    shown = {"preprocessor": "preprocessor.pkl", "processed": "processed.npz"}.get(kind, kind)
    assert f"{shown}='other-run'" in line
    record = assert_record(fresh_run, "FAIL", 10)
    hashes = {c["name"]: c for c in record["checks"]}["hashes"]
    assert hashes["status"] == ("PASS" if kind == "metadata" else "FAIL")


# --- unsafe (11) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "subprocess.call"])
def test_malicious_pickle_is_refused_and_never_executed(fresh_run: Run, tmp_path: Path, how: str):
    marker = tmp_path / f"pwned-{how}"
    func, args = {
        "os.system": (os.system, (f"touch {marker}",)),
        "builtins.exec": (exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.call": (subprocess.call, (["touch", str(marker)],)),
    }[how]
    fresh_run.path("preprocessor").write_bytes(malicious_pickle(fresh_run.run_id, func, args))
    line = assert_fails(gate(fresh_run), 11, "pickle refers to disallowed global", "refused, not executed")
    assert not marker.exists()
    assert_record(fresh_run, "FAIL", 11)
    assert "pickle:" in line


def test_symlinked_artifact_fails_with_11(fresh_run: Run, tmp_path: Path):
    path = fresh_run.path("report")
    outside = tmp_path / "elsewhere.md"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    assert_fails(gate(fresh_run), 11, "is a symlink")


# --- operator mistakes ---------------------------------------------------------------------------

def test_unknown_run_fails_with_9_and_writes_no_record(fresh_run: Run):
    """Regression: the record of a never-run (or quarantined) run_id claimed that run_id,
    so the rerun was refused with RUN_ID_CONFLICT."""
    proc = cli("health", "never-ran", "--outputs-dir", str(fresh_run.outputs))
    assert_fails(proc, 9, "8 of 8 artifacts missing")
    line = last_line(proc.stderr)  # one short line that says what to do next, not 8 paths
    assert len(line) <= 300 and "runs list" in line and "processed.npz" not in line, line
    assert "no health record written" in proc.stdout
    assert not (fresh_run.artifacts / "health" / "never-ran.json").exists()


@pytest.mark.unit
def test_wrong_outputs_dir_fails_with_9_and_creates_nothing(tmp_path: Path):
    missing = tmp_path / "no-such-outputs"
    assert_fails(cli("health", "some-run", "--outputs-dir", str(missing)), 9, "does not exist")
    assert not missing.exists()


def test_invalid_run_id_fails_with_3(fresh_run: Run):
    proc = cli("health", "../escape", "--outputs-dir", str(fresh_run.outputs))
    assert proc.returncode == 3 and last_line(proc.stderr).startswith("ERROR [RUN_ID_INVALID] ")
    assert "Traceback" not in proc.stderr


# --- the gate inside launch.py -------------------------------------------------------------------

@pytest.mark.slow
def test_in_run_gate_failure_fails_the_run(tmp_path: Path):
    """An artifact broken after the pipeline wrote it and before the gate read it: launch.py
    exits 9 with one ERROR line, the MLflow run ends FAILED with tag health=FAIL."""
    outputs, run_id = tmp_path / "outputs", "inrun-broken"
    proc = launch(*SMOKE_FAST, f"run_id={run_id}", BREAKER, outputs=outputs,
                  env={ENV_BREAK: "processed:flip"})
    line = assert_fails(proc, 9, f"run_id '{run_id}'", "hashes: processed: sha256 differs from metadata")
    log = outputs / "runs" / run_id / "run.log"
    assert line.endswith(f"(log: {log})")
    assert (log.parent / "broken-by-test.txt").read_text().strip() == "processed:flip"  # the breaker ran
    run = Run(outputs, run_id)
    assert_record(run, "FAIL", 9, standalone=False)
    assert not (outputs / "artifacts" / "complete" / f"{run_id}.json").exists()  # never committed
    assert "gate failed" in log.read_text()

    runs = mlflow_runs(outputs, run_id)
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["health"] == "FAIL"
    assert runs[0].info.run_name == run_id

    listing = cli("runs", "list", "--outputs-dir", str(outputs))
    assert listing.returncode == 0
    assert any(row.split()[0] == run_id and "FAIL" in row.split() for row in listing.stdout.splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("launcher, broken", [("basic", "sw-a"), ("joblib", "sw-b")])
def test_sweep_runs_every_job_and_fails_with_the_failed_run_id(tmp_path: Path, launcher: str, broken: str):
    outputs = tmp_path / "outputs"
    ids = ["sw-a", "sw-b", "sw-c"]
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    proc = launch("-m", *SMOKE_FAST, f"run_id={','.join(ids)}", BREAKER, *extra, outputs=outputs,
                  env={ENV_BREAK: "metrics", ENV_RUN_ID: broken, "PYTHONPATH": str(REPO)})
    assert_fails(proc, 9, f"run_id '{broken}'")
    assert "sweep summary: 1 of 3 jobs failed" in proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if ln.strip().startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].split()[1] == f"{broken}:", proc.stderr

    for run_id in ids:
        run = Run(outputs, run_id)
        ok = run_id != broken
        assert_record(run, "PASS" if ok else "FAIL", 0 if ok else 9, standalone=False)
        assert (run.artifacts / "complete" / f"{run_id}.json").exists() == ok
        (mlrun,) = mlflow_runs(outputs, run_id)
        assert mlrun.data.tags["health"] == ("PASS" if ok else "FAIL")
        assert mlrun.info.status == ("FINISHED" if ok else "FAILED")
        assert gate(run).returncode == (0 if ok else 9)


# --- the completion record and the whole file set (issue 11) -------------------------------------

def record_path(run: Run) -> Path:
    return run.artifacts / "complete" / f"{run.run_id}.json"


@pytest.mark.parametrize("change, fragment", [
    (lambda files: files.update({k: "x" for k in files}), "sha256 differs from the completion record"),
    (lambda files: files.pop("metrics/smoke-fixture.json"), "metrics/smoke-fixture.json: not in the completion record"),
    (lambda files: files.update({"metrics/ghost.json": {"sha256": "0"}}), "sealed by the completion record but gone"),
    (lambda files: files.clear(), "not in the completion record"),
], ids=["not-objects", "one-missing", "one-extra", "empty"])
def test_the_completion_record_must_seal_exactly_the_files(fresh_run: Run, change, fragment: str):
    rewrite_json(record_path(fresh_run), lambda doc: change(doc["files"]))
    assert_fails(gate(fresh_run), 9, "complete: ", fragment)


def test_a_missing_record_fails_even_when_every_file_is_intact(fresh_run: Run):
    record_path(fresh_run).unlink()
    proc = gate(fresh_run)
    assert_fails(proc, 9, "complete: no completion record", "the run never finished")
    record = assert_record(fresh_run, "FAIL", 9)
    assert [c["status"] for c in record["checks"]] == ["PASS"] * 6 + ["FAIL", "SKIP"]  # quality: not judged


@pytest.mark.parametrize("action, code, fragment", [
    ("delete", 9, "plot loss.png: recorded in metadata but missing"),
    ("extra", 9, "unknown file reports/smoke-fixture/extra.png"),
    ("dir", 9, "unknown file checkpoints/smoke-fixture/.staging"),
    ("link-dir", 11, "is a symlink"),
], ids=["plot-deleted", "plot-extra", "stray-folder", "plot-folder-symlink"])
def test_every_file_of_the_run_is_checked(fresh_run: Run, tmp_path: Path, action: str, code: int, fragment: str):
    plots = fresh_run.artifacts / "reports" / fresh_run.run_id
    if action == "delete":
        (plots / "loss.png").unlink()
    elif action == "extra":
        (plots / "extra.png").write_bytes((plots / "loss.png").read_bytes())
    elif action == "dir":
        (fresh_run.path("best").parent / ".staging").mkdir()
    else:
        plots.rename(tmp_path / "plots")
        plots.symlink_to(tmp_path / "plots", target_is_directory=True)
    assert_fails(gate(fresh_run), code, fragment)
