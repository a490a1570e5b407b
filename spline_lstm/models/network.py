"""The Keras recurrent forecaster: stacked LSTM (or GRU) cells and a Dense head
of ``horizon`` outputs. Dropout sits between layers, never inside the cell, so
the fused cuDNN kernel stays eligible on a GPU.

Options that make a weak network degrade to a baseline instead of far below it
(``ModelConfig``; all off gives today's plain ``Sequential`` model):

- ``head_init=zeros``: the output layer starts at 0, so an untrained network
  predicts 0 in the modelled space (with differencing: the (seasonal-)naive
  forecast plus the scaler's mean difference, i.e. with drift);
- ``revin=last|mean``: reversible instance normalisation inside the graph: each
  window is shifted by its last value (or its mean) and divided by its own
  standard deviation before the cells, and the output is scaled and shifted
  back. With ``last`` and a zero head the untrained network is naive-last in the
  modelled space. ``auto`` (``resolve_revin``) is ``last`` unless the forecast
  integrates its own predicted differences (horizon > difference > 0): there
  repeating the last difference compounds into a trend (ETTh1, first
  differences, 24 steps: rmse 2.06 against naive 1.70), and ``none`` with a zero
  head starts from naive plus the training drift instead;
- ``future_head=per_step``: future-known inputs (calendar, future covariates) reach
  the forecast through one Dense shared by every step, whose output is added to
  that step's forecast (known + 1 weights), instead of ``flat``: all steps'
  inputs flattened beside the state before the head (horizon x horizon x known
  weights). Calendar features at the forecast steps follow from the origin's, so
  ``flat`` hands the head many redundant inputs to overfit (docs/covariates.md);
- ``ensemble=N`` (``TrainingConfig``): N independent members (their own weights,
  drawn from the run's seeded stream) whose forecasts a layer named
  ``ensemble`` averages; ``train.fit`` trains them side by side on one loss per
  member, so they do not co-adapt.

The result is always one Keras archive. The custom layers are registered with
Keras' serialisation (package ``spline_lstm``) by ``custom_layers``, which
``build_model`` and ``load_model_safely`` call, so safe mode loads them without
any Lambda; importing this module imports no TensorFlow.
"""
from __future__ import annotations

import functools
from dataclasses import replace

from spline_lstm.core.config import Cell, FutureHead, HeadInit, ModelConfig, Revin

EPS = 1e-5  # added to a window's standard deviation: a flat window must not divide by 0


@functools.lru_cache(maxsize=None)
def custom_layers() -> dict:
    """Define and register the RevIN layers once per process; returns them by name."""
    import keras
    from keras import ops

    def stats(x, mode: str):
        if x.shape[-1] > 1:  # with covariates: the target channel's statistics only
            x = x[:, :, :1]
        loc = x[:, -1:, :] if mode == "last" else ops.mean(x, axis=1, keepdims=True)
        scale = ops.std(x, axis=1, keepdims=True) + EPS
        return loc, scale

    @keras.saving.register_keras_serializable(package="spline_lstm")
    class InstanceNorm(keras.layers.Layer):
        """(window - its last value or mean) / its standard deviation; with covariates
        only the target channel (the first) is normalised, the others pass as they are."""

        def __init__(self, mode: str = "last", **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, x):
            loc, scale = stats(x, self.mode)
            if x.shape[-1] > 1:
                return ops.concatenate([(x[:, :, :1] - loc) / scale, x[:, :, 1:]], axis=-1)
            return (x - loc) / scale

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    @keras.saving.register_keras_serializable(package="spline_lstm")
    class InstanceDenorm(keras.layers.Layer):
        """A forecast [batch, horizon] back to the window's level: y * std + loc,
        the statistics recomputed from the raw window (the second input)."""

        def __init__(self, mode: str = "last", **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, inputs):
            y, x = inputs
            loc, scale = stats(x, self.mode)
            return y * scale[:, :, 0] + loc[:, :, 0]

        def compute_output_shape(self, input_shape):
            return input_shape[0]

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return {"InstanceNorm": InstanceNorm, "InstanceDenorm": InstanceDenorm}


def resolve_revin(revin: Revin, difference: int, horizon: int) -> Revin:
    """``auto`` -> ``last`` on levels (the start is naive-last) and on seasonal
    differences within one season (seasonal naive plus the last seasonal change);
    ``none`` on first differences (``last`` would repeat the last step's change:
    momentum, which lost to naive-last on noisy series, bench/quality.py) and when a
    forecast step adds its delta to an earlier forecast step (horizon > difference > 0).
    Other values as they are."""
    if Revin(revin) != Revin.auto:
        return Revin(revin)
    return Revin.none if difference == 1 or 0 < difference < horizon else Revin.last


