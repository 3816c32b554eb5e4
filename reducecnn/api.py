"""reducecnn from Python (a notebook): the command line's benchmark path, returning DataFrames.

    from reducecnn import benchmark, load_runs
    runs = benchmark(models=["approach1", "my_models.py:tiny"], seeds=5, epochs=3, name="try")
    runs.groupby("model")["test_accuracy"].describe()
    load_runs("results/try", "results/mnist-holdout")      # one or several results folders

`benchmark` validates, resumes and writes exactly as `reducecnn benchmark` does (a bad field
raises UserError before anything runs); `run_config` is the body both share.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reducecnn import logs
from reducecnn.config import BenchmarkConfig, UserError, make_benchmark_config, recipe_change_warning

if TYPE_CHECKING:  # pandas is imported where a table is read: the command line starts without it
    import pandas as pd


def check_models(references: list[str]) -> None:
    """Build each user model once and check its shapes (after the cheap checks, before Ray)."""
    from reducecnn.models import ModelError, check, is_reference, load_reference

    for reference in references:
        if is_reference(reference):
            logs.import_frameworks()
            try:
                check(load_reference(reference))
            except ModelError as error:
                raise UserError(str(error)) from None


def require_tensorflow(command: str) -> None:
    """Stop before any work when TensorFlow is missing (reducecnn installed without an extra)."""
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(f"`{command}` needs TensorFlow, which is not installed: pip install 'reducecnn[cpu]' "
                        "on laptops and CPU nodes, or 'reducecnn[gpu]' on CUDA nodes (from a checkout: "
                        "pip install -e '.[cpu]')")


def run_config(config: BenchmarkConfig, command: str = "benchmark"):
    """Check what needs the framework, then train what is not recorded yet and write the report
    (local results); returns the runner's Outcome."""
    from reducecnn import data, runner, store

    from reducecnn.plan import trainer_backend

    local_ray = not (config.address or os.environ.get("RAY_ADDRESS"))
    if local_ray and trainer_backend() == "tensorflow":
        # A local Ray's workers share this environment. With KERAS_BACKEND=jax the group trainers
        # need no TensorFlow (a GPU machine with JAX only); runs that cannot be vectorized say so.
        require_tensorflow(command)
    if local_ray or importlib.util.find_spec("tensorflow") is not None:
        check_models(list(config.models))  # else the cluster's workers build them and report
    dataset = data.load(config.dataset, config.data_dir)
    location = store.locate(config.out, config.name)
    store.prepare(location)
    done = store.recorded_ok(location)  # an unreadable results file stops us before anything is written
    previous = store.read_config(location)
    warning = recipe_change_warning(location.path, previous, config) if previous else None
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    store.write_config(location, config.model_dump_json(indent=2))
    return runner.run_benchmark(config, dataset, location, done=done)


def load_runs(*folders: str | Path) -> pd.DataFrame:
    """The runs tables of one or several local results folders as one DataFrame (files of older
    versions conformed to today's columns); UserError when a folder has no runs; a UserWarning when
    they hold several recipes of a model (group by model and the recipe columns, not model alone)."""
    import pandas as pd

    from reducecnn import aggregate, store

    frames = []
    for folder in folders:
        path = Path(folder)
        if not (path / "runs").is_dir():
            raise UserError(f"no runs/ folder in {path}")
        frame, skipped = store.read_table(store.locate(str(path.parent), path.name), "runs")
        if skipped:
            raise UserError("; ".join(skipped))
        frames.append(frame)
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    mixed = aggregate.mixed_recipes_warning(runs) if len(runs) else None
    if mixed:
        warnings.warn(mixed, stacklevel=2)
    return runs


def write_report(results_dirs: list[str], margin: float = 0.5, into: str | None = None,
                 ) -> tuple[Path, pd.DataFrame, list[str]]:
    """Write summary.md, summary.parquet and the plots of one or more local results folders
    (into the first, or `into`); returns the summary.md path, the runs and the skipped files."""
    import pandas as pd

    from reducecnn import report, store

    runs, epochs, warnings = [], [], []
    for results_dir in results_dirs:
        location = store.locate(str(Path(results_dir).parent), Path(results_dir).name)
        for folder, frames in (("runs", runs), ("epochs", epochs)):
            frame, folder_warnings = store.read_table(location, folder)
            frames.append(frame)
            warnings += folder_warnings
    all_runs = pd.concat(runs, ignore_index=True)
    if all_runs.empty:
        raise UserError(f"no runs recorded in {', '.join(str(d) + '/runs' for d in results_dirs)}")
    summary = report.write_report(all_runs, pd.concat(epochs, ignore_index=True), Path(into or results_dirs[0]),
                                  margin=margin / 100, warnings=warnings)
    return summary, all_runs, warnings


def benchmark(report: bool = True, verbose: bool = False, **fields: Any) -> pd.DataFrame:
    """Run a benchmark as `reducecnn benchmark` would, with the same fields as a config file
    (`models`, `seeds`, `epochs`, `learning_rate=[0.005, 0.01]`, `name`, `out`, ...); returns its
    runs table, the same rows `pandas.read_parquet(out/name/runs)` gives."""
    logs.set_verbose(verbose or logs.verbose())
    config = make_benchmark_config({**fields, "report": report})
    outcome = run_config(config)
    if config.report and outcome.location.is_local:
        write_report([outcome.location.path])
    return load_runs(Path(config.out) / config.name)
