"""GPU throughput of the vectorized trainer (reducecnn.vectorized) beside today's packed processes.

In ONE invocation on one device it prints, for each model and each K in --ks, the images/s of
K seeds trained as one computation (total and per run, timed after a compiling pass of the
same steps), beside
--packed separate training processes at once (tools/gpu_packing.py, one run per process,
the pre-0.4.0 GPU default), and then times the whole study workload end to end, compilation
included: --study-models x --study-seeds seeds x --study-epochs epochs on full MNIST
(`study` protocol: all 60,000 training images, test accuracy at the end), early stopping
off, one vectorized group per model, with each model's mean +- std test accuracy. The
workload runs twice: the models one after another in this process, and side by side, one
process per model started at once (what the runner does with one task per model on one
GPU); the side-by-side wall time counts the processes' start, imports and compilation.
--guard-row adds one row: the first model at the largest K with the non-finite guard
around convolutions (stacked.finite) switched off, to show what the guard costs.

Every row is printed and written to --json as it comes; a row that fails prints its error
and the script goes on (exit 1 at the end).

On the lent GPU machine (JAX, no TensorFlow or Ray; docs/performance.md lists the wheels to carry):
    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python -m tools.gpu_vectorized \\
        --data-dir data/ --json docs/perf/gpu-vectorized-h100.json
Tiny, on a CPU:
    python -m tools.gpu_vectorized --models approach2 --ks 1,2 --steps 4 --packed 0 \\
        --study-models approach2 --study-seeds 2 --study-epochs 1 --train-limit 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from reducecnn import catalog  # names without Keras

ROOT = Path(__file__).resolve().parents[1]  # `python -m tools.gpu_vectorized` runs from here


def _splits(args: argparse.Namespace, protocol: str):
    from reducecnn import data

    return data.split(data.load("mnist", args.data_dir), protocol, args.train_limit)


def throughput(model: str, k: int, splits, steps: int, batch_size: int, guard: bool = True) -> dict:
    """Images/s of K seeds as one computation: `steps` full batches each, timed after a compiled warm-up."""
    import numpy as np
    from keras import ops

    from reducecnn import stacked as stacked_module
    from reducecnn import vectorized

    if not guard:  # measure what the non-finite guard costs: identity instead
        original, stacked_module.finite = stacked_module.finite, (lambda x: x)
        try:
            return {**throughput(model, k, splits, steps, batch_size), "guard": False}
        finally:
            stacked_module.finite = original
    from reducecnn.recipe import epoch_plan
    from reducecnn.config import RunSpec

    specs = [RunSpec(model=model, seed=seed, protocol="study", epochs=1, batch_size=batch_size) for seed in range(k)]
    stacked = vectorized.stack(vectorized.build_members(specs))
    trainer = vectorized.Trainer(stacked, specs[0], len(splits.x_train))
    images = len(splits.x_train)
    plans = [epoch_plan(spec.seed, 0, images) for spec in specs]
    order, shifts = np.stack([p[0] for p in plans]), np.stack([p[1] for p in plans])
    x, y = ops.convert_to_tensor(splits.x_train), ops.convert_to_tensor(splits.y_train.astype(np.int32))
    params = [ops.convert_to_tensor(p) for p in stacked.params]
    state = (params, [ops.convert_to_tensor(s) for s in stacked.stats], [ops.zeros_like(p) for p in params],
             [ops.zeros_like(p) for p in params], ops.convert_to_tensor(np.int32(0)))
    rates, active = ops.convert_to_tensor(np.full(k, 1e-3, np.float32)), [True] * k
    steps = min(steps, images // batch_size)
    carry = trainer.train_epoch(state, x, y, order, shifts, rates, active, steps=steps)  # compiles (a static count)
    ops.convert_to_numpy(carry[5])
    start = time.perf_counter()
    carry = trainer.train_epoch(carry[:5], x, y, order, shifts, rates, active, steps=steps)
    ops.convert_to_numpy(carry[5])
    seconds = time.perf_counter() - start
    total = k * steps * batch_size / seconds
    return {"model": model, "K": k, "img_per_s_total": total, "img_per_s_per_run": total / k, "seconds": seconds,
            "guard": True}


def _study_specs(args: argparse.Namespace, model: str) -> list:
    from reducecnn.config import RunSpec

    return [RunSpec(model=model, seed=seed, protocol="study", epochs=args.study_epochs, patience=args.study_epochs,
                     train_limit=args.train_limit) for seed in range(args.study_seeds)]


def _summary(model: str, results: list, wall_s: float) -> dict:
    values = [r.record.test_accuracy * 100 for r in results if not isinstance(r, Exception)]
    return {"mean": statistics.mean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": len(values), "failed": len(results) - len(values), "wall_s": wall_s,
            "test_accuracy": values}


def study(args: argparse.Namespace) -> dict:
    """The study workload through the trainer, the models one after another in this process."""
    from reducecnn import vectorized

    splits = _splits(args, "study")
    start = time.perf_counter()
    accuracy = {}
    for model in args.study_models.split(","):
        model_start = time.perf_counter()
        results = vectorized.train_group(_study_specs(args, model), splits)
        accuracy[model] = _summary(model, results, time.perf_counter() - model_start)
    return {"study_wall_s": time.perf_counter() - start, "models": args.study_models.split(","),
            "seeds": args.study_seeds, "epochs": args.study_epochs, "accuracy": accuracy}


def study_worker(args: argparse.Namespace) -> None:
    """One model's group in its own process (side by side): prints one JSON line."""
    from reducecnn import vectorized

    start = time.perf_counter()
    results = vectorized.train_group(_study_specs(args, args.study_worker), _splits(args, "study"))
    print(json.dumps(_summary(args.study_worker, results, time.perf_counter() - start)), flush=True)


