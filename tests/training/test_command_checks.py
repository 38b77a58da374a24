"""The training command's checks and the ImageNet loader's labels (issue 23 items 1, 2, 7, 8, 9,
14): val/ numbered by train/'s classes, folders refused before the model is built, unreadable
images named, every flag checked before any data or model is loaded, --K only where it means
something, a resume with nothing to train, RNG states restored from a checkpoint read onto a GPU."""

import json
import os
import re
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")

from sltt_kernels import checkpoint, train_command  # noqa: E402
from sltt_kernels.data import DATASETS, DataError, DatasetInfo, ImageFolderDataset, load_dataset  # noqa: E402

QUICK = ["--dataset", "digits", "--T", "2", "--max-iterations", "2", "--no-progress"]


class _ModelBuilt(Exception):
    """Raised by a stand-in for the model's construction: what the test checks came before it."""


def _no_data_no_model(monkeypatch):
    def no_data(*a, **k):
        raise AssertionError("data loaded before the flags were checked")

    def no_model(*a, **k):
        raise AssertionError("model built before the flags were checked")

    monkeypatch.setattr(train_command, "load_dataset", no_data)
    monkeypatch.setattr(train_command, "build_model", no_model)


# ---------------------------------------------------------------------------------------------
# ImageNet folders (items 1, 2, 8)


def _png(path, rng, size=8):
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _imagenet(root, train=("cat", "dog", "fox"), val=("cat", "dog", "fox"), per_class=2):
    """A fake ImageNet folder of random 8x8 PNG images: per_class in each class of each split."""
    rng = np.random.default_rng(0)
    for split, classes in (("train", train), ("val", val)):
        (root / split).mkdir(parents=True)
        for c in classes:
            (root / split / c).mkdir()
            for i in range(per_class):
                _png(root / split / c / f"{i}.png", rng)
    return root


def _labels(ds):
    return [ds[i][1] for i in range(len(ds))]


def test_val_is_numbered_by_train_classes_when_it_lacks_one(tmp_path):
    pytest.importorskip("PIL")
    _imagenet(tmp_path, val=("cat", "fox"))
    train = load_dataset("imagenet", str(tmp_path), train=True, image_size=8)
    val = load_dataset("imagenet", str(tmp_path), train=False, image_size=8)
    assert train.classes == val.classes == ["cat", "dog", "fox"]
    assert _labels(train) == [0, 0, 1, 1, 2, 2]
    # cat 0, fox 2 (the old loader numbered val/ on its own: fox 1, scored against dog's output)
    assert _labels(val) == [0, 0, 2, 2]
    assert all(os.path.basename(os.path.dirname(path)) == val.classes[y] for path, y in val.samples)
    assert val.missing_classes == ["dog"] and train.missing_classes == []


def test_val_class_unknown_to_train_is_refused_naming_the_folder(tmp_path):
    pytest.importorskip("PIL")
    _imagenet(tmp_path, val=("cat", "dog", "fox", "wolf"))
    assert len(load_dataset("imagenet", str(tmp_path), train=True, image_size=8)) == 6
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "val" / "wolf")) + " not among the 3 training"):
        load_dataset("imagenet", str(tmp_path), train=False, image_size=8)


def test_hidden_folders_take_no_label(tmp_path):
    pytest.importorskip("PIL")
    _imagenet(tmp_path, train=("cat", "dog"), val=("cat", "dog"))
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "val" / ".ipynb_checkpoints").mkdir()
    for train in (True, False):
        ds = load_dataset("imagenet", str(tmp_path), train=train, image_size=8)
        assert ds.classes == ["cat", "dog"] and _labels(ds) == [0, 0, 1, 1]


@pytest.mark.parametrize("split", ["train", "val"])
def test_class_folder_without_images_is_refused_naming_it(tmp_path, split):
    pytest.importorskip("PIL")
    _imagenet(tmp_path)
    empty = tmp_path / split / "dog"
    for f in empty.iterdir():
        f.unlink()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=re.escape(str(empty)) + ": a class folder without images"):
        load_dataset("imagenet", str(tmp_path), train=split == "train", image_size=8)


