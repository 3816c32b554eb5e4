"""Run records <-> Parquet: one file per run, written atomically, on any pyarrow filesystem."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from reducecnn.config import RunSpec, UserError
from reducecnn.train import RunRecord

SCHEMA_VERSION = 1
_METADATA = {b"reducecnn_schema_version": str(SCHEMA_VERSION).encode()}
_TIMESTAMP = pa.timestamp("us", tz="UTC")

RUNS_SCHEMA = pa.schema([
    ("schema_version", pa.int32()), ("run_id", pa.string()), ("benchmark", pa.string()),
    ("model", pa.string()), ("seed", pa.int64()), ("dataset", pa.string()), ("protocol", pa.string()),
    ("status", pa.string()), ("error", pa.string()),
    ("params_total", pa.int64()), ("params_trainable", pa.int64()), ("params_non_trainable", pa.int64()),
    ("layers", pa.int32()), ("macs_per_image", pa.int64()),
    ("max_epochs", pa.int32()), ("batch_size", pa.int32()), ("patience", pa.int32()), ("train_limit", pa.int64()),
    ("learning_rate", pa.float64()), ("lr_schedule", pa.string()), ("augment_shift", pa.int32()),
    ("epochs_run", pa.int32()), ("stopped_early", pa.bool_()),
    ("train_loss", pa.float64()), ("train_accuracy", pa.float64()),
    ("val_loss", pa.float64()), ("val_accuracy", pa.float64()),
    ("test_loss", pa.float64()), ("test_accuracy", pa.float64()),
    ("train_seconds", pa.float64()), ("images_per_second", pa.float64()),
    ("started_at", _TIMESTAMP), ("finished_at", _TIMESTAMP),
    ("host", pa.string()), ("ray_node_id", pa.string()), ("devices", pa.string()),
    ("strategy", pa.string()), ("replicas", pa.int32()), ("threads", pa.int32()), ("peak_rss_mb", pa.float64()),
    ("group_size", pa.int32()), ("vectorized", pa.bool_()), ("backend", pa.string()), ("group_id", pa.string()),
    ("group_seconds", pa.float64()), ("compile_seconds", pa.float64()),
    ("tensorflow_version", pa.string()), ("keras_version", pa.string()),
    ("ray_version", pa.string()), ("reducecnn_version", pa.string()), ("spec_json", pa.string()),
], metadata=_METADATA)

EPOCHS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("benchmark", pa.string()), ("model", pa.string()), ("seed", pa.int64()),
    ("dataset", pa.string()), ("protocol", pa.string()), ("epoch", pa.int32()),
    ("loss", pa.float64()), ("accuracy", pa.float64()),
    ("val_loss", pa.float64()), ("val_accuracy", pa.float64()), ("epoch_seconds", pa.float64()),
], metadata=_METADATA)


@dataclass(frozen=True)
class Location:
    """A benchmark's result folder on some filesystem (local path or URI such as s3://...)."""

    filesystem: pafs.FileSystem
    path: str

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)


def locate(out: str, name: str) -> Location:
    """Where results of benchmark `name` live under `out` (a path or any pyarrow.fs URI)."""
    try:
        filesystem, path = pafs.FileSystem.from_uri(out)
    except (pa.ArrowInvalid, ValueError):
        from pathlib import Path

        filesystem, path = pafs.LocalFileSystem(), str(Path(out).resolve())
    except OSError as error:
        raise UserError(f"--out {out}: {error}") from None
    return Location(filesystem, f"{path.rstrip('/')}/{name}")


def prepare(location: Location) -> None:
    """Create runs/ and epochs/ and prove they are writable; UserError naming the problem."""
    parent = location.path.rsplit("/", 1)[0]
    for path in (parent, location.path):
        try:
            is_file = location.filesystem.get_file_info(path).type == pafs.FileType.File
        except (OSError, pa.ArrowException) as error:
            raise UserError(f"output {path} is not writable: {str(error).splitlines()[0]}") from None
        if is_file:
            raise UserError(f"output {path} is a file, not a folder")
    for folder in ("runs", "epochs"):
        path = location.join(folder)
        info = location.filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise UserError(f"output {path} is a file, not a folder")
        try:
            location.filesystem.create_dir(path, recursive=True)
            if location.is_local:
                probe = location.join(folder, f".probe-{uuid.uuid4().hex}")
                location.filesystem.open_output_stream(probe).close()
                location.filesystem.delete_file(probe)
        except (OSError, pa.ArrowException) as error:
            raise UserError(f"output {path} is not writable: {str(error).splitlines()[0]}") from None


