"""Data sets for the search, held in memory as tensors.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images,
  1 channel, 10 classes); the offline default. Kept at 8x8: the networks adapt
  to the resolution, and blowing the images up to 32x32 would cost 16x the compute.
* ``cifar10`` / ``cifar100``: the official python-pickle layout
  (``cifar-10-batches-py/data_batch_1`` ..., ``cifar-100-python/train``) or the
  official binary layout (``cifar-10-batches-bin/data_batch_1.bin`` ...,
  ``cifar-100-binary/train.bin``), found under ``data_dir``; ``download=True``
  fetches the official archive when the network allows.
* ``tinyimagenet``: the official folder layout (``train/<wnid>/images/*.JPEG``,
  ``val/images`` + ``val/val_annotations.txt``, ``wnids.txt``), 64x64.
* ``imagefolder``: a user's own ``root/<class>/<image>`` tree, resized to ``image_size``.

The search scores **validation** accuracy on a seeded split of the training
set; the test split is only for reporting a picked model.
"""

from __future__ import annotations

import logging
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from igcnas.errors import BadInput

__all__ = ["DATASETS", "DataSplits", "load_dataset", "augment_batch", "iterate_batches"]

log = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "cifar100", "tinyimagenet", "imagefolder")

_CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class DataSplits:
    """Normalised float32 NCHW tensors; ``augment`` says whether training batches get crop + flip."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    num_classes: int
    augment: bool
    # Which images of the labelled pool (the training files, test split excluded) are the validation
    # split: a study records the split's seed and fraction, and `igc-nas pick` must score on the same images.
    val_index: tuple[int, ...] = ()

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.train_x.shape[2])


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Stratified seeded split so that every class is in both parts."""
    tr, va = _split_indices(y, val_fraction, seed)
    return x[tr], y[tr], x[va], y[va]


def _split_indices(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices in training order, sorted validation indices) of a stratified seeded split."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) > 1:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    tr = rng.permutation(np.concatenate(train_idx))
    va = np.sort(np.concatenate(val_idx))
    return tr, va


