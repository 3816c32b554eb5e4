"""How the results store scales: N synthetic records written through the store's own write path,
then the commands a user runs on them, each timed as one whole process.

    python -m tools.scale --runs 1000 10000 100000 > docs/perf/scale.jsonl

Per N, one JSON line: write records/s (batches of 64, as a GPU task returns them, and one
record per call on the first 2,000), resume (`reducecnn benchmark --config` of a config whose
runs are all recorded: approach1, N/10 seeds x 10 learning rates, 10 epochs; it trains nothing),
`reducecnn report`, `pd.read_parquet` of runs/ and of epochs/ (10 rows per run), disk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from reducecnn import store
from reducecnn.config import BenchmarkConfig, RunSpec, make_benchmark_config
from reducecnn.records import RunRecord, record_for

REPO = Path(__file__).resolve().parents[1]
LEARNING_RATES = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03]
BATCH = 64  # runs per write: one vectorized GPU task's results
SINGLE_WRITES = 2_000
EPOCHS = 10


def scale_config(runs: int, out: Path) -> dict:
    """The benchmark whose runs the records stand for: approach1, runs/10 seeds x 10 learning rates."""
    return {"models": ["approach1"], "seeds": runs // len(LEARNING_RATES), "learning_rate": LEARNING_RATES,
            "epochs": EPOCHS, "out": str(out), "name": "scale", "report": False}


def synthetic_run(spec: RunSpec, rng: random.Random) -> tuple[RunRecord, list[dict]]:
    """A plausible ok record of a spec and its 10 epoch rows."""
    accuracy = 0.975 - 4 * abs(math.log10(spec.learning_rate / 0.005)) / 100 + rng.gauss(0, 0.002)
    started = datetime(2026, 12, 1, tzinfo=timezone.utc) + timedelta(seconds=spec.seed)
    record = record_for(
        spec, benchmark="scale", params_total=3_578, params_trainable=3_418, params_non_trainable=160, layers=10,
        macs_per_image=371_840, epochs_run=EPOCHS, stopped_early=False, train_loss=0.08, train_accuracy=accuracy + 0.01,
        val_loss=0.09, val_accuracy=accuracy + rng.gauss(0, 0.001), test_loss=0.09, test_accuracy=accuracy,
        train_seconds=60.0, images_per_second=8_000.0, started_at=started, finished_at=started + timedelta(minutes=1),
        devices="GPU:0", strategy="vectorized", replicas=1, threads=1, group_size=BATCH, vectorized=True,
        backend="jax", tensorflow_version="2.21.0", keras_version="3.15.1", ray_version="2.60.0")
    epochs = [{"run_id": spec.run_id, "model": spec.model, "seed": spec.seed, "dataset": spec.dataset,
               "protocol": spec.protocol, "epoch": epoch, "loss": 0.3 / epoch, "accuracy": accuracy - 0.02 / epoch,
               "val_loss": 0.3 / epoch, "val_accuracy": accuracy - 0.02 / epoch, "epoch_seconds": 6.0}
              for epoch in range(1, EPOCHS + 1)]
    return record, epochs


def write(specs: list[RunSpec], location: store.Location, batch: int) -> float:
    """Write the specs' synthetic runs `batch` at a time, then compact as a benchmark's end does;
    records/s of the store's calls alone. Built batch by batch, as a driver receives them: the
    process holds the specs, as a driver does, not every record at once."""
    rng, seconds = random.Random(len(specs)), 0.0
    for first in range(0, len(specs), batch):
        runs = [synthetic_run(spec, rng) for spec in specs[first:first + batch]]
        start = time.perf_counter()
        store.write_runs(runs, location)
        seconds += time.perf_counter() - start
    start = time.perf_counter()
    store.compact(location)
    return len(specs) / (seconds + time.perf_counter() - start)


def timed_process(argv: list[str]) -> tuple[float, str]:
    """Seconds one `python -m reducecnn ...` process took, and its stderr."""
    env = os.environ | {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "reducecnn", *argv], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"reducecnn {' '.join(argv)} failed: {completed.stderr[-2000:]}")
    return seconds, completed.stderr


def timed_read(folder: Path) -> float:
    """Seconds pd.read_parquet(folder) took (best of two: the first may fill the page cache)."""
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        pd.read_parquet(folder)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def disk_mb(folder: Path) -> float:
    """Size of every file under a folder, MB."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def measure(runs: int, root: Path) -> dict:
    """The JSON line of one N."""
    out = root / f"n{runs}"
    values = scale_config(runs, out)
    config: BenchmarkConfig = make_benchmark_config(values)
    specs = config.specs()
    location = store.locate(str(out), "scale")
    store.prepare(location)
    batched = write(specs, location, BATCH)
    single_location = store.locate(str(out), "single")
    store.prepare(single_location)
    single = write(specs[:SINGLE_WRITES], single_location, 1)
    config_file = out / "scale.json"
    config_file.write_text(json.dumps(values))
    resume, stderr = timed_process(["benchmark", "--config", str(config_file)])
    if f"{runs} already recorded, 0 to train" not in stderr:
        raise SystemExit(f"resume of {runs} runs trained something: {stderr[-2000:]}")
    report, _ = timed_process(["report", str(out / "scale")])
    return {
        "runs": runs, "epoch_rows": runs * EPOCHS,
        "write_records_per_s": round(batched), "write_batch": BATCH,
        "write_records_per_s_one_per_call": round(single), "one_per_call_records": min(runs, SINGLE_WRITES),
        "resume_s": round(resume, 2), "report_s": round(report, 2),
        "read_runs_s": round(timed_read(out / "scale" / "runs"), 3),
        "read_epochs_s": round(timed_read(out / "scale" / "epochs"), 3),
        "disk_mb": round(disk_mb(out / "scale"), 1),
        "runs_files": len(list((out / "scale" / "runs").iterdir())),
        "epochs_files": len(list((out / "scale" / "epochs").iterdir())),
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dir", help="where to write (default: a temporary folder, deleted after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reducecnn-scale-", dir=args.dir) as root:
        for runs in args.runs:
            print(json.dumps(measure(runs, Path(root))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
