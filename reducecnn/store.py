"""Run records <-> Parquet on any pyarrow filesystem: appended as parts, compacted, each run once.

A benchmark folder holds runs/ and epochs/, each read as one table by `pd.read_parquet(folder)`:
- `part-<stamp>-<hex>.parquet`: the ok records of one `write_runs` call (runs/) and their epoch
  rows (epochs/, the same name). Never rewritten: an ok record is final.
- `<run_id>.parquet`: one run's record; failed records (replaced when the run is retried), an ok
  record replacing a failed one on local folders, and every file of versions before 0.7.
- `compact-<hex>.parquet`: ok records (and their epochs) folded from the files above.
Compaction on local folders builds the folder's next state beside it (hard links and the new
file) and swaps the two directories in one rename(2) (RENAME_EXCHANGE), so at every moment a
reader sees each run exactly once. Object stores have no such swap: there the compacted object
is written before the parts it replaces are deleted, and reducecnn's readers drop duplicates.
docs/storage.md has the design and its measurements.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from reducecnn.config import RunSpec, UserError
from reducecnn.records import EpochRow, RunRecord

SCHEMA_VERSION = 1  # columns are only ever added (nullable), so files of every version read alike
_METADATA = {b"reducecnn_schema_version": str(SCHEMA_VERSION).encode()}
_PYTHON_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                 "datetime": pa.timestamp("us", tz="UTC")}


def arrow_schema(record_type: type, leading: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """The Arrow schema of a records dataclass: its fields in order, typed from their annotations."""
    fields = [pa.field(item.name, pa.type_for_alias(item.metadata["arrow"]) if "arrow" in item.metadata
                       else _PYTHON_TYPES[str(item.type).split(" | ")[0]])
              for item in dataclasses.fields(record_type)]
    return pa.schema([*leading, *fields], metadata=_METADATA)


RUNS_SCHEMA = arrow_schema(RunRecord, leading=(pa.field("schema_version", pa.int32()),))
EPOCHS_SCHEMA = arrow_schema(EpochRow)
FOLDERS = ("runs", "epochs")
# Fold loose files into a compacted one once this many have piled up (a driver also compacts at
# the end of its benchmark); compacted files of one order of magnitude are merged when 10 exist.
COMPACT_AT = 500
MERGE_AT = 10
_COMPACTED = "compact-"


@dataclass(frozen=True)
class Location:
    """A benchmark's result folder on some filesystem (local path or URI such as s3://...)."""

    filesystem: pafs.FileSystem
    path: str
    uri: str = ""  # how the user named it (s3://bucket/prefix/name), for messages and pandas

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def show(self, *parts: str) -> str:
        """A path as the user would type it (the URI's scheme kept)."""
        return "/".join([(self.uri or self.path).rstrip("/"), *parts])


def is_uri(out: str) -> bool:
    """Whether `out` names a remote filesystem (s3://, gs://, ...) rather than a local path."""
    return "://" in out and not out.startswith("file://")


def locate(out: str, name: str) -> Location:
    """Where results of benchmark `name` live under `out` (a path or any pyarrow.fs URI)."""
    if not is_uri(out):
        path = str(pathlib.Path(out.removeprefix("file://")).resolve())
        return Location(pafs.LocalFileSystem(), f"{path.rstrip('/')}/{name}")
    try:
        filesystem, path = pafs.FileSystem.from_uri(out)
    except (pa.ArrowInvalid, ValueError) as error:
        raise UserError(f"--out {out}: {str(error).splitlines()[0]}") from None
    except OSError as error:
        raise UserError(f"--out {out}: {remote_hint(str(error))}") from None
    return Location(filesystem, f"{path.rstrip('/')}/{name}", f"{out.rstrip('/')}/{name}")


