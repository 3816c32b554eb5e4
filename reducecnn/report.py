"""Summary -> Markdown tables, the study comparison, the baseline verdicts, and two PNG plots."""

from __future__ import annotations

import math
import os
import pathlib
import shlex
import sys
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from reducecnn.aggregate import (
    COMPARISON_KEYS,
    REFERENCE_MODEL,
    SETTINGS_KEYS,
    STUDY,
    STUDY_DATASET,
    best_recipes,
    compare_to_baseline,
    describe_recipe,
    describe_settings,
    distinct_runs,
    duplicate_run_ids,
    model_sort_key,
    recipe_table,
    require_columns,
    study_sentences,
    summarize,
    user_model_version_warnings,
    varying_settings,
    with_spec_settings,
)
from reducecnn.htmlreport import render_page
from reducecnn.logs import plural

# Fixed sizes so a reader (and a test) knows the pixels: 8 x 5 in at 100 dpi = 800 x 500 px;
# learning curves are 12 in wide, two panels a row, 5 in per row of panels.
DPI = 100
ACCURACY_FIGURE_INCHES = (8.0, 5.0)
CURVES_WIDTH_INCHES = 12.0
CURVES_ROW_INCHES = 5.0
CURVES_COLUMNS = 2
# An interval end past 0-100% (±100 points for a difference) is shown at the limit with this mark
# and a note under its table: the t interval of 2 runs is the mean ± 12.7 std / sqrt(2).
CLIPPED_MARK = "†"
T_FACTOR_TWO_RUNS = float(stats.t.ppf(0.975, 1))
# The band and solid line of a learning curve end where fewer than this share of its runs still train.
MIN_SHARE_FOR_BAND = 0.5
# On a log x axis the series of one model sit at the same parameter count; this spreads them
# by a few percent so their error bars do not hide each other.
DODGE_DECADES = 0.02
X_ROOM_LEFT, X_ROOM_RIGHT = 8.0, 2.5   # factors beyond the outermost points, for their text labels
MODEL_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                "tab:gray", "tab:olive", "tab:cyan"]
SERIES_MARKERS = ["o", "s", "D", "^", "v", "P", "X"]


def learning_curves_pixels(panel_count: int) -> tuple[int, int]:
    """Width and height in pixels of learning_curves.png for a number of (dataset, protocol) panels."""
    rows = max(1, math.ceil(panel_count / CURVES_COLUMNS))
    return int(CURVES_WIDTH_INCHES * DPI), int(rows * CURVES_ROW_INCHES * DPI)


