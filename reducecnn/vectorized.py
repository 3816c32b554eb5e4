"""K runs of one model and recipe (their seeds, learning rates, patience may differ) as ONE computation.

A tiny CNN at batch 32 leaves a GPU mostly idle; K seeds stacked into one model
(`reducecnn.stacked`: grouped convolutions, batched dense layers, batch norm per seed and
channel) keep it busy. Every member keeps what a separate `train.run` has: its initial
weights (built right after `set_random_seed(seed)`, as there), its batches and shifts
(`recipe.epoch_plan`, the same as `train.run`'s), its own Adam state and learning rate,
its own early stopping (a stopped member is frozen: it is evaluated with its weights and
moving statistics of its stop epoch) and its own failure (a non-finite loss, weight or
activation fails that member alone). Its row and epoch rows are those of a separate run,
with `vectorized=True`, `group_size=K`, and its share of the group's time.

Members stream: `train_members` yields each member's result the moment it stops, so a
caller can record it before the rest of the group finishes. Compiled loops live in a
`Session` keyed by shape (architecture, K, batch, split sizes, recipe), so a long-lived
trainer compiles once per shape, not once per group.

The model, loss and update are Keras 3 backend-neutral ops; per backend there is only the
gradient and the compiled loop (`tf.function` + `tf.while_loop`, `jax.jit` + `fori_loop`,
compiled ahead of the first call so compile time is measured apart).
The uint8 images stay on the device; each step gathers its K batches by index.
"""

from __future__ import annotations

import hashlib
import math
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

import keras
import numpy as np
from keras import ops
from keras.losses import categorical_crossentropy

from reducecnn import devices
from reducecnn.catalog import NUM_CLASSES
from reducecnn.config import RunSpec
from reducecnn.data import Splits
from reducecnn.models import builder, describe
from reducecnn.plan import vector_key
from reducecnn.recipe import EVAL_BATCH_SIZE, RunFailed, epoch_plan, learning_rate, shift_images, should_stop
from reducecnn.records import RunResult, epoch_rows, package_version, record_for
from reducecnn.stacked import NotVectorizable, StackedModel, per_seed, stack

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # keras.optimizers.Adam's defaults, as the study used


def _backend() -> tuple[Callable, Callable, Callable]:
    """(value_and_grad, compile_loop, compile_function) for Keras's backend: the only
    backend-specific code. `compile_loop(run, donate, example)` compiles `run(carry, count, consts)`
    for the example's shapes and count, now, and returns `call(carry, consts)`.
    The backend's framework is imported here: a JAX trainer never loads TensorFlow, nor the reverse."""
    if keras.backend.backend() == "jax":
        import jax  # the active backend only (see the docstring)

        def compile_loop(run, donate: bool, example: tuple):
            # A static trip count: the loop is a scan, which XLA runs without reading the loop
            # condition back from the GPU every step. Counts per run are few (full batches, the rest).
            carry, count, consts = example
            jitted = jax.jit(run, static_argnums=(1,), donate_argnums=(0,) if donate else ())
            return jitted.lower(carry, count, consts).compile()

        return (lambda fn: jax.value_and_grad(fn, has_aux=True)), compile_loop, jax.jit
    if keras.backend.backend() != "tensorflow":
        raise NotVectorizable(f"backend {keras.backend.backend()} is not supported (tensorflow or jax)")
    import tensorflow as tf  # the active backend only (see the docstring)

    def value_and_grad(fn):
        def wrapped(params):
            with tf.GradientTape() as tape:
                tape.watch(params)
                value, aux = fn(params)
            return (value, aux), tape.gradient(value, params)
        return wrapped

    def compile_loop(run, donate: bool, example: tuple):
        carry, count, consts = example
        concrete = tf.function(run).get_concrete_function(carry, tf.constant(count, tf.int32), consts)
        return lambda carry, consts: concrete(carry, tf.constant(count, tf.int32), consts)

    return value_and_grad, compile_loop, tf.function


def _loop_over(body: Callable) -> Callable:
    """`run(carry, count, consts)`: `count` iterations of `body(carry, i, consts)`, as the backend loops."""
    if keras.backend.backend() == "jax":
        import jax  # the active backend only (see _backend)

        return lambda carry, count, consts: jax.lax.fori_loop(0, count, lambda i, c: body(c, i, consts), carry)
    import tensorflow as tf  # the active backend only (see _backend)

    def run(carry, count, consts):
        _, carry = tf.while_loop(lambda i, c: i < count, lambda i, c: (i + 1, body(c, i, consts)),
                                 (tf.constant(0), carry), parallel_iterations=1)
        return carry
    return run


