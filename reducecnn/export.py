"""A results folder -> TensorBoard logs: one HParams session per run (its recipe as hparams, its final
numbers as metrics) with its per-epoch scalars, written by tensorboardX."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from tensorboardX import SummaryWriter
from tensorboardX.summary import hparams

from reducecnn import store
from reducecnn.aggregate import distinct_runs, with_spec_settings
from reducecnn.config import UserError

# What tells runs apart in a sweep: the model, the recipe knobs and the seed.
HPARAMS = ["model", "dataset", "protocol", "learning_rate", "lr_schedule", "augment_shift", "max_epochs",
           "batch_size", "patience", "train_limit", "seed", "status"]
METRICS = ["test_accuracy", "test_loss", "val_accuracy", "val_loss", "params_trainable"]
# Per-epoch columns of the epochs table, written as scalars 'epoch/<column>' at step = epoch.
EPOCH_SCALARS = ["accuracy", "loss", "val_accuracy", "val_loss"]
MISSING = "none"


def read_results(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and epochs tables of one local results folder; UserError when it has no runs."""
    path = Path(folder)
    if not (path / "runs").is_dir():
        raise UserError(f"no runs/ folder in {path}: give a benchmark's results folder, e.g. results/mnist-holdout")
    location = store.locate(str(path.resolve().parent), path.name)
    runs, skipped = store.read_table(location, "runs")
    if skipped:
        raise UserError("; ".join(skipped))
    if runs.empty:
        raise UserError(f"no runs recorded in {path / 'runs'}")
    epochs, skipped = store.read_table(location, "epochs")
    if skipped:
        raise UserError("; ".join(skipped))
    return runs, epochs


def hparam_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The hparams of each run with one type per column, as TensorBoard needs: a column with a missing
    value (patience or train_limit left to their defaults) becomes text, the missing ones 'none'."""
    table = runs[[name for name in HPARAMS if name in runs.columns]].astype(object)
    for name in table.columns:
        if table[name].isna().any():
            table[name] = [MISSING if pd.isna(value) else str(value) for value in table[name]]
    return table


def plain(value: object) -> bool | int | float | str:
    """numpy scalars -> the Python bool, int, float or str that tensorboardX accepts."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def write_session(logdir: Path, run: pd.Series, hparam_values: dict[str, object], epochs: pd.DataFrame) -> None:
    """One run's folder: its per-epoch scalars, then its HParams session and final metrics."""
    metrics = {name: float(run[name]) for name in METRICS if name in run and pd.notna(run[name])}
    # No experiment summary: TensorBoard then builds it from all sessions, with each hparam's values
    # and whether it differs between runs (one written per run would describe that run alone).
    _, session_start, session_end = hparams(hparam_values, {name: 0.0 for name in METRICS})
    with SummaryWriter(logdir=str(logdir / run["run_id"])) as writer:
        for epoch in epochs.sort_values("epoch").itertuples(index=False):
            for name in EPOCH_SCALARS:
                value = getattr(epoch, name, math.nan)
                if pd.notna(value):
                    writer.add_scalar(f"epoch/{name}", float(value), int(epoch.epoch))
        for summary in (session_start, session_end):
            writer.file_writer.add_summary(summary)
        for name, value in metrics.items():
            writer.add_scalar(name, value, 0)


def export_tensorboard(runs: pd.DataFrame, epochs: pd.DataFrame, logdir: Path) -> int:
    """Write LOGDIR/<run_id>/ for every run (a run recorded twice once, its ok record); returns the count."""
    runs = distinct_runs(with_spec_settings(runs)).reset_index(drop=True)
    values = hparam_table(runs)
    by_run = dict(tuple(epochs.drop_duplicates(["run_id", "epoch"]).groupby("run_id"))) if len(epochs) else {}
    for index, run in runs.iterrows():
        hparam_values = {name: plain(value) for name, value in values.loc[index].items()}
        write_session(logdir, run, hparam_values, by_run.get(run["run_id"], pd.DataFrame(columns=["epoch"])))
    return len(runs)


def export_folder(results: str | Path, logdir: str | Path) -> int:
    """`reducecnn export tensorboard RESULTS --to LOGDIR`: refuses a LOGDIR that holds anything already
    (TensorBoard would show a run exported twice as one run with doubled points)."""
    logdir = Path(logdir)
    if logdir.exists() and (not logdir.is_dir() or any(logdir.iterdir())):
        raise UserError(f"--to {logdir} is not an empty folder; export into a new one")
    runs, epochs = read_results(results)
    logdir.mkdir(parents=True, exist_ok=True)
    return export_tensorboard(runs, epochs, logdir)
