"""The first hour in a real browser: ``mlflow ui`` on a store holding one small sweep,
opened headless with Playwright driving the system Chromium (Debian package ``chromium``;
Playwright's own browser downloads are not used).

What a new user must see: the runs table first (the experiment is tagged as model
training, and the documented link opens the Model training view), a child run with its
run_id, its metrics (the model's own before the baselines) and its linked model, and the
registered version linking back to that run and model. Screenshots land in ``docs/img/``
(shown in docs/tracking.md)."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, SWEEP_MODEL
from tests.helpers.postgres import stop_group

pytestmark = pytest.mark.slow

IMG = REPO / "docs" / "img"
WAIT_MS = 90_000  # the UI's first load on a busy 2-core machine takes tens of seconds


def _chromium() -> str:
    path = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if path is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -r requirements.lock)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(request):
    """``mlflow ui`` on the sweep's store (127.0.0.1, a free port); stopped by its pid.
    Skipped before the sweep runs when there is no browser to drive."""
    chromium = _chromium()
    small_sweep = request.getfixturevalue("small_sweep")
    outputs = small_sweep.outputs
    assert small_sweep.returncode == 0, small_sweep.stdout[-2000:] + small_sweep.stderr[-2000:]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                             f"sqlite:///{outputs}/mlflow.db", "--default-artifact-root", str(outputs / "mlartifacts"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "mlflow ui did not start"
                time.sleep(0.5)
        yield base, outputs, chromium
    finally:
        stop_group(proc, signal.SIGTERM, 20)  # the UI's process group: its workers too


def test_a_new_user_finds_the_runs_their_metrics_and_the_linked_model(ui):
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    base, outputs, chromium = ui
    client = MlflowClient(tracking_uri=f"sqlite:///{outputs}/mlflow.db")
    exp = client.get_experiment_by_name("spline-lstm")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    version = client.get_model_version_by_alias(SWEEP_MODEL, "candidate")
    (child,) = [r for r in runs if r.info.run_id == version.run_id]
    run_id = child.data.tags["run_id"]
    model_id = version.tags["model_id"]
    IMG.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.set_default_timeout(WAIT_MS)

            # 1. the experiment, as docs/tracking.md links it: the runs table, the sweep's parent first
            page.goto(f"{base}/#/experiments/{exp.experiment_id}?workflowType=machine_learning")
            page.get_by_text(parent.info.run_name, exact=True).first.wait_for()
            assert "/runs" in page.url and "matching runs" in page.inner_text("body")
            # its jobs are nested under it: expand it (the row's + button) and both show
            page.get_by_role("row").filter(has_text=parent.info.run_name).locator("button").first.click()
            for job in runs:
                if job is not parent:
                    page.get_by_text(job.data.tags["run_id"], exact=True).first.wait_for()
            page.screenshot(path=str(IMG / "first-hour-runs.png"))

            # 2. a child run: its run_id (name and tag), MLflow id, metrics in order, its model registered
            page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{child.info.run_id}")
            page.get_by_text("Logged models").first.wait_for()
            page.locator(f'a[href*="/models/{SWEEP_MODEL}/versions/{version.version}"]').first.wait_for()
            body = page.inner_text("body")
            assert run_id in body and child.info.run_id in body
            assert "test/rmse" in body and "test_baseline/naive_last/rmse" in body and "loss/val" in body
            assert body.index("test/rmse") < body.index("test_baseline/")
            page.screenshot(path=str(IMG / "first-hour-run.png"), full_page=True)

            # 3. the registered version links back to its run and its logged model
            page.goto(f"{base}/#/models/{SWEEP_MODEL}/versions/{version.version}")
            page.locator(f'a[href*="{child.info.run_id}"]').first.wait_for()
            page.locator(f'a[href*="{model_id}"]').first.wait_for()
            assert "Source Model" in page.inner_text("body")
            page.screenshot(path=str(IMG / "first-hour-version.png"))

            # 4. and the logged model's page lists the version (not "Not registered")
            page.goto(f"{base}/#/experiments/{exp.experiment_id}/models/{model_id}")
            page.locator(f'a[href*="/models/{SWEEP_MODEL}/versions/{version.version}"]').first.wait_for()
        finally:
            browser.close()
