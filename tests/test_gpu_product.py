"""tools/gpu_product.py (issue 29): the figures' logic, and `measure --tiny` end to end on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import gpu_product as gp

REPO = Path(__file__).resolve().parents[1]
KEYS = ("device", "study_wall_s", "sweep_runs", "sweep_wall_s", "sweep_img_per_s", "trainer_img_per_s_k64",
        "notebook_img_per_s", "notebook_sweep_s", "notebook_sweep_ratio", "study", "targets")
REFERENCE = {"baseline": {"mean": 98.76, "std": 0.13}, "approach1": {"mean": 98.26, "std": 0.11}}


def test_the_sweep_has_ten_learning_rates_from_0_0005_to_0_005():
    assert gp.LEARNING_RATES == (0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.004, 0.0045, 0.005)
    assert gp.FULL["sweep_seeds"] * len(gp.FULL["sweep_rates"]) == 300


def test_sweep_images_count_epochs_run_of_ok_runs():
    runs = [{"status": "ok", "epochs_run": 10}, {"status": "ok", "epochs_run": 4},
            {"status": "failed", "epochs_run": None}]
    assert gp.sweep_images(runs, 50_000) == 14 * 50_000


def _study(mean_baseline: float, mean_approach1: float) -> dict:
    runs = [{"model": "baseline", "status": "ok", "test_accuracy": (mean_baseline + d) / 100} for d in (-0.1, 0.1)]
    runs += [{"model": "approach1", "status": "ok", "test_accuracy": (mean_approach1 + d) / 100} for d in (-0.1, 0.1)]
    return {"wall_s": 38.0, "timed_out": False, "all_ok": True, "accuracy": gp.accuracy_summary(runs)}


def test_figures_and_targets_all_pass():
    sweep = {"wall_s": 200.0, "timed_out": False, "runs": 300, "images": 300 * 10 * 50_000}
    figures = gp.assemble("NVIDIA H100 80GB HBM3", _study(98.8, 98.2), sweep, 800_000.0, 30_000.0, REFERENCE, False)
    assert all(key in figures for key in KEYS)
    assert figures["sweep_img_per_s"] == pytest.approx(750_000)
    assert figures["notebook_sweep_s"] == pytest.approx(5_000)
    assert figures["notebook_sweep_ratio"] == pytest.approx(25)
    assert figures["baseline_mean"] == pytest.approx(98.8) and figures["study"]["approach1"]["ok"] == 2
    assert {name: check["pass"] for name, check in figures["targets"].items()} == {
        "study_wall": True, "study_all_ok": True, "study_accuracy": True, "sweep_wall": True,
        "sweep_vs_trainer": True, "sweep_vs_notebook": True}
    assert any(line.startswith("target sweep_vs_trainer: PASS") for line in gp.figure_lines(figures))


def test_targets_fail_where_the_issue_says_and_missing_steps_are_not_measured():
    sweep = {"wall_s": 300.0, "timed_out": True, "runs": 250, "images": 250 * 10 * 50_000}
    figures = gp.assemble("NVIDIA H100", _study(98.8, 97.0), sweep, 800_000.0, None, REFERENCE, False)
    verdicts = {name: check["pass"] for name, check in figures["targets"].items()}
    assert verdicts["study_accuracy"] is False  # approach1 11 std below the CPU runs
    assert verdicts["sweep_wall"] is False and verdicts["sweep_vs_trainer"] is False  # 416,667 < 640,000
    assert verdicts["sweep_vs_notebook"] is None and figures["notebook_sweep_s"] is None
    nothing = gp.assemble("CPU", None, None, None, None, {}, True)
    assert all(check["pass"] is None for check in nothing["targets"].values())
    assert "study_wall_s: -" in gp.figure_lines(nothing)


def test_requirements_are_read_for_python_3_12_without_extras():
    metadata = ("Name: x\nRequires-Dist: click>=7.0\nRequires-Dist: typing-extensions>=4.4; python_version < '3.13'\n"
                "Requires-Dist: tomli; python_version < '3.11'\nRequires-Dist: grpcio; extra == 'default'\n"
                "Requires-Dist: Jsonschema_Specifications\n")
    names = gp.requirement_names(metadata)
    assert names == ["click", "typing-extensions", "jsonschema-specifications"]
    assert gp.unmet({"x.whl": names}, {"click", "typing-extensions"}) == {"x.whl": ["jsonschema-specifications"]}


def test_the_bundle_folder_is_git_ignored():
    assert "/.gpu-bundle/" in (REPO / ".gitignore").read_text().splitlines()


@pytest.mark.slow
def test_measure_tiny_on_a_cpu_with_a_logical_gpu_and_no_tensorflow(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("RAY_ADDRESS", None)
    completed = subprocess.run([sys.executable, "-m", "tools.gpu_product", "measure", "--tiny", "--like-image",
                                "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads((out / "gpu-runner.json").read_text())
    assert all(key in figures for key in KEYS) and figures["device"] == "CPU" and figures["tiny"]
    assert figures["study_all_ok"] and set(figures["study"]) == {"baseline", "approach1", "approach2"}
    assert figures["sweep_runs"] == 4 and figures["sweep_img_per_s"] > 0
    assert figures["trainer_img_per_s_k64"] > 0 and figures["notebook_img_per_s"] > 0
    assert figures["notebook_sweep_ratio"] > 0 and set(figures["targets"]) >= {"study_wall", "sweep_vs_notebook"}
    assert "plan: 6 runs vectorized in 3 groups of K=2 on 1 GPU trainer" in (out / "study.log").read_text()
    # At most 8 files come back from a device call, at OUT's top level.
    assert len(list(out.iterdir())) <= 8 and all(path.is_file() for path in out.iterdir())
    assert "device: CPU (tiny sizes)" in completed.stdout
