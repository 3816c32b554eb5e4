"""Shared fixtures: the real MNIST, loaded once per session, and small splits of it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from reducecnn import data, devices  # noqa: E402

# In-process runs use one TF thread, fixed before any test touches TensorFlow: thread counts
# cannot change once TF is initialised, and they change the numbers.
devices.configure(threads=1)


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
