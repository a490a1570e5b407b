"""Metrics, naive and classical yardsticks, the report."""
