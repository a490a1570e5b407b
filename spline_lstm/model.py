"""The Keras recurrent forecaster: stacked LSTM (or GRU) cells and a Dense head
of ``horizon`` outputs. Dropout sits between layers, never inside the cell, so
the fused cuDNN kernel stays eligible on a GPU."""
from __future__ import annotations

from spline_lstm.config import Cell, ModelConfig


def build_model(cfg: ModelConfig, lookback: int, horizon: int, learning_rate: float):
    import keras

    cell = keras.layers.LSTM if Cell(cfg.cell) == Cell.lstm else keras.layers.GRU
    layers = [keras.Input(shape=(lookback, 1), name="window")]
    for i in range(cfg.layers):
        layers.append(cell(cfg.units, return_sequences=i < cfg.layers - 1, name=f"{Cell(cfg.cell).value}_{i}"))
        if cfg.dropout > 0:
            layers.append(keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(horizon, name="forecast"))
    model = keras.Sequential(layers, name=f"spline_{Cell(cfg.cell).value}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


def load_model_safely(path):
    """Load a .keras archive in safe mode: no arbitrary code (lambdas) is deserialised."""
    import keras

    return keras.models.load_model(path, safe_mode=True, compile=False)
