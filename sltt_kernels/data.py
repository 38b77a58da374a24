"""Data sets for the training command, prepared as the official SLTT code prepares them:

- digits: bundled with scikit-learn (the quick-run and test data set);
- CIFAR-10/100: a folder in torchvision's on-disk format, read without torchvision and without
  running any code from the files (a restricted unpickler), validated; training images get the
  official augmentation: random crop (4 pixels of zero padding), Cutout with torchtoolbox's
  defaults (probability 0.5, area 2-40 %, aspect 0.4-2.5, one random grey value 0-255), flip;
- DVS-Gesture / DVS-CIFAR10: frames through SpikingJelly's dataset classes; DVS-CIFAR10 frames
  resized to 48x48 and split by sample index (0-899 of each class train, 900-999 test);
- ImageNet: a folder in ImageFolder layout (train/<class>/*.JPEG, val/<class>/*), both splits
  labelled by train/'s sorted class folders (a class missing from val/ shifts no label), decoded with
  PIL; RandomResizedCrop + flip for training, Resize(256/224 of the size) + CenterCrop for
  validation; ImageNet mean/std normalisation. No download.

Every data set yields (x, y) with x a float tensor: [C, H, W] for static images (fed at every
time step: direct encoding) or [T, C, H, W] for event frames.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["DATASETS", "DatasetInfo", "load_dataset", "DataError", "TensorImages", "ImageFolderDataset",
           "cutout_params", "split_cifar10_dvs", "read_cifar_batch", "class_folders"]


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
    "imagenet": DatasetInfo("imagenet", 1000, 3, False,
                            "train/ and val/, each with one folder of images per class (ImageFolder layout)"),
}

# the official scripts' normalisation (train_SLTT.py)
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
CIFAR_STD = {"cifar10": (0.2023, 0.1994, 0.2010), "cifar100": (0.2675, 0.2565, 0.2761)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DVS_CIFAR10_SIZE = 48  # the official Resize(48) of every frame
DVS_CIFAR10_TEST_FROM = 900  # per class: samples 0..899 train, 900..999 test
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# torchtoolbox.transform.Cutout's defaults, which the official CIFAR pipeline uses
CUTOUT_P, CUTOUT_SCALE, CUTOUT_RATIO, CUTOUT_VALUE = 0.5, (0.02, 0.4), (0.4, 1 / 0.4), (0, 255)


def cutout_params(h: int, w: int, rng: random.Random) -> Optional[Tuple[int, int, int, int, int]]:
    """Draws one Cutout: None (untouched, probability 1 - 0.5) or (top, left, height, width, value)
    with area fraction ~ U(0.02, 0.4), aspect ~ U(0.4, 2.5) and one grey value ~ U{0..255}.

    Example:
        >>> cutout_params(32, 32, random.Random(0))     # None or (top, left, h, w, value)
    """
    if rng.random() >= CUTOUT_P:
        return None
    area = rng.uniform(*CUTOUT_SCALE) * h * w
    aspect = rng.uniform(*CUTOUT_RATIO)
    ch = min(int(math.sqrt(area * aspect)), h)
    cw = min(int(math.sqrt(area / aspect)), w)
    left = rng.randint(0, w - cw)
    top = rng.randint(0, h - ch)
    return top, left, ch, cw, rng.randint(*CUTOUT_VALUE)


class TensorImages(Dataset):
    """Images [N, C, H, W] (float, in [0, 1] for CIFAR) and labels [N]; normalised per channel in
    __getitem__ with (mean, std). With augment: the official CIFAR training augmentation in
    pixel space, before normalising: random crop with 4 pixels of zero (black) padding, Cutout
    (see cutout_params), horizontal flip, drawn from `generator` (a torch.Generator; the Cutout
    draws from a random.Random seeded from it) so that a run is reproducible."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: bool = False,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None):
        if len(x) != len(y):
            raise DataError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y = x, y
        self.augment = augment
        c = x.shape[1]
        self.mean = torch.tensor(mean if mean is not None else (0.0,) * c, dtype=torch.float32).view(c, 1, 1)
        self.std = torch.tensor(std if std is not None else (1.0,) * c, dtype=torch.float32).view(c, 1, 1)
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        if self.augment:
            g = self.generator
            _, H, W = x.shape
            padded = F.pad(x, (4, 4, 4, 4))
            top, left = torch.randint(0, 9, (2,), generator=g).tolist()
            x = padded[:, top:top + H, left:left + W].clone()
            cut = cutout_params(H, W, random.Random(int(torch.randint(0, 2**62, (), generator=g))))
            if cut is not None:
                ct, cl, ch, cw, value = cut
                x[:, ct:ct + ch, cl:cl + cw] = value / 255.0
            if torch.rand((), generator=g) < 0.5:
                x = x.flip(-1)
        return (x - self.mean) / self.std, self.y[i]


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


