from __future__ import annotations

import pytest

from reducecnn.config import RunSpec
from reducecnn.models import MODELS, describe


@pytest.mark.parametrize("name, total, trainable, non_trainable, layers", [
    ("baseline", 591_786, 591_786, 0, 5),
    ("approach1", 3_578, 3_418, 160, 10),
    ("approach2", 3_226, 3_130, 96, 9),
    ("small", 1_918, 1_782, 136, 17),
    ("small2k", 2_130, 1_986, 144, 17),
    ("small2000", 2_148, 2_000, 148, 17),
    ("sep1k", 1_084, 992, 92, 17),
    ("deep1k", 1_076, 978, 98, 19),
    ("share1k", 1_086, 942, 144, 24),
    ("share1k6", 1_212, 984, 228, 33),
    ("share16", 1_245, 991, 254, 33),
    ("share1k9", 1_307, 997, 310, 42),
    ("share1k6s", 1_221, 987, 234, 33),
    ("conv8k", 8_054, 7_918, 136, 17),
    ("sep8k", 8_122, 7_786, 336, 17),
])
def test_models_match_the_study(name, total, trainable, non_trainable, layers):
    info = describe(MODELS[name]())
    assert (info.params_total, info.params_trainable, info.params_non_trainable, info.layers) == (
        total, trainable, non_trainable, layers)


def test_macs_count_convolutions_and_dense_layers():
    # baseline: conv 25*25*32*(4*4*1) = 320,000; dense 4608*128 + 128*10 = 591,104
    assert describe(MODELS["baseline"]()).macs_per_image == 320_000 + 591_104


def test_macs_count_a_shared_layer_once_per_application():
    # share1k6 applies its shared 10x10x14 separable block 3 more times than share1k:
    # 3 * 10*10 * 14 * (3*3 + 14) = 96,600
    assert describe(MODELS["share1k6"]()).macs_per_image - describe(MODELS["share1k"]()).macs_per_image == 96_600


def test_applications_without_offsets_add_no_trainable_weights():
    from reducecnn.models import _shared_net

    deeper = describe(_shared_net("deeper", repeats=9, width=16, stem=5, offsets=False))
    assert deeper.params_trainable == describe(MODELS["share16"]()).params_trainable == 991
    assert deeper.params_non_trainable == 254 + 3 * 2 * 16  # each application's moving mean and variance


def test_models_end_in_softmax_over_ten_classes():
    for builder in MODELS.values():
        model = builder()
        assert model.output_shape == (None, 10)
        assert model.layers[-1].activation.__name__ == "softmax"


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'aproach1' \(did you mean approach1\?\); known: approach1, approach2, baseline, conv8k, deep1k, sep1k, sep8k, share16, share1k, share1k6, share1k6s, share1k9, small, small2000, small2k"):
        RunSpec(model="aproach1", seed=0)


@pytest.mark.parametrize("name", ["small", "small2k", "small2000"])
def test_small_models_stay_within_two_thousand_trainable_parameters(name):
    assert describe(MODELS[name]()).params_trainable <= 2_000


@pytest.mark.parametrize("name, budget", [("sep1k", 1_000), ("deep1k", 1_000), ("share1k", 1_000), ("share1k6", 1_000), ("share16", 1_000), ("share1k9", 1_000), ("share1k6s", 1_000), ("conv8k", 8_000), ("sep8k", 8_000)])
def test_frontier_models_stay_within_their_budgets(name, budget):
    assert describe(MODELS[name]()).params_trainable <= budget


@pytest.mark.parametrize("scale", [True, False])
def test_fused_batch_norm_agrees_with_keras_layer(scale):
    import keras
    import numpy as np
    import tensorflow as tf

    from reducecnn.models import batch_norm

    inputs = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 4)), tf.float32)
    fused, plain = batch_norm(scale=scale), keras.layers.BatchNormalization(scale=scale)
    for layer in (fused, plain):
        layer.build(inputs.shape)
    if scale:
        for layer in (fused, plain):
            layer.gamma.assign([0.5, 1.0, 2.0, 3.0])
    for layer in (fused, plain):
        layer.beta.assign([0.1, -0.2, 0.3, 0.0])
    results = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
            loss = tf.reduce_sum(outputs * tf.range(4, dtype=tf.float32))
        gradients = tape.gradient(loss, [inputs, *layer.trainable_weights])
        results.append([outputs, *gradients, layer.moving_mean, layer.moving_variance,
                        layer(inputs, training=False)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-4)
    # The moving variance moved toward the biased batch variance, not the Bessel-corrected one.
    np.testing.assert_allclose(np.asarray(fused.moving_variance),
                               0.99 + 0.01 * np.var(np.asarray(inputs), axis=(0, 1, 2)), rtol=1e-5)


@pytest.mark.parametrize("name", ["approach1", "approach2", "small2000"])
def test_training_step_uses_the_fused_batch_norm_kernel(name):
    import tensorflow as tf

    model = MODELS[name]()

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(images, training=True))
        return tape.gradient(loss, model.trainable_weights)

    graph = step.get_concrete_function(tf.TensorSpec((4, 28, 28, 1))).graph
    kinds = [op.type for op in graph.get_operations()]
    norms = sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers)
    assert kinds.count("FusedBatchNormV3") == norms > 0
    assert kinds.count("FusedBatchNormGradV3") == norms


def test_plain_keras_batch_norm_on_request(monkeypatch):
    import keras

    from reducecnn import models

    monkeypatch.setattr(models, "FUSED_BATCH_NORM", False)
    norms = [layer for layer in MODELS["approach1"]().layers if "BatchNormalization" in type(layer).__name__]
    assert len(norms) == 3 and all(type(layer) is keras.layers.BatchNormalization for layer in norms)


def test_the_catalog_reads_the_registry_keras_builds():
    from reducecnn import catalog

    assert catalog.registered() == tuple(MODELS)
