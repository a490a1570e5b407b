"""Shuffling many windows (train.SHUFFLE_BUFFER_MAX): up to the limit an epoch's order
is tf.data's shuffle buffer exactly as before (same seed, same batches); above it, a
stateless permutation: every window once an epoch, a new order each epoch, the same
orders for the same seed, and a real fit trains on it reproducibly."""
from __future__ import annotations

import numpy as np

from spline_lstm.preprocessing import transforms
from spline_lstm.models import train
from spline_lstm.core.config import HeadInit, ModelConfig, PreprocessConfig, Revin, TrainingConfig


def _source(n: int, lookback: int = 8, ramp: bool = False) -> transforms.WindowSource:
    """``ramp``: the series is 0, 1, 2, ... so a window's target is its start."""
    bounds = transforms.split_bounds(n, PreprocessConfig(lookback=lookback))
    series = np.arange(n, dtype=np.float32) if ramp else np.sin(np.arange(n, dtype=np.float32) / 5)
    return transforms.WindowSource(series, transforms.window_starts(bounds, 0, lookback, 1), lookback, 1)


def _epochs(ds, count: int) -> list:
    return [np.concatenate([y.numpy()[:, 0] for _, y in ds]) for _ in range(count)]


def test_below_the_limit_the_order_is_the_shuffle_buffer_s_bit_for_bit():
    tf = train.import_tensorflow()
    src = _source(600)
    assert len(src) <= train.SHUFFLE_BUFFER_MAX
    ref = tf.data.Dataset.from_tensor_slices(src.starts).shuffle(len(src), seed=7, reshuffle_each_iteration=True)
    ref = ref.batch(32).map(lambda s: (s, tf.gather(tf.constant(src.series), s)[:, None]))
    got, want = _epochs(train.to_dataset(src, 32, True, 7), 2), _epochs(ref, 2)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_above_the_limit_each_epoch_is_a_new_permutation_fixed_by_the_seed(monkeypatch):
    monkeypatch.setattr(train, "SHUFFLE_BUFFER_MAX", 100)
    src = _source(600, ramp=True)
    every = src.starts.astype(np.float32)
    first = _epochs(train.to_dataset(src, 32, True, 7), 3)
    assert all(np.array_equal(np.sort(e), every) for e in first)  # each window once an epoch
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    again = _epochs(train.to_dataset(src, 32, True, 7), 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = _epochs(train.to_dataset(src, 32, True, 8), 1)
    assert not np.array_equal(first[0], other[0])
    x, y = next(iter(train.to_dataset(src, 32, True, 7)))  # the windows of the drawn starts
    gx, gy = src.gather(y.numpy()[:, 0].astype(np.int64))
    assert np.array_equal(x.numpy(), gx) and np.array_equal(y.numpy(), gy)


def _fit(tmp_path, name: str) -> dict:
    from spline_lstm.models.network import build_model

    train.seed_everything(3, True)
    model = build_model(ModelConfig(units=4, head_init=HeadInit.default, revin=Revin.none), 8, 1, 1e-2, 1, 0)
    src = _source(600)
    val = transforms.WindowSource(src.series, transforms.window_starts(
        transforms.split_bounds(600, PreprocessConfig(lookback=8)), 1, 8, 1), 8, 1)
    return train.fit(model, src, val, TrainingConfig(epochs=2, batch_size=32, patience=0, shuffle=True), 3,
                     tmp_path / name, verbose=0)


def test_a_fit_above_the_limit_runs_every_epoch_and_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "SHUFFLE_BUFFER_MAX", 100)
    a, b = _fit(tmp_path, "a"), _fit(tmp_path, "b")
    assert len(a["loss"]) == 2 and np.isfinite(a["loss"]).all()
    assert a["loss"] == b["loss"] and a["val_loss"] == b["val_loss"]
