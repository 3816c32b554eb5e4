"""A run's training batches as a function of its seed: the order of every epoch and the shifts.

One definition for every trainer: `train.run` (Keras `fit`, one run) and `vectorized`
(K seeds as one computation, under TensorFlow or JAX) draw the same permutation and the
same per-image shifts for a seed, so a seed's batches do not depend on the trainer, the
backend or the device. Orders and shifts come from NumPy (host side, cheap); the images
are gathered and shifted with Keras's backend-neutral ops where they are consumed.
"""

from __future__ import annotations

import numpy as np


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
    from keras import ops

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