def study_side_by_side(args: argparse.Namespace) -> dict:
    """The study workload with one process per model, all started at once; wall time from the
    launch to the last process's end (process start, imports, data and compilation included)."""
    import subprocess

    models = args.study_models.split(",")
    base = [sys.executable, "-m", "tools.gpu_vectorized", "--study-seeds", str(args.study_seeds), "--study-epochs", str(args.study_epochs)]
    base += ["--train-limit", str(args.train_limit)] if args.train_limit else []
    base += ["--data-dir", args.data_dir] if args.data_dir else []
    start = time.perf_counter()
    procs = {m: subprocess.Popen(base + ["--study-worker", m], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=ROOT) for m in models}
    accuracy = {}
    try:
        for model, proc in procs.items():
            out, err = proc.communicate()
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{model} worker failed (code {proc.returncode}): {err.strip()[-500:]}")
            accuracy[model] = json.loads(lines[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return {"study_wall_s": time.perf_counter() - start, "models": models, "seeds": args.study_seeds,
            "epochs": args.study_epochs, "processes": len(models), "accuracy": accuracy}


def phases(args: argparse.Namespace) -> list[dict]:
    """Where a group's wall time goes, per study model, in train_group's order: building the K
    Keras models, stacking, copying to the device, then per epoch the training pass (the first
    one compiles), the validation pass (the first one compiles) and the finite-weights check."""
    import numpy as np
    from keras import ops

    from reducecnn import vectorized
    from reducecnn.recipe import epoch_plan

    splits, rows = _splits(args, "study"), []
    for model in args.study_models.split(","):
        specs, row = _study_specs(args, model), {"model": model}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            row[name] = now - clock
            clock = now

        members = vectorized.build_members(specs)
        lap("build_s")
        stacked = vectorized.stack(members)
        lap("stack_s")
        trainer = vectorized.Trainer(stacked, specs[0], len(splits.x_train))
        x, y = ops.convert_to_tensor(splits.x_train), ops.convert_to_tensor(splits.y_train.astype(np.int32))
        xv, yv = ops.convert_to_tensor(splits.x_val), ops.convert_to_tensor(splits.y_val.astype(np.int32))
        state = ([ops.convert_to_tensor(p) for p in stacked.params], [ops.convert_to_tensor(v) for v in stacked.stats],
                 [ops.convert_to_tensor(np.zeros_like(p)) for p in stacked.params],
                 [ops.convert_to_tensor(np.zeros_like(p)) for p in stacked.params], ops.convert_to_tensor(np.int32(0)))
        rates = ops.convert_to_tensor(np.full(len(specs), 1e-3, np.float32))
        lap("to_device_s")
        for epoch in range(args.study_epochs):
            plans = [epoch_plan(spec.seed, epoch, len(splits.x_train)) for spec in specs]
            order, shifts = np.stack([q[0] for q in plans]), np.stack([q[1] for q in plans])
            lap(f"plan_{epoch + 1}_s")
            carry = trainer.train_epoch(state, x, y, order, shifts, rates, [True] * len(specs))
            state = carry[:5]
            ops.convert_to_numpy(carry[5])
            lap(f"train_{epoch + 1}_s")
            trainer.evaluate(state[0], state[1], xv, yv)
            lap(f"eval_{epoch + 1}_s")
            trainer.finite_members(state[0])
            lap(f"finite_{epoch + 1}_s")
        rows.append(row)
        print(f"  {model:<10} " + ", ".join(f"{name[:-2]} {value:.2f}" for name, value in row.items()
                                          if name != "model") + " (s)", flush=True)
    return rows


def _print_study(title: str, result: dict) -> None:
    print(f"{title}: {len(result['models'])} models x {result['seeds']} seeds x "
          f"{result['epochs']} epochs in {result['study_wall_s']:.1f} s wall, compilation included", flush=True)
    for model, acc in result["accuracy"].items():
        mean = "-" if acc["mean"] is None else f"{acc['mean']:.2f} +- {acc['std']:.2f} %"
        print(f"  {model:<10} test accuracy {mean} ({acc['runs']} runs, {acc['failed']} failed, "
              f"{acc['wall_s']:.1f} s)", flush=True)


def _device() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(getattr(d, "device_kind", d.platform) for d in jax.devices())
    import tensorflow as tf

    return ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="approach1,baseline", help="models for the throughput table")
    parser.add_argument("--ks", default="1,8,64,256", help="seeds per computation")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per K, after as many untimed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--packed", type=int, default=8, help="separate processes at once for the comparison (0: none)")
    parser.add_argument("--study-models", default="baseline,approach1,approach2", help="'' skips the workload")
    parser.add_argument("--study-seeds", type=int, default=10)
    parser.add_argument("--study-epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, help="fewer training images (tiny checks)")
    parser.add_argument("--data-dir", help="folder with mnist.npz or the IDX files (default: offline sources)")
    parser.add_argument("--guard-row", action="store_true", help="add the guard-off row (see above)")
    parser.add_argument("--phases", action="store_true",
                        help="only print where each study model's group spends its time (--study-* settings)")
    parser.add_argument("--no-side-by-side", action="store_true", help="time the study workload only in-process")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--study-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.study_worker:
        study_worker(args)
        return 0
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models + [m for m in args.study_models.split(",") if m] if m not in catalog.registered()]
    try:
        ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        ks = []
    if unknown or not ks or min(ks) < 1 or min(args.steps, args.batch_size, args.study_seeds, args.study_epochs) < 1:
        print(f"gpu_vectorized: {'unknown model ' + repr(unknown[0]) if unknown else 'bad --ks/--steps/--study-*'}; "
              f"known models: {', '.join(sorted(catalog.registered()))}", file=sys.stderr)
        return 2
    import keras

    figures = {"device": _device(), "backend": keras.backend.backend(), "keras": keras.__version__,
               "batch_size": args.batch_size, "rows": [], "packed": [], "errors": []}

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")

    def attempt(what: str, fn):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - a measurement script reports and goes on
            figures["errors"].append(f"{what}: {type(error).__name__}: {error}")
            print(f"{what}: FAILED {type(error).__name__}: {str(error)[:500]}", flush=True)
            return None
        finally:
            save()

    print(f"device {figures['device']}, Keras {keras.__version__} on {figures['backend']}, batch {args.batch_size}")
    if args.phases:
        print(f"phases of one vectorized group of {args.study_seeds} seeds per model, in seconds:")
        figures["phases"] = attempt("phases", lambda: phases(args))
        save()
        return 1 if figures["errors"] else 0
    print(f"{'model':<10} {'K':>5} {'img/s total':>12} {'img/s per run':>14}", flush=True)
    splits = _splits(args, "study")
    for model in models:
        if args.packed:
            from tools import gpu_packing

            packing = argparse.Namespace(steps=args.steps, batch_size=args.batch_size, epochs=1,
                                         steps_per_execution=64,
                                         npz=str(Path(args.data_dir) / "mnist.npz") if args.data_dir else None)
            row = attempt(f"{model} {args.packed} processes", lambda: gpu_packing.measure(packing, model, args.packed))
            if row:
                figures["packed"].append({"model": model, "processes": args.packed,
                                          "img_per_s_total": row["total_images_per_second"],
                                          "img_per_s_per_run": row["per_run_images_per_second"]})
                save()
                print(f"{model:<10} {str(args.packed) + ' proc':>5} {row['total_images_per_second']:>12,.0f} "
                      f"{row['per_run_images_per_second']:>14,.0f}   (separate processes)", flush=True)
        for k in ks:
            row = attempt(f"{model} K={k}", lambda: throughput(model, k, splits, args.steps, args.batch_size))
            if row:
                figures["rows"].append(row)
                save()
                print(f"{model:<10} {k:>5} {row['img_per_s_total']:>12,.0f} {row['img_per_s_per_run']:>14,.0f}",
                      flush=True)
    if args.guard_row and models:
        model, k = models[0], max(ks)
        row = attempt(f"{model} K={k} guard off", lambda: throughput(model, k, splits, args.steps, args.batch_size,
                                                                      guard=False))
        if row:
            figures["guard_off"] = row
            save()
            print(f"{model:<10} {k:>5} {row['img_per_s_total']:>12,.0f} {row['img_per_s_per_run']:>14,.0f}"
                  "   (non-finite guard off)", flush=True)
    if args.study_models:
        result = attempt("study workload", lambda: study(args))
        if result:
            figures["study"] = result
            save()
            _print_study("study workload, models one after another", result)
        if not args.no_side_by_side:
            result = attempt("study workload side by side", lambda: study_side_by_side(args))
            if result:
                figures["study_side_by_side"] = result
                save()
                _print_study("study workload, one process per model side by side", result)
    save()
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
