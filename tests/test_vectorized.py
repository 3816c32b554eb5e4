"""K seeds as one vectorized computation (reducecnn.vectorized) against K separate train.run's.

Tolerance: members and separate runs start from the same weights and see the same batches
and shifts, but the arithmetic differs (grouped convolutions, batch norm and Adam in Keras
ops rather than TensorFlow's fused kernels), so they agree to rounding grown over the
steps: per-epoch losses within 0.5% relative, accuracies within 1 point, the same
early-stopping epoch, and (the baseline, whose test accuracy is meaningful after 2,000
images) test accuracy within 10 of 10,000 images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reducecnn import plan, train, vectorized
from reducecnn.config import BenchmarkConfig, RunSpec
from reducecnn.records import RunResult
from reducecnn.stacked import NotVectorizable, stack

REPO = Path(__file__).resolve().parents[1]


def _assert_same_run(mine: RunResult, separate: RunResult) -> None:
    assert mine.record.epochs_run == separate.record.epochs_run
    for a, b in zip(mine.epochs, separate.epochs, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=5e-3)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=5e-3)
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.01)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=0.01)


@pytest.fixture(scope="module")
def approach1_group(small_mnist):
    # Patience 0 stops seeds 0 and 2 after epoch 2 (val_loss rises); seed 1 (patience 5) goes on.
    specs = [RunSpec(model="approach1", seed=seed, epochs=3, patience=patience, train_limit=2_000)
             for seed, patience in ((0, 0), (1, 5), (2, 0))]
    return specs, vectorized.train_group(specs, small_mnist, threads=1)


def test_each_member_agrees_with_its_separate_run(small_mnist, approach1_group):
    specs, together = approach1_group
    for spec, mine in zip(specs, together):
        _assert_same_run(mine, train.run(spec, small_mnist, threads=1))
    assert [r.record.epochs_run for r in together] == [2, 3, 2]  # members stop alone


def test_members_are_ordinary_runs_with_their_own_row(approach1_group):
    specs, together = approach1_group
    assert [r.record.run_id for r in together] == [s.run_id for s in specs]
    for result in together:
        record = result.record
        assert (record.params_trainable, record.params_total, record.layers) == (3_418, 3_578, 10)
        assert (record.group_size, record.vectorized, record.status) == (3, True, "ok")
        assert [row["epoch"] for row in result.epochs] == list(range(1, record.epochs_run + 1))


def test_a_group_of_one_equals_a_separate_run_and_tests_within_a_few_images(small_mnist):
    spec = RunSpec(model="baseline", seed=4, epochs=2, train_limit=2_000)
    [mine] = vectorized.train_group([spec], small_mnist, threads=1)
    separate = train.run(spec, small_mnist, threads=1)
    _assert_same_run(mine, separate)
    assert abs(mine.record.test_accuracy - separate.record.test_accuracy) <= 10 / 10_000
    assert mine.record.test_accuracy > 0.8


def test_a_diverging_member_fails_alone(small_mnist):
    good = RunSpec(model="baseline", seed=0, epochs=2, train_limit=1_000)
    exploding = good.model_copy(update={"seed": 1, "learning_rate": 1e12})
    failed, ok = vectorized.train_group([exploding, good], small_mnist, threads=1)
    assert isinstance(failed, train.RunFailed) and "non-finite training loss" in str(failed)
    _assert_same_run(ok, train.run(good, small_mnist, threads=1))


def test_groups_hold_one_model_and_recipe_and_split_evenly():
    specs = BenchmarkConfig(seeds=tuple(range(5))).specs()  # 3 models x 5 seeds
    chunks = plan.groups(specs, 4)
    assert sorted(len(chunk) for chunk in chunks) == [2, 2, 2, 3, 3, 3]
    assert all(len({s.model for s in chunk}) == 1 for chunk in chunks)
    other_recipe = RunSpec(model="baseline", seed=9, augment_shift=1)
    assert [other_recipe] in plan.groups([*specs[:2], other_recipe], 64)
    assert len(plan.groups(specs, 1)) == 15


def test_members_must_share_model_and_recipe(small_mnist):
    with pytest.raises(ValueError, match="one model, data set and recipe"):
        vectorized.train_group([RunSpec(model="baseline", seed=0), RunSpec(model="approach1", seed=1)], small_mnist)


def test_an_unknown_layer_is_not_vectorizable():
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.5),
                              keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(NotVectorizable, match="Dropout"):
        stack([model, model])


def test_a_model_with_a_shared_layer_is_not_vectorizable():
    from reducecnn.models import MODELS

    with pytest.raises(NotVectorizable, match="Sequential"):
        stack([MODELS["share1k"](), MODELS["share1k"]()])


def test_the_same_trainer_runs_on_jax_without_tensorflow_or_ray(tmp_path):
    pytest.importorskip("jax")
    code = """
import json, sys
sys.modules["tensorflow"] = None; sys.modules["ray"] = None   # as on the GPU machine: neither installed
from reducecnn import data, vectorized
from reducecnn.config import RunSpec
splits = data.split(data.load("mnist"), "holdout", 1_000)
specs = [RunSpec(model="approach2", seed=s, epochs=1, train_limit=1_000, augment_shift=1) for s in (0, 1)]
print(json.dumps([r.record.__dict__ for r in vectorized.train_group(specs, splits)], default=str))
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [(r["status"], r["vectorized"], r["devices"], r["params_trainable"]) for r in records] == [
        ("ok", True, "CPU", 3_130)] * 2
    assert records[0]["train_loss"] != records[1]["train_loss"] and records[0]["train_loss"] < 2.5


@pytest.mark.parametrize("name", ["sep1k", "deep1k", "conv8k", "sep8k"])
def test_the_frontier_models_stack_to_their_own_predictions(name):
    import keras
    import numpy as np

    from reducecnn.models import MODELS

    models = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        models.append(MODELS[name]())
    stacked = stack(models)
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    together, _, _ = stacked.forward([keras.ops.convert_to_tensor(p) for p in stacked.params],
                                  [keras.ops.convert_to_tensor(s) for s in stacked.stats],
                                  np.concatenate([images, images], axis=-1), training=False)
    for k, model in enumerate(models):
        np.testing.assert_allclose(np.asarray(together)[:, k], np.asarray(model(images, training=False)), atol=1e-5)


def test_a_cosine_member_agrees_with_its_separate_run(small_mnist):
    # One schedule for both trainers (recipe.learning_rate): Keras's CosineDecay.
    spec = RunSpec(model="baseline", seed=2, epochs=2, train_limit=2_000, lr_schedule="cosine", learning_rate=0.005)
    [mine] = vectorized.train_group([spec], small_mnist, threads=1)
    _assert_same_run(mine, train.run(spec, small_mnist, threads=1))
