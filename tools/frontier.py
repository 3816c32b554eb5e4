"""The parameter frontier: test accuracy against trainable parameters, ours as means over seeds
(holdout: choices on validation, the test set touched once per run) beside public single runs
tuned on the test set. Generated from committed results so it cannot drift.

    python -m tools.frontier            # rewrite the tables in docs/findings.md, draw docs/frontier.png
    python -m tools.frontier --check    # exit 1 if the tables are not what the results give

Tables sit between `<!-- frontier: begin ... -->` / `<!-- frontier: end -->` (MNIST) and
`<!-- frontier-fashion: begin ... -->` / `<!-- frontier-fashion: end -->` (Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path


import pandas as pd

from tools.findings import check_or_write, replace_block
from reducecnn import aggregate, store
from reducecnn.report import clipped_note, format_interval, format_mean_std, write_atomically

RESULTS = Path("docs/results")
# Our frontier: results folders, read whole (screens on 2 seeds included; the plot draws models
# with at least MIN_SEEDS ok runs).
MNIST_FOLDERS = ["mnist-holdout-v040", "mnist-small2k-lr01-holdout", "mnist-frontier1k-holdout",
                 "mnist-frontier8k-holdout"]
FASHION_FOLDERS = ["fashion_mnist-holdout", "fashion_mnist-small2k-lr01-holdout", "fashion_mnist-frontier1k-holdout",
                   "fashion_mnist-frontier8k-holdout"]
MIN_SEEDS = 5
TARGETS = [(1_000, 0.990, None), (8_000, 0.994, 15)]  # (max trainable params, mean test accuracy, max epochs)


@dataclass(frozen=True)
class Claim:
    """A published figure: what it is, and how it was obtained."""

    label: str
    params: int
    accuracy: float
    how: str
    source: str
    std: float = 0.0  # where the figure is a mean over runs


STUDY_HOW = "one unseeded run, early-stopped on the test set"
STUDY_SOURCE = "github.com/AbuBakar-here/reduce-cnn-parameters"
CLAIMS = [
    Claim("study baseline", 591_786, 0.9859, STUDY_HOW, STUDY_SOURCE),
    Claim("study approach1", 3_418, 0.9793, STUDY_HOW, STUDY_SOURCE),
    Claim("study approach2", 3_130, 0.9666, STUDY_HOW, STUDY_SOURCE),
    Claim("JoshWarn 697", 697, 0.9903, "best test epoch of the best of ~700 runs; early-stopped on the test set, "
          "best weights restored", "github.com/JoshWarn/Parameter-Efficient-MNIST, 697_mnist_0.9903.h5"),
    Claim("JoshWarn 997 (223 runs)", 997, 0.98761, "mean ± 0.10 (sample std) of 223 runs' last-epoch test accuracy, "
          "early-stopped on the test set; max 99.06", "same repository, 997_saved_acc.txt (git history, a811202)",
          std=0.00105),
    Claim("ruslangrimov 1,936", 1_936, 0.9910, "single run, 75 epochs, final epoch; architectures compared on "
          "the test set", "github.com/ruslangrimov/mnist-minimal-model, 1936/model.txt"),
    Claim("ruslangrimov 2,180", 2_180, 0.9915, "single run, epoch 71 of 75 (choice undocumented); architectures "
          "compared on the test set", "same repository, 2180/model.txt"),
    Claim("ERA4 6,174", 6_174, 0.9947, "one seed, epoch 15 of 15, the test set as validation; 4 versions compared "
          "on it", "github.com/firekind/ERA4, session-6/README.md"),
    Claim("ERAv2 7,432", 7_432, 0.9951, "one seed, epoch 15 of 15; learning rate reduced on test loss",
          "github.com/sayanbanerjee32/TSAI_ERAv2_S7, README.md (step 3)"),
]


def summarize(folders: list[str], results: Path = RESULTS) -> pd.DataFrame:
    """One row per (folder, model, recipe) with runs on record, in folder order."""
    rows = []
    for name in folders:
        if not (results / name / "runs").is_dir():
            continue
        runs, warnings = store.read_table(store.locate(str(results), name), "runs")
        if warnings:
            raise SystemExit(f"frontier: {results / name}: {'; '.join(warnings)}")
        rows.append(aggregate.summarize(runs).assign(folder=name))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def recipe(row: object) -> str:
    """'15 epochs, cosine from 0.01, 2-px shifts' (the study's three models: 'the study's recipe')."""
    if row.model in aggregate.STUDY:
        return "the study's (≤10 epochs, Adam 1e-3)"
    parts = [f"{int(row.max_epochs)} epochs"]
    schedule = "cosine from" if row.lr_schedule == "cosine" else "lr"
    parts.append(f"{schedule} {row.learning_rate:g}")
    if row.augment_shift:
        parts.append(f"{int(row.augment_shift)}-px shifts")
    return ", ".join(parts)


def meets(row: object) -> str:
    """The targets a row meets (as a mean over >= MIN_SEEDS seeds), or '-'."""
    met = [f"≤{budget:,}: ≥{accuracy:.1%}" for budget, accuracy, epochs in TARGETS
           if row.ok_runs >= MIN_SEEDS and row.params_trainable <= budget and row.test_accuracy_mean >= accuracy
           and (epochs is None or row.max_epochs <= epochs)]
    return "; ".join(met) or "-"


def final_recipe(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per model: of its recipes run on >= MIN_SEEDS seeds (its finals; a screen has 2), the
    one with the highest mean validation accuracy, the holdout protocol's rule (as
    aggregate.choose_recipe applies it); test accuracy never chooses. A model with no final: its
    screen with the highest validation mean."""
    ranked = summary.assign(_final=summary["ok_runs"] >= MIN_SEEDS).sort_values(
        ["_final", "val_accuracy_mean"], ascending=False, kind="stable")
    return ranked.drop_duplicates("model", keep="first").drop(columns="_final")


