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
