"""1-bit spike inputs against the plain model: training time per iteration, the two in turns.

    python benchmarks/packed_time.py                                   # ResNet-18, T 6, rect and paper neurons
    python benchmarks/packed_time.py --methods sltt --variants rect --iters 10 --threads 1

For each variant (the neuron: "rect", the 1-bit configuration, or "paper", PaperLIFNode()), method
(bptt, sltt, sltt-k) and T, two copies of the same network with the same initial weights train side
by side: the plain one, and one converted by sltt_kernels.nn.pack_spike_inputs (its convolution and
linear layers save their spike inputs as 1 bit). They take turns, one iteration each, in an order
that alternates, so that the load of a shared machine and the cache state one leaves to the other
bias neither; the ratio of the two medians is the finding. One iteration of each also runs under a
SavedTensorMeter: the bytes saved for backward. memory_time.py gives the rest of Table S2 for the
same variants (peak GPU memory, the peers), one method after the other.
Writes packed_time_<device>.json/.csv under --out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import memory_time as MT  # noqa: E402  (the models, neurons and input of Table S2)

from sltt_kernels import training  # noqa: E402
from sltt_kernels.memory import SavedTensorMeter  # noqa: E402

METHODS = ["bptt", "sltt", "sltt-k"]
VARIANTS = ["rect", "paper"]  # each against its "-packed" twin


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", nargs="+", type=int, default=[6])
    p.add_argument("--model", default="resnet18", choices=list(MT.MODELS))
    p.add_argument("--batch-size", type=int, help="GPU default 128; CPU default 16")
    p.add_argument("--iters", type=int, help="timed turns (GPU 20, CPU 6)")
    p.add_argument("--warmup", type=int, default=1, help="untimed turns first")
    p.add_argument("--methods", nargs="+", default=["bptt", "sltt"], choices=METHODS)
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--K", type=int, default=2, help="steps back-propagated by sltt-k (1 <= K <= min(T))")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--no-csv", action="store_true", help="write the JSON file only")
    args = p.parse_args(argv)
    MT.check_training_args(p, args)
    C.check_unique(p, "--variants", args.variants)
    C.check_output_args(p, args)
    C.check_device_arg(p, args)
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def _trainer(model, method, T, K, variant, device):
    """(step(x, y), the network) for one copy; both copies start from the same weights. The
    variant's transform (pack_spike_inputs for the "-packed" ones) converts the network."""
    torch.manual_seed(0)
    net = MT.MODELS[model](MT.neuron_factory(method, "auto", variant), 10).to(device)
    if variant.transform is not None:
        net = variant.transform(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = random.Random(0)

    def step(x, y):
        if method == "bptt":
            return training.bptt_step(net, opt, x, y, T, step_mode="m")
        return training.sltt_step(net, opt, x, y, T, K=K if method == "sltt-k" else None, generator=rng)

    return step, net


def run(args):
    device = C.pick_device(args.device)
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (128 if gpu else 16)
    args.iters = args.iters or (20 if gpu else 6)
    args.data_dir = None  # MT.load_batches: random CIFAR-10-shaped batches
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(model=args.model, batch_size=args.batch_size, iters=args.iters, warmup=args.warmup, K=args.K)
    print(f"# {args.model}, random CIFAR-10-shaped data, batch {args.batch_size}, fp32; {args.iters} turns after "
          f"{args.warmup} warm-up; {header.get('gpu', header['cpu'])} ({device.type}), torch {header['torch']}, "
          f"{header['threads']} threads")
    known = {v.name: v for v in MT.variants()}
    batches = MT.load_batches(args, device, 2)
    plan = [(v, T, m) for v in args.variants for T in args.T for m in args.methods]
    bar = C.progress_bar(total=len(plan) * (args.warmup + args.iters + 1) * 2, desc="packed_time")
    rows = []
    for name, T, method in plan:
        bar.set_postfix_str(f"{name} T={T} {method}")
        copies = {"plain": _trainer(args.model, method, T, args.K, known[name], device),
                  "packed": _trainer(args.model, method, T, args.K, known[name + "-packed"], device)}
        times = {kind: [] for kind in copies}
        saved = {}
        for kind, (step, net) in copies.items():  # one iteration each under the meter
            with SavedTensorMeter(net) as meter:
                step(*batches[0])
            saved[kind] = meter.peak / 2**20
            bar.update(1)
        for i in range(args.warmup + args.iters):
            order = ["plain", "packed"] if i % 2 == 0 else ["packed", "plain"]
            for kind in order:
                x, y = batches[i % len(batches)]
                a = timer.mark()
                copies[kind][0](x, y)
                b = timer.mark()
                if i >= args.warmup:
                    times[kind].append(timer.elapsed_ms(a, b))
                bar.update(1)
        plain_ms, packed_ms = C.median(times["plain"]), C.median(times["packed"])
        rows.append(dict(model=args.model, variant=name, T=T, method=method, plain_ms=plain_ms, packed_ms=packed_ms,
                         time_ratio=packed_ms / plain_ms, plain_saved_MB=saved["plain"],
                         packed_saved_MB=saved["packed"], saved_ratio=saved["packed"] / saved["plain"]))
        del copies
    bar.close()
    print("\n# packed / plain: the medians' ratio, same run, the two copies in turns")
    C.print_table([("variant", "variant", None), ("T", "T", None), ("method", "method", None),
                   ("plain_ms", "plain ms", "{:.0f}"), ("packed_ms", "packed ms", "{:.0f}"),
                   ("time_ratio", "time packed/plain", "{:.3f}"), ("plain_saved_MB", "plain saved MB", "{:.1f}"),
                   ("packed_saved_MB", "packed saved MB", "{:.1f}"), ("saved_ratio", "saved packed/plain", "{:.2f}")],
                  rows)
    stem = f"packed_time_{device.type}{('_' + args.tag) if args.tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    return rows


if __name__ == "__main__":
    main()
