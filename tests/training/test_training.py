"""Training steps: SLTT = autograd of the reference with detached state, SLTT-K, BPTT, memory
constant in T for SLTT, AMP, DistributedDataParallel."""

import os
import random
import subprocess
import sys

import pytest
import torch
from torch import nn

from sltt_kernels import training
from sltt_kernels.memory import SavedTensorMeter
from sltt_kernels.nn import FoldTime, SLTTLIFNode

from helpers import HAVE_EXT

BACKEND = "cpu" if HAVE_EXT else "reference"
HERE = os.path.dirname(os.path.abspath(__file__))


def small_net(backend=BACKEND, seed=0, **neuron):
    torch.manual_seed(seed)
    kw = dict(backend=backend, **neuron)
    return nn.Sequential(
        FoldTime(nn.Linear(12, 32)), SLTTLIFNode(**kw), FoldTime(nn.Linear(32, 32)), SLTTLIFNode(**kw),
        FoldTime(nn.Linear(32, 5)),
    ).double()


def _grads(net):
    return [p.grad.clone() for p in net.parameters()]


def _data(B=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, 12, generator=g, dtype=torch.float64) * 1.5 + 0.5)
    y = torch.randint(0, 5, (B,), generator=g)
    return x, y


def test_sltt_step_gradients_equal_autograd_of_reference_with_detached_state():
    T = 4
    x, y = _data()
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    res = training.sltt_step(net, opt, x, y, T)
    got = _grads(net)
    # the oracle: one graph over all steps through reference neurons whose state is detached
    ref = small_net(backend="reference")
    total = 0
    for t in range(T):
        total = total + training.sltt_loss(ref(x), y) / T
    total.backward()
    for g, r in zip(got, _grads(ref)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert res.loss == pytest.approx(float(total.detach()), rel=1e-10)
    assert res.output.shape == (8, 5)


def test_sltt_k_with_k_equal_t_is_sltt():
    x, y = _data()
    a, b = small_net(), small_net()
    training.sltt_step(a, torch.optim.SGD(a.parameters(), lr=0.0), x, y, 5)
    training.sltt_step(b, torch.optim.SGD(b.parameters(), lr=0.0), x, y, 5, K=5, generator=random.Random(3))
    for g, r in zip(_grads(a), _grads(b)):
        torch.testing.assert_close(g, r, rtol=0, atol=0)


def test_sltt_k_back_propagates_at_k_steps_with_loss_over_T():
    """Algorithm S2 line 10 and train_SLTTK.py: each back-propagated step's loss is divided by
    T (not K): the gradient is the sum over the K drawn steps of dl_t / T."""
    x, y = _data()
    net = small_net()
    rng = random.Random(7)
    steps = sorted(random.Random(7).sample(range(6), 2))
    training.sltt_step(net, torch.optim.SGD(net.parameters(), lr=0.0), x, y, 6, K=2, generator=rng)
    got = _grads(net)
    ref = small_net(backend="reference")
    total = 0
    for t in range(6):
        out = ref(x)
        if t in steps:
            total = total + training.sltt_loss(out, y) / 6
    total.backward()
    for g, r in zip(got, _grads(ref)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_bptt_step_single_step_equals_multi_step():
    x, y = _data()
    a = small_net(grad_mode="bptt")
    b = small_net(grad_mode="bptt")
    ra = training.bptt_step(a, torch.optim.SGD(a.parameters(), lr=0.0), x, y, 4, step_mode="m")
    rb = training.bptt_step(b, torch.optim.SGD(b.parameters(), lr=0.0), x, y, 4, step_mode="s")
    for g, r in zip(_grads(a), _grads(b)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert ra.loss == pytest.approx(rb.loss, rel=1e-12)
    # and it is BPTT: it differs from SLTT's gradients
    c = small_net()
    training.sltt_step(c, torch.optim.SGD(c.parameters(), lr=0.0), x, y, 4)
    assert any((g - r).abs().max() > 1e-6 for g, r in zip(_grads(a), _grads(c)))


def _conv_net(seed=0):
    from sltt_kernels.models import spiking_resnet18

    torch.manual_seed(seed)
    return spiking_resnet18(num_classes=10, neuron=lambda: SLTTLIFNode(backend=BACKEND))


def test_sltt_memory_is_constant_in_T_and_bptt_grows_linearly():
    x = torch.randn(4, 3, 16, 16)
    y = torch.randint(0, 10, (4,))
    sltt, bptt = {}, {}
    for T in (2, 4, 6):
        net = _conv_net()
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        with SavedTensorMeter(net) as m:
            training.sltt_step(net, opt, x, y, T)
        sltt[T] = m.peak
        with SavedTensorMeter(net) as m:
            training.bptt_step(net, opt, x, y, T)
        bptt[T] = m.peak
    print("saved bytes, sltt:", sltt, "bptt:", bptt)
    assert abs(sltt[6] - sltt[2]) <= 0.02 * sltt[2], sltt
    assert abs(sltt[4] - sltt[2]) <= 0.02 * sltt[2], sltt
    # linear in T: equal increments, and T=6 about 3x T=2
    inc1, inc2 = bptt[4] - bptt[2], bptt[6] - bptt[4]
    assert inc1 > 0 and abs(inc2 - inc1) <= 0.02 * inc1, bptt
    assert bptt[6] > 2.5 * bptt[2] and bptt[6] > 2.5 * sltt[6]


def test_amp_step_runs():
    x = torch.randn(4, 3, 16, 16)
    y = torch.randint(0, 10, (4,))
    net = _conv_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    res = training.sltt_step(net, opt, x, y, 2, K=1, scaler=scaler, autocast_dtype=torch.bfloat16)
    assert res.output.isfinite().all() and res.loss == res.loss


def test_training_errors():
    x, y = _data()
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="K"):
        training.sltt_step(net, opt, x, y, 4, K=5)
    with pytest.raises(ValueError, match="K"):
        training.sltt_step(net, opt, x, y, 4, K=0)
    with pytest.raises(ValueError, match="T"):
        training.sltt_step(net, opt, x, y, 0)
    plain = nn.Linear(12, 5)
    with pytest.raises(ValueError, match="no spiking neuron"):
        training.sltt_step(plain, torch.optim.SGD(plain.parameters(), lr=0.1), x.float(), y, 2)


def test_loss_mixes_ce_and_mse_to_threshold_or_onehot():
    out = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = torch.nn.functional.cross_entropy(out, y)
    mse_onehot = ((out - torch.nn.functional.one_hot(y, 4).float()) ** 2).mean()
    mse_vth = ((out - 1.0) ** 2).mean()
    # Eq. S13 (CIFAR, DVS-Gesture): MSE to the constant V_th = 1; the default
    torch.testing.assert_close(training.sltt_loss(out, y), 0.95 * ce + 0.05 * mse_vth)
    torch.testing.assert_close(training.sltt_loss(out, y, mse_target="threshold", v_threshold=0.5),
                               0.95 * ce + 0.05 * ((out - 0.5) ** 2).mean())
    # Eq. S14 (DVS-CIFAR10): MSE to the one-hot label
    torch.testing.assert_close(training.sltt_loss(out, y, mse_target="onehot"), 0.95 * ce + 0.05 * mse_onehot)
    # ImageNet: lambda 0, cross entropy alone
    torch.testing.assert_close(training.sltt_loss(out, y, lambda_mse=0.0), ce)
    fn = training.make_loss(0.1, "onehot")
    torch.testing.assert_close(fn(out, y), 0.9 * ce + 0.1 * mse_onehot)
    with pytest.raises(ValueError, match="mse_target"):
        training.sltt_loss(out, y, mse_target="labels")
    with pytest.raises(ValueError, match="lambda_mse"):
        training.make_loss(1.5)


@pytest.mark.parametrize("K", [None, 2])
def test_ddp_two_processes_equal_one_process_on_the_whole_batch(tmp_path, K):
    """torchrun, 2 CPU processes, gloo: the weights after one step equal a single-process step
    on the concatenated batch, and gradients are all-reduced once per iteration."""
    import socket

    with socket.socket() as sock:  # a free port on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}",
           os.path.join(HERE, "ddp_worker.py"), "--out", str(tmp_path), "--T", "4", "--backend", BACKEND]
    if K:
        cmd += ["--K", str(K)]
    # the workers import the sltt_kernels this process imported (the checkout here, the installed
    # package in CI), whether or not it is on their default path
    import sltt_kernels

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(sltt_kernels.__file__)))
    path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    ddp_state = torch.load(tmp_path / "ddp_rank0.pt", weights_only=True)
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    for k in single:
        torch.testing.assert_close(ddp_state[k], single[k], rtol=1e-10, atol=1e-12, msg=k)
    counts = torch.load(tmp_path / "allreduce_counts.pt", weights_only=True)
    assert counts["per_iteration"] == counts["buckets"], counts
