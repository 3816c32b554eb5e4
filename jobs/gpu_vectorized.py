"""GPU throughput of the vectorized trainer (reducecnn.vectorized) beside today's packed processes.

In ONE invocation on one device it prints, for each model and each K in --ks, the images/s of
K seeds trained as one computation (total and per run, timed after compilation), beside
--packed separate training processes at once (jobs/gpu_packing.py, one run per process,
the pre-0.4.0 GPU default), and then times the whole study workload end to end, compilation
included: --study-models x --study-seeds seeds x --study-epochs epochs on full MNIST
(`study` protocol: all 60,000 training images, test accuracy at the end), early stopping
off, one vectorized group per model, with each model's mean +- std test accuracy.

On the lent GPU machine (JAX, no TensorFlow or Ray; see README "Performance" for the wheels):
    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python jobs/gpu_vectorized.py \\
        --data-dir data/ --json docs/perf/gpu-vectorized-h100.json
Tiny, on a CPU:
    python jobs/gpu_vectorized.py --models approach2 --ks 1,2 --steps 4 --packed 0 \\
        --study-models approach2 --study-seeds 2 --study-epochs 1 --train-limit 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

_checkout = Path(__file__).resolve().parents[1]
for path in (_checkout, _checkout / "jobs"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from reducecnn.models import MODELS  # noqa: E402  (imports no framework)


def _splits(args: argparse.Namespace, protocol: str):
    from reducecnn import data

    return data.split(data.load("mnist", args.data_dir), protocol, args.train_limit)


def throughput(model: str, k: int, splits, steps: int, batch_size: int) -> dict:
    """Images/s of K seeds as one computation: `steps` full batches each, timed after a compiled warm-up."""
    import numpy as np
    from keras import ops

    from reducecnn import vectorized
    from reducecnn.batches import epoch_plan
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
    carry = trainer.train_epoch(state, x, y, order, shifts, rates, active, steps=2)  # compiles
    ops.convert_to_numpy(carry[5])
    start = time.perf_counter()
    carry = trainer.train_epoch(carry[:5], x, y, order, shifts, rates, active, steps=steps)
    ops.convert_to_numpy(carry[5])
    seconds = time.perf_counter() - start
    total = k * steps * batch_size / seconds
    return {"model": model, "K": k, "img_per_s_total": total, "img_per_s_per_run": total / k, "seconds": seconds}


def study(args: argparse.Namespace) -> dict:
    """The study workload through the trainer, end to end: one vectorized group per model."""
    from reducecnn import vectorized
    from reducecnn.config import RunSpec

    splits = _splits(args, "study")
    start = time.perf_counter()
    accuracy = {}
    for model in args.study_models.split(","):
        specs = [RunSpec(model=model, seed=seed, protocol="study", epochs=args.study_epochs,
                         patience=args.study_epochs, train_limit=args.train_limit) for seed in range(args.study_seeds)]
        model_start = time.perf_counter()
        results = vectorized.train_group(specs, splits)
        values = [r.record.test_accuracy * 100 for r in results if not isinstance(r, Exception)]
        accuracy[model] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                           "runs": len(values), "wall_s": time.perf_counter() - model_start}
    return {"study_wall_s": time.perf_counter() - start, "models": args.study_models.split(","),
            "seeds": args.study_seeds, "epochs": args.study_epochs, "accuracy": accuracy}


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
    parser.add_argument("--steps", type=int, default=1875, help="timed steps per K (default: one epoch of 60k)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--packed", type=int, default=8, help="separate processes at once for the comparison (0: none)")
    parser.add_argument("--study-models", default="baseline,approach1,approach2", help="'' skips the workload")
    parser.add_argument("--study-seeds", type=int, default=10)
    parser.add_argument("--study-epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, help="fewer training images (tiny checks)")
    parser.add_argument("--data-dir", help="folder with mnist.npz or the IDX files (default: offline sources)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models + [m for m in args.study_models.split(",") if m] if m not in MODELS]
    try:
        ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        ks = []
    if unknown or not ks or min(ks) < 1 or min(args.steps, args.batch_size, args.study_seeds, args.study_epochs) < 1:
        print(f"gpu_vectorized: {'unknown model ' + repr(unknown[0]) if unknown else 'bad --ks/--steps/--study-*'}; "
              f"known models: {', '.join(sorted(MODELS))}", file=sys.stderr)
        return 2
    import keras

    figures = {"device": _device(), "backend": keras.backend.backend(), "keras": keras.__version__,
               "batch_size": args.batch_size, "rows": [], "packed": []}
    print(f"device {figures['device']}, Keras {keras.__version__} on {figures['backend']}, batch {args.batch_size}")
    print(f"{'model':<10} {'K':>5} {'img/s total':>12} {'img/s per run':>14}")
    splits = _splits(args, "study")
    for model in models:
        if args.packed:
            import gpu_packing

            packing = argparse.Namespace(steps=args.steps, batch_size=args.batch_size, epochs=1,
                                         steps_per_execution=64,
                                         npz=str(Path(args.data_dir) / "mnist.npz") if args.data_dir else None)
            row = gpu_packing.measure(packing, model, args.packed)
            figures["packed"].append({"model": model, "processes": args.packed,
                                      "img_per_s_total": row["total_images_per_second"],
                                      "img_per_s_per_run": row["per_run_images_per_second"]})
            print(f"{model:<10} {str(args.packed) + ' proc':>5} {row['total_images_per_second']:>12,.0f} "
                  f"{row['per_run_images_per_second']:>14,.0f}   (separate processes)", flush=True)
        for k in ks:
            row = throughput(model, k, splits, args.steps, args.batch_size)
            figures["rows"].append(row)
            print(f"{model:<10} {k:>5} {row['img_per_s_total']:>12,.0f} {row['img_per_s_per_run']:>14,.0f}", flush=True)
    if args.study_models:
        figures["study"] = study(args)
        print(f"study workload: {len(figures['study']['models'])} models x {args.study_seeds} seeds x "
              f"{args.study_epochs} epochs in {figures['study']['study_wall_s']:.1f} s wall, compilation included")
        for model, acc in figures["study"]["accuracy"].items():
            print(f"  {model:<10} test accuracy {acc['mean']:.2f} +- {acc['std']:.2f} % ({acc['runs']} runs, "
                  f"{acc['wall_s']:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
