"""tools/step_time.py: one step's time, Keras's own kernels against reducecnn's, side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "tools.step_time"]  # run from REPO


def test_prints_both_variants_and_their_ratio():
    completed = subprocess.run([sys.executable, *SCRIPT, "--models", "approach2", "--images", "2048",
                                "--repeats", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    [row] = [line.split() for line in completed.stdout.splitlines() if line.startswith("approach2")]
    keras_ms, reducecnn_ms, ratio = float(row[1]), float(row[2]), row[3]
    assert keras_ms > 0 and reducecnn_ms > 0
    assert ratio.endswith("x") and abs(float(ratio[:-1]) - reducecnn_ms / keras_ms) < 0.02


@pytest.mark.parametrize("args, message", [
    (["--models", "nope"], "unknown model 'nope'"),
    (["--images", "0"], "must be >= 1"),
    (["--repeats", "0"], "must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    completed = subprocess.run([sys.executable, *SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and message in completed.stderr
