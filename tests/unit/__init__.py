"""The unit layer: in-process tests that train no model (pytest -m unit)."""
