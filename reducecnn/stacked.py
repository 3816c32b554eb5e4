"""K copies of one Keras model (one per seed) as ONE set of stacked weights and one forward pass.

Written in Keras 3's backend-neutral ops, so it runs under TensorFlow and under JAX. Layouts:
a feature map is [batch, H, W, K*C] with seed k's channels at k*C .. (k+1)*C - 1, so a
convolution over the K seeds is a grouped convolution with the seeds as groups, max pooling
and ReLU act per channel, and batch norm per (seed, channel) is exactly each seed's own batch
statistics; after Flatten or global pooling a tensor is [batch, K, F] and a dense layer is a
batched matrix product over stacked [K, F, units] kernels. Each seed has its own input images
(channel k of the input). A layer this module does not know raises NotVectorizable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from reducecnn.models import builder

ELEMENTWISE = {"linear", "relu", "sigmoid", "tanh", "elu", "selu", "gelu", "silu", "swish", "softplus", "relu6"}


class NotVectorizable(Exception):
    """The model has a layer (or setting) the stacked form does not cover."""


@dataclass(frozen=True)
class Slot:
    """Where the seeds lie in a stacked array: `axis` holds K blocks of `per_seed` entries each."""

    axis: int
    per_seed: int


@dataclass
class StackedModel:
    """Stacked initial weights, their slots, and the forward pass over K seeds."""

    seeds: int
    params: list[np.ndarray] = field(default_factory=list)
    param_slots: list[Slot] = field(default_factory=list)
    stats: list[np.ndarray] = field(default_factory=list)
    stat_slots: list[Slot] = field(default_factory=list)
    layers: list[tuple[Callable, int, int]] = field(default_factory=list)  # (fn, params used, stats used)

    def forward(self, params: list, stats: list, images, training: bool) -> tuple[Any, list, Any]:
        """images [B, H, W, K] -> probabilities [B, K, classes], the updated batch-norm statistics,
        and per member whether any activation went non-finite ([K] bool, before `finite` zeroed it)."""
        x, new_stats, p, s = images, [], 0, 0
        overflowed = ops.zeros((self.seeds,), "bool")
        for fn, n_params, n_stats in self.layers:
            x, updated, bad = fn(x, params[p:p + n_params], stats[s:s + n_stats], training)
            new_stats += updated
            if bad is not None:
                overflowed = ops.logical_or(overflowed, bad)
            p, s = p + n_params, s + n_stats
        return x, new_stats, overflowed


def per_seed(values, shape: tuple, slot: Slot, seeds: int):
    """A [K] vector broadcastable against an array of `shape` whose seeds lie in `slot`."""
    expanded = ops.repeat(values, slot.per_seed) if slot.per_seed > 1 else values
    target = [1] * len(shape)
    target[slot.axis] = seeds * slot.per_seed
    return ops.reshape(expanded, target)


def nonfinite_by_member(x, seeds: int):
    """[K] bool: does member k's block of the last axis hold a non-finite value anywhere?"""
    by_member = ops.reshape(x, (-1, seeds, x.shape[-1] // seeds))
    return ops.logical_not(ops.all(ops.isfinite(by_member), axis=(0, 2)))


def finite(x):
    """Identity for finite values; non-finite values, and non-finite gradients flowing back, become 0.

    Around convolutions: TensorFlow's CPU kernel for a grouped convolution's filter gradient
    lets a NaN of one group (a diverging member) into every group's gradient, which would fail
    every member of the group. What was zeroed is not hidden: the convolutions report each
    member's non-finite outputs (`nonfinite_by_member`), and such a member fails alone, as its
    separate run would.
    """
    @ops.custom_gradient
    def _finite(values):
        def gradient(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return ops.where(ops.isfinite(upstream), upstream, ops.zeros_like(upstream))

        return ops.where(ops.isfinite(values), values, ops.zeros_like(values)), gradient

    return _finite(x)


def _activation(layer_or_fn, flat: bool) -> Callable:
    name = getattr(layer_or_fn, "__name__", "")
    if name in ELEMENTWISE or (flat and name in ("softmax", "log_softmax")):
        return layer_or_fn
    raise NotVectorizable(f"activation {name or layer_or_fn!r} {'' if flat else 'on feature maps '}is not supported")


def _concat(arrays: list[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate(arrays, axis=axis).astype(np.float32)


def stack(models: list) -> StackedModel:
    """The stacked form of K built Keras models of one architecture (their current weights)."""
    if not isinstance(models[0], keras.Sequential):
        raise NotVectorizable("only keras.Sequential models are supported (no branches or shared layers)")
    _check_training_is_plain(models[0])
    stacked = StackedModel(seeds=len(models))
    flat = False
    for position, layer in enumerate(models[0].layers):
        members = [model.layers[position] for model in models]
        flat = _add_layer(stacked, layer, members, flat)
    if not flat:
        raise NotVectorizable("the model must end in a dense layer or global pooling")
    return stacked


def _check_training_is_plain(model) -> None:
    """The stacked trainer minimises the cross-entropy with Adam and nothing else: a model that
    adds to its loss (regularizers, `add_loss`), constrains its weights or trains its own way
    would train differently stacked, so it is not vectorized."""
    for method in ("train_step", "compute_loss"):
        if getattr(type(model), method) is not getattr(keras.Sequential, method):
            raise NotVectorizable(f"a custom {method} is not supported")
    for layer in model.layers:
        config = layer.get_config()
        for key, value in config.items():
            if value is not None and key.endswith(("_regularizer", "_constraint")):
                what = value.get("class_name", value) if isinstance(value, dict) else value
                raise NotVectorizable(f"{type(layer).__name__} has a {key.replace('_', ' ')} ({what}): "
                                      "penalties and constraints are not in the stacked form")
    if model.losses:
        raise NotVectorizable("the model adds its own losses (add_loss), which the stacked form leaves out")


def _add(stacked: StackedModel, fn: Callable, params=(), stats=()) -> None:
    for array, slot in params:
        stacked.params.append(array)
        stacked.param_slots.append(slot)
    for array, slot in stats:
        stacked.stats.append(array)
        stacked.stat_slots.append(slot)
    stacked.layers.append((fn, len(params), len(stats)))


def _add_layer(stacked: StackedModel, layer, members: list, flat: bool) -> bool:
    """Append one layer's stacked weights and function; returns whether the output is [B, K, F]."""
    kind, k = type(layer).__name__, stacked.seeds
    config = layer.get_config()
    weights = [member.get_weights() for member in members]
    if kind in ("Conv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D") and flat:
        raise NotVectorizable(f"{kind} after Flatten is not supported")
    if config.get("data_format", "channels_last") != "channels_last":
        raise NotVectorizable(f"{kind}: only channels_last is supported")
    if kind == "Conv2D":
        if tuple(config["dilation_rate"]) != (1, 1) or config["groups"] != 1:
            raise NotVectorizable("Conv2D with dilation or groups is not supported")
        act, strides, padding, bias = _activation(layer.activation, False), config["strides"], config["padding"], config["use_bias"]
        out = config["filters"]
        params = [(_concat([w[0] for w in weights], 3), Slot(3, out))]
        params += [(_concat([w[1] for w in weights], 0), Slot(0, out))] if bias else []

        def conv(x, p, s, training):
            raw = ops.conv(finite(x), p[0], strides=strides, padding=padding)
            return act(finite(raw) + p[1] if bias else finite(raw)), [], nonfinite_by_member(raw, k)

        _add(stacked, conv, params)
    elif kind == "SeparableConv2D":
        if config["depth_multiplier"] != 1 or tuple(config["dilation_rate"]) != (1, 1):
            raise NotVectorizable("SeparableConv2D with a depth multiplier or dilation is not supported")
        act, strides, padding, bias = _activation(layer.activation, False), config["strides"], config["padding"], config["use_bias"]
        channels_in, out = weights[0][0].shape[2], config["filters"]
        params = [(_concat([w[0] for w in weights], 2), Slot(2, channels_in)),
                  (_concat([w[1] for w in weights], 3), Slot(3, out))]
        params += [(_concat([w[2] for w in weights], 0), Slot(0, out))] if bias else []

        def separable(x, p, s, training):
            depthwise = ops.depthwise_conv(finite(x), p[0], strides=strides, padding=padding)
            raw = ops.conv(finite(depthwise), p[1])
            bad = ops.logical_or(nonfinite_by_member(depthwise, k), nonfinite_by_member(raw, k))
            return act(finite(raw) + p[2] if bias else finite(raw)), [], bad

        _add(stacked, separable, params)
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        pool = ops.max_pool if kind == "MaxPooling2D" else ops.average_pool
        size, strides, padding = config["pool_size"], config["strides"], config["padding"]
        _add(stacked, lambda x, p, s, training: (pool(x, size, strides, padding), [], None))
    elif kind == "GlobalAveragePooling2D":
        if config.get("keepdims"):
            raise NotVectorizable("GlobalAveragePooling2D(keepdims=True) is not supported")

        def global_pool(x, p, s, training):
            return ops.reshape(ops.mean(x, axis=(1, 2)), (-1, k, x.shape[-1] // k)), [], None

        _add(stacked, global_pool)
        return True
    elif kind == "Flatten":
        if not flat:
            def flatten(x, p, s, training):
                _, height, width, channels = x.shape
                per = channels // k
                y = ops.transpose(ops.reshape(x, (-1, height, width, k, per)), (0, 3, 1, 2, 4))
                return ops.reshape(y, (-1, k, height * width * per)), [], None

            _add(stacked, flatten)
        return True
    elif kind == "Dense":
        if not flat:
            raise NotVectorizable("Dense on feature maps (without Flatten) is not supported")
        act, bias = _activation(layer.activation, True), config["use_bias"]
        params = [(np.stack([w[0] for w in weights]).astype(np.float32), Slot(0, 1))]
        params += [(np.stack([w[1] for w in weights]).astype(np.float32), Slot(0, 1))] if bias else []

        def dense(x, p, s, training):
            y = ops.einsum("bkf,kfu->bku", x, p[0])
            return act(y + p[1] if bias else y), [], None

        _add(stacked, dense, params)
        return True
    elif kind == "BatchNormalization":
        _add_batch_norm(stacked, layer, weights, flat)
    elif kind in ("ReLU", "Activation"):
        if kind == "ReLU" and (config["max_value"] is not None or config["negative_slope"] or config["threshold"]):
            raise NotVectorizable("ReLU with max_value, negative_slope or threshold is not supported")
        act = ops.relu if kind == "ReLU" else _activation(layer.activation, flat)
        _add(stacked, lambda x, p, s, training: (act(x), [], None))
    else:
        raise NotVectorizable(f"layer {kind} is not supported")
    return flat


def _add_batch_norm(stacked: StackedModel, layer, weights: list, flat: bool) -> None:
    """Batch norm per (seed, channel): the seed's own batch statistics and moving averages."""
    config = layer.get_config()
    if config["axis"] not in (-1, 3 if not flat else 2) or config.get("renorm") or config.get("synchronized"):
        raise NotVectorizable("BatchNormalization must normalise the last axis, without renorm or synchronisation")
    scale, center, epsilon, momentum = config["scale"], config["center"], config["epsilon"], config["momentum"]
    channels = weights[0][-1].shape[0]
    # Keras's weight order: gamma (if scale), beta (if center), moving_mean, moving_variance.
    if flat:
        join, slot = (lambda arrays: np.stack(arrays).astype(np.float32)), Slot(0, 1)
    else:
        join, slot = (lambda arrays: _concat(arrays, 0)), Slot(0, channels)
    columns = list(zip(*weights))
    params = [(join(list(column)), slot) for column in columns[:-2]]
    stats = [(join(list(column)), slot) for column in columns[-2:]]
    axes = (0,) if flat else (0, 1, 2)

    def batch_norm(x, p, s, training):
        gamma = p[0] if scale else None
        beta = p[int(scale)] if center else None
        if training:
            mean, variance = ops.moments(x, axes=axes)
            updated = [s[0] * momentum + mean * (1.0 - momentum), s[1] * momentum + variance * (1.0 - momentum)]
        else:
            (mean, variance), updated = s, []
        inverse = ops.rsqrt(variance + epsilon)
        if gamma is not None:
            inverse = inverse * gamma
        shift = -mean * inverse if beta is None else beta - mean * inverse
        return x * inverse + shift, updated, None

    _add(stacked, batch_norm, params, stats)


@functools.cache
def refusal(model: str, source: str | None = None) -> str | None:
    """Why the stacked form cannot reproduce this model exactly (a layer it does not cover,
    regularizers, constraints, random layers, a custom train step), or None when it can.
    Builds the model once; the planner asks for each model of a benchmark."""
    try:
        stack([builder(model, source)()])
    except NotVectorizable as error:
        return str(error)
    return None
