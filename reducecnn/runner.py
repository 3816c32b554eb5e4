"""Ray: (model, seed) runs as tasks, alone or a few together, results written by the driver as they arrive."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
from tqdm import tqdm

from reducecnn import data, logs
from reducecnn.config import BenchmarkConfig, RunSpec
from reducecnn.train import RunResult, failed_record, with_fields
from reducecnn.vectorized import groups

if TYPE_CHECKING:
    from reducecnn import store

DEFAULT_GPU_FRACTION = 0.125  # GPUs per task when the cluster has GPUs: up to eight tasks share one GPU
# Seeds per vectorized task where tasks get a GPU: approach1 at K=64 ran 7.1x eight packed separate
# runs on an H100 (docs/performance.md); on CPUs one run per task stays the default (grouped
# convolutions are slow on TensorFlow's CPU kernels).
GPU_GROUP_SIZE = 64


@dataclass(frozen=True)
class Outcome:
    """What a benchmark invocation did."""

    location: store.Location
    total: int
    skipped: int
    ok: int
    failed: int
    wall_seconds: float


def connect(address: str | None) -> str | None:
    """Join the cluster at `address` (or $RAY_ADDRESS, or one `ray start` left here), else start
    a local Ray; returns the dashboard URL, if any."""
    if ray.is_initialized():
        return None
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        context = ray.init(address=address, **logs.ray_init_options())
    else:
        # A laptop run: the dashboard (and the Jobs API behind it) listens on localhost only.
        context = ray.init(dashboard_host="127.0.0.1", **logs.ray_init_options())
    return context.dashboard_url or None


def _train_task(specs: list[RunSpec], arrays: tuple, dataset_name: str, threads: int,
                cpu_devices: int, verbose: bool = False) -> list[RunResult]:
    """Ray task body: rebuild the splits from the shared arrays and train the runs, one or a vectorized group."""
    logs.set_verbose(verbose)
    logs.import_frameworks()  # before anything imports TensorFlow
    from reducecnn import train, vectorized

    dataset = data.Dataset(dataset_name, "ray object store", "", *arrays)
    splits = data.split(dataset, specs[0].protocol, specs[0].train_limit)
    outcomes: list = []
    if len(specs) > 1:
        try:
            outcomes = vectorized.train_group(specs, splits, threads=threads)
        except vectorized.NotVectorizable:
            outcomes = []  # a layer the stacked form does not cover: train the runs one by one
    for spec in specs[len(outcomes):]:
        try:
            outcomes.append(train.run(spec, splits, threads=threads, cpu_devices=cpu_devices))
        except train.RunFailed as error:
            outcomes.append(error)
    node = ray.get_runtime_context().get_node_id()
    return [_failure(spec, outcome) if isinstance(outcome, Exception)
            else RunResult(with_fields(outcome.record, ray_node_id=node), outcome.epochs)
            for spec, outcome in zip(specs, outcomes)]


def group_size(config: BenchmarkConfig, gpus_per_task: float) -> int:
    """Runs per task: --runs-per-task, else GPU_GROUP_SIZE where a task gets (part of) one GPU, else 1."""
    if config.runs_per_task is not None:
        return config.runs_per_task
    return GPU_GROUP_SIZE if 0 < gpus_per_task < 2 else 1


def task_resources(config: BenchmarkConfig) -> dict:
    """Ray task options for one run, from the config and what the cluster has."""
    gpus = config.gpus_per_run
    if gpus is None:
        gpus = DEFAULT_GPU_FRACTION if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {
        "num_cpus": config.cpus_per_run,
        "num_gpus": gpus,
        "resources": dict(config.resources_per_run),
        "max_retries": config.max_retries,
        "scheduling_strategy": "SPREAD",
    }


def _failure(spec: RunSpec, error: Exception) -> RunResult:
    """A failed record from whatever the task raised (its own exception or a dead worker)."""
    cause = getattr(error, "cause", None) or error
    message = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
    return RunResult(failed_record(spec, f"{type(cause).__name__}: {message}"[:2000]))


def _line(result: RunResult) -> str:
    """One line per finished run for the log."""
    record = result.record
    if record.status != "ok":
        return f"FAILED {record.model} seed {record.seed}: {record.error}"
    return (f"ok {record.model} seed {record.seed}: test accuracy {record.test_accuracy:.4f}, "
            f"{logs.plural(record.epochs_run, 'epoch')} in {record.train_seconds:.0f} s"
            + logs.chance_hint(record.test_accuracy))


def run_benchmark(config: BenchmarkConfig, dataset: data.Dataset, location: store.Location,
                  specs: list[RunSpec] | None = None) -> Outcome:
    """Train every spec (default: the config's) not yet recorded ok, writing each record as it finishes."""
    # Imported here, not at the top: a Ray worker imports this module for `_train_task`, and
    # the store's pandas and pyarrow would cost it 0.4 s before its first run (every run on GPUs).
    from reducecnn import store

    start = time.perf_counter()
    specs = config.specs() if specs is None else specs
    done = store.recorded_ok(location)
    todo = [spec for spec in specs if spec.run_id not in done]
    print(f"{logs.plural(len(specs), 'run')} ({config.shape()}) in {config.name}: "
          f"{len(specs) - len(todo)} already recorded, {len(todo)} to train",
          file=sys.stderr)
    ok = failed = 0
    if todo:
        dashboard = connect(config.address)
        if dashboard:
            print(f"Ray dashboard: http://{dashboard.removeprefix('http://')}", file=sys.stderr)
        arrays_ref = ray.put((dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test))
        options = task_resources(config)
        threads = max(1, round(config.cpus_per_run))
        # GPU runs get a fresh process each (max_calls=1) so a finished run hands its GPU memory
        # back. CPU workers are reused (0 = no limit): TensorFlow's import and start-up cost seconds
        # per run, and every run of a benchmark asks for the same threads, fixed per process.
        remote = ray.remote(max_calls=1 if options["num_gpus"] else 0)(_train_task)
        # Seeds of one model and recipe go together, up to K per task, as one vectorized
        # computation (reducecnn/vectorized.py); K = 1 on CPUs unless --runs-per-task says otherwise.
        chunks = groups(todo, group_size(config, options["num_gpus"]))
        print(f"{logs.plural(len(todo), 'run')} in {logs.plural(len(chunks), 'task')}", file=sys.stderr)
        pending = {
            remote.options(**options).remote(chunk, arrays_ref, dataset.name, threads, config.cpu_devices,
                                             logs.verbose()): chunk
            for chunk in chunks
        }
        with tqdm(total=len(todo), unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
            while pending:
                # A timeout keeps the driver returning to Python, so Ctrl-C interrupts it at once.
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready:
                    continue
                [finished] = ready
                chunk = pending.pop(finished)
                try:
                    results = ray.get(finished)
                except (ray.exceptions.RayTaskError, ray.exceptions.RayError) as error:
                    results = [_failure(spec, error) for spec in chunk]
                for result in results:
                    record = with_fields(result.record, benchmark=config.name)
                    written = store.write_run(record, result.epochs, location)
                    # A run another writer already recorded ok counts as ok, whatever this copy gave.
                    ok, failed = ok + (record.status == "ok" or not written), failed + (record.status != "ok" and written)
                    bar.write(_line(result) + ("" if written else "; an ok record was already there: kept it, "
                                               "this result not written"), file=sys.stderr)
                    bar.update()
    return Outcome(location, len(specs), len(specs) - len(todo), ok, failed, time.perf_counter() - start)
