from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reducecnn import store
from reducecnn.config import RunSpec, UserError
from reducecnn.records import failed_record, record_for


def _ok_record(seed: int = 0, model: str = "approach1"):
    spec = RunSpec(model=model, seed=seed, epochs=2)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    return record_for(
        spec, benchmark="bench", params_total=3_578, params_trainable=3_418, params_non_trainable=160, layers=10,
        macs_per_image=371_840, epochs_run=2, stopped_early=False, train_loss=0.1, train_accuracy=0.97,
        val_loss=0.12, val_accuracy=0.96, test_loss=0.11, test_accuracy=0.9712, train_seconds=50.0,
        images_per_second=2_000.0, started_at=now, finished_at=now, devices="CPU", strategy="default",
        replicas=1, threads=1, tensorflow_version="2.21.0", keras_version="3.15.1", ray_version="2.60.0",
    )


def _epochs(record):
    return [{"run_id": record.run_id, "model": record.model, "seed": record.seed, "dataset": "mnist",
             "protocol": "holdout", "epoch": epoch, "loss": 0.2, "accuracy": 0.9, "val_loss": 0.2,
             "val_accuracy": 0.9, "epoch_seconds": 25.0} for epoch in (1, 2)]


@pytest.fixture
def location(tmp_path):
    location = store.locate(str(tmp_path), "bench")
    store.prepare(location)
    return location


def test_runs_read_back_in_pandas_with_documented_dtypes(location, tmp_path):
    for seed in (0, 1):
        record = _ok_record(seed)
        store.write_run(record, _epochs(record), location)
    runs = pd.read_parquet(tmp_path / "bench" / "runs")
    assert list(runs.columns) == store.RUNS_SCHEMA.names and len(runs) == 2
    dtypes = runs.dtypes.astype(str).to_dict()
    assert dtypes["seed"] == "int64" and dtypes["params_trainable"] == "int64" and dtypes["layers"] == "int32"
    assert dtypes["test_accuracy"] == "float64" and dtypes["stopped_early"] == "bool"
    assert dtypes["started_at"] == "datetime64[us, UTC]"
    assert sorted(runs["test_accuracy"]) == [0.9712, 0.9712]


def test_epochs_read_back_one_row_per_epoch(location, tmp_path):
    record = _ok_record()
    store.write_run(record, _epochs(record), location)
    epochs = pd.read_parquet(tmp_path / "bench" / "epochs")
    assert epochs["epoch"].tolist() == [1, 2] and set(epochs["benchmark"]) == {"bench"}


def test_no_temporary_file_is_left(location, tmp_path):
    store.write_run(_ok_record(), [], location)
    [name] = [p.name for p in (tmp_path / "bench" / "runs").iterdir()]
    assert name.startswith("part-") and name.endswith(".parquet")


def test_rewriting_a_run_replaces_its_row(location, tmp_path):
    spec = RunSpec(model="approach1", seed=0, epochs=2)
    store.write_run(failed_record(spec, "worker died"), [], location)
    store.write_run(_ok_record(), [], location)
    runs = pd.read_parquet(tmp_path / "bench" / "runs")
    assert runs["status"].tolist() == ["ok"]


def test_recorded_ok_lists_only_successful_runs(location):
    store.write_run(_ok_record(0), [], location)
    store.write_run(failed_record(RunSpec(model="approach1", seed=1, epochs=2), "boom"), [], location)
    assert store.recorded_ok(location) == {_ok_record(0).run_id}


def test_failed_run_round_trips_with_its_error(location):
    store.write_run(failed_record(RunSpec(model="baseline", seed=4), "RunFailed: non-finite loss"), [], location)
    runs, warnings = store.read_table(location, "runs")
    assert runs.loc[0, "error"] == "RunFailed: non-finite loss" and warnings == []


def test_corrupt_file_is_skipped_with_a_warning_and_kept(location, tmp_path):
    store.write_run(_ok_record(), [], location)
    corrupt = tmp_path / "bench" / "runs" / "junk.parquet"
    corrupt.write_bytes(b"not parquet at all")
    runs, warnings = store.read_table(location, "runs")
    assert len(runs) == 1 and len(warnings) == 1 and "junk.parquet" in warnings[0]
    assert corrupt.exists()