def write_atomically(path: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
    """Write through a temporary name in the same folder, then rename: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def format_count(value: object) -> str:
    """591786 -> '591,786'; missing -> '-'."""
    return "-" if pd.isna(value) else f"{int(value):,}"


def format_percent(fraction: float) -> str:
    """0.98594 -> '98.59'; NaN -> '-'."""
    return "-" if pd.isna(fraction) else f"{fraction * 100:.2f}"


def format_mean_std(mean: float, std: float) -> str:
    """Mean ± std in %; '98.59 ± -' when a single run leaves the std undefined."""
    return "-" if pd.isna(mean) else f"{format_percent(mean)} ± {format_percent(std)}"


def format_interval(low: float, high: float, signed: bool = False, clipped_mark: str = CLIPPED_MARK) -> str:
    """[98.10, 99.08] in % (or percentage points with a sign); '-' when undefined. An end past what
    an accuracy can be (0-100%, or ±100 points for a difference) is shown at that limit, marked."""
    if pd.isna(low) or pd.isna(high):
        return "-"
    floor, ceiling = (-1.0, 1.0) if signed else (0.0, 1.0)
    mark = clipped_mark if low < floor or high > ceiling else ""
    number = "{:+.2f}" if signed else "{:.2f}"
    return f"[{number.format(max(low, floor) * 100)}, {number.format(min(high, ceiling) * 100)}]{mark}"


def clipped_note(lines: Sequence[str], limits: str, quantity: str) -> list[str]:
    """The note under a table whose intervals were clipped (lines ending a cell with CLIPPED_MARK)."""
    if not any(f"]{CLIPPED_MARK} |" in line for line in lines):
        return []
    return [f"{CLIPPED_MARK} Clipped to {limits}: the 95% t interval reached past what {quantity} can be. "
            f"With few runs the t factor is large (up to {T_FACTOR_TWO_RUNS:.1f} with 2 runs), so the interval "
            "says only that these runs do not pin the mean down; more seeds narrow it."]


def format_number(value: float, digits: int, thousands: bool = False) -> str:
    """A float with fixed digits (and optional thousands commas); '-' when missing."""
    if pd.isna(value):
        return "-"
    return f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"


def format_flag(value: object) -> str:
    """True -> 'yes', False -> 'no', NA -> '-'."""
    return "-" if pd.isna(value) else ("yes" if value else "no")


SUMMARY_HEADER = ("| model | trainable params | total params | layers | MACs/image | runs ok / failed "
                  "| test acc. % (mean ± std) | min % | max % | 95% CI % | epochs | s/run | img/s "
                  "| study params | study acc. % | study within 2 std? |\n"
                  "|---|--:|--:|--:|--:|:-:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|:-:|")


def summary_table(group: pd.DataFrame) -> str:
    """The Markdown table of one (dataset, protocol, settings) group, one line per model."""
    lines = [SUMMARY_HEADER]
    for row in group.itertuples(index=False):
        cells = [
            row.model, format_count(row.params_trainable), format_count(row.params_total),
            format_count(row.layers), format_count(row.macs_per_image), f"{row.ok_runs} / {row.failed_runs}",
            format_mean_std(row.test_accuracy_mean, row.test_accuracy_std),
            format_percent(row.test_accuracy_min), format_percent(row.test_accuracy_max),
            format_interval(row.test_accuracy_ci_low, row.test_accuracy_ci_high),
            format_number(row.epochs_run_mean, 1), format_number(row.train_seconds_mean, 1),
            format_number(row.images_per_second_mean, 0, thousands=True),
            format_count(row.study_params_trainable), format_percent(row.study_test_accuracy),
            format_flag(row.study_within_2std),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n\n".join(["\n".join(lines), *clipped_note(lines, "0-100%", "an accuracy")])


def comparison_table(comparison: pd.DataFrame) -> str:
    """The Markdown table of every model against its group's baseline."""
    lines = ["| group | model | runs (model / baseline) | difference (points) | 95% Welch CI (points) "
             "| verdict |", "|---|---|:-:|--:|:-:|---|"]
    for row in comparison.itertuples(index=False):
        difference = "-" if pd.isna(row.difference) else f"{row.difference * 100:+.2f}"
        cells = [describe_settings(row), row.model, f"{row.n_model} / {row.n_reference}", difference,
                 format_interval(row.ci_low, row.ci_high, signed=True), row.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n\n".join(["\n".join(lines), *clipped_note(lines, "±100 points", "a difference of accuracies")])


def verdict_lines(runs: pd.DataFrame, margin: float) -> list[str]:
    """One line per model against its group's baseline, for the end of a benchmark's output."""
    return comparison_lines(compare_to_baseline(runs, margin))


def comparison_lines(comparison: pd.DataFrame) -> list[str]:
    """verdict_lines of a comparison table already computed."""
    groups = comparison.groupby(COMPARISON_KEYS, dropna=False, sort=False).ngroups if len(comparison) else 0
    lines = []
    for row in comparison.itertuples(index=False):
        difference = "-" if pd.isna(row.difference) else f"{row.difference * 100:+.2f} points"
        where = f" ({describe_settings(row)})" if groups > 1 else ""
        lines.append(f"{row.model} vs {row.reference}{where}: {difference}, 95% CI "
                     f"{format_interval(row.ci_low, row.ci_high, True, ' (clipped to ±100 points)')}: {row.verdict}")
    return lines


RECIPES_INTRO = ("Test accuracy in % per recipe and model: mean ± std over seeds (ok runs); a recipe is named "
                 "by the settings that differ between the recipes. Each recipe's full table follows below.")
CHOICE_INTRO = ("Best recipe per model, chosen by the highest mean validation accuracy on the held-out "
                "validation set (the last 10,000 training images). Its test accuracy is reported, never used "
                "to choose.")
CHOICE_HEADER = ("| model | chosen recipe | validation acc. % (mean) | lead in validation acc. (points) "
                 "| test acc. % (mean ± std (n)) |\n|---|---|--:|---|--:|")


def format_cell(mean: float, std: float, runs: object) -> str:
    """'98.60 ± 0.20 (5)': mean ± std in % and the ok runs; '-' without ok runs."""
    return "-" if pd.isna(mean) else f"{format_mean_std(mean, std)} ({int(runs)})"


def recipe_models_table(table: pd.DataFrame) -> str:
    """The Markdown recipes x models table of one (dataset, protocol): test accuracy per cell."""
    models = [model for model in table["ok_runs"].columns if table["ok_runs"][model].notna().any()]
    lines = ["| recipe | " + " | ".join(models) + " |", "|---|" + "--:|" * len(models)]
    for (_, _, recipe), row in table.iterrows():
        cells = [format_cell(row[("test_accuracy_mean", model)], row[("test_accuracy_std", model)],
                             row[("ok_runs", model)]) for model in models]
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_lead(lead: float, runner_up: object) -> str:
    """'+0.12 over lr 0.01, 2-px shifts' (points of validation accuracy), or why there is no runner-up."""
    if pd.isna(lead):
        return "the only recipe with ok runs"
    return f"tied with {runner_up}" if lead == 0 else f"+{lead * 100:.2f} over {runner_up}"


def best_recipe_parts(best: pd.DataFrame) -> list[str]:
    """Each model's recipe chosen by validation accuracy, then one sentence per reason no recipe was chosen."""
    parts = []
    chosen = best[best["recipe"].notna()]
    if len(chosen):
        lines = [CHOICE_HEADER]
        for row in chosen.itertuples(index=False):
            cells = [row.model, row.recipe, format_percent(row.val_accuracy_mean),
                     format_lead(row.val_accuracy_lead, row.runner_up),
                     format_cell(row.test_accuracy_mean, row.test_accuracy_std, row.ok_runs)]
            lines.append("| " + " | ".join(cells) + " |")
        parts += [CHOICE_INTRO, "\n".join(lines)]
    for reason, rows in best[best["recipe"].isna()].groupby("reason", sort=False):
        parts.append(f"No recipe is chosen for {', '.join(rows['model'])}: {reason}.")
    return parts


def recipe_parts(summary: pd.DataFrame, recipes: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """'## Recipes x models' for each (dataset, protocol) trained with several recipes; nothing when none was."""
    if recipes.empty:
        return []
    parts = ["## Recipes x models", RECIPES_INTRO]
    for (dataset, protocol), table in recipes.groupby(level=["dataset", "protocol"], sort=False):
        rows = summary[(summary["dataset"] == dataset) & (summary["protocol"] == protocol)]
        shared = [name for name in SETTINGS_KEYS if name not in varying_settings(rows)]
        parts.append(f"### {dataset}, {protocol}")
        if shared:
            parts.append(f"Every recipe: {describe_recipe(rows.iloc[0], shared)}.")
        parts.append(recipe_models_table(table))
        parts += best_recipe_parts(best[(best["dataset"] == dataset) & (best["protocol"] == protocol)])
    return parts


def render_markdown(summary: pd.DataFrame, comparison: pd.DataFrame, margin: float,
                    warnings: Sequence[str], recipes: pd.DataFrame, best: pd.DataFrame) -> str:
    """The whole summary.md: recipes x models (when a dataset and protocol has several recipes), tables
    per group, study sentences, baseline verdicts, warnings."""
    ok_runs, failed_runs = int(summary["ok_runs"].sum()), int(summary["failed_runs"].sum())
    parts = ["# Results",
             f"{plural(ok_runs + failed_runs, 'run')} ({ok_runs} ok, {failed_runs} failed). Test accuracy in %: mean ± "
             "sample std over seeds, 95% CI of the mean from the t distribution; '-' where a single run leaves "
             "it undefined. Failed runs are counted, never averaged. The study's figures are its one unseeded "
             "run per model on MNIST (`model.evaluate` on the test set)."]
    parts += recipe_parts(summary, recipes, best)
    for _, group in summary.groupby(COMPARISON_KEYS, dropna=False, sort=False):
        parts += [f"## {describe_settings(group.iloc[0])}", summary_table(group)]
    parts.append("## The study's figures beside ours")
    sentences = study_sentences(summary)
    if sentences:
        parts.append("\n".join(f"- {sentence}" for sentence in sentences))
    elif summary["study_within_2std"].notna().any():
        parts.append("Every study figure we can judge (2+ ok runs) lies within 2 std of our mean; "
                     "the parameter counts match.")
    else:
        parts.append("No MNIST study model has 2 or more ok runs yet: nothing to compare.")
    parts.append("## Same accuracy as the baseline?")
    parts.append(f"Difference = model - {REFERENCE_MODEL} mean test accuracy, in percentage points, with its 95% "
                 f"Welch CI. Equivalent when the whole CI lies inside ±{margin * 100:.2f} points; lower / higher "
                 "when it excludes 0; otherwise inconclusive, with a rough number of seeds per model that would "
                 "decide it if the observed means and stds held.")
    no_pairs = "No group has both a baseline and another model to compare."
    parts.append(comparison_table(comparison) if len(comparison) else no_pairs)
    if warnings:
        parts += ["## Warnings", "\n".join(f"- {warning}" for warning in warnings)]
    return "\n\n".join(parts) + "\n"


def series_label(row: pd.Series, settings_vary: bool) -> str:
    """'mnist · holdout', or every setting of the group when a summary mixes several (so two
    recipes that differ only in, say, the learning rate never share a label)."""
    if settings_vary:
        return describe_settings(row)
    return f"{row['dataset']} · {row['protocol']}"


def settings_vary(summary: pd.DataFrame) -> bool:
    """Whether some (dataset, protocol) appears with more than one (max_epochs, batch_size, train_limit)."""
    groups = summary[COMPARISON_KEYS].drop_duplicates()
    return len(groups) > len(groups[["dataset", "protocol"]].drop_duplicates())


def draw_nothing_to_plot(axes: Axes, message: str) -> None:
    """Say in the plot itself why it is empty."""
    axes.text(0.5, 0.5, message, transform=axes.transAxes, ha="center", va="center", color="gray")


def label_models(axes: Axes, points: pd.DataFrame) -> None:
    """Name each model once, right of its rightmost point, at the middle of its series' accuracies."""
    for model, model_points in points.groupby("model", sort=False):
        axes.annotate(model, (model_points["x"].max(), model_points["y"].mean()), textcoords="offset points",
                      xytext=(9, 0), va="center", fontsize=9)


def draw_our_points(axes: Axes, summary: pd.DataFrame) -> list[float]:
    """Our mean test accuracy ± std per model, one series per group; return the x positions drawn."""
    plotted = summary[summary["test_accuracy_mean"].notna() & summary["params_trainable"].notna()]
    groups = list(plotted.groupby(COMPARISON_KEYS, dropna=False, sort=False))
    vary = settings_vary(plotted)
    points = []
    for index, (_, group) in enumerate(groups):
        dodge = 10 ** (DODGE_DECADES * (index - (len(groups) - 1) / 2))
        params = group["params_trainable"].astype(float).to_numpy() * dodge
        accuracy = group["test_accuracy_mean"].to_numpy() * 100
        spread = group["test_accuracy_std"].fillna(0).to_numpy() * 100
        axes.errorbar(params, accuracy, yerr=spread, fmt=SERIES_MARKERS[index % len(SERIES_MARKERS)],
                      capsize=4, markersize=7, label=f"{series_label(group.iloc[0], vary)} (ours)")
        points += [(model, x, y) for model, x, y in zip(group["model"], params, accuracy)]
    label_models(axes, pd.DataFrame(points, columns=["model", "x", "y"]))
    return [x for _, x, _ in points]


def draw_study_points(axes: Axes) -> list[float]:
    """The study's own figures as hollow stars with labelled leader lines; return their x positions."""
    study_params = [params for params, _ in STUDY.values()]
    study_accuracy = [accuracy * 100 for _, accuracy in STUDY.values()]
    # hollow and on top: our points stay visible where the study's figure coincides with them
    axes.scatter(study_params, study_accuracy, marker="*", s=220, facecolors="none", edgecolors="black",
                 linewidths=1.2, zorder=5, label="the study (mnist, one unseeded run each)")
    for model, x, y in zip(STUDY, study_params, study_accuracy):
        # labels go left: our own points and their labels sit at and right of the same x
        axes.annotate(f"study {model}", (x, y), textcoords="offset points", xytext=(-42, 0), ha="right",
                      va="center", fontsize=8, color="dimgray",
                      arrowprops=dict(arrowstyle="-", color="gray", linewidth=0.6, shrinkB=9))
    return study_params


def plot_accuracy_vs_params(summary: pd.DataFrame, path: pathlib.Path) -> None:
    """Mean test accuracy ± std against trainable parameters (log x), one series per group, the study overlaid."""
    figure = Figure(figsize=ACCURACY_FIGURE_INCHES, dpi=DPI, layout="constrained")
    axes = figure.subplots()
    drawn_x = draw_our_points(axes, summary)
    if not drawn_x:
        draw_nothing_to_plot(axes, "no successful runs to plot")
    if (summary["dataset"] == STUDY_DATASET).any():
        drawn_x += draw_study_points(axes)
    axes.set_xscale("log")
    if drawn_x:  # room for the labels left and right of the outermost points
        axes.set_xlim(min(drawn_x) / X_ROOM_LEFT, max(drawn_x) * X_ROOM_RIGHT)
    axes.set_xlabel("trainable parameters (log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Test accuracy vs trainable parameters (ours: mean ± 1 std over seeds)")
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="lower right")
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))


