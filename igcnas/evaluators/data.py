"""Data sets for the search: images held once as uint8, normalised and augmented a batch at a time.

Why uint8: CIFAR-10/100's 60,000 32x32 RGB images are 184 MB as uint8 and 4x that as float32; keeping
the bytes (on the training device when asked) and converting one batch at a time lets the real sets fit,
and moves a quarter of the bytes to a GPU. Units: a split's images are uint8 NCHW; ``scale`` maps them to
the units the statistics are in (1/16 for digits, whose values are 0..16; 1/255 for photographs), and a
normalised value is ``(uint8 * scale - mean) / std`` with per-channel ``mean``/``std`` (float32) from the
**training** part. ``std`` carries the +1e-6 the float pipeline always added: in scaled units for digits
(bit-identical to dividing by 16 and normalising), in 0..255 units for photographs (equal up to float
rounding; their statistics are exact integer histograms, so they never need the float array).

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

Augmentation (the IGC papers' CIFAR recipe): zero padding of 4 around the normalised image, a random
crop back to size, a random horizontal flip; drawn with the caller's CPU generator in a fixed order (the
epoch's permutation, then per batch the row offsets, column offsets and flips), so a seed gives the same
batches on any device and whether images are in memory or streamed.

The search scores **validation** accuracy on a seeded split of the training set; the test split is only
for reporting a picked model.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import tarfile
import threading
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data

from igcnas.errors import BadInput
from igcnas.evaluators.data_cache import (
    CachedImages,
    StreamedBatches,
    array_chunks,
    channel_stats,
    default_cache_dir,
    imagefolder_listing,
    open_or_build,
    tinyimagenet_listings,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataSplits",
    "augment_batch",
    "crop_and_flip",
    "draw_augmentation",
    "iterate_batches",
    "load_dataset",
]

log = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "cifar100", "tinyimagenet", "imagefolder")
SPLITS = ("train", "val", "test")

_CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
_EPS = 1e-6
_MATERIALISE = threading.Lock()
Device = torch.device | str


# ------------------------------------------------------------------------------ augmentation


def draw_augmentation(n: int, generator: torch.Generator, pad: int = 4
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offsets, column offsets, flips) for ``n`` images, drawn on the CPU in that order."""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return oy, ox, flip


def crop_and_flip(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor,
                  pad: int = 4) -> torch.Tensor:
    """Image i of ``x`` zero-padded by ``pad``, cropped at (oy[i], ox[i]), mirrored when flip[i]: one gather."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = oy.to(dev)[:, None] + torch.arange(h, device=dev)  # n, h
    forward = torch.arange(w, device=dev)
    cols = ox.to(dev)[:, None] + torch.where(flip.to(dev)[:, None], forward.flip(0), forward)  # n, w
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The paper's CIFAR augmentation on a normalised batch on any device (randomness drawn on the CPU)."""
    return crop_and_flip(x, *draw_augmentation(len(x), generator, pad), pad=pad)


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                    generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) mini-batches of in-memory tensors; shuffled when a generator is given (compatibility)."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx.to(x.device)], y[idx.to(y.device)]


# ---------------------------------------------------------------------------------- the splits