def shape_key(spec: RunSpec, k: int, train_images: int) -> str:
    """Groups with equal keys share compiled loops: one architecture, K, batch and recipe."""
    digest = hashlib.sha256((spec.model_source or "").encode()).hexdigest()[:10]
    return "/".join(str(part) for part in (spec.model, digest, k, spec.batch_size, spec.lr_schedule,
                                           spec.epochs if spec.lr_schedule != "constant" else "-",
                                           spec.augment_shift, train_images))


class Trainer:
    """Compiled train and evaluate loops of one architecture, K and recipe (`shape_key`); every
    group of that shape reuses them with its own weights. `compile_seconds`: time spent compiling them."""

    def __init__(self, stacked: StackedModel, spec: RunSpec, train_images: int):
        self.stacked, self.spec, self.k = stacked, spec, stacked.seeds
        self.train_images = train_images
        self.value_and_grad, self._compile, compile_function = _backend()
        self._loops: dict[tuple, Callable] = {}
        self._finite = compile_function(self._finite_by_member)
        self.compile_seconds = 0.0

    def _loop(self, kind: str, batch: int, count: int, carry, consts) -> Callable:
        """The compiled loop of `kind` ('train' or 'eval') at a static batch size and count, built once."""
        key = (kind, batch, count)
        if key not in self._loops:
            body = self._train_body(batch) if kind == "train" else self._eval_body(batch)
            start = time.perf_counter()
            self._loops[key] = self._compile(_loop_over(body), kind == "train", (carry, count, consts))
            self.compile_seconds += time.perf_counter() - start
        return self._loops[key]

    def _learning_rates(self, learning_rates, iteration):
        """Each member's learning rate at this step: constant, or `recipe.learning_rate`'s schedule
        (Keras's CosineDecay) from 1, scaled by each member's own rate."""
        if self.spec.lr_schedule == "constant":
            return learning_rates
        return learning_rates * learning_rate(self.spec, self.train_images, initial=1.0)(iteration)

    def _train_body(self, batch: int) -> Callable:
        """One Adam step of every member on its own next batch (Keras's Adam, elementwise per seed)."""
        k, stacked, shift = self.k, self.stacked, bool(self.spec.augment_shift)

        def body(carry, step, consts):
            params, stats, moments, velocities, iteration, loss_sum, correct, overflowed = carry
            x_all, y_all, order, shifts, offset, learning_rates, active = consts
            start = offset + step * batch
            indices = ops.slice(order, (0, start), (k, batch))                      # [K, B]
            images = ops.cast(ops.take(x_all, indices, axis=0), "float32") / 255.0  # [K, B, H, W]
            images = ops.transpose(images, (1, 2, 3, 0))                            # [B, H, W, K]
            if shift:
                images = shift_images(images, ops.transpose(ops.slice(shifts, (0, start, 0), (k, batch, 2)), (1, 0, 2)))
            labels = ops.one_hot(ops.transpose(ops.take(y_all, indices, axis=0)), NUM_CLASSES)  # [B, K, classes]

            def loss_of(weights):
                probabilities, new_stats, bad = stacked.forward(weights, stats, images, training=True)
                losses = ops.mean(categorical_crossentropy(labels, probabilities), axis=0)  # [K]
                return ops.sum(losses), (losses, probabilities, new_stats, bad)

            (_, (losses, probabilities, new_stats, bad)), gradients = self.value_and_grad(loss_of)(params)
            t = ops.cast(iteration + 1, "float32")
            alpha = self._learning_rates(learning_rates, iteration) * ops.sqrt(1.0 - BETA_2 ** t) / (1.0 - BETA_1 ** t)
            updated = ([], [], [])
            for p, g, m, v, slot in zip(params, gradients, moments, velocities, stacked.param_slots):
                keep = per_seed(active, p.shape, slot, k) > 0
                m2 = m + (g - m) * (1.0 - BETA_1)
                v2 = v + (ops.square(g) - v) * (1.0 - BETA_2)
                p2 = p - m2 * per_seed(alpha, p.shape, slot, k) / (ops.sqrt(v2) + EPSILON)
                for out, new, old in zip(updated, (p2, m2, v2), (p, m, v)):
                    out.append(ops.where(keep, new, old))
            stats = [ops.where(per_seed(active, old.shape, slot, k) > 0, new, old)
                     for old, new, slot in zip(stats, new_stats, stacked.stat_slots)]
            hits = ops.cast(ops.argmax(probabilities, axis=-1) == ops.argmax(labels, axis=-1), "float32")
            overflowed = ops.maximum(overflowed, ops.cast(bad, "float32") * active)
            return (*updated[:1], stats, *updated[1:], iteration + 1,
                    loss_sum + losses * float(batch), correct + ops.sum(hits, axis=0), overflowed)

        return body

    def _eval_body(self, batch: int) -> Callable:
        """Summed loss and hits of every member over one batch of shared images (no update)."""
        k, stacked = self.k, self.stacked

        def body(carry, step, consts):
            loss_sum, correct = carry
            params, stats, x_all, y_all, offset = consts
            start = offset + step * batch
            images = ops.cast(ops.slice(x_all, (start, 0, 0), (batch, *x_all.shape[1:])), "float32") / 255.0
            images = ops.broadcast_to(images[..., None], (batch, *x_all.shape[1:], k))
            labels = ops.one_hot(ops.slice(y_all, (start,), (batch,)), NUM_CLASSES)[:, None, :]
            probabilities, _, _ = stacked.forward(params, stats, images, training=False)
            labels = ops.broadcast_to(labels, probabilities.shape)
            losses = ops.sum(categorical_crossentropy(labels, probabilities), axis=0)
            hits = ops.cast(ops.argmax(probabilities, axis=-1) == ops.argmax(labels, axis=-1), "float32")
            return loss_sum + losses, correct + ops.sum(hits, axis=0)

        return body

    def train_epoch(self, state: tuple, x, y, order: np.ndarray, shifts: np.ndarray, learning_rates, active,
                    steps: int | None = None) -> tuple:
        """One epoch of every member (or only its first `steps` full batches); returns the new
        state (its last three entries: summed loss, hits, and whether an activation overflowed)."""
        batch, images = self.spec.batch_size, order.shape[1]
        full, rest = divmod(images, batch)
        if steps is not None:
            full, rest = min(full, steps), 0
        carry = (*state[:5], *(ops.zeros((self.k,), "float32") for _ in range(3)))  # distinct: donated
        order, shifts = ops.convert_to_tensor(order), ops.convert_to_tensor(shifts)
        active = ops.convert_to_tensor(np.asarray(active, np.float32))
        for size, count, offset in ((batch, full, 0), (rest, 1, full * batch)):
            if size and count:
                consts = (x, y, order, shifts, ops.convert_to_tensor(np.int32(offset)), learning_rates, active)
                carry = self._loop("train", size, int(count), carry, consts)(carry, consts)
        return carry

    def evaluate(self, params, stats, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Each member's mean loss and accuracy on shared images (x uint8 [N, H, W] on the device)."""
        images = x.shape[0]
        batch = eval_batch(images, self.k)
        full, rest = divmod(images, batch)
        carry = (ops.zeros((self.k,), "float32"), ops.zeros((self.k,), "float32"))
        for size, count, offset in ((batch, full, 0), (rest, 1, full * batch)):
            if size and count:
                consts = (params, stats, x, y, ops.convert_to_tensor(np.int32(offset)))
                carry = self._loop("eval", size, int(count), carry, consts)(carry, consts)
        loss_sum, correct = (ops.convert_to_numpy(value) for value in carry)
        return loss_sum / images, correct / images

    def _finite_by_member(self, params: list):
        finite = ops.ones((self.k,), "bool")
        for value, slot in zip(params, self.stacked.param_slots):
            by_seed = ops.reshape(ops.moveaxis(value, slot.axis, 0), (self.k, -1))
            finite = ops.logical_and(finite, ops.all(ops.isfinite(by_seed), axis=1))
        return finite

    def finite_members(self, params: list) -> np.ndarray:
        """Per member: are all its weights finite? One compiled call."""
        return ops.convert_to_numpy(self._finite(params)).astype(bool)


@dataclass
class Session:
    """What a long-lived trainer keeps between groups: compiled trainers by shape, and each
    split's arrays on the device (converted once)."""

    trainers: dict[str, Trainer] = field(default_factory=dict)
    arrays: dict[tuple[int, str], object] = field(default_factory=dict)

    def on_device(self, data: Splits, name: str):
        """`data`'s array `name` (x_train, y_val, ...) as a device tensor, labels as int32."""
        key = (id(data), name)
        if key not in self.arrays:
            values = getattr(data, name)
            self.arrays[key] = ops.convert_to_tensor(values.astype(np.int32) if name.startswith("y") else values)
        return self.arrays[key]


def eval_batch(images: int, k: int) -> int:
    """Evaluation batch: every member sees each image, so the batch shrinks with K and memory
    stays that of one run's; a divisor of `images` where one is near, so one loop compiles."""
    cap = max(1, min(images, EVAL_BATCH_SIZE // k))
    divisor = next(b for b in range(cap, 0, -1) if images % b == 0)
    return divisor if divisor * 2 > cap else cap


def build_members(specs: list[RunSpec]) -> list:
    """Each member's Keras model with the initial weights `train.run` gives its seed."""
    models = []
    for spec in specs:
        keras.utils.set_random_seed(spec.seed)
        models.append(builder(spec.model, spec.model_source)())
    return models


def _check(specs: list[RunSpec]) -> None:
    if not specs or len({vector_key(s) for s in specs}) != 1 or len({s.run_id for s in specs}) != len(specs):
        raise ValueError("a vectorized group needs distinct specs of one model, data set and recipe "
                         "(they may differ only in seed, learning rate and patience)")


def _device_name() -> str:
    if keras.backend.backend() == "jax":
        import jax  # the active backend only (see _backend)

        device = jax.devices()[0]
        return f"{device.platform.upper()}:{device.id}" if device.platform != "cpu" else "CPU"
    import tensorflow as tf  # the active backend only (see _backend)

    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU"


def train_group(specs: list[RunSpec], data: Splits, threads: int | None = None) -> list[RunResult | RunFailed]:
    """Train the specs as one computation in a fresh session; one RunResult (or RunFailed) per spec, in order."""
    if keras.backend.backend() == "tensorflow":
        devices.configure(threads, 1)
    keras.backend.clear_session()
    session = Session()
    outcomes = dict(train_members(prepare(specs, data, session), data, session))
    return [outcomes[index] for index in range(len(specs))]


@dataclass
class Prepared:
    """A group ready to train: its trainer (from the session when its shape was seen before),
    the stacked initial state on the device, and each member's model description."""

    specs: list[RunSpec]
    trainer: Trainer
    state: tuple
    infos: list


def prepare(specs: list[RunSpec], data: Splits, session: Session) -> Prepared:
    """Build each member as `train.run` would (its seed's initial weights), stack them, find or
    make the trainer of this shape. Host work: a trainer does it while the previous group trains."""
    _check(specs)
    members = build_members(specs)
    infos = [describe(model) for model in members]
    stacked = stack(members)
    del members
    key = shape_key(specs[0], len(specs), len(data.x_train))
    if key not in session.trainers:
        session.trainers[key] = Trainer(stacked, specs[0], len(data.x_train))
    to_device = ops.convert_to_tensor
    state = ([to_device(p) for p in stacked.params], [to_device(s) for s in stacked.stats],
             [to_device(np.zeros_like(p)) for p in stacked.params],
             [to_device(np.zeros_like(p)) for p in stacked.params], to_device(np.int32(0)))
    return Prepared(specs, session.trainers[key], state, infos)


def train_members(prepared: Prepared, data: Splits, session: Session,
                  group_id: str | None = None) -> Iterator[tuple[int, RunResult | RunFailed]]:
    """Train a prepared group as one computation; yield (index, RunResult or RunFailed) for each
    member the moment it stops (early stop, failure or the last epoch)."""
    threads_used = None
    if keras.backend.backend() == "tensorflow":
        threads_used = devices.place(1).threads
    group_start = time.perf_counter()
    specs, trainer, state, infos = prepared.specs, prepared.trainer, prepared.state, prepared.infos
    compiled_before = trainer.compile_seconds
    first, k, images = specs[0], len(specs), len(data.x_train)
    x_train, y_train = session.on_device(data, "x_train"), session.on_device(data, "y_train")
    x_val, y_val = session.on_device(data, "x_val"), session.on_device(data, "y_val")
    learning_rates = ops.convert_to_tensor(np.array([spec.learning_rate for spec in specs], np.float32))
    history = [{"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []} for _ in specs]
    seconds, errors, active = [[] for _ in specs], [None] * k, [True] * k
    started_at = datetime.now(timezone.utc)
    common = dict(started_at=started_at, devices=_device_name(), strategy="default", replicas=1, threads=threads_used,
                  tensorflow_version=package_version("tensorflow"), keras_version=keras.__version__,
                  ray_version=package_version("ray"), group_size=k, vectorized=True, backend=keras.backend.backend(),
                  group_id=group_id)
    for epoch in range(first.epochs):
        epoch_start, compile_start = time.perf_counter(), trainer.compile_seconds
        plans = [epoch_plan(spec.seed, epoch, images, first.augment_shift) for spec in specs]
        carry = trainer.train_epoch(state, x_train, y_train, np.stack([p[0] for p in plans]),
                                    np.stack([p[1] for p in plans]), learning_rates, active)
        state = carry[:5]
        loss, accuracy = (ops.convert_to_numpy(value) / images for value in carry[5:7])
        overflowed = ops.convert_to_numpy(carry[7]) > 0
        val_loss, val_accuracy = trainer.evaluate(state[0], state[1], x_val, y_val)
        weights_finite = trainer.finite_members(state[0])
        # Each active member's share of the epoch's device time (compilation counted apart).
        share = (time.perf_counter() - epoch_start - (trainer.compile_seconds - compile_start)) / sum(active)
        stopped = []
        for index, spec in enumerate(specs):
            if not active[index]:
                continue
            for name, values in (("loss", loss), ("accuracy", accuracy), ("val_loss", val_loss),
                                 ("val_accuracy", val_accuracy)):
                history[index][name].append(float(values[index]))
            seconds[index].append(share)
            where = f"in epoch {epoch + 1} (learning rate {spec.learning_rate})"
            if not math.isfinite(loss[index]) or not weights_finite[index]:
                errors[index] = f"non-finite training loss {where}"
            elif overflowed[index]:
                errors[index] = f"non-finite activations {where}"
            if errors[index] or should_stop(history[index]["val_loss"], spec.patience) or epoch + 1 == first.epochs:
                active[index] = False
                stopped.append(index)
        if stopped:
            yield from _finish(stopped, specs, data, session, trainer, state, history, seconds, errors, infos, dict(
                common, group_seconds=None, compile_seconds=None), group_start, compiled_before)
        if not any(active):
            break


def _finish(stopped: list[int], specs: list[RunSpec], data: Splits, session: Session, trainer: Trainer, state: tuple,
            history: list[dict], seconds: list[list[float]], errors: list, infos: list, common: dict,
            group_start: float, compiled_before: float) -> Iterator[tuple[int, RunResult | RunFailed]]:
    """Test the members that stopped this epoch (frozen from now on) and yield their results."""
    images = len(data.x_train)
    if any(errors[index] is None for index in stopped):
        if data.x_test is data.x_val and data.y_test is data.y_val:
            test_loss = np.array([h["val_loss"][-1] if h["val_loss"] else math.nan for h in history])
            test_accuracy = np.array([h["val_accuracy"][-1] if h["val_accuracy"] else math.nan for h in history])
        else:
            test_loss, test_accuracy = trainer.evaluate(state[0], state[1], session.on_device(data, "x_test"),
                                                        session.on_device(data, "y_test"))
    common |= {"group_seconds": time.perf_counter() - group_start,
               "compile_seconds": trainer.compile_seconds - compiled_before}
    for index in stopped:
        spec = specs[index]
        if errors[index]:
            yield index, RunFailed(errors[index])
            continue
        info, runs = infos[index], history[index]
        epochs_run, train_seconds = len(runs["loss"]), sum(seconds[index])
        record = record_for(
            spec,
            params_total=info.params_total, params_trainable=info.params_trainable,
            params_non_trainable=info.params_non_trainable, layers=info.layers, macs_per_image=info.macs_per_image,
            epochs_run=epochs_run, stopped_early=epochs_run < spec.epochs,
            train_loss=runs["loss"][-1], train_accuracy=runs["accuracy"][-1],
            val_loss=runs["val_loss"][-1], val_accuracy=runs["val_accuracy"][-1],
            test_loss=float(test_loss[index]), test_accuracy=float(test_accuracy[index]),
            train_seconds=train_seconds, images_per_second=epochs_run * images / train_seconds,
            finished_at=datetime.now(timezone.utc),
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **common,
        )
        yield index, RunResult(record, epoch_rows(spec, runs, seconds[index]))
