import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from igcnas.evaluators.augment import augment_batch
from igcnas.evaluators.data_splits import iterate_batches
from igcnas.evaluators.datasets import DATA_SHAPES, DATASETS, load_dataset

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-sample"


def shape_of(data):
    """(in_channels, input_size, num_classes) as loaded, to compare with the table of shapes."""
    assert data.train_x.shape[2] == data.train_x.shape[3] == data.input_size
    return data.in_channels, data.input_size, data.num_classes


def test_every_data_set_but_image_folders_has_a_fixed_shape():
    assert set(DATA_SHAPES) == set(DATASETS) - {"imagefolder"}


def test_digits_is_real_8x8_with_disjoint_stratified_splits():
    data = load_dataset("digits", seed=0)
    assert data.train_x.shape[1:] == (1, 8, 8) and data.num_classes == 10
    assert shape_of(data) == DATA_SHAPES["digits"]
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 1797
    assert set(data.val_y.tolist()) == set(range(10)) == set(data.train_y.tolist())
    # Different seeds give different validation splits; the test split never changes.
    other = load_dataset("digits", seed=1)
    assert not torch.equal(data.val_y, other.val_y)
    assert torch.equal(data.test_y, other.test_y)
    assert abs(float(data.train_x.mean())) < 1e-4  # normalised with training statistics


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared CIFAR-10 sample not present")
def test_cifar10_binary_sample_reads_the_real_bytes():
    data = load_dataset("cifar10", data_dir=str(SAMPLE), seed=0)
    assert len(data.train_x) + len(data.val_x) == 850 and len(data.test_x) == 170
    assert data.test_y[:16].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8]
    assert data.train_x.shape[1:] == (3, 32, 32) and data.augment
    assert shape_of(data) == DATA_SHAPES["cifar10"]


def write_cifar10_pickle(root: Path, per_batch: int = 20) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(per_batch)]
        with (folder / name).open("wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
        if first is None:
            first = data
    return first


def test_cifar10_pickle_layout(tmp_path):
    write_cifar10_pickle(tmp_path)
    data = load_dataset("cifar10", data_dir=str(tmp_path), seed=0, val_fraction=0.2)
    assert len(data.train_x) + len(data.val_x) == 100 and len(data.test_x) == 20
    assert data.num_classes == 10
    assert shape_of(data) == DATA_SHAPES["cifar10"]


def test_cifar100_pickle_and_binary_layouts(tmp_path):
    rng = np.random.default_rng(1)
    py = tmp_path / "py" / "cifar-100-python"
    py.mkdir(parents=True)
    for name, n in (("train", 200), ("test", 50)):
        with (py / name).open("wb") as handle:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": [i % 100 for i in range(n)], b"coarse_labels": [i % 20 for i in range(n)]},
                        handle)
    data = load_dataset("cifar100", data_dir=str(tmp_path / "py"))
    assert data.num_classes == 100 and len(data.test_x) == 50
    assert shape_of(data) == DATA_SHAPES["cifar100"]
    binary = tmp_path / "bin" / "cifar-100-binary"
    binary.mkdir(parents=True)
    for name, n in (("train.bin", 200), ("test.bin", 40)):
        records = np.zeros((n, 3074), dtype=np.uint8)
        records[:, 0] = np.arange(n) % 20  # coarse
        records[:, 1] = np.arange(n) % 100  # fine
        records[:, 2:] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (binary / name).write_bytes(records.tobytes())
    data = load_dataset("cifar100", data_dir=str(tmp_path / "bin"))
    assert int(data.test_y.max()) == 39 and len(data.test_x) == 40  # fine labels, not coarse


def test_truncated_cifar_binary_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(b"\x01" * 3073 * 2)
    (folder / "data_batch_3.bin").write_bytes(b"\x01" * 5000)
    with pytest.raises(ValueError, match="not a CIFAR binary file"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_missing_files_and_dirs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset("cifar10", data_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no cifar10 files"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_dataset("cifar100")
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("mnist")


def write_png(path: Path, color: tuple[int, int, int], size: int = 12) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)


def test_imagefolder_reads_classes_and_rejects_non_images(tmp_path):
    for cls, color in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.png", color)
    data = load_dataset("imagefolder", data_dir=str(tmp_path), image_size=16)
    assert data.num_classes == 2 and data.train_x.shape[1:] == (3, 16, 16)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="not an image file"):
        load_dataset("imagefolder", data_dir=str(tmp_path))


def test_tinyimagenet_official_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids))
    for k, wnid in enumerate(wnids):
        for i in range(4):
            write_png(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", (k * 200, 10, 10), size=64)
    lines = []
    for i in range(4):
        write_png(root / "val" / "images" / f"val_{i}.JPEG", (0, 0, 0), size=64)
        lines.append(f"val_{i}.JPEG\t{wnids[i % 2]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines))
    data = load_dataset("tinyimagenet", data_dir=str(tmp_path))
    assert data.num_classes == 2 and data.train_x.shape[1:] == (3, 64, 64) and len(data.test_x) == 4
    assert shape_of(data)[:2] == DATA_SHAPES["tinyimagenet"][:2]  # the classes are its wnids (200 officially)


def test_augmentation_is_crop_and_flip_of_the_padded_image():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=1)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, r:r + 4, c:c + 4] for r in range(3) for c in range(3)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)


def test_batches_cover_every_sample_once():
    x = torch.arange(10).float().reshape(10, 1, 1, 1)
    y = torch.arange(10)
    seen = torch.cat([yb for _, yb in iterate_batches(x, y, 3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
