"""The train / validation / test splits of one data set, held as uint8 and handed out as float batches.

Why uint8: CIFAR-10/100's 60,000 32x32 RGB images are 184 MB as uint8 and 4x that as float32; keeping
the bytes (on the training device when asked) and converting one batch at a time lets the real sets fit,
and moves a quarter of the bytes to a GPU. Units: a split's images are uint8 NCHW; ``scale`` maps them to
the units the statistics are in (1/16 for digits, whose values are 0..16; 1/255 for photographs), and a
normalised value is ``(uint8 * scale - mean) / std`` with per-channel ``mean``/``std`` (float32) from the
**training** part. ``std`` carries the +1e-6 the float pipeline always added: in scaled units for digits
(bit-identical to dividing by 16 and normalising), in 0..255 units for photographs (equal up to float
rounding; their statistics are exact integer histograms, so they never need the float array).

A training split larger than its memory cap stays on disk (a :class:`~igcnas.evaluators.data_cache.CachedImages`)
and is read batch by batch by a DataLoader; the batches equal the in-memory ones for the same generator.
How a data set's labelled images become these splits is :mod:`igcnas.evaluators.data_partition`'s;
which data sets there are and how they are read is :mod:`igcnas.evaluators.datasets`'.

The search scores **validation** accuracy on a seeded split of the training set; the test split is only
for reporting a picked model.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data

from igcnas.errors import BadInput
from igcnas.evaluators.augment import augment_batch
from igcnas.evaluators.data_cache import CachedImages, StreamedBatches

__all__ = ["SPLITS", "DataSplits", "iterate_batches", "positive_int"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

_MATERIALISE = threading.Lock()
Device = torch.device | str


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                    generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) mini-batches of in-memory tensors; shuffled when a generator is given (compatibility)."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx.to(x.device)], y[idx.to(y.device)]


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


def positive_int(value: object) -> bool:
    """A count a caller gave (a batch size, an image side): an int, numpy's too, not a bool, at least 1."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_batch_size(batch_size: int) -> None:
    if not positive_int(batch_size):
        raise BadInput(f"batch_size must be a positive integer, got {batch_size!r}")
