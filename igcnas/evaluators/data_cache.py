"""Image folders decoded once into a uint8 array on disk, reused until the files change.

Why: decoding and resizing tens of thousands of JPEG/PNG files costs minutes, and a folder larger than
memory cannot be held as one array at all. The decoded images (uint8, NCHW, ``3 x size x size``, in the
listing's order) are written once to a ``.npy`` file that later loads map with ``numpy.memmap``: small
sets are then copied into memory in one read, large training splits are streamed from it batch by batch.

Where: ``<cache_dir>/<dataset>-<part>-<hash of root and size>-<size>px.npy`` with a JSON sidecar
(``.json``) holding the key, the shape and the dtype. The key is a SHA-256 over a format version, the
dataset kind, the resolved root path, the image size and every listed file's relative path, size in
bytes and modification time (ns), in order: adding, removing, renaming or rewriting a file changes it.

Trust: a cache is used only when its sidecar parses, its key equals the current listing's, and the
``.npy`` header's shape and dtype and the file's size match what the listing expects; otherwise it is
rebuilt (the reason logged at INFO), never read. A build writes to a temporary file and renames it into
place, the old sidecar removed first and the new one written last, so a killed build leaves nothing that
validates.

Also here: the folder listings (``imagefolder``, ``tinyimagenet``), exact per-channel statistics of uint8
chunks, and the DataLoader dataset that reads whole index batches of a streamed split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from igcnas.errors import BadInput

__all__ = ["CACHE_DIR_NAME", "CachedImages", "ImageListing", "StreamedBatches", "array_chunks", "channel_stats",
           "default_cache_dir", "imagefolder_listing", "open_or_build", "read_image", "tinyimagenet_listings"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_DIR_NAME = ".igcnas-cache"  # inside the data dir when it is writable; never listed as a class
_CHUNK = 512  # images per read when a cached array is scanned in pieces
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 ``3 x size x size`` (RGB, bilinear resize when needed); BadInput when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"{path} is not a readable image: {exc}") from None


@dataclass(frozen=True)
class ImageListing:
    """The files of one part of a folder data set, in order, and what identifies them for the cache."""

    kind: str  # "imagefolder" or "tinyimagenet"
    part: str  # "pool" (the labelled training files) or "test"
    root: Path
    files: tuple[Path, ...]
    size: int  # images are resized to size x size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, self.size, self.size)

    def key(self) -> str:
        """SHA-256 over the format version, kind, part, root, size and (relative path, bytes, mtime_ns) per file."""
        digest = hashlib.sha256()
        head = [CACHE_VERSION, self.kind, self.part, str(self.root.resolve()), self.size]
        digest.update(json.dumps(head).encode())
        for path in self.files:
            try:
                stat = path.stat()
            except OSError as exc:
                raise BadInput(f"{path} is not readable: {exc}") from None
            rel = os.path.relpath(path, self.root)
            digest.update(json.dumps([rel, stat.st_size, stat.st_mtime_ns]).encode())
        return digest.hexdigest()

    def cache_path(self, cache_dir: Path) -> Path:
        where = hashlib.sha256(f"{self.root.resolve()}|{self.size}".encode()).hexdigest()[:16]
        return cache_dir / f"{self.kind}-{self.part}-{where}-{self.size}px.npy"


class CachedImages:
    """Read-only uint8 NCHW images in a cache file, mapped on first use; ``rows`` picks and orders a subset.

    Pickles as its path and rows (never the pixels), so DataLoader workers re-open the map themselves.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], rows: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.file_shape = tuple(int(s) for s in shape)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """The whole file as a read-only ``numpy.memmap`` (every row, file order)."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.file_shape[1:])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.file_shape[0] if self.rows is None else len(self.rows)

    def subset(self, index: np.ndarray) -> CachedImages:
        """The images ``index`` (positions in this view) as a new view of the same file."""
        index = np.asarray(index, dtype=np.int64)
        return CachedImages(self.path, self.file_shape, index if self.rows is None else self.rows[index])

    def read(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """Images at positions ``index`` of this view, in that order, as an in-memory array.

        Rows are read in file order (one sorted fancy index: sequential pages) and put back in order.
        """
        index = np.asarray(index, dtype=np.int64)
        rows = index if self.rows is None else self.rows[index]
        if len(rows) == 0:
            return np.empty((0, *self.file_shape[1:]), dtype=np.uint8)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.file_shape[1:]), dtype=np.uint8)
        out[order] = self.array[rows[order]]
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        if self.rows is None:
            return np.array(self.array[start:stop])
        return self.read(np.arange(start, min(stop, len(self))))

    def chunks(self, size: int = _CHUNK):
        """(start, images) pieces covering the view in order; ``size`` images each."""
        for start in range(0, len(self), size):
            yield start, self.read_range(start, start + size)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "file_shape": self.file_shape, "rows": self.rows, "_array": None}

    def __repr__(self) -> str:
        return f"CachedImages({str(self.path)!r}, shape={self.shape})"


class StreamedBatches(torch.utils.data.Dataset):
    """A DataLoader's view of cached images: item = a whole batch of positions, value = its uint8 images."""

    def __init__(self, images: CachedImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.images.read(index))


