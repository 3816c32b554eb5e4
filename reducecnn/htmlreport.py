"""report.html: one self-contained page (no network, no server) drawn in the browser from the aggregate's tables.

The page's tables and verdicts are summary.md itself, converted to HTML here, so the two never disagree;
its plots are drawn by reducecnn/report.js (hand-written SVG, embedded) from small aggregated tables: one
point per model and recipe, one curve per model, recipe and epoch, never one trace per run.
"""

from __future__ import annotations

import datetime
import html
import importlib.resources
import json
import re
from collections.abc import Sequence

import pandas as pd

from reducecnn import __version__
from reducecnn.aggregate import (
    COMPARISON_KEYS,
    STUDY,
    STUDY_DATASET,
    describe_recipe,
    distinct_runs,
    model_sort_key,
    varying_settings,
    with_spec_settings,
)

# The runs table embeds at most this many rows (failed runs first, then by run id): a 10^5-run report is
# then 3.3 MB; the page says when rows were left out.
MAX_EMBEDDED_RUNS = 20_000
RUN_COLUMNS = ["run_id", "model", "seed", "dataset", "protocol", "learning_rate", "lr_schedule", "augment_shift",
               "max_epochs", "batch_size", "patience", "train_limit", "status", "test_accuracy", "val_accuracy",
               "test_loss", "epochs_run", "train_seconds", "benchmark", "error"]
# Runs-table cells rounded for size; accuracies keep 4 digits (0.01 points).
ROUNDING = {"test_accuracy": 4, "val_accuracy": 4, "test_loss": 4, "train_seconds": 1}


def recipe_labels(summary: pd.DataFrame) -> pd.Series:
    """Each summary row's recipe as the report's recipes table names it ('lr 0.005, 2-px shifts'): the
    settings that vary within its dataset and protocol; None where those have a single recipe."""
    recipes = pd.Series(None, index=summary.index, dtype=object)
    for _, rows in summary.groupby(["dataset", "protocol"], dropna=False, sort=False):
        varying = varying_settings(rows)
        if varying:
            recipes[rows.index] = [describe_recipe(row, varying) for row in rows.itertuples(index=False)]
    return recipes


def series_labels(summary: pd.DataFrame) -> pd.Series:
    """'mnist, holdout' per summary row, followed by its recipe where its dataset and protocol have several."""
    recipes = recipe_labels(summary)
    return pd.Series([f"{row.dataset}, {row.protocol}" + (f", {recipe}" if isinstance(recipe, str) else "")
                      for row, recipe in zip(summary.itertuples(index=False), recipes)], index=summary.index)


def number(value: object, digits: int | None = None) -> float | int | None:
    """A JSON-safe number: None for NA/NaN, else the value (rounded when digits are given)."""
    if value is None or pd.isna(value):
        return None
    value = float(value)
    if value.is_integer() and digits is None:
        return int(value)
    return round(value, digits) if digits is not None else value


def points_data(summary: pd.DataFrame, best: pd.DataFrame) -> list[dict[str, object]]:
    """One point per summary row (the page draws those with ok runs): trainable params, mean ± std test
    accuracy, its label, and whether it is its model's recipe chosen by validation accuracy."""
    labels = series_labels(summary)
    chosen = {(row.dataset, row.protocol, row.model, row.recipe) for row in best.itertuples(index=False)
              if pd.notna(row.recipe)}
    recipes = recipe_labels(summary)
    points = []
    for index, row in summary.iterrows():
        points.append(dict(
            model=row["model"], label=labels[index], params=number(row["params_trainable"]),
            mean=number(row["test_accuracy_mean"]), std=number(row["test_accuracy_std"]),
            ci_low=number(row["test_accuracy_ci_low"]), ci_high=number(row["test_accuracy_ci_high"]),
            val=number(row["val_accuracy_mean"]), ok=int(row["ok_runs"]), failed=int(row["failed_runs"]),
            best=(row["dataset"], row["protocol"], row["model"], recipes[index]) in chosen))
    return points


