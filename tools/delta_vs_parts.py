"""deltalake (delta-rs) against reducecnn's parts + compaction: the same synthetic runs records,
one process, one machine. Needs `pip install deltalake` (not a reducecnn dependency).

    python -m tools.delta_vs_parts 10000
"""
import json, random, sys, tempfile, time
from pathlib import Path
import pandas as pd
import deltalake
from deltalake import DeltaTable, write_deltalake
from reducecnn import store
from reducecnn.config import make_benchmark_config
from tools.scale import scale_config, synthetic_run

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
SINGLE = 1000
root = Path(tempfile.mkdtemp(prefix="delta-vs-parts-"))
config = make_benchmark_config(scale_config(N, root))
rng = random.Random(0)
runs = [synthetic_run(s, rng) for s in config.specs()]
tables = [store.record_table([r]) for r, _ in runs]
out = {"runs": N, "deltalake": deltalake.__version__}

def rate(n, t): return round(n / t)

# delta: one append per record (first SINGLE), then batches of 64
path = str(root / "delta_single")
t = time.perf_counter()
for table in tables[:SINGLE]:
    write_deltalake(path, table, mode="append")
out["delta_write_one_per_call_rps"] = rate(SINGLE, time.perf_counter() - t)
t = time.perf_counter(); n = len(pd.read_parquet(path)); out["delta_1000_appends_pandas_read_s"] = round(time.perf_counter() - t, 3)
path = str(root / "delta")
t = time.perf_counter()
for first in range(0, N, 64):
    write_deltalake(path, store.record_table([r for r, _ in runs[first:first + 64]]), mode="append")
out["delta_write_batch64_rps"] = rate(N, time.perf_counter() - t)
t = time.perf_counter(); DeltaTable(path).to_pandas(columns=["run_id", "status"]); out["delta_resume_read_s"] = round(time.perf_counter() - t, 3)
t = time.perf_counter(); DeltaTable(path).optimize.compact(); out["delta_compact_s"] = round(time.perf_counter() - t, 2)
out["pandas_rows_after_delta_compact"] = len(pd.read_parquet(path, columns=["run_id"]))
t = time.perf_counter(); DeltaTable(path).to_pandas(); out["delta_to_pandas_after_compact_s"] = round(time.perf_counter() - t, 3)
DeltaTable(path).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
out["pandas_rows_after_vacuum"] = len(pd.read_parquet(path, columns=["run_id"]))
t = time.perf_counter(); pd.read_parquet(path); out["delta_pandas_read_after_vacuum_s"] = round(time.perf_counter() - t, 3)
out["delta_disk_mb"] = round(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6, 1)

# ours
location = store.locate(str(root), "single"); store.prepare(location)
t = time.perf_counter()
for r, e in runs[:SINGLE]:
    store.write_runs([(r, [])], location)
out["parts_write_one_per_call_rps"] = rate(SINGLE, time.perf_counter() - t)
location = store.locate(str(root), "parts"); store.prepare(location)
t = time.perf_counter()
for first in range(0, N, 64):
    store.write_runs([(r, []) for r, _ in runs[first:first + 64]], location)
store.compact(location)
out["parts_write_batch64_rps"] = rate(N, time.perf_counter() - t)
store._INDEXES.clear()
t = time.perf_counter(); store.recorded_ok(location); out["parts_resume_read_s"] = round(time.perf_counter() - t, 3)
out["pandas_rows_parts"] = len(pd.read_parquet(root / "parts" / "runs", columns=["run_id"]))
t = time.perf_counter(); pd.read_parquet(root / "parts" / "runs"); out["parts_pandas_read_s"] = round(time.perf_counter() - t, 3)
out["parts_disk_mb"] = round(sum(p.stat().st_size for p in (root / "parts" / "runs").rglob("*") if p.is_file()) / 1e6, 1)
print(json.dumps(out))
