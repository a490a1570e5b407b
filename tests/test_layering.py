"""The layering rule of docs/architecture.md: folders by concern, every import pointing down,
no import cycle among the package's modules (function-local imports counted)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]


def _cycles(graph) -> list:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if not w.startswith("spline_lstm"):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for module in sorted(graph.modules):
        if module.startswith("spline_lstm") and module not in index:
            visit(module)
    return out


def test_no_import_cycle_among_the_package_s_modules():
    graph = grimp.build_graph("spline_lstm", include_external_packages=False)
    assert _cycles(graph) == []


def test_cycle_finder_sees_a_cycle(tmp_path, monkeypatch):
    """The check can fail: two modules importing each other (one inside a function) are a cycle."""
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclic_pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyclic_pkg import a\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic_pkg", include_external_packages=False)
    renamed = type("G", (), {"modules": {m.replace("cyclic_pkg", "spline_lstm") for m in graph.modules},
                             "find_modules_directly_imported_by": lambda self, m: {
                                 x.replace("cyclic_pkg", "spline_lstm")
                                 for x in graph.find_modules_directly_imported_by(m.replace("spline_lstm", "cyclic_pkg"))}})()
    assert _cycles(renamed) == [["spline_lstm.a", "spline_lstm.b"]]


def test_every_import_points_down_the_layers():
    """import-linter's layers contract (pyproject.toml [tool.importlinter])."""
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_every_package_folder_is_a_layer():
    """A new folder must take its place in the layers (pyproject.toml), or nothing checks its arrows."""
    import tomllib

    layers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    folders = {f"spline_lstm.{p.name}" for p in (REPO / "spline_lstm").iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(layers)