def test_more_classes_than_outputs_is_refused_naming_the_folder_and_both_numbers(tmp_path):
    pytest.importorskip("PIL")
    _imagenet(tmp_path)
    for train in (True, False):
        with pytest.raises(DataError, match=re.escape(str(tmp_path / "train")) + " has 3 class folders, but the "
                                            "model has 2 outputs"):
            load_dataset("imagenet", str(tmp_path), train=train, image_size=8, num_classes=2)
    assert len(load_dataset("imagenet", str(tmp_path), train=True, image_size=8, num_classes=3)) == 6
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        load_dataset("imagenet", str(tmp_path), train=True, num_classes=0)
    with pytest.raises(TypeError, match="num_classes must be an int, got float 2.0"):
        load_dataset("imagenet", str(tmp_path), train=True, num_classes=2.0)


def test_command_refuses_1001_classes_before_the_model_is_built(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    for c in range(1001):  # the class count is checked before any folder is searched for images
        (tmp_path / "in" / "train" / f"n{c:08d}").mkdir(parents=True)
    (tmp_path / "in" / "val").mkdir()
    monkeypatch.setattr(train_command, "build_model", lambda *a, **k: (_ for _ in ()).throw(_ModelBuilt()))
    with pytest.raises(SystemExit, match=re.escape(str(tmp_path / "in" / "train")) + " has 1001 class folders, but "
                                         "the model has 1000 outputs"):
        train_command.main(["--dataset", "imagenet", "--data-dir", str(tmp_path / "in"), "--out",
                            str(tmp_path / "run"), "--no-progress"])


def test_command_passes_the_models_outputs_to_the_check(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    _imagenet(tmp_path / "in")
    monkeypatch.setitem(DATASETS, "imagenet", DatasetInfo("imagenet", 2, 3, False, DATASETS["imagenet"].layout))
    monkeypatch.setattr(train_command, "build_model", lambda *a, **k: (_ for _ in ()).throw(_ModelBuilt()))
    with pytest.raises(SystemExit, match="has 3 class folders, but the model has 2 outputs"):
        train_command.main(["--dataset", "imagenet", "--data-dir", str(tmp_path / "in"), "--out",
                            str(tmp_path / "run"), "--no-progress"])


def test_command_says_which_classes_val_lacks_before_building_the_model(tmp_path, monkeypatch, capsys):
    pytest.importorskip("PIL")
    _imagenet(tmp_path / "in", val=("cat", "fox"))
    monkeypatch.setattr(train_command, "build_model", lambda *a, **k: (_ for _ in ()).throw(_ModelBuilt()))
    with pytest.raises(_ModelBuilt):
        train_command.main(["--dataset", "imagenet", "--data-dir", str(tmp_path / "in"), "--out",
                            str(tmp_path / "run"), "--no-progress"])
    assert "the test split lacks 1 of the 3 training classes (dog); its labels keep" in capsys.readouterr().out


@pytest.mark.parametrize("workers", ["0", "1"])
def test_unreadable_image_is_named_when_it_is_read(tmp_path, monkeypatch, workers):
    pytest.importorskip("PIL")
    _imagenet(tmp_path / "in", train=("cat", "dog"), val=("cat", "dog"))
    bad = tmp_path / "in" / "train" / "dog" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    # the error comes at the first batch, before any forward: a small stand-in for NF-ResNet-34
    monkeypatch.setitem(train_command.MODEL_BUILDERS, "nf_resnet34", train_command.MODEL_BUILDERS["digits"])
    with pytest.raises(SystemExit) as exc:
        train_command.main(["--dataset", "imagenet", "--data-dir", str(tmp_path / "in"), "--image-size", "8",
                            "--batch-size", "4", "--epochs", "1", "--workers", workers, "--out", str(tmp_path / "run"),
                            "--no-progress"])
    text = str(exc.value.code)
    assert text.startswith(f"sltt-train: {bad}: not a readable image (") and "Traceback" not in text
    assert "no epoch was completed" in text
    with pytest.raises(DataError, match=re.escape(str(bad))):
        ImageFolderDataset(str(tmp_path / "in" / "train"), train=True, size=8)[3]


def test_imagenet_loader_workers_draw_their_own_augmentation(tmp_path):
    pytest.importorskip("PIL")
    _imagenet(tmp_path / "in", train=("cat",), val=("cat",), per_class=1)
    one = (tmp_path / "in" / "train" / "cat" / "0.png").read_bytes()
    for i in range(1, 8):  # the same image eight times: equal batches would be replayed draws
        (tmp_path / "in" / "train" / "cat" / f"{i}.png").write_bytes(one)
    ds = load_dataset("imagenet", str(tmp_path / "in"), train=True, image_size=8)
    args = train_command.parse_args(["--dataset", "imagenet", "--batch-size", "2", "--workers", "2", "--seed", "0",
                                     "--out", str(tmp_path / "run")])
    batches = [x for x, _ in train_command._loader(ds, args, True, 0)]
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[2], batches[3])
    again = [x for x, _ in train_command._loader(ds, args, True, 0)]
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_each_process_workers_draw_their_own_augmentation():
    from sltt_kernels.data import TensorImages

    ds = TensorImages(torch.rand(1, 3, 32, 32).expand(8, 3, 32, 32).contiguous(), torch.zeros(8, dtype=torch.long),
                      augment=True)
    args = train_command.parse_args(["--dataset", "cifar10", "--batch-size", "4", "--workers", "1", "--seed", "0"])
    # ranks 0 and 1 of 2 (no process group needed: the sampler is told its rank); the same image
    # everywhere, so equal batches would be the same draws replayed by worker 0 of each process
    per_rank = [[x for x, _ in train_command._loader(ds, args, True, 0, train_command.Dist(rank, 2))]
                for rank in (0, 1)]
    assert all(not torch.equal(a, b) for a, b in zip(*per_rank))


# ---------------------------------------------------------------------------------------------
# flags (item 9): refused before any data or model, naming the flag and the value

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("flags, match", [
    (["--weight-decay=-1e-4"], r"--weight-decay must be >= 0, got -0\.0001"),
    (["--momentum=-0.5"], r"--momentum must lie in \[0, 1\), got -0\.5"),
    (["--momentum", "1.5"], r"--momentum must lie in \[0, 1\), got 1\.5"),
    (["--tau", "nan"], "--tau must be a finite number, got nan"),
    (["--tau", "inf"], "--tau must be a finite number, got inf"),
    (["--tau", "0.5"], r"--tau must be > 1 .*got 0\.5"),
    (["--lr=-0.1"], r"--lr must be > 0, got -0\.1"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--image-size", "0"], "--image-size must be >= 1, got 0"),
    (["--T", "0"], "--T must be >= 1, got 0"),
    (["--workers", "-1"], "--workers must be >= 0, got -1"),
    (["--stop-after", "-1"], "--stop-after must be >= 1, got -1"),
    (["--backend", "bogus"], "--backend bogus: not a backend; choose one of auto, reference, cpu, cuda, triton"),
    pytest.param(["--device", "cuda"], "--device cuda: torch sees no CUDA GPU",
                 marks=pytest.mark.skipif(CUDA, reason="a GPU is here")),
    pytest.param(["--backend", "cuda"],
                 "--backend cuda runs the neurons on cuda tensors, but the run is on --device cpu", marks=pytest.mark.skipif(CUDA, reason="a GPU is here")),
    (["--device", "cpu", "--backend", "cuda"], "--backend cuda runs the neurons on cuda tensors"),
    (["--method", "sltt-k", "--T", "2", "--K", "3"], r"--K must lie in \[1, T=2\] for --method sltt-k, got --K 3"),
    (["--method", "sltt-k", "--K", "0"], r"--K must lie in \[1, T=4\] for --method sltt-k, got --K 0"),
    (["--method", "sltt", "--K", "2"], "--K 2: only --method sltt-k back-propagates K of the T steps; --method sltt"),
    (["--method", "bptt", "--K", "1"], "--K 1: only --method sltt-k .*--method bptt would ignore it"),
    (["--K", "2"], "--K 2: only --method sltt-k"),  # the recipe's method is sltt
    (["--pretrained", "/nonexistent/in1.pt"], "--pretrained /nonexistent/in1.pt: no such file"),
    (["--out", ""], "--out must name a folder, got an empty string"),
    (["--v-threshold", "0"], r"--v-threshold must be > 0 .*got 0\.0"),
    (["--neuron", "if", "--v-threshold=-0.5"], r"--v-threshold must be > 0 .*got -0\.5"),
    (["--neuron", "lif", "--v-reset", "1"], r"--v-reset must be below --v-threshold 1\.0 .*got 1\.0"),
    (["--neuron", "if", "--v-threshold", "0.4", "--v-reset", "0.5"], r"--v-reset must be below --v-threshold 0\.4"),
    (["--neuron", "leaky", "--beta", "1.5"], r"--beta must lie in \[0, 1\] .*1\.5 would run as 1\.0\), got 1\.5"),
    (["--neuron", "leaky", "--beta=-0.1"], r"--beta must lie in \[0, 1\] .*got -0\.1"),
])
def test_bad_values_are_refused_naming_flag_and_value_before_any_work(flags, match, capsys, monkeypatch, tmp_path):
    _no_data_no_model(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        train_command.main(["--dataset", "digits", "--out", str(tmp_path / "run"), *flags])
    # argparse's errors go to stderr (exit 2); the later checks' SystemExit carries its message
    said = capsys.readouterr().err + str(exc.value.code)
    assert re.search(match, said), said
    assert "Traceback" not in said


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_text(""), "is a file, not a folder"),
    (lambda p: None, "is not writable"),
])
def test_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch, capsys, make, match):
    _no_data_no_model(monkeypatch)
    out = tmp_path / "out"
    make(out)
    if match == "is not writable":
        # root writes into a read-only folder anyway: a read-only file system, as os.access reports it
        real = os.access
        monkeypatch.setattr(train_command.os, "access",
                            lambda p, mode, **kw: False if str(p) == str(tmp_path) else real(p, mode, **kw))
    with pytest.raises(SystemExit):
        train_command.main(["--dataset", "digits", "--out", str(out)])
    err = capsys.readouterr().err
    assert f"--out {out}" in err and match in err, err


