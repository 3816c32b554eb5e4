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
])
def test_models_match_the_study(name, total, trainable, non_trainable, layers):
    info = describe(MODELS[name]())
    assert (info.params_total, info.params_trainable, info.params_non_trainable, info.layers) == (
        total, trainable, non_trainable, layers)


def test_macs_count_convolutions_and_dense_layers():
    # baseline: conv 25*25*32*(4*4*1) = 320,000; dense 4608*128 + 128*10 = 591,104
    assert describe(MODELS["baseline"]()).macs_per_image == 320_000 + 591_104


def test_models_end_in_softmax_over_ten_classes():
    for builder in MODELS.values():
        model = builder()
        assert model.output_shape == (None, 10)
        assert model.layers[-1].activation.__name__ == "softmax"


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'aproach1'; known: approach1, approach2, baseline, small, small2000, small2k"):
        RunSpec(model="aproach1", seed=0)


@pytest.mark.parametrize("name", ["small", "small2k", "small2000"])
def test_small_models_stay_within_two_thousand_trainable_parameters(name):
    assert describe(MODELS[name]()).params_trainable <= 2_000
