"""The operator CLI's arguments (spline_lstm.cli.main): parsing, help text, usage errors
and the one ERROR line of a refused argument. Nothing here trains or loads a model."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spline_lstm.cli.main import build_parser, main
from spline_lstm.core.errors import EXIT_CODES
from tests.conftest import REPO

pytestmark = pytest.mark.unit

HEAVY = ("tensorflow", "keras", "mlflow", "statsmodels")


def run_cli(*argv: str, timeout: int = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "spline_lstm", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), env=env)


def error_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("ERROR [")]


@pytest.mark.parametrize("argv,expected", [
    (["health", "r1"], {"command": "health", "run_id": "r1", "json": False, "no_tracking": False,
                        "tracking_uri": None, "artifacts_dir": None}),
    (["health", "r1", "--json", "--no-tracking", "--outputs-dir", "o"], {"json": True, "no_tracking": True,
                                                                         "outputs_dir": "o"}),
    (["predict", "r1", "--input", "a.csv"], {"input": ["a.csv"], "horizon": None, "level": [], "format": "csv",
                                             "output": None, "overwrite": False, "series": None}),
    (["predict", "r1", "--input", "a.csv", "--input", "b.csv"], {"input": ["a.csv", "b.csv"]}),
    (["predict", "models:/m@candidate", "--input", "a.csv", "--horizon", "48", "--level", "80", "95",
      "--format", "json"], {"run_id": "models:/m@candidate", "horizon": 48, "level": [80, 95], "format": "json"}),
    (["predict", "r1", "--input", "a.csv", "--series", "north", "south"], {"series": ["north", "south"]}),
    (["runs", "list"], {"command": "runs", "runs_command": "list", "json": False}),
    (["runs", "list", "--json", "--artifacts-dir", "a"], {"json": True, "artifacts_dir": "a"}),
    (["runs", "quarantine", "r1", "--tracking-uri", "sqlite:///x.db"], {"runs_command": "quarantine",
                                                                        "run_id": "r1",
                                                                        "tracking_uri": "sqlite:///x.db"}),
])
def test_arguments_parse_to_their_values(argv, expected):
    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected
    assert callable(args["fn"])


@pytest.mark.parametrize("argv,fragment", [
    ([], "the following arguments are required"),
    (["bogus"], "invalid choice"),
    (["health"], "run_id"),
    (["health", "r1", "--unknown"], "unrecognized arguments"),
    (["predict", "r1"], "--input"),
    (["predict", "r1", "--input", "a.csv", "--horizon", "soon"], "invalid int value"),
    (["predict", "r1", "--input", "a.csv", "--level", "high"], "invalid int value"),
    (["predict", "r1", "--input", "a.csv", "--format", "xml"], "invalid choice"),
    (["runs"], "the following arguments are required"),
    (["runs", "delete"], "invalid choice"),
    (["runs", "quarantine"], "run_id"),
    (["runs", "quarantine", "a", "b"], "unrecognized arguments"),
])
def test_usage_errors_exit_2_naming_the_problem(argv, fragment, capsys):
    """One ``ERROR [CONFIG_INVALID]`` line, argparse's reason in it, no usage text (docs/exit-codes.md)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and "usage:" not in err
    assert err.startswith("ERROR [CONFIG_INVALID] spline-lstm") and fragment in err


@pytest.mark.parametrize("argv", [[], ["health"], ["predict"], ["runs"], ["runs", "list"], ["runs", "quarantine"]])
def test_help_exits_0_with_an_example(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spline-lstm") and "python -m spline_lstm " + " ".join(argv) in out


@pytest.mark.parametrize("argv", [
    ["health", "../escape"], ["health", ".hidden"], ["health", "a/b"],
    ["runs", "quarantine", "../x"], ["runs", "quarantine", "x" * 129],
    ["predict", "a..b", "--input", "in.csv"],
])
def test_an_invalid_run_id_is_exit_3_with_one_error_line(argv, tmp_path, capsys):
    code = main([*argv, "--outputs-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == EXIT_CODES["RUN_ID_INVALID"]
    (line,) = error_lines(captured.err)
    assert line.startswith("ERROR [RUN_ID_INVALID]") and captured.err.strip() == line
    assert not (tmp_path / "out").exists()


def test_an_unknown_run_fails_the_gate_with_9_and_writes_nothing(tmp_path, capsys):
    code = main(["health", "never-ran", "--no-tracking", "--outputs-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == EXIT_CODES["HEALTH_FAILED"]
    (line,) = error_lines(captured.err)
    assert "never-ran" in line and "verdict: FAIL" in captured.out
    assert "no health record written" in captured.out
    assert not (tmp_path / "out" / "artifacts" / "health").exists()


def test_runs_list_on_nothing(tmp_path, capsys):
    assert main(["runs", "list", "--outputs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("no runs under")
    assert main(["runs", "list", "--json", "--outputs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_quarantine_of_an_unknown_run_moves_nothing(tmp_path, capsys):
    assert main(["runs", "quarantine", "ghost", "--no-tracking", "--outputs-dir", str(tmp_path)]) == 0
    assert "nothing to quarantine for run_id ghost" in capsys.readouterr().out
    assert not (tmp_path / "artifacts" / "quarantine").exists()


def test_parquet_on_stdout_is_input_invalid(tmp_path, capsys):
    code = main(["predict", "r1", "--input", str(tmp_path / "in.csv"), "--format", "parquet",
                 "--outputs-dir", str(tmp_path)])
    assert code == EXIT_CODES["INPUT_INVALID"]
    (line,) = error_lines(capsys.readouterr().err)
    assert "--format parquet needs --output" in line


def test_a_registered_model_without_a_store_is_input_invalid(tmp_path, capsys):
    code = main(["predict", "models:/m@candidate", "--input", "x.csv", "--outputs-dir", str(tmp_path)])
    assert code == EXIT_CODES["INPUT_INVALID"]
    (line,) = error_lines(capsys.readouterr().err)
    assert "no MLflow store" in line and "--tracking-uri" in line


# --- the real command, as an operator runs it (each well under a second) ----------------------

def test_the_module_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for command in ("health", "predict", "runs"):
        assert command in proc.stdout
    assert "Exit codes: see runbook/README.md" in proc.stdout


def test_a_bad_argument_is_exit_2_without_a_traceback():
    proc = run_cli("predict", "r1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and "required: " in proc.stderr


@pytest.mark.parametrize("argv,code,name", [(["health", "../x"], 3, "RUN_ID_INVALID"),
                                            (["runs", "quarantine", "a..b"], 3, "RUN_ID_INVALID")])
def test_a_refused_argument_is_one_error_line_on_stderr(argv, code, name, tmp_path):
    proc = run_cli(*argv, "--outputs-dir", str(tmp_path / "o"))
    assert proc.returncode == code
    assert proc.stderr.strip().splitlines() == error_lines(proc.stderr)
    assert error_lines(proc.stderr)[0].startswith(f"ERROR [{name}]")


def test_importing_the_cli_imports_no_heavy_package():
    code = ("import sys, spline_lstm.cli.main\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=str(REPO),
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
