"""Your own models (`file.py:function`), recipe grids and the Python API, through the real runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reducecnn.cli import main
from reducecnn.config import RunSpec, make_benchmark_config

REPO = Path(__file__).resolve().parents[1]
TINY = "tests/user_models.py:tiny"
SMALL = ["--epochs", "1", "--train-limit", "500"]


@pytest.mark.parametrize("reference, message", [
    ("tests/nowhere.py:tiny", "file tests/nowhere.py does not exist"),
    ("tests/user_models.py:huge", "tests/user_models.py defines no function huge"),
    ("tests/user_models.py:raises", "building it raised RuntimeError: the builder is broken"),
    ("tests/user_models.py:not_a_model", "the function returned str, not a Keras model"),
    ("tests/user_models.py:wrong_input", "it takes inputs of shape (32, 32, 3), not 28x28x1 images"),
    ("tests/user_models.py:wrong_output", "it outputs shape (7,) per image, not 10 class probabilities"),
    ("tests/user_models.py:logits", "its outputs are not probabilities; end it in a softmax"),
    ("no_such_package.models:tiny", "no Python module no_such_package.models can be imported here"),
    ("tests/user_models.py:", "expected file.py:function or package.module:function"),
])
def test_a_bad_model_reference_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, reference,
                                                                      message):
    monkeypatch.chdir(REPO)
    assert main(["benchmark", "--models", reference, "--out", str(tmp_path), *SMALL]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("reducecnn: error: ") and message in line, line
    assert list(tmp_path.iterdir()) == []


def test_models_shows_a_user_models_parameter_table(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["models", "--models", f"{TINY},approach1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["tiny", "1,418", "0", "1,418"] and lines[2].startswith("approach1")


def test_editing_the_model_file_changes_its_run_ids(tmp_path):
    mine = tmp_path / "mine.py"
    shutil.copy(REPO / "tests" / "user_models.py", mine)
    before = [spec.run_id for spec in make_benchmark_config({"models": f"{mine}:tiny", "seeds": 2}).specs()]
    mine.write_text(mine.read_text().replace("Conv2D(8, 3", "Conv2D(12, 3"))
    after = [spec.run_id for spec in make_benchmark_config({"models": f"{mine}:tiny", "seeds": 2}).specs()]
    assert before[0].startswith("tiny-s0-") and not set(before) & set(after)
    # a registered model's run ids are what they were before user models existed
    [registered] = make_benchmark_config({"models": "approach1", "seeds": 1}).specs()
    assert registered.model_source is None and registered.run_id == RunSpec(model="approach1", seed=0).run_id


def test_two_functions_recorded_under_one_name_are_refused(tmp_path, capsys, monkeypatch):
    other = tmp_path / "other.py"
    shutil.copy(REPO / "tests" / "user_models.py", other)
    monkeypatch.chdir(REPO)
    assert main(["benchmark", "--models", f"{TINY},{other}:tiny", "--out", str(tmp_path / "out")]) == 2
    assert "would both be recorded as model 'tiny'" in capsys.readouterr().err


def test_a_grid_is_the_cross_product_of_the_recipe_values():
    config = make_benchmark_config({"models": "approach1,approach2", "seeds": 2, "learning_rate": "0.005,0.01",
                                    "augment_shift": [0, 2]})
    specs = config.specs()
    assert len(specs) == 16 and config.shape() == "2 models x 4 recipes x 2 seeds"
    assert {(s.learning_rate, s.augment_shift) for s in specs} == {(0.005, 0), (0.005, 2), (0.01, 0), (0.01, 2)}
    assert len({s.run_id for s in specs}) == 16


def _benchmark(cluster, out: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "jobs" / "benchmark.py"), "--address", cluster.address, "--out", str(out),
               *flags]
    return subprocess.run(command, env=cluster.env, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_a_user_model_and_a_grid_through_the_two_node_cluster(cluster, tmp_path):
    flags = ["--models", TINY, "--seeds", "2", *SMALL, "--learning-rate", "0.005,0.01", "--augment-shift", "0,1",
             "--name", "grid"]
    first = _benchmark(cluster, tmp_path, *flags)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "8 runs (1 model x 4 recipes x 2 seeds) in grid: 0 already recorded, 8 to train" in first.stderr
    runs = pd.read_parquet(tmp_path / "grid" / "runs")
    assert len(runs) == 8 and set(runs["status"]) == {"ok"} and set(runs["model"]) == {"tiny"}
    assert set(runs["params_trainable"]) == {1418}
    assert set(zip(runs["learning_rate"], runs["augment_shift"])) == {(0.005, 0), (0.005, 1), (0.01, 0), (0.01, 1)}
    assert "def tiny():" in json.loads(runs["spec_json"].iloc[0])["model_source"]  # the model travels with its run
    assert len(set(runs["ray_node_id"])) == 2
    again = _benchmark(cluster, tmp_path, *flags)
    assert again.returncode == 0 and "8 already recorded, 0 to train" in again.stderr
    assert len(pd.read_parquet(tmp_path / "grid" / "runs")) == 8


def test_the_python_api_returns_what_read_parquet_gives(cluster, tmp_path):
    program = (
        "import sys; from reducecnn import benchmark; "
        f"runs = benchmark(models=['{TINY}'], seeds=2, epochs=1, train_limit=1000, "
        f"address='{cluster.address}', out=sys.argv[1], name='api'); runs.to_pickle(sys.argv[2])"
    )
    completed = subprocess.run([sys.executable, "-c", program, str(tmp_path), str(tmp_path / "runs.pkl")],
                               env=cluster.env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-3000:]
    returned = pd.read_pickle(tmp_path / "runs.pkl").sort_values("run_id").reset_index(drop=True)
    read = pd.read_parquet(tmp_path / "api" / "runs").sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(returned, read)
    assert len(read) == 2 and (tmp_path / "api" / "summary.md").is_file()
