"""The GPU runner on CPU: a Ray with one logical GPU places the group trainer (an actor), which
streams each member, compiles once per shape and survives being killed; the plan says where
runs train and why, before training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reducecnn import plan, stacked, train, vectorized
from reducecnn.config import BenchmarkConfig, RunSpec, UserError

REPO = Path(__file__).resolve().parents[1]
USER_MODELS = REPO / "tests" / "user_models.py"
# A driver with a Ray of 2 CPUs and one logical GPU: tasks and actors asking for a GPU are placed.
DRIVER = """
import json, sys, ray
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
from reducecnn import cli
"""


def _driver(script: str, tmp_path: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-c", DRIVER + script], cwd=tmp_path, capture_output=True, text=True,
                               timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def test_unstackable_models_train_one_per_task_and_the_plan_says_why():
    config = BenchmarkConfig(models=("approach1", "share1k6", f"{USER_MODELS}:l2"), seeds=(0, 1))
    the_plan = plan.make_plan(config, config.specs(), plan.Cluster(cpus=2, gpus=1), stacked.refusal)
    assert [[s.model for s in group] for group in the_plan.groups] == [["approach1", "approach1"]]
    assert sorted(s.model for s in the_plan.singles) == ["l2", "l2", "share1k6", "share1k6"]
    line = the_plan.line()
    assert "2 runs vectorized in 1 group of K=2 on 1 GPU trainer" in line
    assert "share1k6: only keras.Sequential models" in line and "l2: Conv2D has a kernel regularizer" in line


def test_without_gpus_the_plan_says_cpus_and_why():
    config = BenchmarkConfig(models=("approach1",), seeds=(0, 1))
    the_plan = plan.make_plan(config, config.specs(), plan.Cluster(cpus=2, gpus=0), stacked.refusal)
    assert not the_plan.on_gpus and not the_plan.groups
    assert "2 runs one per task, on CPUs (1 each)" in the_plan.line()
    assert "On CPUs: the cluster has no GPU now" in the_plan.line()
    with_autoscaler = plan.make_plan(config, config.specs(), plan.Cluster(cpus=2, gpus=0, can_add_gpus=True),
                                     stacked.refusal)
    assert "ask for GPU workers with --gpus-per-run 1" in with_autoscaler.line()


def test_asking_for_gpus_a_cluster_cannot_get_is_refused():
    config = BenchmarkConfig(models=("approach1",), seeds=(0,), gpus_per_run=0.5)
    with pytest.raises(UserError, match="asks for GPUs, but this Ray cluster has none"):
        plan.make_plan(config, config.specs(), plan.Cluster(cpus=2, gpus=0), stacked.refusal)
    waiting = plan.make_plan(config, config.specs(), plan.Cluster(cpus=2, gpus=0, can_add_gpus=True),
                                     stacked.refusal)
    assert waiting.on_gpus and waiting.trainers == 1


def test_gpus_per_run_without_gpus_is_one_line_and_exit_2(tmp_path):
    command = [sys.executable, str(REPO / "jobs" / "benchmark.py"), "--gpus-per-run", "0.5", "--models", "approach1",
               "--seeds", "1", "--epochs", "1", "--train-limit", "500", "--out", str(tmp_path), "--no-report"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert completed.stderr.strip().splitlines()[-1].startswith("benchmark.py: error: --gpus-per-run 0.5 asks for GPUs")
    assert not list((tmp_path / "mnist-holdout" / "runs").glob("*.parquet"))


def test_the_autoscaler_config_on_the_head_says_whether_gpus_can_come(tmp_path):
    config = tmp_path / "ray_bootstrap_config.yaml"
    assert not plan.autoscaler_gpus(config)
    config.write_text((REPO / "cluster.yaml").read_text())
    assert plan.autoscaler_gpus(config)


def test_a_member_with_overflowing_activations_fails_alone(small_mnist):
    source = USER_MODELS.read_text()
    specs = [RunSpec(model="overflow", model_source=source, seed=seed, epochs=1, train_limit=2_000) for seed in (0, 1)]
    fine, overflowed = vectorized.train_group(specs, small_mnist, threads=1)
    assert isinstance(overflowed, train.RunFailed) and "non-finite activations in epoch 1" in str(overflowed)
    assert fine.record.status == "ok" and fine.record.train_loss < 2.4


@pytest.fixture(scope="module")
def through_the_trainer(tmp_path_factory):
    """approach1 and a user's model without batch norm (whose validation loss after 2,000 images is
    not chaotic, unlike approach2's) x 6 seeds in groups of 3 through one trainer holding the GPU."""
    out = tmp_path_factory.mktemp("gpu-runner")
    completed = _driver(f"""
sys.exit(cli.main(["benchmark", "--models", "approach1,{USER_MODELS}:tiny", "--seeds", "6", "--epochs", "2",
                   "--train-limit", "2000", "--runs-per-task", "3", "--out", {str(out)!r}, "--name", "g", "--no-report"]))
""", out)
    return pd.read_parquet(out / "g" / "runs"), pd.read_parquet(out / "g" / "epochs"), completed.stderr


def test_the_plan_line_names_groups_trainers_and_backend(through_the_trainer):
    _, _, stderr = through_the_trainer
    assert "plan: 12 runs vectorized in 4 groups of K=3 on 1 GPU trainer (1 GPU each), Keras backend tensorflow" in stderr


