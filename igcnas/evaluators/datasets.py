"""The data sets the search knows, by name: a ``{name: loader}`` table and the readers behind it.

Light on purpose: nothing here imports torch when the module is imported (the loaders import the torch
side, :mod:`igcnas.evaluators.data_partition`, when they run), so checking a data set's name -- as
``SearchOptions`` does for every option set -- costs no torch import. The rooms around it: the splits
and their units are :mod:`igcnas.evaluators.data_splits`', the augmentation :mod:`igcnas.evaluators.augment`'s,
the on-disk image cache :mod:`igcnas.evaluators.data_cache`'s.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 1 channel, 10 classes);
  the offline default. Kept at 8x8: the networks adapt to the resolution.
* ``cifar10`` / ``cifar100``: the official python-pickle layout (``cifar-10-batches-py/data_batch_1`` ...,
  ``cifar-100-python/train``) or binary layout (``cifar-10-batches-bin/data_batch_1.bin`` ...,
  ``cifar-100-binary/train.bin``) under ``data_dir``; ``download=True`` fetches the official archive.
* ``tinyimagenet``: the official folder layout (``train/<wnid>/images/*.JPEG``, ``val/images`` +
  ``val/val_annotations.txt``, ``wnids.txt``), 64x64; its official "val" part is the test split.
* ``imagefolder``: a user's own ``root/<class>/<image>`` tree, resized to ``image_size``.

Digits and CIFAR are always held in memory. The folder sets are decoded once into a cached uint8 array
on disk (:mod:`igcnas.evaluators.data_cache`: where it lives, its key, when it is rebuilt); when their
uint8 training split is larger than ``memory_cap_mb`` it is streamed from that cache by a DataLoader
(validation and test splits are a fraction of the set and are held in memory).
"""

from __future__ import annotations

import logging
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from igcnas.errors import BadInput

if TYPE_CHECKING:
    from igcnas.evaluators.data_splits import DataSplits

__all__ = ["DATASETS", "LOADERS", "DATA_SHAPES", "DataShape", "LoadRequest", "load_dataset"]

log = logging.getLogger(__name__)

_CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


@dataclass(frozen=True, kw_only=True)
class LoadRequest:
    """What :func:`load_dataset` was asked for, checked; each loader reads the fields its data set uses."""

    name: str
    data_dir: str | None
    download: bool
    seed: int
    val_fraction: float
    image_size: int
    cache_dir: str | Path | None
    memory_cap_mb: float | None
    progress: bool


# ------------------------------------------------------------------------------------ digits


def _load_digits(request: LoadRequest) -> DataSplits:
    from sklearn.datasets import load_digits

    from igcnas.evaluators.data_partition import STD_EPS, in_memory_splits, split_indices, stratified_split

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None, :, :]  # integers 0..16
    y = bunch.target.astype(np.int64)
    # A fixed 20% test split (seed-independent), then a seeded train/validation split of the rest.
    xs, ys, test_x, test_y = stratified_split(x, y, 0.2, seed=12345)
    # Statistics exactly as the float pipeline computed them (float32 numpy over x / 16): bit-identical.
    train_f = xs[split_indices(ys, request.val_fraction, request.seed)[0]].astype(np.float32) / 16.0
    mean = train_f.mean(axis=(0, 2, 3))
    std = train_f.std(axis=(0, 2, 3)) + STD_EPS
    return in_memory_splits("digits", xs, ys, (test_x, test_y), num_classes=DATA_SHAPES["digits"].num_classes,
                            augment=False, val_fraction=request.val_fraction, seed=request.seed, scale=1 / 16,
                            stats=(mean.astype(np.float32), std.astype(np.float32)))


# ------------------------------------------------------------------------------------- CIFAR


def _read_cifar_binary(path: Path, label_bytes: int, label_index: int) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + 3072
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % record != 0:
        raise BadInput(f"{path} is not a CIFAR binary file: {len(raw)} bytes is not a multiple of {record}")
    data = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    return data[:, label_bytes:].reshape(-1, 3, 32, 32), data[:, label_index].astype(np.int64)


