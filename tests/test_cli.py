"""The command line: one-line errors, exit 2, nothing written; models table; one run in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reducecnn.cli import benchmark_main, main

REPO = Path(__file__).resolve().parents[1]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["--models", "nope"], "unknown model 'nope'; known: approach1, approach2, baseline, conv8k, deep1k, sep1k, sep8k, share16, share1k, share1k6, share1k6s, share1k9, small, small2000, small2k"),
    (["--seeds", "0"], "seeds: a number of seeds must lie between 1 and 100,000, got 0"),
    (["--seed-list=-1,2"], "seeds: must be between 0 and 4294967295 (2**32 - 1), got -1"),
    (["--epochs", "0"], "epochs: must be greater than or equal to 1"),
    (["--batch-size", "0"], "batch_size: must be greater than or equal to 1"),
    (["--gpus-per-run", "-1"], "gpus_per_run: must be greater than or equal to 0"),
    (["--gpus-per-run", "1.5"], "gpus_per_run 1.5 must be a fraction <= 1 or a whole number"),
    (["--protocol", "holdon"], "protocol: must be 'holdout' or 'study'"),
    (["--dataset", "cifar"], "dataset: must be 'mnist' or 'fashion_mnist'"),
    (["--config", "/nonexistent/bench.yaml"], "config file /nonexistent/bench.yaml does not exist"),
    (["--epochs", "x"], "epochs: must be a valid integer, unable to parse string as an integer; e.g. epochs: 10"),
])
def test_bad_benchmark_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(benchmark_main([*argv, "--out", str(tmp_path / "out")]))
    assert exit_info.value.code == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_misspelled_config_key_is_named(tmp_path, capsys):
    (tmp_path / "bench.yaml").write_text("seedz: [0, 1]\n")
    assert benchmark_main(["--config", str(tmp_path / "bench.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "bench.yaml: unknown field 'seedz' (did you mean seeds?)" in _one_line_error(capsys)


def test_data_dir_without_mnist_is_one_line_and_writes_no_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = benchmark_main(["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert code == 2 and "holds no mnist" in _one_line_error(capsys)
    assert not list((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize("argv, message", [
    (["--model", "aproach1", "--seed", "0"], "unknown model 'aproach1'"),
    (["--model", "baseline", "--seed", "-1"], "seed: must be greater than or equal to 0"),
    (["--model", "baseline", "--seed", "0", "--epochs", "0"], "epochs: must be greater than or equal to 1"),
    (["--model", "baseline", "--seed", "0", "--protocol", "x"], "protocol: must be 'holdout' or 'study'"),
])
def test_bad_train_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--out", str(tmp_path)]) == 2
    assert message in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())


def test_models_prints_the_parameter_table(capsys):
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "591,786" in table and "3,418" in table and "3,130" in table


def test_train_writes_one_record(tmp_path, capsys):
    argv = ["train", "--model", "baseline", "--seed", "1", "--epochs", "1", "--train-limit", "1000",
            "--threads", "1", "--out", str(tmp_path), "--name", "one"]
    assert main(argv) == 0
    runs = pd.read_parquet(tmp_path / "one" / "runs")
    assert runs[["model", "seed", "status", "benchmark"]].values.tolist() == [["baseline", 1, "ok", "one"]]


def test_mirrored_over_two_logical_cpus(tmp_path):
    # A fresh process: logical devices must be configured before TensorFlow initialises.
    command = [sys.executable, "-m", "reducecnn", "train", "--model", "approach2", "--seed", "0", "--epochs", "1",
               "--train-limit", "1000", "--cpu-devices", "2", "--out", str(tmp_path), "--name", "mirrored"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    record = pd.read_parquet(tmp_path / "mirrored" / "runs").iloc[0]
    assert (record["strategy"], record["replicas"], record["devices"]) == ("mirrored", 2, "CPU:0,CPU:1")
    assert json.loads(record["spec_json"])["batch_size"] == 32  # global batch, split over the replicas


def test_report_of_an_empty_folder_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bench" / "runs").mkdir(parents=True)
    assert main(["report", str(tmp_path / "bench")]) == 2
    assert "no runs recorded in" in _one_line_error(capsys)


def test_report_combines_several_results_folders(tmp_path, capsys):
    for name, seed in (("one", 1), ("two", 2)):
        argv = ["train", "--model", "baseline", "--seed", str(seed), "--epochs", "1", "--train-limit", "500",
                "--threads", "1", "--out", str(tmp_path), "--name", name]
        assert main(argv) == 0
    assert main(["report", str(tmp_path / "one"), str(tmp_path / "two"), "--into", str(tmp_path / "both")]) == 0
    assert "| baseline | 591,786 | 591,786 | 5 | 911,104 | 2 / 0 |" in (tmp_path / "both" / "summary.md").read_text()
    capsys.readouterr()


def test_report_of_a_folder_of_benchmarks_lists_them(tmp_path, capsys):
    for name in ("one", "two"):
        (tmp_path / name / "runs").mkdir(parents=True)
    (tmp_path / "plots").mkdir()
    assert main(["report", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path} holds 2 benchmarks; report one with `reducecnn report {tmp_path}/one`")
    assert lines[1:] == [f"  {tmp_path}/one", f"  {tmp_path}/two"]


def test_models_prints_no_framework_log_lines():
    completed = subprocess.run([sys.executable, "-m", "reducecnn", "models"], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0 and "approach1" in completed.stdout
    assert completed.stderr == ""  # no absl / oneDNN start-up lines


@pytest.mark.parametrize("argv", [
    ["models"],
    ["train", "--model", "approach1", "--seed", "0", "--epochs", "1", "--train-limit", "64"],
    ["benchmark", "--models", "approach1", "--seeds", "1", "--epochs", "1", "--train-limit", "64"],
])
def test_without_tensorflow_a_command_says_which_extra_to_install_before_any_work(tmp_path, argv):
    # reducecnn installed without [cpu]/[gpu]: TensorFlow cannot be imported.
    program = "import sys; sys.modules['tensorflow'] = None; from reducecnn.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    completed = subprocess.run([sys.executable, "-c", program, *argv, *(["--out", str(tmp_path)] if argv[0] != "models"
                                                                       else [])],
                               capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stdout == ""
    [line] = completed.stderr.splitlines()
    assert "needs TensorFlow, which is not installed" in line and "reducecnn[cpu]" in line and "reducecnn[gpu]" in line
    assert list(tmp_path.iterdir()) == []  # nothing written, no Ray session started here


def test_a_run_near_chance_gets_a_hint_about_too_few_steps():
    from reducecnn.config import RunSpec
    from reducecnn.runner import _line
    from reducecnn.records import RunResult, record_for

    spec = RunSpec(model="approach1", seed=0, epochs=1, train_limit=5000)
    near_chance = _line(RunResult(record_for(spec, test_accuracy=0.1135, epochs_run=1, train_seconds=3.0)))
    assert near_chance.startswith("ok approach1 seed 0: test accuracy 0.1135, 1 epoch in 3 s  (near chance: too few")
    assert "batch norm" in near_chance
    trained = _line(RunResult(record_for(spec, test_accuracy=0.97, epochs_run=2, train_seconds=3.0)))
    assert trained == "ok approach1 seed 0: test accuracy 0.9700, 2 epochs in 3 s"


def test_a_folder_named_reducecnn_where_the_user_stands_does_not_shadow_the_package(tmp_path):
    # `git clone` names the checkout `reducecnn`; Ray puts the driver's working directory first on
    # every worker's sys.path, where that folder would be imported instead of the package.
    (tmp_path / "reducecnn" / "docs").mkdir(parents=True)
    command = [sys.executable, str(REPO / "jobs" / "benchmark.py"), "--models", "approach2", "--seeds", "1",
               "--epochs", "1", "--train-limit", "500", "--out", "out", "--name", "shadow", "--no-report"]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert pd.read_parquet(tmp_path / "out" / "shadow" / "runs")["status"].tolist() == ["ok"]
