"""The sweep's ranked table (spline_lstm.app.sweep): pure functions on hand-built statuses."""
from __future__ import annotations

import csv
import io

import pytest

from spline_lstm.app import sweep

pytestmark = pytest.mark.unit


def status(run_id, overrides, ok=True, val=None, scaled=None, test=None, code=9, name="HEALTH_FAILED"):
    return {"run_id": run_id, "overrides": overrides, "ok": ok, "val_rmse": val, "val_rmse_scaled": scaled,
            "test_rmse": test, "code": code, "name": name}


@pytest.mark.parametrize("text,expected", [("a.b=1", ("a.b", "1")), ("+preset=smoke", ("preset", "smoke")),
                                           ("~x=", ("x", "")), ("k=v=w", ("k", "v=w")), ("flag", ("flag", ""))])
def test_split_override(text, expected):
    assert sweep.split_override(text) == expected


def test_varying_keys_keep_first_seen_order_and_skip_run_id():
    jobs = [["seed=1", "model.units=8", "run_id=a", "tracking=none"],
            ["seed=2", "model.units=8", "run_id=b", "tracking=none"],
            ["seed=1", "model.units=16", "run_id=c", "tracking=none", "+extra=1"]]
    assert sweep.varying_keys(jobs) == ["seed", "model.units", "extra"]


def test_a_key_missing_from_one_job_varies():
    assert sweep.varying_keys([["a=1"], []]) == ["a"]


def test_no_jobs_no_keys():
    assert sweep.varying_keys([]) == []


def test_rank_orders_passed_jobs_by_validation_never_by_test_and_failed_ones_last():
    statuses = [status("j0", ["seed=0"], val=3.0, test=0.1),
                status("j1", ["seed=1"], ok=False, val=0.5, code=7, name="TRAINING_FAILED"),
                status("j2", ["seed=2"], val=1.0, test=9.0),
                status("j3", ["seed=3"], val=None, test=0.01)]
    columns, rows = sweep.rank(statuses)
    assert columns == ["rank", "run_id", "seed", "val_rmse", "val_rmse_scaled", "test_rmse", "gate", "exit", "error"]
    assert [r["run_id"] for r in rows] == ["j2", "j0", "j3", "j1"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["gate"] == "FAIL" and rows[-1]["exit"] == 7 and rows[-1]["error"] == "TRAINING_FAILED"
    assert rows[0]["gate"] == "PASS" and rows[0]["exit"] == 0 and rows[0]["error"] == ""


def test_rank_falls_back_to_the_scaled_validation_rmse():
    statuses = [status("a", [], scaled=0.9), status("b", [], scaled=0.2), status("c", [], scaled=float("nan"))]
    _, rows = sweep.rank(statuses)
    assert [r["run_id"] for r in rows] == ["b", "a", "c"]


def test_pick_best_and_its_line():
    columns, rows = sweep.rank([status("a", ["model.units=8"], val=2.0), status("b", ["model.units=16"], val=1.5)])
    best = sweep.pick_best(columns, rows)
    assert best["run_id"] == "b"
    assert sweep.best_line(columns, best) == "best       b val_rmse 1.5 (model.units=16)"


def test_no_best_when_the_first_job_failed():
    columns, rows = sweep.rank([status("a", [], ok=False)])
    assert sweep.pick_best(columns, rows) is None
    assert sweep.best_line(columns, None) == "best       none: no job passed the gate"


def test_shards_have_no_best():
    columns, rows = sweep.rank([status("a", ["data.shard=0/2"], val=1.0), status("b", ["data.shard=1/2"], val=2.0)])
    assert sweep.pick_best(columns, rows) is None
    assert "shards" in sweep.best_line(columns, rows[0])


def test_table_text_aligns_columns_and_formats_numbers():
    columns, rows = sweep.rank([status("long-run-id", ["seed=1"], val=0.123456, test=2.0),
                                status("b", ["seed=2"], ok=False)])
    lines = sweep.table_text(columns, rows).splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["rank", "run_id", "seed"]
    assert "0.1235" in lines[1]
    header_seed = lines[0].index("seed")
    assert lines[1][header_seed:].startswith("1") and lines[2][header_seed:].startswith("2")
    assert all(line == line.rstrip() for line in lines)


def test_csv_bytes_round_trip_with_empty_cells_for_none():
    columns, rows = sweep.rank([status("a", ["seed=1"], val=1.25), status("b", ["seed=2"], ok=False)])
    back = list(csv.DictReader(io.StringIO(sweep.csv_bytes(columns, rows).decode())))
    assert [r["run_id"] for r in back] == ["a", "b"]
    assert back[0]["val_rmse"] == "1.25" and back[1]["val_rmse"] == "" and back[1]["gate"] == "FAIL"
    assert list(back[0]) == columns


def test_job_metrics_reads_a_metrics_document():
    doc = {"run_id": "r", "metrics": {"rmse": 2.0}, "checkpoints": {}, "validation": {"rmse": 1.5},
           "history": {"val_loss": [0.25, 0.16, 0.36]}, "best_epoch": 2}
    assert sweep.job_metrics(doc) == {"val_rmse": 1.5, "val_rmse_scaled": pytest.approx(0.4), "test_rmse": 2.0}


def test_write_summary_and_read_record(tmp_path):
    columns, rows = sweep.rank([status("a", ["seed=1"], val=1.0)])
    written = sweep.write_summary(tmp_path, columns, rows)
    assert [p.name for p in written] == ["summary.csv", "summary.json"]
    import json

    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["best"]["run_id"] == "a" and doc["columns"] == columns
    assert sweep.read_record(tmp_path) is None
    assert sweep.begin(str(tmp_path), "sweep-x", tmp_path / "s", None) is None
    assert sweep.read_record(tmp_path)["sweep_id"] == "sweep-x"
