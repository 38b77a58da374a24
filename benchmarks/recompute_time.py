"""Batch-norm inputs recomputed in backward: time per iteration and bytes saved, against the plain
model and the packed one, the copies training in turns.

    python benchmarks/recompute_time.py                                  # ResNet-18, T 6, rect, bptt and sltt
    python benchmarks/recompute_time.py --methods sltt --T 2 4 --iters 4 --threads 1

For each variant ("rect", the 1-bit neuron, or "paper", PaperLIFNode()), method (bptt, sltt,
sltt-k) and T, copies of one network with the same initial weights train side by side: the plain
model, the model built with pack_spike_inputs=True, with pack_spike_inputs=True, recompute=True,
and (the ResNets) with fuse_norm=True besides: each batch norm's apply inside the neuron kernel
after it. That serves single-step models, so the SLTT methods; bptt runs step_mode 'm', whose
per-step batch norms keep the plain pair, so there its fused copy is the recompute one. They take
turns, one iteration each, in an order that rotates (and reverses every other turn), so that a
shared machine's load and the cache one copy leaves to the next bias none;
the ratios of the medians are the finding. One iteration of each first runs under a
SavedTensorMeter: the peak bytes saved for backward (per SLTT step: the online step's graph).
Writes recompute_time_<device>.json/.csv under --out.
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
VARIANTS = ["rect", "paper"]
COPIES = {"plain": {}, "packed": dict(pack_spike_inputs=True),
          "recompute": dict(pack_spike_inputs=True, recompute=True),
          "fused": dict(pack_spike_inputs=True, recompute=True, fuse_norm=True)}


def copies_for(model: str) -> dict:
    """The copies a model trains: 'fused' where its builder takes fuse_norm (the ResNets)."""
    return {kind: build for kind, build in COPIES.items() if all(MT.model_accepts(model, k) for k in build)}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", nargs="+", type=int, default=[6])
    p.add_argument("--model", default="resnet18", choices=["resnet18", "vgg11"])
    p.add_argument("--batch-size", type=int, help="GPU default 128; CPU default 16")
    p.add_argument("--iters", type=int, help="timed turns (GPU 20, CPU 6)")
    p.add_argument("--warmup", type=int, default=1, help="untimed turns first")
    p.add_argument("--methods", nargs="+", default=["bptt", "sltt"], choices=METHODS)
    p.add_argument("--variants", nargs="+", default=["rect"], choices=VARIANTS)
    p.add_argument("--K", type=int, default=2, help="steps back-propagated by sltt-k (1 <= K <= min(T))")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    MT.check_training_args(p, args)
    C.check_unique(p, "--variants", args.variants)
    C.check_output_args(p, args)
    C.check_device_arg(p, args)
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def _trainer(model, method, T, K, variant, build, device):
    """(step(x, y), the network) for one copy; every copy starts from the same weights."""
    torch.manual_seed(0)
    net = MT.MODELS[model](MT.neuron_factory(method, "auto", variant), 10, **build).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = random.Random(0)

    def step(x, y):
        if method == "bptt":
            return training.bptt_step(net, opt, x, y, T, step_mode="m")
        return training.sltt_step(net, opt, x, y, T, K=K if method == "sltt-k" else None, generator=rng)

    return step, net


def turn_order(i: int, kinds):
    """The copies' order in turn i: rotated by i, reversed on odd turns."""
    kinds = list(kinds)
    r = i % len(kinds)
    order = kinds[r:] + kinds[:r]
    return order[::-1] if i % 2 else order


def run(args):
    device = C.pick_device(args.device)
    gpu = device.type == "cuda"
    if gpu:  # exact recompute on a GPU: the forward's and backward's convolutions must agree
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
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
    kinds = copies_for(args.model)
    bar = C.progress_bar(total=len(plan) * (args.warmup + args.iters + 1) * len(kinds), desc="recompute_time")
    rows = []
    for name, T, method in plan:
        bar.set_postfix_str(f"{name} T={T} {method}")
        copies = {kind: _trainer(args.model, method, T, args.K, known[name], build, device)
                  for kind, build in kinds.items()}
        times = {kind: [] for kind in copies}
        saved = {}
        for kind, (step, net) in copies.items():  # one iteration each under the meter
            with SavedTensorMeter(net) as meter:
                step(*batches[0])
            saved[kind] = meter.peak / 2**20
            bar.update(1)
        for i in range(args.warmup + args.iters):
            for kind in turn_order(i, copies):
                x, y = batches[i % len(batches)]
                a = timer.mark()
                copies[kind][0](x, y)
                b = timer.mark()
                if i >= args.warmup:
                    times[kind].append(timer.elapsed_ms(a, b))
                bar.update(1)
        ms = {kind: C.median(times[kind]) for kind in copies}
        rows.append(dict(model=args.model, variant=name, T=T, method=method, plain_ms=ms["plain"],
                         packed_ms=ms["packed"], recompute_ms=ms["recompute"],
                         recompute_vs_plain=ms["recompute"] / ms["plain"],
                         recompute_vs_packed=ms["recompute"] / ms["packed"], plain_saved_MiB=saved["plain"],
                         packed_saved_MiB=saved["packed"], recompute_saved_MiB=saved["recompute"],
                         saved_plain_over_recompute=saved["plain"] / saved["recompute"]))
        if "fused" in ms:
            rows[-1].update(fused_ms=ms["fused"], fused_vs_plain=ms["fused"] / ms["plain"],
                            fused_vs_recompute=ms["fused"] / ms["recompute"], fused_saved_MiB=saved["fused"])
        del copies
    bar.close()
    print(f"\n# time: medians of the same run, the {len(kinds)} copies in turns; saved: peak bytes kept for backward")
    C.print_table([("variant", "variant", None), ("T", "T", None), ("method", "method", None),
                   ("plain_ms", "plain ms", "{:.0f}"), ("packed_ms", "packed ms", "{:.0f}"),
                   ("recompute_ms", "recompute ms", "{:.0f}"), ("recompute_vs_plain", "time rec/plain", "{:.3f}"),
                   ("recompute_vs_packed", "time rec/packed", "{:.3f}"),
                   ("plain_saved_MiB", "plain saved MiB", "{:.1f}"), ("packed_saved_MiB", "packed MiB", "{:.1f}"),
                   ("recompute_saved_MiB", "recompute MiB", "{:.2f}"),
                   ("saved_plain_over_recompute", "plain/rec saved", "{:.1f}x")]
                  + ([("fused_ms", "fused ms", "{:.0f}"), ("fused_vs_plain", "time fused/plain", "{:.3f}"),
                      ("fused_vs_recompute", "time fused/rec", "{:.3f}"), ("fused_saved_MiB", "fused MiB", "{:.2f}")]
                     if "fused" in kinds else []), rows)
    stem = f"recompute_time_{device.type}{('_' + args.tag) if args.tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    return rows


if __name__ == "__main__":
    main()
