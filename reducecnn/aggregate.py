"""Runs table -> per-model summary, the study's numbers beside ours, the "same accuracy?" verdict, and recipe grids
(test accuracy per recipe and model; each model's recipe chosen by validation accuracy)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from reducecnn.config import RunSpec

# The study's own figures (STUDY-FACTS.md): trainable parameters and the test accuracy
# that model.evaluate() reported after fit, one unseeded run per model, on MNIST.
STUDY: dict[str, tuple[int, float]] = {
    "baseline": (591_786, 0.9859),
    "approach1": (3_418, 0.9793),
    "approach2": (3_130, 0.9666),
}
STUDY_DATASET = "mnist"
REFERENCE_MODEL = "baseline"

# Runs are pooled only when all of these agree: different settings are never averaged together.
# The last three come from each run's spec_json (see `with_spec_settings`).
SETTINGS_KEYS = ["max_epochs", "batch_size", "train_limit", "patience", "learning_rate", "lr_schedule",
                 "augment_shift"]
# What a spec without the field meant: RunSpec's defaults (unchanged since the fields were added).
SPEC_DEFAULTS = {name: RunSpec.model_fields[name].default for name in ("learning_rate", "lr_schedule", "augment_shift")}
INTEGER_SETTINGS = ["max_epochs", "batch_size", "train_limit", "patience", "augment_shift"]
COMPARISON_KEYS = ["dataset", "protocol", *SETTINGS_KEYS]
SUMMARY_KEYS = ["dataset", "protocol", "model", *SETTINGS_KEYS]
REQUIRED_COLUMNS = [*(key for key in SUMMARY_KEYS if key not in SPEC_DEFAULTS), "status", "test_accuracy"]
MODEL_PROPERTIES = ["params_trainable", "params_total", "params_non_trainable", "layers", "macs_per_image"]
# val_accuracy is the final epoch's: under holdout the last 10,000 training images, under study the test set.
MEAN_COLUMNS = {"epochs_run": "epochs_run_mean", "train_seconds": "train_seconds_mean",
                "images_per_second": "images_per_second_mean", "val_accuracy": "val_accuracy_mean"}
CONFIDENCE = 0.95
MIN_RUNS_FOR_VERDICT = 2
MAX_SEEDS_ESTIMATE = 10_000
EQUIVALENT = "same accuracy (equivalent within the margin)"
# A recipe is chosen by validation accuracy only where the validation set is apart from the test set.
CHOOSING_PROTOCOLS = ("holdout",)
NO_CHOICE_REASONS = {"study": "under the study protocol the validation set is the test set, so no recipe can be "
                              "chosen without touching the test set"}
# Words for one setting; train_limit's missing value means the full training split.
SETTING_PHRASES = {"max_epochs": "≤{} epochs", "batch_size": "batch {}", "train_limit": "first {:,} training images",
                   "patience": "patience {}", "learning_rate": "lr {:g}", "lr_schedule": "{} schedule",
                   "augment_shift": "{}-px shifts"}
RECIPE_KEYS = ["dataset", "protocol", "recipe"]
RECIPE_STATISTICS = ["ok_runs", "test_accuracy_mean", "test_accuracy_std", "val_accuracy_mean"]

SUMMARY_COLUMNS = [
    *SUMMARY_KEYS, "benchmarks", "ok_runs", "failed_runs", *MODEL_PROPERTIES,
    "test_accuracy_mean", "test_accuracy_std", "test_accuracy_min", "test_accuracy_max",
    "test_accuracy_ci_low", "test_accuracy_ci_high", *MEAN_COLUMNS.values(),
    "study_params_trainable", "study_test_accuracy", "study_within_2std",
]
BEST_RECIPE_COLUMNS = [
    "dataset", "protocol", "model", "recipes", "recipe", *SETTINGS_KEYS, "val_accuracy_mean", "ok_runs",
    "test_accuracy_mean", "test_accuracy_std", "runner_up", "val_accuracy_lead", "reason",
]
BEST_RECIPE_FLOATS = ["val_accuracy_mean", "test_accuracy_mean", "test_accuracy_std", "val_accuracy_lead"]
COMPARISON_COLUMNS = [
    *COMPARISON_KEYS, "model", "reference", "n_model", "n_reference", "mean_model", "mean_reference",
    "std_model", "std_reference", "difference", "ci_low", "ci_high", "welch_df", "margin",
    "seeds_needed_per_model", "verdict",
]


def require_columns(runs: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise a readable error when the runs table lacks columns this module needs."""
    missing = [name for name in columns if name not in runs.columns]
    if missing:
        raise ValueError(f"the runs table lacks column(s) {', '.join(missing)}; "
                         f"it has: {', '.join(map(str, runs.columns))}")


