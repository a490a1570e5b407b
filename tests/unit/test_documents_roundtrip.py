"""The typed run documents (spline_lstm.core.documents): to_dict / from_dict round trips
on hand-built documents, lenient reading, the gate's problems."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spline_lstm.core.documents import MetadataDoc, MetricsDoc, read_metadata, skill_scores
from spline_lstm.core.errors import HealthFailed, UnsafeArtifact

pytestmark = pytest.mark.unit

FULL = {"run_id": "r1", "metrics": {"rmse": 1.5, "mae": 1.0}, "checkpoints": {"best": "b.keras"},
        "baselines": {"naive_last": {"rmse": 2.0}}, "improvement_pct": {"naive_last": 25.0}, "units": "original",
        "evaluated_on": "observed test targets", "test_windows": 10, "evaluated_points": 10, "horizon": 1,
        "epochs_run": 3, "best_epoch": 2, "history": {"loss": [1.0, 0.5, 0.4], "val_loss": [0.9, 0.64, 0.7]},
        "yardsticks": {"ets": {"status": "ok"}}, "skill": {"verdict": "SKILLED", "mode": "warn", "metric": "rmse",
                                                           "model_score": 1.5, "best_baseline_score": 2.0},
        "backtest": None, "validation": {"rmse": 1.2}, "series": None}


def test_a_full_metrics_document_round_trips():
    assert MetricsDoc.from_dict(FULL).to_dict() == FULL


def test_unknown_keys_are_kept_through_a_round_trip():
    doc = {**FULL, "future_key": {"x": 1}}
    back = MetricsDoc.from_dict(doc)
    assert back.extra == {"future_key": {"x": 1}} and back.to_dict() == doc


def test_an_old_document_reads_with_defaults():
    doc = MetricsDoc.from_dict({"run_id": "old", "metrics": {"rmse": 3.0}, "checkpoints": {}})
    assert doc.rmse == 3.0 and doc.baselines == {} and doc.skill is None and doc.val_rmse is None
    assert doc.skill_verdict is None and doc.skill_mode is None


def test_wrong_typed_fields_are_replaced_by_defaults():
    doc = MetricsDoc.from_dict({"run_id": "x", "metrics": [1], "checkpoints": "no", "history": 5, "skill": "yes"})
    assert doc.metrics == {} and doc.checkpoints == {} and doc.history == {} and doc.skill is None


def test_a_metrics_document_is_an_object():
    with pytest.raises(TypeError):
        MetricsDoc.from_dict([FULL])


def test_the_readers_properties():
    doc = MetricsDoc.from_dict(FULL)
    assert doc.val_rmse == 1.2 and doc.baseline_rmse() == {"naive_last": 2.0}
    assert doc.skill_verdict == "SKILLED" and doc.skill_mode == "warn"
    assert doc.skill_scores == ("rmse", 1.5, 2.0)
    assert doc.val_rmse_scaled() == pytest.approx(0.8)


@pytest.mark.parametrize("best_epoch,val_loss", [(0, [0.5]), (3, [0.5, 0.4]), (None, [0.5]), (1, [-1.0]),
                                                 (1, ["x"]), (True, [0.25])])
def test_no_scaled_validation_rmse_without_a_usable_best_epoch(best_epoch, val_loss):
    doc = MetricsDoc.from_dict({**FULL, "best_epoch": best_epoch, "history": {"val_loss": val_loss}})
    if best_epoch is True:  # bool is an int: epoch 1
        assert doc.val_rmse_scaled() == pytest.approx(0.5)
    else:
        assert doc.val_rmse_scaled() is None


def test_skill_scores_of_older_runs_use_the_rmse_names():
    assert skill_scores({"model_rmse": 1.0, "best_baseline_rmse": 2.0}) == ("rmse", 1.0, 2.0)
    assert skill_scores(None) == ("rmse", None, None)
    assert skill_scores({"metric": "mase", "model_score": True}) == ("mase", None, None)


def test_a_healthy_document_has_no_problems():
    assert MetricsDoc.problems(FULL) == []


@pytest.mark.parametrize("key", ["run_id", "metrics", "checkpoints"])
def test_the_gate_names_a_missing_required_key(key):
    doc = {k: v for k, v in FULL.items() if k != key}
    assert f"metrics has no '{key}'" in MetricsDoc.problems(doc)


@pytest.mark.parametrize("change,fragment", [
    ({"metrics": {"rmse": float("nan")}}, "metrics.rmse"),
    ({"metrics": {"rmse": "1.0"}}, "metrics.rmse"), ({"metrics": {"rmse": True}}, "metrics.rmse"),
    ({"metrics": {}}, "metrics.rmse"), ({"series": {"count": 1}}, "per_series"),
    ({"series": {"count": 2, "per_series": {"a": {"model": {"rmse": 1.0}}}}}, "metrics.series.count"),
    ({"series": {"count": 1, "per_series": {"a": {"naive": {}}}}}, "without the model's metrics"),
    ({"series": {"count": 1, "per_series": {"a": {"model": {"rmse": float("inf")}}}}}, "no series has a finite"),
])
def test_the_gate_names_what_is_wrong(change, fragment):
    problems = MetricsDoc.problems({**FULL, **change})
    assert problems and any(fragment in p for p in problems), problems


def test_a_many_series_table_with_one_scored_series_is_fine():
    series = {"count": 2, "per_series": {"a": {"model": {"rmse": 1.0}}, "b": {"model": {"rmse": float("nan")}}}}
    assert MetricsDoc.problems({**FULL, "series": series}) == []


META = {"run_id": "r1", "sweep_id": None, "preset": "smoke", "started_at": "2024-01-01T00:00:00Z",
        "ended_at": "2024-01-01T00:01:00Z", "duration_s": 60.0, "config": {"seed": 42}, "overrides": ["+preset=smoke"],
        "command": ["launch.py"], "seed": 42, "determinism": {"op_determinism": True}, "splits": {"train": [0, 10]},
        "choices": None, "versions": {"numpy": "2.0"}, "git_commit": "abc", "data": {"source": "synthetic"},
        "artifacts": {"metrics": {"path": "m.json", "sha256": "0" * 64, "size": 1}}, "plots": {},
        "mlflow": {"experiment": "spline-lstm"}, "hydra_run_dir": "/x", "log_path": "/x/run.log",
        "timings_s": {"train": 1.0}, "host": {"cpus": 2}, "threads": {"intra": 1}}


def test_metadata_round_trips_and_keeps_key_order():
    doc = MetadataDoc.from_dict(META)
    assert doc.to_dict() == META and list(doc.to_dict()) == list(META)
    assert doc.experiment == "spline-lstm"


def test_metadata_of_an_older_run_and_unknown_keys():
    doc = MetadataDoc.from_dict({"run_id": "r", "unknown": 1, "mlflow": "not a dict"})
    assert doc.run_id == "r" and doc.plots == {} and doc.experiment is None
    assert "unknown" not in doc.to_dict()


def test_read_metadata_reads_a_file_and_refuses_a_broken_one(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(META))
    assert read_metadata(path).to_dict() == META
    path.write_text("{not json")
    with pytest.raises((HealthFailed, UnsafeArtifact)):
        read_metadata(path)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["rmse", "mae", "mase"]), st.floats(allow_nan=False, allow_infinity=False)),
       st.text(min_size=1, max_size=20), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_any_metrics_document_survives_json_and_a_round_trip(metrics, run_id, extra):
    doc = {"run_id": run_id, "metrics": metrics, "checkpoints": {}}
    extra = {f"x_{k}": v for k, v in extra.items()}
    back = MetricsDoc.from_dict(json.loads(json.dumps({**doc, **extra})))
    out = back.to_dict()
    assert {k: out[k] for k in doc} == doc and {k: out[k] for k in extra} == extra
    assert (back.rmse is None) == ("rmse" not in metrics) and (back.rmse is None or math.isfinite(back.rmse))