def is_plain(cfg: ModelConfig, ensemble: int = 1) -> bool:
    return HeadInit(cfg.head_init) == HeadInit.default and Revin(cfg.revin) == Revin.none and ensemble == 1


def build_model(cfg: ModelConfig, lookback: int, horizon: int, learning_rate: float, ensemble: int = 1,
                difference: int = 0, channels: int = 1, known: int = 0):
    """The forecaster, compiled (Adam, MSE). ``ensemble`` > 1: the averaged model;
    ``train.fit`` trains its members through ``members_view``. ``difference``: the
    lag the series is modelled at, for ``revin=auto``. Covariates
    (spline_lstm.preprocessing.covariates): ``channels`` > 1 widens the encoder's input ``window``
    [lookback, channels] (the target first); ``known`` > 0 adds the input ``future``
    [horizon, known], flattened beside the encoder's state before the head."""
    import keras

    cfg = replace(cfg, revin=resolve_revin(cfg.revin, difference, horizon))

    cell_name = Cell(cfg.cell).value
    if is_plain(cfg, ensemble) and channels == 1 and not known:
        cell = keras.layers.LSTM if Cell(cfg.cell) == Cell.lstm else keras.layers.GRU
        layers = [keras.Input(shape=(lookback, 1), name="window")]
        for i in range(cfg.layers):
            layers.append(cell(cfg.units, return_sequences=i < cfg.layers - 1, name=f"{cell_name}_{i}"))
            if cfg.dropout > 0:
                layers.append(keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}"))
        layers.append(keras.layers.Dense(horizon, name="forecast"))
        model = keras.Sequential(layers, name=f"spline_{cell_name}")
    else:
        window = keras.Input(shape=(lookback, channels), name="window")
        future = keras.Input(shape=(horizon, known), name="future") if known else None
        outputs = [_member(window, future, cfg, horizon, f"m{k}_" if ensemble > 1 else "") for k in range(ensemble)]
        out = keras.layers.Average(name="ensemble")(outputs) if ensemble > 1 else outputs[0]
        inputs = window if future is None else {"window": window, "future": future}
        model = keras.Model(inputs, out, name=f"spline_{cell_name}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


def _member(window, future, cfg: ModelConfig, horizon: int, prefix: str):
    """One network on the window: optional RevIN, the cells, the future-known inputs
    beside the last state, the head."""
    import keras

    cell = keras.layers.LSTM if Cell(cfg.cell) == Cell.lstm else keras.layers.GRU
    cell_name = Cell(cfg.cell).value
    revin = Revin(cfg.revin).value
    x = window
    if revin != "none":
        x = custom_layers()["InstanceNorm"](revin, name=f"{prefix}revin_norm")(x)
    for i in range(cfg.layers):
        x = cell(cfg.units, return_sequences=i < cfg.layers - 1, name=f"{prefix}{cell_name}_{i}")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"{prefix}dropout_{i}")(x)
    per_step = future is not None and FutureHead(cfg.future_head) == FutureHead.per_step
    if future is not None and not per_step:
        flat = keras.layers.Flatten(name=f"{prefix}future_flat")(future)
        x = keras.layers.Concatenate(name=f"{prefix}with_future")([x, flat])
    init = "zeros" if HeadInit(cfg.head_init) == HeadInit.zeros else "glorot_uniform"
    y = keras.layers.Dense(horizon, kernel_initializer=init, name=f"{prefix}forecast")(x)
    if per_step:  # step h's known inputs -> one shared Dense -> added to step h's forecast
        effect = keras.layers.Dense(1, kernel_initializer=init, name=f"{prefix}future_effect")(future)
        effect = keras.layers.Reshape((horizon,), name=f"{prefix}future_steps")(effect)
        y = keras.layers.Add(name=f"{prefix}with_future")([y, effect])
    if revin != "none":
        y = custom_layers()["InstanceDenorm"](revin, name=f"{prefix}revin_denorm")([y, window])
    return y


def members_view(model):
    """For an ensemble, a model over the same layers whose output is every member's
    forecast side by side [batch, members * horizon] (trained against the target
    repeated per member: one independent loss each); None for a single network."""
    import keras

    try:
        layer = model.get_layer("ensemble")
    except ValueError:
        return None
    members = layer.input
    return keras.Model(model.input, keras.layers.Concatenate(name="members")(list(members)),
                       name=f"{model.name}_members")


def load_model_safely(path):
    """Load a .keras archive in safe mode: no arbitrary code (lambdas) is deserialised;
    the project's own layers are registered first."""
    import keras

    custom_layers()
    return keras.models.load_model(path, safe_mode=True, compile=False)
