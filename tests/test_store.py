from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pyarrow.parquet as pq
import pytest

from reducecnn import store
from reducecnn.config import RunSpec, UserError
from reducecnn.train import failed_record, record_for


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
    assert [p.name for p in (tmp_path / "bench" / "runs").iterdir()] == [f"{_ok_record().run_id}.parquet"]


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
    store.write_run(_ok_record(0), [], location)
    path = tmp_path / "bench" / "runs" / f"{_ok_record(0).run_id}.parquet"
    older = pq.read_table(path)
    pq.write_table(older.drop_columns(["peak_rss_mb"]), path)
    runs, warnings = store.read_table(location, "runs")
    assert warnings == [] and runs["peak_rss_mb"].isna().all() and list(runs.columns) == store.RUNS_SCHEMA.names


def _record_on_disk(tmp_path, run_id):
    return pd.read_parquet(tmp_path / "bench" / "runs" / f"{run_id}.parquet").iloc[0]


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
    store.write_run(record_for(old, test_accuracy=0.9), [], location)
    path = tmp_path / "bench" / "runs" / f"{old.run_id}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["learning_rate", "lr_schedule", "augment_shift"]).replace_schema_metadata(
        table.schema.metadata), path)
    runs, warnings = store.read_table(location)
    assert warnings == []
    by_seed = runs.set_index("seed")[["learning_rate", "lr_schedule", "augment_shift"]]
    assert by_seed.loc[0].tolist() == [0.01, "cosine", 2]
    assert by_seed.loc[1].tolist() == [0.005, "constant", 0]
