"""The paper's recipes in the training command, its data pipelines (CIFAR validation and safe
loading, Cutout, DVS-CIFAR10 split and size, ImageNet folders), and reliability: resume with
changed flags, corrupt checkpoints."""

import builtins
import math
import os
import pickle
import random

import numpy as np
import pytest
import torch

from sltt_kernels import checkpoint, data, train_command as train
from sltt_kernels.data import DataError, load_dataset


# ---------------------------------------------------------------------------------------------
# recipes


@pytest.mark.parametrize("dataset, expected", [
    ("cifar10", dict(model="resnet18", T=6, epochs=200, lr=0.1, batch_size=128, weight_decay=5e-5,
                     mse_target="threshold", loss_lambda=0.05, dropout=0.0)),
    ("cifar100", dict(model="resnet18", T=6, weight_decay=5e-4, mse_target="threshold")),
    ("dvs-gesture", dict(model="vgg11_bn", T=20, epochs=300, lr=0.1, batch_size=16, weight_decay=5e-4, dropout=0.4,
                         mse_target="threshold", drop_last=True, K=4)),
    ("dvs-cifar10", dict(model="vgg11_bn", T=10, epochs=300, lr=0.05, batch_size=128, dropout=0.3,
                         mse_target="onehot", drop_last=False, K=2)),
    ("imagenet", dict(model="nf_resnet34", T=1, epochs=100, lr=0.1, batch_size=256, weight_decay=1e-5,
                      loss_lambda=0.0)),
])
def test_paper_recipe_per_dataset(dataset, expected):
    args = train.parse_args(["--dataset", dataset])
    assert args.recipe == "paper" and args.tau == 1.1 and args.surrogate == "triangle" and args.momentum == 0.9
    assert args.amp_dtype == "fp16"
    for k, v in expected.items():
        assert getattr(args, k) == v, k


def test_recipe_flags_override_and_other_recipes():
    args = train.parse_args(["--dataset", "cifar10", "--tau", "2.0", "--surrogate", "sigmoid", "--dropout", "0.1",
                             "--loss-lambda", "0.2", "--mse-target", "onehot", "--weight-decay", "1e-4"])
    assert (args.tau, args.surrogate, args.dropout, args.loss_lambda, args.mse_target, args.weight_decay) == \
        (2.0, "sigmoid", 0.1, 0.2, "onehot", 1e-4)
    fast = train.parse_args(["--dataset", "cifar10", "--recipe", "fast-1bit"])
    assert fast.surrogate == "rect" and fast.weight_decay == 5e-5
    ft = train.parse_args(["--dataset", "imagenet", "--recipe", "paper-finetune", "--pretrained", "x.pt"])
    assert (ft.T, ft.epochs, ft.lr, ft.weight_decay, ft.loss_lambda) == (6, 30, 0.001, 0.0, 0.0)
    with pytest.raises(SystemExit):
        train.parse_args(["--dataset", "imagenet", "--recipe", "paper-finetune"])  # needs --pretrained
    with pytest.raises(SystemExit):
        train.parse_args(["--dataset", "cifar10", "--recipe", "paper-finetune"])
    with pytest.raises(SystemExit):
        train.parse_args(["--dataset", "cifar10", "--dropout", "1.0"])


def test_neurons_and_dropout_follow_the_flags():
    from sltt_kernels import surrogate
    from sltt_kernels.nn import PaperLIFNode, TimeDropout

    args = train.parse_args(["--dataset", "dvs-cifar10", "--tau", "1.5", "--surrogate", "rect"])
    net = train.build_model(args, data.DATASETS["dvs-cifar10"], torch.device("cpu"))
    lifs = [m for m in net.modules() if isinstance(m, PaperLIFNode)]
    assert lifs and all(m.tau == 1.5 and isinstance(m.surrogate_function, surrogate.Rect) for m in lifs)
    assert all(m.p == 0.3 for m in net.modules() if isinstance(m, TimeDropout))
    assert net.fc.module.in_features == 512 * 49


def test_topk_correct():
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0]])
    y = torch.tensor([5, 1])  # first row: top-1; second: rank 2
    assert train.topk_correct(logits, y, 1) == 1 and train.topk_correct(logits, y, 5) == 2
    assert train.topk_correct(logits, torch.tensor([0, 5]), 5) == 0


def test_drop_last_for_dvs_gesture_loader():
    ds = torch.utils.data.TensorDataset(torch.zeros(35, 2), torch.zeros(35))
    args = train.parse_args(["--dataset", "dvs-gesture"])
    assert len(train._loader(ds, args, True, 0)) == 2  # 35 // 16
    args = train.parse_args(["--dataset", "dvs-cifar10", "--batch-size", "16"])
    assert len(train._loader(ds, args, True, 0)) == 3


# ---------------------------------------------------------------------------------------------
# CIFAR files: validated, and loaded without running code


