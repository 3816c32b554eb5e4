"""Results on an object store: moto's S3 server on loopback, spoken to by pyarrow as AWS would be."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

from reducecnn import api, store
from reducecnn.cli import main
from reducecnn.config import RunSpec
from reducecnn.records import failed_record, record_for

BUCKET = "reducecnn-results"


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch, request):
    """An empty prefix of a bucket, and the environment a user sets to reach it."""
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    filesystem = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                                   region="us-east-1", allow_bucket_creation=True)
    filesystem.create_dir(BUCKET)
    return f"s3://{BUCKET}/{request.node.name}", filesystem


def _record(seed: int, status: str = "ok"):
    spec = RunSpec(model="approach1", seed=seed, epochs=1)
    if status != "ok":
        return failed_record(spec, "WorkerCrashedError: killed", benchmark="bench")
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    return record_for(spec, benchmark="bench", test_accuracy=0.9 + seed / 1000, val_accuracy=0.9, epochs_run=1,
                      params_total=3_578, params_trainable=3_418, started_at=now, finished_at=now)


def _epochs(record):
    return [{"run_id": record.run_id, "model": record.model, "seed": record.seed, "dataset": "mnist",
             "protocol": "holdout", "epoch": 1, "loss": 0.3, "accuracy": 0.9, "val_loss": 0.3,
             "val_accuracy": 0.9, "epoch_seconds": 2.0}]


def _write(uri: str, seeds, status: str = "ok") -> store.Location:
    location = store.locate(uri, "bench")
    store.prepare(location)
    for seed in seeds:
        record = _record(seed, status)
        store.write_run(record, _epochs(record) if status == "ok" else [], location)
    return location


def test_pandas_reads_a_bucket_s_runs_each_once_with_every_column(s3):
    uri, filesystem = s3
    location = _write(uri, range(4))
    store.compact(location)
    _write(uri, [4, 5])
    runs = pd.read_parquet(f"{uri}/bench/runs")  # pyarrow takes the endpoint from AWS_ENDPOINT_URL
    assert sorted(runs["seed"]) == list(range(6)) and list(runs.columns) == store.RUNS_SCHEMA.names
    same = pd.read_parquet(f"{BUCKET}/{uri.split('/', 3)[3]}/bench/epochs", filesystem=filesystem)
    assert sorted(same["seed"]) == list(range(6))


def test_load_runs_reads_a_bucket(s3):
    uri, _ = s3
    _write(uri, [0, 1])
    assert sorted(api.load_runs(f"{uri}/bench")["seed"]) == [0, 1]


def test_a_failure_never_replaces_an_ok_record_in_a_bucket(s3):
    uri, _ = s3
    location = _write(uri, [0])
    assert not store.write_run(_record(0, "failed"), [], location)
    store._INDEXES.clear()  # another driver, which has not seen the ok record yet, writes a failure
    store._INDEXES[(type(location.filesystem).__name__, location.path)] = store._Index()
    store._write_single(_record(0, "failed"), [], location, store._Index())
    runs = pd.read_parquet(f"{uri}/bench/runs")
    assert runs["status"].tolist() == ["ok"]


def test_two_drivers_racing_on_one_bucket_keep_every_ok_record(s3):
    # One process records runs 0-19 ok while another records them failed, at the same time.
    uri, _ = s3
    store.prepare(store.locate(uri, "bench"))
    code = ("import sys; from reducecnn import store; from tests.test_s3 import _record;"
            "location = store.locate(sys.argv[1], 'bench');"
            "[store.write_run(_record(seed, sys.argv[2]), [], location) for seed in range(20)]")
    drivers = [subprocess.Popen([sys.executable, "-c", code, uri, status], env=os.environ.copy())
               for status in ("ok", "failed")]
    assert [driver.wait(timeout=120) for driver in drivers] == [0, 0]
    runs = pd.read_parquet(f"{uri}/bench/runs")
    assert sorted(runs["seed"]) == list(range(20)) and set(runs["status"]) == {"ok"}


def test_report_of_a_bucket_writes_its_files_into_the_bucket(s3, capsys):
    uri, filesystem = s3
    _write(uri, [0, 1, 2])
    assert main(["report", f"{uri}/bench"]) == 0
    assert f"report: {uri}/bench/summary.md" in capsys.readouterr().out
    prefix = f"{BUCKET}/{uri.split('/', 3)[3]}/bench"
    with filesystem.open_input_stream(f"{prefix}/summary.md") as stream:
        assert "approach1" in stream.read().decode()
    assert filesystem.get_file_info(f"{prefix}/plots").type == pafs.FileType.Directory


def test_a_benchmark_resumed_on_a_bucket_trains_nothing_and_reports_there(s3, capsys):
    uri, filesystem = s3
    _write(uri, [0, 1])
    argv = ["benchmark", "--models", "approach1", "--seeds", "2", "--epochs", "1", "--out", uri, "--name", "bench"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 already recorded, 0 to train" in err
    assert filesystem.get_file_info(f"{BUCKET}/{uri.split('/', 3)[3]}/bench/summary.md").type == pafs.FileType.File


def test_a_missing_bucket_is_one_line_before_any_work(s3, capsys):
    assert main(["benchmark", "--models", "approach1", "--seeds", "1", "--out", "s3://no-such-bucket-here/x"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "bucket no-such-bucket-here does not exist" in line


def test_an_unreachable_store_is_one_line_naming_what_to_set(s3, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    assert main(["report", "s3://some-bucket/x/bench"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "AWS_ENDPOINT_URL" in line


def test_an_unreachable_store_stops_a_benchmark_before_training(s3, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["benchmark", "--models", "approach1", "--seeds", "1", "--out", "s3://some-bucket/x"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "bucket some-bucket: cannot reach the object store at AWS_ENDPOINT_URL=http://127.0.0.1:9" in line


def test_a_benchmark_trains_into_a_bucket_and_returns_its_runs(s3):
    # The whole path on a local Ray: train, write each record to the bucket, compact, report, read back.
    uri, filesystem = s3
    code = ("import sys; from reducecnn import benchmark;"
            "runs = benchmark(models=['approach2'], seeds=2, epochs=1, train_limit=500, out=sys.argv[1], name='bench');"
            "print(sorted(runs['seed']), sorted(set(runs['status'])))")
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    completed = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == "[0, 1] ['ok']"
    prefix = f"{BUCKET}/{uri.split('/', 3)[3]}/bench"
    assert filesystem.get_file_info(f"{prefix}/summary.md").type == pafs.FileType.File
    assert sorted(pd.read_parquet(f"{uri}/bench/epochs")["seed"]) == [0, 1]


def test_a_part_left_behind_by_a_compaction_is_dropped_by_the_next(s3):
    import pyarrow.parquet as pq

    uri, filesystem = s3
    location = _write(uri, [0, 1])
    store.compact(location)
    # another driver's compaction wrote its compacted object but died before deleting this part
    pq.write_table(store.record_table([_record(1)]), f"{location.join('runs')}/part-1-left.parquet",
                   filesystem=location.filesystem)
    assert sorted(api.load_runs(f"{uri}/bench")["seed"]) == [0, 1]  # reducecnn's reads: each run once
    store.compact(location)
    assert sorted(pd.read_parquet(f"{uri}/bench/runs")["seed"]) == [0, 1]  # and pandas' after it