def model_sort_key(model: str) -> tuple[int, str]:
    """Order models as the study does (baseline, approach1, approach2), then the others by name."""
    study_order = list(STUDY)
    return (study_order.index(model), "") if model in study_order else (len(study_order), model)


def mean_std_ci(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1) and the t-distribution 95% CI of the mean; NaN where undefined."""
    count = len(values)
    if count == 0:
        return (math.nan,) * 4
    mean = float(np.mean(values))
    if count == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(np.std(values, ddof=1))
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, count - 1) * std / math.sqrt(count)
    return mean, std, mean - half_width, mean + half_width


def first_known(preferred: pd.Series, fallback: pd.Series) -> object:
    """The first non-null value of `preferred`, else of `fallback`, else NA."""
    for series in (preferred, fallback):
        known = series.dropna()
        if len(known):
            return known.iloc[0]
    return pd.NA


def summarize_group(keys: tuple, group: pd.DataFrame) -> dict[str, object]:
    """One summary row for the runs of one model under one (dataset, protocol, settings)."""
    ok = group[group["status"] == "ok"]
    accuracies = ok["test_accuracy"].dropna().to_numpy(dtype=float)
    mean, std, ci_low, ci_high = mean_std_ci(accuracies)
    row: dict[str, object] = dict(zip(SUMMARY_KEYS, keys))
    benchmarks = group["benchmark"].dropna().unique() if "benchmark" in group else []
    row["benchmarks"] = ", ".join(sorted(map(str, benchmarks)))
    row["ok_runs"] = len(ok)
    row["failed_runs"] = len(group) - len(ok)
    for name in MODEL_PROPERTIES:
        row[name] = first_known(ok[name], group[name]) if name in group else pd.NA
    row.update(test_accuracy_mean=mean, test_accuracy_std=std,
               test_accuracy_min=float(accuracies.min()) if len(accuracies) else math.nan,
               test_accuracy_max=float(accuracies.max()) if len(accuracies) else math.nan,
               test_accuracy_ci_low=ci_low, test_accuracy_ci_high=ci_high)
    for source, target in MEAN_COLUMNS.items():
        row[target] = mean_or_nan(ok[source]) if source in ok else math.nan
    if "vectorized" in ok and ok["vectorized"].fillna(False).astype(bool).nunique() > 1:
        # A member's seconds are its share of a group's device time, a lone run's its own wall
        # time: their mean would describe neither, so the speed columns stay empty.
        row["train_seconds_mean"] = row["images_per_second_mean"] = math.nan
    return row


def mean_or_nan(values: pd.Series) -> float:
    """Mean of the known values as a float; NaN when there are none."""
    known = pd.to_numeric(values, errors="coerce").dropna()
    return float(known.mean()) if len(known) else math.nan


def as_nullable_ints(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Cast columns to pandas' nullable Int64, so missing values (train_limit, failed runs) stay NA."""
    for name in names:
        frame[name] = pd.to_numeric(frame[name]).astype("Int64")
    return frame


def add_study_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """Add the study's params and accuracy beside MNIST rows of its models, and the within-2-std flag."""
    is_study = (summary["dataset"] == STUDY_DATASET) & summary["model"].isin(list(STUDY))
    study_params = summary["model"].map(lambda model: STUDY.get(model, (pd.NA, math.nan))[0])
    study_accuracy = summary["model"].map(lambda model: STUDY.get(model, (pd.NA, math.nan))[1])
    summary["study_params_trainable"] = study_params.where(is_study, pd.NA).astype("Int64")
    summary["study_test_accuracy"] = study_accuracy.where(is_study, math.nan).astype(float)
    distance = (summary["study_test_accuracy"] - summary["test_accuracy_mean"]).abs()
    within = (distance <= 2 * summary["test_accuracy_std"]).astype("boolean")
    decidable = is_study & summary["test_accuracy_std"].notna()
    summary["study_within_2std"] = within.where(decidable, pd.NA).astype("boolean")
    return summary


def duplicate_run_ids(runs: pd.DataFrame) -> list[str]:
    """Run ids that occur in more than one row (e.g. the same spec in two benchmarks, or a retried failure)."""
    counts = runs["run_id"].value_counts()
    return sorted(counts[counts > 1].index.astype(str))


