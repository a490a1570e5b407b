"""spline-lstm: Hydra-configured experiment framework for univariate forecasting
(spline gap-filling -> LSTM), with run_id-scoped artifacts, MLflow tracking and a
health gate."""

__version__ = "0.1.0"
