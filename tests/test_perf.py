"""tools/perf.py runs the same specs three ways and prints one table with ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PERF = ["-m", "tools.perf"]  # run from REPO


@pytest.mark.slow
def test_perf_prints_all_three_ways_with_ratios():
    command = [sys.executable, *PERF, "--models", "baseline", "--seeds", "1", "--epochs", "1",
               "--train-limit", "500"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {line.split()[0]: line for line in completed.stdout.splitlines() if line.split()}
    assert {"notebook", "reducecnn", "tune"} <= set(rows)
    assert rows["notebook"].split()[-2] == "1.00x"
    assert "Tune - reducecnn:" in completed.stdout


def _perf_module():
    from tools import perf

    return perf


def test_table_gives_ratios_and_tunes_extra_cost_per_trial(capsys):
    def rows(accuracy):
        return [{"model": "baseline", "seed": seed, "test_accuracy": accuracy + seed / 100,
                 "images_per_second": 1000.0, "peak_rss_mb": 900.0, "images": 60_000} for seed in (0, 1)]

    results = [{"way": "notebook", "wall_seconds": 200.0, "rows": rows(0.98)},
               {"way": "reducecnn", "wall_seconds": 60.0, "rows": rows(0.97)},
               {"way": "tune", "wall_seconds": 75.0, "rows": rows(0.97)}]
    _perf_module().print_table(results, ["baseline"])
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()}
    assert lines["reducecnn"][-2:] == ["0.30x", "0.80x"]
    assert lines["notebook"][-2:] == ["1.00x", "2.67x"]
    assert "97.50±0.71" in lines["reducecnn"]
    assert " ".join(lines["Tune"]) == ("Tune - reducecnn: 15.0 s (7.5 s per trial); with that difference, "
                                       "reducecnn <= 0.80x of Tune holds while Tune takes <= 75 s")
