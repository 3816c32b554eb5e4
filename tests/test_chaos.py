"""The chaos script, small: a few random worker and driver kills, nothing lost or duplicated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHAOS = Path(__file__).resolve().parent / "chaos.py"


@pytest.mark.slow
def test_chaos_loses_and_duplicates_nothing():
    completed = subprocess.run([sys.executable, str(CHAOS), "--worker-kills", "4", "--driver-kills", "2"],
                               capture_output=True, text=True, timeout=1500)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-2000:]
    assert "duplicates: 0" in completed.stdout and "lost specs: 0" in completed.stdout
