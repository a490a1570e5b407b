"""One training run's stages, from data to sealed artifacts, and the backtest."""
