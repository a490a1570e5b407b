"""The first hour of a new user (issue 23): what the console says and what MLflow shows.

Cheap cases only (no training, or runs that fail before it); the real UI is
tests/test_browser.py, the sweep's MLflow record tests/test_sweeps.py."""
from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import numpy as np
import pytest

from spline_lstm.cli.common import _stores
from spline_lstm.core.config import register_configs, validate
from spline_lstm.core.errors import classify, error_line
from spline_lstm.core.progress import Progress
from spline_lstm.core.progress import line as progress_line
from spline_lstm.evaluation import report
from spline_lstm.evaluation.report import shown_steps
from spline_lstm.pipeline.run import epoch_metrics, mlflow_metrics
from tests.conftest import REPO, Run, launch, run_cmd
from tests.helpers.tamper import flip_byte, mlflow_runs


class _Evaluation:
    metrics = {"rmse": 1.0, "mae": 0.5}
    baselines = {"naive_last": {"rmse": 2.0}, "ets": {"rmse": 1.5}}
    improvement = {"naive_last": 50.0, "ets": 33.3}


@pytest.mark.unit
def test_the_models_own_metrics_sort_before_its_yardsticks():
    names = sorted(mlflow_metrics(_Evaluation()))
    assert names[:2] == ["test/mae", "test/rmse"]
    assert all(n.startswith(("test_baseline/", "test_improvement_pct/")) for n in names[2:])


@pytest.mark.unit
def test_train_and_validation_loss_share_one_group_and_keep_their_old_keys():
    assert epoch_metrics({"loss": 1.0, "val_loss": 2.0}) == {
        "train/loss": 1.0, "loss/train": 1.0, "val/loss": 2.0, "loss/val": 2.0}


def test_a_failed_run_prints_its_error_line_once(tmp_path: Path):
    """Once on the console (stdout and stderr together), the last line on stderr; no
    Hydra 'Error executing job' line; the run log keeps it too."""
    proc = launch("+preset=smoke", "data.n_points=30", "tracking=none", outputs=tmp_path / "outputs")
    assert proc.returncode == 5
    both = proc.stdout + proc.stderr
    assert both.count("ERROR [INPUT_INVALID]") == 1, both[-3000:]
    assert "Error executing job" not in both
    assert proc.stderr.strip().splitlines()[-1].startswith("ERROR [INPUT_INVALID]")
    (log,) = (tmp_path / "outputs" / "runs").glob("*/run.log")
    assert "ERROR [INPUT_INVALID]" in log.read_text()


@pytest.mark.unit
@pytest.mark.parametrize("override, expected", [
    ("+preset=airlines", "did you mean 'airline'? available: airline, "),
    ("tracking=mlfow", "did you mean 'mlflow'? available: mlflow, none, server"),
    ("model.units=16,32", "to sweep over the values add -m (--multirun)"),
    ("model.unitz=3", "did you mean model.units?"),
])
def test_hydras_help_stays_on_the_one_error_line(override, expected):
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        with pytest.raises(Exception) as info:
            validate(compose("config", [override]))
    line = error_line(classify(info.value))
    assert line.startswith("ERROR [CONFIG_INVALID] ") and "\n" not in line and expected in line, line


