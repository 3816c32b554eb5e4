"""Hand-made runs tables for the aggregate and report tests."""

from __future__ import annotations

import math

import pandas as pd

PARAMS = {"baseline": (591_786, 591_786, 5), "approach1": (3_418, 3_578, 10), "approach2": (3_130, 3_226, 9)}


def make_runs(rows: list[tuple], dataset: str = "mnist", protocol: str = "holdout") -> pd.DataFrame:
    """A runs table from (model, seed, test_accuracy, status) tuples; other columns get plausible values."""
    records = []
    for model, seed, test_accuracy, status in rows:
        trainable, total, layers = PARAMS.get(model, (1_000, 1_000, 3))
        ok = status == "ok"
        records.append(dict(
            schema_version=1, run_id=f"{model}-s{seed}-{dataset}-{protocol}", benchmark="test", model=model, seed=seed,
            dataset=dataset, protocol=protocol, status=status, error=None if ok else "boom",
            params_total=total, params_trainable=trainable, params_non_trainable=total - trainable,
            layers=layers, macs_per_image=10 * total, max_epochs=10, batch_size=32, patience=1,
            train_limit=pd.NA, epochs_run=4 if ok else 0, stopped_early=ok,
            train_loss=0.05, train_accuracy=0.99, val_loss=0.06, val_accuracy=test_accuracy,
            test_loss=0.06, test_accuracy=test_accuracy if ok else math.nan,
            train_seconds=120.0 if ok else math.nan, images_per_second=2_000.0 if ok else math.nan,
            started_at=pd.Timestamp("2025-01-01", tz="UTC"), finished_at=pd.Timestamp("2025-01-01 00:02", tz="UTC"),
            host="laptop", ray_node_id="node", devices="CPU", strategy="default", replicas=1, threads=1,
            tensorflow_version="2.21.0", keras_version="3.15.0", ray_version="2.60.0",
            reducecnn_version="0.1.0", spec_json="{}",
        ))
    runs = pd.DataFrame(records)
    return runs.astype({"train_limit": "Int64", "max_epochs": "int32", "batch_size": "int32", "layers": "int32"})
