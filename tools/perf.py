"""Speed, side by side in one invocation: the same specs trained three ways on this machine.

  notebook   one process, models one after another, model.fit on numpy arrays as the study's notebook
             (Keras 3's own Adam and batch norm)
  reducecnn  jobs/benchmark.py on a local Ray (one task per run, its default)
  grouped    the same with --runs-per-task 3: seeds of a model as one vectorized computation per task (not in
             the default --ways)
  tune       Ray Tune's Tuner over the same specs, calling the same train.run

Early stopping is off (patience = epochs), so every way does the same work. Each way runs in
its own fresh process and its wall time includes TensorFlow import and (for Ray) start-up.

    python -m tools.perf                       # 3 models x 2 seeds, full MNIST, 5 epochs (~14 min here)
    python -m tools.perf --epochs 2            # the same at 2 epochs (~6 min)
    python -m tools.perf --epochs 1 --train-limit 5000 --ways notebook,reducecnn
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reducecnn.config import STUDY_MODELS, RunSpec

_checkout = Path(__file__).resolve().parents[1]

WAYS = ("notebook", "reducecnn", "tune", "grouped")
DEFAULT_WAYS = ("notebook", "reducecnn", "tune")


def make_specs(args: argparse.Namespace) -> list[RunSpec]:
    """The workload: models x seeds under the study protocol with early stopping off."""
    return [RunSpec(model=model, seed=seed, protocol="study", epochs=args.epochs, patience=args.epochs,
                    train_limit=args.train_limit)
            for model in args.models.split(",") for seed in range(args.seeds)]


def notebook_way(specs: list[RunSpec]) -> list[dict]:
    """The notebook's way: float arrays, to_categorical, model.fit with EarlyStopping, one process."""
    import keras

    from reducecnn import data, models
    from reducecnn.models import MODELS

    # The notebook's code on today's Keras: Keras's own batch norm and Adam, not reducecnn's fused kernels.
    models.FUSED_BATCH_NORM = False
    mnist = data.load("mnist")
    x_train = mnist.x_train.reshape(-1, 28, 28, 1) / 255
    x_test = mnist.x_test.reshape(-1, 28, 28, 1) / 255
    y_train = keras.utils.to_categorical(mnist.y_train, 10)
    y_test = keras.utils.to_categorical(mnist.y_test, 10)
    rows = []
    for spec in specs:
        keras.utils.set_random_seed(spec.seed)
        limit = spec.train_limit or len(x_train)
        model = MODELS[spec.model]()
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        start = time.perf_counter()
        model.fit(x_train[:limit], y_train[:limit], epochs=spec.epochs, validation_data=(x_test, y_test),
                  callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience)], verbose=0)
        seconds = time.perf_counter() - start
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        rows.append({"model": spec.model, "seed": spec.seed, "test_accuracy": float(accuracy),
                     "images_per_second": spec.epochs * limit / seconds, "peak_rss_mb": _peak_rss_mb(),
                     "images": len(model.history.history["loss"]) * limit})
    return rows


def benchmark_command(specs: list[RunSpec], workdir: Path, name: str, *flags: str) -> list[str]:
    """jobs/benchmark.py on a local Ray, as a user would run it."""
    spec = specs[0]
    command = [sys.executable, str(_checkout / "jobs" / "benchmark.py"), "--protocol", "study",
               "--epochs", str(spec.epochs), "--patience", str(spec.patience), "--out", str(workdir),
               "--name", name, "--no-report", "--models", ",".join(dict.fromkeys(s.model for s in specs)),
               "--seed-list", ",".join(str(s) for s in dict.fromkeys(s.seed for s in specs))]
    if spec.train_limit:
        command += ["--train-limit", str(spec.train_limit)]
    return command + list(flags)


def benchmark_rows(specs: list[RunSpec], workdir: Path, name: str) -> list[dict]:
    """The rows a benchmark invocation recorded, read back from its Parquet files."""
    import pandas as pd

    runs = pd.read_parquet(workdir / name / "runs")
    runs["images"] = runs["epochs_run"] * (specs[0].train_limit or 60_000)
    return runs[["model", "seed", "test_accuracy", "images_per_second", "peak_rss_mb", "images"]].to_dict("records")


def tune_way(specs: list[RunSpec], workdir: Path) -> list[dict]:
    """Ray Tune: grid over model and seed, one CPU per trial, the same train.run."""
    import ray
    from ray import tune

    from reducecnn import data

    # Ray started as jobs/benchmark.py starts it on a laptop (dashboard on 127.0.0.1), so both
    # Ray ways pay the same start-up, background agents and shutdown.
    ray.init(dashboard_host="127.0.0.1")
    mnist = data.load("mnist")
    base = specs[0]

    def trainable(config: dict, arrays: tuple) -> None:
        from reducecnn import data as data_module, train

        spec = RunSpec(model=config["model"], seed=config["seed"], protocol=base.protocol, epochs=base.epochs,
                       patience=base.patience, train_limit=base.train_limit)
        dataset = data_module.Dataset("mnist", "ray object store", "", *arrays)
        record = train.run(spec, data_module.split(dataset, spec.protocol, spec.train_limit), threads=1).record
        tune.report({"test_accuracy": record.test_accuracy, "images_per_second": record.images_per_second,
                     "peak_rss_mb": record.peak_rss_mb,
                     "images": record.epochs_run * (spec.train_limit or 60_000)})

    arrays = (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, arrays=arrays), {"cpu": 1}),
        param_space={"model": tune.grid_search(list(dict.fromkeys(s.model for s in specs))),
                     "seed": tune.grid_search(list(dict.fromkeys(s.seed for s in specs)))},
        run_config=tune.RunConfig(storage_path=str(workdir / "tune"), verbose=0),
    )
    results = tuner.fit()
    ray.shutdown()
    return [{"model": r.config["model"], "seed": r.config["seed"], **{k: r.metrics[k] for k in
             ("test_accuracy", "images_per_second", "peak_rss_mb", "images")}} for r in results]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


