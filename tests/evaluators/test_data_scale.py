"""Data at real size: uint8 storage, batch augmentation, the on-disk image cache and streaming from it."""

import dataclasses
import inspect
import logging
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from igcnas.errors import BadInput
from igcnas.evaluators import data_cache
from igcnas.evaluators.augment import augment_batch
from igcnas.evaluators.data_partition import split_indices  # the split is unchanged: what is compared is the pixels
from igcnas.evaluators.data_splits import iterate_batches
from igcnas.evaluators.datasets import load_dataset

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-sample"
CLASSES = ("a", "b", "c")


def old_augment_batch(x, generator, pad=4):
    """The float pipeline's augmentation, verbatim."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    batch = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(3)
    return out.contiguous()


def test_digits_are_held_as_uint8_and_normalise_like_the_float_pipeline():
    from sklearn.datasets import load_digits

    data = load_dataset("digits", seed=0)
    assert data.train_u8.dtype == data.val_u8.dtype == data.test_u8.dtype == torch.uint8
    assert data.scale == 1 / 16 and not data.streamed
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    tr, va = split_indices(y, 0.2, 12345)
    xs, ys, test_x = x[tr], y[tr], x[va]
    tr, va = split_indices(ys, 0.2, 0)
    train_f = xs[tr]
    mean = train_f.mean(axis=(0, 2, 3), keepdims=True)
    std = train_f.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    for got, arr in ((data.train_x, xs[tr]), (data.val_x, xs[va]), (data.test_x, test_x)):
        want = torch.from_numpy((arr - mean) / std)
        assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6, rtol=0)
    assert data.val_index == tuple(int(i) for i in va)
    assert data.train_x is data.train_x  # materialised once


def test_batch_augmentation_is_the_per_sample_crop_and_flip():
    n, pad = 2000, 4
    x = torch.randn(n, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    out = augment_batch(x, torch.Generator().manual_seed(5), pad=pad)
    reference = torch.Generator().manual_seed(5)  # the documented draw order: rows, columns, flips
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=reference)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=reference)
    flip = torch.rand(n, generator=reference) < 0.5
    assert int(oy.min()) == 0 and int(oy.max()) == 2 * pad and int(ox.min()) == 0 and int(ox.max()) == 2 * pad
    assert 0.4 * n < int(flip.sum()) < 0.6 * n
    for i in range(n):
        crop = F.pad(x[i], (pad, pad, pad, pad))[:, oy[i]:oy[i] + 6, ox[i]:ox[i] + 5]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop), i
    # Same numbers as the float pipeline's augmentation (the trainer's results do not move).
    assert torch.equal(out, old_augment_batch(x, torch.Generator().manual_seed(5), pad=pad))


def write_folder(root: Path, per_class: int = 40, size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:03d}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    write_folder(root)
    return root


def batches(data, seed, **kwargs):
    return list(data.train_batches(32, generator=torch.Generator().manual_seed(seed), **kwargs))


def test_folder_over_the_memory_cap_streams_from_the_cache_with_the_same_batches(folder, tmp_path):
    cache = tmp_path / "cache"
    held = load_dataset("imagefolder", data_dir=str(folder), image_size=16, cache_dir=cache)
    streamed = load_dataset("imagefolder", data_dir=str(folder), image_size=16, cache_dir=cache, memory_cap_mb=0.01)
    assert held.train_u8.nbytes > 0.01 * 2**20  # the cap is below the uint8 training split
    assert streamed.streamed and not held.streamed and isinstance(streamed.train_u8, data_cache.CachedImages)
    assert (streamed.n_train, streamed.n_val, streamed.n_test) == (held.n_train, held.n_val, 0) == (96, 24, 0)
    assert (streamed.in_channels, streamed.input_size, streamed.num_classes) == (3, 16, 3)
    assert torch.equal(streamed.mean, held.mean) and torch.equal(streamed.std, held.std)
    got = batches(streamed, 7)
    assert len(got) == math.ceil(96 / 32) and [tuple(x.shape) for x, _ in got] == [(32, 3, 16, 16)] * 3
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in got)
    for (xs, ys), (xh, yh), (x0, y0) in zip(got, batches(held, 7), batches(streamed, 7, num_workers=0)):
        assert torch.equal(xs, xh) and torch.equal(ys, yh) and torch.equal(xs, x0) and torch.equal(ys, y0)
    assert not torch.equal(got[0][0], batches(held, 8)[0][0])  # another seed, other batches
    assert "_float_train" not in streamed.__dict__  # streaming never materialised the split
    train = torch.cat([x for x, _ in streamed.eval_batches("train", 40)])
    assert torch.equal(train, held.train_x) and torch.equal(streamed.train_x, held.train_x)
    clone = pickle.loads(pickle.dumps(streamed))  # pickles as a path, not the pixels
    assert clone.streamed and len(pickle.dumps(streamed)) < 64_000
    assert torch.equal(batches(clone, 7, num_workers=0)[1][0], got[1][0])


def test_trainer_trains_on_a_streamed_folder(folder, tmp_path):
    from igcnas.evaluators import train as trainer

    if "train_batches" not in inspect.getsource(trainer.train_model):
        pytest.skip("train_model still reads data.train_x; the trainer is being switched to train_batches")
    from igcnas.models import build_model
    from igcnas.search_space.paper_networks import cifar_network

    data = load_dataset("imagefolder", data_dir=str(folder), image_size=16, cache_dir=tmp_path, memory_cap_mb=0.01)
    config = cifar_network("igcv2", 16, 5, [{"chain": (4, 4)}, {"chain": (4, 8)}, {"chain": (8, 8)}],
                           num_classes=3, input_size=16)
    result = trainer.train_model(build_model(config, seed=0), data,
                                 trainer.TrainSettings(epochs=1, seed=0, threads=1, max_batches_per_epoch=2))
    assert len(result.curve) == 1 and 0.0 <= result.val_accuracy <= 1.0
    assert "_float_train" not in data.__dict__


def cache_file(cache: Path) -> Path:
    (path,) = cache.glob("imagefolder-pool-*.npy")
    return path


def test_cache_is_reused_and_rebuilt_when_stale_or_corrupt(tmp_path, caplog):
    from PIL import Image

    root, cache = tmp_path / "img", tmp_path / "cache"
    write_folder(root, per_class=8, size=12)

    def load():
        return load_dataset("imagefolder", data_dir=str(root), image_size=12, cache_dir=cache)

    load()
    path = cache_file(cache)
    first = path.stat()
    load()
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # reused

    changed = np.full((12, 12, 3), 77, dtype=np.uint8)
    target = root / "a" / "000.png"  # the first file of the listing: row 0 of the cache
    Image.fromarray(changed).save(target)
    os.utime(target, ns=(first.st_mtime_ns + 10**9, first.st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO, logger="igcnas.evaluators.data_cache"):
        data = load()
    assert "key mismatch" in caplog.text
    assert path.stat().st_ino != first.st_ino
    assert np.array_equal(np.load(path)[0], changed.transpose(2, 0, 1))
    images = torch.cat([data.train_u8, data.val_u8])
    assert any(torch.equal(row, torch.from_numpy(changed.transpose(2, 0, 1))) for row in images)

    caplog.clear()
    rebuilt = path.stat()
    with path.open("r+b") as handle:  # corrupt: truncated
        handle.truncate(rebuilt.st_size // 2)
    with caplog.at_level(logging.INFO, logger="igcnas.evaluators.data_cache"):
        again = load()
    assert "truncated" in caplog.text and path.stat().st_size == rebuilt.st_size
    assert torch.equal(again.val_u8, data.val_u8) and torch.equal(again.train_u8, data.train_u8)

    np.save(path, np.zeros((3, 3, 12, 12), dtype=np.uint8))  # corrupt: a valid .npy of the wrong shape
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="igcnas.evaluators.data_cache"):
        assert torch.equal(load().train_u8, data.train_u8)
    assert "header says" in caplog.text
    path.with_suffix(".json").write_text("{not json")  # corrupt: unreadable sidecar
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="igcnas.evaluators.data_cache"):
        assert torch.equal(load().train_u8, data.train_u8)
    assert "unreadable sidecar" in caplog.text


def test_a_failed_build_leaves_no_cache_that_validates(tmp_path, monkeypatch):
    root, cache = tmp_path / "img", tmp_path / "cache"
    write_folder(root, per_class=8, size=12)
    real = data_cache.read_image
    calls = []

    def failing(path, size):
        calls.append(path)
        if len(calls) == 13:
            raise KeyboardInterrupt  # the build is killed part-way
        return real(path, size)

    monkeypatch.setattr(data_cache, "read_image", failing)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("imagefolder", data_dir=str(root), image_size=12, cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither a half-written array nor a sidecar
    monkeypatch.setattr(data_cache, "read_image", real)
    data = load_dataset("imagefolder", data_dir=str(root), image_size=12, cache_dir=cache)
    assert data.n_train + data.n_val == 24


def test_default_cache_lives_in_the_data_dir_and_is_not_a_class(tmp_path):
    root = tmp_path / "img"
    write_folder(root, per_class=4, size=8)
    first = load_dataset("imagefolder", data_dir=str(root), image_size=8)
    assert (root / ".igcnas-cache").is_dir()
    second = load_dataset("imagefolder", data_dir=str(root), image_size=8)
    assert first.num_classes == second.num_classes == 3 and torch.equal(first.val_u8, second.val_u8)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared CIFAR-10 sample not present")
def test_cifar_sample_is_uint8_and_eval_batches_cover_validation_once():
    data = load_dataset("cifar10", data_dir=str(SAMPLE), seed=0)
    assert data.train_u8.dtype == data.val_u8.dtype == data.test_u8.dtype == torch.uint8
    assert (data.n_train, data.n_val, data.n_test) == (680, 170, 170) and data.scale == 1 / 255
    pieces = list(data.eval_batches("val", 64))
    assert len(pieces) == math.ceil(170 / 64)
    assert torch.equal(torch.cat([y for _, y in pieces]), data.val_y)
    assert torch.equal(torch.cat([x for x, _ in pieces]), data.val_x)
    assert len(list(data.eval_batches("test", 64, max_batches=2))) == 2
    with pytest.raises(BadInput, match="split must be one of train, val, test"):
        next(data.eval_batches("holdout"))
    # Equal, up to float rounding, to the float pipeline's numbers (statistics of the 0..255 floats).
    raw = data.train_u8.numpy().astype(np.float32)
    mean = raw.mean(axis=(0, 2, 3), keepdims=True)
    std = raw.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    want = torch.from_numpy((data.val_u8.numpy().astype(np.float32) - mean) / std)
    assert torch.allclose(data.val_x, want, atol=2e-5, rtol=0)
    # train_batches == the former trainer loop (iterate_batches over train_x, then augment_batch).
    g_new, g_old = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    old = ((x, y) for x, y in iterate_batches(data.train_x, data.train_y, 128, generator=g_old))
    for (xn, yn), (xo, yo) in zip(data.train_batches(128, generator=g_new), old):
        assert torch.equal(xn, old_augment_batch(xo, g_old)) and torch.equal(yn, yo)
    assert data.to("cpu") is data


def test_replaced_training_images_feed_the_batches_too():
    data = load_dataset("digits", seed=0)
    broken = dataclasses.replace(data, train_x=torch.full_like(data.train_x, float("nan")))
    x, _ = next(broken.train_batches(16, generator=torch.Generator().manual_seed(0)))
    assert torch.isnan(x).all() and x.shape == (16, 1, 8, 8)
    assert torch.equal(broken.val_x, data.val_x) and not broken.streamed
    with pytest.raises(BadInput, match="generator must be a CPU torch.Generator"):
        next(data.train_batches(16, generator=None))
