"""torch.compile against eager: training time per iteration of a network with our neurons.

    python benchmarks/compile_time.py                          # ResNet-18, CPU, batch 8, T 4, SLTT then BPTT
    python benchmarks/compile_time.py --model digits --iters 20 --threads 1

Two copies of the network start from the same weights: one eager, one under
torch.compile(dynamic=False, options={"layout_optimization": False}) (see below). Each method runs
on the same two copies, one after the other (SLTT first, then BPTT: the step-mode switch of a
compiled model is part of what is measured, as a training script that evaluates or changes method
meets it). The first iteration of the compiled copy (its compile) is timed alone; then the copies
take turns, one iteration each, in an order that alternates, so that a shared machine's load
biases neither, and the ratio of the medians (eager / compiled: above 1 means the compiled copy
is faster) is the finding. Recompilations and graph breaks come from torch._dynamo's counters.

Before the compiled copy runs at all, the eager copy also runs --alone iterations by itself
(eager_alone_ms, after its own --warmup ones): eager in turns (eager_ms) should equal it within the spread; if it does not,
the turns disturb each other and the ratio is not to be trusted (turns_vs_alone says by how much).

OpenMP's wait policy: the script sets OMP_WAIT_POLICY=PASSIVE unless the environment names one.
Torch's OpenMP threads (libgomp, which the code inductor generates shares: one runtime in the
process) otherwise spin at every barrier waiting for their partners; on a CPU that other
processes also load, a partner is often descheduled, and a spinning thread burns its core
meanwhile: an eager SLTT iteration of ResNet-18 (batch 8, T 4, 2 threads, 2 cores loaded ~6x)
took 8-18 s with spinning against 2.0-2.8 s passive, or 1.2-2.6 s on one thread. SLTT, with T
backward passes of small ops per iteration, meets far more barriers than BPTT, so it suffered
most. The policy is read when torch loads its OpenMP runtime: it applies when this script is run,
not when main() is called in a process that imported torch before (the JSON says which).
The load average before and after each method is recorded too.

Inductor's layout optimization (on by default for a network of convs) is off unless
--layout-optimization: it runs the convs in channels_last, so every call of the graph converts
each conv weight (a graph input) to channels_last and every backward accumulates the weights'
gradients back into their own layout. SLTT calls the graphs T times per iteration: on ResNet-18
(batch 8, T 4, 2 threads) those copies took 170 ms of an iteration (12 ms without), and SLTT
compiled ran at 0.73x eager with it against 1.05x without, in the same turns.
Writes compile_time_<device>.json/.csv under --out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

# before torch (and its OpenMP runtime) loads: see the docstring. Where torch is loaded already
# (main() called in-process), the environment is left alone: it would change nothing here and
# only leak into the caller's later subprocesses.
_TORCH_LOADED_BEFORE = "torch" in sys.modules
if not _TORCH_LOADED_BEFORE:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

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
    p.add_argument("--alone", type=int, default=3,
                   help="timed eager iterations by itself, before the compiled copy runs (0: none)")
    p.add_argument("--layout-optimization", action="store_true",
                   help="let inductor turn the convs to channels_last (its default; off here, see the docstring)")
    p.add_argument("--compile-backend", default="inductor", choices=["inductor", "aot_eager", "eager"],
                   help="torch.compile's backend ('eager' and 'aot_eager' trace without generating code: fast)")
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
    for flag in ("warmup", "alone"):
        if getattr(args, flag) < 0:
            p.error(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    C.check_unique(p, "--methods", args.methods)
    C.check_output_args(p, args)
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def _copy(model, compiled, dynamic, device, backend="inductor", layout_optimization=False):
    torch.manual_seed(0)
    net = MODELS[model]().to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    if not compiled:
        return net, opt
    options = {"layout_optimization": layout_optimization} if backend == "inductor" else None
    return torch.compile(net, dynamic=None if dynamic == "auto" else False, backend=backend, options=options), opt


def _load() -> float:
    """The 1-minute load average (NaN where /proc/loadavg is not there)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return float("nan")


