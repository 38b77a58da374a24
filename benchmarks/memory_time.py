"""The SLTT paper's Table S2 on this machine: training memory and time of BPTT, SLTT and SLTT-K.

    python benchmarks/memory_time.py --T 2 4 6          # ResNet-18, CIFAR-10-shaped input
    python benchmarks/memory_time.py --T 6              # one T: bars per method instead of lines
    python benchmarks/memory_time.py --T 6 --full       # every variant and method (a GPU's default)

On a CPU the default is the headline (--quick): the paper's and the rect neuron, our BPTT and
SLTT against SpikingJelly's BPTT and SLTT, 3 timed iterations each, and the bytes SLTT and BPTT
save at two smaller T (one untimed iteration each) to show SLTT's memory flat in T; about two
minutes on 2 cores, said up front. --full runs the whole table (SLTT-K, the reference, the packed
variants). On a GPU the whole table is the default (--quick asks for the headline there too).

Each method trains real iterations (forward, backward, SGD step) of the same network:
  bptt      our fused multi-step kernels, BPTT through all T steps (bptt_step)
  sltt      online SLTT, one step at a time, backward at once (sltt_step, Algorithm S2)
  sltt-k    SLTT back-propagating at K random steps (--K, default 2)
and, in the same run, the peers: sj-bptt (SpikingJelly's LIFNode, multi-step, its own fastest
implementation) and sj-sltt (its SLTTLIFNode, online), when SpikingJelly is installed, and
ref-bptt / ref-sltt (this package's pure-PyTorch reference neurons).

The neuron is the paper's, as its official code builds it: sltt_kernels.nn.PaperLIFNode()
(tau 1.1, triangle surrogate, soft reset, no input decay), the peers configured alike; on a GPU
the default is fp16 autocast (AMP) as in the paper. Each variant in VARIANTS gets its own rows:
"paper", and "rect", the 1-bit rect-surrogate configuration (PaperLIFNode(surrogate_function=
Rect())); variants that pack spike inputs join when sltt_kernels.nn.pack_spike_inputs exists.

On a GPU: peak memory (torch.cuda.max_memory_allocated, reset per method: weights, optimizer
state and activations, as in the paper) and time per iteration (CUDA events, median after
warm-up), with the epoch time for 391 iterations (CIFAR-10 at batch 128). On a CPU: the peak
bytes saved for backward (saved_tensors_hooks, on one untimed iteration), the process's peak RSS
during the method (after freed heap memory went back to the system, so an earlier method's
leftovers count as little as they can), and wall time per iteration, with defaults small enough
for about two minutes on 2 cores.
Input is random CIFAR-10-shaped data (3x32x32, 10 classes) unless --data-dir holds CIFAR-10 in
torchvision's format: time and memory do not depend on the pixel values.
Writes memory_time_<device>.json/.csv/.png under --out.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import inspect
import os
import random
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import sltt_kernels  # noqa: E402
from sltt_kernels import models, training  # noqa: E402
from sltt_kernels.memory import SavedTensorMeter  # noqa: E402
from sltt_kernels.nn import PaperLIFNode  # noqa: E402
from sltt_kernels.surrogate import Rect  # noqa: E402

PAPER_V100 = {  # Table S2, ResNet-18 on CIFAR-10, batch 128, one V100
    2: dict(bptt_mem="1.47G", sltt_mem="1.10G", bptt_time="1.81h", sltt_time="1.80h"),
    4: dict(bptt_mem="2.19G", sltt_mem="1.09G", bptt_time="3.41h", sltt_time="3.29h"),
    6: dict(bptt_mem="3.00G", sltt_mem="1.09G", bptt_time="6.35h", sltt_time="4.58h"),
}
ALL_METHODS = ["bptt", "sltt", "sltt-k", "sj-bptt", "sj-sltt", "ref-bptt", "ref-sltt"]
BACKENDS = ["auto", "cpu", "cuda", "triton", "reference"]
MODELS = {
    "resnet18": lambda neuron, classes, **kw: models.spiking_resnet18(num_classes=classes, neuron=neuron, **kw),
    "vgg11": lambda neuron, classes, **kw: models.vgg11_bn(num_classes=classes, in_channels=3, neuron=neuron, **kw),
    "nf_resnet34": lambda neuron, classes, **kw: models.nf_resnet34(num_classes=classes, neuron=neuron, **kw),
}
# the class each builder hands its keyword arguments to: which options a model takes is read there
MODEL_CLASSES = {"resnet18": "SpikingPreActResNet", "vgg11": "SpikingVGG11", "nf_resnet34": "SpikingNFResNet"}
# the CPU's default (--quick): the headline rows only; --full (a GPU's default) runs every method
QUICK_METHODS = ["bptt", "sltt", "sj-bptt", "sj-sltt"]
QUICK_VARIANTS = ["paper", "rect"]
QUICK_ITERS, QUICK_WARMUP = 3, 0  # the untimed iteration that counts the saved bytes warms up
# Seconds of one training iteration per sample and time step on 2 cores of an Intel Xeon (ResNet-18,
# CIFAR-10 shapes, fp32; from this script's runs): the up-front estimate of a CPU run's length.
CPU_SECONDS_PER_SAMPLE_STEP = {"ours": 0.020, "sj": 0.030, "ref": 0.040}
CPU_SECONDS_PER_ROW = 1.0  # building the network and its optimizer
SPIKINGJELLY_INSTALL = "pip install --no-deps spikingjelly==2.0.0 loguru tqdm"  # none has other dependencies


def model_accepts(model: str, option: str) -> bool:
    """Whether the model's builder takes `option` (e.g. recompute), read from its class's signature."""
    cls = getattr(models, MODEL_CLASSES[model], None)
    return cls is not None and option in inspect.signature(cls).parameters


class Variant:
    """A configuration with its own rows: the surrogate of the neuron and a change to the model.

    surrogate: "triangle" (the paper's) or "rect" (1 bit per element-step); transform: None or
    a function model -> model applied after it is built (e.g. packing spike inputs); build: the
    model builder's keyword arguments for our methods; peers: whether SpikingJelly and the
    reference run in this variant too.
    """

    def __init__(self, name, surrogate, transform=None, peers=True, note="", build=None):
        self.name, self.surrogate, self.transform, self.peers, self.note = name, surrogate, transform, peers, note
        self.build = dict(build or {})  # keyword arguments of the model's builder (ours only, not the peers')

    def runs(self, method: str) -> bool:
        """Whether this variant has a row for method (the peers' only where peers is set)."""
        return self.peers or not method.startswith(("sj", "ref"))

    def neuron_kwargs(self):
        return {} if self.surrogate == "triangle" else dict(surrogate_function=Rect())


def variants(model: str = "resnet18"):
    """The rows' configurations. New ones go here: a name, a surrogate, an optional model transform
    or builder options. 'packed+recompute' joins when the model's builder takes recompute=True."""
    out = [
        Variant("paper", "triangle", note="PaperLIFNode(): tau 1.1, triangle, soft reset"),
        Variant("rect", "rect", note="PaperLIFNode(surrogate_function=Rect()): 1-bit saved state"),
    ]
    if hasattr(sltt_kernels.nn, "pack_spike_inputs"):
        out += [Variant("paper-packed", "triangle", _packed, peers=False, note="paper + nn.pack_spike_inputs(model)"),
                Variant("rect-packed", "rect", _packed, peers=False, note="rect + nn.pack_spike_inputs(model)")]
    if model_accepts(model, "recompute") and model_accepts(model, "pack_spike_inputs"):
        both = dict(pack_spike_inputs=True, recompute=True)
        out += [Variant("paper-packed+recompute", "triangle", peers=False, build=both,
                        note="paper, built with pack_spike_inputs=True, recompute=True"),
                Variant("rect-packed+recompute", "rect", peers=False, build=both,
                        note="rect, built with pack_spike_inputs=True, recompute=True")]
        if model_accepts(model, "fuse_norm"):
            fused = dict(both, fuse_norm=True)
            out += [Variant("paper-packed+recompute+fused", "triangle", peers=False, build=fused,
                            note="paper, pack_spike_inputs, recompute and fuse_norm=True (BN apply in the neuron kernel)"),
                    Variant("rect-packed+recompute+fused", "rect", peers=False, build=fused,
                            note="rect, pack_spike_inputs, recompute and fuse_norm=True (BN apply in the neuron kernel)")]
    return out


def _packed(net):
    """The model with 1-bit spike inputs (pack_spike_inputs converts in place and returns a report)."""
    sltt_kernels.nn.pack_spike_inputs(net)
    return net


def neuron_factory(method: str, backend: str, variant: Variant):
    """The paper's neuron (PaperLIFNode, the variant's surrogate) for a method; the peers alike."""
    kind = method.split("-")[0]
    grad = "bptt" if method.endswith("bptt") else "sltt"
    if kind == "sj":
        from spikingjelly.activation_based import neuron, surrogate

        def sg():
            return surrogate.PiecewiseQuadratic(alpha=1.0) if variant.surrogate == "triangle" else surrogate.Rect(alpha=1.0)

        if grad == "bptt":
            return lambda: neuron.LIFNode(tau=1.1, decay_input=False, v_reset=None, surrogate_function=sg(),
                                          step_mode="m")
        return lambda: neuron.SLTTLIFNode(tau=1.1, decay_input=False, v_reset=None, surrogate_function=sg(),
                                          detach_reset=False)
    be = "reference" if kind == "ref" else backend
    return lambda: PaperLIFNode(grad_mode=grad, backend=be, **variant.neuron_kwargs())


def available_methods(requested):
    out, why = [], {}
    have_sj = C.have_spikingjelly()
    for m in requested:
        if m.startswith("sj-") and not have_sj:
            why[m] = "SpikingJelly not installed"
        else:
            out.append(m)
    return out, why


def release_free_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's malloc_trim),
    so that the next method's peak RSS starts from what is still alive, not from what an earlier
    method left in the allocator. A no-op where there is no glibc."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except Exception:  # no glibc (musl, macOS), or no CDLL(None) at all (Windows)
        pass


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


def run_method(method, T, args, device, batches, timer, variant, bar=None, saved_only=False):
    """One method's row: trains (warm-up, one metered iteration, the timed ones) and measures.
    saved_only: the metered iteration alone (the bytes saved; no time, no RSS)."""
    torch.manual_seed(0)
    ours = not method.startswith(("sj", "ref"))
    net = MODELS[args.model](neuron_factory(method, args.backend, variant), 10, **(variant.build if ours else {}))
    net = net.to(device)
    if variant.transform is not None and ours:
        net = variant.transform(net)
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
    release_free_memory()
    if saved_only:
        with meter:
            step(*batches[0])
        return dict(model=args.model, variant=variant.name, T=T, method=method, saved_MB=meter.peak / 2**20)
    with RssSampler() as rss:
        for i in range(args.warmup + 1 + args.iters):
            x, y = batches[i % len(batches)]
            if i == args.warmup:  # the saved bytes, on one iteration of its own: the hooks cost time
                with meter:
                    step(x, y)
            else:
                a = timer.mark()
                step(x, y)
                b = timer.mark()
                if i > args.warmup:
                    times.append(timer.elapsed_ms(a, b))
            if bar is not None:
                bar.update(1)
    row = dict(model=args.model, variant=variant.name, T=T, method=method, iter_ms=C.median(times),
               saved_MB=meter.peak / 2**20, rss_MB=rss.peak / 2**20)
    if device.type == "cuda":
        row["peak_MB"] = torch.cuda.max_memory_allocated() / 2**20
    row["epoch_h"] = row["iter_ms"] * 391 / 1000 / 3600
    del net, opt
    return row


def check_training_args(p, args) -> None:
    """The checks of the training benchmarks' shared arguments (this script's and packed_time.py's):
    --T, the counts, --K for sltt-k. A wrong one is an argparse error naming it."""
    if any(t < 1 for t in args.T):
        p.error(f"--T: every time step count must be >= 1, got {' '.join(map(str, args.T))}")
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--iters", args.iters, 1),
                             ("--warmup", args.warmup, 0), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            p.error(f"{flag} must be >= {low}, got {value}")
    C.check_unique(p, "--T", args.T)
    C.check_unique(p, "--methods", args.methods)
    if "sltt-k" in args.methods and not 1 <= args.K <= min(args.T):
        p.error(f"--K must lie in [1, min(T)] = [1, {min(args.T)}] for sltt-k, got {args.K} "
                "(choose another --K, or leave sltt-k out of --methods)")


def parse_args(argv):
    """The arguments, every one checked before any work: a wrong one is an argparse error naming it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", nargs="+", type=int, default=[2, 4, 6], help="time steps; one T draws bars, several lines")
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--batch-size", type=int, help="GPU default 128; CPU default 16")
    p.add_argument("--iters", type=int, help="timed iterations (GPU 20, CPU 5)")
    p.add_argument("--warmup", type=int, help="untimed iterations first (GPU 5, CPU 1)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the headline only (the CPU's default): variants "
                      f"{' '.join(QUICK_VARIANTS)}, methods {' '.join(QUICK_METHODS)}, {QUICK_ITERS} timed iterations "
                      f"after {QUICK_WARMUP} warm-up, and SLTT's and BPTT's saved bytes at smaller T")
    mode.add_argument("--full", action="store_true", help="every variant and method (the GPU's default); "
                      "a few minutes on 2 CPU cores per T")
    p.add_argument("--methods", nargs="+", choices=ALL_METHODS,
                   help=f"default: all ({' '.join(ALL_METHODS)}); with --quick {' '.join(QUICK_METHODS)}")
    p.add_argument("--variants", nargs="+", help="configurations with their own rows (default: all of "
                   + ", ".join(v.name for v in variants()) + "; with --quick " + ", ".join(QUICK_VARIANTS) + ")")
    p.add_argument("--K", type=int, default=2, help="steps back-propagated by sltt-k (1 <= K <= min(T))")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="backend of our neurons")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"],
                   help="autocast dtype (default: fp16 AMP on a GPU, as in the paper; fp32 on a CPU)")
    p.add_argument("--amp", action="store_true", help="same as --dtype bf16")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice; 1 steadies a "
                   "CPU shared with other work, where OpenMP threads wait on each other)")
    p.add_argument("--data-dir", help="CIFAR-10 in torchvision's format (default: random data)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-csv", action="store_true", help="write the JSON file only")
    args = p.parse_args(argv)
    C.check_device_arg(p, args)
    device = C.pick_device(args.device)
    # the headline by default on a CPU, the whole table on a GPU (fast there); given flags win
    args.quick = args.quick or (not args.full and device.type == "cpu")
    if args.quick:
        args.methods = args.methods or list(QUICK_METHODS)
        args.variants = args.variants or list(QUICK_VARIANTS)
        args.iters = QUICK_ITERS if args.iters is None else args.iters
        args.warmup = QUICK_WARMUP if args.warmup is None else args.warmup
    args.methods = args.methods or list(ALL_METHODS)
    check_training_args(p, args)
    known = {v.name: v for v in variants(args.model)}
    for name in args.variants or []:
        if name not in known:
            p.error(f"--variants: {name!r} is not one of {', '.join(known)}")
    C.check_unique(p, "--variants", args.variants)
    args.variant_list = [known[n] for n in (args.variants or known)]
    if not any(v.runs(m) for v in args.variant_list for m in args.methods):
        p.error(f"--methods {' '.join(args.methods)} with --variants {' '.join(v.name for v in args.variant_list)}: "
                "nothing to run (the packed variants run our methods only: bptt, sltt, sltt-k)")
    if args.amp:
        if args.dtype not in (None, "bf16"):
            p.error(f"--amp means --dtype bf16, but --dtype {args.dtype} was given too")
        args.dtype = "bf16"
    C.check_output_args(p, args)
    if args.data_dir:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            p.error("--data-dir needs torchvision (pip install torchvision)")
    if args.backend != "auto":
        why = sltt_kernels.available_backends().get(args.backend)
        if why is not None:
            p.error(f"--backend {args.backend} is not available here: {why}")
        if args.backend in ("cpu", "cuda") and args.backend != device.type:
            p.error(f"--backend {args.backend} runs on {args.backend} tensors, but the device is {device.type}")
        if args.backend == "triton" and device.type != "cuda":
            p.error("--backend triton needs --device cuda")
    if args.dtype == "fp16" and device.type == "cpu":
        p.error("--dtype fp16: autocast to float16 is for GPUs; use --dtype bf16 or fp32 on a CPU")
    args.device_obj = device
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def run(args):
    device = args.device_obj
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (128 if gpu else 16)
    args.iters = args.iters or (20 if gpu else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    args.dtype = args.dtype or ("fp16" if gpu else "fp32")
    methods, skipped = available_methods(args.methods)
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(model=args.model, batch_size=args.batch_size, iters=args.iters, warmup=args.warmup,
                  K=args.K, backend=args.backend, dtype=args.dtype, data=args.data_dir or "random CIFAR-10-shaped",
                  variants={v.name: v.note for v in args.variant_list})
    print(f"# {args.model} on {'CIFAR-10 from ' + args.data_dir if args.data_dir else 'random CIFAR-10-shaped data'}, "
          f"batch {args.batch_size}, {args.iters} timed iterations after {args.warmup} warm-up, "
          f"{args.dtype}{' autocast' if args.dtype != 'fp32' else ''}")
    print(f"# {header.get('gpu', header['cpu'])} ({device.type}), torch {header['torch']}, backend {args.backend}, "
          f"spikingjelly {header['spikingjelly']}, {header['threads']} threads")
    for v in args.variant_list:
        print(f"# variant {v.name}: {v.note}")
    if not gpu:
        print("# CPU run: small batch and few iterations; memory is the peak of bytes saved for backward "
              "(and the process's RSS), not GPU memory")
    for m, why in skipped.items():
        print(f"# {m} skipped: {why}" + (f" ({SPIKINGJELLY_INSTALL}: its neurons need no torchaudio or "
                                          "torchvision)" if m.startswith("sj-") else ""))
    batches = load_batches(args, device, min(4, args.warmup + args.iters))
    plan = [(v, T, m) for v in args.variant_list for T in args.T for m in methods if v.runs(m)]
    if not plan:
        raise SystemExit("error: nothing to run: " + "; ".join(f"{m}: {why}" for m, why in skipped.items()))
    # with one T, SLTT's memory flat in T is shown by the bytes saved at smaller T (one untimed
    # iteration each, a few seconds): the quick run's headline
    probes = [(v, t, m) for v in args.variant_list for t in probe_Ts(args.T) for m in ("bptt", "sltt")
              if m in methods] if args.quick else []
    if args.batch_size != 128:
        print(f"# 391 it h: 391 iterations at batch {args.batch_size} (one CIFAR-10 epoch only at batch 128)")
    per_method = args.warmup + 1 + args.iters
    print(f"# {'quick run (the headline; --full for every variant and method)' if args.quick else 'full table'}: "
          f"{len(plan)} rows x {per_method} training iterations"
          + (f", plus {len(probes)} untimed at T = {' '.join(map(str, probe_Ts(args.T)))}" if probes else "")
          + (f"; about {estimate_seconds(plan, probes, args):.0f} s on 2 cores of an idle Xeon (started "
             f"{time.strftime('%H:%M:%S')})" if not gpu else ""), flush=True)
    rows = []
    started = time.perf_counter()
    bar = C.progress_bar(total=len(plan) * per_method + len(probes), desc="memory_time")
    for i, (v, T, m) in enumerate(plan):
        bar.set_postfix_str(f"{v.name} T={T} {m}")
        rows.append(run_method(m, T, args, device, batches, timer, v, bar))
        if i == 0 and len(plan) > 1 and not gpu:  # this machine's pace, from the first row
            spent = time.perf_counter() - started
            left = spent * (estimate_seconds(plan[1:], probes, args) / estimate_seconds(plan[:1], [], args))
            bar.write(f"# the first row took {spent:.0f} s: about {left:.0f} s left at this machine's pace")
    probe_rows = []
    for v, T, m in probes:
        bar.set_postfix_str(f"{v.name} T={T} {m} (saved bytes)")
        probe_rows.append(run_method(m, T, args, device, batches, timer, v, saved_only=True))
        bar.update(1)
    bar.close()
    print(f"# ran {time.perf_counter() - started:.0f} s")

    mem_key = "peak_MB" if gpu else "saved_MB"
    unit = "peak GPU memory MB" if gpu else "saved-for-backward MB"
    print_headline(rows, probe_rows, mem_key, unit, args)
    header["saved_only_rows"] = probe_rows  # the smaller T's saved bytes (one untimed iteration each)
    summary = table_s2(rows, methods, mem_key, args)
    print(f"\n## Table S2 layout ({unit}; time per iteration ms)")
    cols = [("variant", "variant", None), ("T", "T", None)]
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
    long_cols = [("variant", "variant", None), ("T", "T", None), ("method", "method", None),
                 ("iter_ms", "ms/iter", "{:.1f}"),
                 ("epoch_h", "epoch h" if args.batch_size == 128 else "391 it h", "{:.2f}"),
                 ("saved_MB", "saved MB", "{:.1f}"), ("rss_MB", "peak RSS MB", "{:.0f}")]
    if gpu:
        long_cols.insert(4, ("peak_MB", "peak GPU MB", "{:.0f}"))
    C.print_table(long_cols, rows)
    print("\n## The paper (Table S2, ResNet-18, CIFAR-10, batch 128, V100): " +
          "; ".join(f"T={T}: BPTT {v['bptt_mem']} {v['bptt_time']}, SLTT {v['sltt_mem']} {v['sltt_time']}"
                    for T, v in PAPER_V100.items()))
    # the quick run's files are its own: it must not overwrite a committed full table
    tag = args.tag or ("quick" if args.quick else "")
    stem = f"memory_time_{device.type}{('_' + tag) if tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    if not args.no_plot:
        plot(rows, mem_key, unit, os.path.join(args.out, stem + ".png"), header)
    return rows


def probe_Ts(Ts):
    """The smaller T whose saved bytes a quick run adds when it times one T only: T/3 and 2T/3
    (6 -> 2, 4), so that the headline shows SLTT's memory flat in T and BPTT's growing with it."""
    if len(Ts) > 1:
        return []
    T = Ts[0]
    return sorted({max(1, round(T / 3)), max(1, round(2 * T / 3))} - {T})


def estimate_seconds(plan, probes, args):
    """The run's length on 2 cores of an idle Xeon (CPU_SECONDS_PER_SAMPLE_STEP): iterations x T x batch."""
    per_method = args.warmup + 1 + args.iters
    cost = {m: CPU_SECONDS_PER_SAMPLE_STEP["ours" if not m.startswith(("sj", "ref")) else m.split("-")[0]]
            for m in ALL_METHODS}
    total = sum(CPU_SECONDS_PER_ROW + per_method * T * args.batch_size * cost[m] for _, T, m in plan)
    return total + sum(CPU_SECONDS_PER_ROW + T * args.batch_size * cost[m] for _, T, m in probes)


def headline(rows, probe_rows, mem_key):
    """(memory lines, ratio rows): the saved bytes of SLTT and BPTT at every T measured, and per
    (variant, T) SLTT/BPTT and ours against SpikingJelly (time and memory)."""
    saved = {}
    for r in rows + probe_rows:
        if r["method"] in ("bptt", "sltt"):
            saved.setdefault(r["variant"], {}).setdefault(r["method"], {})[r["T"]] = r["saved_MB"]
    lines = []
    for v, by_method in saved.items():
        parts = [f"{m.upper()} " + " ".join(f"{by_method[m][T]:.1f}" for T in sorted(by_method[m]))
                 for m in ("sltt", "bptt") if m in by_method]
        Ts = sorted({T for m in by_method.values() for T in m})
        lines.append(f"  {v}, saved MB at T = {' '.join(map(str, Ts))}: " + "; ".join(parts))
    by = {(r["variant"], r["T"], r["method"]): r for r in rows}
    ratios = []
    for v, T in dict.fromkeys((r["variant"], r["T"]) for r in rows):
        got = {m: by.get((v, T, m)) for m in ("bptt", "sltt", "sj-bptt", "sj-sltt")}
        out = dict(variant=v, T=T)
        for a, b, name in (("sltt", "bptt", "SLTT/BPTT"), ("bptt", "sj-bptt", "BPTT ours/SJ"),
                           ("sltt", "sj-sltt", "SLTT ours/SJ")):
            if got[a] and got[b]:
                out[f"{name} mem"] = got[a][mem_key] / got[b][mem_key] if got[b][mem_key] else None
                out[f"{name} time"] = got[a]["iter_ms"] / got[b]["iter_ms"]
        ratios.append(out)
    return lines, ratios


def print_headline(rows, probe_rows, mem_key, unit, args):
    lines, ratios = headline(rows, probe_rows, mem_key)
    print(f"\n## Headline ({args.model}, batch {args.batch_size}; ratios of {unit} and of time per iteration)")
    print("SLTT's saved state does not grow with T; BPTT's grows in proportion:")
    print("\n".join(lines))
    cols = [("variant", "variant", None), ("T", "T", None)]
    for name in ("SLTT/BPTT", "BPTT ours/SJ", "SLTT ours/SJ"):
        if any(f"{name} time" in r for r in ratios):
            cols += [(f"{name} mem", f"{name} mem", "{:.2f}"), (f"{name} time", f"{name} time", "{:.2f}")]
    C.print_table(cols, ratios)
    if not any("BPTT ours/SJ time" in r or "SLTT ours/SJ time" in r for r in ratios):
        print(f"(no SpikingJelly rows: {SPIKINGJELLY_INSTALL} adds them)")


def table_s2(rows, methods, mem_key, args):
    """One row per (variant, T): memory and time of BPTT and SLTT, and the ratios."""
    by = {(r["variant"], r["T"], r["method"]): r for r in rows}
    summary = []
    for v in args.variant_list:
        for T in args.T:
            b, s = by.get((v.name, T, "bptt")), by.get((v.name, T, "sltt"))
            r = dict(variant=v.name, T=T)
            for m in methods:
                if (v.name, T, m) in by:
                    r[f"{m}_mem"] = by[(v.name, T, m)][mem_key]
                    r[f"{m}_ms"] = by[(v.name, T, m)]["iter_ms"]
            if b and s:
                r["sltt/bptt mem"] = s[mem_key] / b[mem_key] if b[mem_key] else None
                r["sltt/bptt time"] = s["iter_ms"] / b["iter_ms"]
            sj = by.get((v.name, T, "sj-bptt"))
            if sj and s:
                r["sltt/sj-bptt time"] = s["iter_ms"] / sj["iter_ms"]
            k = by.get((v.name, T, "sltt-k"))
            if k and b:
                r["sltt-k/bptt time"] = k["iter_ms"] / b["iter_ms"]
            summary.append(r)
    return summary


def plot(rows, mem_key, unit, path, header):
    """Memory and time per method: bars when there is one T, lines against T when several."""
    plt = C.pyplot()
    if plt is None or not rows:
        return
    Ts = sorted({r["T"] for r in rows})
    series = list(dict.fromkeys((r["variant"], r["method"]) for r in rows))
    multi_variant = len({v for v, _ in series}) > 1

    def label(v, m):
        return f"{m} ({v})" if multi_variant else m

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    if len(Ts) == 1:
        pick = {(r["variant"], r["method"]): r for r in rows}
        names = [label(v, m) for v, m in series]
        colors = [f"C{ALL_METHODS.index(m) % 10}" for _, m in series]
        for ax, key in ((a1, mem_key), (a2, "iter_ms")):
            vals = [pick[s][key] for s in series]
            ax.bar(range(len(series)), vals, color=colors)
            ax.set_xticks(range(len(series)), names, rotation=45, ha="right", fontsize=8)
            for i, val in enumerate(vals):  # upright: side by side, equal labels ran into each other
                ax.annotate(f"{val:.0f}" if val >= 100 else f"{val:.3g}", (i, val), ha="center", va="bottom",
                            fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
            ax.set_ylim(0, max(vals, default=1) * 1.2)
        a1.set_title(f"memory at T={Ts[0]}", fontsize=9)
        a2.set_title(f"time at T={Ts[0]}", fontsize=9)
    else:
        # colour: the method; line and marker: the variant (so four variants stay apart). Each series
        # is shifted a little along T: methods with equal values (SLTT and SLTT-K save the same)
        # would otherwise lie exactly on top of each other.
        variant_order = list(dict.fromkeys(v for v, _ in series))
        styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
        step = min((b - a for a, b in zip(Ts, Ts[1:])), default=1)
        for si, (v, m) in enumerate(series):
            pts = sorted((r["T"], r[mem_key], r["iter_ms"]) for r in rows if (r["variant"], r["method"]) == (v, m))
            style, marker = styles[variant_order.index(v) % len(styles)]
            dodge = (si - (len(series) - 1) / 2) * 0.25 * step / max(len(series), 1)
            for ax, i in ((a1, 1), (a2, 2)):
                ax.plot([p[0] + dodge for p in pts], [p[i] for p in pts], style, marker=marker, label=label(v, m),
                        color=f"C{ALL_METHODS.index(m) % 10}", markersize=4)
        for ax in (a1, a2):
            ax.set_xlabel("T (series shifted slightly apart)")
            ax.set_xticks(Ts)
        a2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    a1.set_ylabel(unit)
    a2.set_ylabel("ms per iteration")
    for ax in (a1, a2):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{rows[0]['model']} training, {header.get('gpu', header['cpu'])}, torch {header['torch']}, "
                 f"{header['dtype']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits right of the axes
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