def test_corrupt_file_stops_resume_with_a_clear_error(location, tmp_path):
    (tmp_path / "bench" / "runs" / "junk.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(UserError, match="junk.parquet: not valid Parquet"):
        store.recorded_ok(location)


def test_foreign_parquet_file_is_not_a_results_file(location, tmp_path):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "bench" / "runs" / "other.parquet")
    _, warnings = store.read_table(location, "runs")
    assert "not a reducecnn results file" in warnings[0]


def test_output_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        store.prepare(store.locate(str(tmp_path / "afile"), "bench"))


def test_unwritable_output_is_a_user_error(tmp_path):
    # Root writes anywhere, so make the folder impossible rather than forbidden: a file in its path.
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="not writable"):
        store.prepare(store.locate(str(tmp_path / "afile" / "deeper"), "bench"))


def test_column_added_later_reads_as_null_from_older_files(location, tmp_path):
    path = tmp_path / "bench" / "runs" / f"{_ok_record(0).run_id}.parquet"
    pq.write_table(store.record_table([_ok_record(0)]).drop_columns(["peak_rss_mb"]), path)
    runs, warnings = store.read_table(location, "runs")
    assert warnings == [] and runs["peak_rss_mb"].isna().all() and list(runs.columns) == store.RUNS_SCHEMA.names


def _record_on_disk(tmp_path, run_id):
    runs = pd.read_parquet(tmp_path / "bench" / "runs")
    [row] = runs[runs["run_id"] == run_id].index
    return runs.loc[row]


def test_a_failure_never_replaces_an_ok_record(location, tmp_path):
    ok = _ok_record()
    assert store.write_run(ok, _epochs(ok), location)
    failure = failed_record(RunSpec(model="approach1", seed=0, epochs=2), "WorkerCrashedError: killed")
    assert not store.write_run(failure, [], location)
    assert _record_on_disk(tmp_path, ok.run_id)["status"] == "ok"
    assert store.recorded_ok(location) == {ok.run_id}
    assert len(pd.read_parquet(tmp_path / "bench" / "epochs")) == 2


def test_ok_replaces_a_failure_and_a_second_ok_leaves_the_first(location, tmp_path):
    spec = RunSpec(model="approach1", seed=0, epochs=2)
    assert store.write_run(failed_record(spec, "boom"), [], location)
    ok = _ok_record()
    assert store.write_run(ok, _epochs(ok), location)
    assert _record_on_disk(tmp_path, ok.run_id)["status"] == "ok"
    import dataclasses
    assert not store.write_run(dataclasses.replace(ok, test_accuracy=0.5), _epochs(ok), location)
    assert _record_on_disk(tmp_path, ok.run_id)["test_accuracy"] == 0.9712


def test_a_failure_replaces_an_earlier_failure(location, tmp_path):
    spec = RunSpec(model="approach1", seed=0, epochs=2)
    store.write_run(failed_record(spec, "first"), [], location)
    assert store.write_run(failed_record(spec, "second"), [], location)
    assert _record_on_disk(tmp_path, spec.run_id)["error"] == "second"


def test_the_recipe_is_a_column_of_its_own_also_for_files_written_before(tmp_path):
    location = store.locate(str(tmp_path), "bench")
    store.prepare(location)
    spec = RunSpec(model="approach1", seed=0, learning_rate=0.01, lr_schedule="cosine", augment_shift=2)
    store.write_run(record_for(spec, test_accuracy=0.9), [], location)
    # A file from before the columns existed: the same record without them.
    old = RunSpec(model="approach1", seed=1, learning_rate=0.005)
    path = tmp_path / "bench" / "runs" / f"{old.run_id}.parquet"
    table = store.record_table([record_for(old, test_accuracy=0.9)])
    pq.write_table(table.drop_columns(["learning_rate", "lr_schedule", "augment_shift"]).replace_schema_metadata(
        table.schema.metadata), path)
    runs, warnings = store.read_table(location)
    assert warnings == []
    by_seed = runs.set_index("seed")[["learning_rate", "lr_schedule", "augment_shift"]]
    assert by_seed.loc[0].tolist() == [0.01, "cosine", 2]
    assert by_seed.loc[1].tolist() == [0.005, "constant", 0]


