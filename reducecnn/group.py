"""Several runs (seeds, models) trained as one TensorFlow computation in one process.

Tiny CNNs at batch 32 spend much of a run in per-call and per-run overhead, so one graph that
steps K models side by side costs less than K separate trainings in fresh processes: 1.2-1.26x
per run on one core here (approach1, approach2, baseline; 1 epoch of full MNIST). With CPU
workers reused the gain is gone in wall time (README, "Performance"), so the runner uses it
only when asked (`--runs-per-task K`). Every member keeps what a separate
`train.run` would have: its own initial weights (built right after `set_random_seed(seed)`,
as there), its own shuffled and augmented batches (its own seeded `tf.data` pipeline), its
own Adam state and learning-rate schedule, its own early stopping on its own val_loss. A
member that stops leaves the group; the others go on. A member whose loss stops being
finite fails alone. Members must share what fixes the step count: data set, protocol,
training subset, batch size and epochs (`group_key`). The result is one `RunResult` per
spec, as `train.run` gives it: the same numbers (tests pin bit-identical ones for the
study's models; with augmentation and the cosine schedule they agree to rounding).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from reducecnn import devices
from reducecnn.config import RunSpec
from reducecnn.data import Splits
from reducecnn.models import MODELS, describe
from reducecnn.train import (EVAL_BATCH_SIZE, STEPS_PER_EXECUTION, RunFailed, RunResult, _epoch_rows, _input,
                             _version, adam, final_test_scores, record_for)


def group_key(spec: RunSpec) -> tuple:
    """Runs with equal keys can train as one group: same data and the same steps per epoch."""
    return (spec.dataset, spec.protocol, spec.train_limit, spec.batch_size, spec.epochs)


def groups(specs: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """Specs dealt round-robin into as few groups of at most `size` (equal `group_key`) as possible.

    Dealing rather than cutting mixes models and seeds, so that groups cost about the same
    (specs come model by model; cutting would put both heavy baseline runs in one group).
    """
    by_key: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        by_key.setdefault(group_key(spec), []).append(spec)
    dealt = []
    for same in by_key.values():
        count = math.ceil(len(same) / max(1, size))
        dealt += [same[i::count] for i in range(count)]
    return dealt


@dataclass
class _Member:
    spec: RunSpec
    model: Any
    optimizer: Any
    train: Any
    loss_sum: Any
    correct: Any
    seen: Any
    history: dict[str, list[float]] = field(default_factory=lambda: {
        "loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []})
    seconds: list[float] = field(default_factory=list)
    best: float = math.inf
    wait: int = 0
    train_seconds: float = 0.0
    error: str | None = None
    done: bool = False


def _build(spec: RunSpec, data: Splits) -> _Member:
    """Model, optimizer and input exactly as `train.run` creates them, in the same order."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(spec.seed)
    model = MODELS[spec.model]()
    optimizer = adam(spec, len(data.x_train))
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"], optimizer=optimizer)
    optimizer.build(model.trainable_variables)
    train = _input(data.x_train, data.y_train, spec.batch_size, shuffle_seed=spec.seed, shift=spec.augment_shift)
    counters = [tf.Variable(0.0, dtype=tf.float32, trainable=False) for _ in range(3)]
    return _Member(spec, model, optimizer, train, *counters)


def _steps_function(members: list[_Member]):
    """One tf.function: `steps` training steps of every member, each on its own next batch."""
    import tensorflow as tf

    def one_step(member: _Member, iterator) -> None:
        x, y = next(iterator)
        with tf.GradientTape() as tape:
            y_pred = member.model(x, training=True)
            loss = member.model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        gradients = tape.gradient(loss, member.model.trainable_weights)
        member.optimizer.apply(gradients, member.model.trainable_weights)
        batch = tf.cast(tf.shape(x)[0], tf.float32)
        member.loss_sum.assign_add(tf.cast(loss, tf.float32) * batch)
        hits = tf.equal(tf.argmax(y, axis=-1), tf.argmax(y_pred, axis=-1))
        member.correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.float32)))
        member.seen.assign_add(batch)

    @tf.function
    def steps_of_all(iterators, steps):
        for _ in tf.range(steps):
            for member, iterator in zip(members, iterators):
                one_step(member, iterator)

    return steps_of_all