def _read_cifar_pickle(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")  # noqa: S301 - the official format is pickle
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise BadInput(f"{path} is not a CIFAR python batch: {exc}") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key.encode() not in batch:
        raise BadInput(f"{path} is not a CIFAR python batch (no data/{label_key} entries)")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise BadInput(f"{path} is not a CIFAR python batch: data shape {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar(name: str, root: Path) -> tuple[list[Path], list[Path], str]:
    """Locate training and test files under ``root`` in either official layout."""
    if name == "cifar10":
        candidates = [
            (root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "pickle"),
            (root, [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "pickle"),
            (root / "cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"],
             "binary"),
            (root, [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], "binary"),
        ]
    else:
        candidates = [
            (root / "cifar-100-python", ["train"], ["test"], "pickle"),
            (root, ["train"], ["test"], "pickle"),
            (root / "cifar-100-binary", ["train.bin"], ["test.bin"], "binary"),
            (root, ["train.bin"], ["test.bin"], "binary"),
        ]
    for base, train_names, test_names, layout in candidates:
        train = [base / n for n in train_names]
        if all(p.is_file() for p in train):
            test = [base / n for n in test_names if (base / n).is_file()]
            return train, test, layout
    raise BadInput(
        f"no {name} files under {str(root)!r}: expected the official python layout or binary layout "
        f"(or pass --download)"
    )


def _download_cifar(name: str, root: Path) -> None:
    url = _CIFAR_URLS[name]
    root.mkdir(parents=True, exist_ok=True)
    archive = root / url.rsplit("/", 1)[1]
    log.info("downloading %s to %s", url, archive)
    try:
        tmp = archive.with_suffix(".part")
        urllib.request.urlretrieve(url, tmp)  # noqa: S310 - fixed https URL of the official archive
        tmp.rename(archive)
    except OSError as exc:
        raise BadInput(f"could not download {name} from {url}: {exc}") from None
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")




def _cifar_reader(name: str, layout: str) -> Callable[[Path], tuple[np.ndarray, np.ndarray]]:
    """How one file of ``name`` in ``layout`` is read: CIFAR-100 is read by its fine labels."""
    if layout == "binary":
        label_bytes, label_index = (1, 0) if name == "cifar10" else (2, 1)  # CIFAR-100: coarse, fine
        return lambda path: _read_cifar_binary(path, label_bytes, label_index)
    key = "labels" if name == "cifar10" else "fine_labels"
    return lambda path: _read_cifar_pickle(path, key)


def _cifar_files(name: str, data_dir: str | None, download: bool) -> tuple[list[Path], list[Path], str]:
    """The training and test files of ``name`` and their layout; downloaded first when asked and missing."""
    if data_dir is None:
        raise BadInput(f"dataset {name} needs --data-dir (a folder with the official files) or --download")
    root = Path(data_dir).expanduser()
    if not root.exists() and not download:
        raise BadInput(f"data dir {str(root)!r} does not exist")
    try:
        return _find_cifar(name, root)
    except ValueError:
        if not download:
            raise
        _download_cifar(name, root)
        return _find_cifar(name, root)


def _load_cifar(request: LoadRequest) -> DataSplits:
    from igcnas.evaluators.data_partition import in_memory_splits

    name = request.name
    train_files, test_files, layout = _cifar_files(name, request.data_dir, request.download)
    read = _cifar_reader(name, layout)
    parts = [read(p) for p in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    del parts
    test = None
    if test_files:
        test_parts = [read(p) for p in test_files]
        test = (np.concatenate([p[0] for p in test_parts]), np.concatenate([p[1] for p in test_parts]))
    num_classes = DATA_SHAPES[name].num_classes
    if y.max() >= num_classes:
        raise BadInput(f"{name}: label {int(y.max())} out of range for {num_classes} classes")
    log.info("%s (%s layout): %d training images, %d test images", name, layout, len(x), 0 if test is None else
             len(test[0]))
    return in_memory_splits(name, x, y, test, num_classes=num_classes, augment=True,
                            val_fraction=request.val_fraction, seed=request.seed, scale=1 / 255)


# ------------------------------------------------------------------------------- image trees


def _cache_dir(cache_dir: str | Path | None, root: Path) -> Path:
    from igcnas.evaluators.data_cache import default_cache_dir

    return default_cache_dir(root) if cache_dir is None else Path(cache_dir).expanduser()


def _load_imagefolder(request: LoadRequest) -> DataSplits:
    from igcnas.evaluators.data_cache import imagefolder_listing, open_or_build
    from igcnas.evaluators.data_partition import cached_splits

    if request.data_dir is None:
        raise BadInput("dataset imagefolder needs --data-dir (a folder with one sub-folder per class)")
    root = Path(request.data_dir).expanduser()
    if not root.is_dir():
        raise BadInput(f"data dir {str(root)!r} does not exist")
    skip = None if request.cache_dir is None else Path(request.cache_dir).expanduser()
    listing, labels, classes = imagefolder_listing(root, request.image_size, skip=skip)
    pool = open_or_build(listing, _cache_dir(request.cache_dir, root), progress=request.progress)
    return cached_splits("imagefolder", pool, labels, None, num_classes=len(classes),
                         val_fraction=request.val_fraction, seed=request.seed, memory_cap_mb=request.memory_cap_mb)


def _load_tinyimagenet(request: LoadRequest) -> DataSplits:
    from igcnas.evaluators.data_cache import open_or_build, tinyimagenet_listings
    from igcnas.evaluators.data_partition import cached_splits

    if request.data_dir is None:
        raise BadInput("dataset tinyimagenet needs --data-dir (the tiny-imagenet-200 folder)")
    root = Path(request.data_dir).expanduser()
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    (listing, labels), test_part, wnids = tinyimagenet_listings(root)
    where = _cache_dir(request.cache_dir, root)
    pool = open_or_build(listing, where, progress=request.progress)
    test = None
    if test_part is not None:
        test = (open_or_build(test_part[0], where, progress=request.progress), test_part[1])
    # The official "val" split serves as the test split; validation comes from train.
    return cached_splits("tinyimagenet", pool, labels, test, num_classes=len(wnids),
                         val_fraction=request.val_fraction, seed=request.seed, memory_cap_mb=request.memory_cap_mb)


# ------------------------------------------------------------------------------- the table

LOADERS: dict[str, Callable[[LoadRequest], DataSplits]] = {
    "digits": _load_digits,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "tinyimagenet": _load_tinyimagenet,
    "imagefolder": _load_imagefolder,
}
DATASETS = tuple(LOADERS)  # the names, in the order the command line lists them


class DataShape(NamedTuple):
    """A data set's image shape and classes: enough to build (and time) its networks without loading it."""

    in_channels: int
    input_size: int  # image side in pixels
    num_classes: int


# The data sets whose shape is fixed; an image folder's comes from its tree and the image size asked for.
# The loaders read their class counts here (tinyimagenet's from its wnids.txt: 200 in the official set).
DATA_SHAPES: dict[str, DataShape] = {
    "digits": DataShape(1, 8, 10),
    "cifar10": DataShape(3, 32, 10),
    "cifar100": DataShape(3, 32, 100),
    "tinyimagenet": DataShape(3, 64, 200),
}


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    image_size: int = 32,
    cache_dir: str | Path | None = None,
    memory_cap_mb: float | None = None,
    progress: bool = False,
) -> DataSplits:
    """Load ``name``; BadInput with a one-line reason when it cannot.

    ``cache_dir`` (folder sets only): where decoded images are cached; default ``<data_dir>/.igcnas-cache``
    when writable, else ``~/.cache/igcnas``. ``memory_cap_mb`` (folder sets only): None holds everything
    in memory; otherwise a uint8 training split larger than this streams from the cache. ``progress``: a
    progress bar on stderr while a cache is built.
    """
    from igcnas.evaluators.data_splits import positive_int  # here, not at the top: this module stays torch-free

    if name not in LOADERS:
        raise BadInput(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if not 0.0 < val_fraction < 1.0:
        raise BadInput(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if memory_cap_mb is not None and not memory_cap_mb > 0:
        raise BadInput(f"memory_cap_mb must be a positive number of MB or None, got {memory_cap_mb!r}")
    if not positive_int(image_size):
        raise BadInput(f"image_size must be a positive integer, got {image_size!r}")
    request = LoadRequest(name=name, data_dir=data_dir, download=download, seed=seed, val_fraction=val_fraction,
                          image_size=image_size, cache_dir=cache_dir, memory_cap_mb=memory_cap_mb, progress=progress)
    return LOADERS[name](request)
