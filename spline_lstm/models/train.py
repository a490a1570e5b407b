"""Seeded, deterministic Keras training over streamed windows, with best/last
checkpoints written to a staging folder and moved into place only at the end.

Model selection (early stopping and the best checkpoint) watches the validation
loss over at least ``training.min_val_windows`` windows. A monthly series leaves
its validation split a couple of dozen windows, too few to tell one epoch from
the next, so when the split has fewer, the last training windows are held out
and join the selection set (``selection_split``): they are no longer trained on,
and the ``horizon - 1`` windows before them are dropped so that no training
target is also a selection target. Training keeps at least two thirds of its
windows; the test split is never touched. Calibration and the sweep's
validation metrics still use the validation split alone. The default is 0 (off):
on the shared monthly series the held-out windows cost 0.5-2% test rmse and did
not narrow the spread over seeds (docs/modelling.md "A model that starts from the
baseline"); the default model starts from the naive forecast, so an early pick
on few windows costs little.

The network as built, before any training step, is a selection candidate too
("epoch 0"): with the default zero head it forecasts the naive / seasonal-naive
baseline in the modelled space (spline_lstm.models.network), so a trained epoch is kept
only when it beats that baseline on the selection windows, and a network that
cannot learn the series degrades to the baseline rather than below it. Its
validation loss is returned as ``history["initial_val_loss"]``; a run that keeps
it reports ``best_epoch`` 0.

An ensemble (``training.ensemble`` > 1, ``model.members_view``) is trained as its
members side by side, one MSE per member against the same target; selection
watches the averaged forecast's loss, and ``loss`` / ``val_loss`` in the history
are the ensemble's (the members' mean loss is kept as ``member_loss``)."""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from spline_lstm.core import environment
from spline_lstm.core.config import Distribute, TrainingConfig
from spline_lstm.core.errors import ConfigInvalid, TrainingFailed, raise_if_signalled
from spline_lstm.models.network import members_view
from spline_lstm.preprocessing.transforms import WindowSource

log = logging.getLogger(__name__)


def import_tensorflow(verbose: bool = False):
    """Import TensorFlow; unless verbose, its C++ start-up chatter (written to fd 2
    before logging is configured) is discarded, and so are its Python INFO lines
    (MirroredStrategy logs every reduction)."""
    if not verbose:
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
    if verbose or "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    environment.write_defaults(environment.TENSORFLOW_DEFAULTS)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf


def seed_everything(seed: int, deterministic: bool) -> Dict[str, object]:
    """Fix Python, NumPy and TensorFlow seeds; turn on TF op determinism."""
    import keras
    import tensorflow as tf

    environment.write(environment.PYTHONHASHSEED, str(seed))
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return {"seed": seed, "op_determinism": bool(deterministic),
            "devices": [d.device_type for d in tf.config.list_logical_devices()]}


def split_cpu(n: int) -> None:
    """Split the CPU into ``n`` logical devices (``training.cpu_devices``), so that
    MirroredStrategy has replicas on a host without GPUs (tests, a laptop). Must run
    before TensorFlow initialises its devices, i.e. before any op of the process."""
    import tensorflow as tf

    if n <= 0:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:  # TensorFlow already initialised in this process
        raise ConfigInvalid(f"training.cpu_devices: cannot split the CPU into {n} devices once TensorFlow "
                            "has started in this process; run it in a process of its own") from exc


@functools.lru_cache(maxsize=None)
def distribution(distribute: str):
    """The run's ``tf.distribute`` strategy: None for ``none`` (TensorFlow's default,
    one device); ``mirrored``: MirroredStrategy over every GPU, or, without one, over
    every logical CPU device (see ``split_cpu``). One per process: Keras keeps the
    strategy a model was built under, and the backtest's refits reuse it."""
    import tensorflow as tf

    if Distribute(distribute) == Distribute.none:
        return None
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])


