"""configs/*.yaml: each is a valid config, and each that names a committed results folder asks
for runs recorded there (so `--config configs/<file> --out docs/results` trains nothing); the
files sharing a folder (a screen, then its winner over more seeds) ask for exactly its runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reducecnn import store
from reducecnn.config import make_benchmark_config, read_config_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# configs whose committed folder has another name (the same runs, recorded under a version tag)
COMMITTED = {"laptop-default.yaml": "mnist-holdout-v040"}


def test_there_are_recipe_files():
    assert len(CONFIGS) >= 5


def _folder_and_runs(path: Path) -> tuple[Path, set[str]]:
    config = make_benchmark_config(read_config_file(path))
    return REPO / "docs" / "results" / COMMITTED.get(path.name, config.name), {spec.run_id for spec in config.specs()}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_a_recipe_file_reproduces_its_committed_runs(path):
    """A folder several files write to (a screen on 2 seeds, then its winner on 5) records
    exactly the union of their runs."""
    folder, wanted = _folder_and_runs(path)
    if not (folder / "runs").is_dir():  # a recipe without committed results (the grid example): valid is enough
        assert wanted
        return
    sharing = set().union(*(runs for other in CONFIGS for where, runs in [_folder_and_runs(other)] if where == folder))
    recorded = set(store.read_table(store.locate(str(folder.parent), folder.name))[0]["run_id"])
    assert wanted <= recorded and recorded == sharing
