"""Reliability on a real Ray cluster: killed workers and drivers, failing runs, concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from chaos import training_workers
from localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]


def _command(cluster: LocalCluster, out: Path, *flags: str) -> list[str]:
    return [sys.executable, str(REPO / "jobs" / "benchmark.py"), "--address", cluster.address, "--out", str(out),
            "--no-report", *flags]


def _visible_files_are_valid_parquet(folder: Path) -> int:
    files = [p for p in folder.iterdir() if not p.name.startswith(".")]
    for path in files:
        pq.read_table(path)  # raises on a partial file
    return len(files)


def _running_task_pids(cluster: LocalCluster) -> list[int]:
    code = ("import json, ray; from ray.util.state import list_tasks; ray.init(address='auto', logging_level='ERROR');"
            "print(json.dumps([t.worker_pid for t in list_tasks(filters=[('state', '=', 'RUNNING')]) "
            "if t.name == 'train_task' and t.worker_pid]))")
    return json.loads(cluster.python(code).strip().splitlines()[-1])


def test_killed_worker_is_retried_to_exactly_one_ok_record(cluster, tmp_path):
    flags = ["--models", "approach2", "--seed-list", "5", "--epochs", "2", "--train-limit", "6000", "--name", "kill"]
    driver = subprocess.Popen(_command(cluster, tmp_path, *flags), env=cluster.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = []
    deadline = time.monotonic() + 180
    while not killed and time.monotonic() < deadline and driver.poll() is None:
        for pid in _running_task_pids(cluster):
            time.sleep(4)  # let it import TensorFlow and start training
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    output, _ = driver.communicate(timeout=300)
    assert killed, output[-2000:]
    assert driver.returncode == 0, output[-3000:]
    runs = pd.read_parquet(tmp_path / "kill" / "runs")
    assert runs[["seed", "status"]].values.tolist() == [[5, "ok"]]


def test_killed_driver_then_rerun_resumes_without_duplicates(cluster, tmp_path):
    flags = ["--models", "baseline", "--seeds", "4", "--epochs", "1", "--train-limit", "1500", "--name", "resume"]
    driver = subprocess.Popen(_command(cluster, tmp_path, *flags), env=cluster.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs_dir = tmp_path / "resume" / "runs"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (runs_dir.is_dir() and any(runs_dir.glob("*.parquet"))):
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    _visible_files_are_valid_parquet(runs_dir)
    recorded_before = len(pd.read_parquet(runs_dir))
    assert 1 <= recorded_before < 4
    rerun = subprocess.run(_command(cluster, tmp_path, *flags), env=cluster.env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{recorded_before} already recorded, {4 - recorded_before} to train" in rerun.stderr
    runs = pd.read_parquet(runs_dir)
    assert sorted(runs["seed"]) == [0, 1, 2, 3] and set(runs["status"]) == {"ok"}
    assert _visible_files_are_valid_parquet(runs_dir) == 1  # compacted at the end


def test_failing_run_is_recorded_and_the_others_complete(cluster, tmp_path):
    code = f"""