def distribution_scope(cfg: TrainingConfig):
    """Build, compile and fit inside this: the strategy's scope, or nothing."""
    strategy = distribution(Distribute(cfg.distribute).value)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def distribution_record(cfg: TrainingConfig) -> Dict[str, object]:
    """What the metadata records: strategy, replicas and their devices."""
    strategy = distribution(Distribute(cfg.distribute).value)
    if strategy is None:
        return {"distribute": "none", "replicas": 1}
    return {"distribute": Distribute(cfg.distribute).value, "strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync), "replica_devices": list(strategy.extended.worker_devices)}


# Windows up to which an epoch is shuffled by tf.data's shuffle buffer, as before (any
# run up to 2^20 training windows, i.e. every single series up to ~1.5 M points: the same
# order bit for bit). The buffer holds every start as a tensor of its own, about 200 bytes
# a window, and refills each epoch before the first step: 10^4 series x 1,000 points
# (6.8 * 10^6 windows) cost 1.3-1.5 GB and 12-42 s an epoch on 2 shared cores
# (docs/performance.md). Above, an epoch is a stateless permutation (``permuted_batches``).
SHUFFLE_BUFFER_MAX = 1 << 20


def permuted_batches(starts: np.ndarray, batch_size: int, seed: int):
    """Batches of ``starts`` in a fresh pseudorandom order every iteration (epoch), each
    start once an epoch: ``index_shuffle`` maps positions through a permutation keyed by
    (seed, a per-iteration draw), so nothing but the starts is held."""
    import tensorflow as tf

    n = len(starts)
    values = tf.constant(starts, dtype=tf.int64)

    def epoch(key):
        key = tf.stack([tf.constant(seed, tf.int64), key])
        return tf.data.Dataset.range(0, n, batch_size).map(lambda i: tf.gather(
            values, tf.random.experimental.index_shuffle(tf.range(i, tf.minimum(i + batch_size, n)), key, n - 1)))

    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(epoch)
    return ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))  # Keras knows the epoch's steps


def to_dataset(source: WindowSource, batch_size: int, shuffle: bool, seed: int, repeat_target: int = 1):
    """tf.data pipeline gathering each batch's windows from the 1-D series (and the
    covariate matrix: inputs ``window`` and ``future``) on the fly (the target repeated
    ``repeat_target`` times side by side: one per ensemble member). Shuffled by a buffer
    up to ``SHUFFLE_BUFFER_MAX`` windows, by ``permuted_batches`` above."""
    import tensorflow as tf

    series = tf.constant(source.series, dtype=tf.float32)
    cov = None if source.covariates is None else tf.constant(source.covariates, dtype=tf.float32)
    first_known = 0 if cov is None else int(source.covariates.shape[1]) - source.known
    x_off = tf.range(-source.lookback, 0, dtype=tf.int64)
    y_off = tf.range(0, source.horizon, dtype=tf.int64)
    if shuffle and len(source) > SHUFFLE_BUFFER_MAX:
        ds = permuted_batches(source.starts, batch_size, seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices(source.starts)
        if shuffle:
            ds = ds.shuffle(len(source), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)

    def gather(starts):
        x = tf.gather(series, starts[:, None] + x_off)[..., None]
        y = tf.gather(series, starts[:, None] + y_off)
        y = tf.tile(y, [1, repeat_target]) if repeat_target > 1 else y
        if cov is None:
            return x, y
        x = tf.concat([x, tf.gather(cov, starts[:, None] + x_off)], axis=-1)
        if not source.known:
            return x, y
        return {"window": x, "future": tf.gather(cov, starts[:, None] + y_off)[..., first_known:]}, y

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True).prefetch(tf.data.AUTOTUNE)


def stop_on_signal_callback():
    """A Keras callback class that raises a deferred SIGINT / SIGTERM (see
    ``errors.signals_deferred``) after a batch, never while a step is under way."""
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        # reads a flag only: Keras may run it off the main thread and re-raise its interrupt at the next
        # batch; a batch hook that is not async-safe makes Keras wait for every step (about 30% of the
        # windows/s of a large streamed fit, bench/scale.py)
        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            raise_if_signalled()

        on_test_batch_end = on_predict_batch_end = on_train_batch_end

    return StopOnSignal


