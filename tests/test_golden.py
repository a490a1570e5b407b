"""The forecasts, metrics and artifact structure of three runs must stay exactly as recorded
in tests/golden/ (by tests/golden/record.py) while the code underneath is refactored.

Exact equality (after rounding to 12 significant digits): the runs are deterministic on one
machine; two consecutive recordings of all three compared identical, training history included.
"""
from __future__ import annotations

import pytest

from tests.golden.record import CONFIGS, compare


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_golden(name):
    diffs, _ = compare(name)
    assert not diffs, f"{name}: {len(diffs)} differences from tests/golden/{name}.json:\n" + "\n".join(diffs[:40])
