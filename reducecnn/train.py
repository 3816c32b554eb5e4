"""One training run as a function of its spec and data: no files, no network, no Ray."""

from __future__ import annotations

import functools
import math
import resource
import time
from datetime import datetime, timezone

import keras
import numpy as np
import tensorflow as tf

from reducecnn import devices, models
from reducecnn.catalog import NUM_CLASSES
from reducecnn.config import RunSpec
from reducecnn.data import Splits
from reducecnn.models import describe
from reducecnn.recipe import EVAL_BATCH_SIZE, RunFailed, epoch_plan, learning_rate, shift_images, should_stop
from reducecnn.records import RunResult, epoch_rows, package_version, record_for
# Training steps per tf.function call: tiny CNNs at batch 32 are bound by per-step overhead;
# 64 steps per call trained 1.15-1.3x faster on 2 CPU cores with bit-identical weights.
STEPS_PER_EXECUTION = 64


def batches_of(x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None = None,
           shifts: np.ndarray | None = None):
    """uint8 arrays -> batches of float32 pixels / 255 and one-hot labels, converted per batch.

    With `order` (an epoch's permutation, `recipe.epoch_plan`) the batches follow it, each
    image shifted by its row of `shifts`; without, the arrays are read in order (evaluation)."""
    def scale(images, labels):
        return tf.cast(images[..., tf.newaxis], tf.float32) / 255.0, tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES)

    if order is None:
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).map(scale)
    else:
        images, labels = tf.constant(x), tf.constant(y)

        def gather(indices, offsets):
            pixels, one_hot = scale(tf.gather(images, indices), tf.gather(labels, indices))
            return (pixels if shifts is None else shift_images(pixels, offsets[:, tf.newaxis, :])), one_hot

        offsets = np.zeros((len(order), 2), np.int32) if shifts is None else shifts
        dataset = tf.data.Dataset.from_tensor_slices((order, offsets)).batch(batch_size).map(gather)
    options = tf.data.Options()
    # The autotune thread can keep fit() waiting 5-39 s after the last epoch (PLATFORM.md).
    options.autotune.enabled = False
    options.deterministic = True
    return dataset.prefetch(2).with_options(options)


@functools.cache
def _fused_adam_class() -> type:
    """keras.optimizers.Adam applying its update with TensorFlow's fused ResourceApplyAdam kernel.

    The same update rule and hyperparameters as Keras 3's Adam (and the kernel the study's
    tf.keras 2.7 Adam called), in one op per variable instead of about ten: the baseline's
    590k weights made Keras's op-by-op Adam 3 of its 6.3 ms per step on one CPU thread.
    Results agree with Keras 3's Adam to rounding, not bit for bit.
    """
    class FusedAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
                return super().update_step(gradient, variable, learning_rate)
            dtype = variable.dtype
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            index = self._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
                beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))

    return FusedAdam


def adam(spec: RunSpec, train_images: int):
    """The run's optimizer: Adam (fused kernel) at the spec's learning rate or schedule."""
    return _fused_adam_class()(learning_rate=learning_rate(spec, train_images))


def final_test_scores(model, data: Splits, history: dict[str, list[float]]) -> tuple[float, float]:
    """Test loss and accuracy of the final weights. The study protocol validates on the test set
    itself, so the last epoch's validation already is that evaluation (same weights, data and
    batches): it is reused rather than computed twice."""
    if data.x_val is data.x_test and data.y_val is data.y_test:
        return float(history["val_loss"][-1]), float(history["val_accuracy"][-1])
    test_loss, test_accuracy = model.evaluate(batches_of(data.x_test, data.y_test, EVAL_BATCH_SIZE), verbose=0)
    return float(test_loss), float(test_accuracy)


def run(spec: RunSpec, data: Splits, threads: int | None = None, cpu_devices: int = 1,
        steps_per_execution: int = STEPS_PER_EXECUTION) -> RunResult:
    """Train one model from scratch as the study did, evaluate its final weights on the test set."""
    devices.configure(threads, cpu_devices)
    keras.backend.clear_session()  # a reused worker process starts each run from a clean slate
    keras.utils.set_random_seed(spec.seed)
    placement = devices.place(cpu_devices)
    with placement.strategy.scope():
        model = models.builder(spec.model, spec.model_source)()
        model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                      optimizer=adam(spec, len(data.x_train)),
                      # Keras's multi-step loop fails under MirroredStrategy: one step per call there.
                      steps_per_execution=steps_per_execution if placement.replicas == 1 else 1)
    info = describe(model)
    validation = batches_of(data.x_val, data.y_val, EVAL_BATCH_SIZE)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    seconds: list[float] = []
    started_at = datetime.now(timezone.utc)
    start = time.perf_counter()
    # One fit() per epoch, each on that epoch's planned batches (the same for every trainer,
    # recipe.epoch_plan); Keras reuses the traced train function across the calls.
    for epoch in range(spec.epochs):
        order, shifts = epoch_plan(spec.seed, epoch, len(data.x_train), spec.augment_shift)
        epoch_start = time.perf_counter()
        logs = model.fit(batches_of(data.x_train, data.y_train, spec.batch_size, order,
                                shifts if spec.augment_shift else None),
                         validation_data=validation, epochs=1, callbacks=[keras.callbacks.TerminateOnNaN()],
                         shuffle=False, verbose=0).history
        seconds.append(time.perf_counter() - epoch_start)
        for name in history:
            history[name].append(float(logs[name][-1]) if name in logs else math.nan)
        if not math.isfinite(history["loss"][-1]) or should_stop(history["val_loss"], spec.patience):
            break
    train_seconds = time.perf_counter() - start
    epochs_run = len(history["loss"])
    if not all(math.isfinite(value) for value in history["loss"]):
        raise RunFailed(f"non-finite training loss in epoch {epochs_run} (learning rate {spec.learning_rate})")
    test_loss, test_accuracy = final_test_scores(model, data, history)
    record = record_for(
        spec,
        params_total=info.params_total, params_trainable=info.params_trainable,
        params_non_trainable=info.params_non_trainable, layers=info.layers,
        macs_per_image=info.macs_per_image, epochs_run=epochs_run, stopped_early=epochs_run < spec.epochs,
        train_loss=float(history["loss"][-1]), train_accuracy=float(history["accuracy"][-1]),
        val_loss=float(history["val_loss"][-1]), val_accuracy=float(history["val_accuracy"][-1]),
        test_loss=test_loss, test_accuracy=test_accuracy,
        train_seconds=train_seconds, images_per_second=epochs_run * len(data.x_train) / train_seconds,
        started_at=started_at, finished_at=datetime.now(timezone.utc),
        devices=placement.devices, strategy=placement.strategy_name, replicas=placement.replicas,
        threads=placement.threads, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        tensorflow_version=tf.__version__, keras_version=keras.__version__,
        ray_version=package_version("ray"), backend=keras.backend.backend(),
    )
    return RunResult(record, epoch_rows(spec, history, seconds))

