"""The training command's flags for neurons, memory, logs and compile (issue 24, issue 22 item 3):
--neuron and its parameters, --pack-spike-inputs, --recompute, --sync-bn, the epoch line, the
progress lines, --tensorboard, --compile, and values refused before any data is loaded."""

import glob
import os
import math
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")

from sltt_kernels import models, nn as snn, training, train_command  # noqa: E402
from sltt_kernels.data import DATASETS  # noqa: E402

QUICK = ["--dataset", "digits", "--T", "2", "--epochs", "1", "--max-iterations", "2", "--no-progress"]


def _main(tmp_path, *extra, name="run"):
    return train_command.main([*QUICK, "--out", str(tmp_path / name), *extra])


def _neurons(net):
    return [m for m in net.modules() if isinstance(m, (snn.BaseNode, snn.Leaky))]


# ---------------------------------------------------------------------------------------------
# --neuron


@pytest.mark.parametrize("flags, cls, attrs", [
    ([], snn.PaperLIFNode, dict(tau=1.1, decay_input=False, v_reset=None, v_threshold=1.0)),
    (["--neuron", "lif"], snn.LIFNode, dict(tau=1.1, decay_input=True, v_reset=0.0, detach_reset=False)),
    (["--neuron", "lif", "--tau", "2.5", "--v-reset", "none", "--no-decay-input", "--v-threshold", "0.7"],
     snn.LIFNode, dict(tau=2.5, decay_input=False, v_reset=None, v_threshold=0.7)),
    (["--neuron", "if", "--v-reset", "-0.25", "--detach-reset"], snn.IFNode,
     dict(v_reset=-0.25, detach_reset=True)),
    (["--neuron", "plif", "--init-tau", "3.0"], snn.ParametricLIFNode, dict(decay_input=True, v_reset=0.0)),
    (["--neuron", "leaky"], snn.Leaky, dict(beta=pytest.approx(1 - 1 / 1.1), reset_mechanism="subtract")),
    (["--neuron", "leaky", "--beta", "0.8", "--reset-mechanism", "zero", "--v-threshold", "1.5"], snn.Leaky,
     dict(beta=0.8, reset_mechanism="zero", threshold=1.5)),
])
def test_neuron_flag_builds_that_neuron_in_every_layer(flags, cls, attrs):
    args = train_command.parse_args(["--dataset", "digits", *flags])
    net = train_command.build_model(args, DATASETS["digits"], torch.device("cpu"))
    neurons = _neurons(net)
    assert len(neurons) == 2 and all(type(m) is cls for m in neurons)
    for m in neurons:
        for k, v in attrs.items():
            assert getattr(m, k) == v, k
        assert m.grad_mode == "sltt"
    if cls is snn.ParametricLIFNode:
        assert all(torch.sigmoid(m.w).item() == pytest.approx(1 / 3.0) for m in neurons)
    bptt = train_command.parse_args(["--dataset", "digits", "--method", "bptt", *flags])
    assert all(m.grad_mode == "bptt" for m in _neurons(train_command.build_model(bptt, DATASETS["digits"], "cpu")))


@pytest.mark.parametrize("flags, match", [
    (["--neuron", "if", "--tau", "2.0"], "--tau is not a parameter of --neuron if"),
    (["--neuron", "plif", "--tau", "2.0"], "--init-tau"),
    (["--neuron", "lif", "--beta", "0.5"], "--beta is not a parameter of --neuron lif"),
    (["--neuron", "paper-lif", "--init-tau", "3"], "--init-tau is not a parameter of --neuron paper-lif"),
    (["--neuron", "leaky", "--decay-input"], "--decay-input is not a parameter of --neuron leaky"),
    (["--neuron", "plif", "--init-tau", "0.5"], "--neuron plif: .*init_tau"),
    (["--neuron", "lif", "--v-reset", "soft"], "--v-reset: expected a number or 'none'"),
])
def test_neuron_flags_that_do_not_fit_are_refused_before_any_work(flags, match, capsys):
    with pytest.raises(SystemExit):
        train_command.parse_args(["--dataset", "digits", *flags])
    assert __import__("re").search(match, capsys.readouterr().err)


@pytest.mark.parametrize("neuron, method", [(n, m) for n in ("paper-lif", "lif", "if", "plif", "leaky")
                                             for m in ("sltt", "bptt")] + [("plif", "sltt-k"), ("leaky", "sltt-k")])