def mnist_table(summary: pd.DataFrame) -> str:
    """Ours (mean ± std over seeds, 95% CI, min) and the public claims, sorted by parameters."""
    lines = ["| model | trainable params | recipe | test acc. % (mean ± std) | seeds | 95% CI % | min % "
             "| validation % | targets met | results |",
             "|---|--:|---|--:|:-:|:-:|--:|--:|---|---|"]
    for row in summary.sort_values("params_trainable", kind="stable").itertuples(index=False):
        lines.append(
            f"| {row.model} | {int(row.params_trainable):,} | {recipe(row)} "
            f"| {format_mean_std(row.test_accuracy_mean, row.test_accuracy_std)} | {row.ok_runs} "
            f"| {format_interval(row.test_accuracy_ci_low, row.test_accuracy_ci_high)} "
            f"| {row.test_accuracy_min * 100:.2f} | {row.val_accuracy_mean * 100:.2f} | {meets(row)} "
            f"| [{row.folder}](results/{row.folder}/summary.md) |")
    lines += [line for note in clipped_note(lines, "0-100%", "an accuracy") for line in ("", note)]
    lines += ["", "Published figures, drawn apart in the plot (none is a mean over seeds on a held-out protocol):", "",
              "| claim | trainable params | test acc. % | how it was obtained | source |", "|---|--:|--:|---|---|"]
    for claim in sorted(CLAIMS, key=lambda claim: claim.params):
        lines.append(f"| {claim.label} | {claim.params:,} | {claim.accuracy * 100:.2f} | {claim.how} "
                     f"| {claim.source} |")
    return "\n".join(lines)


def fashion_table(mnist: pd.DataFrame, fashion: pd.DataFrame) -> str:
    """Each model's MNIST and Fashion-MNIST accuracy side by side, and what the baseline keeps."""
    on_mnist, on_fashion = ({row.model: row for row in final_recipe(summary).itertuples(index=False)}
                            for summary in (mnist, fashion))
    same_recipe = {(row.model, recipe(row)): row for row in mnist.itertuples(index=False)}
    reference = on_fashion.get("baseline")
    lines = ["| model | trainable params | recipe | MNIST % | Fashion-MNIST % | seeds (Fashion) "
             "| Fashion vs baseline, points [95% CI] | results |", "|---|--:|---|--:|--:|:-:|--:|---|"]
    for model, row in sorted(on_fashion.items(), key=lambda item: item[1].params_trainable):
        known = same_recipe.get((model, recipe(row)), on_mnist.get(model))  # MNIST with the Fashion recipe
        mnist_cell = format_mean_std(known.test_accuracy_mean, known.test_accuracy_std) if known else "-"
        gap = "-"
        if reference is not None and model != "baseline":
            difference, low, high, _ = aggregate.welch_difference(
                row.test_accuracy_mean, row.test_accuracy_std, row.ok_runs,
                reference.test_accuracy_mean, reference.test_accuracy_std, reference.ok_runs)
            gap = f"{difference * 100:+.2f} {format_interval(low, high, signed=True)}"
        lines.append(f"| {model} | {int(row.params_trainable):,} | {recipe(row)} | {mnist_cell} "
                     f"| {format_mean_std(row.test_accuracy_mean, row.test_accuracy_std)} | {row.ok_runs} | {gap} "
                     f"| [{row.folder}](results/{row.folder}/summary.md) |")
    notes = clipped_note(lines, "±100 points", "a difference of accuracies")
    return "\n".join(lines + [line for note in notes for line in ("", note)])


LABEL_OFFSETS = {"ruslangrimov 1,936": (-8, -12), "JoshWarn 997 (223 runs)": (-8, -14)}
# our labels sit below right of their points, except where a claim's marker or label is there
OUR_OFFSETS = {("share1k6", False): (-14, 9), ("share1k6", True): (8, 3)}  # (model, zoomed panel)
# (x range, y range) of the two panels: everything, and the small models' corner
PANELS = [((400, 2_000_000), (96.3, 99.8)), ((500, 12_000), (98.4, 99.75))]


