"""Dataset loaders (real Fashion-MNIST, fake CIFAR-10 and image folders) and the on-device sampler."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from archspace.evaluate.data import (
    FASHION_MNIST_ROOT,
    DatasetNotFound,
    DeviceDataset,
    load_dataset,
    stratified_subset,
)

HAS_FMNIST = (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(not HAS_FMNIST, reason="apt-get install dataset-fashion-mnist")


@needs_fmnist
def test_fashion_mnist_train_is_real():
    x, y, meta = load_dataset("fashion-mnist", split="train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [6000] * 10
    assert meta.num_classes == 10 and meta.classes[9] == "ankle boot"
    assert 0.27 < x.float().mean().item() / 255 < 0.30  # the published mean 0.2860


@needs_fmnist
def test_fashion_mnist_test_split():
    x, y, meta = load_dataset("fashion-mnist", split="test")
    assert x.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [1000] * 10
    assert meta.split == "test"


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_user_directory(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28))
    labels = np.arange(20) % 10
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress)
    x, y, meta = load_dataset("fashion-mnist", root=tmp_path, split="test")
    assert torch.equal(x[:, 0], torch.from_numpy(images.astype(np.uint8)))
    assert y.tolist() == labels.tolist()
    assert meta.source == str(tmp_path)


def test_missing_fashion_mnist_is_one_clear_line(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / "nowhere") in msg and "--dataset-root" in msg
    assert isinstance(info.value, ValueError)


def test_missing_default_location_mentions_apt(monkeypatch, tmp_path):
    import archspace.evaluate.data as data

    monkeypatch.setattr(data, "FASHION_MNIST_ROOT", str(tmp_path))
    with pytest.raises(DatasetNotFound, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="dataset='mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="split='val'"):
        load_dataset("fashion-mnist", split="val")  # type: ignore[arg-type]


def _fake_cifar(root: Path, per_batch: int = 6, protocol: int = 2) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": [(i + j) % 10 for j in range(per_batch)],
            b"batch_label": name.encode(),
        }
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=protocol))
    return d


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_pickle_layout(tmp_path, protocol):
    _fake_cifar(tmp_path, protocol=protocol)
    x, y, meta = load_dataset("cifar10", root=tmp_path, split="train")
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (30,) and int(y.max()) <= 9
    assert meta.classes[0] == "airplane" and meta.channels == 3
    xt, yt, _ = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", split="test")
    assert xt.shape == (6, 3, 32, 32)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    d = _fake_cifar(tmp_path)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_dataset("cifar10", root=tmp_path, split="test")


def test_cifar10_missing(tmp_path):
    with pytest.raises(DatasetNotFound, match="--dataset-root"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(DatasetNotFound, match="--dataset-root"):
        load_dataset("cifar10")


def _png_tree(root: Path, classes=("cat", "dog", "emu"), per_class: int = 5, grey: bool = False) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + i, 24)  # different sizes: the loader resizes
            if grey:
                img = Image.fromarray(rng.integers(0, 256, size[::-1]).astype(np.uint8), "L")
            else:
                img = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3)).astype(np.uint8), "RGB")
            img.save(root / c / f"{i:03d}.png")


def test_folder_loader_split_by_every_fifth(tmp_path):
    _png_tree(tmp_path)
    x, y, meta = load_dataset(f"folder:{tmp_path}", split="train", image_size=16)
    assert x.shape == (12, 3, 16, 16) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert meta.classes == ("cat", "dog", "emu") and meta.num_classes == 3
    xt, yt, _ = load_dataset(f"folder:{tmp_path}", split="test", image_size=16)
    assert xt.shape == (3, 3, 16, 16) and yt.tolist() == [0, 1, 2]


def test_folder_loader_explicit_splits_and_grey(tmp_path):
    _png_tree(tmp_path / "train", grey=True, per_class=2)
    _png_tree(tmp_path / "val", grey=True, per_class=1)
    x, _, meta = load_dataset(f"folder:{tmp_path}", split="train", image_size=8)
    assert x.shape == (6, 1, 8, 8) and meta.channels == 1
    xt, _, _ = load_dataset(f"folder:{tmp_path}", split="test", image_size=8)
    assert xt.shape == (3, 1, 8, 8)


def test_folder_missing(tmp_path):
    with pytest.raises(DatasetNotFound, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DatasetNotFound, match="no train images"):
        load_dataset(f"folder:{tmp_path}")


def test_stratified_subset_is_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    a = stratified_subset(labels, 200, torch.Generator().manual_seed(3))
    b = stratified_subset(labels, 200, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.unique().numel() == 200
    assert torch.bincount(labels[a]).tolist() == [20] * 10


def _device_dataset(augment: bool) -> DeviceDataset:
    from archspace.evaluate.data import DatasetMeta

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(50) % 10
    meta = DatasetMeta(name="fake", split="train", num_classes=10, classes=tuple("abcdefghij"),
                       channels=1, height=28, width=28, mean=(0.5,), std=(0.25,), source="memory")
    return DeviceDataset(images, labels, meta, resolution=32, channels=3, augment=augment)


def test_device_dataset_resizes_expands_and_normalizes():
    data = _device_dataset(augment=False)
    assert data.images.shape == (50, 1, 32, 32) and data.images.dtype == torch.uint8
    batches = list(data.batches(16, shuffle=False))
    assert [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 2])  # grey repeated to 3 channels
    expected = (data.images[:16].float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x[:, :1], expected)
    assert torch.equal(y, data.labels[:16])
    assert data.num_batches(16, drop_last=True) == 3


def test_device_dataset_augmentation_is_seeded():
    data = _device_dataset(augment=True)
    run = lambda seed: list(data.batches(20, torch.Generator().manual_seed(seed), drop_last=True))  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert len(a) == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    x, _ = a[0]
    # padding is black (pixel 0): values stay within the normalized [0, 1] pixel range
    assert x.shape == (20, 3, 32, 32)
    assert float(x.min()) >= (0 - 0.5) / 0.25 - 1e-6 and float(x.max()) <= (1 - 0.5) / 0.25 + 1e-6


def test_pad_crop_shifts_content():
    data = _device_dataset(augment=True)
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, 3, 3] = 1.0
    out = data._pad_crop(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert (out.sum(dim=(1, 2, 3)) <= 1).all()  # a shifted copy: the pixel moved or fell off