def selection_split(train: WindowSource, val: WindowSource, min_windows: int) -> tuple:
    """(windows to fit, windows to select on): the validation windows, topped up to
    ``min_windows`` with the last training windows (at most a third of them), which
    leave training together with the ``horizon - 1`` windows before them (see the
    module doc). Unchanged when validation already has enough."""
    moved = min(max(0, min_windows - len(val)), len(train) // 3)
    if moved == 0:
        return train, val
    keep = max(0, len(train) - moved - (train.horizon - 1))
    fit_src = replace(train, starts=train.starts[:keep])
    select = replace(val, starts=np.concatenate([train.starts[len(train) - moved:], val.starts]))
    return fit_src, select


def ensemble_mse(members: int, horizon: int):
    """The averaged forecast's MSE, from the members' side-by-side outputs."""
    from keras import ops

    def ensemble_mse(y_true, y_pred):
        mean = ops.mean(ops.reshape(y_pred, (-1, members, horizon)), axis=1)
        return ops.mean(ops.square(y_true[:, :horizon] - mean), axis=-1)

    return ensemble_mse


def fit(model, train: WindowSource, val: WindowSource, cfg: TrainingConfig, seed: int,
        staging: Path, on_epoch: Optional[Callable[[int, dict], None]] = None,
        verbose: int = 2) -> Dict[str, List[float]]:
    """Train with early stopping; best (by the selection loss, see the module doc) and
    last checkpoints of ``model`` go to ``staging``."""
    import keras

    train, val = selection_split(train, val, cfg.min_val_windows)
    if cfg.min_val_windows:
        log.info("model selection on %d windows (%d fitted)", len(val), len(train))
    trained, members = model, 1
    view = members_view(model)
    if view is not None:
        members = len(model.get_layer("ensemble").input)
        view.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate), loss="mse",
                     metrics=[ensemble_mse(members, train.horizon)])
        trained = view

    class EnsembleLogs(keras.callbacks.Callback):
        """Rewrites the epoch's logs in place (every later callback sees them) so that
        loss / val_loss are the averaged forecast's."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and members > 1:
                for prefix in ("", "val_"):
                    logs[f"{prefix}member_loss"] = logs.pop(f"{prefix}loss")
                    logs[f"{prefix}loss"] = logs.pop(f"{prefix}ensemble_mse")

    class BestCheckpoint(keras.callbacks.Callback):
        """``model`` (the averaged one for an ensemble) saved whenever val_loss improves,
        starting from the untrained network (see the module doc)."""

        best = math.inf
        initial = math.nan

        def on_train_begin(self, logs=None):
            self.initial = float(model.evaluate(to_dataset(val, cfg.batch_size, False, seed), verbose=0))
            if math.isfinite(self.initial):
                self.best = self.initial
                model.save(str(staging / "best.keras"))

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_loss")
            if value is not None and value < self.best:
                self.best = value
                model.save(str(staging / "best.keras"))

    class EpochHook(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if not all(math.isfinite(v) for v in logs.values()):
                raise TrainingFailed(f"non-finite loss at epoch {epoch + 1}: {logs}; lower "
                                     "training.learning_rate or check the input scale")
            if on_epoch is not None:
                on_epoch(epoch, logs)

    staging.mkdir(parents=True, exist_ok=True)
    best_checkpoint = BestCheckpoint()
    callbacks = [
        EnsembleLogs(),
        best_checkpoint,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                      restore_best_weights=False) if cfg.patience > 0 else None,
        EpochHook(),
        stop_on_signal_callback()(),
    ]
    try:
        history = trained.fit(
            to_dataset(train, cfg.batch_size, cfg.shuffle, seed, members),
            validation_data=to_dataset(val, cfg.batch_size, False, seed, members),
            epochs=cfg.epochs, shuffle=False, callbacks=[c for c in callbacks if c is not None], verbose=verbose)
    except TrainingFailed:
        raise
    except MemoryError as exc:
        raise TrainingFailed("out of memory during training; lower training.batch_size or "
                             "model.units") from exc
    except Exception as exc:
        if "ResourceExhausted" in type(exc).__name__ or "OOM" in str(exc)[:200]:
            raise TrainingFailed("out of memory during training; lower training.batch_size") from exc
        raise
    model.save(str(staging / "last.keras"))
    if not (staging / "best.keras").exists():  # val_loss never finite/improved
        raise TrainingFailed("no checkpoint was saved: validation loss never improved")
    out = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    out["initial_val_loss"] = [best_checkpoint.initial]
    return out


def predict(model, source: WindowSource, batch_size: int) -> np.ndarray:
    """Scaled forecasts [windows, horizon] for every window of a source."""
    if len(source) == 0:
        return np.empty((0, source.horizon), dtype=np.float32)
    ds = to_dataset(source, batch_size, False, 0).map(lambda x, y: x)
    return np.asarray(model.predict(ds, verbose=0, callbacks=[stop_on_signal_callback()()]), dtype=np.float64)
