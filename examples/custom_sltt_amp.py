"""A custom network of fused neurons trained online with SLTT and SLTT-K under bfloat16 AMP.

`sltt_step_by_hand` is what one SLTT iteration is (the paper's Algorithm S2): one time step at a
time, the step's loss / T, a backward at once (the neurons, grad_mode='sltt', carry no gradient
along time, so each step's graph is freed), one optimizer step, a reset. `training.sltt_step`
is the same with SLTT-K (back-propagate K random steps of T), GradScaler and DDP handled.

    python examples/custom_sltt_amp.py            # --small: seconds (what CI runs)
"""

import argparse

import torch
from torch import nn

from sltt_kernels import nn as snn
from sltt_kernels import training
from sltt_kernels.surrogate import Rect


class Net(nn.Module):
    """conv -> BN -> LIF -> pool -> linear -> LIF -> linear; one time step [B, 1, 8, 8] -> [B, 10]."""

    def __init__(self):
        super().__init__()
        lif = dict(tau=2.0, decay_input=False, v_reset=None, surrogate_function=Rect(), grad_mode="sltt")
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), snn.LIFNode(**lif),
                                      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 128), snn.LIFNode(**lif))
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.features(x))


def sltt_step_by_hand(net, opt, x, y, T, dtype=torch.bfloat16):
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(T):
        with torch.autocast(x.device.type, dtype=dtype):
            out = net(x)
        loss = training.sltt_loss(out.float(), y) / T  # the loss in float32
        loss.backward()  # this step's graph only: memory does not grow with T
        total += loss.item()
    opt.step()
    snn.reset_net(net)
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=6)
    p.add_argument("--K", type=int, default=2, help="SLTT-K: steps back-propagated of T")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--small", action="store_true", help="a few seconds: 10 iterations of T=4")
    args = p.parse_args()
    iters, T = (10, 4) if args.small else (args.iters, args.T)
    gen = torch.Generator().manual_seed(0)
    patterns = torch.rand(10, 1, 8, 8, generator=gen)  # a toy 10-class image set (no download)
    for method in ("sltt (by hand)", f"sltt-k (training.sltt_step, K={args.K})"):
        torch.manual_seed(0)
        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        losses = []
        for it in range(iters):
            y = torch.randint(0, 10, (64,), generator=gen)
            x = (patterns[y] + 0.4 * torch.randn(64, 1, 8, 8, generator=gen)).clamp(0, 1)
            if method.startswith("sltt (by hand)"):
                losses.append(sltt_step_by_hand(net, opt, x, y, T))
            else:
                losses.append(training.sltt_step(net, opt, x, y, T, K=min(args.K, T),
                                                 autocast_dtype=torch.bfloat16).loss)
        first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
        print(f"{method}: bf16 autocast, loss {first:.3f} -> {last:.3f} over {iters} iterations")
        assert last < first, f"{method}: the loss did not fall"


if __name__ == "__main__":
    main()
