"""The typed run documents (spline_lstm.core.documents) against a real run's files: the
JSON a run writes is exactly what its dataclass writes back, byte for byte, and
a record of an older run (fewer keys) or with keys unknown here still reads."""
from __future__ import annotations

import json

import pytest

from spline_lstm.core.documents import MetadataDoc, read_metadata
from tests.conftest import Run


def test_metadata_round_trips_byte_for_byte(smoke_run: Run):
    path = smoke_run.path("metadata")
    doc = read_metadata(path)
    assert doc.run_id == smoke_run.run_id and doc.experiment == "spline-lstm"
    assert (json.dumps(doc.to_dict(), indent=2, sort_keys=True) + "\n").encode() == path.read_bytes()


def test_metadata_of_an_older_or_newer_run_still_reads(smoke_run: Run):
    on_disk = json.loads(smoke_run.path("metadata").read_text())
    older = {k: v for k, v in on_disk.items() if k not in ("plots", "timings_s", "host", "mlflow")}
    doc = MetadataDoc.from_dict({**older, "added_later": 1})
    assert doc.plots == {} and doc.experiment is None and doc.artifacts == on_disk["artifacts"]
    assert MetadataDoc.from_dict({}).artifacts is None  # no hash record: the gate reports it


@pytest.mark.unit
def test_a_many_series_table_must_hold_one_entry_per_series_with_the_models_metrics():
    from spline_lstm.core.documents import MetricsDoc

    entry = {"model": {"rmse": 1.0}, "naive_last": {"rmse": 2.0}}
    ok = {"count": 2, "per_series": {"a": entry, "b": entry}}
    assert MetricsDoc.series_problems(ok) == []
    assert MetricsDoc.series_problems({**ok, "count": 3})  # a series missing from the table
    assert MetricsDoc.series_problems({"count": 1, "per_series": {"a": entry, "b": entry}})
    assert MetricsDoc.series_problems({"count": 2, "per_series": {"a": entry, "b": {"naive_last": {}}}})
    nan = {"model": {"rmse": float("nan")}}
    assert MetricsDoc.series_problems({"count": 2, "per_series": {"a": nan, "b": nan}})
    assert MetricsDoc.series_problems({"count": 1, "per_series": []})
