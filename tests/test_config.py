from __future__ import annotations

import pytest
from pydantic import ValidationError

from reducecnn.cli import benchmark_values, build_parser
from reducecnn.config import (
    BenchmarkConfig,
    RunSpec,
    UserError,
    make_benchmark_config,
    read_config_file,
    recipe_change_warning,
)


def test_same_spec_same_run_id():
    assert RunSpec(model="baseline", seed=1).run_id == RunSpec(model="baseline", seed=1).run_id


def test_result_changing_knob_changes_run_id():
    assert RunSpec(model="baseline", seed=1).run_id != RunSpec(model="baseline", seed=1, epochs=3).run_id


def test_run_id_starts_with_model_and_seed():
    assert RunSpec(model="approach2", seed=7).run_id.startswith("approach2-s7-")


@pytest.mark.parametrize("protocol, patience", [("holdout", 2), ("study", 1)])
def test_patience_defaults_per_protocol(protocol, patience):
    assert RunSpec(model="baseline", seed=0, protocol=protocol).patience == patience


def test_explicit_default_patience_gives_the_same_id():
    assert RunSpec(model="baseline", seed=0, patience=2).run_id == RunSpec(model="baseline", seed=0).run_id


@pytest.mark.parametrize("fields", [
    {"seed": -1}, {"epochs": 0}, {"batch_size": 0}, {"protocol": "holdon"}, {"colour": "red"},
    {"dataset": "cifar"}, {"learning_rate": 0}, {"train_limit": 0},
])
def test_invalid_spec_is_refused(fields):
    with pytest.raises(ValidationError):
        RunSpec(**({"model": "baseline", "seed": 0} | fields))


def test_spec_is_frozen():
    spec = RunSpec(model="baseline", seed=0)
    with pytest.raises(ValidationError):
        spec.seed = 1


def test_benchmark_expands_models_times_seeds():
    config = BenchmarkConfig(models=("baseline", "approach1"), seeds=(0, 1, 2), epochs=2)
    specs = config.specs()
    assert [(s.model, s.seed) for s in specs][:4] == [("baseline", 0), ("baseline", 1), ("baseline", 2), ("approach1", 0)]
    assert len(specs) == 6 and all(s.epochs == 2 for s in specs)


@pytest.mark.parametrize("gpus", [-1, 1.5])
def test_bad_gpu_fraction_is_refused(gpus):
    with pytest.raises(ValidationError):
        BenchmarkConfig(gpus_per_run=gpus)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "seeds: [0, 1\nmodels: x"), (".json", "{\"seeds\": [0,"), (".toml", "seeds = [0,"),
])
def test_malformed_config_file_is_a_user_error(tmp_path, suffix, text):
    path = tmp_path / f"bench{suffix}"
    path.write_text(text)
    with pytest.raises(UserError, match="malformed"):
        read_config_file(path)


def test_config_file_formats_agree(tmp_path):
    (tmp_path / "a.yaml").write_text("seeds: [0, 1]\nepochs: 3\n")
    (tmp_path / "a.json").write_text('{"seeds": [0, 1], "epochs": 3}')
    (tmp_path / "a.toml").write_text("seeds = [0, 1]\nepochs = 3\n")
    loaded = [read_config_file(tmp_path / name) for name in ("a.yaml", "a.json", "a.toml")]
    assert loaded[0] == loaded[1] == loaded[2] == {"seeds": [0, 1], "epochs": 3}


def test_run_ids_recorded_before_new_fields_stay_valid():
    # docs/results/mnist-study/runs/baseline-s0-5e4d6fe210.parquet was recorded before
    # lr_schedule and augment_shift existed; resume must still recognise it.
    assert RunSpec(model="baseline", seed=0, protocol="study").run_id == "baseline-s0-5e4d6fe210"


def test_new_fields_change_the_run_id_when_set():
    plain = RunSpec(model="baseline", seed=0)
    assert len({plain.run_id, RunSpec(model="baseline", seed=0, lr_schedule="cosine").run_id,
                RunSpec(model="baseline", seed=0, augment_shift=2).run_id}) == 3


def test_a_train_limit_at_or_above_the_split_is_the_unlimited_run():
    plain = RunSpec(model="approach1", seed=0)
    assert RunSpec(model="approach1", seed=0, train_limit=50_000).run_id == plain.run_id
    assert RunSpec(model="approach1", seed=0, train_limit=90_000).run_id == plain.run_id
    assert RunSpec(model="approach1", seed=0, train_limit=49_999).run_id != plain.run_id
    study = RunSpec(model="approach1", seed=0, protocol="study")
    assert RunSpec(model="approach1", seed=0, protocol="study", train_limit=50_000).run_id != study.run_id
    assert RunSpec(model="approach1", seed=0, protocol="study", train_limit=60_000).run_id == study.run_id


