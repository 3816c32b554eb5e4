"""Tests for report.html: its embedded data, and the page as headless Chromium renders it from disk, offline."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from matplotlib import image

from reducecnn import api, htmlreport
from reducecnn.aggregate import best_recipes, summarize
from reducecnn.report import write_report
from runsfactory import grid_runs, make_epochs, make_runs, sweep_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install "
                                    "chromium; .ci/run installs it)")
RESULTS = pathlib.Path(__file__).parent.parent / "docs" / "results"
COMMITTED = RESULTS / "mnist-holdout-v040"
# Three committed benchmarks of one model, each a recipe: together a real recipe grid.
SMALL2K_RECIPES = [RESULTS / name for name in ("mnist-small2k-holdout", "mnist-small2k-lr01-holdout",
                                               "mnist-small2k-shift1-holdout")]
MAX_PAGE_BYTES = 10_000_000
MAX_RENDER_SECONDS = 5.0


def chromium(page: pathlib.Path, profile: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a file path with networking off: every host unresolvable, every proxy refused."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--proxy-server=127.0.0.1:9",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *flags, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def rendered_dom(page: pathlib.Path, profile: pathlib.Path) -> str:
    """The DOM after the page's scripts ran."""
    return chromium(page, profile, "--dump-dom").stdout


def body_attribute(dom: str, name: str) -> str | None:
    found = re.search(rf'<body[^>]*\s{name}="([^"]*)"', dom)
    return found.group(1) if found else None