def _as_device(device: Device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass(frozen=True, eq=False, repr=False, init=False)
class DataSplits:
    """The train / validation / (optional) test splits of one data set; see the module docstring for units.

    Storage per split: ``<split>_u8``, uint8 NCHW (a tensor, or :class:`CachedImages` for a training split
    streamed from disk). ``overrides`` are float32 normalised tensors standing in for a split's images
    (``dataclasses.replace(data, train_x=...)`` sets one); batches then come from them unchanged.
    Construct with keywords; ``train_x``/``val_x``/``test_x`` are accepted as overrides.
    """

    name: str
    num_classes: int
    augment: bool
    train_y: torch.Tensor
    val_y: torch.Tensor
    test_y: torch.Tensor | None
    # Which images of the labelled pool (the training files, test split excluded) are the validation
    # split: a study records the split's seed and fraction, and `igc-nas pick` must score on the same images.
    val_index: tuple[int, ...]
    train_u8: torch.Tensor | CachedImages | None
    val_u8: torch.Tensor | None
    test_u8: torch.Tensor | None
    mean: torch.Tensor | None  # (C,) float32, scaled units
    std: torch.Tensor | None  # (C,) float32, +1e-6 included
    scale: float
    overrides: Mapping[str, torch.Tensor]

    def __init__(self, *, name: str, num_classes: int, augment: bool, train_y: torch.Tensor, val_y: torch.Tensor,
                 test_y: torch.Tensor | None = None, val_index: tuple[int, ...] = (),
                 train_u8: torch.Tensor | CachedImages | None = None, val_u8: torch.Tensor | None = None,
                 test_u8: torch.Tensor | None = None, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, scale: float = 1.0,
                 overrides: Mapping[str, torch.Tensor] | None = None, train_x: torch.Tensor | None = None,
                 val_x: torch.Tensor | None = None, test_x: torch.Tensor | None = None) -> None:
        merged = dict(overrides or {})
        for split, given in (("train", train_x), ("val", val_x), ("test", test_x)):
            if given is not None:
                merged[split] = given
        values = {"name": name, "num_classes": num_classes, "augment": augment, "train_y": train_y, "val_y": val_y,
                  "test_y": test_y, "val_index": tuple(val_index), "train_u8": train_u8, "val_u8": val_u8,
                  "test_u8": test_u8, "mean": mean, "std": std, "scale": float(scale), "overrides": merged}
        for key, value in values.items():
            object.__setattr__(self, key, value)
        for split in SPLITS:
            images, labels = self._storage(split), getattr(self, f"{split}_y")
            if images is None and (split != "test" or labels is not None):
                raise BadInput(f"DataSplits: split {split} needs {split}_u8 or {split}_x next to {split}_y")
            if images is not None and (labels is None or len(images) != len(labels)):
                raise BadInput(f"DataSplits: {split} has {len(images)} images but "
                               f"{'no' if labels is None else len(labels)} labels")
        if any(getattr(self, f"{s}_u8") is not None for s in SPLITS) and (mean is None or std is None):
            raise BadInput("DataSplits: uint8 images need mean and std")

    # -- compatibility views: whole splits in float32 -------------------------------------------------

    @property
    def train_x(self) -> torch.Tensor:
        """The whole training split, normalised float32 (4 bytes per value: for small data, evaluation, tests).

        Materialised on first access and kept; on a streamed split this reads the whole cache into memory.
        """
        return self._float("train")

    @property
    def val_x(self) -> torch.Tensor:
        """The whole validation split, normalised float32 (materialised on first access and kept)."""
        return self._float("val")

    @property
    def test_x(self) -> torch.Tensor | None:
        """The whole test split, normalised float32, or None when the data set has none."""
        return self._float("test")

    def _float(self, split: str) -> torch.Tensor | None:
        if split in self.overrides:
            return self.overrides[split]
        images = self._storage(split)
        if images is None:
            return None
        key = f"_float_{split}"
        with _MATERIALISE:
            cached = self.__dict__.get(key)
            if cached is None:
                if isinstance(images, CachedImages):
                    log.warning("%s: materialising the streamed %s split as float32 (%.0f MB)", self.name, split,
                                4 * images.nbytes / 2**20)
                    cached = torch.empty(images.shape, dtype=torch.float32)
                    for start, chunk in images.chunks():
                        cached[start:start + len(chunk)] = self._normalise(torch.from_numpy(chunk))
                else:
                    cached = self._normalise(images)
                object.__setattr__(self, key, cached)
            return cached

    # -- shape and place ------------------------------------------------------------------------------

    def _storage(self, split: str) -> torch.Tensor | CachedImages | None:
        return self.overrides.get(split, getattr(self, f"{split}_u8"))

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def n_val(self) -> int:
        return len(self.val_y)

    @property
    def n_test(self) -> int:
        return 0 if self.test_y is None else len(self.test_y)

    @property
    def in_channels(self) -> int:
        return int(self._storage("train").shape[1])

    @property
    def input_size(self) -> int:
        return int(self._storage("train").shape[2])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image as networks take it, (channels, height, width): what NetworkConfig.input_shape must match."""
        return (self.in_channels, self.input_size, self.input_size)

    @property
    def streamed(self) -> bool:
        """True when the training images stay on disk (read batch by batch from the cache)."""
        return isinstance(self._storage("train"), CachedImages)

    @property
    def device(self) -> torch.device:
        """Where the in-memory tensors live."""
        return self.train_y.device

    def to(self, device: Device) -> DataSplits:
        """A copy whose in-memory tensors (uint8 images, labels, statistics) live on ``device``.

        Streamed splits stay on disk. Returns ``self`` when everything is there already.
        """
        target = _as_device(device)
        names = ["train_y", "val_y", "test_y", "train_u8", "val_u8", "test_u8", "mean", "std"]
        tensors = {k: getattr(self, k) for k in names if isinstance(getattr(self, k), torch.Tensor)}
        if all(t.device == target for t in [*tensors.values(), *self.overrides.values()]):
            return self
        moved = {k: t.to(target) for k, t in tensors.items()}
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields.update(moved, overrides={k: t.to(target) for k, t in self.overrides.items()})
        return DataSplits(**fields)

    # -- batches ----------------------------------------------------------------------------------------

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float32 ``(images * scale - mean) / std`` on the images' device."""
        assert self.mean is not None and self.std is not None
        dev = images.device
        x = images.to(torch.float32).mul_(self.scale)
        return x.sub_(self.mean.to(dev).view(1, -1, 1, 1)).div_(self.std.to(dev).view(1, -1, 1, 1))

    def _rows(self, split: str, index: torch.Tensor | slice, device: torch.device) -> torch.Tensor:
        """Normalised float32 images ``index`` (positions in ``split``) on ``device``."""
        images = self._storage(split)
        if isinstance(images, CachedImages):
            if isinstance(index, slice):
                raw = images.read_range(index.start, index.stop)
            else:
                raw = images.read(index.numpy())
            return self._normalise(torch.from_numpy(raw).to(device))
        assert images is not None
        picked = images[index] if isinstance(index, slice) else images[index.to(images.device)]
        picked = picked.to(device)
        return picked if split in self.overrides else self._normalise(picked)

    def _target(self, device: Device | None) -> torch.device:
        return self.device if device is None else _as_device(device)

    def train_batches(self, batch_size: int, *, generator: torch.Generator, device: Device | None = None,
                      num_workers: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of (normalised float32 x, int64 y) on ``device``, augmented when ``augment``.

        ``generator`` (a CPU generator) draws the permutation, then per batch the augmentation. A streamed
        split is read by a DataLoader with ``num_workers`` processes (default min(2, CPUs); pinned memory
        when ``device`` is CUDA); the batches equal the in-memory ones for the same generator state.
        ``device`` None: where the in-memory tensors are.
        """
        _check_batch_size(batch_size)
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise BadInput("generator must be a CPU torch.Generator (randomness is drawn on the CPU)")
        target = self._target(device)
        order = torch.randperm(self.n_train, generator=generator)
        starts = range(0, self.n_train, batch_size)
        if self.streamed:
            source: Iterator[torch.Tensor] = self._stream(order, batch_size, target, num_workers)
        else:
            source = (self._rows("train", order[s:s + batch_size], target) for s in starts)
        try:
            for start, xb in zip(starts, source):
                idx = order[start:start + batch_size]
                yb = self.train_y[idx.to(self.train_y.device)].to(target)
                if self.augment:
                    xb = augment_batch(xb, generator)
                yield xb, yb
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _stream(self, order: torch.Tensor, batch_size: int, target: torch.device,
                num_workers: int | None) -> Iterator[torch.Tensor]:
        images = self._storage("train")
        assert isinstance(images, CachedImages)
        workers = min(2, os.cpu_count() or 1) if num_workers is None else int(num_workers)
        if workers < 0:
            raise BadInput(f"num_workers must be 0 or more, got {workers}")
        if workers and multiprocessing.current_process().daemon:
            workers = 0  # a daemonic process (a pool's worker) may not start its own: read here instead
        pin = target.type == "cuda"
        batches = [order[s:s + batch_size].numpy() for s in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(StreamedBatches(images), batch_size=None, sampler=batches,
                                             num_workers=workers, pin_memory=pin)
        for raw in loader:
            yield self._normalise(raw.to(target, non_blocking=pin))

    def eval_batches(self, split: str = "val", batch_size: int = 256, *, device: Device | None = None,
                     max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised float32 x, int64 y) of ``split`` in order, unaugmented, on ``device``."""
        if split not in SPLITS:
            raise BadInput(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        _check_batch_size(batch_size)
        labels = getattr(self, f"{split}_y")
        if labels is None:
            raise BadInput(f"split test: data set {self.name} has no test split")
        target = self._target(device)
        for number, start in enumerate(range(0, len(labels), batch_size)):
            if max_batches is not None and number >= max_batches:
                break
            stop = min(start + batch_size, len(labels))
            yield self._rows(split, slice(start, stop), target), labels[start:stop].to(target)

    # -- plumbing ---------------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_float_")}

    def __repr__(self) -> str:
        test = f", test={self.n_test}" if self.test_y is not None else ""
        return (f"DataSplits({self.name!r}, train={self.n_train}, val={self.n_val}{test}, "
                f"shape={self.in_channels}x{self.input_size}x{self.input_size}, classes={self.num_classes}, "
                f"streamed={self.streamed}, device={self.device})")


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_batch_size(batch_size: int) -> None:
    if not _positive_int(batch_size):
        raise BadInput(f"batch_size must be a positive integer, got {batch_size!r}")


# ----------------------------------------------------------------------------- splits and statistics


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


def _exact_stats(chunks: Iterable[np.ndarray], channels: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (+1e-6 in 0..255 units), in scaled units, from exact uint8 histograms."""
    mean, std = channel_stats(chunks, channels)
    return torch.from_numpy((mean * scale).astype(np.float32)), torch.from_numpy(((std + _EPS) * scale).astype(np.float32))


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise BadInput(f"val_fraction must be between 0 and 1, got {val_fraction}")


def _finish(name: str, x: np.ndarray, y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None,
            num_classes: int, augment: bool, val_fraction: float, seed: int, *, scale: float,
            stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> DataSplits:
    """In-memory uint8 images ``x`` split and wrapped; statistics exact unless given."""
    _check_fraction(val_fraction)
    tr, va = _split_indices(y, val_fraction, seed)
    train = np.ascontiguousarray(x[tr])
    mean, std = stats if stats is not None else _exact_stats(array_chunks(train), x.shape[1], scale)
    return DataSplits(
        name=name, num_classes=num_classes, augment=augment, scale=scale, mean=mean, std=std,
        train_u8=torch.from_numpy(train), train_y=torch.from_numpy(y[tr].astype(np.int64)),
        val_u8=torch.from_numpy(np.ascontiguousarray(x[va])), val_y=torch.from_numpy(y[va].astype(np.int64)),
        test_u8=None if test is None else torch.from_numpy(np.ascontiguousarray(test[0])),
        test_y=None if test is None else torch.from_numpy(test[1].astype(np.int64)),
        val_index=tuple(int(i) for i in va),
    )


# ------------------------------------------------------------------------------------ digits


def _load_digits(seed: int, val_fraction: float) -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None, :, :]  # integers 0..16
    y = bunch.target.astype(np.int64)
    # A fixed 20% test split (seed-independent), then a seeded train/validation split of the rest.
    xs, ys, test_x, test_y = _split(x, y, 0.2, seed=12345)
    _check_fraction(val_fraction)
    # Statistics exactly as the float pipeline computed them (float32 numpy over x / 16): bit-identical.
    train_f = xs[_split_indices(ys, val_fraction, seed)[0]].astype(np.float32) / 16.0
    mean = train_f.mean(axis=(0, 2, 3))
    std = train_f.std(axis=(0, 2, 3)) + _EPS
    stats = (torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32)))
    return _finish("digits", xs, ys, (test_x, test_y), 10, False, val_fraction, seed, scale=1 / 16, stats=stats)


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
    del parts
    test = None
    if test_files:
        test_parts = [read(p) for p in test_files]
        test = (np.concatenate([p[0] for p in test_parts]), np.concatenate([p[1] for p in test_parts]))
    num_classes = 10 if name == "cifar10" else 100
    if y.max() >= num_classes:
        raise BadInput(f"{name}: label {int(y.max())} out of range for {num_classes} classes")
    log.info("%s (%s layout): %d training images, %d test images", name, layout, len(x), 0 if test is None else
             len(test[0]))
    return _finish(name, x, y, test, num_classes, True, val_fraction, seed, scale=1 / 255)


# ------------------------------------------------------------------------------- image trees


def _finish_cached(name: str, pool: CachedImages, labels: np.ndarray, test: tuple[CachedImages, np.ndarray] | None,
                   num_classes: int, val_fraction: float, seed: int, memory_cap_mb: float | None) -> DataSplits:
    """Split a cached pool; the training split streams from disk when its uint8 bytes exceed the cap."""
    tr, va = _split_indices(labels, val_fraction, seed)
    train_view = pool.subset(tr)
    streamed = memory_cap_mb is not None and train_view.nbytes > memory_cap_mb * 2**20
    scale = 1 / 255
    if streamed:
        log.info("%s: training split (%.1f MB as uint8) is over the memory cap of %g MB: streamed from %s",
                 name, train_view.nbytes / 2**20, memory_cap_mb, pool.path)
        train: torch.Tensor | CachedImages = train_view
        mean, std = _exact_stats((chunk for _, chunk in train_view.chunks()), pool.shape[1], scale)
    else:
        train_np = train_view.read(np.arange(len(train_view)))
        train = torch.from_numpy(train_np)
        mean, std = _exact_stats(array_chunks(train_np), pool.shape[1], scale)
    return DataSplits(
        name=name, num_classes=num_classes, augment=True, scale=scale, mean=mean, std=std,
        train_u8=train, train_y=torch.from_numpy(labels[tr].astype(np.int64)),
        val_u8=torch.from_numpy(pool.read(va)), val_y=torch.from_numpy(labels[va].astype(np.int64)),
        test_u8=None if test is None else torch.from_numpy(test[0].read(np.arange(len(test[0])))),
        test_y=None if test is None else torch.from_numpy(test[1].astype(np.int64)),
        val_index=tuple(int(i) for i in va),
    )


def _cache_dir(cache_dir: str | Path | None, root: Path) -> Path:
    return default_cache_dir(root) if cache_dir is None else Path(cache_dir).expanduser()


def _load_imagefolder(data_dir: str | None, image_size: int, seed: int, val_fraction: float,
                      cache_dir: str | Path | None, memory_cap_mb: float | None, progress: bool) -> DataSplits:
    if data_dir is None:
        raise BadInput("dataset imagefolder needs --data-dir (a folder with one sub-folder per class)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise BadInput(f"data dir {str(root)!r} does not exist")
    skip = None if cache_dir is None else Path(cache_dir).expanduser()
    listing, labels, classes = imagefolder_listing(root, image_size, skip=skip)
    pool = open_or_build(listing, _cache_dir(cache_dir, root), progress=progress)
    return _finish_cached("imagefolder", pool, labels, None, len(classes), val_fraction, seed, memory_cap_mb)


def _load_tinyimagenet(data_dir: str | None, seed: int, val_fraction: float, cache_dir: str | Path | None,
                       memory_cap_mb: float | None, progress: bool) -> DataSplits:
    if data_dir is None:
        raise BadInput("dataset tinyimagenet needs --data-dir (the tiny-imagenet-200 folder)")
    root = Path(data_dir).expanduser()
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    (listing, labels), test_part, wnids = tinyimagenet_listings(root)
    where = _cache_dir(cache_dir, root)
    pool = open_or_build(listing, where, progress=progress)
    test = None if test_part is None else (open_or_build(test_part[0], where, progress=progress), test_part[1])
    # The official "val" split serves as the test split; validation comes from train.
    return _finish_cached("tinyimagenet", pool, labels, test, len(wnids), val_fraction, seed, memory_cap_mb)


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
    if name not in DATASETS:
        raise BadInput(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    _check_fraction(val_fraction)
    if memory_cap_mb is not None and not memory_cap_mb > 0:
        raise BadInput(f"memory_cap_mb must be a positive number of MB or None, got {memory_cap_mb!r}")
    if not _positive_int(image_size):
        raise BadInput(f"image_size must be a positive integer, got {image_size!r}")
    if name == "digits":
        return _load_digits(seed, val_fraction)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, data_dir, download, seed, val_fraction)
    if name == "tinyimagenet":
        return _load_tinyimagenet(data_dir, seed, val_fraction, cache_dir, memory_cap_mb, progress)
    return _load_imagefolder(data_dir, image_size, seed, val_fraction, cache_dir, memory_cap_mb, progress)