def with_spec_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with learning_rate, lr_schedule and augment_shift columns: the runs table's own
    (the store fills them for every record), else read from spec_json (defaults where a spec
    predates a field), so runs trained differently are not pooled."""
    texts = runs["spec_json"] if "spec_json" in runs else pd.Series([None] * len(runs), index=runs.index)
    specs = [json.loads(text) if isinstance(text, str) and text else {} for text in texts]
    columns = {}
    for name, default in SPEC_DEFAULTS.items():
        given = runs[name] if name in runs else pd.Series([None] * len(runs), index=runs.index)
        columns[name] = pd.Series([value if pd.notna(value) else spec.get(name, default)
                                   for value, spec in zip(given, specs)], index=runs.index, dtype=object)
    return runs.assign(**columns)


def mixed_recipes_warning(runs: pd.DataFrame) -> str | None:
    """One line when a model's runs in this table were trained with more than one recipe, so that
    grouping by model alone would average them together (the summary never does); None otherwise."""
    require_columns(runs, ["model", *(key for key in COMPARISON_KEYS if key not in SPEC_DEFAULTS)])
    runs = with_spec_settings(runs)
    recipes = runs[["model", *COMPARISON_KEYS]].drop_duplicates()
    counts = recipes.groupby("model", sort=False).size()
    mixed = sorted(counts[counts > 1].index, key=model_sort_key)
    if not mixed:
        return None
    differing = [key for key in COMPARISON_KEYS if recipes[recipes["model"].isin(mixed)][key].nunique(dropna=False) > 1]
    return (f"these runs hold several recipes of {', '.join(mixed)} (differing in {', '.join(differing)}): "
            f"group by model and {', '.join(COMPARISON_KEYS)}, not by model alone")


def user_model_version_warnings(runs: pd.DataFrame) -> list[str]:
    """A line per summary row that pools runs of several versions of a user model's source (the
    same function name in an edited file): their run ids differ, their model name does not."""
    texts = runs["spec_json"] if "spec_json" in runs else pd.Series([None] * len(runs), index=runs.index)
    sources = [json.loads(text).get("model_source") if isinstance(text, str) and text else None for text in texts]
    ok = distinct_runs(with_spec_settings(runs.assign(_source=sources)))
    ok = ok[ok["status"] == "ok"]
    lines = []
    for keys, group in ok.groupby(SUMMARY_KEYS, dropna=False, sort=False):
        versions = group["_source"].dropna().nunique()
        if versions > 1:
            row = dict(zip(SUMMARY_KEYS, keys))
            lines.append(f"{row['model']} ({describe_settings(pd.Series(row))}): its {len(group)} ok runs come from "
                         f"{versions} versions of its source file, averaged in one row")
    return lines


def distinct_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run_id, an ok record preferred: the same seeded run must not be counted twice."""
    if "run_id" not in runs.columns:
        return runs
    ok_first = runs.assign(_failed=runs["status"] != "ok").sort_values("_failed", kind="stable")
    return ok_first.drop_duplicates("run_id").drop(columns="_failed").sort_index()


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, protocol, model, settings): counts, params, accuracy stats.

    Failed runs are counted in `failed_runs`, never averaged. A run_id that appears in several rows
    counts once (its ok record if any). Accuracies are fractions (0..1); the CI is the two-sided
    95% t interval of the mean, NaN with fewer than two ok runs, kept as computed: with few runs
    it can reach past [0, 1] (the report shows it clipped, with a note).
    """
    require_columns(runs, REQUIRED_COLUMNS)
    groups = distinct_runs(with_spec_settings(runs)).groupby(SUMMARY_KEYS, dropna=False, sort=False)
    rows = [summarize_group(keys, group) for keys, group in groups]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS[:-3])
    summary = as_nullable_ints(summary, [*INTEGER_SETTINGS, "ok_runs", "failed_runs", *MODEL_PROPERTIES])
    summary = add_study_columns(summary)
    order = summary["model"].map(model_sort_key)
    summary = summary.assign(_order=order).sort_values(
        ["dataset", "protocol", *SETTINGS_KEYS, "_order"], na_position="first")
    return summary.drop(columns="_order").reset_index(drop=True)[SUMMARY_COLUMNS]


def study_sentences(summary: pd.DataFrame) -> list[str]:
    """A sentence for each study model whose study accuracy lies outside our mean +- 2 std, or whose params differ."""
    sentences = []
    for row in summary[summary["study_params_trainable"].notna()].itertuples(index=False):
        label = f"{row.model} ({describe_settings(row)})"
        if pd.notna(row.params_trainable) and row.params_trainable != row.study_params_trainable:
            sentences.append(f"{label}: our model has {row.params_trainable:,} trainable parameters, "
                             f"the study's {row.study_params_trainable:,}.")
        if pd.notna(row.study_within_2std) and not row.study_within_2std:
            sentences.append(f"{label}: {describe_study_gap(row)}")
    return sentences


def describe_study_gap(row: object) -> str:
    """'the study's 96.66% lies 4.1 std below our mean 97.80% ± 0.31 (n=5)' for one summary row."""
    study, mean, std = row.study_test_accuracy, row.test_accuracy_mean, row.test_accuracy_std
    direction = "below" if study < mean else "above"
    if std == 0:
        return f"the study's {study:.2%} lies {direction} our {mean:.2%}, which all {row.ok_runs} runs gave exactly."
    return (f"the study's {study:.2%} lies {abs(study - mean) / std:.1f} std {direction} our mean "
            f"{mean:.2%} ± {std * 100:.2f} (n={row.ok_runs}).")


