"""Every bad input of the benchmark: one line naming the problem, exit 2, nothing written or changed."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reducecnn import data
from reducecnn.cli import benchmark_main


class _CallsSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _keras_npz(folder: Path, mnist: data.Dataset, **replace) -> list[str]:
    arrays = {"x_train": mnist.x_train, "y_train": mnist.y_train, "x_test": mnist.x_test, "y_test": mnist.y_test}
    np.savez(folder / "mnist.npz", **(arrays | replace))
    return ["--data-dir", str(folder)]


def _changed_pixel(tmp: Path, mnist: data.Dataset) -> list[str]:
    x_test = mnist.x_test.copy()
    x_test[5, 5, 5] ^= 0x10
    return _keras_npz(tmp, mnist, x_test=x_test)


def _truncated_npz(tmp: Path, mnist: data.Dataset) -> list[str]:
    flags = _keras_npz(tmp, mnist)
    os.truncate(tmp / "mnist.npz", 1_000_000)
    return flags


def _forbidden_pickle(tmp: Path, mnist: data.Dataset) -> list[str]:
    with gzip.open(tmp / "mnist.pkl.gz", "wb") as file:
        pickle.dump(_CallsSystem(), file)
    return ["--data-dir", str(tmp)]


def _file(tmp: Path, name: str, text: str) -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _results_with(tmp: Path, name: str, content: bytes | pd.DataFrame) -> None:
    runs = tmp / "out" / "mnist-holdout" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_parquet(runs / name)
    else:
        (runs / name).write_bytes(content)


def _other_schema_version(tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    runs = tmp / "out" / "mnist-holdout" / "runs"
    runs.mkdir(parents=True)
    table = pa.table({"run_id": ["x"], "status": ["ok"]}).replace_schema_metadata({"reducecnn_schema_version": "99"})
    pq.write_table(table, runs / "x.parquet")


# (case, flags or a function of (tmp, mnist) giving flags, message in the one line)
CASES = [
    ("unknown model", ["--models", "baseline,nope"], "unknown model 'nope'; known: approach1, approach2, baseline, conv8k, deep1k, sep1k, sep8k, share16, share1k, share1k6, share1k6s, share1k9, small, small2000, small2k"),
    ("zero seeds", ["--seeds", "0"], "seeds: a number of seeds must lie between 1 and 100,000, got 0"),
    ("negative seeds", ["--seeds", "-2"], "seeds: a number of seeds must lie between 1 and 100,000, got -2"),
    ("too many seeds", ["--seeds", str(2**40)], "seeds: a number of seeds must lie between 1 and 100,000"),
    ("seed above 2**32 - 1", ["--seed-list", f"0,{2**32}"], "seeds: must be between 0 and 4294967295 (2**32 - 1), got 4294967296"),
    ("seed above 2**63", ["--seed-list", str(2**64)], "seeds: must be between 0 and 4294967295"),
    ("epochs 0", ["--epochs", "0"], "epochs: must be greater than or equal to 1"),
    ("batch 0", ["--batch-size", "0"], "batch_size: must be greater than or equal to 1"),
    ("negative GPU fraction", ["--gpus-per-run", "-0.5"], "gpus_per_run: must be greater than or equal to 0"),
    ("GPU fraction above 1", ["--gpus-per-run", "1.5"], "gpus_per_run 1.5 must be a fraction <= 1 or a whole number"),
    ("no runs per task", ["--runs-per-task", "0"], "runs_per_task: must be greater than or equal to 1"),
    ("groups under mirroring", ["--runs-per-task", "2", "--cpu-devices", "2"],
     "runs_per_task > 1 cannot be combined with cpu_devices > 1"),
    ("groups on several GPUs", ["--runs-per-task", "2", "--gpus-per-run", "2"],
     "runs_per_task > 1 cannot be combined with gpus_per_run >= 2"),
    ("unknown protocol", ["--protocol", "holdon"], "protocol: must be 'holdout' or 'study'"),
    ("misspelled config key", lambda tmp, m: ["--config", str(_file(tmp, "c.yaml", "epoch: 3\n"))],
     "c.yaml: unknown field 'epoch' (did you mean epochs?)"),
    ("missing config file", lambda tmp, m: ["--config", str(tmp / "nope.yaml")], "does not exist"),
    ("malformed YAML", lambda tmp, m: ["--config", str(_file(tmp, "c.yaml", "seeds: [0,\n"))], "is malformed"),
    ("malformed JSON", lambda tmp, m: ["--config", str(_file(tmp, "c.json", '{"seeds": '))], "is malformed"),
    ("malformed TOML", lambda tmp, m: ["--config", str(_file(tmp, "c.toml", "seeds = [0,"))], "is malformed"),
    ("--out is a file", lambda tmp, m: ["--out", str(_file(tmp, "afile", "x"))], "is a file, not a folder"),
    ("--out unwritable", lambda tmp, m: ["--out", str(_file(tmp, "afile", "x") / "sub")], "is not writable"),
    ("data dir without MNIST", lambda tmp, m: ["--data-dir", str(tmp)], "holds no mnist"),
    ("corrupted MNIST file", _changed_pixel, "checksum mismatch (corrupt or changed file)"),
    ("truncated MNIST file", _truncated_npz, "not a Keras-format npz"),
    ("pickle naming a forbidden global", _forbidden_pickle, "forbidden global"),
    ("non-Parquet file in results",
     lambda tmp, m: _results_with(tmp, "junk.parquet", b"this is not parquet") or [],
     "junk.parquet: not valid Parquet"),
    ("Parquet file of another program in results",
     lambda tmp, m: _results_with(tmp, "foreign.parquet", pd.DataFrame({"a": [1]})) or [],
     "foreign.parquet: not a reducecnn results file"),
    ("results file of another schema version", lambda tmp, m: _other_schema_version(tmp) or [],
     "schema version 99, this reducecnn reads 1"),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, flags, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tmp_path, mnist, capsys, case, flags, message):
    flags = flags(tmp_path, mnist) if callable(flags) else flags
    if "--out" not in flags:
        flags = [*flags, "--out", str(tmp_path / "out")]
    before = _snapshot(tmp_path)
    assert benchmark_main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0]
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("margin", ["0", "-1", "20", "nan"])
def test_report_margin_outside_its_range_is_one_line_exit_2(tmp_path, capsys, margin):
    from reducecnn.cli import main

    (tmp_path / "bench" / "runs").mkdir(parents=True)
    before = _snapshot(tmp_path)
    assert main(["report", str(tmp_path / "bench"), "--margin", margin]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--margin is in percentage points and must lie in (0, 10]" in err[0], err
    assert _snapshot(tmp_path) == before
