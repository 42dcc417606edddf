"""Datasets for accuracy evaluators: local loaders (no downloads) and an on-device batch sampler.

Fashion-MNIST (Xiao et al., 2017) is the embedded default: the Debian package
``dataset-fashion-mnist`` installs the idx files under ``/usr/share/datasets/fashion-mnist``.
CIFAR-10 is read from its standard python-pickle layout and ``folder:PATH`` from a
class-per-sub-directory image tree. Nothing is downloaded at run time.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

__all__ = [
    "DatasetMeta",
    "DatasetNotFound",
    "DeviceDataset",
    "FASHION_MNIST_ROOT",
    "load_dataset",
    "stratified_subset",
]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
_CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

Split = Literal["train", "test"]


class DatasetNotFound(ValueError):
    """Raised when a dataset's files are not where archspace looked; the message says how to fix it."""


class DatasetMeta(BaseModel):
    """What a loaded dataset is: name, classes, image shape, normalization statistics and source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    split: Split
    num_classes: int
    classes: tuple[str, ...]
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: Split = "train",
    *,
    image_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, DatasetMeta]:
    """Load a whole split as (uint8 images N,C,H,W, int64 labels N, meta) from local files."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not supported; use 'train' or 'test'")
    if name == "fashion-mnist":
        return _load_fashion_mnist(root, split)
    if name == "cifar10":
        return _load_cifar10(root, split)
    if name.startswith("folder:"):
        return _load_folder(name[len("folder:"):], split, image_size)
    raise ValueError(
        f"dataset={name!r} is not known; use 'fashion-mnist', 'cifar10' or 'folder:PATH'"
    )


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    """Read one idx file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file; re-install the dataset files")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) - offset != count:
        raise ValueError(f"{path} is truncated: expected {count} bytes of data, found {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    """Return the first existing idx file for a stem such as 'train-images-idx3-ubyte'."""
    dotted = stem.replace("-idx", ".idx")  # 'train-images.idx3-ubyte' (the LeCun web naming)
    for candidate in (stem + ".gz", stem, dotted + ".gz", dotted):
        path = directory / candidate
        if path.is_file():
            return path
    return None


def _load_fashion_mnist(root: str | os.PathLike[str] | None, split: Split):
    """Read Fashion-MNIST idx files from root (or the Debian package location)."""
    base = Path(root) if root is not None else Path(FASHION_MNIST_ROOT)
    prefix = "train" if split == "train" else "t10k"
    searched = [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    for directory in searched:
        images_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
        if images_path is not None and labels_path is not None:
            break
    else:
        hint = (
            "install them with `apt-get install dataset-fashion-mnist` or pass --dataset-root DIR (root=DIR)"
            if root is None
            else "point --dataset-root (root=) at the directory holding them"
        )
        raise DatasetNotFound(
            f"Fashion-MNIST {split} files ({prefix}-images-idx3-ubyte[.gz], {prefix}-labels-idx1-ubyte[.gz]) "
            f"not found in {', '.join(str(d) for d in searched)}; {hint}"
        )
    images, labels = _cached_idx_pair(str(images_path), str(labels_path))
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"{images_path} and {labels_path} disagree: images {images.shape}, labels {labels.shape}")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    meta = DatasetMeta(
        name="fashion-mnist", split=split, num_classes=10, classes=_FASHION_CLASSES,
        channels=1, height=x.shape[2], width=x.shape[3],
        mean=(0.2860,), std=(0.3530,), source=str(images_path.parent),
    )
    return x, y, meta


_IDX_CACHE: dict[tuple[str, str, float, float], tuple[np.ndarray, np.ndarray]] = {}


def _cached_idx_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an (images, labels) idx pair once per process; keyed by path and mtime, read-only arrays."""
    key = (images_path, labels_path, os.path.getmtime(images_path), os.path.getmtime(labels_path))
    if key not in _IDX_CACHE:
        if len(_IDX_CACHE) >= 4:
            _IDX_CACHE.pop(next(iter(_IDX_CACHE)))
        images, labels = _read_idx(Path(images_path)), _read_idx(Path(labels_path))
        images.flags.writeable = False
        labels.flags.writeable = False
        _IDX_CACHE[key] = (images, labels)
    return _IDX_CACHE[key]


# --------------------------------------------------------------------------- CIFAR-10


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle hook
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch refers to {module}.{name}; refusing to load it")