def validation_curves(runs: pd.DataFrame, epochs: pd.DataFrame, column: str = "val_accuracy") -> pd.DataFrame:
    """Mean, std and run count of validation accuracy (or another epochs column, e.g. the training
    `accuracy`) per (group, model, epoch), over ok runs only."""
    keys = [*COMPARISON_KEYS, "model"]
    if epochs.empty:
        return pd.DataFrame(columns=[*keys, "epoch", "mean", "std", "runs"])
    require_columns(epochs, ["run_id", "epoch", column])
    runs = distinct_runs(with_spec_settings(runs))
    ok_runs = runs.loc[runs["status"] == "ok", ["run_id", *keys]]
    epochs = epochs.drop_duplicates(["run_id", "epoch"])  # the same run in two benchmarks counts once
    joined = epochs[["run_id", "epoch", column]].merge(ok_runs, on="run_id")
    curves = joined.groupby([*keys, "epoch"], dropna=False)[column].agg(["mean", "std", "count"])
    return curves.rename(columns={"count": "runs"}).reset_index()


def curve_label(model: str, runs_per_epoch: Sequence[int], last_epoch: int) -> str:
    """'approach1 (n=5)', or 'approach1 (n=5, 2 by epoch 9)' when early stopping thinned the runs."""
    first, last = int(runs_per_epoch[0]), int(runs_per_epoch[-1])
    return f"{model} (n={first})" if first == last else f"{model} (n={first}, {last} by epoch {last_epoch})"