def test_health_from_another_directory_tags_the_runs_own_store(fresh_run: Run, tmp_path: Path):
    """``health RUN --artifacts-dir D`` started elsewhere: the verdict goes to the store beside
    D (the run's), not to one derived from the current directory (none is created there)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    flip_byte(fresh_run.path("report"))
    proc = run_cmd(["-m", "spline_lstm", "health", fresh_run.run_id, "--artifacts-dir", str(fresh_run.artifacts)],
                   cwd=elsewhere)
    assert proc.returncode == 9 and "MLflow: tagged 1 run(s) health=FAIL" in proc.stdout, proc.stdout + proc.stderr
    (mlrun,) = mlflow_runs(fresh_run.outputs, fresh_run.run_id)
    assert mlrun.data.tags["health"] == "FAIL" and mlrun.info.status == "FAILED"
    assert not (elsewhere / "outputs").exists()


@pytest.mark.unit
def test_the_recorded_store_is_used_when_none_sits_beside_the_run_and_a_server_is_only_named(tmp_path: Path):
    args = argparse.Namespace(tracking_uri=None, outputs_dir=str(tmp_path / "here"),
                              artifacts_dir=str(tmp_path / "moved" / "artifacts"))
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    here = str(tmp_path / "moved" / "artifacts")
    assert _stores(args, (f"sqlite:///{db}", here)) == ([f"sqlite:///{db}"], None)
    stores, note = _stores(args, (f"sqlite:///{tmp_path}/gone/mlflow.db", here))
    assert stores == [] and "no longer exists" in note
    stores, note = _stores(args, ("http://alice:***@mlflow.internal:5000", here))
    assert stores == [] and "--tracking-uri http://mlflow.internal:5000" in note and "alice" not in note
    # a copy (files no longer where the run wrote them): the original's store is left alone
    stores, note = _stores(args, (f"sqlite:///{db}", str(tmp_path / "original" / "artifacts")))
    assert stores == [] and "moved or been copied" in note
    args.tracking_uri = "http://other:5000"
    assert _stores(args, (f"sqlite:///{db}", here)) == (["http://other:5000"], None)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.unit
def test_progress_shows_an_eta_on_a_terminal_and_nothing_elsewhere_or_when_verbose_is_0():
    tty = _Terminal()
    bar = Progress("epoch", 4, stream=tty)
    bar.started -= 10  # 10 s in
    bar.update(1, "loss 0.5")
    bar.update(4)
    bar.close()
    text = tty.getvalue()
    assert text.startswith("\repoch 1/4 [#####") and "ETA 30 s" in text and "loss 0.5" in text
    assert "epoch 4/4" in text and text.endswith("\n") and "ETA" not in text.split("epoch 4/4")[1]
    for quiet in (Progress("epoch", 4, stream=io.StringIO()), Progress("epoch", 4, enabled=False, stream=_Terminal())):
        quiet.update(1)
        quiet.close()
        assert quiet.stream.getvalue() == ""
    assert progress_line("sweep", 2, 8, 61.0, "jobs done") == \
        "sweep 2/8 [#####---------------] 1 min 01 s, ETA 3 min 03 s  jobs done"


@pytest.mark.unit
def test_the_report_plots_every_step_of_a_multi_step_forecast_or_a_chosen_set():
    assert shown_steps(1) == [1] and shown_steps(3) == [1, 2, 3] and shown_steps(6) == [1, 2, 3, 4, 5, 6]
    assert shown_steps(24) == [1, 6, 12, 18, 24]
    t = np.datetime64("2024-01-01T00") + np.arange(40).astype("timedelta64[h]")
    times = t[np.arange(30)[:, None] + np.arange(3)]
    pngs = report.plots(t, np.ones(40), np.ones(40), np.array([0, 20, 30, 40]), {"loss": [1.0]}, times,
                        np.ones((30, 3)), np.ones((30, 3)), "y")
    one = report.plots(t, np.ones(40), np.ones(40), np.array([0, 20, 30, 40]), {"loss": [1.0]}, t[:30],
                       np.ones(30), np.ones(30), "y")
    assert pngs["forecast.png"].startswith(b"\x89PNG") and one["forecast.png"].startswith(b"\x89PNG")
    assert len(pngs["forecast.png"]) > len(one["forecast.png"])  # three panels, not one


# --- the README's smoke summary, as a real smoke run prints it ---------------------------------

SUMMARY_KEYS = ["== summary", "run_id", "metrics", "skill", "gate", "artifacts", "report", "log"]


def _shapes(lines: list) -> list:
    """The summary's lines with what changes from run to run taken out: times, the run_id,
    paths, numbers and the skill verdict."""
    run_id = lines[1].split()[-1]
    return [_shape(ln.replace(run_id, "RUN")) for ln in lines]


def _shape(text: str) -> str:
    text = re.sub(r"^\[\d\d:\d\d:\d\d\]", "[T]", text)
    text = re.sub(r"(?<=\s)\S*/(?=\S)", "DIR/", text)  # a path's folders, whatever the outputs dir
    text = re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "N", text)
    return re.sub(r"\b(?:UN)?SKILLED\b", "VERDICT", text)


def _summary_block(lines: list) -> list:
    start = next(i for i, ln in enumerate(lines) if ln.endswith("][INFO] == summary"))
    return lines[start:start + len(SUMMARY_KEYS)]


def _readme_summary() -> list:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("A successful smoke run ends with a summary like:", 1)[1].split("```")[1]
    return _summary_block(block.strip("\n").splitlines())


@pytest.mark.unit
def test_the_readme_smoke_summary_has_the_summarys_lines_in_order():
    lines = _readme_summary()
    assert [re.sub(r"^\[\d\d:\d\d:\d\d\]\[INFO\] ", "", ln).split("  ")[0].strip() for ln in lines] == SUMMARY_KEYS
    assert all(re.match(r"^\[\d\d:\d\d:\d\d\]\[INFO\] ", ln) for ln in lines)
    assert "gate       PASS in " in lines[4] and "(baselines: ets " in lines[2]


def test_the_readme_smoke_summary_is_what_a_smoke_run_prints(smoke_run: Run):
    """The session's smoke run (the smoke preset, fewer epochs and points): same lines, same
    order, same words; only times, ids, paths and numbers differ."""
    printed = _summary_block(smoke_run.stdout.splitlines())
    assert _shapes(printed) == _shapes(_readme_summary()), printed