def describe_settings(row: object) -> str:
    """'mnist, holdout, ≤10 epochs, batch 32, full training set' for a summary or comparison row."""
    limit = "full training set" if pd.isna(row.train_limit) else f"first {int(row.train_limit):,} training images"
    epochs = "?" if pd.isna(row.max_epochs) else int(row.max_epochs)
    batch = "?" if pd.isna(row.batch_size) else int(row.batch_size)
    text = f"{row.dataset}, {row.protocol}, ≤{epochs} epochs, batch {batch}, {limit}"
    if pd.notna(row.patience):
        text += f", patience {int(row.patience)}"
    if row.learning_rate != SPEC_DEFAULTS["learning_rate"] or row.lr_schedule != SPEC_DEFAULTS["lr_schedule"]:
        text += f", lr {row.learning_rate:g}" + (f" {row.lr_schedule}" if row.lr_schedule != "constant" else "")
    if row.augment_shift:
        text += f", {int(row.augment_shift)}-px shifts"
    return text


def welch_difference(mean_model: float, std_model: float, n_model: int,
                     mean_reference: float, std_reference: float, n_reference: int,
                     ) -> tuple[float, float, float, float]:
    """Difference of means (model - reference), its 95% Welch CI, and the Welch-Satterthwaite df."""
    difference = mean_model - mean_reference
    variance_model, variance_reference = std_model**2 / n_model, std_reference**2 / n_reference
    standard_error = math.sqrt(variance_model + variance_reference)
    if standard_error == 0:  # every run of both models gave the same accuracy: the CI is a point
        return difference, difference, difference, float(n_model + n_reference - 2)
    df = standard_error**4 / (variance_model**2 / (n_model - 1) + variance_reference**2 / (n_reference - 1))
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * standard_error
    return difference, difference - half_width, difference + half_width, df


def seeds_needed(difference: float, std_model: float, std_reference: float, margin: float) -> int | None:
    """Seeds per model (same for both) that would make the Welch CI decisive, if the observed means and stds held.

    The CI decides once its half-width is below max(margin - |difference|, |difference|): below the
    first it fits inside (-margin, +margin), below the second it excludes 0. None if over 10,000.
    """
    target = max(margin - abs(difference), abs(difference))
    variance_sum = std_model**2 + std_reference**2
    if variance_sum == 0:
        return MIN_RUNS_FOR_VERDICT
    seeds = np.arange(MIN_RUNS_FOR_VERDICT, MAX_SEEDS_ESTIMATE + 1)
    df = variance_sum**2 * (seeds - 1) / (std_model**4 + std_reference**4)
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * np.sqrt(variance_sum / seeds)
    enough = np.flatnonzero(half_width < target)
    return int(seeds[enough[0]]) if len(enough) else None


def verdict(ci_low: float, ci_high: float, margin: float) -> str:
    """Equivalent if the CI lies inside (-margin, +margin); else lower / higher if it excludes 0; else inconclusive."""
    if -margin < ci_low and ci_high < margin:
        return EQUIVALENT
    if ci_high < 0:
        return "lower"
    if ci_low > 0:
        return "higher"
    return "inconclusive"


