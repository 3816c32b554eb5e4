"""Epochs of train.run per model at 1 thread, early stopping off (docs/perf/cpu-train-0.3-vs-0.4.txt):
PYTHONPATH picks the reducecnn version. Usage: train_one_epoch.py MODELS [EPOCHS]."""
import os, sys, time; os.environ["TF_CPP_MIN_LOG_LEVEL"]="3"
from reducecnn import data, devices, train
import reducecnn
from reducecnn.config import RunSpec
devices.configure(threads=1)
d = data.split(data.load("mnist"), "holdout", None)
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
for model in sys.argv[1].split(","):
    r = train.run(RunSpec(model=model, seed=0, epochs=epochs, patience=epochs), d, threads=1)
    print(reducecnn.__version__, model, f"train_seconds {r.record.train_seconds:.2f}",
          "epoch_seconds", " ".join(f"{e['epoch_seconds']:.2f}" for e in r.epochs), flush=True)