def page_data(page: pathlib.Path) -> dict:
    """The JSON the page embeds for its script."""
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
                      .group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def committed_page(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """report.html of the committed 15-run MNIST holdout benchmark (docs/ is only read)."""
    out = tmp_path_factory.mktemp("committed")
    api.write_report([str(COMMITTED)], into=str(out))
    return out / "report.html"


@pytest.fixture(scope="module")
def grid_page(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """report.html of the 2 x 2 recipe grid under holdout and under study, with epochs."""
    runs = pd.concat([grid_runs("holdout"), grid_runs("study")], ignore_index=True)
    out = tmp_path_factory.mktemp("grid")
    write_report(runs, make_epochs(runs), out)
    return out / "report.html"


def test_the_page_loads_nothing_from_the_network(committed_page):
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", committed_page.read_text())


def test_the_page_shows_summary_md_tables(committed_page):
    assert "<td>approach1</td><td class=num>3,418</td>" in committed_page.read_text()


def test_the_page_names_the_command_and_the_versions(tmp_path):
    runs = make_runs([("baseline", 0, 0.98, "ok")])
    write_report(runs, pd.DataFrame(), tmp_path, command="reducecnn report results/x")
    page = (tmp_path / "report.html").read_text()
    assert "with <code>reducecnn report results/x</code>" in page and "runs trained with reducecnn 0.1.0" in page


def test_a_point_marks_the_recipe_chosen_by_validation():
    runs = grid_runs("holdout")
    points = htmlreport.points_data(summarize(runs), best_recipes(runs))
    chosen = {(point["model"], point["label"]) for point in points if point["best"]}
    assert chosen == {("baseline", "mnist, holdout, lr 0.005, 2-px shifts"),
                      ("approach1", "mnist, holdout, lr 0.01, 0-px shifts")}


def test_the_grid_marks_each_models_best_recipe(grid_page):
    holdout, study = page_data(grid_page)["grids"]
    assert holdout["best"] == {"baseline": "lr 0.005, 2-px shifts", "approach1": "lr 0.01, 0-px shifts"}
    assert study["best"] == {}


def test_curves_hold_train_and_validation_means_per_model_and_recipe(grid_page):
    curves = page_data(grid_page)["curves"]
    assert len(curves) == 2 * 2 * 4 * 2  # protocols x models x recipes x (train, validation)
    assert {curve["kind"] for curve in curves} == {"train", "validation"}


def test_the_runs_table_is_capped_failed_runs_first(monkeypatch):
    monkeypatch.setattr(htmlreport, "MAX_EMBEDDED_RUNS", 3)
    runs = make_runs([("baseline", seed, 0.98, "ok") for seed in range(5)] + [("approach1", 0, 0.0, "failed")])
    table = htmlreport.runs_data(runs)
    status = table["columns"].index("status")
    assert (table["total"], table["embedded"], table["rows"][0][status]) == (6, 3, "failed")


def test_a_failed_run_keeps_its_error_in_the_runs_table():
    table = htmlreport.runs_data(make_runs([("approach1", 0, 0.0, "failed")]))
    assert table["rows"][0][table["columns"].index("error")] == "boom"


@needs_chromium
def test_the_committed_results_render_their_plots_without_script_errors(committed_page, tmp_path):
    dom = rendered_dom(committed_page, tmp_path / "profile")
    assert body_attribute(dom, "data-errors") is None
    assert body_attribute(dom, "data-rendered") == "4"  # accuracy vs parameters + a curve panel per model
    assert dom.count('<svg class="plot"') == 4 and dom.count('class="point"') == 3


@needs_chromium
def test_a_grid_renders_its_heatmaps_with_the_chosen_recipes_outlined(grid_page, tmp_path):
    dom = rendered_dom(grid_page, tmp_path / "profile")
    assert body_attribute(dom, "data-errors") is None
    assert dom.count('<table class="heatmap"') == 2 and dom.count('class="cell best"') == 2


@needs_chromium
def test_committed_recipes_reported_together_render_as_a_grid(tmp_path):
    api.write_report([str(folder) for folder in SMALL2K_RECIPES], into=str(tmp_path / "combined"))
    dom = rendered_dom(tmp_path / "combined" / "report.html", tmp_path / "profile")
    assert body_attribute(dom, "data-errors") is None and body_attribute(dom, "data-rendered") == "3"
    assert dom.count('<table class="heatmap"') == 1 and dom.count('class="cell best"') == 1


@needs_chromium
def test_the_runs_table_filters_and_sorts_in_the_browser(tmp_path):
    runs = make_runs([("baseline", 0, 0.981, "ok"), ("baseline", 1, 0.989, "ok"), ("baseline", 2, 0.985, "ok"),
                      ("approach1", 0, 0.0, "failed")])
    write_report(runs, pd.DataFrame(), tmp_path)
    page = tmp_path / "report.html"
    clicks = """<script>const filter = document.getElementById("runs-filter");
    filter.value = "model=baseline"; filter.dispatchEvent(new Event("input"));
    const header = [...document.querySelectorAll("#runs-table th")].find(th => th.textContent === "test_accuracy");
    header.click(); header.click();</script></body>"""
    page.write_text(page.read_text().replace("</body>", clicks))
    dom = rendered_dom(page, tmp_path / "profile")
    rows = re.findall(r"<td[^>]*>(baseline-s\d)", dom.split('id="runs-table"')[1])
    assert "3 matching runs" in dom and rows == ["baseline-s1", "baseline-s2", "baseline-s0"]  # accuracy descending


@needs_chromium
def test_a_script_error_is_written_into_the_page(committed_page, tmp_path):
    broken = tmp_path / "report.html"
    broken.write_text(committed_page.read_text().replace('"points":', '"spots":'))
    dom = rendered_dom(broken, tmp_path / "profile")
    assert body_attribute(dom, "data-errors") == "1" and body_attribute(dom, "data-rendered") == "no"


@needs_chromium
def test_a_screenshot_of_the_page_is_not_blank(committed_page, tmp_path):
    chromium(committed_page, tmp_path / "profile", "--window-size=1200,900", f"--screenshot={tmp_path / 'page.png'}")
    pixels = image.imread(tmp_path / "page.png")[..., :3]
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert pixels.shape[:2] == (900, 1200) and 0.02 < not_white < 0.6
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # plot colours, not one flat fill


@needs_chromium
def test_ten_thousand_runs_give_a_small_page_that_renders_in_seconds(tmp_path):
    runs = sweep_runs(10_000)
    write_report(runs, make_epochs(runs), tmp_path)
    page = tmp_path / "report.html"
    dom = rendered_dom(page, tmp_path / "profile")
    assert page.stat().st_size <= MAX_PAGE_BYTES
    assert body_attribute(dom, "data-errors") is None and body_attribute(dom, "data-rendered") == "5"
    assert int(body_attribute(dom, "data-render-ms")) <= MAX_RENDER_SECONDS * 1000
    assert dom.count('class="point"') == 3 * 16  # one point per model and recipe, not per run