def _grid_record(seed: int, status: str = "ok"):
    spec = RunSpec(model="approach1", seed=seed, epochs=2)
    return record_for(spec, benchmark="bench", test_accuracy=0.97) if status == "ok" else failed_record(spec, "boom")


def test_the_runs_schema_is_the_record_s_fields():
    import dataclasses

    from reducecnn.records import RunRecord

    assert store.RUNS_SCHEMA.names == ["schema_version"] + [f.name for f in dataclasses.fields(RunRecord)]
    assert {"backend", "group_id", "group_seconds", "compile_seconds"} <= set(store.RUNS_SCHEMA.names)
    assert store.RUNS_SCHEMA.field("layers").type == "int32" and store.RUNS_SCHEMA.field("seed").type == "int64"


def test_write_runs_puts_a_batch_in_one_part_and_says_what_it_wrote(location, tmp_path):
    store.write_run(_grid_record(0), [], location)
    batch = [(_grid_record(seed), _epochs(_grid_record(seed))) for seed in (0, 1, 2)]
    assert store.write_runs(batch, location) == [False, True, True]
    assert len(list((tmp_path / "bench" / "runs").iterdir())) == 2
    assert sorted(pd.read_parquet(tmp_path / "bench" / "runs")["seed"]) == [0, 1, 2]
    assert len(pd.read_parquet(tmp_path / "bench" / "epochs")) == 4


def test_compaction_folds_ok_records_and_keeps_failed_ones_apart(location, tmp_path):
    for seed in range(6):
        store.write_run(_grid_record(seed, "ok" if seed % 3 else "failed"), _epochs(_grid_record(seed)), location)
    assert store.compact(location) == 4
    runs = pd.read_parquet(tmp_path / "bench" / "runs")
    assert sorted(runs["seed"]) == list(range(6)) and list(runs.columns) == store.RUNS_SCHEMA.names
    names = sorted(p.name for p in (tmp_path / "bench" / "runs").iterdir())
    assert len(names) == 3 and names[-1].startswith("compact-")  # two failed files, one compacted
    assert len(pd.read_parquet(tmp_path / "bench" / "epochs")) == 12


def test_a_failure_never_replaces_a_compacted_ok_record(location, tmp_path):
    store.write_run(_grid_record(0), [], location)
    store.compact(location)
    assert not store.write_run(_grid_record(0, "failed"), [], location)
    assert _record_on_disk(tmp_path, _grid_record(0).run_id)["status"] == "ok"


def test_compaction_rewrites_older_files_to_today_s_columns(location, tmp_path):
    # a folder of 0.6: one file per run, without the columns added since
    for seed in (0, 1):
        table = store.record_table([_grid_record(seed)]).drop_columns(["backend", "group_id", "peak_rss_mb"])
        pq.write_table(table.replace_schema_metadata(store.RUNS_SCHEMA.metadata),
                       tmp_path / "bench" / "runs" / f"{_grid_record(seed).run_id}.parquet")
    store.compact(location)
    runs = pd.read_parquet(tmp_path / "bench" / "runs")
    assert list(runs.columns) == store.RUNS_SCHEMA.names and len(runs) == 2 and runs["backend"].isna().all()


def test_corrupt_file_is_kept_through_compaction_and_named_by_the_reader(location, tmp_path):
    store.write_run(_grid_record(0), [], location)
    corrupt = tmp_path / "bench" / "runs" / "part-junk.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    store.compact(location)
    runs, warnings = store.read_table(location, "runs")
    assert len(runs) == 1 and len(warnings) == 1 and "part-junk.parquet" in warnings[0]
    assert corrupt.read_bytes() == b"PAR1 not really"


