"""The README as a front door: its findings table is generated from committed results, its
example configs are valid, and it stays short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reducecnn.config import make_benchmark_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FINDINGS = ["-m", "tools.findings"]  # run from REPO


def test_the_findings_table_is_what_the_committed_results_give():
    completed = subprocess.run([sys.executable, *FINDINGS, "--check"], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_a_stale_findings_table_is_caught(tmp_path):
    readme = README.read_text(encoding="utf-8").replace("| approach1 | 3,418 |", "| approach1 | 3,419 |")
    stale = tmp_path / "README.md"
    stale.write_text(readme, encoding="utf-8")
    completed = subprocess.run([sys.executable, *FINDINGS, "--check", "--readme", str(stale)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1 and "is stale" in completed.stderr


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_shows_a_config_file():
    assert yaml_blocks(), "the README should show at least one config file"


@pytest.mark.parametrize("block", yaml_blocks())
def test_every_example_config_in_the_readme_is_valid(block):
    config = make_benchmark_config(yaml.safe_load(block))
    assert config.specs()


def quick_start_lines() -> list[str]:
    """The commands of the Quick start's shell block, comments dropped."""
    section = README.read_text(encoding="utf-8").split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_quick_starts_make_targets_exist():
    phony = re.search(r"^\.PHONY:(.*)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE).group(1).split()
    targets = [line.split()[1] for line in quick_start_lines() if line.startswith("make ")]
    assert targets and set(targets) <= set(phony)


def test_the_quick_start_reaches_the_reducecnn_command_in_a_fresh_shell(tmp_path):
    # After `make`, .venv is this test's own virtual environment: link it, then run the lines
    # that follow the make targets in a shell with nothing but a minimal PATH.
    if not (Path(sys.prefix) / "bin" / "activate").is_file():
        pytest.skip("the tests do not run in a virtual environment (no bin/activate to source)")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    after_make = [line for line in quick_start_lines() if not line.startswith("make ")]
    assert any(line.startswith("reducecnn") for line in after_make)
    completed = subprocess.run(["bash", "-c", " && ".join(after_make)], cwd=tmp_path, capture_output=True,
                               text=True, timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                            "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr
    assert "approach1" in completed.stdout


def test_the_readme_is_a_front_door_under_200_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 200


def test_the_frontier_tables_are_what_the_committed_results_give():
    completed = subprocess.run([sys.executable, "-m", "tools.frontier", "--check"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_a_stale_frontier_table_is_caught(tmp_path):
    findings = (REPO / "docs" / "findings.md").read_text(encoding="utf-8")
    stale = tmp_path / "findings.md"
    row = "| small2k | 1,986 | 30 epochs, cosine from"
    stale.write_text(findings.replace(row, row.replace("1,986", "1,987")), encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "tools.frontier", "--check", "--doc", str(stale)],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1 and "are stale" in completed.stderr


def test_the_frontier_draws_each_model_once_with_its_final_recipe_chosen_on_validation():
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from tools.frontier import final_recipe

    # share1k6: a screen with the best validation, then two finals; the final with the higher
    # validation wins although the other has more seeds and the higher test accuracy
    summary = pd.DataFrame({"model": ["share1k6", "share1k6", "share1k6", "deep1k", "deep1k"],
                            "max_epochs": [30, 40, 60, 30, 40], "ok_runs": [2, 8, 6, 2, 2],
                            "val_accuracy_mean": [0.995, 0.9892, 0.9900, 0.985, 0.986],
                            "test_accuracy_mean": [0.99, 0.9910, 0.9900, 0.98, 0.97]})
    chosen = final_recipe(summary).set_index("model")
    assert chosen.loc["share1k6", "max_epochs"] == 60
    assert chosen.loc["deep1k", "max_epochs"] == 40  # no final: the screen with the better validation
    assert len(chosen) == 2