def compare_pair(model_row: pd.Series, reference_row: pd.Series, margin: float) -> dict[str, object]:
    """One comparison row: a model against the reference of its group."""
    n_model, n_reference = int(model_row["ok_runs"]), int(reference_row["ok_runs"])
    row: dict[str, object] = {key: model_row[key] for key in COMPARISON_KEYS}
    row.update(model=model_row["model"], reference=REFERENCE_MODEL, n_model=n_model, n_reference=n_reference,
               mean_model=model_row["test_accuracy_mean"], mean_reference=reference_row["test_accuracy_mean"],
               std_model=model_row["test_accuracy_std"], std_reference=reference_row["test_accuracy_std"],
               margin=margin, difference=math.nan, ci_low=math.nan, ci_high=math.nan, welch_df=math.nan,
               seeds_needed_per_model=pd.NA)
    if min(n_model, n_reference) < MIN_RUNS_FOR_VERDICT:
        row["verdict"] = f"inconclusive: needs at least {MIN_RUNS_FOR_VERDICT} ok runs per model"
        return row
    difference, ci_low, ci_high, df = welch_difference(
        row["mean_model"], row["std_model"], n_model, row["mean_reference"], row["std_reference"], n_reference)
    row.update(difference=difference, ci_low=ci_low, ci_high=ci_high, welch_df=df,
               verdict=verdict(ci_low, ci_high, margin))
    if row["verdict"] == "inconclusive":
        needed = seeds_needed(difference, row["std_model"], row["std_reference"], margin)
        row["seeds_needed_per_model"] = needed if needed is not None else pd.NA
        amount = f"about {needed}" if needed is not None else f"more than {MAX_SEEDS_ESTIMATE:,}"
        row["verdict"] = (f"inconclusive: {amount} seeds per model would be needed "
                          f"(now {n_model} vs {n_reference})")
    return row


def check_margin(margin: float) -> None:
    """Refuse margins that are not a small positive fraction (0.005 = 0.5 percentage points)."""
    if not 0 < margin <= 0.1:
        raise ValueError(f"margin is a fraction of 1 (0.005 = 0.5 percentage points) and must lie in (0, 0.1]; "
                         f"got {margin}")


def compare_to_baseline(runs: pd.DataFrame, margin: float = 0.005) -> pd.DataFrame:
    """Each non-baseline model against the baseline of its (dataset, protocol, settings) group.

    difference = mean test accuracy (model - baseline), as a fraction, with its 95% Welch CI
    (Welch-Satterthwaite df). Verdict, checked in this order:
    - fewer than 2 ok runs of either model: "inconclusive: needs at least 2 ok runs per model";
    - CI strictly inside (-margin, +margin): "same accuracy (equivalent within the margin)";
    - CI upper end < 0: "lower"; CI lower end > 0: "higher";
    - otherwise "inconclusive: about N seeds per model would be needed (now a vs b)", where N is the
      smallest equal number of seeds per model whose CI half-width, with the observed stds and
      difference unchanged, is below max(margin - |difference|, |difference|) (see `seeds_needed`).
    Groups without a baseline give no rows.
    """
    check_margin(margin)
    summary = summarize(runs)
    rows = []
    for _, group in summary.groupby(COMPARISON_KEYS, dropna=False, sort=False):
        references = group[group["model"] == REFERENCE_MODEL]
        if references.empty:
            continue
        for _, model_row in group[group["model"] != REFERENCE_MODEL].iterrows():
            rows.append(compare_pair(model_row, references.iloc[0], margin))
    comparison = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return as_nullable_ints(comparison, [*INTEGER_SETTINGS, "n_model", "n_reference", "seeds_needed_per_model"])


def describe_setting(name: str, value: object) -> str:
    """One setting in words: 'lr 0.005', '2-px shifts', 'full training set'."""
    if pd.isna(value):
        return "full training set" if name == "train_limit" else f"{name.replace('_', ' ')} unrecorded"
    return SETTING_PHRASES[name].format(int(value) if name in INTEGER_SETTINGS else value)


def describe_recipe(row: object, names: Iterable[str]) -> str:
    """'lr 0.005, 2-px shifts': the named settings of a summary row, in SETTINGS_KEYS order."""
    return ", ".join(describe_setting(name, getattr(row, name)) for name in names)


def varying_settings(rows: pd.DataFrame) -> list[str]:
    """The SETTINGS_KEYS that take more than one value (a missing one counts as a value) among these rows."""
    return [name for name in SETTINGS_KEYS if rows[name].nunique(dropna=False) > 1]