def test_every_neuron_trains_with_sltt_and_bptt(tmp_path, neuron, method):
    k = ["--K", "1"] if method == "sltt-k" else []  # --K is refused with the other methods
    summary = _main(tmp_path, "--neuron", neuron, "--method", method, *k, "--seed", "1")
    assert summary["neuron"] == neuron and summary["epochs_done"] == 1
    assert math.isfinite(summary["history"][0]["loss"])
    trained = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    args = train_command.parse_args(["--dataset", "digits", "--neuron", neuron, "--seed", "1"])
    torch.manual_seed(1)
    fresh = train_command.build_model(args, DATASETS["digits"], "cpu").state_dict()
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh)  # the steps moved the weights


def test_resume_keeps_the_neuron_and_refuses_another(tmp_path):
    _main(tmp_path, "--neuron", "plif", "--init-tau", "3.0", "--epochs", "2", "--stop-after", "1")
    with pytest.raises(SystemExit, match=r"--neuron lif \(the checkpoint has plif\)"):
        train_command.main(["--resume", "--out", str(tmp_path / "run"), "--neuron", "lif"])
    summary = train_command.main(["--resume", "--out", str(tmp_path / "run"), "--no-progress"])
    assert summary["neuron"] == "plif" and summary["epochs_done"] == 2


# ---------------------------------------------------------------------------------------------
# memory flags, logs


def _cifar10(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, n))}, f)
    return root


