"""How a data set's labelled images become :class:`~igcnas.evaluators.data_splits.DataSplits`.

The readers (:mod:`igcnas.evaluators.datasets`) find a pool of labelled uint8 images (and a test part when
the data set has one); here the pool is cut into training and validation parts by a stratified split drawn
from the study's seed (every class in both parts, so that a study and ``igc-nas pick`` see the same
validation images), and the normalising statistics are taken from the training part only: exact
per-channel integer histograms (:func:`~igcnas.evaluators.data_cache.channel_stats`), so the float array
is never needed. A pool held in memory is split in memory; a pool decoded into the on-disk cache keeps its
training part there when that part is over the memory cap, and streams it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from igcnas.evaluators.data_cache import CachedImages, array_chunks, channel_stats
from igcnas.evaluators.data_splits import DataSplits

__all__ = ["STD_EPS", "cached_splits", "exact_stats", "in_memory_splits", "split_indices", "stratified_split"]

log = logging.getLogger(__name__)

STD_EPS = 1e-6  # added to every std, as the float pipeline always did (see data_splits for its units)
Stats = tuple[np.ndarray, np.ndarray]  # per-channel (mean, std + STD_EPS), float32, in scaled units


def stratified_split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """(x train, y train, x validation, y validation): stratified seeded split so every class is in both parts."""
    tr, va = split_indices(y, val_fraction, seed)
    return x[tr], y[tr], x[va], y[va]


def split_indices(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def exact_stats(chunks: Iterable[np.ndarray], channels: int, scale: float) -> Stats:
    """Per-channel mean and std (+1e-6 in 0..255 units), in scaled units, from exact uint8 histograms."""
    mean, std = channel_stats(chunks, channels)
    return (mean * scale).astype(np.float32), ((std + STD_EPS) * scale).astype(np.float32)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64))


def _wrap(name: str, num_classes: int, augment: bool, scale: float, stats: Stats, labels: np.ndarray,
          parts: tuple[np.ndarray, np.ndarray], images: tuple[torch.Tensor | CachedImages, torch.Tensor],
          test: tuple[torch.Tensor, np.ndarray] | None) -> DataSplits:
    """The splits of pool ``labels`` cut at ``parts`` (training, validation indices), images already taken."""
    (tr, va), (train, val) = parts, images
    return DataSplits(
        name=name, num_classes=num_classes, augment=augment, scale=scale,
        mean=torch.from_numpy(stats[0]), std=torch.from_numpy(stats[1]),
        train_u8=train, train_y=_labels(labels[tr]), val_u8=val, val_y=_labels(labels[va]),
        test_u8=None if test is None else test[0], test_y=None if test is None else _labels(test[1]),
        val_index=tuple(int(i) for i in va),
    )


def in_memory_splits(name: str, x: np.ndarray, y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None, *,
                     num_classes: int, augment: bool, val_fraction: float, seed: int, scale: float,
                     stats: Stats | None = None) -> DataSplits:
    """In-memory uint8 images ``x`` split and wrapped; statistics exact unless given."""
    tr, va = split_indices(y, val_fraction, seed)
    train = np.ascontiguousarray(x[tr])
    stats = stats if stats is not None else exact_stats(array_chunks(train), x.shape[1], scale)
    images = (torch.from_numpy(train), torch.from_numpy(np.ascontiguousarray(x[va])))
    held_test = None if test is None else (torch.from_numpy(np.ascontiguousarray(test[0])), test[1])
    return _wrap(name, num_classes, augment, scale, stats, y, (tr, va), images, held_test)


def cached_splits(name: str, pool: CachedImages, labels: np.ndarray, test: tuple[CachedImages, np.ndarray] | None,
                  *, num_classes: int, val_fraction: float, seed: int, memory_cap_mb: float | None) -> DataSplits:
    """Split a cached pool; the training split streams from disk when its uint8 bytes exceed the cap."""
    tr, va = split_indices(labels, val_fraction, seed)
    train_view = pool.subset(tr)
    streamed = memory_cap_mb is not None and train_view.nbytes > memory_cap_mb * 2**20
    scale = 1 / 255
    if streamed:
        log.info("%s: training split (%.1f MB as uint8) is over the memory cap of %g MB: streamed from %s",
                 name, train_view.nbytes / 2**20, memory_cap_mb, pool.path)
        train: torch.Tensor | CachedImages = train_view
        stats = exact_stats((chunk for _, chunk in train_view.chunks()), pool.shape[1], scale)
    else:
        train_np = train_view.read(np.arange(len(train_view)))
        train = torch.from_numpy(train_np)
        stats = exact_stats(array_chunks(train_np), pool.shape[1], scale)
    images = (train, torch.from_numpy(pool.read(va)))
    held_test = None if test is None else (torch.from_numpy(test[0].read(np.arange(len(test[0])))), test[1])
    return _wrap(name, num_classes, True, scale, stats, labels, (tr, va), images, held_test)
