"""The SLTT paper's Table S2 on this machine: training memory and time of BPTT, SLTT and SLTT-K.

    python benchmarks/memory_time.py --T 2 4 6          # ResNet-18, CIFAR-10-shaped input

Each method trains real iterations (forward, backward, SGD step) of the same network:
  bptt      our fused multi-step kernels, BPTT through all T steps (bptt_step)
  sltt      online SLTT, one step at a time, backward at once (sltt_step, Algorithm S2)
  sltt-k    SLTT back-propagating at K random steps (--K, default 2)
and, in the same run, the peers: sj-bptt (SpikingJelly's LIFNode, multi-step, its own fastest
implementation) and sj-sltt (its SLTTLIFNode, online), when SpikingJelly is installed, and
ref-bptt / ref-sltt (this package's pure-PyTorch reference neurons).

On a GPU: peak memory (torch.cuda.max_memory_allocated, reset per method: weights, optimizer
state and activations, as in the paper) and time per iteration (CUDA events, median after
warm-up), with the epoch time for 391 iterations (CIFAR-10 at batch 128). On a CPU: the peak
bytes saved for backward (saved_tensors_hooks), the process's peak RSS during the method, and
wall time per iteration, with defaults small enough for about two minutes on 2 cores.
Input is random CIFAR-10-shaped data (3x32x32, 10 classes) unless --data-dir holds CIFAR-10 in
torchvision's format: time and memory do not depend on the pixel values.
Writes memory_time_<device>.json/.csv/.png under --out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

from sltt_kernels import models, training  # noqa: E402
from sltt_kernels.memory import SavedTensorMeter  # noqa: E402
from sltt_kernels.nn import PaperLIFNode  # noqa: E402

PAPER_V100 = {  # Table S2, ResNet-18 on CIFAR-10, batch 128, one V100
    2: dict(bptt_mem="1.47G", sltt_mem="1.10G", bptt_time="1.81h", sltt_time="1.80h"),
    4: dict(bptt_mem="2.19G", sltt_mem="1.09G", bptt_time="3.41h", sltt_time="3.29h"),
    6: dict(bptt_mem="3.00G", sltt_mem="1.09G", bptt_time="6.35h", sltt_time="4.58h"),
}
ALL_METHODS = ["bptt", "sltt", "sltt-k", "sj-bptt", "sj-sltt", "ref-bptt", "ref-sltt"]
MODELS = {
    "resnet18": lambda neuron, classes: models.spiking_resnet18(num_classes=classes, neuron=neuron),
    "vgg11": lambda neuron, classes: models.vgg11_bn(num_classes=classes, in_channels=3, neuron=neuron),
    "nf_resnet34": lambda neuron, classes: models.nf_resnet34(num_classes=classes, neuron=neuron),
}


def neuron_factory(method: str, backend: str):
    """The paper's neuron (soft reset, no input decay, tau 2, rect surrogate) for a method."""
    kind = method.split("-")[0]
    grad = "bptt" if method.endswith("bptt") else "sltt"
    if kind == "sj":
        from spikingjelly.activation_based import neuron, surrogate

        if grad == "bptt":
            return lambda: neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None,
                                          surrogate_function=surrogate.Rect(alpha=1.0), step_mode="m")
        return lambda: neuron.SLTTLIFNode(tau=2.0, decay_input=False, v_reset=None,
                                          surrogate_function=surrogate.Rect(alpha=1.0), detach_reset=False)
    be = "reference" if kind == "ref" else backend
    return lambda: PaperLIFNode(grad_mode=grad, backend=be)


def available_methods(requested):
    out, why = [], {}
    try:
        import spikingjelly.activation_based.neuron  # noqa: F401
        have_sj = True
    except Exception:
        have_sj = False
    for m in requested:
        if m.startswith("sj-") and not have_sj:
            why[m] = "SpikingJelly not installed"
        else:
            out.append(m)
    return out, why