def _cifar_folder(root, data_fn=None, labels_fn=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        y = list(rng.integers(0, 10, 4))
        if name == "data_batch_2":
            x = data_fn(x) if data_fn else x
            y = labels_fn(y) if labels_fn else y
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": y}, f)
    return folder


@pytest.mark.parametrize("data_fn, labels_fn, match", [
    (lambda x: x.astype(np.float32) / 255, None, "dtype float32"),
    (lambda x: x.astype(np.int64) + 200, None, r"span .*\.\.4|expected 0\.\.255"),
    (lambda x: x[:, :3000], None, "shape"),
    (None, lambda y: y[:3], "4 images but 3 labels"),
    (None, lambda y: [0, 1, 2, 10], r"labels span 0\.\.10"),
    (None, lambda y: [-1, 1, 2, 3], r"labels span -1"),
])
def test_malformed_cifar_batch_is_refused_with_the_file_named(tmp_path, data_fn, labels_fn, match):
    _cifar_folder(tmp_path, data_fn, labels_fn)
    with pytest.raises(DataError, match=match) as e:
        load_dataset("cifar10", str(tmp_path), train=True)
    assert "data_batch_2" in str(e.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the file if unpickled by pickle.load


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = _cifar_folder(tmp_path)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_4", "wb") as f:
        pickle.dump({b"data": _Evil(str(marker)), b"labels": [0]}, f)
    with pytest.raises(DataError, match="data_batch_4.*refusing"):
        load_dataset("cifar10", str(tmp_path), train=True)
    assert not marker.exists()


def test_valid_cifar_still_loads_with_official_normalisation(tmp_path):
    folder = _cifar_folder(tmp_path)
    ds = load_dataset("cifar10", str(tmp_path), train=False)
    raw = pickle.load(open(folder / "test_batch", "rb"))[b"data"][1].reshape(3, 32, 32) / 255.0
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(3, 1, 1)
    torch.testing.assert_close(ds[1][0], (torch.from_numpy(raw).float() - mean) / std)


def test_cutout_follows_torchtoolbox_defaults():
    rng = random.Random(0)
    draws = [data.cutout_params(32, 32, rng) for _ in range(4000)]
    hits = [d for d in draws if d is not None]
    assert 0.45 < len(hits) / len(draws) < 0.55
    areas = [h * w / 1024 for (_, _, h, w, _) in hits]
    assert min(areas) >= 0.005 and max(areas) <= 0.4 and 0.15 < np.mean(areas) < 0.25
    values = [v for *_, v in hits]
    assert min(values) >= 0 and max(values) <= 255 and len(set(values)) > 200
    for top, left, h, w, _ in hits:
        assert 0 <= top <= 32 - h and 0 <= left <= 32 - w


def test_cifar_augmentation_pads_black_and_fills_cutout_with_a_grey_value():
    x = torch.full((1, 3, 32, 32), 0.5)
    ds = data.TensorImages(x, torch.zeros(1, dtype=torch.long), augment=True)
    seen = set()
    for _ in range(60):
        img, _ = ds[0]
        seen |= set(torch.round(img * 255).unique().tolist())
    # 0.5 grey image, black (0) padding from the crop, and cutout grey levels
    assert {0.0, 128.0} <= seen and len(seen) > 5


# ---------------------------------------------------------------------------------------------
# DVS-CIFAR10 and ImageNet


def test_dvs_cifar10_split_by_sample_number_and_resize():
    samples = [(f"/d/{c}/cifar10_{c}_{i}.npz", k) for k, c in enumerate(["airplane", "cat"]) for i in range(1000)]
    random.Random(0).shuffle(samples)  # a DatasetFolder orders by name, not number
    train_idx = data.split_cifar10_dvs(samples, True)
    test_idx = data.split_cifar10_dvs(samples, False)
    assert len(train_idx) == 1800 and len(test_idx) == 200 and not set(train_idx) & set(test_idx)
    assert all(int(samples[i][0].rsplit("_", 1)[1][:-4]) >= 900 for i in test_idx)

    class Frames:
        def __getitem__(self, i):
            return np.ones((3, 2, 128, 128), dtype=np.float32), 1

    ds = data.FramesResized(Frames(), [0, 1], 48)
    x, y = ds[0]
    assert x.shape == (3, 2, 48, 48) and torch.allclose(x, torch.ones_like(x)) and y == 1


def _image_folder(root, n_classes=2, n_per=3, size=(40, 30)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(n_classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n_per):
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_imagenet_folder_loader(tmp_path):
    pytest.importorskip("PIL")
    _image_folder(tmp_path)
    train_ds = load_dataset("imagenet", str(tmp_path), train=True, image_size=24)
    val_ds = load_dataset("imagenet", str(tmp_path), train=False, image_size=24)
    assert len(train_ds) == 6 and len(val_ds) == 6 and train_ds.classes == ["n00000000", "n00000001"]
    x, y = train_ds[4]
    assert x.shape == (3, 24, 24) and y == 1
    xv, _ = val_ds[0]
    assert xv.shape == (3, 24, 24)
    # validation is deterministic: resize short side to 27 (24 * 256 / 224), centre crop
    torch.testing.assert_close(val_ds[0][0], xv)
    with pytest.raises(DataError, match="train"):
        load_dataset("imagenet", str(tmp_path / "nothing"), train=True)


def test_imagenet_without_pillow_says_so(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(DataError, match="pillow"):
        load_dataset("imagenet", str(tmp_path), train=True)


def test_imagenet_training_run_and_finetune_from_pretrained(tmp_path):
    pytest.importorskip("PIL")
    _image_folder(tmp_path / "in")
    common = ["--dataset", "imagenet", "--data-dir", str(tmp_path / "in"), "--image-size", "32", "--batch-size", "2",
              "--epochs", "1", "--no-progress"]  # the recipe's model: NF-ResNet-34
    s1 = train.main(common + ["--out", str(tmp_path / "t1")])
    assert s1["T"] == 1 and s1["final_test_top5"] is not None
    s2 = train.main(common + ["--recipe", "paper-finetune", "--T", "2", "--pretrained",
                              str(tmp_path / "t1" / "checkpoint.pt"), "--out", str(tmp_path / "t2")])
    assert s2["T"] == 2 and s2["recipe"] == "paper-finetune"


# ---------------------------------------------------------------------------------------------
# resume and checkpoints


def _digits(tmp_path, *extra, out="run"):
    return train.main(["--dataset", "digits", "--T", "2", "--no-progress", "--out", str(tmp_path / out), *extra])


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A digits run stopped after epoch 1 of 2 (no previous checkpoint yet); copied per test."""
    root = tmp_path_factory.mktemp("one_epoch")
    _digits(root, "--epochs", "2", "--stop-after", "1")
    return root / "run"


def _copy_run(src, tmp_path):
    import shutil

    shutil.copytree(src, tmp_path / "run")


def test_resume_with_more_epochs_keeps_the_cosine_schedule_decreasing(tmp_path):
    _digits(tmp_path, "--epochs", "2")  # the LR reaches 0 after epoch 2
    summary = _digits(tmp_path, "--epochs", "4", "--resume")
    lrs = [h["lr"] for h in summary["history"]]  # the LR each epoch trained with
    assert len(lrs) == 4 and lrs[:2] == pytest.approx([0.1, 0.05], abs=1e-12)
    # epochs 3-4 follow the 4-epoch cosine from epoch 2 on, decreasing (the old schedule
    # climbed back up: 0.1 after epoch 4 of a 2-epoch cosine)
    for e in (3, 4):
        assert lrs[e - 1] == pytest.approx(0.05 * (1 + math.cos(math.pi * (e - 1) / 4)), abs=1e-12)
    assert lrs[3] < lrs[2]


@pytest.mark.parametrize("flag, value", [("--lr", "0.05"), ("--method", "bptt"), ("--T", "3"),
                                         ("--tau", "2.0"), ("--dataset", "cifar10")])
def test_resume_refuses_a_conflicting_flag(tmp_path, flag, value, one_epoch_run):
    _copy_run(one_epoch_run, tmp_path)
    with pytest.raises(SystemExit, match=rf"{flag} {value} \(the checkpoint has"):
        _digits(tmp_path, "--epochs", "2", "--resume", flag, value)


def test_resume_without_flags_uses_the_checkpoints_settings(tmp_path):
    _digits(tmp_path, "--epochs", "2", "--stop-after", "1", "--lr", "0.05", "--method", "bptt")
    summary = _digits(tmp_path, "--resume")
    assert summary["method"] == "bptt" and summary["epochs_done"] == 2
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["args"]["lr"] == 0.05 and ck["optimizer"]["param_groups"][0]["initial_lr"] == 0.05


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    _digits(tmp_path, "--epochs", "3", "--stop-after", "2")
    run = tmp_path / "run"
    assert (run / "checkpoint.prev.pt").exists()
    blob = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(blob[: len(blob) // 3])
    summary = _digits(tmp_path, "--epochs", "3", "--resume")
    err = capsys.readouterr().err
    assert "checkpoint.pt is unreadable" in err and "checkpoint.prev.pt (epoch 1)" in err
    assert summary["epochs_done"] == 3


@pytest.mark.parametrize("damage, match", [
    (lambda p: p.write_bytes(b""), "unreadable"),
    (lambda p: p.write_bytes(b"PK\x03\x04garbage"), "unreadable"),
    (lambda p: torch.save({k: v for k, v in torch.load(p, weights_only=True).items() if k != "scheduler"}, p),
     "lacks scheduler"),
    (lambda p: torch.save([1, 2, 3], p), "holds a list"),
])
def test_bad_checkpoint_names_the_file_and_why(tmp_path, damage, match, one_epoch_run):
    _copy_run(one_epoch_run, tmp_path)
    path = tmp_path / "run" / "checkpoint.pt"
    assert not (tmp_path / "run" / "checkpoint.prev.pt").exists()
    damage(path)
    with pytest.raises(SystemExit, match=rf"checkpoint\.pt.*{match}"):
        _digits(tmp_path, "--epochs", "2", "--resume")


def test_save_keeps_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / "c.pt")
    checkpoint.save_checkpoint({"a": 1}, path)
    checkpoint.save_checkpoint({"a": 2}, path)
    assert torch.load(path)["a"] == 2 and torch.load(str(tmp_path / "c.prev.pt"))["a"] == 1
    assert not os.path.exists(path + ".tmp")
