"""What every trainer does the same way, defined once: a run's batches as a function of its seed
(the order of every epoch and the shifts), the learning-rate schedule, early stopping, and the
evaluation batch.

One definition for every trainer: `train.run` (Keras `fit`, one run) and `vectorized`
(K seeds as one computation, under TensorFlow or JAX) draw the same permutation and the
same per-image shifts for a seed, so a seed's batches do not depend on the trainer, the
backend or the device. Orders and shifts come from NumPy (host side, cheap); the images
are gathered and shifted with Keras's backend-neutral ops where they are consumed.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from reducecnn.config import RunSpec

EVAL_BATCH_SIZE = 1024  # validation/test batch: changes speed, not the trained weights


class RunFailed(Exception):
    """Training finished without a usable model (e.g. a non-finite loss)."""


def _generator(seed: int, epoch: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))


def epoch_plan(seed: int, epoch: int, images: int, max_shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The image order of epoch `epoch` (0-based) and each position's (dy, dx) shift in pixels.

    Returns int32 arrays of shape [images] and [images, 2]; shifts are zero when max_shift is 0.
    """
    generator = _generator(seed, epoch)
    order = generator.permutation(images).astype(np.int32)
    if max_shift:
        shifts = generator.integers(-max_shift, max_shift, size=(images, 2), endpoint=True).astype(np.int32)
    else:
        shifts = np.zeros((images, 2), np.int32)
    return order, shifts


def shift_images(images, shifts):
    """Translate each image of each channel by whole pixels, zero-filled (Keras ops, any backend).

    images: float [B, H, W, C]; shifts: int [B, C, 2] as (dy, dx): output[i, j] = input[i - dy, j - dx].
    """
    batch, height, width, channels = images.shape
    batch = ops.shape(images)[0] if batch is None else batch
    dy = ops.cast(shifts[..., 0], "int32")[:, None, None, :]
    dx = ops.cast(shifts[..., 1], "int32")[:, None, None, :]
    rows = ops.arange(height, dtype="int32")[None, :, None, None] - dy  # [B, H, 1, C]
    cols = ops.arange(width, dtype="int32")[None, None, :, None] - dx   # [B, 1, W, C]
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    source = ops.clip(rows, 0, height - 1) * width + ops.clip(cols, 0, width - 1)
    source = ops.reshape(ops.broadcast_to(source, (batch, height, width, channels)), (batch, height * width, channels))
    flat = ops.reshape(images, (batch, height * width, channels))
    shifted = ops.reshape(ops.take_along_axis(flat, source, axis=1), (batch, height, width, channels))
    return ops.where(valid, shifted, ops.zeros_like(shifted))


def learning_rate(spec: RunSpec, train_images: int, initial: float | None = None):
    """Adam's learning rate: constant as in the study, or Keras's cosine decay to 0 over all epochs
    (from `initial`, default the spec's). The one schedule every trainer uses."""
    initial = spec.learning_rate if initial is None else initial
    if spec.lr_schedule == "constant":
        return initial
    steps = spec.epochs * math.ceil(train_images / spec.batch_size)
    return keras.optimizers.schedules.CosineDecay(initial, decay_steps=steps)


def should_stop(val_losses: list[float], patience: int) -> bool:
    """keras.callbacks.EarlyStopping(monitor="val_loss", patience) after the last of these epochs."""
    best, wait, stop = math.inf, 0, False
    for epoch, loss in enumerate(val_losses):
        wait += 1
        if loss < best:
            best, wait, stop = loss, 0, False
        else:
            stop = wait >= patience and epoch > 0
    return stop
