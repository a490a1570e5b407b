"""Forecasting from a finished run: predict and the MLflow pyfunc model."""
