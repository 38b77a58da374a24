"""torch.compile against eager: training time per iteration of a network with our neurons.

    python benchmarks/compile_time.py                          # ResNet-18, CPU, batch 8, T 4, SLTT then BPTT
    python benchmarks/compile_time.py --model digits --iters 20 --threads 1

Two copies of the network start from the same weights: one eager, one under
torch.compile(dynamic=False) as the training command's --compile builds it. Each method runs
on the same two copies, one after the other (SLTT first, then BPTT: the step-mode switch of a
compiled model is part of what is measured, as a training script that evaluates or changes method
meets it). The first iteration of the compiled copy (its compile) is timed alone; then the copies
take turns, one iteration each, in an order that alternates, so that a shared machine's load
biases neither, and the ratio of the medians (eager / compiled: above 1 means the compiled copy
is faster) is the finding. Recompilations and graph breaks come from torch._dynamo's counters.
Writes compile_time_<device>.json/.csv under --out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

from sltt_kernels import models, training  # noqa: E402

MODELS = {
    "resnet18": lambda: models.spiking_resnet18(num_classes=10),
    "digits": lambda: models.digits_snn(num_classes=10),
}
SHAPES = {"resnet18": (3, 32, 32), "digits": (1, 8, 8)}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--methods", nargs="+", default=["sltt", "bptt"], choices=["sltt", "bptt"],
                   help="run in this order on the same two copies")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iters", type=int, default=6, help="timed turns per method")
    p.add_argument("--warmup", type=int, default=1, help="untimed turns after the compiling one")
    p.add_argument("--dynamic", default="false", choices=["false", "auto"],
                   help="torch.compile(dynamic=False) as --compile does, or torch's default (None)")
    p.add_argument("--device", default="cpu", choices=["auto", "cuda", "cpu"])
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--no-csv", action="store_true", help="write the JSON file only")
    args = p.parse_args(argv)
    for flag in ("T", "batch_size", "iters"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    C.check_unique(p, "--methods", args.methods)
    C.check_output_args(p, args)
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def _copy(model, compiled, dynamic, device):
    torch.manual_seed(0)
    net = MODELS[model]().to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    run_net = torch.compile(net, dynamic=None if dynamic == "auto" else False) if compiled else net
    return run_net, opt


def _step(method, model, opt, x, y, T, rng):
    if method == "bptt":
        return training.bptt_step(model, opt, x, y, T, step_mode="m")
    return training.sltt_step(model, opt, x, y, T, generator=rng)


def run(args):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    device = C.pick_device(args.device)
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(model=args.model, batch_size=args.batch_size, T=args.T, iters=args.iters, warmup=args.warmup,
                  dynamic=args.dynamic)
    print(f"# {args.model}, random data, batch {args.batch_size}, T {args.T}, fp32; {args.iters} turns after the "
          f"compiling one and {args.warmup} warm-up; {header.get('gpu', header['cpu'])} ({device.type}), torch "
          f"{header['torch']}, {header['threads']} threads")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, *SHAPES[args.model], generator=g).to(device),
                torch.randint(0, 10, (args.batch_size,), generator=g).to(device)) for _ in range(2)]
    copies = {"eager": _copy(args.model, False, args.dynamic, device),
              "compiled": _copy(args.model, True, args.dynamic, device)}
    rows = []
    bar = C.progress_bar(total=len(args.methods) * (2 + 2 * (args.warmup + args.iters)), desc="compile_time")
    for method in args.methods:
        bar.set_postfix_str(method)
        rng = {kind: random.Random(0) for kind in copies}
        counters.clear()
        first = {}
        for kind in ("eager", "compiled"):  # the compiled one's first iteration compiles
            model, opt = copies[kind]
            t0 = time.perf_counter()
            _step(method, model, opt, *batches[0], args.T, rng[kind])
            C.sync(device)
            first[kind] = time.perf_counter() - t0
            bar.update(1)
        times = {kind: [] for kind in copies}
        for i in range(args.warmup + args.iters):
            order = ["eager", "compiled"] if i % 2 == 0 else ["compiled", "eager"]
            for kind in order:
                model, opt = copies[kind]
                x, y = batches[i % 2]
                a = timer.mark()
                _step(method, model, opt, x, y, args.T, rng[kind])
                b = timer.mark()
                if i >= args.warmup:
                    times[kind].append(timer.elapsed_ms(a, b))
                bar.update(1)
        eager_ms, compiled_ms = C.median(times["eager"]), C.median(times["compiled"])
        rows.append(dict(model=args.model, method=method, T=args.T, batch_size=args.batch_size, eager_ms=eager_ms,
                         compiled_ms=compiled_ms, speedup=eager_ms / compiled_ms, first_compiled_s=first["compiled"],
                         graphs=int(counters["stats"]["unique_graphs"]),
                         graph_breaks=int(sum(counters["graph_break"].values())),
                         recompiles=int(sum(counters["recompiles"].values()))))
    bar.close()
    print("\n# eager / compiled: the medians' ratio (> 1: compiled faster), same run, the copies in turns")
    C.print_table([("method", "method", None), ("eager_ms", "eager ms", "{:.1f}"),
                   ("compiled_ms", "compiled ms", "{:.1f}"), ("speedup", "eager/compiled", "{:.2f}"),
                   ("first_compiled_s", "first compiled it s", "{:.1f}"), ("graphs", "graphs", None),
                   ("graph_breaks", "breaks", None), ("recompiles", "recompiles", None)], rows)
    stem = f"compile_time_{device.type}{('_' + args.tag) if args.tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    return rows


if __name__ == "__main__":
    main()
