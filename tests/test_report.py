"""Tests for reducecnn.report: files written, their pixels, and what summary.md says."""

from __future__ import annotations

import pathlib
import struct

import pandas as pd
import pytest

from reducecnn.aggregate import summarize
from reducecnn.report import learning_curves_pixels, write_report
from runsfactory import grid_runs, make_epochs, make_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def two_protocols() -> pd.DataFrame:
    """Baseline x3 and a single approach1 run under holdout; baseline x2 and a failed approach2 under study."""
    holdout = make_runs([("baseline", 0, 0.984, "ok"), ("baseline", 1, 0.986, "ok"), ("baseline", 2, 0.988, "ok"),
                         ("approach1", 0, 0.975, "ok")], protocol="holdout")
    study = make_runs([("baseline", 0, 0.985, "ok"), ("baseline", 1, 0.987, "ok"), ("approach2", 0, 0.0, "failed")],
                      protocol="study")
    return pd.concat([holdout, study], ignore_index=True)


def png_size(path: pathlib.Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """summary.md of a report written once from two_protocols(), with one warning; tests only read it."""
    runs = two_protocols()
    out_dir = tmp_path_factory.mktemp("report")
    return write_report(runs, make_epochs(runs), out_dir, warnings=["2 runs of approach2 are missing"])


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """summary.md of the 2 x 2 recipe grid under holdout and under study; tests only read it."""
    runs = pd.concat([grid_runs("holdout"), grid_runs("study")], ignore_index=True)
    return write_report(runs, pd.DataFrame(), tmp_path_factory.mktemp("grid")).read_text()


def test_returns_the_markdown_path(report):
    assert report.name == "summary.md" and report.is_file()


def test_report_html_is_written_beside_summary_md(report):
    assert (report.parent / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_accuracy_plot_is_800_by_500_png(report):
    assert png_size(report.parent / "plots" / "accuracy_vs_params.png") == (800, 500)


def test_learning_curves_png_has_one_panel_per_protocol(report):
    assert learning_curves_pixels(2) == (1200, 500)
    assert png_size(report.parent / "plots" / "learning_curves.png") == (1200, 500)


def test_learning_curves_grow_a_row_for_a_third_group(tmp_path):
    runs = pd.concat([two_protocols(), make_runs([("baseline", 0, 0.90, "ok")], dataset="fashion_mnist")])
    write_report(runs, make_epochs(runs), tmp_path)
    assert png_size(tmp_path / "plots" / "learning_curves.png") == (1200, 1000)


def test_markdown_shows_mean_plus_minus_std(report):
    assert "| baseline | 591,786 | 591,786 | 5 | 5,917,860 | 3 / 0 | 98.60 ± 0.20 |" in report.read_text()


def test_markdown_shows_a_dash_for_a_single_run_std(report):
    assert "| 97.50 ± - |" in report.read_text()


def test_markdown_counts_a_failed_run(report):
    assert "| approach2 | 3,130 | 3,226 | 9 | 32,260 | 0 / 1 | - |" in report.read_text()


def test_markdown_lists_the_warnings(report):
    assert "## Warnings\n\n- 2 runs of approach2 are missing" in report.read_text()


def test_markdown_gives_the_baseline_verdict(report):
    assert "| approach1 | 1 / 3 | - | - | inconclusive: needs at least 2 ok runs per model |" in report.read_text()


def test_a_duplicated_run_is_named_in_the_warnings(tmp_path):
    runs = two_protocols()
    markdown = write_report(pd.concat([runs, runs.iloc[:1]]), make_epochs(runs), tmp_path).read_text()
    assert "- 1 run id(s) appear in more than one row and were counted once" in markdown


def test_summary_parquet_round_trips(report):
    pd.testing.assert_frame_equal(pd.read_parquet(report.parent / "summary.parquet"), summarize(two_protocols()))


def test_no_temporary_files_are_left(report):
    assert sorted(path.name for path in report.parent.rglob(".*")) == []


def test_empty_runs_raise_a_clear_error(tmp_path):
    no_runs = make_runs([("baseline", 0, 0.98, "ok")]).iloc[0:0]
    with pytest.raises(ValueError, match="no runs"):
        write_report(no_runs, pd.DataFrame(), tmp_path)


def test_only_failed_runs_still_write_counts_and_plots(tmp_path):
    runs = make_runs([("baseline", 0, 0.0, "failed"), ("baseline", 1, 0.0, "failed")])
    markdown = write_report(runs, pd.DataFrame(), tmp_path).read_text()
    assert "| 0 / 2 |" in markdown
    assert png_size(tmp_path / "plots" / "accuracy_vs_params.png") == (800, 500)
    assert png_size(tmp_path / "plots" / "learning_curves.png") == (1200, 500)


def test_a_learning_curve_legend_says_when_early_stopping_thinned_the_runs():
    from reducecnn.report import curve_label

    assert curve_label("approach1", [5, 5, 5], 3) == "approach1 (n=5)"
    assert curve_label("approach1", [5, 5, 4, 2], 4) == "approach1 (n=5, 2 by epoch 4)"


def test_recipes_that_differ_only_in_learning_rate_get_different_plot_labels():
    from reducecnn.report import series_label

    runs = pd.concat([make_runs([("small2k", 0, 0.99, "ok")]).assign(spec_json='{"learning_rate": 0.005}'),
                      make_runs([("small2k", 1, 0.99, "ok")]).assign(spec_json='{"learning_rate": 0.01}')],
                     ignore_index=True)
    summary = summarize(runs)
    labels = {series_label(row, settings_vary=True) for _, row in summary.iterrows()}
    assert len(labels) == 2 and any("lr 0.01" in label for label in labels)


def test_verdict_lines_name_each_model_against_the_baseline():
    from reducecnn.report import verdict_lines

    runs = make_runs([("baseline", 0, 0.986, "ok"), ("baseline", 1, 0.988, "ok"), ("baseline", 2, 0.987, "ok"),
                      ("approach1", 0, 0.975, "ok"), ("approach1", 1, 0.977, "ok"), ("approach1", 2, 0.976, "ok")])
    [line] = verdict_lines(runs, 0.005)
    assert line.startswith("approach1 vs baseline: -1.10 points, 95% CI [") and line.endswith(": lower")


def test_one_run_and_one_epoch_are_singular():
    from reducecnn.logs import plural

    assert (plural(1, "run"), plural(2, "run"), plural(1, "epoch"), plural(0, "epoch")) == \
        ("1 run", "2 runs", "1 epoch", "0 epochs")


def test_a_single_recipe_report_has_no_recipes_section(report):
    assert "Recipes x models" not in report.read_text()


def test_a_grid_report_puts_the_recipes_x_models_table_before_the_group_tables(grid_report):
    table = "\n".join([
        "| recipe | baseline | approach1 |",
        "|---|--:|--:|",
        "| lr 0.005, 0-px shifts | 99.10 ± 0.14 (2) | 97.50 ± 0.14 (2) |",
        "| lr 0.005, 2-px shifts | 98.50 ± 0.14 (2) | 97.10 ± 0.14 (2) |",
        "| lr 0.01, 0-px shifts | 98.70 ± 0.14 (2) | 97.30 ± 0.14 (2) |",
        "| lr 0.01, 2-px shifts | 98.10 ± 0.14 (2) | 97.80 ± 0.14 (2) |",
    ])
    section = "## Recipes x models"
    assert f"### mnist, holdout\n\nEvery recipe: ≤10 epochs, batch 32, full training set, patience 1, " \
           f"constant schedule.\n\n{table}" in grid_report
    assert grid_report.index(section) < grid_report.index("## mnist, holdout, ≤10 epochs")


def test_a_grid_report_chooses_each_models_recipe_by_validation_accuracy(grid_report):
    assert "| baseline | lr 0.005, 2-px shifts | 98.70 | +0.30 over lr 0.01, 0-px shifts | 98.50 ± 0.14 (2) |" \
        in grid_report
    assert "| approach1 | lr 0.01, 0-px shifts | 97.60 | +0.20 over lr 0.01, 2-px shifts | 97.30 ± 0.14 (2) |" \
        in grid_report


def test_a_grid_report_under_study_says_why_no_recipe_is_chosen(grid_report):
    study = grid_report[grid_report.index("### mnist, study"):]
    assert "No recipe is chosen for baseline, approach1: under the study protocol the validation set is the " \
           "test set, so no recipe can be chosen without touching the test set." in study
    assert "| chosen recipe |" not in study


def test_an_interval_past_what_an_accuracy_can_be_is_clipped_and_marked():
    from reducecnn.report import format_interval

    assert format_interval(-0.9184, 1.3217) == "[0.00, 100.00]†"
    assert format_interval(0.9712, 0.9850) == "[97.12, 98.50]"
    assert format_interval(-1.7959, 0.4414, signed=True) == "[-100.00, +44.14]†"


def test_a_report_explains_a_clipped_two_seed_interval(tmp_path):
    runs = make_runs([("baseline", 0, 0.20, "ok"), ("baseline", 1, 0.99, "ok")])
    markdown = write_report(runs, pd.DataFrame(), tmp_path).read_text()
    assert "| [0.00, 100.00]† |" in markdown
    assert "† Clipped to 0-100%: the 95% t interval reached past what an accuracy can be." in markdown


def test_a_verdict_line_says_its_interval_was_clipped():
    from reducecnn.report import verdict_lines

    runs = make_runs([("baseline", 0, 0.98, "ok"), ("baseline", 1, 0.99, "ok"),
                      ("approach1", 0, 0.11, "ok"), ("approach1", 1, 0.98, "ok")])
    [line] = verdict_lines(runs, 0.005)
    assert "95% CI [-100.00, " in line and "(clipped to ±100 points): inconclusive" in line


def test_a_learning_curve_thins_out_where_fewer_than_half_of_its_runs_remain():
    from reducecnn.report import thinned_from

    assert thinned_from([5, 5, 4, 4, 2, 2]) == 4
    assert thinned_from([4, 2, 2]) == 3  # half is still enough for the band
    assert thinned_from([3, 3]) == 2


def test_the_band_ends_where_the_curve_thins_and_the_points_say_how_many_runs_remain():
    from matplotlib.figure import Figure

    from reducecnn.report import draw_model_curve

    axes = Figure().subplots()
    curve = pd.DataFrame({"epoch": [1, 2, 3, 4], "mean": [0.95, 0.96, 0.97, 0.975], "std": [0.01] * 4,
                          "runs": [5, 5, 2, 2]})
    draw_model_curve(axes, curve, "approach1", "tab:orange")
    [band] = axes.collections
    assert band.get_paths()[0].vertices[:, 0].max() == 2
    solid, dashed = axes.lines
    assert list(dashed.get_xdata()) == [2, 3, 4] and dashed.get_linestyle() == "--"
    assert [text.get_text() for text in axes.texts] == ["n=2"]


def test_a_report_warns_when_a_row_pools_two_versions_of_a_user_model(tmp_path):
    runs = make_runs([("tiny", 0, 0.95, "ok"), ("tiny", 1, 0.96, "ok")])
    runs = runs.assign(spec_json=['{"model_source": "v1"}', '{"model_source": "v2"}'])
    markdown = write_report(runs, pd.DataFrame(), tmp_path).read_text()
    assert "its 2 ok runs come from 2 versions of its source file, averaged in one row" in markdown