def _normalise(train: np.ndarray, val: np.ndarray, test: np.ndarray | None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-channel mean/std from the training part, applied to every part (float32 NCHW)."""
    train_f = train.astype(np.float32)
    mean = train_f.mean(axis=(0, 2, 3), keepdims=True)
    std = train_f.std(axis=(0, 2, 3), keepdims=True) + 1e-6

    def apply(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((arr.astype(np.float32) - mean) / std))

    return apply(train), apply(val), None if test is None else apply(test)


def _finish(name: str, x: np.ndarray, y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None,
            num_classes: int, augment: bool, val_fraction: float, seed: int) -> DataSplits:
    if not 0.0 < val_fraction < 1.0:
        raise BadInput(f"val_fraction must be between 0 and 1, got {val_fraction}")
    tr, va = _split_indices(y, val_fraction, seed)
    tx, ty, vx, vy = x[tr], y[tr], x[va], y[va]
    test_x = None if test is None else test[0]
    train_t, val_t, test_t = _normalise(tx, vx, test_x)
    return DataSplits(
        name=name,
        train_x=train_t,
        train_y=torch.from_numpy(ty.astype(np.int64)),
        val_x=val_t,
        val_y=torch.from_numpy(vy.astype(np.int64)),
        test_x=test_t,
        test_y=None if test is None else torch.from_numpy(test[1].astype(np.int64)),
        num_classes=num_classes,
        augment=augment,
        val_index=tuple(int(i) for i in va),
    )


# ------------------------------------------------------------------------------------ digits


def _load_digits(seed: int, val_fraction: float) -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    # A fixed 20% test split (seed-independent), then a seeded train/validation split of the rest.
    xs, ys, test_x, test_y = _split(x, y, 0.2, seed=12345)
    return _finish("digits", xs, ys, (test_x, test_y), 10, False, val_fraction, seed)


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


def _load_cifar(name: str, data_dir: str | None, download: bool, seed: int, val_fraction: float) -> DataSplits:
    if data_dir is None:
        raise BadInput(f"dataset {name} needs --data-dir (a folder with the official files) or --download")
    root = Path(data_dir).expanduser()
    if not root.exists() and not download:
        raise BadInput(f"data dir {str(root)!r} does not exist")
    try:
        train_files, test_files, layout = _find_cifar(name, root)
    except ValueError:
        if not download:
            raise
        _download_cifar(name, root)
        train_files, test_files, layout = _find_cifar(name, root)
    if layout == "binary":
        label_bytes, label_index = (1, 0) if name == "cifar10" else (2, 1)  # CIFAR-100: coarse, fine

        def read(p: Path) -> tuple[np.ndarray, np.ndarray]:
            return _read_cifar_binary(p, label_bytes, label_index)
    else:
        key = "labels" if name == "cifar10" else "fine_labels"

        def read(p: Path) -> tuple[np.ndarray, np.ndarray]:
            return _read_cifar_pickle(p, key)

    parts = [read(p) for p in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test = None
    if test_files:
        test_parts = [read(p) for p in test_files]
        test = (np.concatenate([p[0] for p in test_parts]), np.concatenate([p[1] for p in test_parts]))
    num_classes = 10 if name == "cifar10" else 100
    if y.max() >= num_classes:
        raise BadInput(f"{name}: label {int(y.max())} out of range for {num_classes} classes")
    log.info("%s (%s layout): %d training images, %d test images", name, layout, len(x), 0 if test is None else
             len(test[0]))
    return _finish(name, x, y, test, num_classes, True, val_fraction, seed)


# ------------------------------------------------------------------------------- image trees


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"{path} is not a readable image: {exc}") from None


def _load_imagefolder(data_dir: str | None, image_size: int, seed: int, val_fraction: float) -> DataSplits:
    if data_dir is None:
        raise BadInput("dataset imagefolder needs --data-dir (a folder with one sub-folder per class)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise BadInput(f"data dir {str(root)!r} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise BadInput(f"imagefolder {str(root)!r} needs at least 2 class sub-folders, found {len(classes)}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).iterdir()):
            if not path.is_file():
                continue
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                raise BadInput(f"{path} is not an image file (allowed suffixes: {', '.join(sorted(_IMAGE_SUFFIXES))})")
            images.append(_read_image(path, image_size))
            labels.append(label)
    if not images:
        raise BadInput(f"imagefolder {str(root)!r} holds no images")
    return _finish("imagefolder", np.stack(images), np.asarray(labels), None, len(classes), True, val_fraction,
                   seed)


def _load_tinyimagenet(data_dir: str | None, seed: int, val_fraction: float) -> DataSplits:
    if data_dir is None:
        raise BadInput("dataset tinyimagenet needs --data-dir (the tiny-imagenet-200 folder)")
    root = Path(data_dir).expanduser()
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file() or not (root / "train").is_dir():
        raise BadInput(f"no Tiny ImageNet layout under {str(root)!r} (expected wnids.txt and train/)")
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    images, labels = [], []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise BadInput(f"missing Tiny ImageNet class folder {folder}")
        for path in sorted(folder.iterdir()):
            images.append(_read_image(path, 64))
            labels.append(index[wnid])
    test = None
    annotations = root / "val" / "val_annotations.txt"
    if annotations.is_file():
        test_images, test_labels = [], []
        for line in annotations.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2 and fields[1] in index:
                test_images.append(_read_image(root / "val" / "images" / fields[0], 64))
                test_labels.append(index[fields[1]])
        if test_images:
            test = (np.stack(test_images), np.asarray(test_labels))
    # The official "val" split serves as the test split; validation comes from train.
    return _finish("tinyimagenet", np.stack(images), np.asarray(labels), test, len(wnids), True, val_fraction,
                   seed)


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.2,
    image_size: int = 32,
) -> DataSplits:
    """Load ``name`` into memory; BadInput with a one-line reason when it cannot."""
    if name not in DATASETS:
        raise BadInput(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if name == "digits":
        splits = _load_digits(seed, val_fraction)
    elif name in ("cifar10", "cifar100"):
        splits = _load_cifar(name, data_dir, download, seed, val_fraction)
    elif name == "tinyimagenet":
        splits = _load_tinyimagenet(data_dir, seed, val_fraction)
    else:
        splits = _load_imagefolder(data_dir, image_size, seed, val_fraction)
    return splits


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The paper's CIFAR augmentation on a normalised batch: zero-pad, random crop, random h-flip."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # n, h, 1
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # n, 1, w
    batch = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(3)
    return out.contiguous()


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                    generator: torch.Generator | None = None):
    """Yield (x, y) mini-batches; shuffled when a generator is given."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
