"""Run the benchmark: `python jobs/benchmark.py`, `ray submit cluster.yaml jobs/benchmark.py -- ...`,
or `ray job submit --working-dir . -- python jobs/benchmark.py ...`. See --help."""

import sys
from pathlib import Path

# A checkout (or `ray job submit --working-dir .`) need not have the package installed:
# import it from beside this file. Built from __file__, since the cwd may vanish under Ray jobs.
_checkout = Path(__file__).resolve().parents[1]
if (_checkout / "reducecnn" / "__init__.py").is_file() and str(_checkout) not in sys.path:
    sys.path.insert(0, str(_checkout))

from reducecnn.cli import benchmark_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark_main())
