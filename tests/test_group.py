"""Several runs as one computation (reducecnn.group): same results as separate runs, cheaper."""

from __future__ import annotations

import pytest

from reducecnn import group, train
from reducecnn.config import BenchmarkConfig, RunSpec


def _rows(result):
    return [(row["epoch"], row["loss"], row["accuracy"], row["val_loss"], row["val_accuracy"])
            for row in result.epochs]


def test_a_group_gives_each_member_exactly_its_separate_run(small_mnist):
    # approach1 seed 0 stops early (patience 0) while baseline goes on: members stop alone.
    specs = [RunSpec(model="approach1", seed=0, epochs=3, patience=0, train_limit=2_000),
             RunSpec(model="baseline", seed=0, epochs=3, patience=0, train_limit=2_000),
             RunSpec(model="approach2", seed=3, epochs=3, patience=0, train_limit=2_000)]
    together = group.run_group(specs, small_mnist, threads=1)
    alone = [train.run(spec, small_mnist, threads=1) for spec in specs]
    for mine, separate in zip(together, alone):
        assert _rows(mine) == _rows(separate)
        assert mine.record.test_accuracy == separate.record.test_accuracy
        assert mine.record.test_loss == separate.record.test_loss
        assert mine.record.epochs_run == separate.record.epochs_run
        assert (mine.record.group_size, separate.record.group_size) == (3, 1)
        assert mine.record.params_total == separate.record.params_total
    assert together[0].record.epochs_run < together[1].record.epochs_run  # approach1 stopped first


def test_cosine_schedule_and_augmentation_agree_to_rounding(small_mnist):
    spec = RunSpec(model="small", seed=1, epochs=2, patience=2, train_limit=2_000, lr_schedule="cosine",
                   augment_shift=2)
    [mine] = group.run_group([spec, spec.model_copy(update={"seed": 2})], small_mnist, threads=1)[:1]
    separate = train.run(spec, small_mnist, threads=1)
    for a, b in zip(_rows(mine), _rows(separate)):
        assert a == pytest.approx(b, rel=1e-3)


def test_a_diverging_member_fails_alone(small_mnist):
    good = RunSpec(model="approach2", seed=0, epochs=2, train_limit=1_000)
    exploding = RunSpec(model="baseline", seed=1, epochs=2, train_limit=1_000, learning_rate=1e12)
    results = group.run_group([exploding, good], small_mnist, threads=1)
    assert isinstance(results[0], train.RunFailed) and "non-finite training loss" in str(results[0])
    assert results[1].record.status == "ok" and results[1].record.epochs_run == 2


def test_members_must_share_data_and_step_count(small_mnist):
    with pytest.raises(ValueError, match="same data set"):
        group.run_group([RunSpec(model="small", seed=0, epochs=1), RunSpec(model="small", seed=1, epochs=2)],
                        small_mnist)


def test_groups_deal_models_and_seeds_evenly_and_never_mix_step_counts():
    specs = BenchmarkConfig(seeds=(0, 1)).specs()  # baseline, approach1, approach2 x 2 seeds, model-major
    dealt = group.groups(specs, 3)
    assert [sorted(s.model for s in chunk) for chunk in dealt] == [["approach1", "approach2", "baseline"]] * 2
    assert sorted(s.run_id for chunk in dealt for s in chunk) == sorted(s.run_id for s in specs)
    other = RunSpec(model="small", seed=0, epochs=30)
    mixed = group.groups([*specs[:2], other], 4)
    assert sorted(len(chunk) for chunk in mixed) == [1, 2] and [other] in mixed
    assert [len(chunk) for chunk in group.groups(specs, 1)] == [1] * 6


def test_groups_and_mirroring_do_not_mix():
    with pytest.raises(ValueError, match="runs_per_task > 1 cannot be combined with cpu_devices > 1"):
        BenchmarkConfig(runs_per_task=2, cpu_devices=2)
