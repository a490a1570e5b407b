"""Regenerate the --help blocks of docs/cli.md in place.

Each heading ``### python -m spline_lstm ... --help`` in docs/cli.md is followed by a
fenced ``text`` block. This script runs that command and writes its output into the block,
so the page stays in step with the parser in the code:

    python scripts/cli_reference.py            # rewrite docs/cli.md
    python scripts/cli_reference.py --check    # exit 1 if a block is stale

COLUMNS is fixed to 100 so that argparse wraps the same way everywhere
(tests/test_docs.py runs the commands the same way).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI_DOC = REPO / "docs" / "cli.md"
COLUMNS = "100"
HEADING = re.compile(r"^### python -m spline_lstm(?P<args>(?: [^\s`]+)*) --help$")
BLOCK = re.compile(r"(^### python -m spline_lstm[^\n]*--help\n\n```text\n)(.*?)(^```$)", re.M | re.S)


def normalise(text: str) -> str:
    """Trailing whitespace off every line, no blank lines at the end."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def help_text(args: list) -> str:
    """The real ``--help`` output of ``python -m spline_lstm ARGS --help``."""
    env = {**os.environ, "COLUMNS": COLUMNS}
    out = subprocess.run([sys.executable, "-m", "spline_lstm", *args, "--help"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return normalise(out.stdout)


def commands(doc: str) -> list:
    """The argument lists of every help heading in the page, in order."""
    return [m.group("args").split() for line in doc.splitlines() if (m := HEADING.match(line))]


def render(doc: str) -> str:
    def block(m: re.Match) -> str:
        heading = m.group(1).splitlines()[0]
        args = HEADING.match(heading).group("args").split()
        return m.group(1) + help_text(args) + "\n" + m.group(3)
    return BLOCK.sub(block, doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is stale; write nothing")
    opts = ap.parse_args()
    doc = CLI_DOC.read_text(encoding="utf-8")
    new = render(doc)
    if opts.check:
        if new != doc:
            print("docs/cli.md is stale: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    if new != doc:
        CLI_DOC.write_text(new, encoding="utf-8")
        print(f"rewrote {CLI_DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