def _early_stop(member: _Member, epoch: int) -> bool:
    """keras.callbacks.EarlyStopping(monitor="val_loss", patience) at the end of `epoch` (0-based)."""
    current = member.history["val_loss"][-1]
    member.wait += 1
    if current < member.best:
        member.best, member.wait = current, 0
        return False
    return member.wait >= member.spec.patience and epoch > 0


def run_group(specs: list[RunSpec], data: Splits, threads: int | None = None,
              steps_per_execution: int = STEPS_PER_EXECUTION) -> list[RunResult | RunFailed]:
    """Train specs of one `group_key` together; one RunResult (or RunFailed) per spec, in order."""
    if not specs or len({group_key(spec) for spec in specs}) != 1 or len({s.run_id for s in specs}) != len(specs):
        raise ValueError("run_group needs distinct specs with the same data set, protocol, "
                         "training subset, batch size and epochs")
    devices.configure(threads, 1)
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    placement = devices.place(1)
    members = [_build(spec, data) for spec in specs]
    validation = _input(data.x_val, data.y_val, EVAL_BATCH_SIZE)
    steps_per_epoch = math.ceil(len(data.x_train) / specs[0].batch_size)
    started_at = datetime.now(timezone.utc)
    active = list(members)
    function = _steps_function(active)
    for epoch in range(specs[0].epochs):
        for member in active:
            for counter in (member.loss_sum, member.correct, member.seen):
                counter.assign(0.0)
        start = time.perf_counter()
        iterators = tuple(iter(member.train) for member in active)
        for first in range(0, steps_per_epoch, steps_per_execution):
            function(iterators, tf.constant(min(steps_per_execution, steps_per_epoch - first)))
        for member in active:
            # Keras's fit opens a second iterator at the end of every epoch, which draws the next
            # reshuffle seed; doing the same keeps every later epoch's batches equal to train.run's.
            iter(member.train)
        for member in active:
            seen = member.seen.numpy()
            member.history["loss"].append(float(member.loss_sum.numpy() / seen))
            member.history["accuracy"].append(float(member.correct.numpy() / seen))
            val_loss, val_accuracy = member.model.evaluate(validation, verbose=0)
            member.history["val_loss"].append(float(val_loss))
            member.history["val_accuracy"].append(float(val_accuracy))
        seconds = time.perf_counter() - start
        for member in active:
            member.seconds.append(seconds)
            member.train_seconds += seconds
            if not math.isfinite(member.history["loss"][-1]):
                member.error = (f"non-finite training loss in epoch {epoch + 1} "
                                f"(learning rate {member.spec.learning_rate})")
                member.done = True
            elif _early_stop(member, epoch):
                member.done = True
        if any(member.done for member in active):
            active = [member for member in active if not member.done]
            function = _steps_function(active) if active else None
        if not active:
            break
    results: list[RunResult | RunFailed] = []
    for member in members:
        if member.error:
            results.append(RunFailed(member.error))
            continue
        history, spec, info = member.history, member.spec, describe(member.model)
        test_loss, test_accuracy = final_test_scores(member.model, data, history)
        epochs_run = len(history["loss"])
        record = record_for(
            spec,
            params_total=info.params_total, params_trainable=info.params_trainable,
            params_non_trainable=info.params_non_trainable, layers=info.layers,
            macs_per_image=info.macs_per_image, epochs_run=epochs_run, stopped_early=epochs_run < spec.epochs,
            train_loss=history["loss"][-1], train_accuracy=history["accuracy"][-1],
            val_loss=history["val_loss"][-1], val_accuracy=history["val_accuracy"][-1],
            test_loss=test_loss, test_accuracy=test_accuracy,
            train_seconds=member.train_seconds,
            images_per_second=epochs_run * len(data.x_train) / member.train_seconds,
            started_at=started_at, finished_at=datetime.now(timezone.utc),
            devices=placement.devices, strategy=placement.strategy_name, replicas=placement.replicas,
            threads=placement.threads, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            tensorflow_version=tf.__version__, keras_version=keras.__version__, ray_version=_version("ray"),
            group_size=len(specs),
        )
        results.append(RunResult(record, _epoch_rows(spec, history, member.seconds)))
    return results