# ---------------------------------------------------------------------------------------------
# CIFAR: the batch files are pickles of a dict of bytes keys, numpy arrays and lists. A pickle
# can name any callable; this unpickler resolves only what those files need to rebuild a numpy
# array, so a crafted file fails to load instead of running code.

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # numpy arrays pickled under Python 2 / protocol 2 carry latin-1 bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only numpy arrays, "
                                     f"lists and bytes")


def read_cifar_batch(path: str, label_key: bytes, num_classes: int, layout: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR batch file -> (images [N, 3, 32, 32] uint8, labels [N] int64), validated:
    data must be an integer array of N x 3072 values in 0..255 (a float array is refused rather
    than cast: cast to uint8 it would train on black images), one label per image, labels in
    0..num_classes-1. Loads with a restricted unpickler (no code runs)."""
    import numpy as np  # the batch files are pickled numpy arrays

    if not os.path.isfile(path):
        raise DataError(f"{path} not found: the data folder must contain {layout}")
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except Exception as e:
        raise DataError(f"{path} is not a CIFAR batch file ({type(e).__name__}: {e}); the data folder must contain "
                        f"{layout}") from e
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path} lacks b'data' or {label_key!r}: expected {layout}")
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: b'data' is a {type(data).__name__}, not a numpy array")
    if not np.issubdtype(data.dtype, np.integer):
        raise DataError(f"{path}: b'data' has dtype {data.dtype}; CIFAR pixels are integers 0..255 (uint8)")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' has shape {data.shape}; expected N x 3072 (3 x 32 x 32 pixels per row)")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DataError(f"{path}: pixel values span {data.min()}..{data.max()}; expected 0..255")
    try:
        labels = np.asarray(labels)
    except Exception as e:
        raise DataError(f"{path}: {label_key!r} is not a list of class indices ({e})") from e
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {label_key!r} must be a flat list of integer class indices, "
                        f"got shape {labels.shape} dtype {labels.dtype}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels in {label_key!r}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}; expected 0..{num_classes - 1}")
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8)).reshape(-1, 3, 32, 32)
    return x, torch.from_numpy(labels.astype(np.int64))


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
        x, y = read_cifar_batch(os.path.join(folder, fname), label_key, info.num_classes, info.layout)
        xs.append(x)
        ys.append(y)
    x = torch.cat(xs).float() / 255.0
    return TensorImages(x, torch.cat(ys), augment=train, mean=CIFAR_MEAN[name], std=CIFAR_STD[name])


# ---------------------------------------------------------------------------------------------
# DVS


def _sample_number(path: str) -> int:
    m = re.search(r"(\d+)\D*$", os.path.basename(path))
    if m is None:
        raise DataError(f"{path}: no sample number in the file name (expected e.g. cifar10_airplane_123.npz)")
    return int(m.group(1))


def split_cifar10_dvs(samples: Sequence[Tuple[str, int]], train: bool) -> List[int]:
    """Indices of the official split of CIFAR10-DVS: of each class, the samples numbered 0..899 in
    their file names (cifar10_<class>_<n>) train, 900..999 test. samples: [(path, class)] as a
    torchvision DatasetFolder's .samples (whose order is by name, not by number)."""
    return [i for i, (path, _) in enumerate(samples) if (_sample_number(path) < DVS_CIFAR10_TEST_FROM) == train]


class FramesResized(Dataset):
    """A frame data set [T, C, H, W] restricted to `indices` and resized to size x size
    (bilinear with antialiasing, as PIL's resize that the official Resize(48) uses)."""

    def __init__(self, base, indices: Sequence[int], size: Optional[int]):
        self.base, self.indices, self.size = base, list(indices), size

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        frames, label = self.base[self.indices[i]]
        frames = torch.as_tensor(frames, dtype=torch.float32)
        if self.size is not None and tuple(frames.shape[-2:]) != (self.size, self.size):
            frames = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=True)
        return frames, label


