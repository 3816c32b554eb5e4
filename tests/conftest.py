"""Shared fixtures (the real MNIST, small splits of it, a two-node Ray cluster) and the test tiers.

Tiers, by what a test needs (`pytest -m unit` is the inner loop, `make test-fast`):
- unit: neither Ray nor a deep-learning framework, seconds;
- train: trains or builds Keras models (TensorFlow or JAX), in this process or a child;
- ray: starts a Ray cluster (a local one, or the two-node fixture);
- slow: multi-minute, outside the default run (`make test-slow`);
- gpu: needs a real GPU (none in CI).
"""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from reducecnn import data  # noqa: E402

# Files whose tests start Ray, or train, as a whole (a test file holds one kind of test).
RAY_FILES = {"test_bad_input.py", "test_chaos.py", "test_cli.py", "test_cluster.py", "test_faults.py",
             "test_gpu_runner.py", "test_s3.py", "test_security.py"}
TRAIN_FILES = {"test_gpu_packing.py", "test_gpu_vectorized.py", "test_models.py", "test_perf.py",
               "test_step_time.py", "test_train.py", "test_user_models.py", "test_vectorized.py"}


def pytest_ignore_collect(collection_path, config) -> bool | None:
    """`-m unit` (make test-fast) does not even import the Ray and training files: trainers import
    Keras at their top, and the unit tier promises a process without TensorFlow."""
    unit_only = config.getoption("markexpr", "").split(" and ")[0].strip() == "unit"
    return True if unit_only and collection_path.name in RAY_FILES | TRAIN_FILES else None


def pytest_collection_modifyitems(config, items) -> None:
    """Mark each test with its tier; fix TensorFlow's threads only when a selected test trains."""
    for item in items:
        name = item.path.name
        if name in RAY_FILES:
            item.add_marker(pytest.mark.ray)
        elif name in TRAIN_FILES:
            item.add_marker(pytest.mark.train)
        else:
            item.add_marker(pytest.mark.unit)


def pytest_collection_finish(session) -> None:
    """In-process runs use one TF thread, fixed before any test touches TensorFlow: thread counts
    cannot change once TF is initialised, and they change the numbers. A unit-only run never
    imports TensorFlow."""
    if any(item.get_closest_marker("unit") is None for item in session.items):
        from reducecnn import devices

        devices.configure(threads=1)


def pytest_sessionfinish(session, exitstatus) -> None:
    """The unit tier's promise: no TensorFlow in the process (a unit test that imports it belongs in train)."""
    unit_only = session.items and all(item.get_closest_marker("unit") for item in session.items)
    if unit_only and "tensorflow" in sys.modules and exitstatus == 0:
        print("\nerror: the unit tier imported TensorFlow; mark the test that did as train", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def mnist() -> data.Dataset:
    return data.load("mnist")


@pytest.fixture(scope="session")
def small_mnist(mnist: data.Dataset) -> data.Splits:
    """2,000 training images, the holdout validation split and the full test set."""
    return data.split(mnist, "holdout", train_limit=2_000)


@pytest.fixture(scope="session")
def cluster():
    """A real two-node Ray cluster (ray start --head + ray start --address), 1 CPU and a custom
    resource per node; every process it started is gone after the session, even on failure."""
    from localcluster import LocalCluster

    cluster = LocalCluster([{"node_a": 1}, {"node_b": 1}])
    try:
        yield cluster
    finally:
        cluster.stop()
        assert cluster.leftover_pids() == [], "processes of the test cluster survived its teardown"