def remote_hint(error: str) -> str:
    """An object store's error as one line that says what to set."""
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    detail = first.rsplit("Details: ", 1)[-1].rsplit("error detail: ", 1)[-1]
    if any(word in first for word in ("resolve", "curlCode", "connect", "Connection")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        where = f"AWS_ENDPOINT_URL={endpoint}" if endpoint else "AWS's default endpoint"
        return (f"cannot reach the object store at {where} ({detail}); set AWS_ENDPOINT_URL to the store's "
                "address (or AWS_DEFAULT_REGION for AWS itself) and check the network")
    if any(word in first for word in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "credentials",
                                      "Forbidden", "403")):
        return (f"access denied ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                "to credentials that may write there")
    return first


def _check_bucket(location: Location) -> None:
    """Stop with one line when a bucket does not exist or cannot be written, before any work."""
    bucket = location.path.split("/", 1)[0]
    try:
        info = location.filesystem.get_file_info(bucket)
    except (OSError, pa.ArrowException) as error:
        raise UserError(f"bucket {bucket}: {remote_hint(str(error))}") from None
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"bucket {bucket} does not exist (or AWS_ENDPOINT_URL points to another store); "
                        "create it or fix --out")
    probe = location.join("runs", f".probe-{uuid.uuid4().hex}")
    try:
        location.filesystem.open_output_stream(probe).close()
        location.filesystem.delete_file(probe)
    except (OSError, pa.ArrowException) as error:
        raise UserError(f"bucket {bucket}: {remote_hint(str(error))}") from None


def prepare(location: Location) -> None:
    """Create runs/ and epochs/ and prove they are writable; UserError naming the problem."""
    if not location.is_local:
        _check_bucket(location)
        return
    parent = location.path.rsplit("/", 1)[0]
    for path in (parent, location.path):
        try:
            is_file = location.filesystem.get_file_info(path).type == pafs.FileType.File
        except (OSError, pa.ArrowException) as error:
            raise UserError(f"output {path} is not writable: {str(error).splitlines()[0]}") from None
        if is_file:
            raise UserError(f"output {path} is a file, not a folder")
    for folder in FOLDERS:
        path = location.join(folder)
        info = location.filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise UserError(f"output {path} is a file, not a folder")
        try:
            location.filesystem.create_dir(path, recursive=True)
            probe = location.join(folder, f".probe-{uuid.uuid4().hex}")
            location.filesystem.open_output_stream(probe).close()
            location.filesystem.delete_file(probe)
        except (OSError, pa.ArrowException) as error:
            raise UserError(f"output {path} is not writable: {str(error).splitlines()[0]}") from None


def record_table(records: list[RunRecord]) -> pa.Table:
    """Records as a table of the runs schema."""
    columns = {name: [getattr(record, name) for record in records] for name in RUNS_SCHEMA.names[1:]}
    return pa.Table.from_pydict({"schema_version": [SCHEMA_VERSION] * len(records)} | columns, schema=RUNS_SCHEMA)


def epochs_table(record: RunRecord, epochs: list[dict]) -> pa.Table:
    """Per-epoch rows of one run, tagged with its benchmark."""
    columns = {name: [row.get(name) for row in epochs] for name in EPOCHS_SCHEMA.names}
    return pa.Table.from_pydict(columns | {"benchmark": [record.benchmark] * len(epochs)}, schema=EPOCHS_SCHEMA)