def _import_sj_datasets(name):
    errors = []
    for mod in ("spikingjelly.datasets", "spikingjelly.activation_based.datasets"):
        try:
            module = __import__(mod, fromlist=["cifar10_dvs", "dvs128_gesture"])
            return module.cifar10_dvs, module.dvs128_gesture
        except ImportError as e:
            errors.append(f"{mod}: {e}")
    # every error: the first place (SpikingJelly 2.0's) usually names the real cause (torchvision
    # missing), the older place only that it does not exist
    raise DataError(f"{name} needs SpikingJelly's dataset classes (and torchvision, which they import): "
                    f"pip install spikingjelly torchvision ({'; '.join(errors)})")


def _dvs(name: str, root: str, train: bool, T: int):
    info = DATASETS[name]
    if not os.path.isdir(root):
        raise DataError(f"{root} does not exist: --data-dir must be {info.layout}")
    cifar10_dvs, dvs128_gesture = _import_sj_datasets(name)
    try:
        if name == "dvs-gesture":
            return dvs128_gesture.DVS128Gesture(root, train=train, data_type="frame", frames_number=T,
                                                split_by="number")
        full = cifar10_dvs.CIFAR10DVS(root, data_type="frame", frames_number=T, split_by="number")
    except Exception as e:
        raise DataError(f"{root}: SpikingJelly could not read {name} ({e}); expected {info.layout}") from e
    return FramesResized(full, split_cifar10_dvs(full.samples, train), DVS_CIFAR10_SIZE)


# ---------------------------------------------------------------------------------------------
# ImageNet


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError("the imagenet data set decodes JPEG/PNG with Pillow: pip install pillow") from e
    return Image


def class_folders(root: str, layout: str = "one folder per class") -> List[str]:
    """The class folders of root (ImageFolder layout), sorted by name: its sub-folders, hidden
    ones (a name starting with '.', such as .ipynb_checkpoints) left out so that they never take
    a label. DataError naming root when it is missing or has none.

    Example:
        >>> class_folders("imagenet/train")[:2]          # ['n01440764', 'n01443537']
    """
    if not os.path.isdir(root):
        raise DataError(f"{root} does not exist: expected {layout}")
    names = sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    if not names:
        raise DataError(f"{root} has no class folders: expected {layout}")
    return names