def test_pack_spike_inputs_on_resnet18_halves_the_saved_bytes_with_the_same_losses(tmp_path):
    _cifar10(tmp_path / "data")
    common = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--T", "2", "--batch-size", "2",
              "--epochs", "2", "--max-iterations", "1", "--no-progress", "--seed", "2"]
    plain = train_command.main([*common, "--out", str(tmp_path / "plain")])
    packed = train_command.main([*common, "--out", str(tmp_path / "packed"), "--pack-spike-inputs"])
    assert packed["pack_spike_inputs"] and not plain["pack_spike_inputs"]
    for a, b in zip(plain["history"], packed["history"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)  # the 1-bit spikes are exact
        assert b["saved_per_step_MB"] < 0.75 * a["saved_per_step_MB"]  # paper neuron: about 0.64x
    ck = torch.load(tmp_path / "packed" / "checkpoint.pt", weights_only=True)
    assert ck["args"]["pack_spike_inputs"] is True


def test_pack_spike_inputs_on_the_digits_model_packs_its_linear_layers(tmp_path):
    args = train_command.parse_args(["--dataset", "digits", "--pack-spike-inputs"])
    net = train_command.build_model(args, DATASETS["digits"], "cpu")
    assert any(isinstance(m, snn.PackedLinear) for m in net.modules())
    assert _main(tmp_path, "--pack-spike-inputs")["pack_spike_inputs"]


def test_recompute_is_passed_to_the_model_only_when_given(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        train_command.parse_args(["--dataset", "digits", "--recompute"])
    assert "give --pack-spike-inputs too" in capsys.readouterr().err
    seen = []
    real = train_command.MODEL_BUILDERS["resnet18"]
    monkeypatch.setitem(train_command.MODEL_BUILDERS, "resnet18",
                        lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    for flags in ([], ["--pack-spike-inputs"], ["--pack-spike-inputs", "--recompute"]):
        args = train_command.parse_args(["--dataset", "cifar10", *flags])
        train_command.build_model(args, DATASETS["cifar10"], "cpu")
    assert seen == [{}, {"pack_spike_inputs": True}, {"pack_spike_inputs": True, "recompute": True}]
    summary = _main(tmp_path, "--pack-spike-inputs", "--recompute")  # digits: converted after building
    assert summary["recompute"] and summary["pack_spike_inputs"]


def test_fuse_norm_marks_the_models_batch_norms(tmp_path, capsys):
    """--fuse-norm: every batch norm of the model takes the fused path where the model's forward
    calls nn.batch_norm_neuron (the ResNets); refused with --sync-bn; recorded in the summary."""
    from sltt_kernels.nn.norm_neuron import FUSE_ATTR

    args = train_command.parse_args(["--dataset", "cifar10", "--fuse-norm"])
    net = train_command.build_model(args, DATASETS["cifar10"], "cpu")
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 17 and all(getattr(m, FUSE_ATTR, False) for m in norms)
    plain = train_command.build_model(train_command.parse_args(["--dataset", "cifar10"]), DATASETS["cifar10"], "cpu")
    assert not any(getattr(m, FUSE_ATTR, False) for m in plain.modules())
    assert net.state_dict().keys() == plain.state_dict().keys()
    with pytest.raises(SystemExit):
        train_command.parse_args(["--dataset", "cifar10", "--fuse-norm", "--sync-bn"])
    assert "--fuse-norm computes each batch norm's statistics on this process" in capsys.readouterr().err
    # where it would change nothing it is refused, not reported as on
    for flags, says in ([["--dataset", "digits"], "--model digits runs no batch norm + neuron pair"],
                        [["--dataset", "cifar10", "--model", "vgg11_bn"], "--model vgg11_bn runs no batch norm"],
                        [["--dataset", "cifar10", "--method", "bptt"], "serves the single-step methods"],
                        [["--dataset", "cifar10", "--compile"], "--fuse-norm and --compile"]):
        with pytest.raises(SystemExit):
            train_command.parse_args([*flags, "--fuse-norm"])
        assert says in capsys.readouterr().err
    summary = train_command.main(["--dataset", "digits", "--model", "resnet18", "--T", "2", "--epochs", "1",
                                  "--max-iterations", "1", "--batch-size", "8", "--no-progress", "--fuse-norm",
                                  "--out", str(tmp_path / "fused")])
    assert summary["fuse_norm"]


def test_epoch_line_progress_lines_backend_and_summary(tmp_path, capsys):
    summary = train_command.main(["--dataset", "digits", "--T", "2", "--epochs", "1", "--max-iterations", "5",
                                  "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert "neurons on the cpu backend" in out or "neurons on the reference backend" in out
    line = [x for x in out.splitlines() if x.startswith("epoch   1")][0]
    assert "img/s" in line and "saved/step" in line and "peak" in line
    # stderr is not a terminal here: plain progress lines, not tqdm's redraws
    assert "[5/5 " in err and "\r" not in err
    rec = summary["history"][0]
    assert rec["images_per_s"] > 0 and rec["saved_per_step_MB"] > 0 and rec["peak_memory_MB"] > 0
    assert summary["world_size"] == 1 and summary["backend"] in ("cpu", "reference")


def test_saved_bytes_per_step_of_bptt_are_its_iterations_peak_over_T(tmp_path):
    # rect: the neuron saves 1 bit per element-step under SLTT and BPTT alike (the paper's triangle
    # saves h under BPTT but only the spike bit in an SLTT step: docs/design.md, section 3)
    sltt = _main(tmp_path, "--method", "sltt", "--surrogate", "rect", name="sltt")["history"][0]["saved_per_step_MB"]
    bptt = _main(tmp_path, "--method", "bptt", "--surrogate", "rect", name="bptt")["history"][0]["saved_per_step_MB"]
    # the same layers save the same tensors per step; BPTT holds T steps at once
    assert bptt == pytest.approx(sltt, rel=0.35)


def test_tensorboard_event_files_hold_the_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _main(tmp_path, "--tensorboard", "--epochs", "2")
    files = glob.glob(str(tmp_path / "run" / "tensorboard" / "events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(files[0])
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/top1", "test/top1", "test/top5", "lr", "speed/images_per_s", "memory/peak_MB",
            "memory/saved_per_step_MB"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    summary = __import__("json").load(open(tmp_path / "run" / "summary.json"))
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([h["lr"] for h in summary["history"]])


def test_sync_bn_conversion_keeps_the_per_step_batchnorm():
    torch.manual_seed(0)
    net = models.vgg11_bn(num_classes=4, in_channels=2, width=4)
    synced = train_command.convert_sync_batchnorm(__import__("copy").deepcopy(net))
    steps = [m for m in synced.modules() if isinstance(m, train_command.SyncStepBatchNorm2d)]
    assert steps and not any(isinstance(m, snn.StepBatchNorm2d) for m in synced.modules())
    x = torch.randn(2, 2, 2, 32, 32)  # [T, B, C, H, W]: each step its own batch statistics
    for mode in ("m", "s"):
        for train_mode in (True, False):
            net.train(train_mode)
            synced.train(train_mode)
            snn.set_step_mode(net, mode)
            snn.set_step_mode(synced, mode)
            want = net(x) if mode == "m" else net(x[0])
            got = synced(x) if mode == "m" else synced(x[0])
            snn.reset_net(net)
            snn.reset_net(synced)
            torch.testing.assert_close(got, want)


def test_sync_bn_on_cpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        train_command.parse_args(["--dataset", "digits", "--sync-bn", "--device", "cpu"])
    assert "--sync-bn needs GPUs" in capsys.readouterr().err


@pytest.mark.parametrize("flags, match", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--momentum", "nan"], "--momentum must be a finite number"),
    (["--tau", "inf"], "--tau must be a finite number"),
    (["--weight-decay=-1e-4"], "--weight-decay must be >= 0"),
    (["--momentum", "1.0"], r"--momentum must lie in \[0, 1\), got 1\.0"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--stop-after", "0"], "--stop-after must be >= 1"),
    (["--max-iterations", "0"], "--max-iterations must be >= 1"),
    (["--backend", "bogus"], "bogus"),
])
def test_bad_values_are_refused_before_any_data_is_loaded(flags, match, capsys, monkeypatch):
    def no_data(*a, **k):
        raise AssertionError("data loaded before the flags were checked")

    monkeypatch.setattr(train_command, "load_dataset", no_data)
    with pytest.raises(SystemExit):
        train_command.main(["--dataset", "digits", *flags])
    assert __import__("re").search(match, capsys.readouterr().err)


def test_data_loader_workers_draw_their_own_augmentation():
    from sltt_kernels.data import TensorImages

    ds = TensorImages(torch.rand(1, 3, 32, 32).expand(8, 3, 32, 32).contiguous(), torch.zeros(8, dtype=torch.long),
                      augment=True)
    args = train_command.parse_args(["--dataset", "cifar10", "--batch-size", "2", "--workers", "2", "--seed", "0"])
    batches = [x for x, _ in train_command._loader(ds, args, True, 0)]
    # the same image everywhere: equal batches would mean replayed draws (workers 0 and 1 alternate)
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[2], batches[3])
    again = [x for x, _ in train_command._loader(ds, args, True, 0)]
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # and reproducible


# ---------------------------------------------------------------------------------------------
# --compile (the tiny digits model only: compiling is slow on a CPU)


def test_compiled_model_through_both_step_modes_and_batch_sizes_matches_eager():
    import random

    torch.manual_seed(0)
    eager = models.digits_snn(hidden=16)
    net = models.digits_snn(hidden=16)
    net.load_state_dict(eager.state_dict())
    args = train_command.parse_args(["--dataset", "digits", "--compile"])
    compiled = train_command._step_model(net, args, torch.device("cpu"), train_command.Dist())
    g = torch.Generator().manual_seed(0)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (eager, net)]
    # SLTT (single-step), BPTT (multi-step) after it, SLTT again, with changing batch sizes
    for method, batch in (("sltt", 6), ("bptt", 6), ("sltt", 5), ("bptt", 7), ("sltt", 6)):
        x, y = torch.randn(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g)
        results = []
        for model, opt in ((eager, opts[0]), (compiled, opts[1])):
            if method == "bptt":
                results.append(training.bptt_step(model, opt, x, y, 3))
            else:
                results.append(training.sltt_step(model, opt, x, y, 3, generator=random.Random(0)))
        assert results[1].loss == pytest.approx(results[0].loss, rel=1e-4), (method, batch)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_compile_reaches_the_accuracy_of_eager_on_digits(tmp_path):
    common = ["--dataset", "digits", "--T", "2", "--epochs", "3", "--lr", "0.3", "--no-progress", "--seed", "0"]
    eager = train_command.main([*common, "--out", str(tmp_path / "eager")])
    compiled = train_command.main([*common, "--out", str(tmp_path / "compiled"), "--compile"])
    assert compiled["compile"] and eager["final_test_acc"] > 0.9  # 95.5% here
    assert abs(compiled["final_test_acc"] - eager["final_test_acc"]) <= 0.02
    # the checkpoint of a compiled run is the plain model's (no _orig_mod. prefix)
    ck = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)
    assert ck["model"].keys() == torch.load(tmp_path / "eager" / "checkpoint.pt", weights_only=True)["model"].keys()


# ---------------------------------------------------------------------------------------------
# what an interrupted or failed run says and keeps (issue 23 items 6, 7)


def test_out_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    for out, match in ((tmp_path / "f", "is a file, not a folder"), (tmp_path / "f" / "run", "is a file, so")):
        with pytest.raises(SystemExit):
            train_command.parse_args(["--dataset", "digits", "--out", str(out)])
        assert match in capsys.readouterr().err


def test_a_failed_checkpoint_write_says_which_checkpoint_is_kept(tmp_path, monkeypatch):
    from sltt_kernels import checkpoint

    real = train_command.save_checkpoint
    calls = []

    def full_disk_at_the_second(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(train_command, "save_checkpoint", full_disk_at_the_second)
    with pytest.raises(SystemExit, match=r"checkpoint of epoch 2 .*No space left on device.*checkpoint of epoch 1 "
                                         r"is kept in .*--resume"):
        _main(tmp_path, "--epochs", "3")
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1

    # the writer itself leaves no partial file when the write fails midway
    def torch_save_fails(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", torch_save_fails)
    with pytest.raises(OSError):
        checkpoint.save_checkpoint({"a": 1}, str(tmp_path / "c.pt"))
    assert not (tmp_path / "c.pt.tmp").exists() and not (tmp_path / "c.pt").exists()


def test_a_disk_that_fills_inside_torch_save_reports_the_oserror(tmp_path, monkeypatch):
    """torch.save's zip writer turns a failed write (ENOSPC) into a RuntimeError of its own when it
    closes the archive; save_checkpoint raises the OSError, which the command reports by name."""
    import builtins
    import errno

    from sltt_kernels import checkpoint

    class FillingFile:  # a real file on a disk that is full after `room` bytes
        def __init__(self, f, room):
            self._f, self._room = f, room

        def write(self, data):
            if len(data) > self._room:
                raise OSError(errno.ENOSPC, "No space left on device")
            self._room -= len(data)
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def small_disk_open(path, mode="r", *a, **k):
        f = builtins.open(path, mode, *a, **k)
        return FillingFile(f, 4096) if "w" in mode and str(path).endswith(".tmp") else f

    monkeypatch.setattr(checkpoint, "open", small_disk_open, raising=False)
    with pytest.raises(OSError) as exc:
        checkpoint.save_checkpoint({"w": torch.randn(100_000)}, str(tmp_path / "c.pt"))
    assert exc.value.errno == errno.ENOSPC
    assert not (tmp_path / "c.pt.tmp").exists() and not (tmp_path / "c.pt").exists()
    with pytest.raises(SystemExit, match=r"could not write the checkpoint of epoch 1 .*No space left on device"):
        _main(tmp_path, "--epochs", "2")


def test_the_oserror_unwrapped_is_this_saves_not_a_callers_being_handled(tmp_path):
    """A fallback save inside a caller's `except OSError:` that fails for its own reason reports
    its own error, not the caller's OSError (which is in its exception context)."""
    from sltt_kernels import checkpoint

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    try:
        open(tmp_path / "missing" / "x")
    except OSError:
        with pytest.raises(RuntimeError, match="cannot pickle this"):
            checkpoint.save_checkpoint({"x": Unpicklable()}, str(tmp_path / "c.pt"))
    assert not (tmp_path / "c.pt.tmp").exists()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_sigterm_says_which_checkpoint_is_kept_and_how_to_resume(tmp_path, signame):
    """A scheduler's SIGTERM or a Ctrl-C ends the run with a message (a Ctrl-C that landed in a
    __del__ was dropped by Python and the run trained on to its end)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "sltt_kernels.train", "--dataset", "digits", "--T", "2", "--epochs", "500",
                             "--max-iterations", "2", "--no-progress", "--out", str(out)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, -signal.SIGTERM), err[-3000:]
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert f"the checkpoint of epoch {kept} is kept in {out}: continue with --resume --out {out}" in err


def test_sigterm_to_the_process_group_with_workers_ends_with_a_message_only(tmp_path):
    """A scheduler's stop (SLURM's scancel, a container stop) signals every process of the group,
    the DataLoader workers too: the run ends with its message, without the tracebacks of dead
    workers that PyTorch's DataLoader prints."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "sltt_kernels.train", "--dataset", "digits", "--T", "2", "--epochs",
                             "500", "--max-iterations", "6", "--workers", "2", "--no-progress", "--out", str(out)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, -signal.SIGTERM), err[-3000:]
    # neither the DataLoader's reports of its dead workers nor our KeyboardInterrupt
    assert "DataLoader worker" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert f"the checkpoint of epoch {kept} is kept in {out}" in err, err[-3000:]


def test_console_script_exits_0_after_a_run(tmp_path):
    """`sltt-train` exits with what its function returns: the summary is written to a file, and the
    exit status is 0 (main's summary dict, returned to the console script, would exit 1)."""
    import subprocess
    import sys
    import tomllib

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        target = tomllib.load(f)["project"]["scripts"]["sltt-train"]
    module, func = target.split(":")
    # what a console-script wrapper runs
    code = f"import sys; from {module} import {func}; sys.exit({func}())"
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", code, *QUICK, "--out", str(out)], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "{'dataset'" not in res.stderr and (out / "summary.json").exists()
