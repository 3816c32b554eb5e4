"""Tests for `reducecnn export tensorboard`: read back with TensorBoard's own event reader and hparams protos."""

from __future__ import annotations

import json
import pathlib
import sys
import types

import pandas as pd
import pytest

# TensorBoard's reader imports TensorFlow when it is installed (4.5 s, and the unit tier promises
# a process without it); this marker module makes it use its own TF stub, as TensorBoard's
# no-TensorFlow build does (tensorboard/compat/__init__.py).
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from reducecnn.cli import main  # noqa: E402
from reducecnn.export import export_tensorboard  # noqa: E402
from runsfactory import grid_runs, make_epochs, make_runs

SESSION_START = "_hparams_/session_start_info"
COMMITTED = pathlib.Path(__file__).parent.parent / "docs" / "results" / "mnist-holdout-v040"


def read_session(folder: pathlib.Path) -> tuple[dict[str, object], event_accumulator.EventAccumulator]:
    """A run folder's hparams (name -> value) and its loaded events."""
    events = event_accumulator.EventAccumulator(str(folder))
    events.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")[SESSION_START])
    hparams = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.session_start_info.hparams.items()}
    return hparams, events


@pytest.fixture(scope="module")
def grid_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pathlib.Path]:
    """The 2 x 2 recipe grid (16 runs) with epochs, exported once; tests only read it."""
    runs = grid_runs("holdout")
    logdir = tmp_path_factory.mktemp("tensorboard")
    export_tensorboard(runs, make_epochs(runs), logdir)
    return runs, logdir


def test_every_run_is_a_session_with_its_recipe(grid_export):
    runs, logdir = grid_export
    sessions = {folder.name: read_session(folder)[0] for folder in logdir.iterdir()}
    recipes = [json.loads(text) for text in runs["spec_json"]]
    expected = {run.run_id: (run.model, run.seed, recipe["learning_rate"], recipe["augment_shift"])
                for run, recipe in zip(runs.itertuples(), recipes)}
    found = {run_id: (hparams["model"], hparams["seed"], hparams["learning_rate"], hparams["augment_shift"])
             for run_id, hparams in sessions.items()}
    assert found == expected


def test_the_metrics_match_the_runs_table(grid_export):
    runs, logdir = grid_export
    run = runs.iloc[5]
    _, events = read_session(logdir / run["run_id"])
    for name in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "params_trainable"):
        assert events.Scalars(name)[0].value == pytest.approx(run[name], rel=1e-6)


def test_each_epoch_is_a_scalar_step(grid_export):
    runs, logdir = grid_export
    _, events = read_session(logdir / runs["run_id"].iloc[0])
    assert [event.step for event in events.Scalars("epoch/val_accuracy")] == [1, 2, 3, 4]


def test_a_missing_setting_becomes_text_for_every_run(tmp_path):
    runs = make_runs([("baseline", 0, 0.98, "ok"), ("approach1", 0, 0.0, "failed")])
    export_tensorboard(runs, pd.DataFrame(), tmp_path)
    hparams, _ = read_session(tmp_path / runs["run_id"].iloc[1])
    assert (hparams["train_limit"], hparams["status"], hparams["patience"]) == ("none", "failed", 1.0)


def test_a_bad_results_path_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["export", "tensorboard", str(tmp_path / "nope"), "--to", str(tmp_path / "logs")]) == 2
    assert capsys.readouterr().err == f"reducecnn: error: results folder {tmp_path / 'nope'} does not exist\n"


def test_the_command_exports_every_run_of_a_committed_benchmark(tmp_path, capsys):
    assert main(["export", "tensorboard", str(COMMITTED), "--to", str(tmp_path / "logs")]) == 0
    assert len(list((tmp_path / "logs").iterdir())) == 15
    assert capsys.readouterr().out.startswith("15 runs exported to ")


def test_a_logdir_with_files_is_refused(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "old").write_text("")
    assert main(["export", "tensorboard", str(COMMITTED), "--to", str(tmp_path / "logs")]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
