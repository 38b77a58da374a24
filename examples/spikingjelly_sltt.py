"""A SpikingJelly network, its neurons swapped for the fused ones, trained online with SLTT.

The network is built from SpikingJelly's own `layer` and `neuron` modules. `replace_neurons`
swaps each LIFNode for ours (same dynamics and surrogate) and `training.sltt_step` trains it
online: one time step at a time, a backward at each, so memory does not grow with T.

    pip install --no-deps spikingjelly==2.0.0 loguru tqdm   # its neurons need no torchaudio or torchvision
    python examples/spikingjelly_sltt.py            # --small: seconds (what CI runs)
"""

import argparse

import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn

from sltt_kernels import replace_neurons, training
from sltt_kernels.nn.functional import reset_net


def toy_images(n: int, gen: torch.Generator):
    """10 classes of 1x8x8 images: a fixed random pattern per class plus noise (no download)."""
    patterns = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (n,), generator=gen)
    return (patterns[y] + 0.4 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1), y


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, T: int) -> float:
    net.eval()
    with torch.no_grad():
        logits = sum(net(x) for _ in range(T))  # one step per call: the network runs online
    reset_net(net)
    net.train()
    return (logits.argmax(1) == y).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--small", action="store_true", help="a few seconds: 2 epochs of a small set")
    args = p.parse_args()
    epochs, n = (2, 256) if args.small else (args.epochs, 2048)
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = toy_images(n, gen)
    x_test, y_test = toy_images(512, gen)

    torch.manual_seed(0)
    net = nn.Sequential(  # SpikingJelly's modules, single-step mode (its default)
        layer.Conv2d(1, 16, 3, padding=1, bias=False), layer.BatchNorm2d(16),
        neuron.LIFNode(tau=2.0, decay_input=False, detach_reset=True, surrogate_function=surrogate.Sigmoid()),
        layer.MaxPool2d(2), layer.Flatten(), layer.Linear(16 * 4 * 4, 64),
        neuron.LIFNode(tau=2.0, decay_input=False, detach_reset=True, surrogate_function=surrogate.Sigmoid()),
        layer.Linear(64, 10))
    print(replace_neurons(net))  # what was swapped, and what was kept and why
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for epoch in range(epochs):
        for i in range(0, n, 64):
            res = training.sltt_step(net, opt, x_train[i:i + 64], y_train[i:i + 64], T=args.T)  # online
            losses.append(res.loss)
        print(f"epoch {epoch}: loss {sum(losses[-n // 64:]) / (n // 64):.3f}, "
              f"test accuracy {accuracy(net, x_test, y_test, args.T):.3f}")
    assert losses[-1] < 0.9 * losses[0], "the loss did not fall"


if __name__ == "__main__":
    main()