def test_sltt_k_with_T_below_the_recipes_K_runs_without_blaming_K(tmp_path, capsys):
    args = train_command.parse_args(["--dataset", "digits", "--method", "sltt-k", "--T", "1"])
    assert args.K == 1  # the recipe's K = 2, lowered to T
    summary = train_command.main(["--dataset", "digits", "--method", "sltt-k", "--T", "1", "--epochs", "1",
                                  "--max-iterations", "1", "--no-progress", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert summary["K"] == 1 and summary["epochs_done"] == 1
    assert "K=1: the recipe's K=2 is more than --T 1" in out
    assert "--K" not in out + err
    # given, --K is checked as given
    args = train_command.parse_args(["--dataset", "digits", "--method", "sltt-k", "--T", "3", "--K", "3"])
    assert args.K == 3


def test_K_given_on_resume_of_an_sltt_run_is_refused(tmp_path, monkeypatch):
    train_command.main([*QUICK, "--epochs", "2", "--stop-after", "1", "--out", str(tmp_path / "run")])
    _no_data_no_model(monkeypatch)
    with pytest.raises(SystemExit, match="--K 2: only --method sltt-k"):
        train_command.main(["--resume", "--K", "2", "--out", str(tmp_path / "run")])


# ---------------------------------------------------------------------------------------------
# resume with nothing to train (item 9)


def test_resume_with_nothing_to_train_says_so_and_keeps_the_summary(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    first = train_command.main([*QUICK, "--epochs", "2", "--out", str(out)])
    summary = out / "summary.json"
    before = (summary.read_bytes(), os.stat(summary).st_mtime_ns)
    capsys.readouterr()
    _no_data_no_model(monkeypatch)
    with pytest.raises(SystemExit, match=r"--epochs 1: the checkpoint .*checkpoint\.pt has already trained 2 epochs, "
                                         r"so there is nothing to train"):
        train_command.main(["--resume", "--epochs", "1", "--out", str(out)])
    assert (summary.read_bytes(), os.stat(summary).st_mtime_ns) == before
    # the run is complete: nothing to train either, said, and the summary returned as it is
    again = train_command.main(["--resume", "--out", str(out), "--no-progress"])
    said = capsys.readouterr().out
    assert "nothing to train: the checkpoint" in said and "summary.json is left as it was" in said
    assert again == json.loads(before[0]) and again["wall_s"] == first["wall_s"]
    assert (summary.read_bytes(), os.stat(summary).st_mtime_ns) == before


# ---------------------------------------------------------------------------------------------
# an interrupt in process (item 7; the SIGTERM of a real process is test_train_command.py's)


@pytest.mark.parametrize("at_epoch, kept", [(0, "no epoch was completed, so no checkpoint was written"),
                                            (1, "the checkpoint of epoch 1 is kept in")])
def test_interrupt_says_what_was_kept(tmp_path, monkeypatch, at_epoch, kept):
    real = train_command.train_one_epoch

    def interrupted(*a, **k):
        if a[5] == at_epoch:  # the epoch argument
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_command, "train_one_epoch", interrupted)
    with pytest.raises(SystemExit) as exc:
        train_command.main([*QUICK, "--epochs", "3", "--out", str(tmp_path / "run")])
    assert f"interrupted in epoch {at_epoch + 1}; {kept}" in str(exc.value.code)
    if at_epoch:
        assert f"continue with --resume --out {tmp_path / 'run'}" in str(exc.value.code)


@pytest.mark.parametrize("at_save, said", [
    (1, "interrupted after epoch 1, before its checkpoint was written; no checkpoint was written"),
    (2, "interrupted after epoch 2, before its checkpoint was written; the checkpoint of epoch 1 is kept in")])
def test_interrupt_while_the_checkpoint_is_written_names_the_epochs_truly(tmp_path, monkeypatch, at_save, said):
    real = train_command.save_checkpoint
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == at_save:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_command, "save_checkpoint", interrupted)
    with pytest.raises(SystemExit) as exc:
        train_command.main([*QUICK, "--epochs", "3", "--out", str(tmp_path / "run")])
    assert said in str(exc.value.code), exc.value.code
    assert "epoch 3" not in str(exc.value.code)  # not an epoch that never began


def test_a_signal_inside_a_del_is_recorded_for_the_loop_not_raised_and_lost():
    """Python prints and drops an exception raised in a __del__ (a Ctrl-C there was lost and the
    run trained to its end): the handlers record it there, the loop raises after the iteration."""
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    replaced = train_command._raise_on_signals()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            assert callable(handler) and handler is not signal.default_int_handler
            train_command._SIGNALLED.clear()

            class Dying:
                def __del__(self):
                    handler(signum, sys._getframe())

            Dying()  # collected here: the handler runs inside __del__ and must not raise
            assert train_command._SIGNALLED == [signum]
            with pytest.raises(KeyboardInterrupt):
                handler(signum, sys._getframe())
    finally:
        train_command._restore_signals(replaced)
        train_command._SIGNALLED.clear()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_resume_from_a_mistyped_folder_does_not_make_it(tmp_path):
    missing = tmp_path / "runs" / "c1O"
    with pytest.raises(SystemExit, match="does not exist"):
        train_command.main(["--resume", "--out", str(missing), "--no-progress"])
    assert not missing.exists()


def test_interrupt_before_training_says_nothing_was_written(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "load_dataset", interrupted)
    with pytest.raises(SystemExit, match="interrupted before training began; nothing was written$"):
        train_command.main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "run")])