def test_seeds_stop_at_what_keras_accepts():
    with pytest.raises(ValidationError):
        RunSpec(model="approach1", seed=2**32)
    assert RunSpec(model="approach1", seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("text, seeds, models", [
    ("seeds: 3", (0, 1, 2), ("baseline", "approach1", "approach2")),          # as --seeds 3
    ("seeds: [0, 3, 7]", (0, 3, 7), ("baseline", "approach1", "approach2")),  # a list
    ("seeds: '0,3,7'", (0, 3, 7), ("baseline", "approach1", "approach2")),    # as --seed-list 0,3,7
    ("models: approach1", (0, 1, 2, 3, 4), ("approach1",)),                   # as --models approach1
    ("models: baseline,approach1", (0, 1, 2, 3, 4), ("baseline", "approach1")),
    ("models: [approach2, baseline]\nseeds: 2", (0, 1), ("approach2", "baseline")),
])
def test_a_config_file_means_what_the_flags_mean(tmp_path, text, seeds, models):
    path = tmp_path / "bench.yaml"
    path.write_text(text + "\n")
    config = make_benchmark_config(read_config_file(path))
    assert (config.seeds, config.models) == (seeds, models)


@pytest.mark.parametrize("values, message", [
    ({"seeds": 0}, "seeds: a number of seeds must lie between 1 and 100,000, got 0; e.g. seeds: 5"),
    ({"seeds": True}, "seeds: must be a number of seeds or a list of seeds; e.g. seeds: 5"),
    ({"models": 5}, "models: must be one value or a list of values; e.g. models: approach1"),
    ({"epochs": "ten"}, "epochs: must be a valid integer, unable to parse string as an integer; e.g. epochs: 10"),
    ({"sedes": 3}, "sedes: unknown field (did you mean seeds?); fields: name, models, seeds,"),
    ({"colour": 3}, "colour: unknown field (check the spelling); fields: name, models, seeds,"),
    ({"models": "nope"}, "models: unknown model 'nope'; known: approach1"),
])
def test_config_errors_are_ours_and_show_a_valid_example(values, message):
    with pytest.raises(UserError) as caught:
        make_benchmark_config(values)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_laptop_default_is_named_mnist_holdout():
    assert make_benchmark_config({"seeds": 3}).name == "mnist-holdout"


@pytest.mark.parametrize("fields, name", [
    ({"epochs": 1, "train_limit": 2_000}, "mnist-holdout-e1-n2000"),
    ({"dataset": "fashion_mnist"}, "fashion_mnist-holdout"),
    ({"protocol": "study"}, "mnist-study"),
    ({"batch_size": 64}, "mnist-holdout-b64"),
    ({"patience": 3}, "mnist-holdout-p3"),
    ({"learning_rate": "0.01,0.005", "lr_schedule": "cosine", "augment_shift": 2},
     "mnist-holdout-lr0.005_0.01-cosine-shift2"),
])
def test_without_a_name_each_recipe_gets_its_own_folder(fields, name):
    assert make_benchmark_config(fields).name == name


@pytest.mark.parametrize("fields", [{"patience": 2}, {"train_limit": 50_000}, {"learning_rate": 0.001}])
def test_a_recipe_that_trains_the_default_runs_keeps_the_default_name(fields):
    assert make_benchmark_config(fields).name == "mnist-holdout"


def test_a_large_grid_is_named_by_a_digest_of_its_recipe():
    name = make_benchmark_config({"learning_rate": [0.001 * step for step in range(1, 40)]}).name
    assert name.startswith("mnist-holdout-recipe-") and len(name) < 40


def test_a_folder_receiving_another_recipe_gets_one_warning_line():
    smoke = make_benchmark_config({"epochs": 1, "train_limit": 2_000, "name": "mnist-holdout"})
    warning = recipe_change_warning("results/mnist-holdout", smoke.model_dump_json(), make_benchmark_config({}))
    assert warning == ("results/mnist-holdout already holds runs of another recipe (epochs 1 -> 10, train_limit "
                       "2000 -> full); the report keeps the recipes apart, another --name would keep their folders "
                       "apart")


def test_more_seeds_of_the_same_recipe_give_no_warning():
    before = make_benchmark_config({"seeds": 2, "patience": 2}).model_dump_json()
    assert recipe_change_warning("results/mnist-holdout", before, make_benchmark_config({"seeds": 5})) is None


def test_an_unknown_model_suggests_the_closest_name():
    with pytest.raises(UserError, match=r"unknown model 'aproach1' \(did you mean approach1\?\); known:"):
        make_benchmark_config({"models": "aproach1"})


def test_an_unknown_config_file_field_names_the_file(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("lerning_rate: 0.01\n")
    with pytest.raises(UserError, match=rf"^config file {path}: unknown field 'lerning_rate' \(did you mean "
                                        r"learning_rate\?\); fields: name, models"):
        read_config_file(path)


def test_two_benchmarks_of_different_recipes_without_a_name_never_share_a_folder():
    flags = [["--seeds", "2"], ["--seeds", "2", "--epochs", "1", "--train-limit", "2000"]]
    names = [make_benchmark_config(benchmark_values(build_parser().parse_args(["benchmark", *given]))).name
             for given in flags]
    assert names == ["mnist-holdout", "mnist-holdout-e1-n2000"]
