"""What runs inside Ray workers: one run per task, and the long-lived group trainer (an actor
holding one GPU, or a CPU slot) that streams each member's result the moment it stops."""

from __future__ import annotations

import threading
from typing import Iterator

import ray

from reducecnn import data, devices, logs
from reducecnn.config import RunSpec
from reducecnn.records import RunResult, failed_record, with_fields

# What a device says when a group does not fit (XLA, TensorFlow, CUDA): the driver splits the group.
OUT_OF_MEMORY = ("RESOURCE_EXHAUSTED", "out of memory", "OOM when allocating", "ResourceExhaustedError")


class GroupOutOfMemory(Exception):
    """A vectorized group did not fit on its device; the driver retries it in halves."""


def failure(spec: RunSpec, error: BaseException) -> RunResult:
    """A failed record from whatever training raised (its own exception or a dead worker)."""
    cause = getattr(error, "cause", None) or error
    message = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
    return RunResult(failed_record(spec, f"{type(cause).__name__}: {message}"[:2000]))


def _splits(arrays: tuple, dataset_name: str, spec: RunSpec) -> data.Splits:
    dataset = data.Dataset(dataset_name, "ray object store", "", *arrays)
    return data.split(dataset, spec.protocol, spec.train_limit)


def train_task(spec: RunSpec, arrays: tuple, dataset_name: str, threads: int, cpu_devices: int,
               verbose: bool = False) -> RunResult:
    """Ray task body: one run with TensorFlow (`train.run`), from the shared arrays."""
    logs.set_verbose(verbose)
    backend = devices.load()
    if backend != "tensorflow":
        return failure(spec, RuntimeError(
            f"a single run trains with TensorFlow, but this worker's Keras backend is {backend} "
            "(KERAS_BACKEND): install reducecnn[cpu] on the node, or unset KERAS_BACKEND for tasks"))
    # Trainers import Keras (and train.py TensorFlow) at their top, so they load after
    # devices.load() and the backend check; the driver imports this module too, and never trains.
    from reducecnn import train

    try:
        result = train.run(spec, _splits(arrays, dataset_name, spec), threads=threads, cpu_devices=cpu_devices)
    except train.RunFailed as error:
        return failure(spec, error)
    return RunResult(with_fields(result.record, ray_node_id=ray.get_runtime_context().get_node_id()), result.epochs)


class GroupTrainer:
    """One per GPU (or CPU slot), alive for the whole benchmark: the data set on the device once,
    compiled loops cached by shape (`vectorized.Session`), groups taken from the driver with one
    queued ahead (max_concurrency=2: the next group's models are built on the host while this
    one trains), each member's result yielded the moment it stops."""

    def __init__(self, dataset_name: str, threads: int, verbose: bool = False):
        logs.set_verbose(verbose)
        backend = devices.load()
        from reducecnn import vectorized  # after devices.load() (see train_task)

        if backend == "tensorflow":
            devices.configure(threads, 1)
        self.dataset_name, self.threads = dataset_name, threads
        self.session = vectorized.Session()
        self.splits: dict[tuple, data.Splits] = {}
        self.device = threading.Lock()  # one group on the device at a time
        self.host = threading.Lock()    # model building seeds Keras's global generator
        self.node = ray.get_runtime_context().get_node_id()

    def ready(self) -> str:
        """Answered once the actor is placed and started (the driver hands it groups from then on)."""
        return self.node

    def _data(self, arrays: tuple, spec: RunSpec) -> data.Splits:
        """The split this spec trains on, made (and later put on the device) once per trainer."""
        key = (spec.protocol, spec.train_limit)
        if key not in self.splits:
            self.splits[key] = _splits(arrays, self.dataset_name, spec)
        return self.splits[key]

    def train(self, group_id: str, specs: list[RunSpec], arrays: tuple) -> Iterator[RunResult]:
        """Train one group; yield each member's RunResult (ok or failed) as it stops. `arrays` come
        with each call (zero-copy from the object store): a restarted trainer needs nothing else."""
        from reducecnn import vectorized  # loaded by __init__ (after devices.load()): a dictionary lookup

        splits = self._data(arrays, specs[0])
        try:
            with self.host:
                prepared = vectorized.prepare(specs, splits, self.session)
            with self.device:
                for index, outcome in vectorized.train_members(prepared, splits, self.session, group_id=group_id):
                    if isinstance(outcome, Exception):
                        yield failure(specs[index], outcome)
                    else:
                        yield RunResult(with_fields(outcome.record, ray_node_id=self.node), outcome.epochs)
        except Exception as error:  # noqa: BLE001 - the driver decides: split, or record as failed
            if any(marker in str(error) for marker in OUT_OF_MEMORY):
                raise GroupOutOfMemory(f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"[:2000]) from None
            raise
