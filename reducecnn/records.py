"""What one run leaves behind: its record (a row of the runs table) and its per-epoch rows.

The one schema definition: the store derives its Arrow schemas from these dataclasses
(`store.RUNS_SCHEMA`, `store.EPOCHS_SCHEMA`), so a field added here is a column there.
Imports no framework and no pyarrow: Ray workers build records, the driver writes them.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone

import reducecnn
from reducecnn.config import RunSpec

# Arrow type of a field where its Python annotation is not enough (int is int64 otherwise).
INT32 = {"arrow": "int32"}


@dataclass(frozen=True, kw_only=True)
class RunKey:
    """The leading columns of both tables: which run, of which benchmark, model, seed, data set and protocol."""

    run_id: str
    benchmark: str = ""
    model: str
    seed: int
    dataset: str
    protocol: str


def key_of(spec: RunSpec) -> dict:
    """A spec's RunKey fields but `benchmark` (the driver sets it when it writes)."""
    return {"run_id": spec.run_id, "model": spec.model, "seed": spec.seed, "dataset": spec.dataset,
            "protocol": spec.protocol}


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunKey):
    """One row of the runs table (docs/reference.md, 'The runs table'); fields in column order."""

    status: str = "ok"
    error: str | None = None
    params_total: int | None = None
    params_trainable: int | None = None
    params_non_trainable: int | None = None
    layers: int | None = field(default=None, metadata=INT32)
    macs_per_image: int | None = None
    max_epochs: int = field(metadata=INT32)
    batch_size: int = field(metadata=INT32)
    patience: int = field(metadata=INT32)
    train_limit: int | None
    learning_rate: float | None = None
    lr_schedule: str | None = None
    augment_shift: int | None = field(default=None, metadata=INT32)
    epochs_run: int | None = field(default=None, metadata=INT32)
    stopped_early: bool | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    train_seconds: float | None = None
    images_per_second: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    host: str | None = None
    ray_node_id: str | None = None
    devices: str | None = None
    strategy: str | None = None
    replicas: int | None = field(default=None, metadata=INT32)
    threads: int | None = field(default=None, metadata=INT32)
    peak_rss_mb: float | None = None
    group_size: int | None = field(default=1, metadata=INT32)
    vectorized: bool | None = False
    backend: str | None = None  # Keras backend: "tensorflow" or "jax"
    group_id: str | None = None  # the vectorized group (one trainer's computation) the run trained in
    group_seconds: float | None = None  # the group's wall time until this member stopped, compilation included
    compile_seconds: float | None = None  # the group's time compiling loops: 0.0 when its shape was compiled before
    tensorflow_version: str | None = None
    keras_version: str | None = None
    ray_version: str | None = None
    reducecnn_version: str = reducecnn.__version__
    spec_json: str


@dataclass(frozen=True, kw_only=True)
class EpochRow(RunKey):
    """One row of the epochs table: a run's metrics after one epoch (1-based)."""

    epoch: int = field(metadata=INT32)
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    epoch_seconds: float


@dataclass(frozen=True)
class RunResult:
    """A run's record and its per-epoch history rows."""

    record: RunRecord
    epochs: list[dict] = field(default_factory=list)


def record_for(spec: RunSpec, **fields) -> RunRecord:
    """A record carrying the spec's identity; `fields` fill in the results."""
    return RunRecord(
        **key_of(spec), max_epochs=spec.epochs, batch_size=spec.batch_size,
        patience=spec.patience, train_limit=spec.train_limit, spec_json=spec.model_dump_json(),
        learning_rate=spec.learning_rate, lr_schedule=spec.lr_schedule, augment_shift=spec.augment_shift,
        host=socket.gethostname(), **fields,
    )


def failed_record(spec: RunSpec, error: str, **fields) -> RunRecord:
    """The record of a run that raised: kept, so nothing disappears silently."""
    now = datetime.now(timezone.utc)
    return record_for(spec, status="failed", error=error, finished_at=now, **fields)


def with_fields(record: RunRecord, **fields) -> RunRecord:
    """A copy of the record with some fields replaced (benchmark name, Ray node)."""
    return dataclasses.replace(record, **fields)


def epoch_rows(spec: RunSpec, history: dict[str, list[float]], seconds: list[float]) -> list[dict]:
    """History as one row per epoch (1-based), the epochs table's columns but `benchmark`."""
    return [
        {
            **key_of(spec), "epoch": index + 1,
            "loss": history["loss"][index], "accuracy": history["accuracy"][index],
            "val_loss": history["val_loss"][index], "val_accuracy": history["val_accuracy"][index],
            "epoch_seconds": seconds[index] if index < len(seconds) else math.nan,
        }
        for index in range(len(history["loss"]))
    ]


def package_version(package: str) -> str | None:
    """The installed version of a package, None where it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