def test_interrupt_while_writing_the_summary_then_resume_writes_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    train_command.main([*QUICK, "--epochs", "2", "--stop-after", "1", "--out", str(out)])
    real = train_command._write_summary

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "_write_summary", interrupted)
    with pytest.raises(SystemExit, match="interrupted after training, while writing the summary; the last epoch's "
                                         f"checkpoint is kept in {re.escape(str(out))}"):
        train_command.main(["--resume", "--out", str(out), "--no-progress"])
    assert json.loads((out / "summary.json").read_text())["epochs_done"] == 1  # the stopped run's
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(train_command, "_write_summary", real)
    _no_data_no_model(monkeypatch)
    capsys.readouterr()
    summary = train_command.main(["--resume", "--out", str(out), "--no-progress"])
    assert "summary.json is missing or older than the checkpoint: written from its history" in capsys.readouterr().out
    assert summary["epochs_done"] == 2 and summary["wall_s"] is None
    assert summary == json.loads((out / "summary.json").read_text())
    assert not (out / "summary.json.tmp").exists()


def test_a_failed_summary_write_leaves_no_partial_file_and_says_what_is_kept(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def full_disk(obj, f, **kw):
        f.write('{"partial": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_command.json, "dump", full_disk)
    with pytest.raises(SystemExit, match=r"could not write .*summary\.json \(No space left on device\); the checkpoint "
                                         r"of epoch 1 is kept in .*--resume --out .* writes the summary"):
        train_command.main([*QUICK, "--epochs", "1", "--out", str(out)])
    assert not (out / "summary.json").exists() and not (out / "summary.json.tmp").exists()
    monkeypatch.undo()
    summary = train_command.main(["--resume", "--out", str(out), "--no-progress"])
    assert summary["epochs_done"] == 1 and json.loads((out / "summary.json").read_text()) == summary


# ---------------------------------------------------------------------------------------------
# RNG states from a checkpoint read onto a GPU (item 14)


class _OnGPU(torch.Tensor):
    """A tensor that says it lives on a CUDA device, as the RNG states of a checkpoint read with
    map_location="cuda" do; its data stays on the CPU (no GPU needed). torch.set_rng_state refuses
    it as it refuses a real GPU tensor; copying it to the CPU gives the state back."""

    @staticmethod
    def __new__(cls, inner):
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype, device="cuda")

    def __init__(self, inner):
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get("device") == torch.device("cpu"):
            return args[0].inner.to(dtype=kwargs.get("dtype", args[0].inner.dtype)).clone()
        raise RuntimeError(f"{func} is not simulated on the stand-in GPU tensor")


def test_stand_in_gpu_tensor_is_refused_by_set_rng_state_as_a_gpu_tensor_is():
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        torch.set_rng_state(_OnGPU(torch.get_rng_state()))


def test_rng_state_read_onto_a_gpu_is_restored(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_command.main([*QUICK, "--epochs", "2", "--stop-after", "1", "--out", str(out)])
    ck = checkpoint.read_checkpoint(str(out / "checkpoint.pt"))
    torch.set_rng_state(ck["torch_rng"])
    want = torch.rand(5)
    torch.manual_seed(123)  # elsewhere
    cuda_state = torch.arange(16, dtype=torch.uint8)
    on_gpu = dict(ck, torch_rng=_OnGPU(ck["torch_rng"]), cuda_rng=_OnGPU(cuda_state))
    cuda_set = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": cuda_set.append((state, device)))
    args = train_command.parse_args([*QUICK, "--epochs", "2", "--out", str(out)])
    net, opt, sched, scaler, _, _ = train_command._setup(args, torch.device("cpu"))
    start, history = checkpoint.restore_training_state(on_gpu, str(out / "checkpoint.pt"), net, opt, sched, scaler,
                                                       torch.device("cpu"), 2)
    assert start == 1 and len(history) == 1
    assert torch.equal(torch.rand(5), want)
    assert cuda_set == []  # a CPU run leaves the CUDA generator alone
    checkpoint.restore_rng_states(on_gpu, torch.device("cuda"))
    assert torch.equal(torch.rand(5), want)
    (state, device), = cuda_set
    assert type(state) is torch.Tensor and state.device.type == "cpu" and torch.equal(state, cuda_state)
    with pytest.raises(checkpoint.CheckpointError, match="torch_rng is a list"):
        checkpoint.restore_rng_states(dict(ck, torch_rng=[1, 2]), "cpu")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_resume_on_a_gpu(tmp_path):
    out = tmp_path / "run"
    common = [*QUICK, "--device", "cuda", "--epochs", "2", "--out", str(out)]
    train_command.main([*common, "--stop-after", "1"])
    ck = torch.load(out / "checkpoint.pt", map_location="cuda", weights_only=True)
    assert ck["torch_rng"].device.type == "cuda"
    checkpoint.restore_rng_states(ck, torch.device("cuda"))
    summary = train_command.main(["--resume", "--device", "cuda", "--out", str(out), "--no-progress"])
    assert summary["epochs_done"] == 2 and summary["device"] == "cuda"


def test_dvs_without_spikingjellys_datasets_names_every_import_error(tmp_path, monkeypatch):
    """The first import's error (SpikingJelly 2.0's place, where a missing torchvision shows) is
    not hidden behind the second's ('no module named ...activation_based.datasets')."""
    from sltt_kernels import data

    monkeypatch.setitem(sys.modules, "spikingjelly.datasets", None)
    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based.datasets", None)
    with pytest.raises(DataError) as exc:
        data.load_dataset("dvs-gesture", str(tmp_path), train=True, T=4)
    text = str(exc.value)
    assert "pip install spikingjelly torchvision" in text
    assert "spikingjelly.datasets:" in text and "spikingjelly.activation_based.datasets:" in text


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("crafted") / "run"
    train_command.main([*QUICK, "--epochs", "2", "--stop-after", "1", "--out", str(out)])
    return out


@pytest.mark.parametrize("edit, said", [
    (lambda ck: ck["args"].update(lr="abc"), r"setting lr = 'abc' is not a value of --lr"),
    (lambda ck: ck["args"].update(method="weird"), r"setting method = 'weird' is not a value of --method \(one of "),
    (lambda ck: ck["args"].update(T=2.5), r"setting T = 2\.5 is not a value of --T"),
    (lambda ck: ck["args"].update(drop_last="yes"), r"setting drop_last = 'yes' is not a value of --drop-last"),
    (lambda ck: ck["args"].update(lr=float("nan")), r"--lr must be a finite number, got nan"),
    (lambda ck: ck.update(history=None), r"its history is a NoneType, not a list of epoch records"),
    (lambda ck: ck.update(torch_rng=torch.zeros(7, dtype=torch.uint8)),
     r"its loss scaler or random number generator state is malformed"),
])
def test_a_crafted_checkpoint_is_refused_by_name_not_run_or_traced(tmp_path, finished_run, edit, said):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    edit(ck)
    torch.save(ck, out / "checkpoint.pt")
    with pytest.raises(SystemExit) as exc:
        train_command.main(["--resume", "--out", str(out), "--no-progress"])
    assert re.search(said, str(exc.value.code)), exc.value.code


@pytest.mark.parametrize("message", ["DataLoader worker (pid 4242) is killed by signal: Killed. ",
                                     "DataLoader worker (pid(s) 4242) exited unexpectedly"])
def test_a_killed_dataloader_worker_stops_the_run_saying_what_is_kept(tmp_path, monkeypatch, message):
    """A worker killed by the OOM killer, or by a scheduler's SIGTERM to the whole process group
    before this process's own handler ran: a message and the kept checkpoint, not a traceback."""
    real = train_command.train_one_epoch

    def worker_dies(*a, **k):
        if a[5] == 1:  # the epoch argument
            raise RuntimeError(message)
        return real(*a, **k)

    monkeypatch.setattr(train_command, "train_one_epoch", worker_dies)
    with pytest.raises(SystemExit) as exc:
        train_command.main([*QUICK, "--epochs", "3", "--out", str(tmp_path / "run")])
    said = str(exc.value.code)
    assert said.startswith(f"sltt-train: stopped in epoch 2 ({message.strip().rstrip('.')}); the checkpoint of "
                           "epoch 1 is kept in"), said


def test_another_runtime_error_in_training_is_not_taken_for_a_stop(tmp_path, monkeypatch):
    def fails(*a, **k):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(train_command, "train_one_epoch", fails)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        train_command.main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "run")])


