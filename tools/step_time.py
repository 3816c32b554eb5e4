"""One training step's time at one CPU thread: reducecnn's kernels against Keras 3's own, side by side.

  keras      keras.optimizers.Adam and keras.layers.BatchNormalization, as the notebook's code
             reads on today's Keras
  reducecnn  train.adam (fused ResourceApplyAdam) and models.batch_norm (fused FusedBatchNormV3)

Both use the same model, seeded input pipeline, batch 32 and 64 steps per tf.function call
(train.run's), warmed up first; the two alternate `--repeats` times so that a drifting
machine shows in both columns.

    python -m tools.step_time                                  # the study's models, 20,000 images
    python -m tools.step_time --models small2k --images 30000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from reducecnn import catalog  # names without Keras
from reducecnn.config import STUDY_MODELS, RunSpec

VARIANTS = ("keras", "reducecnn")


def step_ms(name: str, variant: str, x, y, batch_size: int = 32) -> float:
    """Milliseconds per training step of `name` over the images x, after a warm-up."""
    import keras  # Keras (5.7 s) after the bad-input checks

    from reducecnn import models, recipe, train

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    models.FUSED_BATCH_NORM = variant == "reducecnn"
    try:
        model = models.MODELS[name]()
    finally:
        models.FUSED_BATCH_NORM = True
    optimizer = (train.adam(RunSpec(model=name, seed=0), len(x)) if variant == "reducecnn"
                 else keras.optimizers.Adam())
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"], optimizer=optimizer,
                  steps_per_execution=train.STEPS_PER_EXECUTION)
    batches = train.batches_of(x, y, batch_size, *recipe.epoch_plan(0, 0, len(x)))
    model.fit(batches.take(4 * train.STEPS_PER_EXECUTION), epochs=1, shuffle=False, verbose=0)  # trace, warm up
    start = time.perf_counter()
    model.fit(batches, epochs=1, shuffle=False, verbose=0)
    return (time.perf_counter() - start) / -(-len(x) // batch_size) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(STUDY_MODELS))
    parser.add_argument("--images", type=int, default=20_000, help="training images timed per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per variant, alternating")
    args = parser.parse_args()
    names = [name for name in args.models.split(",") if name]
    unknown = [name for name in names if name not in catalog.registered()]
    problem = (f"unknown model {unknown[0]!r}; known: {', '.join(sorted(catalog.registered()))}" if unknown
               else "--models must name a model, --images and --repeats must be >= 1"
               if not names or args.images < 1 or args.repeats < 1 else None)
    if problem:
        print(f"step_time: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from reducecnn import data, devices

    devices.configure(threads=1)
    mnist = data.load("mnist")
    x, y = mnist.x_train[:args.images], mnist.y_train[:args.images]
    print(f"ms per training step, 1 thread, batch 32, {len(x)} images per measurement", flush=True)
    print(f"{'model':<11}{'keras':>20}{'reducecnn':>20}{'reducecnn / keras':>19}")
    for name in names:
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                times[variant].append(step_ms(name, variant, x, y))
        cells = "".join(f"{' / '.join(f'{t:.2f}' for t in times[v]):>20}" for v in VARIANTS)
        ratio = sum(times["reducecnn"]) / sum(times["keras"])
        print(f"{name:<11}{cells}{ratio:>18.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
