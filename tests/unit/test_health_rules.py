"""Health gate rules (spline_lstm.artifacts.health) on small hand-built artifact trees: no
model is trained or loaded; only the checks that judge paths, presence and JSON run."""
from __future__ import annotations

import json
import os

import pytest

from spline_lstm.artifacts.health import SEVERITY, Check, GateResult, run_gate
from spline_lstm.artifacts.layout import ArtifactLayout
from spline_lstm.core.errors import HealthFailed, ModelUnskilled, RunIdInvalid, RunIdMismatch, UnsafeArtifact

pytestmark = pytest.mark.unit

RID = "hand-built"


def by_name(result: GateResult) -> dict:
    return {c.name: c for c in result.checks}


@pytest.fixture
def artifacts(tmp_path):
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


def test_a_run_with_no_files_fails_exist_with_9(artifacts):
    result = run_gate(artifacts, RID)
    checks = by_name(result)
    assert not result.passed and result.code == HealthFailed.code
    assert checks["storage"].status == "PASS" and checks["exist"].status == "FAIL"
    assert "8 of 8 artifacts missing" in checks["exist"].message
    assert checks["quality"].status == "SKIP"
    err = result.error()
    assert isinstance(err, HealthFailed) and RID in str(err) and "exist" in str(err)


def test_a_missing_artifacts_dir_fails_storage(tmp_path):
    checks = by_name(run_gate(tmp_path / "nowhere", RID))
    assert checks["storage"].status == "FAIL" and "does not exist" in checks["storage"].message


def test_an_invalid_run_id_is_refused_before_any_check(artifacts):
    with pytest.raises(RunIdInvalid):
        run_gate(artifacts, "../" + RID)


def test_a_symlinked_artifact_is_unsafe_11_and_nothing_else_is_read(artifacts, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    metrics = ArtifactLayout(artifacts).paths(RID)["metrics"]
    metrics.parent.mkdir(parents=True)
    os.symlink(outside, metrics)
    result = run_gate(artifacts, RID)
    checks = by_name(result)
    assert result.code == UnsafeArtifact.code and checks["storage"].status == "FAIL"
    assert "symlink" in checks["storage"].message
    assert all(c.status == "SKIP" for c in result.checks[1:])


def test_a_fifo_among_the_runs_files_is_unsafe(artifacts):
    report = ArtifactLayout(artifacts).paths(RID)["report"]
    report.parent.mkdir(parents=True)
    os.mkfifo(report)
    result = run_gate(artifacts, RID)
    assert result.code == UnsafeArtifact.code and "not a regular file" in result.checks[0].message


def test_a_malformed_json_artifact_is_named(artifacts):
    paths = ArtifactLayout(artifacts).paths(RID)
    paths["metrics"].parent.mkdir(parents=True)
    paths["metrics"].write_text("{broken")
    checks = by_name(run_gate(artifacts, RID))
    assert checks["parse"].status == "FAIL" and checks["parse"].code in (HealthFailed.code, UnsafeArtifact.code)


def test_a_metrics_document_of_another_run_is_a_mismatch(artifacts):
    paths = ArtifactLayout(artifacts).paths(RID)
    paths["metrics"].parent.mkdir(parents=True)
    paths["metrics"].write_text(json.dumps({"run_id": "someone-else", "metrics": {"rmse": 1.0}, "checkpoints": {}}))
    result = run_gate(artifacts, RID)
    assert by_name(result)["run_id"].status == "FAIL"
    assert result.code == RunIdMismatch.code  # more severe than the missing files


def test_severity_orders_unsafe_over_mismatch_over_corrupt_over_unskilled():
    assert SEVERITY[UnsafeArtifact.code] > SEVERITY[RunIdMismatch.code] > SEVERITY[HealthFailed.code] \
        > SEVERITY[ModelUnskilled.code]
    result = GateResult("r", "/a", [Check("a", "FAIL", "x", HealthFailed.code), Check("b", "FAIL", "y", 11),
                                    Check("c", "PASS")])
    assert result.code == 11 and isinstance(result.error(), UnsafeArtifact) and "b: y" in str(result.error())


def test_a_result_that_passed_has_no_error_and_says_pass():
    result = GateResult("r", "/a", [Check("a", "PASS"), Check("quality", "PASS")])
    assert result.passed and result.whole and result.code == 0 and result.error() is None
    doc = result.to_dict()
    assert doc["verdict"] == "PASS" and doc["code"] == 0 and [c["name"] for c in doc["checks"]] == ["a", "quality"]


def test_an_unskilled_model_with_whole_files_is_12_and_still_whole():
    result = GateResult("r", "/a", [Check("hashes", "PASS"), Check("quality", "FAIL", "no skill", 12)])
    assert result.whole and not result.passed and result.code == 12
    assert isinstance(result.error(), ModelUnskilled)


def test_no_checks_is_not_whole():
    assert not GateResult("r", "/a").whole
