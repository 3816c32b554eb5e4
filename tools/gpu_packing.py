"""Runs per GPU: how many training runs one GPU should take at once (the --gpus-per-run knob).

For each N in --runs it starts N processes at the same moment, each training one of the study's
models on MNIST at batch 32 (the study's setting) for a fixed number of steps after a warm-up,
and prints images/s per run and in total. Tiny CNNs at batch 32 leave a GPU mostly idle, so the
total should grow with N until the GPU (or the host's cores) saturates.

It uses plain Keras, so it runs on the runner's TensorFlow or, where a machine only has JAX,
with KERAS_BACKEND=jax; the line "backend" in the output says which.

    python -m tools.gpu_packing                                   # approach1, N = 1, 2, 4, 8
    python -m tools.gpu_packing --models approach1,baseline --runs 1,4 --steps 500
    python -m tools.gpu_packing --npz train.npz --json packing.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from reducecnn import catalog  # names without Keras

ROOT = Path(__file__).resolve().parents[1]  # `python -m tools.gpu_packing` runs from here


def _train_arrays(npz: str | None):
    """MNIST's training images as float32 NHWC in [0, 1] and one-hot labels."""
    import numpy as np

    if npz:
        with np.load(npz) as f:
            x, y = f["x_train"], f["y_train"]
    else:
        from reducecnn import data

        mnist = data.load("mnist")
        x, y = mnist.x_train, mnist.y_train
    return (x.reshape(-1, 28, 28, 1) / np.float32(255)).astype("float32"), np.eye(10, dtype="float32")[y]


def _devices() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ",".join(f"{d.platform}:{d.id}" for d in jax.devices())
    import tensorflow as tf

    return ",".join(d.name for d in tf.config.list_physical_devices()) or "cpu"


def worker(args: argparse.Namespace) -> None:
    """One run: warm up, say READY, wait for GO on stdin, train --steps steps, print one JSON line."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: share the GPU
    import keras

    from reducecnn import models

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    x, y = _train_arrays(args.npz)
    keras.utils.set_random_seed(args.seed)
    model = models.MODELS[args.model]()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"],
                  steps_per_execution=args.steps_per_execution)
    warm = args.batch_size * args.steps_per_execution * 2
    model.fit(x[:warm], y[:warm], batch_size=args.batch_size, epochs=1, verbose=0)
    images = min(args.steps * args.batch_size, len(x))
    print("READY", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    history = model.fit(x[:images], y[:images], batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - start
    print(json.dumps({"images": images * args.epochs, "seconds": seconds,
                      "images_per_second": images * args.epochs / seconds,
                      "loss": history.history["loss"][-1], "backend": keras.backend.backend(),
                      "devices": _devices()}), flush=True)


def measure(args: argparse.Namespace, model: str, n: int) -> dict:
    """N workers at once; returns per-run and total images/s."""
    command = [sys.executable, "-m", "tools.gpu_packing", "--worker", "--model", model, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
               "--steps-per-execution", str(args.steps_per_execution)]
    if args.npz:
        command += ["--npz", args.npz]
    procs = [subprocess.Popen(command + ["--seed", str(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT) for i in range(n)]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            while line and line.strip() != "READY":
                line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a {model} worker exited before it was ready (code {proc.wait()})")
        for proc in procs:
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            lines = [line for line in proc.stdout.read().splitlines() if line.startswith("{")]
            if proc.wait() != 0 or not lines:
                raise RuntimeError(f"a {model} worker failed (code {proc.returncode})")
            results.append(json.loads(lines[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    per_run = [r["images_per_second"] for r in results]
    return {"model": model, "runs": n, "per_run_images_per_second": sum(per_run) / n,
            "total_images_per_second": sum(r["images"] for r in results) / max(r["seconds"] for r in results),
            "backend": results[0]["backend"], "devices": results[0]["devices"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="approach1", help="comma-separated registry names")
    parser.add_argument("--runs", default="1,2,4,8", help="comma-separated numbers of concurrent runs")
    parser.add_argument("--steps", type=int, default=1000, help="timed training steps per epoch (at most one pass)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs of --steps steps each")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps-per-execution", type=int, default=64)
    parser.add_argument("--npz", help="an .npz with x_train (uint8 Nx28x28) and y_train; default: reducecnn.data")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    models = args.models.split(",")
    unknown = [m for m in models if m not in catalog.registered()]
    if unknown:
        print(f"gpu_packing: unknown model {unknown[0]!r}; known: {', '.join(sorted(catalog.registered()))}", file=sys.stderr)
        return 2
    try:
        runs = [int(n) for n in args.runs.split(",")]
    except ValueError:
        runs = []
    if not runs or min(runs) < 1 or min(args.steps, args.epochs, args.batch_size, args.steps_per_execution) < 1:
        print("gpu_packing: --runs must list positive integers; --steps, --epochs, --batch-size and "
              "--steps-per-execution must be >= 1", file=sys.stderr)
        return 2
    rows = []
    for model in models:
        for n in runs:
            row = measure(args, model, n)
            one = next((r for r in rows if r["model"] == model and r["runs"] == 1), row)
            row["total_vs_one_run"] = row["total_images_per_second"] / one["total_images_per_second"]
            rows.append(row)
            if len(rows) == 1:
                print(f"backend {row['backend']}, devices {row['devices']}, batch {args.batch_size}, "
                      f"{args.epochs} x {args.steps} timed steps per run")
                print(f"{'model':<10} {'runs':>4} {'img/s per run':>14} {'img/s total':>12} {'total vs 1 run':>15}")
            print(f"{model:<10} {n:>4} {row['per_run_images_per_second']:>14,.0f} "
                  f"{row['total_images_per_second']:>12,.0f} {row['total_vs_one_run']:>14.2f}x", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
