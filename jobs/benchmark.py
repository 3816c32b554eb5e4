"""Run the benchmark: `python jobs/benchmark.py`, `ray submit cluster.yaml jobs/benchmark.py -- ...`,
or `ray job submit --working-dir . -- python jobs/benchmark.py ...`. See --help.

It imports the installed package; under `ray job submit --working-dir`, Ray puts the submitted
folder first on PYTHONPATH, so the driver runs the submitted code, as the workers do."""

import sys

try:
    from reducecnn.cli import benchmark_main
except ModuleNotFoundError as error:
    if error.name != "reducecnn":
        raise
    sys.exit("benchmark.py: error: reducecnn is not installed in this Python; from the checkout: "
             "pip install -e '.[cpu]' (cluster.yaml's setup does this on every node)")

if __name__ == "__main__":
    sys.exit(benchmark_main())
