"""Test-only helpers (Hydra callbacks used by the end-to-end tests)."""