def _load_cifar_batch(path: Path) -> dict:
    """Read one CIFAR-10 python batch with the restricted unpickler."""
    with open(path, "rb") as f:
        raw = _CifarUnpickler(f, encoding="bytes").load()
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _load_cifar10(root: str | os.PathLike[str] | None, split: Split):
    """Read CIFAR-10 from the python-pickle layout (cifar-10-batches-py/) under root."""
    if root is None:
        raise DatasetNotFound(
            "CIFAR-10 needs a local copy: pass --dataset-root DIR (root=DIR) holding cifar-10-batches-py/ "
            "from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (archspace does not download)"
        )
    base = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    searched = [base / "cifar-10-batches-py", base]
    directory = next((d for d in searched if all((d / n).is_file() for n in names)), None)
    if directory is None:
        raise DatasetNotFound(
            f"CIFAR-10 {split} files ({', '.join(names)}) not found in {', '.join(str(d) for d in searched)}; "
            "extract cifar-10-python.tar.gz there or point --dataset-root at the extracted directory"
        )
    images, labels = [], []
    for n in names:
        batch = _load_cifar_batch(directory / n)
        data = np.asarray(batch["data"], dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    classes = _CIFAR10_CLASSES
    if (directory / "batches.meta").is_file():
        names_raw = _load_cifar_batch(directory / "batches.meta").get("label_names")
        if names_raw:
            classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in names_raw)
    x = torch.from_numpy(np.concatenate(images))
    y = torch.from_numpy(np.concatenate(labels))
    meta = DatasetMeta(
        name="cifar10", split=split, num_classes=len(classes), classes=classes,
        channels=3, height=32, width=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), source=str(directory),
    )
    return x, y, meta


# --------------------------------------------------------------------------- image folder


def _load_folder(path: str, split: Split, image_size: int):
    """Read a class-per-sub-directory image tree with Pillow, resized to image_size x image_size.

    If PATH/train and PATH/test (or PATH/val) exist they are the splits; otherwise every fifth
    image of each class (sorted by file name) is the test split and the rest the train split.
    """
    from PIL import Image  # lazy: only the folder loader needs Pillow

    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be positive")
    base = Path(path).expanduser()
    if not path or not base.is_dir():
        raise DatasetNotFound(
            f"image folder {str(base)!r} (from dataset='folder:{path}') does not exist; "
            "pass folder:DIR where DIR holds one sub-directory of images per class"
        )
    split_dirs = {"train": [base / "train"], "test": [base / "test", base / "val"]}
    split_dir = next((d for d in split_dirs[split] if d.is_dir()), None)
    has_splits = (base / "train").is_dir() and split_dir is not None
    directory = split_dir if has_splits else base
    class_dirs = sorted(d for d in directory.iterdir() if d.is_dir())
    files: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not has_splits:
            images = [p for i, p in enumerate(images) if (i % 5 == 4) == (split == "test")]
        files.extend((p, label) for p in images)
    if not files:
        raise DatasetNotFound(
            f"no {split} images ({'/'.join(s.lstrip('.') for s in _IMAGE_SUFFIXES[:4])}...) found under "
            f"{directory}/<class>/; put one sub-directory of images per class there"
        )
    arrays = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, (p, _) in enumerate(files):
        with Image.open(p) as img:
            rgb = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
            arrays[i] = np.asarray(rgb)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    grey = bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())
    if grey:
        x = x[:, :1].contiguous()
    xf = x.float().div_(255)
    mean = tuple(float(m) for m in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(s), 1e-3) for s in xf.std(dim=(0, 2, 3)))
    meta = DatasetMeta(
        name=f"folder:{path}", split=split, num_classes=len(class_dirs),
        classes=tuple(d.name for d in class_dirs), channels=x.shape[1],
        height=image_size, width=image_size, mean=mean, std=std, source=str(directory),
    )
    return x, y, meta


# --------------------------------------------------------------------------- on-device holder