def array_chunks(images: np.ndarray, size: int = 4096) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield images[start:start + size]


def channel_stats(chunks: Iterable[np.ndarray], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of uint8 NCHW chunks, in 0..255 units, float64.

    Exact (from integer histograms), so the same numbers whatever the chunking, and no float copy of the images.
    """
    counts = np.zeros((channels, 256), dtype=np.int64)
    for chunk in chunks:
        for c in range(channels):
            counts[c] += np.bincount(chunk[:, c].reshape(-1), minlength=256)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum(axis=1)
    mean = (counts * values).sum(axis=1) / total
    std = np.sqrt((counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total)
    return mean, std


def default_cache_dir(data_dir: Path) -> Path:
    """``<data_dir>/.igcnas-cache`` when it can be created and written, else ``~/.cache/igcnas``."""
    inside = data_dir / CACHE_DIR_NAME
    try:
        inside.mkdir(exist_ok=True)
        if os.access(inside, os.W_OK):
            return inside
    except OSError:
        pass
    home = Path.home() / ".cache" / "igcnas"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _why_invalid(path: Path, key: str, shape: tuple[int, ...]) -> str | None:
    """None when the cache at ``path`` is complete and belongs to ``key``; otherwise the reason it is not."""
    if not path.is_file():
        return "no cache file"
    try:
        meta = json.loads(_sidecar(path).read_text())
    except FileNotFoundError:
        return "no sidecar"
    except (OSError, ValueError) as exc:
        return f"unreadable sidecar ({exc})"
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        return "sidecar of another format version"
    if meta.get("key") != key:
        return "the files changed (key mismatch)"
    if meta.get("dtype") != "uint8" or tuple(meta.get("shape") or ()) != tuple(shape):
        return f"sidecar shape {meta.get('shape')} / dtype {meta.get('dtype')} != expected {list(shape)} / uint8"
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                file_shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                file_shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return f"unsupported .npy version {version}"
            data_start = handle.tell()
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    if tuple(file_shape) != tuple(shape) or fortran or dtype != np.dtype(np.uint8):
        return f"header says {file_shape} {dtype} (fortran={fortran}), expected {tuple(shape)} uint8"
    expected = data_start + int(np.prod(shape))
    actual = path.stat().st_size
    if actual != expected:
        return f"file is {actual} bytes, expected {expected} (truncated or padded)"
    return None


def _build(listing: ImageListing, path: Path, key: str, progress: bool) -> None:
    """Decode every listed file into a temporary .npy, then move it (and a fresh sidecar) into place."""
    from tqdm import tqdm

    shape = listing.shape
    handle, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        workers = max(1, min(4, os.cpu_count() or 1))  # PIL decodes and resizes without the GIL
        with ThreadPoolExecutor(workers) as pool, tqdm(
            total=len(listing.files), desc=f"caching {listing.kind} {listing.part}", unit="img", file=sys.stderr,
            disable=not progress, leave=False,
        ) as bar:
            for start in range(0, len(listing.files), _CHUNK):
                part = listing.files[start:start + _CHUNK]
                for offset, image in enumerate(pool.map(lambda p: read_image(p, listing.size), part)):
                    out[start + offset] = image
                bar.update(len(part))
        out.flush()
        del out
        sidecar = _sidecar(path)
        sidecar.unlink(missing_ok=True)  # no moment where an old sidecar vouches for new pixels
        os.replace(tmp, path)
        meta = {"version": CACHE_VERSION, "key": key, "shape": list(shape), "dtype": "uint8",
                "root": str(listing.root.resolve()), "files": len(listing.files)}
        side_tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
        side_tmp.write_text(json.dumps(meta, indent=1))
        os.replace(side_tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)


def open_or_build(listing: ImageListing, cache_dir: Path, *, progress: bool = False) -> CachedImages:
    """The cached images of ``listing``, built (or rebuilt) first unless a valid cache is already there."""
    if not listing.files:
        raise BadInput(f"{listing.kind} {str(listing.root)!r} holds no images")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cache_dir {str(cache_dir)!r} cannot be created: {exc}") from None
    path = listing.cache_path(cache_dir)
    key = listing.key()
    reason = _why_invalid(path, key, listing.shape)
    if reason is not None:
        level = logging.DEBUG if reason == "no cache file" else logging.INFO
        log.log(level, "building image cache %s: %s", path, reason)
        try:
            _build(listing, path, key, progress)
        except OSError as exc:
            raise BadInput(f"cache_dir {str(cache_dir)!r}: could not write the image cache: {exc}") from None
        reason = _why_invalid(path, key, listing.shape)
        if reason is not None:  # another process replaced it meanwhile with something else: refuse to guess
            raise RuntimeError(f"image cache {path} did not validate right after it was built: {reason}")
    else:
        log.debug("reusing image cache %s", path)
    return CachedImages(path, listing.shape)


# ------------------------------------------------------------------------------------ listings


def imagefolder_listing(root: Path, size: int, *, skip: Path | None = None
                        ) -> tuple[ImageListing, np.ndarray, list[str]]:
    """(listing, labels, classes) of a ``root/<class>/<image>`` tree; the cache folder is not a class."""
    skipped = {(root / CACHE_DIR_NAME).resolve()} | ({skip.resolve()} if skip is not None else set())
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.resolve() not in skipped)
    if len(classes) < 2:
        raise BadInput(f"imagefolder {str(root)!r} needs at least 2 class sub-folders, found {len(classes)}")
    files, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).iterdir()):
            if not path.is_file():
                continue
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                raise BadInput(f"{path} is not an image file (allowed suffixes: {', '.join(sorted(_IMAGE_SUFFIXES))})")
            files.append(path)
            labels.append(label)
    return ImageListing("imagefolder", "pool", root, tuple(files), size), np.asarray(labels, dtype=np.int64), classes


def tinyimagenet_listings(root: Path) -> tuple[tuple[ImageListing, np.ndarray], tuple[ImageListing, np.ndarray] | None,
                                               list[str]]:
    """((pool listing, labels), (test listing, labels) or None, wnids) of the official Tiny ImageNet layout."""
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file() or not (root / "train").is_dir():
        raise BadInput(f"no Tiny ImageNet layout under {str(root)!r} (expected wnids.txt and train/)")
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    files, labels = [], []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise BadInput(f"missing Tiny ImageNet class folder {folder}")
        for path in sorted(folder.iterdir()):
            files.append(path)
            labels.append(index[wnid])
    pool = (ImageListing("tinyimagenet", "pool", root, tuple(files), 64), np.asarray(labels, dtype=np.int64))
    test = None
    annotations = root / "val" / "val_annotations.txt"
    if annotations.is_file():
        test_files, test_labels = [], []
        for line in annotations.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2 and fields[1] in index:
                test_files.append(root / "val" / "images" / fields[0])
                test_labels.append(index[fields[1]])
        if test_files:
            test = (ImageListing("tinyimagenet", "test", root, tuple(test_files), 64),
                    np.asarray(test_labels, dtype=np.int64))
    return pool, test, wnids
