"""jobs/perf.py runs the same specs three ways and prints one table with ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PERF = Path(__file__).resolve().parents[1] / "jobs" / "perf.py"


@pytest.mark.slow
def test_perf_prints_all_three_ways_with_ratios():
    command = [sys.executable, str(PERF), "--models", "baseline", "--seeds", "1", "--epochs", "1",
               "--train-limit", "500"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {line.split()[0]: line for line in completed.stdout.splitlines() if line.split()}
    assert {"notebook", "reducecnn", "tune"} <= set(rows)
    assert rows["notebook"].split()[-2] == "1.00x"
