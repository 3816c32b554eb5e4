"""Tests for reducecnn.aggregate: hand-checked statistics on small hand-made runs tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from reducecnn.aggregate import (
    EQUIVALENT,
    best_recipes,
    compare_to_baseline,
    describe_settings,
    mixed_recipes_warning,
    recipe_table,
    study_sentences,
    summarize,
    user_model_version_warnings,
)
from runsfactory import GRID, grid_runs, make_runs

def seeds(model: str, accuracies: list[float], status: str = "ok") -> list[tuple]:
    """One row tuple per accuracy, seeds 0, 1, 2, ..."""
    return [(model, seed, accuracy, status) for seed, accuracy in enumerate(accuracies)]


BASELINE = seeds("baseline", [0.984, 0.986, 0.988])


def row_of(summary: pd.DataFrame, model: str) -> pd.Series:
    """The single summary row of one model."""
    rows = summary[summary["model"] == model]
    assert len(rows) == 1
    return rows.iloc[0]


def test_mean_std_and_t_interval():
    baseline = row_of(summarize(make_runs(BASELINE)), "baseline")
    # mean 0.986; std = sqrt((0.002² + 0 + 0.002²) / 2) = 0.002;
    # half-width = t.ppf(0.975, 2) * 0.002 / sqrt(3) = 4.302653 * 0.0011547 = 0.0049683
    assert baseline["test_accuracy_mean"] == pytest.approx(0.986)
    assert baseline["test_accuracy_std"] == pytest.approx(0.002)
    assert baseline["test_accuracy_ci_low"] == pytest.approx(0.986 - 0.0049683, abs=1e-7)
    assert baseline["test_accuracy_ci_high"] == pytest.approx(0.986 + 0.0049683, abs=1e-7)
    assert (baseline["test_accuracy_min"], baseline["test_accuracy_max"]) == pytest.approx((0.984, 0.988))


def test_failed_runs_are_counted_not_averaged():
    runs = make_runs(BASELINE + [("baseline", 7, 0.10, "failed")])
    baseline = row_of(summarize(runs), "baseline")
    assert (baseline["ok_runs"], baseline["failed_runs"]) == (3, 1)
    assert baseline["test_accuracy_mean"] == pytest.approx(0.986)
    assert baseline["train_seconds_mean"] == pytest.approx(120.0)


def test_a_run_recorded_twice_counts_once():
    runs = make_runs(BASELINE + [("baseline", 0, 0.0, "failed")])  # seed 0 again: a retried failure
    baseline = row_of(summarize(pd.concat([runs, make_runs(BASELINE[:1])])), "baseline")
    assert (baseline["ok_runs"], baseline["failed_runs"]) == (3, 0)
    assert baseline["test_accuracy_mean"] == pytest.approx(0.986)


def test_single_run_has_nan_std_and_ci():
    approach1 = row_of(summarize(make_runs(BASELINE + seeds("approach1", [0.975]))), "approach1")
    assert approach1["test_accuracy_mean"] == pytest.approx(0.975)
    assert math.isnan(approach1["test_accuracy_std"])
    assert math.isnan(approach1["test_accuracy_ci_low"])
    assert pd.isna(approach1["study_within_2std"])


def test_all_failed_model_keeps_its_counts_and_params():
    approach2 = row_of(summarize(make_runs(BASELINE + seeds("approach2", [0.0, 0.0], "failed"))), "approach2")
    assert (approach2["ok_runs"], approach2["failed_runs"]) == (0, 2)
    assert approach2["params_trainable"] == 3_130
    assert math.isnan(approach2["test_accuracy_mean"])


def test_two_protocols_are_never_pooled():
    runs = pd.concat([make_runs(BASELINE, protocol="holdout"),
                      make_runs(seeds("baseline", [0.95, 0.96]), protocol="study")])
    summary = summarize(runs).set_index("protocol")
    assert summary.loc["holdout", "test_accuracy_mean"] == pytest.approx(0.986)
    assert summary.loc["study", "test_accuracy_mean"] == pytest.approx(0.955)


def test_different_train_limits_are_never_pooled():
    limited = make_runs(seeds("baseline", [0.90, 0.91]))
    limited = limited.assign(train_limit=pd.array([2_000, 2_000], "Int64"), run_id=limited["run_id"] + "-limit")
    summary = summarize(pd.concat([make_runs(BASELINE), limited]))
    assert sorted(summary["ok_runs"]) == [2, 3]


def test_runs_trained_with_other_learning_rates_or_shifts_are_never_pooled():
    recipes = ['{"learning_rate": 0.005, "augment_shift": 2}', '{"learning_rate": 0.01, "augment_shift": 2}',
               '{"learning_rate": 0.01, "augment_shift": 1}']
    other = []
    for number, recipe in enumerate(recipes):
        runs = make_runs(seeds("small2k", [0.990, 0.991]))
        other.append(runs.assign(spec_json=recipe, run_id=runs["run_id"] + f"-recipe{number}"))
    summary = summarize(pd.concat([make_runs(seeds("small2k", [0.98, 0.981, 0.982])), *other]))
    assert sorted(summary["ok_runs"]) == [2, 2, 2, 3]
    settings = sorted(describe_settings(row) for row in summary.itertuples())
    assert settings[-1] == "mnist, holdout, ≤10 epochs, batch 32, full training set, patience 1, lr 0.01, 2-px shifts"


def test_study_within_two_std_flag():
    # approach1: study 0.9793, ours mean 0.980 std 0.001 -> 0.7 std away: within.
    # approach2: study 0.9666, ours mean 0.978 std 0.001 -> 11.4 std away: not within.
    runs = make_runs(seeds("approach1", [0.979, 0.980, 0.981]) + seeds("approach2", [0.977, 0.978, 0.979]))
    summary = summarize(runs)
    assert row_of(summary, "approach1")["study_within_2std"] == True  # noqa: E712 (pandas boolean)
    assert row_of(summary, "approach2")["study_within_2std"] == False  # noqa: E712
    assert row_of(summary, "approach2")["study_params_trainable"] == 3_130


def test_study_columns_only_for_mnist():
    summary = summarize(make_runs(BASELINE, dataset="fashion_mnist"))
    assert pd.isna(row_of(summary, "baseline")["study_test_accuracy"])


def test_study_sentence_for_a_study_accuracy_outside_two_std():
    sentences = study_sentences(summarize(make_runs(seeds("approach2", [0.977, 0.978, 0.979]))))
    assert sentences == ["approach2 (mnist, holdout, ≤10 epochs, batch 32, full training set, patience 1): "
                         "the study's 96.66% lies 11.4 std below our mean 97.80% ± 0.10 (n=3)."]


def test_welch_difference_and_interval():
    runs = make_runs(BASELINE + seeds("approach1", [0.970, 0.975, 0.980, 0.985, 0.990]))
    comparison = compare_to_baseline(runs).iloc[0]
    # s1 = 0.0079057 (n=5), s2 = 0.002 (n=3); se = sqrt(1.25e-5 + 1.3333e-6) = 0.0037193;
    # df = (1.38333e-5)² / ((1.25e-5)²/4 + (1.3333e-6)²/2) = 4.7898;
    # half-width = t.ppf(0.975, 4.7898) * se = 2.604877 * 0.0037193 = 0.0096884
    assert comparison["difference"] == pytest.approx(-0.006)
    assert comparison["welch_df"] == pytest.approx(4.7898, abs=1e-4)
    assert (comparison["ci_low"], comparison["ci_high"]) == pytest.approx((-0.0156884, 0.0036884), abs=1e-7)


def test_welch_interval_agrees_with_scipy():
    model, baseline = [0.970, 0.975, 0.980, 0.985, 0.990], [0.984, 0.986, 0.988]
    comparison = compare_to_baseline(make_runs(BASELINE + seeds("approach1", model))).iloc[0]
    expected = stats.ttest_ind(model, baseline, equal_var=False).confidence_interval(0.95)
    assert (comparison["ci_low"], comparison["ci_high"]) == pytest.approx((expected.low, expected.high))


@pytest.mark.parametrize("accuracies, expected", [
    ([0.9855, 0.9860, 0.9865], EQUIVALENT),   # diff 0, CI (-0.0046, 0.0046): inside ±0.005
    ([0.970, 0.971, 0.972], "lower"),         # diff -0.015, CI (-0.0192, -0.0108)
    ([0.995, 0.996, 0.997], "higher"),        # diff +0.010, CI (0.0058, 0.0142)
])
def test_decisive_verdicts(accuracies, expected):
    comparison = compare_to_baseline(make_runs(BASELINE + seeds("approach1", accuracies)), margin=0.005)
    assert comparison.iloc[0]["verdict"] == expected


def test_inconclusive_verdict_estimates_seeds_needed():
    # diff -0.006 with CI (-0.0157, 0.0037): neither inside ±0.005 nor clear of 0. Deciding needs a
    # half-width below max(0.005 - 0.006, 0.006) = 0.006; with equal n per model that is
    # t(df(n)) * sqrt((0.0079057² + 0.002²) / n) < 0.006, first true at n = 10 (0.00573; n = 9 gives 0.00615).
    runs = make_runs(BASELINE + seeds("approach1", [0.970, 0.975, 0.980, 0.985, 0.990]))
    comparison = compare_to_baseline(runs, margin=0.005).iloc[0]
    assert comparison["seeds_needed_per_model"] == 10
    assert comparison["verdict"] == "inconclusive: about 10 seeds per model would be needed (now 5 vs 3)"


def test_single_run_model_gets_no_verdict():
    comparison = compare_to_baseline(make_runs(BASELINE + seeds("approach1", [0.98])))
    assert comparison.iloc[0]["verdict"] == "inconclusive: needs at least 2 ok runs per model"


def test_group_without_baseline_gives_no_comparison():
    runs = pd.concat([make_runs(BASELINE, protocol="holdout"),
                      make_runs(seeds("approach1", [0.97, 0.98]), protocol="study")])
    assert compare_to_baseline(runs)["model"].tolist() == []


def test_margin_given_in_points_is_refused():
    with pytest.raises(ValueError, match="0.5 percentage points"):
        compare_to_baseline(make_runs(BASELINE), margin=0.5)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="test_accuracy"):
        summarize(make_runs(BASELINE).drop(columns="test_accuracy"))


def test_models_are_listed_in_the_study_order_then_by_name():
    runs = make_runs(seeds("zeta", [0.9]) + seeds("approach2", [0.97]) + seeds("alpha", [0.9]) + BASELINE)
    assert summarize(runs)["model"].tolist() == ["baseline", "approach2", "alpha", "zeta"]


def test_summary_averages_validation_accuracy_of_ok_runs_only():
    baseline = row_of(summarize(make_runs(BASELINE + [("baseline", 7, 0.10, "failed")])), "baseline")
    assert baseline["val_accuracy_mean"] == pytest.approx(0.986)


def test_recipe_table_has_a_row_per_recipe_and_a_column_per_model():
    table = recipe_table(grid_runs())
    means = table["test_accuracy_mean"]
    assert means.index.get_level_values("recipe").tolist() == [
        "lr 0.005, 0-px shifts", "lr 0.005, 2-px shifts", "lr 0.01, 0-px shifts", "lr 0.01, 2-px shifts"]
    assert means.columns.tolist() == ["baseline", "approach1"]
    expected = [test for models in GRID.values() for _, test in models.values()]
    assert means.to_numpy().ravel() == pytest.approx(expected)
    assert (table["ok_runs"] == 2).all().all()


def test_recipe_table_names_only_the_settings_that_vary():
    runs = grid_runs()
    one_rate = runs[runs["spec_json"].str.contains('"learning_rate": 0.01,')]
    assert recipe_table(one_rate).index.get_level_values("recipe").tolist() == ["0-px shifts", "2-px shifts"]


def test_a_single_recipe_gives_no_recipe_table_and_no_choice():
    runs = make_runs(BASELINE + seeds("approach1", [0.97, 0.98]))
    assert recipe_table(runs).empty and best_recipes(runs).empty


def test_best_recipe_is_chosen_by_validation_accuracy_not_test_accuracy():
    best = best_recipes(grid_runs()).set_index("model")
    assert best.loc["baseline", "recipe"] == "lr 0.005, 2-px shifts"   # lr 0.005 without shifts tests higher
    assert best.loc["approach1", "recipe"] == "lr 0.01, 0-px shifts"   # lr 0.01 with 2-px shifts tests higher
    chosen = best.loc["baseline", ["val_accuracy_mean", "test_accuracy_mean", "ok_runs"]].tolist()
    assert chosen == pytest.approx([0.987, 0.985, 2])


def test_best_recipe_names_the_runner_up_and_its_distance():
    baseline = best_recipes(grid_runs()).set_index("model").loc["baseline"]
    assert (baseline["recipes"], baseline["runner_up"]) == (4, "lr 0.01, 0-px shifts")
    assert baseline["val_accuracy_lead"] == pytest.approx(0.003)


def test_study_protocol_chooses_no_recipe():
    best = best_recipes(grid_runs("study"))
    assert best["model"].tolist() == ["baseline", "approach1"]
    assert best["recipe"].isna().all()
    assert best["reason"].str.contains("the validation set is the test set").all()


def test_a_model_trained_with_one_recipe_needs_no_choice():
    extra = make_runs(seeds("zeta", [0.95, 0.96])).assign(spec_json='{"learning_rate": 0.01, "augment_shift": 2}')
    runs = pd.concat([grid_runs(), extra], ignore_index=True)
    assert best_recipes(runs)["model"].tolist() == ["baseline", "approach1"]
    assert recipe_table(runs)["ok_runs"]["zeta"].fillna(0).tolist() == [0, 0, 0, 2]   # NA: not trained


@pytest.mark.parametrize("column, other", [("max_epochs", 1), ("batch_size", 64), ("patience", 5),
                                           ("lr_schedule", "cosine")])
def test_runs_of_another_recipe_column_are_never_pooled(column, other):
    changed = make_runs(seeds("approach1", [0.11, 0.12]))
    changed = changed.assign(**{column: other, "run_id": changed["run_id"] + "-other"})
    summary = summarize(pd.concat([make_runs(seeds("approach1", [0.97, 0.98, 0.99])), changed]))
    assert sorted(summary["ok_runs"]) == [2, 3]


def test_a_table_holding_two_recipes_of_a_model_says_so():
    smoke = make_runs(seeds("approach1", [0.11, 0.12]))
    smoke = smoke.assign(max_epochs=1, train_limit=pd.array([2_000, 2_000], "Int64"), run_id=smoke["run_id"] + "-s")
    warning = mixed_recipes_warning(pd.concat([make_runs(BASELINE + seeds("approach1", [0.97, 0.98])), smoke]))
    assert warning.startswith("these runs hold several recipes of approach1 (differing in max_epochs, train_limit): "
                              "group by model and dataset, protocol, max_epochs,")


def test_a_table_of_one_recipe_per_model_gives_no_pooling_warning():
    assert mixed_recipes_warning(make_runs(BASELINE + seeds("approach1", [0.97, 0.98]))) is None


def test_runs_of_two_versions_of_a_user_model_are_named():
    runs = make_runs(seeds("tiny", [0.95, 0.96, 0.97]))
    runs = runs.assign(spec_json=['{"model_source": "v1"}', '{"model_source": "v1"}', '{"model_source": "v2"}'])
    [line] = user_model_version_warnings(runs)
    assert line.startswith("tiny (mnist, holdout, ") and line.endswith(
        "its 3 ok runs come from 2 versions of its source file, averaged in one row")


def test_speed_is_not_averaged_over_grouped_and_single_runs():
    runs = make_runs([("approach1", seed, 0.97, "ok") for seed in range(3)])
    runs["vectorized"] = [True, True, False]
    row = summarize(runs).iloc[0]
    assert math.isnan(row["train_seconds_mean"]) and math.isnan(row["images_per_second_mean"])
    runs["vectorized"] = True
    assert summarize(runs).iloc[0]["train_seconds_mean"] == 120.0