def _write_atomically(table: pa.Table, location: Location, folder: str, run_id: str) -> None:
    """Write to a dot-name readers ignore, then rename into place (object stores put whole objects)."""
    final = location.join(folder, f"{run_id}.parquet")
    if not location.is_local:
        pq.write_table(table, final, filesystem=location.filesystem)
        return
    temporary = location.join(folder, f".{run_id}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, temporary, filesystem=location.filesystem)
        location.filesystem.move(temporary, final)
    finally:
        if location.filesystem.get_file_info(temporary).type != pafs.FileType.NotFound:
            location.filesystem.delete_file(temporary)


def record_table(record: RunRecord) -> pa.Table:
    """One record as a one-row table of the runs schema."""
    row = dataclasses.asdict(record) | {"schema_version": SCHEMA_VERSION}
    return pa.Table.from_pylist([row], schema=RUNS_SCHEMA)


def epochs_table(record: RunRecord, epochs: list[dict]) -> pa.Table:
    """Per-epoch rows of one run, tagged with its benchmark."""
    rows = [row | {"benchmark": record.benchmark} for row in epochs]
    return pa.Table.from_pylist(rows, schema=EPOCHS_SCHEMA)


@contextlib.contextmanager
def _exclusive(location: Location):
    """Hold the results folder's write lock (local folders; object stores have no locks)."""
    if not location.is_local:
        yield
        return
    with open(location.join(".write.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _status(location: Location, run_id: str) -> str | None:
    """The status of the run's record on disk; None when there is none (or it cannot be read)."""
    path = location.join("runs", f"{run_id}.parquet")
    if location.filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        return _read_checked(path, location, columns=["status"]).column("status")[0].as_py()
    except ValueError:
        return None


def write_run(record: RunRecord, epochs: list[dict], location: Location) -> bool:
    """Write a run's epochs, then its record, unless an ok record of that run is already there.

    The one rule for every writer (drivers, `reducecnn train`, two benchmarks on one folder):
    a record never replaces a more final one. ok replaces failed; failed never replaces ok; a
    second ok leaves the first (and its epochs) in place. Returns False when it wrote nothing.
    A record on disk means its epochs are there too.
    """
    with _exclusive(location):
        if _status(location, record.run_id) == "ok":
            return False
        if epochs:
            _write_atomically(epochs_table(record, epochs), location, "epochs", record.run_id)
        _write_atomically(record_table(record), location, "runs", record.run_id)
    return True


def _parquet_files(location: Location, folder: str) -> list[str]:
    """The visible .parquet files of a folder (temporary dot-files excluded), sorted."""
    selector = pafs.FileSelector(location.join(folder), allow_not_found=True)
    return sorted(
        info.path for info in location.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
    )


def _read_checked(path: str, location: Location, columns: list[str] | None = None) -> pa.Table:
    """Read one file, insisting on our schema version; ValueError saying what is wrong."""
    try:
        file_schema = pq.read_schema(path, filesystem=location.filesystem)
        version = (file_schema.metadata or {}).get(b"reducecnn_schema_version")
        if version is None:
            raise ValueError("not a reducecnn results file")
        if version != _METADATA[b"reducecnn_schema_version"]:
            raise ValueError(f"schema version {version.decode()}, this reducecnn reads {SCHEMA_VERSION}")
        return pq.read_table(path, filesystem=location.filesystem, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"not valid Parquet ({str(error).splitlines()[0]})") from None


# Recipe fields that became columns after files were first written: read from spec_json there.
RECIPE_COLUMNS = ("learning_rate", "lr_schedule", "augment_shift")


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast to the current schema; a column added since the file was written reads as null,
    except the recipe columns, which every record's spec_json holds (defaults where a spec
    predates the field)."""
    for missing in (f for f in schema if f.name not in table.column_names):
        values = pa.nulls(len(table), missing.type)
        if missing.name in RECIPE_COLUMNS and "spec_json" in table.column_names:
            default = RunSpec.model_fields[missing.name].default
            specs = [json.loads(text) if text else {} for text in table.column("spec_json").to_pylist()]
            values = pa.array([spec.get(missing.name, default) for spec in specs], missing.type)
        table = table.append_column(missing, values)
    return table.select(schema.names).cast(schema)


def read_table(location: Location, folder: str = "runs") -> tuple[pd.DataFrame, list[str]]:
    """All readable files of runs/ or epochs/ as one frame, plus a warning per skipped file."""
    schema = RUNS_SCHEMA if folder == "runs" else EPOCHS_SCHEMA
    tables, warnings = [], []
    for path in _parquet_files(location, folder):
        try:
            tables.append(_conform(_read_checked(path, location), schema))
        except ValueError as error:
            warnings.append(f"skipped {path}: {error}")
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table.to_pandas(), warnings


def recorded_ok(location: Location) -> set[str]:
    """Run ids that already have a successful record (resume skips them).

    An unreadable file stops the benchmark (UserError) rather than being overwritten:
    the user decides what to do with it.
    """
    done = set()
    for path in _parquet_files(location, "runs"):
        try:
            table = _read_checked(path, location, columns=["run_id", "status"])
        except ValueError as error:
            raise UserError(f"{path}: {error}; move it out of the results folder") from None
        done.update(row["run_id"] for row in table.to_pylist() if row["status"] == "ok")
    return done


def read_config(location: Location) -> str | None:
    """The config.json the last invocation saved beside the results; None when there is none."""
    path = location.join("config.json")
    if location.filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with location.filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def write_config(location: Location, config_json: str) -> None:
    """Save the benchmark's config beside its results (overwritten by each invocation)."""
    path = location.join("config.json")
    with location.filesystem.open_output_stream(path) as stream:
        stream.write(config_json.encode())
