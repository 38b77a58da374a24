"""The training command: accuracy on digits, exact resume, real on-disk data loading, errors."""

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")

from sltt_kernels import train_command as train  # noqa: E402
from sltt_kernels.data import DataError, load_dataset  # noqa: E402


def _run(tmp_path, name, *extra):
    out = tmp_path / name
    return train.main(["--dataset", "digits", "--T", "4", "--seed", "0", "--out", str(out), "--no-progress",
                       *extra]), out


def test_digits_bptt_sltt_sltt_k_reach_90_percent(tmp_path):
    """T = 4, fixed seed: each method >= 90% test accuracy; SLTT within 2 points of BPTT."""
    acc = {}
    for method in ("bptt", "sltt", "sltt-k"):
        k = ["--K", "2"] if method == "sltt-k" else []  # --K is refused with the other methods
        summary, out = _run(tmp_path, method, "--method", method, *k, "--epochs", "15")
        acc[method] = summary["final_test_acc"]
        assert (out / "summary.json").exists() and (out / "checkpoint.pt").exists()
        assert summary["wall_s"] > 0  # recorded; how long it takes is the benchmarks' business
    assert min(acc.values()) >= 0.90, acc
    assert abs(acc["sltt"] - acc["bptt"]) <= 0.02, acc


@pytest.mark.parametrize("method", ["sltt-k", "bptt"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, method):
    _, straight = _run(tmp_path, "straight", "--method", method, "--epochs", "3")
    _, resumed = _run(tmp_path, "resumed", "--method", method, "--epochs", "3", "--stop-after", "2")
    first = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert first["epoch"] == 2
    summary, _ = _run(tmp_path, "resumed", "--method", method, "--epochs", "3", "--resume")
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and summary["epochs_done"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["test_acc"] for h in a["history"]] == [h["test_acc"] for h in b["history"]]


def _write_cifar10(root, n_train=6, n_test=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (n_train, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n_train)), b"batch_label": b"training batch"}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                     b"labels": list(rng.integers(0, 10, n_test))}, f)
    return folder


def test_cifar10_folder_in_torchvision_format(tmp_path):
    _write_cifar10(tmp_path)
    train_ds = load_dataset("cifar10", str(tmp_path), train=True)
    test_ds = load_dataset("cifar10", str(tmp_path), train=False)
    assert len(train_ds) == 30 and len(test_ds) == 4
    x, y = train_ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= int(y) < 10
    # the pixels are the file's: the test split is not augmented
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb"), encoding="bytes")
    first = torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(3, 1, 1)  # the official scripts' std
    torch.testing.assert_close(test_ds[0][0], (first - mean) / std)
    summary = train.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--T", "1", "--epochs", "1",
                          "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress"])
    assert summary["epochs_done"] == 1


def test_cifar100_folder(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 5), ("test", 3)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": list(rng.integers(0, 100, n)), b"coarse_labels": [0] * n}, f)
    assert len(load_dataset("cifar100", str(tmp_path), train=True)) == 5


def test_missing_or_malformed_data_folder_names_path_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*data_batch_1"):
        load_dataset("cifar10", str(tmp_path / "nowhere"), train=True)
    folder = _write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", str(tmp_path), train=True)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10", None, train=True)
    with pytest.raises(SystemExit, match="cifar-10-batches-py"):
        train.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    with pytest.raises(DataError, match=str(tmp_path / "nodvs")):
        load_dataset("dvs-gesture", str(tmp_path / "nodvs"), train=True, T=4)


def test_bad_arguments():
    with pytest.raises(SystemExit):
        train.parse_args(["--method", "sltt-k", "--K", "9", "--T", "4"])
    with pytest.raises(SystemExit):
        train.parse_args(["--T", "0"])
