"""Model builders as a user writes them, for `--models tests/user_models.py:tiny` (tests only).

Each returns an uncompiled Keras model for 28x28x1 images and 10 classes, or (the bad ones)
something reducecnn must refuse in one line.
"""

import keras


def tiny():
    """A 1,418-parameter CNN: two small convolutions, global average pooling, softmax."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="tiny")


def raises():
    raise RuntimeError("the builder is broken")


def not_a_model():
    return "a model, honestly"


def wrong_input():
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def wrong_output():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(7, activation="softmax")])


def logits():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


def l2():
    """tiny with an L2 kernel penalty: trains differently without its penalty, so never stacked."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="l2")


def overflow():
    """Seed-dependent: for seeds where Python's seeded `random` draws below 0.5 (seed 1, not
    seed 0) the convolutions' kernels are 1e25, so the second convolution's outputs overflow
    float32 while every weight stays finite."""
    import random

    huge = random.random() < 0.5
    init = keras.initializers.Constant(1e25) if huge else "glorot_uniform"
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", kernel_initializer=init),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=init),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="overflow")
