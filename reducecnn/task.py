"""The Ray task body, in a module of its own: a worker imports only what training needs.

Ray loads a task's function by importing its module in the worker. The runner module also
imports the Parquet store (pandas, pyarrow) and the progress bar, which a worker never uses:
0.4 s more before each fresh worker's first run (every run on GPUs, where each run gets a
fresh process).
"""

from __future__ import annotations

import os

import ray

from reducecnn import data
from reducecnn.config import RunSpec
from reducecnn.train import RunResult, failed_record, with_fields


def train_task(specs: list[RunSpec], arrays: tuple, dataset_name: str, threads: int,
               cpu_devices: int) -> list[RunResult]:
    """Rebuild the splits from the shared arrays and train the runs, one or a group."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    from reducecnn import group, train

    dataset = data.Dataset(dataset_name, "ray object store", "", *arrays)
    splits = data.split(dataset, specs[0].protocol, specs[0].train_limit)
    if len(specs) == 1:
        outcomes = [train.run(specs[0], splits, threads=threads, cpu_devices=cpu_devices)]
    else:
        outcomes = group.run_group(specs, splits, threads=threads)
    node = ray.get_runtime_context().get_node_id()
    return [failure(spec, outcome) if isinstance(outcome, Exception)
            else RunResult(with_fields(outcome.record, ray_node_id=node), outcome.epochs)
            for spec, outcome in zip(specs, outcomes)]


def failure(spec: RunSpec, error: Exception) -> RunResult:
    """A failed record from whatever a run raised (its own exception or a dead worker)."""
    cause = getattr(error, "cause", None) or error
    message = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
    return RunResult(failed_record(spec, f"{type(cause).__name__}: {message}"[:2000]))