BENCHMARK_FLAGS = {"reducecnn": (), "grouped": ("--runs-per-task", "3")}


def run_way(way: str, args: argparse.Namespace, specs: list[RunSpec], workdir: Path) -> dict:
    """Run one way in a fresh process; returns its wall time and per-run rows.

    The reducecnn ways time jobs/benchmark.py itself, the command a user runs; the notebook
    and Tune ways are programs of this script (--child), timed the same way."""
    if way in BENCHMARK_FLAGS:
        command = benchmark_command(specs, workdir, way, *BENCHMARK_FLAGS[way])
    else:
        command = [sys.executable, "-m", "tools.perf", "--child", way, "--workdir", str(workdir), *args.forwarded]
    log = workdir / f"{way}.log"
    start = time.perf_counter()
    with log.open("w") as stream:
        completed = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=_checkout,
                                   env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"perf: the {way} way failed:\n{log.read_text()[-3000:]}")
    rows = (benchmark_rows(specs, workdir, way) if way in BENCHMARK_FLAGS
            else json.loads((workdir / f"{way}.json").read_text()))
    return {"way": way, "wall_seconds": wall, "rows": rows}


def print_table(results: list[dict], models: list[str]) -> None:
    """Wall time, images/s per run and over the whole wall time, peak memory, mean accuracy per model,
    and ratios to the notebook and to Tune. A run trained in a group shares the group's wall time,
    so its own images/s is lower while the total is higher."""
    import pandas as pd

    reference = {r["way"]: r["wall_seconds"] for r in results}
    header = (f"{'way':<10}{'wall s':>9}{'runs':>6}{'img/s/run':>11}{'img/s all':>11}{'peak MB/run':>13}"
              + "".join(f"{m + ' acc':>16}" for m in models) + f"{'vs notebook':>13}{'vs tune':>9}")
    print(header)
    for result in results:
        rows = pd.DataFrame(result["rows"])
        accuracy = rows.groupby("model")["test_accuracy"].agg(["mean", "std"])
        cells = "".join(f"{accuracy.loc[m, 'mean'] * 100:>9.2f}±{accuracy.loc[m, 'std'] * 100:<6.2f}"
                        if m in accuracy.index else f"{'-':>16}" for m in models)
        wall = result["wall_seconds"]
        versus_notebook = f"{wall / reference['notebook']:.2f}x" if "notebook" in reference else "-"
        versus_tune = f"{wall / reference['tune']:.2f}x" if "tune" in reference else "-"
        print(f"{result['way']:<10}{wall:>9.1f}{len(rows):>6}{rows['images_per_second'].mean():>11.0f}"
              f"{rows['images'].sum() / wall:>11.0f}"
              f"{rows['peak_rss_mb'].max():>13.0f}{cells}{versus_notebook:>13}{versus_tune:>9}")
    print("(wall time ratios: lower is faster; accuracy: mean ± std over seeds, %)")
    if "tune" in reference and "reducecnn" in reference:
        # Tune runs the same train.run: what separates the two is Tune's cost per trial, a fixed
        # number of seconds, so the ratio depends on how long the training is.
        extra = reference["tune"] - reference["reducecnn"]
        trials = len(next(r["rows"] for r in results if r["way"] == "tune"))
        print(f"Tune - reducecnn: {extra:.1f} s ({extra / trials:.1f} s per trial); with that difference, "
              f"reducecnn <= 0.80x of Tune holds while Tune takes <= {5 * extra:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(STUDY_MODELS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5: ~14 min for the three ways here)")
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--ways", default=",".join(DEFAULT_WAYS),
                        help=f"comma-separated, from {','.join(WAYS)} (default {','.join(DEFAULT_WAYS)})")
    parser.add_argument("--child", choices=("notebook", "tune"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.forwarded = ["--models", args.models, "--seeds", str(args.seeds), "--epochs", str(args.epochs)]
    if args.train_limit:
        args.forwarded += ["--train-limit", str(args.train_limit)]
    specs = make_specs(args)
    if args.child:
        workdir = Path(args.workdir)
        rows = notebook_way(specs) if args.child == "notebook" else tune_way(specs, workdir)
        (workdir / f"{args.child}.json").write_text(json.dumps(rows))
        return 0
    ways = [way for way in args.ways.split(",") if way]
    unknown = [way for way in ways if way not in WAYS]
    if unknown:
        parser.error(f"unknown way {unknown[0]!r}; known: {', '.join(WAYS)}")
    print(f"{len(specs)} runs per way: {args.models} x {args.seeds} seeds, {args.epochs} epochs, "
          f"{args.train_limit or 60_000} training images, early stopping off", flush=True)
    with tempfile.TemporaryDirectory(prefix="perf-") as workdir:
        results = []
        for way in ways:
            results.append(run_way(way, args, specs, Path(workdir)))
            print(f"{way}: {results[-1]['wall_seconds']:.1f} s", flush=True)
    print_table(results, args.models.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