from reducecnn import data, runner, store
from reducecnn.config import BenchmarkConfig, RunSpec
config = BenchmarkConfig(name="nan", train_limit=1000, epochs=2, address="{cluster.address}")
good = RunSpec(model="baseline", seed=0, epochs=2, train_limit=1000)
exploding = RunSpec(model="baseline", seed=1, epochs=2, train_limit=1000, learning_rate=1e12)
location = store.locate({str(tmp_path)!r}, "nan")
store.prepare(location)
outcome = runner.run_benchmark(config, data.load("mnist"), location, specs=[good, exploding])
print(outcome.ok, outcome.failed)
"""
    assert cluster.python(code, timeout=300).strip().splitlines()[-1] == "1 1"
    runs = pd.read_parquet(tmp_path / "nan" / "runs").set_index("seed")
    assert runs.loc[0, "status"] == "ok" and runs.loc[1, "status"] == "failed"
    assert runs.loc[1, "error"].startswith("RunFailed: non-finite training loss")


def test_failed_runs_exit_1_with_one_summary_line(cluster, tmp_path):
    flags = ["--models", "baseline", "--seeds", "1", "--epochs", "2", "--train-limit", "500",
             "--learning-rate", "1e12", "--name", "allfail"]
    completed = subprocess.run(_command(cluster, tmp_path, *flags), env=cluster.env, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 1
    assert "error: 1 run of 1 failed (status='failed' rows say why)" in completed.stderr.splitlines()[-1]


def test_two_benchmarks_writing_one_folder_lose_and_duplicate_nothing(cluster, tmp_path):
    flags = ["--models", "approach2", "--seeds", "2", "--epochs", "1", "--train-limit", "1000", "--name", "twice"]
    drivers = [subprocess.Popen(_command(cluster, tmp_path, *flags), env=cluster.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [driver.communicate(timeout=600)[1] for driver in drivers]
    assert [driver.returncode for driver in drivers] == [0, 0], errors
    runs = pd.read_parquet(tmp_path / "twice" / "runs")
    assert sorted(runs["seed"]) == [0, 1] and runs["run_id"].is_unique
    assert _visible_files_are_valid_parquet(tmp_path / "twice" / "runs") >= 1


def test_same_spec_bit_identical_across_processes(tmp_path):
    def train(name: str) -> pd.Series:
        command = [sys.executable, "-m", "reducecnn", "train", "--model", "approach1", "--seed", "2", "--epochs", "1",
                   "--train-limit", "1500", "--threads", "1", "--out", str(tmp_path), "--name", name]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        return pd.read_parquet(tmp_path / name / "runs").iloc[0]

    first, second = train("first"), train("second")
    metrics = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    assert first[metrics].tolist() == second[metrics].tolist()


def test_ctrl_c_stops_the_driver_promptly_and_keeps_what_is_recorded(cluster, tmp_path):
    flags = ["--models", "baseline", "--seeds", "2", "--epochs", "3", "--train-limit", "20000", "--name", "ctrlc"]
    # SIGINT back to its default in the child: a shell running the tests in the background ignores
    # it, and Python then never turns it into KeyboardInterrupt.
    driver = subprocess.Popen(_command(cluster, tmp_path, *flags), env=cluster.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not _running_task_pids(cluster) and time.monotonic() < deadline:
        time.sleep(1)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 130, err[-2000:]
    assert "interrupted; finished runs are recorded" in err



def test_a_second_drivers_failure_never_replaces_an_ok_record(cluster, tmp_path):
    flags = ["--models", "approach2", "--seed-list", "3", "--epochs", "1", "--train-limit", "3000", "--name", "shared"]
    # Driver B lists the run as to train and starts it; its worker is paused mid-run.
    second = subprocess.Popen(_command(cluster, tmp_path, *flags, "--max-retries", "0"), env=cluster.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    pids: list[int] = []
    while not pids and time.monotonic() < deadline and second.poll() is None:
        pids = training_workers(cluster)  # the process executing B's task (its title says so)
        time.sleep(0.2)
    assert pids, "driver B never started its task"
    os.kill(pids[0], signal.SIGSTOP)
    try:
        # Driver A trains the same spec on the other node and records it ok.
        first = subprocess.run(_command(cluster, tmp_path, *flags), env=cluster.env, capture_output=True, text=True,
                               timeout=300)
        assert first.returncode == 0 and "0 already recorded, 1 to train" in first.stderr, first.stderr[-3000:]
        ok_record = pd.read_parquet(tmp_path / "shared" / "runs").iloc[0]
        assert ok_record["status"] == "ok"
    finally:
        os.kill(pids[0], signal.SIGKILL)  # B's worker dies past its retries: B gets a failure for that run
    output, _ = second.communicate(timeout=120)
    assert "FAILED approach2 seed 3" in output and "an ok record was already there: kept it" in output, output[-3000:]
    runs = pd.read_parquet(tmp_path / "shared" / "runs")
    assert runs[["status", "test_accuracy"]].values.tolist() == [["ok", ok_record["test_accuracy"]]]
    assert len(pd.read_parquet(tmp_path / "shared" / "epochs")) == 1