def thinned_from(runs_per_epoch: Sequence[int]) -> int:
    """Index of the first epoch at which fewer than MIN_SHARE_FOR_BAND of the curve's runs still
    train (early stopping ended the others); the curve's length when that never happens."""
    first = runs_per_epoch[0]
    return next((index for index, runs in enumerate(runs_per_epoch) if runs < MIN_SHARE_FOR_BAND * first),
                len(runs_per_epoch))


def draw_model_curve(axes: Axes, curve: pd.DataFrame, model: str, color: str) -> None:
    """One model's mean validation accuracy per epoch with a ± 1 std band while at least half of its
    runs still train; then a dashed line of hollow points without a band. Where early stopping
    thins the runs, the point says how many remain (n=2)."""
    curve = curve.sort_values("epoch")
    epoch = curve["epoch"].to_numpy()
    mean = curve["mean"].to_numpy(dtype=float) * 100
    spread = curve["std"].fillna(0).to_numpy(dtype=float) * 100
    runs = curve["runs"].astype(int).tolist()
    cut = thinned_from(runs)
    axes.plot(epoch[:cut], mean[:cut], marker="o", markersize=3, color=color,
              label=curve_label(model, runs, int(epoch[-1])))
    axes.fill_between(epoch[:cut], (mean - spread)[:cut], (mean + spread)[:cut], color=color, alpha=0.2, linewidth=0)
    if cut < len(epoch):  # joined to the last full point, so the curve reads as one
        tail = slice(max(cut - 1, 0), len(epoch))
        axes.plot(epoch[tail], mean[tail], linestyle="--", linewidth=1, marker="o", markersize=4,
                  markerfacecolor="white", color=color)
    for index in range(1, len(runs)):
        if runs[index] != runs[index - 1]:
            axes.annotate(f"n={runs[index]}", (epoch[index], mean[index]), textcoords="offset points",
                          xytext=(0, -11), ha="center", va="top", fontsize=7, color=color)


