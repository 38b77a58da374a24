"""Train a small network of fused neurons, export it to NIR, and read it back.

NIR (the Neuromorphic Intermediate Representation) is how SNN models move between snnTorch,
Norse, Sinabs, Rockpool, Lava and neuromorphic chips. NIR's neurons reset to a value, so the
network uses a hard reset (v_reset=0.0); a batch norm right after a conv is folded into it.
snnTorch reads such graphs too (`snntorch.import_nir.import_from_nir`; tests/interop/test_nir.py).

    pip install nir
    python examples/export_nir.py            # --small: seconds (what CI runs)
"""

import argparse
import os
import tempfile

import nir
import torch
from torch import nn

from sltt_kernels import nn as snn
from sltt_kernels import training
from sltt_kernels.nir import export_nir, import_nir
from sltt_kernels.nn import reset_net


def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The outputs of T single steps x [T, B, ...], from a fresh state."""
    reset_net(net)
    with torch.no_grad():
        out = torch.stack([net(xt) for xt in x])
    reset_net(net)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--small", action="store_true", help="seconds: 5 training iterations")
    args = p.parse_args()
    torch.manual_seed(0)
    lif = dict(tau=2.0, decay_input=False, v_reset=0.0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), snn.LIFNode(**lif), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 16, 64), snn.LIFNode(**lif), nn.Linear(64, 10))
    patterns = torch.rand(10, 1, 8, 8)  # a toy 10-class image set (no download)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(5 if args.small else args.iters):
        y = torch.randint(0, 10, (32,))
        training.sltt_step(net, opt, (patterns[y] + 0.3 * torch.randn(32, 1, 8, 8)).clamp(0, 1), y, T=4)
    net.eval()

    graph = export_nir(net, torch.rand(1, 1, 8, 8))  # one time step [B, ...] gives the shapes
    print("NIR nodes:", {name: type(node).__name__ for name, node in graph.nodes.items()})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snn.nir")
        nir.write(path, graph)
        back = import_nir(nir.read(path))  # fused neurons again
    x = torch.rand(6, 16, 1, 8, 8) * 2  # [T, B, ...]
    hidden = run(net[:3], x).mean().item()
    want, got = run(net, x), run(back, x)
    # the folded batch norm rounds differently: a spike may flip on a near tie, so compare the votes
    agree = (got.mean(0).argmax(1) == want.mean(0).argmax(1)).float().mean().item()
    print(f"read back: logits within {(got - want).abs().max():.2e}, the same class for {agree:.0%} of the "
          f"samples (first layer's spike rate {hidden:.2f})")
    assert agree > 0.9 and 0.02 < hidden < 0.98

if __name__ == "__main__":
    main()