def draw(axes, ours: pd.DataFrame, zoom: bool) -> None:
    """One panel: ours with ±1 std bars, the claims as hollow markers, the targets as corners."""
    (x_low, x_high), (y_low, y_high) = PANELS[zoom]
    inside = lambda x, y: x_low <= x <= x_high and y_low <= y <= y_high  # noqa: E731 (label only what shows)
    axes.errorbar(ours["params_trainable"].astype(float), ours["test_accuracy_mean"] * 100,
                  yerr=ours["test_accuracy_std"] * 100, fmt="o", color="tab:blue", capsize=4, markersize=7,
                  label=f"ours: mean ± 1 std over ≥{MIN_SEEDS} seeds, holdout, test set touched once")
    for row in ours.itertuples(index=False):
        if inside(row.params_trainable, row.test_accuracy_mean * 100):
            axes.annotate(row.model, (float(row.params_trainable), row.test_accuracy_mean * 100),
                          textcoords="offset points", xytext=OUR_OFFSETS.get((row.model, zoom), (8, -12)),
                          fontsize=9, color="tab:blue")
    for index, claims in enumerate([[c for c in CLAIMS if c.label.startswith("study")],
                                    [c for c in CLAIMS if not c.label.startswith("study")]]):
        axes.scatter([c.params for c in claims], [c.accuracy * 100 for c in claims], marker=["*", "D"][index],
                     s=[180, 60][index], facecolors="none", edgecolors=["black", "tab:red"][index], zorder=5,
                     label=["the study: one unseeded run each, early-stopped on test",
                            "public records: single run, tuned on test (JoshWarn 997: mean ± std of 223)"][index])
        for claim in claims:
            if claim.std:
                axes.errorbar([claim.params], [claim.accuracy * 100], yerr=[claim.std * 100], fmt="none",
                              ecolor="tab:red", capsize=3, linewidth=0.8)
            if inside(claim.params, claim.accuracy * 100) and (zoom or index == 0):
                axes.annotate(claim.label, (claim.params, claim.accuracy * 100), textcoords="offset points",
                              xytext=LABEL_OFFSETS.get(claim.label, (-8, 7)), ha="right", fontsize=8,
                              color=["dimgray", "tab:red"][index])
    for number, (budget, accuracy, epochs) in enumerate(TARGETS):
        axes.plot([budget / 1.5, budget, budget], [accuracy * 100, accuracy * 100, accuracy * 100 - 0.15],
                  color="gray", linewidth=1.2, label="targets: ≤1,000 params ≥99.0%; ≤8,000 ≥99.4% in ≤15 epochs"
                  if number == 0 else None)
    axes.set_xscale("log")
    axes.set_xlim(x_low, x_high)
    axes.set_ylim(y_low, y_high)
    axes.set_xlabel("trainable parameters (log scale)")
    axes.grid(True, which="both", alpha=0.3)


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Accuracy against trainable parameters (log x), one point per model (its final recipe):
    everything, and the small models' corner enlarged."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13.0, 5.6), dpi=100, layout="constrained")
    whole, corner = figure.subplots(1, 2, width_ratios=[1, 1.15])
    ours = final_recipe(summary[summary["ok_runs"] >= MIN_SEEDS]).sort_values("params_trainable")
    draw(whole, ours, zoom=False)
    draw(corner, ours, zoom=True)
    whole.set_ylabel("MNIST test accuracy (%)")
    whole.set_title("The parameter frontier on MNIST")
    corner.set_title("Under 12,000 parameters, enlarged")
    corner.legend(fontsize=7.5, loc="upper left")
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", default="docs/findings.md", help="the file holding the markers")
    parser.add_argument("--plot", default="docs/frontier.png", help="where the plot goes (not with --check)")
    parser.add_argument("--check", action="store_true", help="only check that the tables are up to date")
    args = parser.parse_args(argv)
    mnist, fashion = summarize(MNIST_FOLDERS), summarize(FASHION_FOLDERS)
    doc_path = Path(args.doc)
    doc = doc_path.read_text(encoding="utf-8")
    updated = replace_block(doc, mnist_table(mnist), args.doc, "<!-- frontier: begin", "<!-- frontier: end -->")
    updated = replace_block(updated, fashion_table(mnist, fashion), args.doc, "<!-- frontier-fashion: begin",
                            "<!-- frontier-fashion: end -->")
    stale = f"frontier: the tables in {args.doc} are stale; run `python -m tools.frontier`"
    status = check_or_write(doc_path, doc, updated, args.check, stale)
    if not args.check:
        plot(mnist, Path(args.plot))
        print(f"frontier: {args.doc} updated, {args.plot} drawn")
    return status

if __name__ == "__main__":
    sys.exit(main())