class ImageFolderDataset(Dataset):
    """Images in ImageFolder layout (root/<class>/<image>).

    classes: the class list that numbers the labels (class i is classes[i]); None: root's own
    class folders (class_folders). A validation split passes its training split's list, so that
    a class missing from it shifts no label: train cat, dog, fox and val without dog give val
    labels cat 0, fox 2 (missing_classes lists dog). A folder of root that is not in classes,
    and a class folder without an image (IMAGE_EXTENSIONS), are a DataError naming the folder.

    train: RandomResizedCrop(size) (area 8-100 %, aspect 3/4-4/3, 10 tries then a centre crop)
    and a horizontal flip; else Resize(round(size * 256 / 224)) of the short side and
    CenterCrop(size). Returns ([3, size, size] float32 normalised with ImageNet's mean/std, class
    int). An image that cannot be decoded is a DataError naming its path when it is read.

    Example:
        >>> classes = class_folders("imagenet/train")
        >>> ds = ImageFolderDataset("imagenet/val", train=False, classes=classes)
        >>> x, y = ds[0]                        # x: [3, 224, 224], y: its index in classes
    """

    def __init__(self, root: str, train: bool, size: int = 224, layout: str = "one folder per class",
                 classes: Optional[Sequence[str]] = None):
        self.Image = _pil()
        present = class_folders(root, layout)
        if classes is None:
            classes = present
        index = {name: i for i, name in enumerate(classes)}
        unknown = [name for name in present if name not in index]
        if unknown:
            raise DataError(f"{root}: class folder{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(os.path.join(root, n) for n in unknown[:5])}"
                            f"{f' (and {len(unknown) - 5} more)' if len(unknown) > 5 else ''} "
                            f"not among the {len(classes)} training classes: no label fits it (every split is "
                            f"labelled by the training split's class folders)")
        self.classes = list(classes)
        present_set = set(present)
        self.missing_classes = [name for name in self.classes if name not in present_set]
        self.samples = []
        for name in present:
            found = 0
            # followlinks: a class folder may be a link into another disk, as torchvision allows
            for dirpath, _, files in sorted(os.walk(os.path.join(root, name), followlinks=True)):
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        self.samples.append((os.path.join(dirpath, f), index[name]))
                        found += 1
            if not found:
                raise DataError(f"{os.path.join(root, name)}: a class folder without images "
                                f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add its images")
        self.train, self.size = train, size
        self.generator = torch.Generator().manual_seed(0)
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self):
        return len(self.samples)

    def _random_resized_box(self, w: int, h: int, rng: random.Random):
        area = w * h
        for _ in range(10):
            target = area * rng.uniform(0.08, 1.0)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
                return left, top, left + cw, top + ch
        side = min(w, h)  # fallback: the central square
        left, top = (w - side) // 2, (h - side) // 2
        return left, top, left + side, top + side

    def __getitem__(self, i):
        import numpy as np

        path, label = self.samples[i]
        try:
            with self.Image.open(path) as im:
                im = im.convert("RGB")
        except Exception as e:
            # named here: the bare PIL error says neither which file nor what to do
            raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e}); remove or replace it") from e
        bilinear = self.Image.BILINEAR
        if self.train:
            rng = random.Random(int(torch.randint(0, 2**62, (), generator=self.generator)))
            im = im.resize((self.size, self.size), bilinear, box=self._random_resized_box(*im.size, rng))
            if rng.random() < 0.5:
                im = im.transpose(self.Image.FLIP_LEFT_RIGHT)
        else:
            short = round(self.size * 256 / 224)
            w, h = im.size
            scale = short / min(w, h)
            im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), bilinear)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        return (x - self.mean) / self.std, label


def _imagenet(root: str, train: bool, size: int, num_classes: int):
    """train/ or val/ of an ImageNet folder, both numbered by train/'s class folders, checked
    before any image is decoded: the folders exist, train/ has at most num_classes classes (the
    model's outputs), every class folder holds an image, val/ has no class unknown to train/."""
    info = DATASETS["imagenet"]
    layout = f"--data-dir {root} to contain {info.layout}"
    train_dir = os.path.join(root, "train")
    # val/ is numbered by train/'s list: read it for either split
    classes = class_folders(train_dir, layout)
    if len(classes) > num_classes:
        raise DataError(f"{train_dir} has {len(classes)} class folders, but the model has {num_classes} outputs: "
                        f"labels {num_classes}..{len(classes) - 1} would have none (at most {num_classes} classes)")
    return ImageFolderDataset(train_dir if train else os.path.join(root, "val"), train, size, layout=layout,
                              classes=classes)


def load_dataset(name: str, data_dir: Optional[str], train: bool, T: int = 1, image_size: int = 224,
                 num_classes: Optional[int] = None) -> Dataset:
    """The train or test split of a data set (see DATASETS for what data_dir must hold).
    image_size: the crop of ImageNet images (224 in the paper). num_classes: the outputs of the
    model that will read it (default: the data set's, DATASETS[name].num_classes); an ImageNet
    folder with more classes is a DataError. Raises DataError naming the path for a missing or
    malformed folder.

    Example:
        >>> test = load_dataset("imagenet", "/data/imagenet", train=False)   # val/, train/'s labels
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__} {num_classes!r}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if name == "digits":
        return _digits(train)
    if not data_dir:
        raise DataError(f"{name} needs --data-dir: a folder with {DATASETS[name].layout}")
    if name.startswith("cifar"):
        return _cifar(name, data_dir, train)
    if name == "imagenet":
        return _imagenet(data_dir, train, image_size,
                         DATASETS[name].num_classes if num_classes is None else num_classes)
    return _dvs(name, data_dir, train, T)