def test_resume_reads_only_the_files_written_since_it_last_looked(location, monkeypatch):
    for seed in range(3):
        store.write_run(_grid_record(seed), [], location)
    store._INDEXES.clear()  # a new process
    assert len(store.recorded_ok(location)) == 3
    reads = []
    original = store._read_checked
    monkeypatch.setattr(store, "_read_checked", lambda *args, **kw: reads.append(args[0]) or original(*args, **kw))
    assert len(store.recorded_ok(location)) == 3 and reads == []
    store._INDEXES.clear()
    assert len(store.recorded_ok(location)) == 3 and len(reads) == 3


def test_orphan_epochs_of_a_killed_write_are_dropped_before_the_next(location, tmp_path):
    record = _grid_record(0)
    # the driver was killed between writing a part's epochs and its record
    pq.write_table(store.epochs_table(record, _epochs(record)), tmp_path / "bench" / "epochs" / "part-1-killed.parquet")
    store.write_run(record, _epochs(record), location)
    assert len(pd.read_parquet(tmp_path / "bench" / "epochs")) == 2


def test_a_record_is_there_after_the_writer_is_killed_right_after_writing(tmp_path):
    import subprocess
    import sys

    code = ("import os, signal, sys; from reducecnn import store; from reducecnn.config import RunSpec;"
            "from reducecnn.records import record_for; location = store.locate(sys.argv[1], 'bench');"
            "store.prepare(location); store.write_run(record_for(RunSpec(model='approach1', seed=7)), [], location);"
            "print('written', flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert killed.returncode == -9 and killed.stdout == "written\n"
    assert pd.read_parquet(tmp_path / "bench" / "runs")["seed"].tolist() == [7]


def test_pandas_sees_each_run_once_at_every_moment_of_writes_and_compactions(location, tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(store, "COMPACT_AT", 7)
    monkeypatch.setattr(store, "MERGE_AT", 3)
    finished, seen, retries = threading.Event(), [], []

    def write():
        for seed in range(120):
            store.write_run(_grid_record(seed), _epochs(_grid_record(seed)), location)
        finished.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not finished.is_set():
        try:
            runs = pd.read_parquet(tmp_path / "bench" / "runs", columns=["run_id"])
        except FileNotFoundError:  # a file listed just before a swap: read again
            retries.append(1)
            continue
        except pa.ArrowInvalid:  # no file at all yet, so no run_id column
            assert not seen
            continue
        assert not runs["run_id"].duplicated().any()
        assert not seen or len(runs) >= seen[-1]  # never misses a run it saw before
        seen.append(len(runs))
    writer.join()
    print(f"{len(seen)} reads, {len(retries)} retried")
    assert len(seen) > 5 and len(pd.read_parquet(tmp_path / "bench" / "runs")) == 120
    assert len(list((tmp_path / "bench" / "runs").iterdir())) < 20


def test_two_writers_racing_on_one_folder_keep_every_ok_record(location, tmp_path):
    import subprocess
    import sys

    code = ("import sys; from reducecnn import store; from tests.test_store import _grid_record;"
            "location = store.locate(sys.argv[1], 'bench');"
            "[store.write_run(_grid_record(seed, sys.argv[2]), [], location) for seed in range(40)]")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), status]) for status in ("failed", "ok")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    runs = pd.read_parquet(tmp_path / "bench" / "runs")
    assert sorted(runs["seed"]) == list(range(40)) and set(runs["status"]) == {"ok"}


def test_every_committed_results_folder_reads_with_today_s_columns():
    from pathlib import Path

    from reducecnn import api

    folders = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "docs" / "results").glob("*/runs"))
    assert len(folders) >= 19
    for folder in folders:
        runs = api.load_runs(folder)  # UserError on any unreadable file
        assert list(runs.columns) == store.RUNS_SCHEMA.names and not runs["run_id"].duplicated().any(), folder
        assert runs["learning_rate"].notna().all(), folder


def test_a_batch_with_a_run_twice_writes_its_ok_record_only(location, tmp_path):
    batch = [(_grid_record(0, "failed"), []), (_grid_record(0), _epochs(_grid_record(0))), (_grid_record(0), [])]
    assert store.write_runs(batch, location) == [False, True, False]
    assert pd.read_parquet(tmp_path / "bench" / "runs")["status"].tolist() == ["ok"]
