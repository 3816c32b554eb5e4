"""reducecnn from Python (a notebook): the command line's benchmark path, returning DataFrames.

    from reducecnn import benchmark, load_runs
    runs = benchmark(models=["approach1", "my_models.py:tiny"], seeds=5, epochs=3, name="try")
    runs.groupby("model")["test_accuracy"].describe()
    load_runs("results/try", "results/mnist-holdout")      # one or several results folders
    load_runs("s3://bucket/results/try")                   # or on an object store

`benchmark` validates, resumes and writes exactly as `reducecnn benchmark` does (a bad field
raises UserError before anything runs); `run_config` is the body both share.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from reducecnn import catalog, data, devices, logs, store
from reducecnn.config import BenchmarkConfig, UserError, make_benchmark_config, recipe_change_warning
from reducecnn.plan import trainer_backend

# Imported where used, each for a measured start-up saving of every command (2-core machine,
# `python -c "import reducecnn.X"`): the runner (Ray, 0.8 s) and the report (matplotlib and
# SciPy, 1.5 s) by the commands that run or report; models (Keras, 5.7 s) after devices.load().


def check_models(references: list[str]) -> None:
    """Build each user model once and check its shapes (after the cheap checks, before Ray)."""
    for reference in references:
        if catalog.is_reference(reference):
            devices.load(driver=True)
            from reducecnn import models  # Keras: after devices.load() (see the top)

            try:
                models.check(catalog.load_reference(reference))
            except catalog.ModelError as error:
                raise UserError(str(error)) from None


def run_config(config: BenchmarkConfig, command: str = "benchmark"):
    """Check what needs the framework, then train what is not recorded yet and compact what was
    written; returns the runner's Outcome."""
    from reducecnn import runner  # Ray: see the top

    local_ray = not (config.address or os.environ.get("RAY_ADDRESS"))
    if local_ray and trainer_backend() == "tensorflow":
        # A local Ray's workers share this environment. With KERAS_BACKEND=jax the group trainers
        # need no TensorFlow (a GPU machine with JAX only); runs that cannot be vectorized say so.
        devices.require_tensorflow(command)
    if local_ray or importlib.util.find_spec("tensorflow") is not None:
        check_models(list(config.models))  # else the cluster's workers build them and report
    dataset = data.load(config.dataset, config.data_dir)
    location = store.locate(config.out, config.name)
    store.prepare(location)  # a missing bucket stops us here, before any training
    done = store.recorded_ok(location)  # an unreadable results file stops us before anything is written
    previous = store.read_config(location)
    warning = recipe_change_warning(location.path, previous, config) if previous else None
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    store.write_config(location, config.model_dump_json(indent=2))
    outcome = runner.run_benchmark(config, dataset, location, done=done)
    store.compact(location)
    return outcome


def results_location(folder: str | Path) -> store.Location:
    """A results folder as the user named it (a path, or a URI such as s3://bucket/prefix/name)."""
    text = str(folder).rstrip("/")
    parent, _, name = text.rpartition("/")
    if not name or parent.endswith(":/"):
        raise UserError(f"{folder} names no results folder (expected PARENT/NAME, e.g. results/mnist-holdout)")
    return store.locate(parent or ".", name)


def benchmarks_in(folder: str | Path) -> list[str]:
    """The benchmarks (folders with a runs/ folder) directly inside a folder, by name."""
    location = results_location(folder)
    try:
        entries = location.filesystem.get_file_info(pafs.FileSelector(location.path, allow_not_found=True))
        inside = [entry.path for entry in entries if entry.type == pafs.FileType.Directory]
        runs = location.filesystem.get_file_info([f"{path}/runs" for path in inside])
    except OSError as error:
        raise UserError(f"{folder}: {store.remote_hint(str(error))}") from None
    return sorted(path.rsplit("/", 1)[-1] for path, info in zip(inside, runs) if info.type == pafs.FileType.Directory)


def has_runs(folder: str | Path) -> bool:
    """Whether a results folder (local or on an object store) has a runs/ folder."""
    location = results_location(folder)
    try:
        return location.filesystem.get_file_info(location.join("runs")).type == pafs.FileType.Directory
    except OSError as error:
        raise UserError(f"{folder}: {store.remote_hint(str(error))}") from None


def load_runs(*folders: str | Path) -> pd.DataFrame:
    """The runs tables of one or several results folders, local or s3://..., as one DataFrame
    (each run once, files of older versions conformed to today's columns); UserError when a
    folder has no runs."""
    from reducecnn import aggregate  # SciPy: see the top

    frames = []
    for folder in folders:
        if not has_runs(folder):
            raise UserError(f"no runs/ folder in {folder}")
        frame, skipped = store.read_table(results_location(folder), "runs")
        if skipped:
            raise UserError("; ".join(skipped))
        frames.append(frame)
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    mixed = aggregate.mixed_recipes_warning(runs) if len(runs) else None
    if mixed:
        warnings.warn(mixed, stacklevel=2)
    return runs


@dataclass(frozen=True)
class Report:
    """A written report: where its summary.md is (a path or a URI), its text, what it read."""

    summary: str
    markdown: str
    runs: pd.DataFrame
    warnings: list[str]


def write_report(results_dirs: list[str], margin: float = 0.5, into: str | None = None) -> Report:
    """Write summary.md, summary.parquet and the plots of one or more results folders (into the
    first, or `into`; on an object store, rendered here and uploaded beside the results)."""
    from reducecnn import report  # matplotlib and SciPy: see the top

    runs, epochs, warnings = [], [], []
    for results_dir in results_dirs:
        location = results_location(results_dir)
        for folder, frames in (("runs", runs), ("epochs", epochs)):
            frame, folder_warnings = store.read_table(location, folder)
            frames.append(frame)
            warnings += folder_warnings
    all_runs = pd.concat(runs, ignore_index=True)
    if all_runs.empty:
        raise UserError(f"no runs recorded in {', '.join(str(d) + '/runs' for d in results_dirs)}")
    target = str(into or results_dirs[0])
    all_epochs = pd.concat(epochs, ignore_index=True)
    if not store.is_uri(target):
        summary = report.write_report(all_runs, all_epochs, Path(target), margin=margin / 100, warnings=warnings)
        return Report(str(summary), summary.read_text(encoding="utf-8"), all_runs, warnings)
    with tempfile.TemporaryDirectory(prefix="reducecnn-report-") as staging:
        summary = report.write_report(all_runs, all_epochs, Path(staging), margin=margin / 100, warnings=warnings)
        store.upload(Path(staging), results_location(target))
        return Report(results_location(target).show("summary.md"), summary.read_text(encoding="utf-8"),
                      all_runs, warnings)


def benchmark(report: bool = True, verbose: bool = False, **fields: Any) -> pd.DataFrame:
    """Run a benchmark as `reducecnn benchmark` would, with the same fields as a config file
    (`models`, `seeds`, `epochs`, `learning_rate=[0.005, 0.01]`, `name`, `out` (a folder or
    s3://...), ...); returns its runs table, the same rows `pandas.read_parquet(out/name/runs)` gives."""
    logs.set_verbose(verbose or logs.verbose())
    config = make_benchmark_config({**fields, "report": report})
    outcome = run_config(config)
    if config.report:
        write_report([outcome.location.show()])
    return load_runs(outcome.location.show())