def with_recipe_labels(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of each (dataset, protocol) trained with more than one recipe, with a `recipe`
    column naming only the settings that differ there ('lr 0.005, 2-px shifts')."""
    labelled = []
    for _, rows in summary.groupby(["dataset", "protocol"], dropna=False, sort=False):
        varying = varying_settings(rows)
        if varying:
            labels = [describe_recipe(row, varying) for row in rows.itertuples(index=False)]
            labelled.append(rows.assign(recipe=labels))
    return pd.concat(labelled, ignore_index=True) if labelled else summary.iloc[0:0].assign(recipe=[])


def recipe_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per recipe (rows) and model (columns) of each (dataset, protocol) trained with several recipes.

    Index: dataset, protocol, recipe (the settings that vary within its (dataset, protocol)), in the
    summary's settings order. Columns: (statistic, model) for the statistics ok_runs, test_accuracy_mean,
    test_accuracy_std and val_accuracy_mean, models in study order; so `table["test_accuracy_mean"]` is
    the recipes x models table of means. NA where a model was not trained with a recipe. Empty when
    every (dataset, protocol) has a single recipe.
    """
    labelled = with_recipe_labels(summarize(runs))
    models = sorted(labelled["model"].unique(), key=model_sort_key)
    columns = pd.MultiIndex.from_product([RECIPE_STATISTICS, models], names=[None, "model"])
    recipes = pd.MultiIndex.from_frame(labelled[RECIPE_KEYS].drop_duplicates())
    if labelled.empty:
        return pd.DataFrame(index=recipes, columns=columns)
    table = labelled.set_index([*RECIPE_KEYS, "model"])[RECIPE_STATISTICS].unstack("model")
    return table.reindex(index=recipes, columns=columns)


def choose_recipe(candidates: pd.DataFrame) -> dict[str, object]:
    """One model's recipes in one (dataset, protocol) -> the one with the highest mean validation accuracy.

    Test accuracy is copied for the report, never compared. A tie goes to the first recipe in settings order.
    """
    first = candidates.iloc[0]
    row: dict[str, object] = {name: math.nan if name in BEST_RECIPE_FLOATS else pd.NA for name in BEST_RECIPE_COLUMNS}
    row.update(dataset=first["dataset"], protocol=first["protocol"], model=first["model"], recipes=len(candidates))
    if first["protocol"] not in CHOOSING_PROTOCOLS:
        row["reason"] = NO_CHOICE_REASONS.get(
            first["protocol"], f"the {first['protocol']} protocol has no validation set apart from the test set")
        return row
    known = candidates[candidates["val_accuracy_mean"].notna()]
    if known.empty:
        row["reason"] = "no recipe has an ok run with a validation accuracy"
        return row
    ranked = known.sort_values("val_accuracy_mean", ascending=False, kind="stable")
    best = ranked.iloc[0]
    row.update({name: best[name] for name in ["recipe", *SETTINGS_KEYS, "val_accuracy_mean", "ok_runs",
                                              "test_accuracy_mean", "test_accuracy_std"]})
    if len(ranked) > 1:
        row.update(runner_up=ranked.iloc[1]["recipe"],
                   val_accuracy_lead=best["val_accuracy_mean"] - ranked.iloc[1]["val_accuracy_mean"])
    return row


def best_recipes(runs: pd.DataFrame) -> pd.DataFrame:
    """For each model trained with several recipes in a (dataset, protocol): the recipe with the highest
    mean validation accuracy over its ok runs, chosen without looking at the test set.

    Only holdout chooses (its validation set is the last 10,000 training images); under study the row
    has no recipe and `reason` says why. The chosen recipe's test accuracy (mean, std, ok_runs) is
    reported beside it; `runner_up` and `val_accuracy_lead` (a fraction) say how close the next recipe came.
    """
    labelled = with_recipe_labels(summarize(runs))
    by_model = labelled.groupby(["dataset", "protocol", "model"], sort=False)
    rows = [choose_recipe(candidates) for _, candidates in by_model if len(candidates) > 1]
    best = pd.DataFrame(rows, columns=BEST_RECIPE_COLUMNS)
    best = as_nullable_ints(best, [*INTEGER_SETTINGS, "recipes", "ok_runs"])
    order = best["model"].map(model_sort_key)
    best = best.assign(_order=order).sort_values(["dataset", "protocol", "_order"], kind="stable")
    return best.drop(columns="_order").reset_index(drop=True)