def study_data(summary: pd.DataFrame) -> list[dict[str, object]]:
    """The study's one run of each of its models that this report has MNIST runs of."""
    ours = set(summary.loc[summary["dataset"] == STUDY_DATASET, "model"])
    return [dict(model=model, params=params, accuracy=accuracy) for model, (params, accuracy) in STUDY.items()
            if model in ours]


def curves_data(summary: pd.DataFrame, curves: dict[str, pd.DataFrame]) -> list[dict[str, object]]:
    """Per model, recipe and kind ('train', 'validation'): epochs, mean, std and runs per epoch."""
    labels = series_labels(summary)
    label_of = {tuple(row[[*COMPARISON_KEYS, "model"]].fillna(-1)): labels[index] for index, row in summary.iterrows()}
    series = []
    for kind, table in curves.items():
        for keys, curve in table.groupby([*COMPARISON_KEYS, "model"], dropna=False, sort=False):
            curve = curve.sort_values("epoch")
            key = tuple(pd.Series(keys, index=[*COMPARISON_KEYS, "model"]).fillna(-1))
            series.append(dict(model=keys[-1], label=label_of.get(key, ""), kind=kind,
                               epoch=[int(epoch) for epoch in curve["epoch"]],
                               mean=[number(value, 5) for value in curve["mean"]],
                               std=[number(value, 5) for value in curve["std"]],
                               runs=[int(runs) for runs in curve["runs"]]))
    order = sorted({item["model"] for item in series}, key=model_sort_key)
    return sorted(series, key=lambda item: (order.index(item["model"]), item["label"], item["kind"]))


def grids_data(recipes: pd.DataFrame, best: pd.DataFrame) -> list[dict[str, object]]:
    """Each (dataset, protocol) with several recipes: recipes x models cells of test accuracy, and each
    model's recipe chosen by validation accuracy."""
    grids = []
    for (dataset, protocol), table in recipes.groupby(level=["dataset", "protocol"], sort=False):
        models = [model for model in table["ok_runs"].columns if table["ok_runs"][model].notna().any()]
        chosen = best[(best["dataset"] == dataset) & (best["protocol"] == protocol) & best["recipe"].notna()]
        cells = [[dict(mean=number(row[("test_accuracy_mean", model)]), std=number(row[("test_accuracy_std", model)]),
                       val=number(row[("val_accuracy_mean", model)]), n=number(row[("ok_runs", model)]))
                  for model in models] for _, row in table.iterrows()]
        grids.append(dict(title=f"{dataset}, {protocol}", models=models,
                          recipes=[recipe for _, _, recipe in table.index], cells=cells,
                          best=dict(zip(chosen["model"], chosen["recipe"]))))
    return grids


def runs_data(runs: pd.DataFrame) -> dict[str, object]:
    """The runs table's main columns as rows of cells, failed runs first, capped at MAX_EMBEDDED_RUNS."""
    table = distinct_runs(with_spec_settings(runs))
    columns = [name for name in RUN_COLUMNS if name in table.columns]
    ordered = table.assign(_ok=table["status"] == "ok").sort_values(["_ok", "run_id"], kind="stable")
    shown = ordered.head(MAX_EMBEDDED_RUNS)
    cells = []
    for name in columns:
        digits = ROUNDING.get(name)
        if name in ("run_id", "model", "dataset", "protocol", "lr_schedule", "status", "benchmark", "error"):
            cells.append([None if pd.isna(value) else str(value) for value in shown[name]])
        else:
            cells.append([number(value, digits) for value in shown[name]])
    return dict(columns=columns, rows=[list(row) for row in zip(*cells)], total=len(table), embedded=len(shown))


