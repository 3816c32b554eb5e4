"""The frameworks and what a run sees: Keras loaded quietly on the backend asked for (the driver
kept off the GPU), TensorFlow's threads, GPU memory growth and logical CPUs, and the
tf.distribute strategy a run uses. The first trainer module a process loads: the others import
Keras at their top, so `load` runs before them.

TensorFlow is imported inside the functions that configure it: they run only under its
backend, and a JAX trainer (a GPU machine with JAX only) never loads it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

from reducecnn import logs
from reducecnn.config import UserError


def require_tensorflow(command: str) -> None:
    """Stop before any work when TensorFlow is missing (reducecnn installed without an extra)."""
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(f"`{command}` needs TensorFlow, which is not installed: pip install 'reducecnn[cpu]' "
                        "on laptops and CPU nodes, or 'reducecnn[gpu]' on CUDA nodes (from a checkout: "
                        "pip install -e '.[cpu]')")


def load(driver: bool = False) -> str:
    """Import Keras (and TensorFlow, its default backend) with their start-up lines hidden; returns
    Keras's backend ("tensorflow" or "jax").

    TensorFlow 2.21 writes `All log messages before absl::InitializeLog()` and its oneDNN notice
    to file descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says, so the descriptor
    points at /dev/null for the import only; an import error is still raised (and printed) after.
    `driver`: the process that plans (never trains), kept off the GPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if driver and os.environ.get("KERAS_BACKEND") == "jax" and "keras" not in sys.modules:
        # The driver only builds models to check and plan them: on JAX it would otherwise take
        # 75% of the GPU its own trainer needs (a one-GPU machine). Workers keep their devices.
        import jax  # JAX only where it is the backend, before Keras loads it

        jax.config.update("jax_platforms", "cpu")
    # Keras is imported here, not at the top: its backend comes from KERAS_BACKEND, which the
    # caller sets first, and TensorFlow's start-up lines must be hidden while it loads.
    if logs.verbose() or "keras" in sys.modules:
        import keras  # see above

        return keras.backend.backend()
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras  # see above
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return keras.backend.backend()


@dataclass(frozen=True)
class Placement:
    """The strategy a run trains under and the devices behind it."""

    strategy: Any
    strategy_name: str
    replicas: int
    devices: str
    threads: int


def configure(threads: int | None = None, cpu_devices: int = 1) -> None:
    """Set TF threads, GPU memory growth and logical CPUs; must run before TensorFlow's first op.

    In a process where TensorFlow is already initialised the settings can no longer change:
    the same values pass, different ones raise RuntimeError (a run must not silently use
    another thread count, since that changes its numbers).
    """
    import tensorflow as tf  # under its backend only (see the module's docstring)

    tf.config.experimental.enable_op_determinism()
    for gpu in tf.config.list_physical_devices("GPU"):
        # Without memory growth TF grabs the whole card and runs packed beside it fail.
        _set_or_check(lambda g=gpu: tf.config.experimental.set_memory_growth(g, True),
                      lambda g=gpu: tf.config.experimental.get_memory_growth(g), True, "GPU memory growth")
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        config = [tf.config.LogicalDeviceConfiguration()] * cpu_devices
        _set_or_check(lambda: tf.config.set_logical_device_configuration(cpu, config),
                      lambda: len(tf.config.list_logical_devices("CPU")), cpu_devices, "logical CPU devices")
    if threads is not None:
        threading = tf.config.threading
        _set_or_check(lambda: threading.set_intra_op_parallelism_threads(threads),
                      threading.get_intra_op_parallelism_threads, threads, "TF intra-op threads")
        _set_or_check(lambda: threading.set_inter_op_parallelism_threads(threads),
                      threading.get_inter_op_parallelism_threads, threads, "TF inter-op threads")


def _set_or_check(setter, getter, wanted, what: str) -> None:
    """Apply a setting, or accept it when TF is initialised and it already has the wanted value."""
    try:
        setter()
    except (RuntimeError, ValueError):
        current = getter()
        if current != wanted:
            raise RuntimeError(f"{what} is {current}, wanted {wanted}, and TensorFlow is already initialised") from None


def place(cpu_devices: int = 1) -> Placement:
    """Mirrored over all visible GPUs when there are 2+, or over logical CPUs when asked; else default."""
    import tensorflow as tf  # under its backend only (see the module's docstring)

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(gpus) >= 2:
        return Placement(tf.distribute.MirroredStrategy(gpus), "mirrored", len(gpus), ",".join(_short(gpus)), threads)
    if cpu_devices > 1 and not gpus:
        mirrored = cpus[:cpu_devices]
        return Placement(tf.distribute.MirroredStrategy(mirrored), "mirrored", len(mirrored),
                         ",".join(_short(mirrored)), threads)
    devices = "GPU:0" if gpus else "CPU"
    return Placement(tf.distribute.get_strategy(), "default", 1, devices, threads)


def _short(names: list[str]) -> list[str]:
    """'/job:localhost/replica:0/task:0/device:GPU:1' -> 'GPU:1'."""
    return [name.split("device:")[-1] for name in names]
