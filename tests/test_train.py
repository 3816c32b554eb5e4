from __future__ import annotations

import json
import math

import pytest

from reducecnn import records, train
from reducecnn.config import RunSpec


@pytest.fixture(scope="module")
def approach2_result(small_mnist):
    return train.run(RunSpec(model="approach2", seed=3, epochs=1, train_limit=2_000), small_mnist, threads=1)


def test_same_spec_same_numbers(small_mnist, approach2_result):
    again = train.run(RunSpec(model="approach2", seed=3, epochs=1, train_limit=2_000), small_mnist, threads=1)
    first, second = approach2_result.record, again.record
    assert (first.train_loss, first.val_loss, first.test_loss, first.test_accuracy) == (
        second.train_loss, second.val_loss, second.test_loss, second.test_accuracy)


def test_other_seed_other_numbers(small_mnist, approach2_result):
    other = train.run(RunSpec(model="approach2", seed=4, epochs=1, train_limit=2_000), small_mnist, threads=1)
    assert other.record.train_loss != approach2_result.record.train_loss


def test_record_describes_the_run(approach2_result):
    record = approach2_result.record
    assert (record.status, record.epochs_run, record.params_trainable, record.layers) == ("ok", 1, 3_130, 9)
    assert (record.strategy, record.replicas, record.devices, record.threads) == ("default", 1, "CPU", 1)
    assert record.images_per_second == pytest.approx(2_000 / record.train_seconds)
    assert json.loads(record.spec_json)["seed"] == 3 and record.run_id.startswith("approach2-s3-")


def test_history_has_one_row_per_epoch(small_mnist):
    result = train.run(RunSpec(model="baseline", seed=0, epochs=2, train_limit=1_000), small_mnist, threads=1)
    assert [row["epoch"] for row in result.epochs] == [1, 2]
    assert result.epochs[-1]["val_loss"] == result.record.val_loss


def test_baseline_learns_from_a_small_subset(small_mnist):
    # approach1/2 are not checked: their BatchNorm statistics need more steps (PLATFORM.md).
    record = train.run(RunSpec(model="baseline", seed=0, epochs=1, train_limit=2_000), small_mnist, threads=1).record
    assert record.test_accuracy > 0.8


def test_non_finite_loss_fails_the_run(small_mnist):
    spec = RunSpec(model="baseline", seed=0, epochs=3, train_limit=1_000, learning_rate=1e12)
    with pytest.raises(train.RunFailed, match="non-finite"):
        train.run(spec, small_mnist, threads=1)


def test_failed_record_keeps_spec_and_error():
    record = records.failed_record(RunSpec(model="baseline", seed=2), "boom")
    assert (record.status, record.error, record.seed, record.test_accuracy) == ("failed", "boom", 2, None)
    assert not math.isnan(record.finished_at.timestamp())


def test_steps_per_execution_changes_speed_not_numbers(small_mnist, approach2_result):
    spec = RunSpec(model="approach2", seed=3, epochs=1, train_limit=2_000)
    one_step = train.run(spec, small_mnist, threads=1, steps_per_execution=1).record
    assert (one_step.train_loss, one_step.test_loss) == (approach2_result.record.train_loss,
                                                         approach2_result.record.test_loss)


def test_cosine_schedule_and_shifts_train_and_change_the_numbers(small_mnist, approach2_result):
    spec = RunSpec(model="approach2", seed=3, epochs=1, train_limit=2_000, lr_schedule="cosine", augment_shift=2)
    record = train.run(spec, small_mnist, threads=1).record
    assert record.status == "ok" and record.train_loss != approach2_result.record.train_loss
    again = train.run(spec, small_mnist, threads=1).record
    assert again.train_loss == record.train_loss  # augmentation is seeded too


def test_study_protocol_reuses_the_last_validation_as_the_test_evaluation(mnist):
    import dataclasses

    from reducecnn import data

    study = data.split(mnist, "study", train_limit=1_000)
    assert study.x_val is study.x_test  # the study validates on the test set itself
    copied = dataclasses.replace(study, x_val=study.x_val.copy(), y_val=study.y_val.copy())
    spec = RunSpec(model="approach2", seed=0, protocol="study", epochs=1, train_limit=1_000)
    reused = train.run(spec, study, threads=1).record
    evaluated = train.run(spec, copied, threads=1).record  # not the same arrays: evaluates again
    assert (reused.test_loss, reused.test_accuracy) == (evaluated.test_loss, evaluated.test_accuracy)
    assert (reused.test_loss, reused.test_accuracy) == (reused.val_loss, reused.val_accuracy)


def test_fused_adam_follows_keras_adam_to_rounding():
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    start = rng.normal(size=(64, 10)).astype("float32")
    gradients = [rng.normal(size=(64, 10)).astype("float32") for _ in range(5)]
    spec = RunSpec(model="approach2", seed=0, learning_rate=0.01)
    weights = []
    for optimizer in (train.adam(spec, 1_000), keras.optimizers.Adam(learning_rate=0.01)):
        variable = keras.Variable(start)
        for gradient in gradients:
            optimizer.apply([tf.constant(gradient)], [variable])
        weights.append(variable.numpy())
    assert not np.allclose(weights[0], start, atol=1e-3)
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)  # steps move ~1e-2


def test_fused_adam_is_one_kernel_per_variable():
    import keras
    import tensorflow as tf

    optimizer = train.adam(RunSpec(model="approach2", seed=0), 1_000)
    variables = [keras.Variable(tf.zeros((3, 3))), keras.Variable(tf.zeros((3,)))]
    optimizer.build(variables)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    graph = step.get_concrete_function([tf.TensorSpec((3, 3)), tf.TensorSpec((3,))]).graph
    kernels = [op.type for op in graph.get_operations() if op.type == "ResourceApplyAdam"]
    assert kernels == ["ResourceApplyAdam"] * 2