INLINE_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escape a Markdown line for HTML, keeping `code` spans."""
    return INLINE_CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


def table_html(lines: Sequence[str]) -> str:
    """A Markdown pipe table (header, alignment row, body) as an HTML table, right-aligned where '--:'."""
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    right = [spec.endswith(":") and not spec.startswith(":") for spec in cells(lines[1])]
    head = "".join(f"<th>{inline(cell)}</th>" for cell in cells(lines[0]))
    body = []
    for line in lines[2:]:
        body.append("<tr>" + "".join(f'<td{" class=num" if index < len(right) and right[index] else ""}>'
                                     f"{inline(cell)}</td>" for index, cell in enumerate(cells(line))) + "</tr>")
    return f'<table class="md"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def markdown_html(markdown: str) -> str:
    """summary.md as HTML: the subset report.py writes (headings, pipe tables, '- ' lists, paragraphs)."""
    parts = []
    for block in markdown.strip().split("\n\n"):
        lines = block.split("\n")
        heading = re.match(r"(#+) (.*)", lines[0])
        if heading and len(lines) == 1:
            level = min(len(heading.group(1)) + 1, 6)  # the page's own title is the only h1
            parts.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif lines[0].startswith("|") and len(lines) > 1:
            parts.append(table_html(lines))
        elif all(line.startswith("- ") for line in lines):
            parts.append("<ul>" + "".join(f"<li>{inline(line[2:])}</li>" for line in lines) + "</ul>")
        else:
            parts.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(parts)


def versions_line(runs: pd.DataFrame, command: str) -> str:
    """'Written by reducecnn 0.6.5 (`reducecnn report ...`) on 2026-12-06 from runs of reducecnn 0.4.0.'"""
    trained = sorted(runs["reducecnn_version"].dropna().astype(str).unique()) if "reducecnn_version" in runs else []
    by = f" from runs trained with reducecnn {', '.join(trained)}" if trained else ""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Written by reducecnn {__version__} with <code>{html.escape(command)}</code> on {today}{by}."


def embedded_json(data: object) -> str:
    """JSON for a <script type="application/json"> element: no NaN, and no '</' that would end the element."""
    return json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def render_page(title: str, markdown: str, verdicts: Sequence[str], command: str, summary: pd.DataFrame,
                curves: dict[str, pd.DataFrame], recipes: pd.DataFrame, best: pd.DataFrame,
                runs: pd.DataFrame) -> str:
    """The whole report.html: header, verdicts, plots (drawn by report.js from the embedded data),
    summary.md's tables, and the runs table."""
    data = dict(points=points_data(summary, best), study=study_data(summary), curves=curves_data(summary, curves),
                grids=grids_data(recipes, best), runs=runs_data(runs))
    assets = importlib.resources.files("reducecnn")
    script = assets.joinpath("report.js").read_text(encoding="utf-8")
    style = assets.joinpath("report.css").read_text(encoding="utf-8")
    verdict_items = "".join(f"<li>{html.escape(line)}</li>" for line in verdicts)
    verdict_block = (f'<details{" open" if len(verdicts) <= 12 else ""}><summary>{len(verdicts)} comparisons</summary>'
                     f'<ul class="verdicts">{verdict_items}</ul></details>' if verdicts
                     else "<p>No group has both a baseline and another model to compare.</p>")
    ok = int(summary["ok_runs"].sum())
    failed = int(summary["failed_runs"].sum())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body data-rendered="no">
<div id="errors"></div>
<h1>{html.escape(title)}</h1>
<p class="meta">{ok + failed:,} runs ({ok:,} ok, {failed:,} failed). {versions_line(runs, command)}</p>
<h2>Verdicts against the baseline</h2>
{verdict_block}
<h2>Test accuracy vs trainable parameters</h2>
<p class="note">Mean ± 1 std over seeds per model and recipe (hover a point for its numbers); ringed: the
model's recipe chosen by validation accuracy; hollow stars: the study's one unseeded run per model.</p>
<div id="accuracy" class="figure"></div>
<div id="grids"></div>
<h2>Learning curves</h2>
<p class="note">Accuracy per epoch, mean ± 1 std over the seeds still training (the band; drawn where a model
has at most 4 recipes): validation solid, train dashed.</p>
<div id="curves" class="figures"></div>
<h2>Runs</h2>
<p class="note" id="runs-note"></p>
<div id="runs" class="scroll"></div>
<h2>summary.md</h2>
<div class="markdown">{markdown_html(markdown)}</div>
<script type="application/json" id="report-data">{embedded_json(data)}</script>
<script>{script}</script>
</body></html>
"""

