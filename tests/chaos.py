"""Chaos run: a small benchmark on a real two-node Ray cluster while workers and the driver are
SIGKILLed at random moments; the driver is restarted after each kill. Prints what survived.

    .venv/bin/python tests/chaos.py [--worker-kills 20] [--driver-kills 10] [--seed 0] [--drivers 2]

With --drivers 2, two drivers run the same benchmark on one folder at once (each restarted
after a kill), so one driver's failures race the other's ok records. Between kills this script
also compacts the folder (as a driver does every 500 records), and checks that a pandas read of
runs/ never shows a run twice at any of those moments.
Target: 0 duplicates, 0 partial files, 0 lost specs, 0 ok records replaced by failures.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from localcluster import LocalCluster  # noqa: E402

from reducecnn import store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS, SEEDS = "baseline,approach2", 10


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def training_workers(cluster: LocalCluster) -> list[int]:
    """PIDs of Ray workers of THIS cluster executing a training task (their raylet names our temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _cmdline(int(entry.name)).startswith("ray::train_task"):
            if cluster.temp_dir in _cmdline(_parent(int(entry.name))):
                pids.append(int(entry.name))
    return pids


def start_driver(cluster: LocalCluster, out: Path) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "jobs" / "benchmark.py"), "--address", cluster.address, "--out", str(out),
               "--name", "chaos", "--models", MODELS, "--seeds", str(SEEDS), "--epochs", "1",
               "--train-limit", "3000", "--max-retries", "3", "--no-report"]
    return subprocess.Popen(command, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def ok_now(runs_dir: Path) -> set[str]:
    """Run ids recorded ok at this moment (files are replaced atomically, so reads are safe)."""
    ids = set()
    for path in runs_dir.glob("*.parquet") if runs_dir.is_dir() else []:
        try:
            table = pq.read_table(path, columns=["run_id", "status"]).to_pylist()
        except Exception:  # noqa: BLE001 - a file vanishing or being replaced: seen next time
            continue
        ids.update(row["run_id"] for row in table if row["status"] == "ok")
    return ids


def duplicated_now(runs_dir: Path) -> int:
    """Runs that a pandas read of runs/ shows twice at this moment (0 unless something is wrong)."""
    try:
        return int(pd.read_parquet(runs_dir, columns=["run_id"])["run_id"].duplicated().sum())
    except Exception:  # noqa: BLE001 - no file yet, or one replaced between listing and reading
        return 0


def inspect(runs_dir: Path, ok_seen: set[str]) -> dict[str, int]:
    """Count ok records, duplicates, partial files and lost specs in the results folder."""
    visible = [p for p in runs_dir.iterdir() if not p.name.startswith(".")] if runs_dir.is_dir() else []
    partial = 0
    for path in visible:
        try:
            pq.read_table(path)
        except Exception:  # noqa: BLE001 - any unreadable file counts
            partial += 1
    runs = pd.read_parquet(runs_dir) if visible and not partial else pd.DataFrame(columns=["model", "seed", "status"])
    ok = runs[runs["status"] == "ok"]
    wanted = {(model, seed) for model in MODELS.split(",") for seed in range(SEEDS)}
    return {
        "specs": len(wanted),
        "ok records": len(ok),
        "duplicates": int(runs.duplicated(["model", "seed"]).sum()),
        "partial files": partial,
        "temporary files left (invisible to readers)": sum(p.name.startswith(".") for p in runs_dir.iterdir()),
        "lost specs": len(wanted - set(zip(ok["model"], ok["seed"]))),
        "ok records replaced by failures": len(ok_seen - set(ok["run_id"])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker-kills", type=int, default=20)
    parser.add_argument("--driver-kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drivers", type=int, default=1, help="concurrent drivers on one results folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = Path(tempfile.mkdtemp(prefix="chaos-"))
    cluster = LocalCluster([{"node_a": 1}, {"node_b": 1}])
    worker_kills = driver_kills = driver_starts = compactions = seen_twice = 0
    start = time.monotonic()
    runs_dir, ok_seen = out / "chaos" / "runs", set()
    location = store.locate(str(out), "chaos")
    try:
        drivers = [start_driver(cluster, out) for _ in range(args.drivers)]
        driver_starts += args.drivers
        while worker_kills < args.worker_kills or driver_kills < args.driver_kills:
            time.sleep(rng.uniform(1.0, 6.0))
            ok_seen |= ok_now(runs_dir)
            seen_twice += duplicated_now(runs_dir)
            if runs_dir.is_dir():
                compactions += store.compact(location) > 0
            if all(driver.poll() == 0 for driver in drivers):
                break  # everything recorded ok before the kills ran out
            for index, driver in enumerate(drivers):
                if driver.poll() is not None and driver.poll() != 0:  # retries used up: a new driver retries
                    drivers[index] = start_driver(cluster, out)
                    driver_starts += 1
            if worker_kills < args.worker_kills and (driver_kills >= args.driver_kills or rng.random() < 0.67):
                workers = training_workers(cluster)
                if workers:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    worker_kills += 1
            else:
                index = rng.randrange(len(drivers))
                if drivers[index].poll() is None:
                    os.killpg(drivers[index].pid, signal.SIGKILL)
                    drivers[index].wait()
                    driver_kills += 1
                drivers[index] = start_driver(cluster, out)
                driver_starts += 1
        for driver in drivers:
            driver.wait(timeout=600)
        ok_seen |= ok_now(runs_dir)
        final = start_driver(cluster, out)  # no more chaos: must finish everything cleanly
        driver_starts += 1
        final_code = final.wait(timeout=600)
    finally:
        cluster.stop()
    counts = inspect(runs_dir, ok_seen)
    print(f"worker kills: {worker_kills}\ndriver kills: {driver_kills}\ndriver starts: {driver_starts}")
    print(f"compactions during the run: {compactions}\nruns seen twice by pandas during the run: {seen_twice}")
    for name, value in counts.items():
        print(f"{name}: {value}")
    print(f"final driver exit code: {final_code}\nwall seconds: {time.monotonic() - start:.0f}\nresults: {out}")
    clean = (counts["duplicates"] == counts["partial files"] == counts["lost specs"]
             == counts["ok records replaced by failures"] == seen_twice == 0 and final_code == 0)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
