"""tools/gpu_packing.py: N concurrent training processes, images/s per run and in total."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "tools.gpu_packing"]  # run from REPO


def test_two_concurrent_runs_report_per_run_and_total_throughput(tmp_path):
    out = tmp_path / "packing.json"
    completed = subprocess.run([sys.executable, *SCRIPT, "--models", "approach2", "--runs", "1,2",
                                "--steps", "64", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["model"], r["runs"]) for r in rows] == [("approach2", 1), ("approach2", 2)]
    assert rows[0]["total_vs_one_run"] == 1.0 and rows[0]["backend"] == "tensorflow"
    two = rows[1]
    assert two["per_run_images_per_second"] > 0
    # The total counts both runs' images over the slower run's time: more than one run's share
    # (whenever neither run took 3x the other's time). How much more depends on how the two
    # overlapped on a loaded machine (1.05x in one CI run), so the figure itself is the script's
    # to print, not this test's to bound.
    assert two["total_images_per_second"] > two["per_run_images_per_second"]
    assert "approach2" in completed.stdout and "img/s total" in completed.stdout


@pytest.mark.parametrize("args, message", [
    (["--models", "nope"], "unknown model 'nope'"),
    (["--runs", "0"], "--runs must list positive integers"),
    (["--runs", "x"], "--runs must list positive integers"),
    (["--steps", "0"], "must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    completed = subprocess.run([sys.executable, *SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and message in completed.stderr