def plot_learning_curves(summary: pd.DataFrame, runs: pd.DataFrame, epochs: pd.DataFrame,
                         path: pathlib.Path) -> None:
    """Validation accuracy per epoch, mean ± std over seeds per model, one panel per (dataset, protocol, settings)."""
    panels = list(summary.groupby(COMPARISON_KEYS, dropna=False, sort=False))
    width, height = learning_curves_pixels(len(panels))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    rows = max(1, math.ceil(len(panels) / CURVES_COLUMNS))
    columns = min(CURVES_COLUMNS, max(1, len(panels)))
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    curves = validation_curves(runs, epochs)
    all_models = sorted(summary["model"].unique(), key=model_sort_key)
    for axes, (_, group) in zip(grid, panels):
        first = group.iloc[0]
        panel = curves[np.logical_and.reduce([same_key(curves[key], first[key]) for key in COMPARISON_KEYS])]
        for model in sorted(panel["model"].unique(), key=model_sort_key):
            color = MODEL_COLORS[all_models.index(model) % len(MODEL_COLORS)]
            draw_model_curve(axes, panel[panel["model"] == model], model, color)
        if panel.empty:
            draw_nothing_to_plot(axes, "no epoch records of successful runs")
        validation = "validation = test set" if first["protocol"] == "study" else "held-out validation set"
        axes.set_title(f"{describe_settings(first)}\n({validation})", fontsize=9)
        axes.set_xlabel("epoch")
        axes.set_ylabel("validation accuracy (%)")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if not panel.empty:
            axes.legend(fontsize=8, loc="lower right")
    for unused in grid[len(panels):]:
        unused.set_visible(False)
    figure.suptitle("Validation accuracy per epoch: mean ± 1 std over the seeds still training\n(dashed, without "
                    "a band, where fewer than half remain; n=: the seeds left where early stopping ended some)",
                    fontsize=11)
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))