def _write_parquet(table: pa.Table, path: str, location: Location) -> None:
    """Write a whole file where readers see it complete or not at all (a dot-name, then rename,
    on local folders; object stores put whole objects)."""
    # A few rows (a part, compacted soon): plain pages write 25% faster; compacted files compress.
    options = {"write_statistics": False, "use_dictionary": False, "compression": "none"} if table.num_rows < 1000 else {}
    if not location.is_local:
        pq.write_table(table, path, filesystem=location.filesystem, **options)
        return
    folder, name = path.rsplit("/", 1)
    temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, temporary, **options)
        os.rename(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def _exclusive(location: Location):
    """Hold the results folder's write lock (local folders; object stores have no locks); every
    writer bumps the generation it keeps, so other processes know their index is stale."""
    if not location.is_local:
        yield
        return
    handle = os.open(location.join(".write.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        before = _generation(location)
        try:
            yield
        finally:
            os.pwrite(handle, f"{before + 1:020d}".encode(), 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def _generation(location: Location) -> int:
    """How many times writers changed this local folder (0 before the first)."""
    try:
        with open(location.join(".write.lock"), "rb") as handle:
            text = handle.read(20)
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _read_checked(path: str, location: Location, columns: list[str] | None = None) -> pa.Table:
    """Read one file, insisting on our schema version; ValueError saying what is wrong."""
    try:
        file = pq.ParquetFile(location.filesystem.open_input_file(path))
        version = (file.schema_arrow.metadata or {}).get(b"reducecnn_schema_version")
        if version is None:
            raise ValueError("not a reducecnn results file")
        if version != _METADATA[b"reducecnn_schema_version"]:
            raise ValueError(f"schema version {version.decode()}, this reducecnn reads {SCHEMA_VERSION}")
        if columns is not None:
            columns = [name for name in columns if name in file.schema_arrow.names]
        return file.read(columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"not valid Parquet ({str(error).splitlines()[0]})") from None


@dataclass
class _Index:
    """What one folder's runs/ holds, read incrementally: each file's ok and failed run ids."""

    stamp: tuple = ()
    files: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    ok: set[str] = field(default_factory=set)
    epochs_stamp: tuple = ()
    epochs: set[str] = field(default_factory=set)
    # The parts this process wrote since its last compaction, by folder and name: compaction
    # takes them from here rather than reading them back (parts are never rewritten).
    written: dict[tuple[str, str], pa.Table] = field(default_factory=dict)


_INDEXES: dict[tuple[str, str], _Index] = {}


def _names(location: Location, folder: str) -> list[str]:
    """The visible .parquet file names of a folder (dot- and underscore-names are not data)."""
    selector = pafs.FileSelector(location.join(folder), allow_not_found=True)
    return sorted(
        info.base_name for info in location.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
    )


def _stamp(location: Location, folder: str, writes: int = 0) -> tuple:
    """Changes whenever a local folder's entries change: the writers' generation, and the folder's
    inode and mtime for writers that keep none; () on object stores, which are listed every time."""
    if not location.is_local:
        return ()
    try:
        stat = os.stat(location.join(folder))
    except FileNotFoundError:
        return ()
    return (_generation(location) + writes, stat.st_ino, stat.st_mtime_ns)


def _index(location: Location) -> _Index:
    """The folder's index, brought up to date by reading only the files that are new since."""
    index = _INDEXES.setdefault((type(location.filesystem).__name__, location.path), _Index())
    stamp = _stamp(location, "runs")
    if stamp and stamp == index.stamp:
        return index
    names = set(_names(location, "runs"))
    gone = (set(index.files) | set(index.errors)) - names
    for name in gone:
        index.files.pop(name, None)
        index.errors.pop(name, None)
    for name in sorted(names - set(index.files) - set(index.errors)):
        try:
            table = _read_checked(location.join("runs", name), location, columns=["run_id", "status"])
        except ValueError as error:
            index.errors[name] = str(error)
            continue
        ids, statuses = table.column("run_id").to_pylist(), table.column("status").to_pylist()
        ok = frozenset(run_id for run_id, status in zip(ids, statuses) if status == "ok")
        index.files[name] = (ok, frozenset(ids) - ok)
        index.ok |= ok
    if gone:
        index.ok = set().union(*(ok for ok, _ in index.files.values()))
    index.stamp = stamp
    return index


def _epoch_names(location: Location, index: _Index) -> set[str]:
    """epochs/'s file names, listed again only when the folder changed."""
    stamp = _stamp(location, "epochs")
    if not stamp or stamp != index.epochs_stamp:
        index.epochs = set(_names(location, "epochs"))
        index.epochs_stamp = stamp
    return index.epochs


def recorded_ok(location: Location) -> set[str]:
    """Run ids that already have a successful record (resume skips them); reads only the files
    new since the last call in this process, and of those only two columns.

    An unreadable file stops the benchmark (UserError) rather than being overwritten:
    the user decides what to do with it.
    """
    index = _index(location)
    if index.errors:
        name, error = sorted(index.errors.items())[0]
        raise UserError(f"{location.show('runs', name)}: {error}; move it out of the results folder")
    return set(index.ok)


def write_run(record: RunRecord, epochs: list[dict], location: Location) -> bool:
    """Write one run's epochs, then its record, unless an ok record of that run is there already;
    returns False when it wrote nothing. `write_runs` writes many at once, faster."""
    return write_runs([(record, epochs)], location)[0]


def write_runs(results: list[tuple[RunRecord, list[dict]]], location: Location) -> list[bool]:
    """Write runs' epochs, then their records; durable when this returns. For each, whether it
    was written: False where an ok record of the run was there already.

    The one rule for every writer (drivers, `reducecnn train`, two benchmarks on one folder):
    a record never replaces a more final one. ok replaces failed; failed never replaces ok; a
    second ok leaves the first (and its epochs) in place. A record on disk means its epochs are
    there too. The ok records go into one new part file (never into a name a failed record could
    be written to, so no race with another driver can replace them).
    """
    with _exclusive(location):
        index = _index(location)
        epoch_names = _epoch_names(location, index)
        if location.is_local:
            _drop_orphan_epochs(location, index)
        chosen = _most_final(results)
        written, parts, singles = [], [], []
        for position, (record, epochs) in enumerate(results):
            fresh = record.run_id not in index.ok and chosen[record.run_id] == position
            written.append(fresh)
            if not fresh:
                continue
            single = f"{record.run_id}.parquet"
            # Locally, an ok record takes over its run's failed file by rename: the run is never
            # seen twice. Object stores keep ok records in parts and delete the failed file after.
            if record.status != "ok" or (location.is_local and (single in index.files or single in epoch_names)):
                singles.append((record, epochs))
            else:
                parts.append((record, epochs))
        if parts:
            _write_part(parts, location, index)
        for record, epochs in singles:
            _write_single(record, epochs, location, index)
        if location.is_local and sum(1 for name in index.files if not name.startswith(_COMPACTED)) >= COMPACT_AT:
            try:
                _compact_locked(location)
            except OSError as error:  # e.g. a filesystem without hard links: the records are written
                index.stamp = index.epochs_stamp = ()
                _warn_once(f"results in {location.show()} are not compacted ({error}); they read as before, slower")
        # What the folders' stamps will be once the lock is released: the next call lists nothing.
        index.stamp, index.epochs_stamp = _stamp(location, "runs", 1), _stamp(location, "epochs", 1)
    return written


def _most_final(results: list[tuple[RunRecord, list[dict]]]) -> dict[str, int]:
    """Per run id in a batch, the position of the record to write: its first ok, else its last."""
    chosen: dict[str, int] = {}
    for position, (record, _) in enumerate(results):
        previous = chosen.get(record.run_id)
        if previous is None or (results[previous][0].status != "ok"):
            chosen[record.run_id] = position
    return chosen


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Say something to the user once per process (stderr)."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


def _write_part(results: list[tuple[RunRecord, list[dict]]], location: Location, index: _Index) -> None:
    """Ok records and their epochs as one new part in epochs/ and runs/ (epochs first)."""
    name = f"part-{time.time_ns()}-{uuid.uuid4().hex}.parquet"
    tables = [epochs_table(record, epochs) for record, epochs in results if epochs]
    if tables:
        epochs = pa.concat_tables(tables)
        _write_parquet(epochs, location.join("epochs", name), location)
        index.epochs.add(name)
        index.written["epochs", name] = epochs
    records = [record for record, _ in results]
    runs = record_table(records)
    _write_parquet(runs, location.join("runs", name), location)
    index.written["runs", name] = runs
    ok = frozenset(record.run_id for record in records)
    index.files[name] = (ok, frozenset())
    index.ok |= ok
    if not location.is_local:
        # A failed record of these runs, by this or another driver (listed again: it may have
        # landed after this driver looked), is stale now.
        stale = {f"{run_id}.parquet" for run_id in ok}
        for folder in FOLDERS:
            for old in stale.intersection(_names(location, folder)):
                with contextlib.suppress(FileNotFoundError):
                    location.filesystem.delete_file(location.join(folder, old))


def _write_single(record: RunRecord, epochs: list[dict], location: Location, index: _Index) -> None:
    """One run's own file in epochs/ and runs/, replacing what was there (a failed record)."""
    name = f"{record.run_id}.parquet"
    if epochs:
        _write_parquet(epochs_table(record, epochs), location.join("epochs", name), location)
        index.epochs.add(name)
    _write_parquet(record_table([record]), location.join("runs", name), location)
    ok = frozenset([record.run_id]) if record.status == "ok" else frozenset()
    index.files[name] = (ok, frozenset([record.run_id]) - ok)
    index.ok |= ok
    if not location.is_local and not ok and record.run_id in _index(location).ok:
        # Another driver recorded this run ok meanwhile (object stores have no lock): this
        # failed record is stale, and goes.
        for folder in FOLDERS:
            with contextlib.suppress(FileNotFoundError):
                location.filesystem.delete_file(location.join(folder, name))


# Recipe fields that became columns after files were first written: read from spec_json there.
RECIPE_COLUMNS = ("learning_rate", "lr_schedule", "augment_shift")


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast to the current schema; a column added since the file was written reads as null,
    except the recipe columns, which every record's spec_json holds (defaults where a spec
    predates the field)."""
    if table.schema.equals(schema):
        return table
    present = set(table.column_names)
    for missing in [item for item in schema if item.name not in present]:
        values = pa.nulls(len(table), missing.type)
        if missing.name in RECIPE_COLUMNS and "spec_json" in table.column_names:
            default = RunSpec.model_fields[missing.name].default
            specs = [json.loads(text) if text else {} for text in table.column("spec_json").to_pylist()]
            values = pa.array([spec.get(missing.name, default) for spec in specs], missing.type)
        table = table.append_column(missing, values)
    return table.select(schema.names).cast(schema)


def _read_files(location: Location, folder: str, names: list[str],
                written: dict[tuple[str, str], pa.Table] | None = None) -> tuple[list[pa.Table], list[str]]:
    """Files of one folder conformed to today's schema, and a warning per file skipped. Parts this
    process wrote come from memory; other parts and compacted files (this version's) are read
    together, many threads at once; the rest one by one."""
    schema = RUNS_SCHEMA if folder == "runs" else EPOCHS_SCHEMA
    tables = [written[folder, name] for name in names if (folder, name) in (written or {})]
    names = [name for name in names if (folder, name) not in (written or {})]
    ours = [name for name in names if name.startswith(("part-", _COMPACTED))]
    warnings = []
    if len(ours) > 1:
        try:
            paths = [location.join(folder, name) for name in ours]
            tables.append(pads.dataset(paths, schema=schema, format="parquet",
                                       filesystem=location.filesystem).to_table())
            names = [name for name in names if name not in set(ours)]
        except (pa.ArrowException, OSError):
            pass  # one of them is unreadable: read each, to name it
    for name in names:
        try:
            tables.append(_conform(_read_checked(location.join(folder, name), location), schema))
        except ValueError as error:
            warnings.append(f"skipped {location.show(folder, name)}: {error}")
    return tables, warnings


def _once_per_run(table: pa.Table, folder: str) -> pa.Table:
    """Each run once (its ok record first), each epoch once: what object stores may briefly
    hold twice while a record or a compaction replaces another."""
    keys = ["run_id"] if folder == "runs" else ["run_id", "epoch"]
    if table.num_rows == 0 or table.group_by(keys).aggregate([]).num_rows == table.num_rows:
        return table
    frame = table.select(keys + (["status"] if folder == "runs" else [])).to_pandas()
    order = frame.sort_values("status", key=lambda s: s != "ok", kind="stable").index if folder == "runs" else frame.index
    keep = frame.loc[order].drop_duplicates(keys).index
    if len(keep) == len(frame):
        return table
    return table.take(pa.array(sorted(keep)))


def read_table(location: Location, folder: str = "runs") -> tuple[pd.DataFrame, list[str]]:
    """All readable files of runs/ or epochs/ as one frame (each run once), plus a warning per
    skipped file (named, never deleted)."""
    schema = RUNS_SCHEMA if folder == "runs" else EPOCHS_SCHEMA
    for attempt in range(3):
        try:
            tables, warnings = _read_files(location, folder, _names(location, folder))
            break
        except FileNotFoundError:  # a compaction swapped the folder between listing and reading
            if attempt == 2:
                raise
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return _once_per_run(table, folder).to_pandas(), warnings


def upload(folder: pathlib.Path, location: Location) -> None:
    """Copy a local folder's files (a rendered report) to a location, replacing what is there."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        target = location.join(*path.relative_to(folder).parts)
        location.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with location.filesystem.open_output_stream(target) as stream:
            stream.write(path.read_bytes())


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


# ---------------------------------------------------------------------------------------------
# Compaction


def compact(location: Location) -> int:
    """Fold every loose ok record (and its epochs) into compacted files; returns how many files
    it replaced. Safe at any moment, beside writers and readers."""
    with _exclusive(location):
        return _compact_locked(location)


def _plan(location: Location, index: _Index) -> tuple[list[str], list[list[str]]]:
    """runs/ files to fold (loose files holding only ok records), and groups of compacted files
    to merge (MERGE_AT of one order of magnitude)."""
    loose = [name for name, (ok, failed) in index.files.items()
             if not name.startswith(_COMPACTED) and ok and not failed]
    tiers: dict[int, list[str]] = {}
    for name, (ok, _) in index.files.items():
        if name.startswith(_COMPACTED):
            tiers.setdefault(len(str(len(ok))), []).append(name)
    merges = [sorted(names) for names in tiers.values() if len(names) >= MERGE_AT]
    compacted = [name for names in tiers.values() for name in names]
    overlap = sum(len(index.files[name][0]) for name in compacted) > len(
        set().union(*(index.files[name][0] for name in compacted)))
    if overlap:  # two compactions at once on an object store: merge all, each run once again
        merges = [sorted(compacted)]
    return sorted(loose), merges


def _compact_locked(location: Location) -> int:
    """compact(), the write lock held."""
    index = _index(location)
    loose, merges = _plan(location, index)
    if not loose and not merges:
        return 0
    if location.is_local and any(_foreign_entries(location, folder) for folder in FOLDERS):
        _warn_once(f"{location.show()}: runs/ or epochs/ holds folders or links; not compacted, so they stay as they are")
        return 0
    groups = ([loose] if loose else []) + merges
    ok = set(index.ok)
    # A part an object store still shows after its rows were compacted (another driver's
    # compaction, half-way) adds nothing: its rows are dropped, the part deleted.
    compacted = set().union(*(index.files[name][0] for name in index.files if name.startswith(_COMPACTED)))
    epoch_names = _epoch_names(location, index)
    replaced = 0
    for names in groups:
        if len(names) == 1 and names[0].startswith(_COMPACTED):
            continue
        is_new = ok.difference(compacted).__contains__ if names is loose else ok.__contains__
        name = f"{_COMPACTED}{hashlib.sha256(' '.join(names).encode()).hexdigest()[:32]}.parquet"
        # epochs first: a compacted epochs file never lacks the rows of a compacted record
        # (a run's own file has the same name in both folders, a part too)
        epoch_inputs = [item for item in names if item in epoch_names]
        if epoch_inputs:
            _replace(location, "epochs", epoch_inputs, name, is_new, index)
        _replace(location, "runs", names, name, is_new, index)
        replaced += len(names)
    index.stamp = index.epochs_stamp = ()
    index.written.clear()
    _index(location)
    _epoch_names(location, index)
    return replaced


def _foreign_entries(location: Location, folder: str) -> list[str]:
    """Entries of a local folder a compaction's swap would not carry over (folders, links)."""
    with os.scandir(location.join(folder)) as entries:
        return [entry.name for entry in entries
                if not entry.name.startswith(".") and not entry.is_file(follow_symlinks=False)]


def _merged(location: Location, folder: str, names: list[str], keep_run, index: _Index) -> pa.Table:
    """The rows of these files in today's schema, each run (or run and epoch) once."""
    tables, warnings = _read_files(location, folder, names, index.written)
    if warnings:
        raise UserError("; ".join(warnings))
    table = pa.concat_tables(tables).combine_chunks()
    table = table.filter(pa.array([keep_run(run_id) for run_id in table.column("run_id").to_pylist()], pa.bool_()))
    return _once_per_run(table, folder)


def _replace(location: Location, folder: str, names: list[str], name: str, keep_run, index: _Index) -> None:
    """Replace files NAMES of a folder by one file NAME holding their rows."""
    table = _merged(location, folder, names, keep_run, index)
    if location.is_local:
        _swap_in(location, folder, names, name, table)
        return
    _write_parquet(table, location.join(folder, name), location)
    for old in names:
        if old != name:
            with contextlib.suppress(FileNotFoundError):
                location.filesystem.delete_file(location.join(folder, old))


def _swap_in(location: Location, folder: str, names: list[str], name: str, table: pa.Table) -> None:
    """Local folders: build the folder's next state beside it (hard links to the files that stay,
    the new file), then exchange the two directories atomically and delete the old one."""
    live = location.join(folder)
    upcoming = location.join(f".{folder}.next")
    shutil.rmtree(upcoming, ignore_errors=True)  # left by a compaction that was killed
    os.mkdir(upcoming)
    replaced = set(names)
    for entry in os.scandir(live):
        if entry.name not in replaced and not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
            os.link(entry.path, f"{upcoming}/{entry.name}")
    pq.write_table(table, f"{upcoming}/{name}")
    _exchange(upcoming, live)
    shutil.rmtree(upcoming, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: str, second: str) -> None:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); elsewhere, two renames
    with an instant between them in which the folder is missing (readers retry, never see twice)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None and renameat2(_AT_FDCWD, first.encode(), _AT_FDCWD, second.encode(),
                                           _RENAME_EXCHANGE) == 0:
        return
    aside = f"{second}.{uuid.uuid4().hex}.old"
    os.rename(second, aside)
    os.rename(first, second)
    os.rename(aside, first)


def _drop_orphan_epochs(location: Location, index: _Index) -> None:
    """Delete epochs/ parts whose records were never written (a driver killed between the two
    writes; the write lock held, so none is half-way now): their runs are retried, and would
    otherwise show their epochs twice."""
    orphans = {name for name in index.epochs if name.startswith("part-")} - set(index.files) - set(index.errors)
    for name in orphans:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(location.join("epochs", name))
    index.epochs -= orphans