class RssSampler:
    """Peak resident set size of this process while running (sampled every few ms)."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *a):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def load_batches(args, device, n):
    if args.data_dir:
        try:
            import torchvision
            from torchvision import transforms
        except ImportError:
            raise SystemExit("--data-dir needs torchvision (pip install torchvision)")
        try:
            ds = torchvision.datasets.CIFAR10(args.data_dir, train=True, download=False,
                                              transform=transforms.ToTensor())
        except RuntimeError as e:
            raise SystemExit(f"--data-dir {args.data_dir}: no CIFAR-10 in torchvision's format there "
                             f"(expected {args.data_dir}/cifar-10-batches-py/): {e}")
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
        batches = []
        for i, (x, y) in enumerate(loader):
            if i >= n:
                break
            batches.append((x.to(device), y.to(device)))
        return batches
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(args.batch_size, 3, 32, 32, generator=g).to(device),
             torch.randint(0, 10, (args.batch_size,), generator=g).to(device)) for _ in range(n)]


def run_method(method, T, args, device, batches, timer):
    torch.manual_seed(0)
    net = MODELS[args.model](neuron_factory(method, args.backend), 10).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    amp = None if args.dtype == "fp32" else C.DTYPES[args.dtype]
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    rng = random.Random(0)

    def step(x, y):
        if method.endswith("bptt"):
            return training.bptt_step(net, opt, x, y, T, scaler=scaler, autocast_dtype=amp, step_mode="m")
        K = args.K if method == "sltt-k" else None
        return training.sltt_step(net, opt, x, y, T, K=K, scaler=scaler, autocast_dtype=amp, generator=rng)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    meter = SavedTensorMeter(net)
    with RssSampler() as rss:
        for i in range(args.warmup + args.iters):
            x, y = batches[i % len(batches)]
            a = timer.mark()
            if i == args.warmup:  # measure saved bytes on one timed iteration
                with meter:
                    step(x, y)
            else:
                step(x, y)
            b = timer.mark()
            if i >= args.warmup:
                times.append(timer.elapsed_ms(a, b))
            C.progress_bar(i + 1, args.warmup + args.iters, f"{method} T={T}")
    row = dict(model=args.model, T=T, method=method, iter_ms=C.median(times), saved_MB=meter.peak / 2**20,
               rss_MB=rss.peak / 2**20)
    if device.type == "cuda":
        row["peak_MB"] = torch.cuda.max_memory_allocated() / 2**20
    row["epoch_h"] = row["iter_ms"] * 391 / 1000 / 3600
    del net, opt
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--batch-size", type=int, help="GPU default 128; CPU default 16")
    p.add_argument("--iters", type=int, help="timed iterations (GPU 20, CPU 5)")
    p.add_argument("--warmup", type=int, help="untimed iterations first (GPU 5, CPU 1)")
    p.add_argument("--methods", nargs="+", default=ALL_METHODS, choices=ALL_METHODS)
    p.add_argument("--K", type=int, default=2, help="steps back-propagated by sltt-k")
    p.add_argument("--backend", default="auto", help="backend of our neurons (auto, cpu, cuda, triton)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--amp", action="store_true", help="same as --dtype bf16")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--data-dir", help="CIFAR-10 in torchvision's format (default: random data)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.amp:
        args.dtype = "bf16"
    device = C.pick_device(args.device)
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (128 if gpu else 16)
    args.iters = args.iters or (20 if gpu else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if any(t < 1 for t in args.T) or not 1 <= args.K <= min(args.T):
        raise SystemExit(f"--K must lie in [1, min(T)]: T={args.T}, K={args.K}")
    methods, skipped = available_methods(args.methods)
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(model=args.model, batch_size=args.batch_size, iters=args.iters, warmup=args.warmup,
                  K=args.K, backend=args.backend, dtype=args.dtype, data=args.data_dir or "random CIFAR-10-shaped")
    print(f"# {args.model} on {'CIFAR-10 from ' + args.data_dir if args.data_dir else 'random CIFAR-10-shaped data'}, "
          f"batch {args.batch_size}, {args.iters} timed iterations after {args.warmup} warm-up, {args.dtype}")
    print(f"# {header.get('gpu', header['cpu'])} ({device.type}), torch {header['torch']}, backend {args.backend}, "
          f"spikingjelly {header['spikingjelly']}, {header['threads']} threads")
    if not gpu:
        print("# CPU run: small batch and few iterations so that it ends in about two minutes; memory is the peak "
              "of bytes saved for backward (and the process's RSS), not GPU memory")
    for m, why in skipped.items():
        print(f"# {m} skipped: {why}")
    batches = load_batches(args, device, min(4, args.warmup + args.iters))
    rows = []
    for T in args.T:
        for m in methods:
            rows.append(run_method(m, T, args, device, batches, timer))
    C.progress_done()

    mem_key = "peak_MB" if gpu else "saved_MB"
    by = {(r["T"], r["method"]): r for r in rows}
    summary = []
    for T in args.T:
        b, s = by.get((T, "bptt")), by.get((T, "sltt"))
        r = dict(T=T)
        for m in methods:
            r[f"{m}_mem"] = by[(T, m)][mem_key]
            r[f"{m}_ms"] = by[(T, m)]["iter_ms"]
        if b and s:
            r["sltt/bptt mem"] = s[mem_key] / b[mem_key]
            r["sltt/bptt time"] = s["iter_ms"] / b["iter_ms"]
        if "sj-bptt" in methods and s:
            r["sltt/sj-bptt time"] = s["iter_ms"] / by[(T, "sj-bptt")]["iter_ms"]
        if "sltt-k" in methods and b:
            r["sltt-k/bptt time"] = by[(T, "sltt-k")]["iter_ms"] / b["iter_ms"]
        summary.append(r)
    unit = "peak GPU memory MB" if gpu else "saved-for-backward MB"
    print(f"\n## Table S2 layout ({unit}; time per iteration ms)")
    cols = [("T", "T", None)]
    for m in ("bptt", "sltt"):
        if m in methods:
            cols.append((f"{m}_mem", f"{m.upper()} mem", "{:.1f}"))
    for m in ("bptt", "sltt"):
        if m in methods:
            cols.append((f"{m}_ms", f"{m.upper()} ms", "{:.1f}"))
    cols += [("sltt/bptt mem", "SLTT/BPTT mem", "{:.2f}"), ("sltt/bptt time", "SLTT/BPTT time", "{:.2f}"),
             ("sltt/sj-bptt time", "SLTT/SJ-BPTT time", "{:.2f}"), ("sltt-k/bptt time", "SLTT-K/BPTT time", "{:.2f}")]
    C.print_table(cols, summary)
    print("\n## All methods")
    long_cols = [("T", "T", None), ("method", "method", None), ("iter_ms", "ms/iter", "{:.1f}"),
                 ("epoch_h", "epoch h (391 it)", "{:.2f}"), ("saved_MB", "saved MB", "{:.1f}"),
                 ("rss_MB", "peak RSS MB", "{:.0f}")]
    if gpu:
        long_cols.insert(3, ("peak_MB", "peak GPU MB", "{:.0f}"))
    C.print_table(long_cols, rows)
    print("\n## The paper (Table S2, ResNet-18, CIFAR-10, batch 128, V100): " +
          "; ".join(f"T={T}: BPTT {v['bptt_mem']} {v['bptt_time']}, SLTT {v['sltt_mem']} {v['sltt_time']}"
                    for T, v in PAPER_V100.items()))
    stem = f"memory_time_{device.type}{('_' + args.tag) if args.tag else ''}"
    jp, cp = C.write_outputs(args.out, stem, header, rows)
    print(f"\nwrote {jp} and {cp}")
    if not args.no_plot:
        plot(rows, methods, mem_key, unit, os.path.join(args.out, stem + ".png"), header)
    return rows


def plot(rows, methods, mem_key, unit, path, header):
    plt = C.pyplot()
    if plt is None:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in methods:
        pts = sorted((r["T"], r[mem_key], r["iter_ms"]) for r in rows if r["method"] == m)
        style = "-" if not m.startswith(("sj", "ref")) else "--"
        a1.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=m)
        a2.plot([p[0] for p in pts], [p[2] for p in pts], style, marker="o", label=m)
    a1.set_xlabel("T")
    a1.set_ylabel(unit)
    a2.set_xlabel("T")
    a2.set_ylabel("ms per iteration")
    a1.set_ylim(bottom=0)
    a2.set_ylim(bottom=0)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle(f"{rows[0]['model']} training, {header.get('gpu', header['cpu'])}, torch {header['torch']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
