"""The benchmark against a real two-node Ray cluster on this machine (token auth on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--models", "baseline,approach2", "--epochs", "1", "--train-limit", "2000", "--name", "two-node",
         "--runs-per-task", "2"]  # vectorized groups through Ray: 4 runs -> one task per model, one per node


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


def _benchmark(cluster: LocalCluster, out: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "jobs" / "benchmark.py"), "--address", cluster.address,
               "--out", str(out), *SMALL, *flags]
    return subprocess.run(command, env=cluster.env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def first_run(cluster, out):
    completed = _benchmark(cluster, out, "--seeds", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def test_one_row_per_run_on_both_nodes(cluster, out, first_run):
    runs = pd.read_parquet(out / "two-node" / "runs")
    assert sorted(zip(runs["model"], runs["seed"])) == [("approach2", 0), ("approach2", 1),
                                                        ("baseline", 0), ("baseline", 1)]
    assert set(runs["status"]) == {"ok"}
    nodes = cluster.node_resources()
    by_resource = {next(r for r in resources if r.startswith("node_")): node for node, resources in nodes.items()
                   if any(r.startswith("node_") for r in resources)}
    assert set(runs["ray_node_id"]) == {by_resource["node_a"], by_resource["node_b"]}


def test_output_is_quiet_and_ends_with_the_report_and_verdicts(first_run):
    output = first_run.stdout + first_run.stderr
    for noise in ("absl", "oneDNN", "Token authentication", "repeated", "_train_task pid", "INFO", "WARNING"):
        assert noise not in output, output[-3000:]
    last = first_run.stdout.strip().splitlines()
    assert last[-2].startswith("report: ") and last[-2].endswith("summary.md"), first_run.stdout
    assert last[-1].strip().startswith("approach2 vs baseline: "), first_run.stdout
    assert "ok baseline seed 0: test accuracy" in first_run.stderr  # per-run lines go with the progress


def test_run_threads_equal_its_cpus(out, first_run):
    runs = pd.read_parquet(out / "two-node" / "runs")
    assert set(runs["threads"]) == {1}
    assert set(runs["group_size"]) == {2} and set(runs["vectorized"]) == {True}


def test_rerun_trains_nothing_and_adds_no_rows(cluster, out, first_run):
    files = {p.name: p.stat().st_mtime_ns for p in (out / "two-node" / "runs").iterdir()}
    completed = _benchmark(cluster, out, "--seeds", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "4 already recorded, 0 to train" in completed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (out / "two-node" / "runs").iterdir()} == files


def test_more_seeds_trains_only_the_new_seed(cluster, out, first_run):
    completed = _benchmark(cluster, out, "--seeds", "3")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "4 already recorded, 2 to train" in completed.stderr
    runs = pd.read_parquet(out / "two-node" / "runs")
    assert len(runs) == 6 and sorted(runs.loc[runs["seed"] == 2, "model"]) == ["approach2", "baseline"]


def test_ray_job_submit_with_working_dir(cluster, tmp_path):
    # A user's model file (tests/user_models.py:tiny) as well: only the job's driver reads it.
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", cluster.dashboard_url,
               "--working-dir", str(REPO), "--", "python", "jobs/benchmark.py", "--out", str(tmp_path),
               "--models", "approach2,tests/user_models.py:tiny", "--seeds", "2", "--epochs", "1",
               "--train-limit", "1000", "--name", "job", "--no-report"]
    completed = subprocess.run(command, env=cluster.env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    runs = pd.read_parquet(tmp_path / "job" / "runs")
    assert sorted(runs["seed"]) == [0, 0, 1, 1] and set(runs["status"]) == {"ok"}
    assert runs.groupby("model")["params_trainable"].first().to_dict() == {"approach2": 3130, "tiny": 1418}
