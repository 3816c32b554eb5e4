"""tools/gpu_vectorized.py, tiny, on the backend the GPU machine uses (JAX), without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "tools.gpu_vectorized"]  # run from REPO


def test_prints_and_writes_the_throughput_rows_and_the_study_workload(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "figures.json"
    command = [sys.executable, *SCRIPT, "--models", "approach1", "--ks", "1,2", "--steps", "3", "--packed", "0",
               "--study-models", "approach2", "--study-seeds", "2", "--study-epochs", "1", "--train-limit", "300",
               "--json", str(out)]
    completed = subprocess.run(command, cwd=REPO, env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [(row["model"], row["K"]) for row in figures["rows"]] == [("approach1", 1), ("approach1", 2)]
    assert all(row["img_per_s_total"] == pytest.approx(row["img_per_s_per_run"] * row["K"]) for row in figures["rows"])
    assert figures["backend"] == "jax" and figures["study"]["accuracy"]["approach2"]["runs"] == 2
    assert "study workload, models one after another: 1 models x 2 seeds x 1 epochs" in completed.stdout
    # Side by side, one process per model, trains the same runs (CPU arithmetic is deterministic).
    side = figures["study_side_by_side"]["accuracy"]["approach2"]
    assert side["test_accuracy"] == figures["study"]["accuracy"]["approach2"]["test_accuracy"]
    assert figures["errors"] == []


def test_an_unknown_model_is_one_line_exit_2():
    completed = subprocess.run([sys.executable, *SCRIPT, "--models", "nope"], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 2 and "unknown model 'nope'" in completed.stderr


def test_phases_times_each_part_of_a_group(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "phases.json"
    command = [sys.executable, *SCRIPT, "--phases", "--study-models", "approach2", "--study-seeds", "2",
               "--study-epochs", "2", "--train-limit", "320", "--json", str(out)]
    completed = subprocess.run(command, cwd=REPO, env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    (row,) = json.loads(out.read_text())["phases"]
    assert row["model"] == "approach2" and {"build_s", "train_1_s", "eval_1_s", "train_2_s"} <= set(row)
    assert all(value >= 0 for name, value in row.items() if name != "model")