def test_after_a_signal_the_stops_noise_is_kept_from_stderr(monkeypatch):
    """Once signalled, the unraisable-exception hook drops what Python could not raise (our
    KeyboardInterrupt in a fork callback, a DataLoader iterator's __del__, a library's fork
    callback); before the signal every report reaches the hook that was there."""
    import types

    from torch.utils.data import dataloader

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    monkeypatch.setattr(train_command, "_SIGNALLED", [])
    train_command._quiet_unraisable_after_signal()

    def report(exc, obj):
        sys.unraisablehook(types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None,
                                                 err_msg=None, object=obj))

    iter_del = dataloader._MultiProcessingDataLoaderIter.__del__
    other = ValueError("a real problem elsewhere")
    report(KeyboardInterrupt(), None)  # not signalled yet: passed on
    report(other, None)
    train_command._SIGNALLED.append(15)
    report(KeyboardInterrupt(), None)
    report(RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated."), iter_del)
    report(AttributeError("'_MultiProcessingDataLoaderIter' object has no attribute '_workers_status'"), iter_del)
    report(RuntimeError("release unlocked lock"), None)  # a library's fork callback after our interrupt
    assert len(seen) == 2 and isinstance(seen[0], KeyboardInterrupt) and seen[1] is other


def test_a_signal_recorded_after_the_last_iteration_still_stops_the_run(tmp_path, monkeypatch):
    """A signal that landed in a __del__ after the last training iteration (recorded, not raised)
    ends the run as an interrupt, not with a summary and exit 0."""
    real = train_command._train_epochs

    def then_signalled(*a, **k):
        real(*a, **k)
        train_command._SIGNALLED.append(15)

    monkeypatch.setattr(train_command, "_train_epochs", then_signalled)
    with pytest.raises(SystemExit) as exc:
        train_command.main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "run")])
    assert "interrupted after its last epoch (1), before the summary was written; the checkpoint of epoch 1 is " \
           "kept in" in str(exc.value.code), exc.value.code
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_run_begun_with_values_refused_today_resumes_with_them(tmp_path, monkeypatch):
    """--beta 1.5 (run clamped to 1.0 by the neuron) was accepted before the command refused it:
    such a run's checkpoint still resumes; the flag itself is refused."""
    out = tmp_path / "run"
    train_command.main([*QUICK, "--epochs", "2", "--stop-after", "1", "--neuron", "leaky", "--beta", "0.5",
                        "--out", str(out)])
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    ck["args"]["beta"] = 1.5  # as the older command wrote it
    torch.save(ck, out / "checkpoint.pt")
    summary = train_command.main(["--resume", "--out", str(out), "--no-progress"])
    assert summary["epochs_done"] == 2
    with pytest.raises(SystemExit):
        train_command.main([*QUICK, "--neuron", "leaky", "--beta", "1.5", "--out", str(tmp_path / "new")])
