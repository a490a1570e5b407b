"""``data.shard=i/N``: a sweep over shards splits a many-series input into disjoint runs
that together cover every series (docs/sweeps.md#past-one-machine)."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spline_lstm.data.panel import in_shard
from spline_lstm.data.synthetic import related_series
from tests.conftest import launch, last_line, sweep_runs


@pytest.mark.unit
def test_shards_are_disjoint_cover_every_id_and_do_not_depend_on_the_process():
    ids = tuple(f"meter-{k}" for k in range(500))
    masks = np.stack([in_shard(ids, f"{k}/4") for k in range(4)])
    assert (masks.sum(axis=0) == 1).all()  # each id in exactly one shard
    assert all(200 > m.sum() > 60 for m in masks)  # and the shards are not lopsided
    # crc32, not Python's salted hash: a fixed answer for a fixed id, in any process
    assert zlib.crc32(b"meter-0") == 2115566577
    assert in_shard(("meter-0",), f"{2115566577 % 4}/4")[0]


def test_a_shard_outside_its_range_or_without_many_series_is_a_config_error(tmp_path: Path):
    for bad in (["+preset=smoke", "data.n_series=4", "data.shard=4/4"],
                ["+preset=smoke", "data.n_series=4", "data.shard=x"],
                ["+preset=smoke", "data.shard=0/2"]):
        proc = launch(*bad, outputs=tmp_path / "out", timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert last_line(proc.stderr).startswith("ERROR [CONFIG_INVALID] data.shard")
        assert not (tmp_path / "out" / "artifacts").exists()


@pytest.mark.slow
def test_a_sweep_over_shards_runs_each_series_exactly_once_under_one_parent_run(tmp_path: Path):
    p = related_series(6, 300, period=24, seed=3, gap_ratio=0.02)
    stamps = pd.date_range("2024-01-01", periods=300, freq="h")
    ids = [f"meter-{k}" for k in range(6)]
    frame = pd.concat([pd.DataFrame({"meter": i, "timestamp": stamps, "value": y}) for i, y in zip(ids, p.values)])
    path = tmp_path / "meters.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    proc = launch("-m", "+preset=smoke", "data=csv", f"data.path={path}", "data.id_col=meter",
                  "data.shard=0/2,1/2", "training.epochs=1", outputs=out, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "best       none: the jobs are shards (data.shard)" in proc.stdout + proc.stderr
    metrics = [json.loads(f.read_text()) for f in sorted((out / "artifacts" / "metrics").glob("*.json"))]
    per_job = [set(m["series"]["per_series"]) for m in metrics]
    assert len(per_job) == 2 and not per_job[0] & per_job[1] and per_job[0] | per_job[1] == set(ids)
    parent, jobs = sweep_runs(out)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert sorted(r.data.params["data.shard"] for r in jobs) == ["0/2", "1/2"]
    assert {r.data.tags["health"] for r in jobs} == {"PASS"} and "best_run_id" not in parent.data.tags
