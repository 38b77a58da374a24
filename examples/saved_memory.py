"""What a model saves for backward in one time step, plain and with 1-bit spike inputs.

`SavedTensorMeter` counts the tensors autograd keeps between forward and backward (on any
device; the model's own parameters are not counted). One online step of SLTT keeps this much
whatever T is; BPTT keeps it T times. `pack_spike_inputs` lets every conv or linear layer whose
input comes from a spiking neuron keep that input as 1 bit per element.

    python examples/saved_memory.py            # --small: seconds (what CI runs)
"""

import argparse

import torch

from sltt_kernels import models
from sltt_kernels.memory import SavedTensorMeter
from sltt_kernels.nn import PaperLIFNode, pack_spike_inputs, reset_net
from sltt_kernels.surrogate import Rect


def saved_per_step(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Peak bytes saved for backward by one single-step forward (and its backward) of model on x."""
    with SavedTensorMeter(model) as meter:
        model(x).sum().backward()
    reset_net(model)
    return meter.peak


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--small", action="store_true", help="seconds: ResNet-18 of width 8, batch 2")
    args = p.parse_args()
    width, batch = (8, 2) if args.small else (64, args.batch_size)
    x = torch.rand(batch, 3, 32, 32)
    for name, neuron in (("paper neuron (triangle)", PaperLIFNode),
                         ("1-bit rect neuron", lambda: PaperLIFNode(surrogate_function=Rect()))):
        torch.manual_seed(0)
        net = models.spiking_resnet18(num_classes=10, neuron=neuron, width=width)  # single-step ('s')
        plain = saved_per_step(net, x)
        report = pack_spike_inputs(net)  # in place
        packed = saved_per_step(net, x)
        print(f"ResNet-18 (width {width}, batch {batch}), {name}: {plain / 2**20:.2f} MB saved per step, "
              f"{packed / 2**20:.2f} MB with packed spike inputs ({packed / plain:.2f}x)")
        assert packed < plain
    print(report)  # which layers now keep their input as 1 bit, and which stay dense and why


if __name__ == "__main__":
    main()
