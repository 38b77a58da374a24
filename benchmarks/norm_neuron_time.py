"""A batch norm and the neuron after it: the plain pair neuron(bn(x)) against the fused one
(sltt_kernels.nn.batch_norm_neuron with fuse_norm_neurons: the batch norm's apply inside the
neuron kernel), one SLTT step forward and backward, on the shapes of ResNet-18's layers.

    python benchmarks/norm_neuron_time.py                       # batch 16 (CPU) / 128 (GPU), fp32
    python benchmarks/norm_neuron_time.py --batch-size 64 --iters 30 --threads 1

The two pairs take turns, one call each, in an order that alternates, so that the machine's load
and the cache one leaves to the next bias neither; the ratio of the medians is the finding. Also
the forward alone (under torch.no_grad: inference) and the SpikingJelly pair (its BatchNorm2d and
LIFNode, on its fastest backend) where SpikingJelly is installed. Writes norm_neuron_time_<device>
.json/.csv under --out.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

from sltt_kernels.nn import PaperLIFNode, batch_norm_neuron, fuse_norm_neurons  # noqa: E402

# (channels, height = width) of ResNet-18's stages on a 32x32 input
LAYERS = [(64, 32), (128, 16), (256, 8), (512, 4)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, help="GPU default 128; CPU default 16")
    p.add_argument("--iters", type=int, help="timed turns (GPU 50, CPU 20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    C.check_output_args(p, args)
    C.check_device_arg(p, args)
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def _pair(channels, device, fused: bool):
    bn = nn.BatchNorm2d(channels).to(device)
    sn = PaperLIFNode(grad_mode="sltt")
    if fused:
        fuse_norm_neurons(bn)
    return bn, sn


def _sj_pair(channels, device):
    if not C.have_spikingjelly():
        return None
    from spikingjelly.activation_based import neuron, surrogate

    backend = "cupy" if device.type == "cuda" else "torch"
    try:
        sn = neuron.LIFNode(tau=1.1, decay_input=False, v_reset=None, surrogate_function=surrogate.Sigmoid(),
                            backend=backend, step_mode="s")
    except Exception:  # noqa: BLE001  (its cupy backend is optional)
        sn = neuron.LIFNode(tau=1.1, decay_input=False, v_reset=None, step_mode="s")
    return nn.BatchNorm2d(channels).to(device), sn


def _call(pair, x, train: bool):
    bn, sn = pair
    sn.reset()
    if train:
        xg = x.detach().requires_grad_(True)
        s = batch_norm_neuron(bn, sn, xg)
        s.backward(torch.ones_like(s))
    else:
        with torch.no_grad():
            batch_norm_neuron(bn, sn, x)


def run(args):
    device = C.pick_device(args.device)
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (128 if gpu else 16)
    args.iters = args.iters or (50 if gpu else 20)
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup)
    print(f"# BatchNorm2d + PaperLIFNode (SLTT), batch {args.batch_size}, fp32; {args.iters} turns after "
          f"{args.warmup} warm-up; {header.get('gpu', header['cpu'])} ({device.type}), torch {header['torch']}, "
          f"{header['threads']} threads")
    rows = []
    bar = C.progress_bar(total=len(LAYERS) * 2 * (args.warmup + args.iters), desc="norm_neuron_time")
    for channels, size in LAYERS:
        g = torch.Generator().manual_seed(channels)
        x = (torch.randn(args.batch_size, channels, size, size, generator=g) * 1.5 + 0.5).to(device)
        pairs = {"plain": _pair(channels, device, False), "fused": _pair(channels, device, True)}
        sj = _sj_pair(channels, device)
        if sj is not None:
            pairs["spikingjelly"] = sj
        for train in (True, False):
            times = {k: [] for k in pairs}
            for i in range(args.warmup + args.iters):
                order = list(pairs) if i % 2 == 0 else list(pairs)[::-1]
                for k in order:
                    a = timer.mark()
                    if k == "spikingjelly":
                        _call_sj(pairs[k], x, train)
                    else:
                        _call(pairs[k], x, train)
                    b = timer.mark()
                    if i >= args.warmup:
                        times[k].append(timer.elapsed_ms(a, b))
                bar.update(1)
            ms = {k: C.median(v) for k, v in times.items()}
            row = dict(shape=f"{args.batch_size}x{channels}x{size}x{size}", pass_="fwd+bwd" if train else "fwd",
                       plain_ms=ms["plain"], fused_ms=ms["fused"], fused_vs_plain=ms["fused"] / ms["plain"])
            if "spikingjelly" in ms:
                row.update(sj_ms=ms["spikingjelly"], fused_vs_sj=ms["fused"] / ms["spikingjelly"])
            rows.append(row)
    bar.close()
    print("\n# medians of the same run, the pairs in turns")
    C.print_table([("shape", "shape", None), ("pass_", "pass", None), ("plain_ms", "plain ms", "{:.3f}"),
                   ("fused_ms", "fused ms", "{:.3f}"), ("fused_vs_plain", "fused/plain", "{:.3f}"),
                   ("sj_ms", "SJ ms", "{:.3f}"), ("fused_vs_sj", "fused/SJ", "{:.3f}")], rows)
    stem = f"norm_neuron_time_{device.type}{('_' + args.tag) if args.tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    return rows


def _call_sj(pair, x, train: bool):
    from spikingjelly.activation_based import functional

    bn, sn = pair
    functional.reset_net(sn)
    if train:
        xg = x.detach().requires_grad_(True)
        s = sn(bn(xg))
        s.backward(torch.ones_like(s))
    else:
        with torch.no_grad():
            sn(bn(x))


if __name__ == "__main__":
    main()
