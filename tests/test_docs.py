"""The documentation stays true: a short README, links that resolve, CLI help blocks that
match the code, the project's own specification cited instead of an outside document, and a
docs site that builds in strict mode."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CLI_DOC = REPO / "docs" / "cli.md"
COLUMNS = "100"  # argparse wraps at $COLUMNS; scripts/cli_reference.py uses the same
REGENERATE = "run: python scripts/cli_reference.py"

HELP_HEADING = re.compile(r"^### python -m spline_lstm(?P<args>(?: [^\s`]+)*) --help$", re.M)
HELP_BLOCK = re.compile(r"^### python -m spline_lstm[^\n]*--help\n\n```text\n.*?^```$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
SKIP_DIRS = {".git", ".venv", "venv", "site", "outputs", "node_modules", "__pycache__", ".pytest_cache"}


def _markdown_files() -> list:
    return [README, REPO / "runbook" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines (at most 300): move the detail into a docs/ page"


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path):
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor on the same page
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links to missing files: {broken}"


def _help_sections() -> list:
    doc = CLI_DOC.read_text(encoding="utf-8")
    sections = []
    for m in HELP_HEADING.finditer(doc):
        after = doc[m.end():]
        block = re.match(r"\n\n```text\n(.*?)^```$", after, re.M | re.S)
        sections.append((m.group("args").split(), block.group(1) if block else None))
    return sections


def test_cli_doc_lists_every_command():
    commands = [" ".join(args) for args, _ in _help_sections()]
    assert commands == ["", "predict", "health", "runs", "runs list", "runs quarantine"], \
        f"docs/cli.md help headings: {commands}"


@pytest.mark.parametrize("args,block", _help_sections(),
                         ids=[" ".join(args) or "top" for args, _ in _help_sections()])
def test_cli_help_blocks_match_the_code(args, block):
    shown = " ".join(["python -m spline_lstm", *args, "--help"])
    assert block is not None, f"docs/cli.md: no ```text block right after '### {shown}'; {REGENERATE}"
    env = {**os.environ, "COLUMNS": COLUMNS}
    real = subprocess.run([sys.executable, "-m", "spline_lstm", *args, "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert real.returncode == 0, real.stderr
    assert _normalise(block) == _normalise(real.stdout), \
        f"docs/cli.md: the block under '### {shown}' differs from the command's output; {REGENERATE}"


def test_no_file_cites_the_outside_contract():
    """The project holds its own specification (docs/concepts.md, docs/exit-codes.md); no
    file cites the old outside document. The help blocks of docs/cli.md are generated from
    the code (checked above), so they are left out here: the code itself is scanned."""
    word = "CONTRACT"
    citing = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if (set(rel.parts) & SKIP_DIRS or not path.is_file() or path == Path(__file__).resolve()
                or path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml"}):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path == CLI_DOC:
            text = HELP_BLOCK.sub("", text)
        lines = [i for i, line in enumerate(text.splitlines(), 1) if word in line]
        if lines:
            citing.append(f"{rel.as_posix()}:{','.join(map(str, lines))}")
    assert not citing, ("these files cite the outside contract; cite docs/concepts.md "
                        "(run_id, Canonical artifacts, Completion record, Health gate) or "
                        f"docs/exit-codes.md instead: {citing}")


def test_docs_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip(f"mkdocs is not installed beside {sys.executable} (it is pinned in requirements.lock)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{out.stdout}\n{out.stderr}"
