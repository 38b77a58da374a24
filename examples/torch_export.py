"""torch.export of an inference network of fused neurons: one graph that calls the fused op.

The network runs multi-step (x: [T, B, ...]); `torch.export.export` traces it, each neuron a
single call of torch.ops.sltt_kernels.neuron_multistep_fwd, and the exported program (saved to
a .pt2 file and loaded back) gives the network's outputs. Export from a fresh state (reset_net).

    python examples/torch_export.py            # --small: seconds (what CI runs)
"""

import argparse
import os
import tempfile
import warnings

import torch
from torch import nn

from sltt_kernels import nn as snn
from sltt_kernels.nn import FoldTime, reset_net, set_step_mode


def build(width: int) -> nn.Module:
    """conv -> LIF -> flatten -> linear -> LIF -> linear: [T, B, 2, 8, 8] -> logits [T, B, 10]."""
    net = nn.Sequential(FoldTime(nn.Conv2d(2, width, 3, padding=1)), snn.LIFNode(tau=2.0),
                        FoldTime(nn.Flatten()), FoldTime(nn.Linear(width * 64, 64)),
                        snn.LIFNode(tau=2.0, v_reset=None), FoldTime(nn.Linear(64, 10)))
    return set_step_mode(net, "m").eval()


def export(net: nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    reset_net(net)
    with warnings.catch_warnings():
        # the neurons assign their final state v (SpikingJelly's protocol): not part of the program
        warnings.filterwarnings("ignore", message=".*were assigned during export")
        program = torch.export.export(net, (x,))
    reset_net(net)
    return program


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--small", action="store_true", help="seconds: a narrow network")
    args = p.parse_args()
    torch.manual_seed(0)
    net = build(4 if args.small else 32)
    x = torch.rand(args.T, 16, 2, 8, 8) * 3
    program = export(net, x)
    fused = [n.target for n in program.graph.nodes if n.op == "call_function" and "sltt_kernels" in str(n.target)]
    print(f"exported: {len(program.graph.nodes)} graph nodes, fused neuron calls: {fused}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snn.pt2")
        torch.export.save(program, path)
        loaded = torch.export.load(path).module()
    for name, inp in (("the example input", x), ("another input", torch.rand_like(x) * 3)):
        reset_net(net)
        with torch.no_grad():
            want = net(inp)
        got = loaded(inp)
        print(f"{name}: exported program equals the network: {torch.equal(got, want)}")
        assert torch.equal(got, want)


if __name__ == "__main__":
    main()