def test_members_through_the_trainer_agree_with_separate_runs(through_the_trainer, small_mnist):
    runs, epochs, _ = through_the_trainer
    assert len(runs) == 12 and set(runs["status"]) == {"ok"} and set(runs["group_size"]) == {3}
    for model, seed, source in (("approach1", 0, None), ("tiny", 4, USER_MODELS.read_text())):
        row = runs[(runs["model"] == model) & (runs["seed"] == seed)].iloc[0]
        spec = RunSpec(model=model, seed=seed, epochs=2, train_limit=2_000, model_source=source)
        separate = train.run(spec, small_mnist, threads=1)
        mine = epochs[epochs["run_id"] == row["run_id"]].sort_values("epoch").to_dict("records")
        assert row["epochs_run"] == separate.record.epochs_run
        for a, b in zip(mine, separate.epochs, strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=5e-3)
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=5e-3)
            assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=0.01)


def test_a_second_group_of_the_same_recipe_compiles_nothing(through_the_trainer):
    runs, _, _ = through_the_trainer
    for model in ("approach1", "tiny"):
        by_group = runs[runs["model"] == model].groupby("group_id")["compile_seconds"].first().sort_values()
        assert len(by_group) == 2
        assert by_group.iloc[0] == 0.0 and by_group.iloc[1] > 0.0


def test_per_member_seconds_are_shares_and_the_group_has_its_own_columns(through_the_trainer):
    runs, _, _ = through_the_trainer
    assert set(runs["backend"]) == {"tensorflow"} and set(runs["vectorized"]) == {True}
    assert (runs["train_seconds"] < runs["group_seconds"]).all()
    assert (runs["images_per_second"] == runs["epochs_run"] * 2_000 / runs["train_seconds"]).all()


def test_a_killed_trainer_loses_no_streamed_member_and_retrains_only_the_rest(tmp_path):
    # Patience 0 stops some members after 2-3 epochs; patience 5 keeps the others training to
    # epoch 8: the trainer is killed right after the first members are recorded.
    completed = _driver(f"""
import os, signal, threading, time
from pathlib import Path
import pandas as pd
runs = Path({str(tmp_path)!r}) / "k" / "runs"
before = []
def kill_after_first_record():
    while not list(runs.glob("*.parquet")):
        time.sleep(0.05)
    before.extend(pd.read_parquet(runs)["run_id"])  # the members streamed so far
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::GroupTrainer"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass
threading.Thread(target=kill_after_first_record, daemon=True).start()
code = cli.main(["benchmark", "--models", "approach1", "--seed-list", "0,1,2", "--patience", "0,5", "--epochs", "8",
                 "--train-limit", "2000", "--gpus-per-run", "1", "--out", {str(tmp_path)!r}, "--name", "k",
                 "--no-report"])
print(json.dumps({{"code": code, "before": before}}))
""", tmp_path)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, completed.stderr[-3000:]
    assert "its trainer died; retrying the" in completed.stderr
    runs = pd.read_parquet(tmp_path / "k" / "runs")
    assert len(runs) == 6 and runs["run_id"].is_unique and set(runs["status"]) == {"ok"}
    first = set(result["before"])
    assert 0 < len(first) < 6
    # Members recorded before the kill keep the first group's id; a member of the same epoch may
    # still stream between the snapshot and the SIGKILL, and it keeps that id too. The rest retrain
    # under a new group id.
    [killed_group] = set(runs.loc[runs["run_id"].isin(first), "group_id"])
    streamed, retrained = runs[runs["group_id"] == killed_group], runs[runs["group_id"] != killed_group]
    assert first <= set(streamed["run_id"]) and len(streamed) < 6 and len(retrained) > 0
    epochs = pd.read_parquet(tmp_path / "k" / "epochs")
    assert not epochs.duplicated(["run_id", "epoch"]).any()


def test_the_jax_backend_trains_through_the_trainer(tmp_path):
    pytest.importorskip("jax")
    _driver(f"""
sys.exit(cli.main(["benchmark", "--models", "approach2", "--seeds", "2", "--epochs", "1", "--train-limit", "1000",
                   "--gpus-per-run", "1", "--out", {str(tmp_path)!r}, "--name", "j", "--no-report"]))
""", tmp_path, env={"KERAS_BACKEND": "jax"})
    runs = pd.read_parquet(tmp_path / "j" / "runs")
    assert runs[["status", "backend", "vectorized", "group_size"]].values.tolist() == [["ok", "jax", True, 2]] * 2


class _Cause:
    """A trainer's error as the driver sees it: Ray's wrapper with the exception raised inside."""

    def __init__(self, cause: Exception):
        self.cause = cause


def test_a_group_out_of_memory_is_retried_in_halves_and_a_lone_member_fails(tmp_path):
    from tqdm import tqdm

    from reducecnn import runner, store, worker

    config = BenchmarkConfig(models=("approach1",), seeds=tuple(range(5)), out=str(tmp_path), name="oom")
    location = store.locate(str(tmp_path), "oom")
    store.prepare(location)
    the_plan = plan.make_plan(config, config.specs(), plan.Cluster(cpus=2, gpus=1), stacked.refusal)
    with tqdm(disable=True) as bar:
        driver = runner._Driver(config, the_plan, location, None, "mnist", bar)
        [group] = [driver._group(specs) for specs in the_plan.groups]
        group.received.add(group.specs[0].run_id)  # streamed before the device ran out of memory
        driver._group_failed(group, _Cause(worker.GroupOutOfMemory("RESOURCE_EXHAUSTED: out of memory")))
        assert [[s.seed for s in g.specs] for g in driver.queue] == [[1, 2], [3, 4]]
        lone = driver._group(group.specs[4:])
        driver._group_failed(lone, _Cause(worker.GroupOutOfMemory("RESOURCE_EXHAUSTED: out of memory")))
    runs = pd.read_parquet(tmp_path / "oom" / "runs")
    assert runs[["seed", "status"]].values.tolist() == [[4, "failed"]]
    assert "GroupOutOfMemory" in runs["error"].iloc[0]