def _omp_libraries() -> list:
    """The OpenMP runtimes mapped into this process (Linux): one means torch and inductor's code share it."""
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f if "omp" in os.path.basename(line.split()[-1])})
    except OSError:
        return []


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
                  alone=args.alone, dynamic=args.dynamic, compile_backend=args.compile_backend,
                  layout_optimization=args.layout_optimization,
                  omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
                  # the policy only applies if torch's OpenMP runtime loaded after it was set
                  omp_wait_policy_applied=not _TORCH_LOADED_BEFORE)
    policy = header["omp_wait_policy"] if header["omp_wait_policy_applied"] else "not set here (torch loaded before)"
    print(f"# {args.model}, random data, batch {args.batch_size}, T {args.T}, fp32; {args.iters} turns after the "
          f"compiling one and {args.warmup} warm-up, eager {args.alone} alone first; "
          f"{header.get('gpu', header['cpu'])} ({device.type}), torch {header['torch']}, {header['threads']} threads, "
          f"OMP_WAIT_POLICY {policy}")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, *SHAPES[args.model], generator=g).to(device),
                torch.randint(0, 10, (args.batch_size,), generator=g).to(device)) for _ in range(2)]
    copies = {"eager": _copy(args.model, False, args.dynamic, device),
              "compiled": _copy(args.model, True, args.dynamic, device, args.compile_backend, args.layout_optimization)}
    rows = []
    per_copy = 1 + (args.warmup if args.alone else 0) + args.alone + args.warmup + args.iters
    bar = C.progress_bar(total=len(args.methods) * 2 * per_copy,
                         desc="compile_time")
    for method in args.methods:
        bar.set_postfix_str(method)
        rng = {kind: random.Random(0) for kind in copies}
        counters.clear()
        load_before = _load()
        first, alone, loss = {}, [], {}

        def timed(kind, i):
            model, opt = copies[kind]
            x, y = batches[i % 2]
            a = timer.mark()
            loss[kind] = _step(method, model, opt, x, y, args.T, rng[kind]).loss
            b = timer.mark()
            bar.update(1)
            return timer.elapsed_ms(a, b)

        # eager's first iteration and its warm-up, then eager alone; then the compiled one's first
        # (it compiles) and the same iterations untimed, so that the copies take the same updates
        ahead = 1 + (args.warmup if args.alone else 0)
        first["eager"] = timed("eager", 0) / 1e3
        for i in range(1, ahead):
            timed("eager", i)
        alone = [timed("eager", ahead + i) for i in range(args.alone)]
        first["compiled"] = timed("compiled", 0) / 1e3
        for i in range(1, ahead + args.alone):
            timed("compiled", i)
        times = {kind: [] for kind in copies}
        for i in range(args.warmup + args.iters):
            order = ["eager", "compiled"] if i % 2 == 0 else ["compiled", "eager"]
            for kind in order:
                ms = timed(kind, i)
                if i >= args.warmup:
                    times[kind].append(ms)
        eager_ms, compiled_ms = C.median(times["eager"]), C.median(times["compiled"])
        alone_ms = C.median(alone)
        rows.append(dict(model=args.model, method=method, T=args.T, batch_size=args.batch_size, eager_ms=eager_ms,
                         compiled_ms=compiled_ms, speedup=eager_ms / compiled_ms,
                         eager_alone_ms=alone_ms, turns_vs_alone=eager_ms / alone_ms if alone else None,
                         # the spread: the fastest and slowest timed iteration of each
                         eager_min_ms=min(times["eager"]), eager_max_ms=max(times["eager"]),
                         compiled_min_ms=min(times["compiled"]), compiled_max_ms=max(times["compiled"]),
                         eager_alone_min_ms=min(alone) if alone else None,
                         eager_alone_max_ms=max(alone) if alone else None,
                         first_compiled_s=first["compiled"],
                         # the copies take the same updates: their last losses differ only by rounding (which a
                         # spike that flips can grow over the iterations of a deep network)
                         loss_gap=abs(loss["eager"] - loss["compiled"]),
                         graphs=int(counters["stats"]["unique_graphs"]),
                         graph_breaks=int(sum(counters["graph_break"].values())),
                         recompiles=int(sum(counters["recompiles"].values())),
                         load_before=load_before, load_after=_load()))
    bar.close()
    print("\n# eager / compiled: the medians' ratio (> 1: compiled faster), same run, the copies in turns")
    for r in rows:
        r["eager_range"] = f"{r['eager_min_ms']:.0f}-{r['eager_max_ms']:.0f}"
        r["compiled_range"] = f"{r['compiled_min_ms']:.0f}-{r['compiled_max_ms']:.0f}"
    C.print_table([("method", "method", None), ("eager_ms", "eager ms", "{:.1f}"), ("eager_range", "range", None),
                   ("compiled_ms", "compiled ms", "{:.1f}"), ("compiled_range", "range", None),
                   ("speedup", "eager/compiled", "{:.2f}"), ("eager_alone_ms", "eager alone ms", "{:.1f}"),
                   ("turns_vs_alone", "turns/alone", "{:.2f}"),
                   ("first_compiled_s", "first compiled it s", "{:.1f}"), ("graphs", "graphs", None),
                   ("graph_breaks", "breaks", None), ("recompiles", "recompiles", None),
                   ("loss_gap", "loss gap", "{:.1e}"), ("load_before", "load", "{:.1f}")], rows)
    for r in rows:
        del r["eager_range"], r["compiled_range"]
    header["omp_runtimes"] = _omp_libraries()
    print(f"# OpenMP runtimes in this process: {', '.join(header['omp_runtimes']) or 'none found'}")
    stem = f"compile_time_{device.type}{('_' + args.tag) if args.tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    return rows


if __name__ == "__main__":
    main()