def same_key(column: pd.Series, value: object) -> pd.Series:
    """Elementwise equality that treats two missing values (e.g. no train_limit) as equal."""
    if pd.isna(value):
        return column.isna()
    return (column == value).fillna(False).astype(bool)


def duplicate_warnings(runs: pd.DataFrame) -> list[str]:
    """A warning naming run ids recorded more than once (each was counted once)."""
    duplicates = duplicate_run_ids(runs)
    if not duplicates:
        return []
    shown = ", ".join(duplicates[:5]) + (", ..." if len(duplicates) > 5 else "")
    return [f"{len(duplicates)} run id(s) appear in more than one row and were counted once "
            f"(an ok record preferred): {shown}"]


def this_command() -> str:
    """The command line of this process as a person would type it: 'reducecnn report results/x'."""
    program = pathlib.Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    program = "reducecnn" if program in ("__main__.py", "reducecnn") else program
    return shlex.join([program, *sys.argv[1:]])


def write_html(path: pathlib.Path, markdown: str, runs: pd.DataFrame, epochs: pd.DataFrame, summary: pd.DataFrame,
               comparison: pd.DataFrame, recipes: pd.DataFrame, best: pd.DataFrame, command: str) -> None:
    """report.html from the same tables as summary.md: its verdicts and tables, plus the browser's plots."""
    curves = {"validation": validation_curves(runs, epochs)}
    if "accuracy" in epochs:
        curves["train"] = validation_curves(runs, epochs, "accuracy")
    page = render_page(f"reducecnn report: {path.parent.name}", markdown, comparison_lines(comparison), command,
                       summary, curves, recipes, best, runs)
    write_atomically(path, lambda temporary: temporary.write_text(page, encoding="utf-8"))


def write_report(runs: pd.DataFrame, epochs: pd.DataFrame, out_dir: pathlib.Path, margin: float = 0.005,
                 warnings: Sequence[str] = (), command: str | None = None) -> pathlib.Path:
    """Write summary.parquet, summary.md, report.html and plots/*.png under out_dir; return the summary.md
    path. `command` is what report.html says produced it (default: this process's command line).

    With runs but no ok ones the tables still list the counts, and both plots are drawn with a
    note saying there is nothing to plot, so the files a reader expects always exist. Run ids
    recorded more than once are counted once and added to the warnings.
    """
    if runs.empty:
        raise ValueError(f"no runs to report: the runs table has no rows (nothing written to {out_dir})")
    summary = summarize(runs)
    comparison = compare_to_baseline(runs, margin)
    warnings = [*warnings, *duplicate_warnings(runs), *user_model_version_warnings(runs)]
    out_dir = pathlib.Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "summary.parquet", lambda temporary: summary.to_parquet(temporary, index=False))
    plot_accuracy_vs_params(summary, out_dir / "plots" / "accuracy_vs_params.png")
    plot_learning_curves(summary, runs, epochs, out_dir / "plots" / "learning_curves.png")
    markdown_path = out_dir / "summary.md"
    recipes, best = recipe_table(runs), best_recipes(runs)
    markdown = render_markdown(summary, comparison, margin, warnings, recipes, best)
    write_atomically(markdown_path, lambda temporary: temporary.write_text(markdown, encoding="utf-8"))
    write_html(out_dir / "report.html", markdown, runs, epochs, summary, comparison, recipes, best,
               command or this_command())
    return markdown_path
