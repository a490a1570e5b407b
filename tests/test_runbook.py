"""runbook/README.md is the operator's only reference: its failure table covers every exit
code, its commands parse, and the Recovery section's commands, run exactly as written with
bash on a copy of a deliberately broken run, end with the gate passing."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from spline_lstm.cli.main import build_parser
from spline_lstm.core.config import validate
from spline_lstm.core.errors import EXIT_CODES
from tests.conftest import REPO, Run, cli
from tests.helpers.tamper import files_under, flip_byte, mlflow_runs

RUNBOOK = REPO / "runbook" / "README.md"
EXAMPLE_ID = "phase4-smoke-20260101-120000-ab12"


def text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def section(title_regex: str) -> str:
    """From a '## ' heading matching title_regex to the next '## ' heading."""
    match = re.search(rf"^## {title_regex}.*?$(.*?)(?=^## |\Z)", text(), re.M | re.S)
    assert match, f"runbook has no section '## {title_regex}'"
    return match.group(1)


def bash_blocks(markdown: str) -> List[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, re.M | re.S)


def commands(markdown: str, prefix: str) -> List[List[str]]:
    """Every command line starting with prefix in the bash blocks, as argv without
    comments, redirections and pipes; $RUN_ID replaced by an example run_id."""
    out = []
    for block in bash_blocks(markdown):
        for line in block.splitlines():
            if not line.startswith(prefix):
                continue
            argv = []
            for token in shlex.split(line.replace("$RUN_ID", EXAMPLE_ID), comments=True):
                if token in ("|", "||", "&&", ";", ">", ">>", "2>") or token.startswith((">", "2>")):
                    break
                argv.append(token)
            out.append(argv)
    return out


# --- content ---------------------------------------------------------------------------------

@pytest.mark.unit
def test_failure_table_covers_every_exit_code():
    rows = {}
    for line in section(r"5\. ").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows[int(cells[0])] = cells
    assert sorted(rows) == sorted(EXIT_CODES.values())
    for name, code in EXIT_CODES.items():
        cells = rows[code]
        assert cells[1] == name, cells
        assert len(cells) == 7 and all(cells), cells  # name, message, cause, action, rerun, verify
        if code:
            assert f"[{name}]" in cells[2], cells  # the typical message is the real error line
            assert "python" in cells[5], cells  # a rerun command
            assert "python" in cells[6] or "exits 0" in cells[6], cells  # a way to verify


@pytest.mark.unit
def test_runbook_names_the_essentials():
    doc = text()
    assert ("mlflow ui --backend-store-uri sqlite:///$PWD/outputs/mlflow.db "
            "--default-artifact-root $PWD/outputs/mlartifacts") in doc
    for needle in ("outputs/runs/RUN_ID/run.log", "health/RUN_ID.json", "python launch.py +preset=smoke",
                   "python -m spline_lstm runs quarantine", "python -m spline_lstm health", "tags.run_id",
                   "Prerequisites", "Evidence to keep", "What success looks like"):
        assert needle in doc, needle
    recovery = section("Recovery")
    assert bash_blocks(recovery), "the Recovery section needs ```bash blocks"
    steps = " ".join(bash_blocks(recovery))
    order = [steps.index("spline_lstm health"), steps.index("runs quarantine"), steps.index("launch.py"),
             steps.rindex("spline_lstm health")]
    assert order == sorted(order), "recovery must be: health -> quarantine -> rerun -> health"
    assert "$RUN_ID" in steps and "RUN_ID=" not in steps.replace("e.g. RUN_ID=", "")  # set by the operator


@pytest.mark.unit
def test_every_operator_command_in_the_runbook_parses():
    argvs = [a for a in commands(text(), "python -m spline_lstm") if a[2] == "spline_lstm"]  # not .tracking_server
    assert len(argvs) >= 10
    parser = build_parser()
    for argv in argvs:
        args = argv[3:]
        if "--help" in args:
            with pytest.raises(SystemExit) as exc:
                parser.parse_args(args)
            assert exc.value.code == 0, argv
        else:
            parser.parse_args(args)  # SystemExit(2) on an unknown flag or a missing argument


@pytest.mark.unit
def test_every_launch_command_in_the_runbook_composes():
    from hydra import compose, initialize_config_dir

    from spline_lstm.core.config import register_configs

    argvs = commands(text(), "python launch.py")
    assert len(argvs) >= 5
    register_configs()
    for argv in argvs:
        overrides = [a for a in argv[2:] if a not in ("-m", "--multirun", "--cfg", "job", "--help")
                     and not a.startswith("hydra/")]
        overrides = [a.split(",")[0] for a in overrides]  # first value of a sweep
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            validate(compose(config_name="config", overrides=overrides))


# --- the recovery procedure, exactly as written ----------------------------------------------------

@pytest.mark.slow
def test_recovery_commands_work_as_written(fresh_run: Run, smoke_run: Run):
    work, rid = fresh_run.outputs.parent, fresh_run.run_id
    (work / "launch.py").symlink_to(REPO / "launch.py")  # the operator stands in the repository root
    (work / "conf").symlink_to(REPO / "conf")

    # the incident: a file of a finished run is modified; the gate catches it
    flip_byte(fresh_run.path("processed"))
    broken = fresh_run.path("processed").read_bytes()
    assert cli("health", rid, "--outputs-dir", str(fresh_run.outputs)).returncode == 9

    script = "set -euo pipefail\n" + "\n".join(bash_blocks(section("Recovery")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPLINE_LSTM_", "HYDRA_"))}
    env.update(RUN_ID=rid, MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    proc = subprocess.run(["bash", "-c", script], cwd=str(work), env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    # step 1: the failure and its evidence
    assert "gate exit code: 9" in proc.stdout
    before = json.loads((work / "evidence" / rid / "health-before.json").read_text())
    assert (before["verdict"], before["code"]) == ("FAIL", 9)
    # step 2: the broken files are kept, aside
    (target,) = (fresh_run.artifacts / "quarantine").iterdir()
    assert (target / "processed" / rid / "processed.npz").read_bytes() == broken
    assert (target / "hydra" / rid / "run.log").is_file() and len(files_under(target)) >= 12
    # step 3 + 4: a new healthy run under the same run_id
    assert "verdict: PASS" in proc.stdout
    record = json.loads((fresh_run.artifacts / "health" / f"{rid}.json").read_text())
    assert (record["verdict"], record["code"]) == ("PASS", 0)
    assert fresh_run.path("processed").read_bytes() != broken
    assert fresh_run.json("metadata")["run_id"] == rid
    assert (fresh_run.outputs / "runs" / rid / "run.log").is_file()
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(rid + " ")]
    assert [r[2:4] for r in rows] == [["FAIL", "8/8"], ["PASS", "8/8"]]  # runs list: before, after
    # MLflow: the old run is marked quarantined, the new one passed
    runs = {r.data.tags.get("quarantined", "false"): r for r in mlflow_runs(fresh_run.outputs, rid)}
    assert sorted(runs) == ["false", "true"]
    assert runs["false"].data.tags["health"] == "PASS" and runs["false"].info.status == "FINISHED"
    # and the shared session run was not touched through the copy
    (shared,) = mlflow_runs(smoke_run.outputs, smoke_run.run_id)
    assert "quarantined" not in shared.data.tags
