"""Data sets for the training command: digits (bundled with scikit-learn), CIFAR-10/100 from a
folder in torchvision's on-disk format (read directly, no torchvision needed), and DVS-Gesture /
DVS-CIFAR10 as frames through SpikingJelly's dataset classes.

Every data set yields (x, y) with x a float tensor: [C, H, W] for static images (fed at every
time step: direct encoding) or [T, C, H, W] for event frames.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import Dataset

__all__ = ["DATASETS", "DatasetInfo", "load_dataset", "DataError"]


class DataError(ValueError):
    """A missing or malformed data folder; the message names the path and the expected layout."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    sequence: bool  # True: x is [T, C, H, W] frames; False: one image fed at every step
    layout: str  # what --data-dir must contain


DATASETS = {
    "digits": DatasetInfo("digits", 10, 1, False, "nothing (bundled with scikit-learn)"),
    "cifar10": DatasetInfo("cifar10", 10, 3, False,
                           "cifar-10-batches-py/ with data_batch_1 .. data_batch_5 and test_batch (torchvision's format)"),
    "cifar100": DatasetInfo("cifar100", 100, 3, False, "cifar-100-python/ with train and test (torchvision's format)"),
    "dvs-gesture": DatasetInfo("dvs-gesture", 11, 2, True,
                               "SpikingJelly's DVS128Gesture root (download/ with DvsGesture.tar.gz and "
                               "gesture_mapping.csv, trials_to_train.txt, trials_to_test.txt)"),
    "dvs-cifar10": DatasetInfo("dvs-cifar10", 10, 2, True, "SpikingJelly's CIFAR10DVS root (download/ with the 10 class zips)"),
}

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


class TensorImages(Dataset):
    """Images [N, C, H, W] (float) and labels [N]; optional CIFAR training augmentation: random
    crop with 4 pixels of zero padding, horizontal flip, and cutout (one square of `cutout`
    pixels), drawn from `generator` so that a run is reproducible."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: bool = False, cutout: int = 16):
        self.x, self.y = x, y
        self.augment = augment
        self.cutout = cutout
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        if self.augment:
            g = self.generator
            _, H, W = x.shape
            padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
            top, left = torch.randint(0, 9, (2,), generator=g).tolist()
            x = padded[:, top:top + H, left:left + W]
            if torch.rand((), generator=g) < 0.5:
                x = x.flip(-1)
            if self.cutout > 0:
                cy, cx = torch.randint(0, H, (1,), generator=g).item(), torch.randint(0, W, (1,), generator=g).item()
                h = self.cutout // 2
                x = x.clone()
                x[:, max(0, cy - h):cy + h, max(0, cx - h):cx + h] = 0
        return x, self.y[i]


def _digits(train: bool, seed: int = 0):
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8)
    x = (x - x.mean()) / x.std()  # standardised: enough drive for the first layer to fire
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5  # a fixed 80/20 split
    idx = perm[n_test:] if train else perm[:n_test]
    return TensorImages(x[idx], y[idx])


def _unpickle(path: str, layout: str):
    if not os.path.isfile(path):
        raise DataError(f"{path} not found: the data folder must contain {layout}")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as e:
        raise DataError(f"{path} is not a CIFAR batch file ({e}); the data folder must contain {layout}") from e


def _cifar(name: str, root: str, train: bool):
    info = DATASETS[name]
    if name == "cifar10":
        folder = os.path.join(root, "cifar-10-batches-py")
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        label_key = b"labels"
    else:
        folder = os.path.join(root, "cifar-100-python")
        files = ["train" if train else "test"]
        label_key = b"fine_labels"
    if not os.path.isdir(folder):
        raise DataError(f"{folder} does not exist: --data-dir {root} must contain {info.layout}")
    xs, ys = [], []
    for fname in files:
        batch = _unpickle(os.path.join(folder, fname), info.layout)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise DataError(f"{os.path.join(folder, fname)} lacks b'data' or {label_key!r}: expected {info.layout}")
        import numpy as np  # the batch files are pickled numpy arrays

        data = torch.from_numpy(np.ascontiguousarray(batch[b"data"], dtype=np.uint8))
        if data.numel() % 3072 != 0:
            raise DataError(f"{os.path.join(folder, fname)}: data is not N x 3072 uint8 rows")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(torch.tensor(batch[label_key], dtype=torch.int64))
    x = torch.cat(xs).float() / 255.0
    mean = torch.tensor(CIFAR_MEAN[name]).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD[name]).view(1, 3, 1, 1)
    return TensorImages((x - mean) / std, torch.cat(ys), augment=train)


def _dvs(name: str, root: str, train: bool, T: int):
    info = DATASETS[name]
    if not os.path.isdir(root):
        raise DataError(f"{root} does not exist: --data-dir must be {info.layout}")
    try:
        from spikingjelly.activation_based.datasets import cifar10_dvs, dvs128_gesture
    except ImportError as e:
        raise DataError(f"{name} needs SpikingJelly's dataset classes: pip install spikingjelly") from e
    try:
        if name == "dvs-gesture":
            return dvs128_gesture.DVS128Gesture(root, train=train, data_type="frame", frames_number=T,
                                                split_by="number")
        full = cifar10_dvs.CIFAR10DVS(root, data_type="frame", frames_number=T, split_by="number")
    except Exception as e:
        raise DataError(f"{root}: SpikingJelly could not read {name} ({e}); expected {info.layout}") from e
    # CIFAR10-DVS has no official split: the usual 9:1 per class, fixed
    n = len(full)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    cut = n // 10
    return torch.utils.data.Subset(full, idx[cut:].tolist() if train else idx[:cut].tolist())


def load_dataset(name: str, data_dir: Optional[str], train: bool, T: int = 1) -> Dataset:
    """The train or test split of a data set (see DATASETS for what data_dir must hold)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    if name == "digits":
        return _digits(train)
    if not data_dir:
        raise DataError(f"{name} needs --data-dir: a folder with {DATASETS[name].layout}")
    if name.startswith("cifar"):
        return _cifar(name, data_dir, train)
    return _dvs(name, data_dir, train, T)