def stratified_subset(labels: torch.Tensor, size: int | None, generator: torch.Generator) -> torch.Tensor:
    """Return indices of a class-balanced random subset of `size` items (all items if size is None)."""
    n = labels.numel()
    perm = torch.randperm(n, generator=generator)
    if size is None or size >= n:
        return perm
    if size < 1:
        raise ValueError(f"subset size={size} must be positive or None")
    shuffled = labels[perm]
    # rank of each item among the items of its class, in permuted order
    order = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts[shuffled[order]]
    # take items with the lowest within-class rank first: round-robin over classes
    pick = torch.argsort(rank * n + torch.arange(n), stable=True)[:size]
    return perm[torch.sort(pick).values]


class DeviceDataset:
    """A whole dataset held as tensors on one device, resized once, sampled and augmented there in batch."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        meta: DatasetMeta,
        *,
        resolution: int = 32,
        channels: int = 3,
        device: str | torch.device = "cpu",
        augment: bool = False,
        pad: int | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 N,C,H,W tensor, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        if resolution < 1:
            raise ValueError(f"resolution={resolution} must be positive")
        if images.shape[1] not in (1, channels):
            raise ValueError(f"cannot expand {images.shape[1]}-channel images to channels={channels}")
        self.meta = meta
        self.device = torch.device(device)
        self.resolution = resolution
        self.channels = channels
        self.augment = augment
        self.pad = pad if pad is not None else max(1, resolution // 8)
        self.labels = labels.to(self.device)
        self.images = self._resize(images.to(self.device), resolution)
        mean = torch.tensor(meta.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(meta.std, dtype=torch.float32, device=self.device)
        if mean.numel() == 1:
            mean, std = mean.expand(channels), std.expand(channels)
        self._mean = mean.reshape(1, -1, 1, 1).contiguous()
        self._inv_std = std.reciprocal().reshape(1, -1, 1, 1).contiguous()

    @classmethod
    def load(
        cls,
        name: str = "fashion-mnist",
        split: Split = "train",
        *,
        root: str | os.PathLike[str] | None = None,
        subset: int | None = None,
        seed: int = 0,
        **kwargs,
    ) -> DeviceDataset:
        """Load a split (optionally a class-balanced seeded subset) straight into a DeviceDataset."""
        images, labels, meta = load_dataset(name, root, split, image_size=kwargs.get("resolution", 32))
        if subset is not None:
            idx = stratified_subset(labels, subset, torch.Generator().manual_seed(seed))
            images, labels = images[idx], labels[idx]
        return cls(images, labels, meta, **kwargs)

    @staticmethod
    def _resize(images: torch.Tensor, resolution: int, chunk: int = 8192) -> torch.Tensor:
        """Resize uint8 images to resolution x resolution with bilinear interpolation, in chunks."""
        if images.shape[-2:] == (resolution, resolution):
            return images.contiguous()
        out = torch.empty(
            (images.shape[0], images.shape[1], resolution, resolution), dtype=torch.uint8, device=images.device
        )
        for start in range(0, images.shape[0], chunk):
            part = images[start:start + chunk].float()
            part = F.interpolate(part, size=(resolution, resolution), mode="bilinear",
                                 align_corners=False, antialias=resolution < images.shape[-1])
            out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
        return out

    def __len__(self) -> int:
        """Number of items."""
        return self.labels.numel()

    def prepare(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Turn a uint8 batch into normalized float input: augment (if on), expand channels, normalize."""
        x = images.float().mul_(1.0 / 255)
        if self.augment:
            if generator is None:
                raise ValueError("augment=True needs a torch.Generator for reproducible sampling")
            x = self._flip(x, generator)
            x = self._pad_crop(x, generator)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        return (x - self._mean) * self._inv_std

    def _flip(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random horizontal flip of half the batch."""
        mask = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
        return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)

    def _pad_crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Zero-pad by self.pad and take a random crop of the original size per image."""
        b, c, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        rows = (oy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (ox.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
        return padded[bi, ci, rows, cols]

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (normalized float images, labels) batches; shuffled with the generator when shuffle."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be positive")
        n = len(self)
        if shuffle:
            if generator is None:
                raise ValueError("shuffle=True needs a torch.Generator for reproducible sampling")
            order = torch.randperm(n, device=self.device, generator=generator)
        else:
            order = None
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            if order is None:
                xb, yb = self.images[start:start + batch_size], self.labels[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                xb, yb = self.images[idx], self.labels[idx]
            yield self.prepare(xb, generator), yb

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        """Number of batches per pass over the data."""
        n = len(self)
        if drop_last and n >= batch_size:
            return n // batch_size
        return -(-n // batch_size)
