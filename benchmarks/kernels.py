"""Kernel benchmark: the fused LIF ops against what a user would pick instead, in one run.

Every case runs, in the same process: each backend of ours available on the device, this
package's pure-PyTorch reference, SpikingJelly's multi-step LIFNode (when installed) and the
LIF loop written in plain PyTorch and wrapped in torch.compile (benchmarks/plain_lif.py), and
prints the ratios. Two modes: train (forward + backward, the input requires grad) and infer
(forward only, under torch.no_grad()).

    python benchmarks/kernels.py                      # CPU defaults: T 2 4 6 16, N 64K 1M 8M, fp32
    python benchmarks/kernels.py --device cuda        # GPU defaults: T 4 6 16, N 1M 16M 64M, fp32 bf16
    python benchmarks/kernels.py --T 6 --N 1M --repeats 11          # the issue's CPU case
    python benchmarks/kernels.py --T 6 --N 1M --inference           # forward only

The neuron is the SLTT paper's (soft reset, no input decay, tau 2, rect surrogate of width 1)
unless --reset/--surrogate say otherwise. The backends of a case take turns, one call each per
repeat, in orders where each follows every other equally often (medians over the repeats), so
that neither a drifting load on a shared machine nor the cache state a previous call leaves
biases a ratio. The compiled loop's first call in each case (a forward and, in train mode, a
backward) compiles: its time is the compile_s column, not part of the medians. Achieved
bandwidth counts the bytes the fused kernels must move: forward reads x, writes the spikes and
what it saves for the backward (the bytes measured, e.g. the 1-bit mask of the rect
surrogate), backward reads the spike gradient and the saved state and writes the input
gradient (inference: reads x, writes spikes). It is also given as a fraction of the bandwidth
of a copy of x (the ceiling of a streaming kernel on data of that size, device-to-device on a
GPU, memory-to-memory on a CPU: in cache for small cases, as the kernels' data is), timed as
one more member of the case's turns; the header also gives a 1 GiB (GPU) or 256 MiB (CPU) copy.
Writes kernels_<device>.json/.csv (and a .png plot) under --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import plain_lif  # noqa: E402

import sltt_kernels  # noqa: E402
from sltt_kernels.memory import SavedTensorMeter  # noqa: E402

OURS = ("cpu", "cuda", "triton")  # our fused kernels; the rest are peers
PEERS = ("reference", "spikingjelly", "compiled")  # "compiled": the plain-PyTorch loop under torch.compile
MODES = ("train", "infer")


def label(backend: str) -> str:
    """A backend's name in tables and plots, ours marked."""
    return f"{backend} (ours)" if backend in OURS else backend


def gbps(nbytes, ms) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def neuron_kwargs(args, grad):
    return dict(
        tau=2.0,
        v_threshold=1.0,
        v_reset=None if args.reset == "soft" else 0.0,
        decay_input=False,
        detach_reset=args.reset == "hard",
        surrogate=args.surrogate,
        grad=grad,
    )


def make_runner(backend, kw, mode="train", compile_backend="inductor"):
    """A function x -> spikes for one backend, or None when that backend cannot run here."""
    param = sltt_kernels.surrogate.resolve(kw["surrogate"]).param
    if backend == "spikingjelly":
        if kw["grad"] != "bptt" and mode == "train":
            return None  # its multi-step LIFNode is BPTT only
        node = C.spikingjelly_lif(
            tau=kw["tau"], decay_input=kw["decay_input"], v_threshold=kw["v_threshold"], v_reset=kw["v_reset"],
            surrogate=kw["surrogate"], surrogate_param=param, detach_reset=kw["detach_reset"],
        )
        if node is None:
            return None
        from spikingjelly.activation_based import functional

        def run(x):
            functional.reset_net(node)
            return node(x)

        return run
    if backend == "compiled":
        torch._dynamo.reset()  # a fresh cache per case: no recompile limit, no dynamic-shape graphs
        loop = plain_lif.compiled_lif_loop(compile_backend, surrogate_param=param, **kw)
        return lambda x: loop(x)[0]

    def run(x):
        return sltt_kernels.lif_multistep(x, backend=backend, **kw)[0]

    return run


def spikingjelly_missing(args):
    """Which cases of this run SpikingJelly has no row for, and why (None if it runs in all)."""
    if C.spikingjelly_lif(**dict(neuron_kwargs(args, "bptt"), surrogate_param=1.0)) is None:
        return "in every case: not installed" if not C.have_spikingjelly() else \
            f"in every case: no equivalent of the {args.surrogate} surrogate"
    if "sltt" in args.grad and "train" in args.mode:
        return "for grad sltt in train mode: its multi-step LIFNode trains by BPTT only"
    return None


def fused_bytes(T, N, dtype, mode="train", saved_bytes=None):
    """Bytes a fused kernel must move: (forward, backward). saved_bytes: what the forward saves
    for the backward (written, then read); default the rect surrogate's 1 bit per element-step."""
    e = torch.empty((), dtype=dtype).element_size()
    if mode == "infer":
        return T * N * 2 * e, 0.0
    saved = T * N / 8 if saved_bytes is None else saved_bytes
    return T * N * 2 * e + saved, T * N * 2 * e + saved


def copy_bandwidth(device, nbytes, timer, repeats):
    """GB/s of a device-to-device copy of nbytes (bytes read + written): the ceiling of a streaming kernel."""
    src = torch.empty(max(nbytes // 4, 1), dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    times = []
    for i in range(repeats + 1):
        a = timer.mark()
        dst.copy_(src)
        b = timer.mark()
        if i:
            times.append(timer.elapsed_ms(a, b))
    moved = 2 * src.numel() * src.element_size()
    del src, dst
    return gbps(moved, C.median(times))


def time_once(runner, x, gout, timer):
    """One timed call: (fwd, bwd, fwd+bwd) ms; with gout None, forward only under no_grad (bwd None)."""
    C.sync(x.device)
    if gout is None:
        with torch.no_grad():
            a = timer.mark()
            s = runner(x)
            b = timer.mark()
        C.sync(x.device)
        f = timer.elapsed_ms(a, b)
        return f, None, f
    a = timer.mark()
    s = runner(x)
    b = timer.mark()
    torch.autograd.grad(s, x, gout)
    c = timer.mark()
    C.sync(x.device)
    return timer.elapsed_ms(a, b), timer.elapsed_ms(b, c), timer.elapsed_ms(a, c)


def balanced_orders(n):
    """Orders of n backends in which each one follows every other equally often (a Williams
    design: n orders for even n, 2n for odd n)."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    orders = [[(b + r) % n for b in first] for r in range(n)]
    return orders + ([o[::-1] for o in orders] if n % 2 else [])


COPY = "copy of x"  # the ceiling, a member of the turns: bench_interleaved times it forward only


def bench_interleaved(runners, x, gout, timer, warmup, repeats, on_fail=None, on_turn=None):
    """Medians {backend: (fwd, bwd, fwd+bwd)} ms. The backends take turns, one call each per
    repeat, so that a machine whose load drifts (a shared CPU) shifts them all alike and the
    ratios stay fair. The order changes from one repeat to the next so that each backend follows
    every other equally often: a call that runs right after a peer which allocated and wrote
    much memory finds colder caches (measured on CPU: up to 20% slower), and a fixed order, or
    one that only rotates, would charge that to the same backend every time."""
    times = {b: [] for b in runners}
    live = dict(runners)
    names = list(runners)
    orders = balanced_orders(len(names)) if names else [[]]
    for i in range(warmup + repeats):
        for b in [names[j] for j in orders[i % len(orders)]]:
            if b not in live:
                continue
            runner = live[b]
            try:
                t = time_once(runner, x, None if b == COPY else gout, timer)
            except (RuntimeError, MemoryError) as e:  # e.g. out of memory for the reference at 64M
                del live[b]
                times.pop(b)
                if on_fail:
                    on_fail(b, e)
                continue
            if i >= warmup:
                times[b].append(t)
        if on_turn:
            on_turn()

    def med(ts, k):
        return None if ts[0][k] is None else C.median([t[k] for t in ts])

    return {b: (med(ts, 0), med(ts, 1), med(ts, 2)) for b, ts in times.items() if ts}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--T", nargs="+", type=int, help="time steps (CPU: 2 4 6 16; GPU: 4 6 16)")
    p.add_argument("--N", nargs="+", help="neurons per step, e.g. 64K 1M (CPU: 64K 1M 8M; GPU: 1M 16M 64M)")
    p.add_argument("--dtype", nargs="+", choices=list(C.DTYPES), help="CPU: fp32; GPU: fp32 bf16")
    p.add_argument("--grad", nargs="+", default=["bptt"], choices=["bptt", "sltt"])
    p.add_argument("--mode", nargs="+", choices=MODES,
                   help="train: forward+backward; infer: forward only under no_grad (default: both)")
    p.add_argument("--inference", action="store_true", help="same as --mode infer")
    p.add_argument("--backends", nargs="+", choices=OURS + PEERS, metavar="BACKEND",
                   help=f"of {', '.join(OURS + PEERS)}; default: the device's kernels, then the peers")
    p.add_argument("--reset", default="soft", choices=["soft", "hard"], help="hard means v_reset=0 with detach_reset")
    p.add_argument("--surrogate", default="rect", choices=["rect", "sigmoid", "atan", "triangle"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the compiled peer (inductor; 'eager' only traces, for tests)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-csv", action="store_true", help="write the JSON file only")
    args = p.parse_args(argv)
    if args.inference:
        if args.mode not in (None, ["infer"]):
            p.error(f"--inference means --mode infer, but --mode {' '.join(args.mode)} was given too")
        args.mode = ["infer"]
    args.mode = args.mode or list(MODES)
    for flag, values in (("--T", args.T), ("--dtype", args.dtype), ("--grad", args.grad),
                         ("--mode", args.mode), ("--backends", args.backends)):  # --N: on its sizes, below
        C.check_unique(p, flag, values)
    if args.T and min(args.T) < 1:
        p.error(f"--T: time steps must be >= 1, got {args.T}")
    if args.N:
        try:
            sizes = [C.parse_size(n) for n in args.N]
        except ValueError:
            p.error(f"--N: whole numbers like 64K, 1M or 300, got {' '.join(args.N)}")
        if min(sizes) < 1:
            p.error(f"--N: sizes must be >= 1, got {' '.join(args.N)}")
        C.check_unique(p, "--N", sizes)
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    C.check_device_arg(p, args)
    if "compiled" in (args.backends or PEERS):
        known = set(torch._dynamo.list_backends(exclude_tags=())) | {"eager", "inductor"}
        if args.compile_backend not in known:
            p.error(f"--compile-backend {args.compile_backend!r}: not a torch.compile backend here "
                    f"(known: {', '.join(sorted(known))})")
    C.check_output_args(p, args)
    return args


def main(argv=None):
    return C.run_with_threads(run, parse_args(argv))


def run(args):
    device = C.pick_device(args.device)
    gpu = device.type == "cuda"
    Ts = args.T or ([4, 6, 16] if gpu else [2, 4, 6, 16])
    Ns = [C.parse_size(n) for n in (args.N or (["1M", "16M", "64M"] if gpu else ["64K", "1M", "8M"]))]
    dtypes = args.dtype or (["fp32", "bf16"] if gpu else ["fp32"])
    avail = sltt_kernels.available_backends()
    if args.backends:
        backends = args.backends
    else:
        kernels = [b for b in (["cuda", "triton"] if gpu else ["cpu"]) if avail.get(b, "unknown") is None]
        backends = kernels + list(PEERS)
    unusable = {b: avail[b] for b in backends if b in OURS and avail[b] is not None}
    unusable.update({b: f"x is on {device.type}" for b in backends if b in ("cpu", "cuda") and b != device.type
                     and b not in unusable})
    if unusable and len(unusable) == len(backends):
        raise SystemExit("error: none of --backends can run here: "
                         + "; ".join(f"{b}: {why}" for b, why in unusable.items()))
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(neuron=neuron_kwargs(args, "bptt"), warmup=args.warmup, repeats=args.repeats, backends=backends,
                  modes=args.mode, compile_backend=args.compile_backend)
    # the ceiling of a streaming kernel: 1 GiB on a GPU; on a CPU 256 MiB, well past its caches
    header["copy_GBps"] = copy_bandwidth(device, 1 << 30 if gpu else 1 << 28, timer, 5)
    print(f"# sltt_kernels kernel benchmark on {header.get('gpu', header['cpu'])} ({device.type}), "
          f"torch {header['torch']}, triton {header['triton']}, spikingjelly {header['spikingjelly']}, "
          f"{header['threads']} threads")
    print(f"# neuron: {args.reset} reset, rect width 1" if args.surrogate == "rect" else f"# neuron: {args.reset} reset, {args.surrogate}")
    print(f"# medians of {args.repeats} after {args.warmup} warm-up"
          + (f"; compiled = plain-PyTorch LIF loop in torch.compile(backend={args.compile_backend!r})"
             if "compiled" in backends else ""))
    print(f"# {'device-to-device' if gpu else 'memory-to-memory'} copy of {'1 GiB' if gpu else '256 MiB'}: "
          f"{header['copy_GBps']:.0f} GB/s; 'of copy' compares with a copy of each case's x, timed in its turns")
    for b, why in unusable.items():
        print(f"# backend {b} skipped: {why}")
    sj_missing = spikingjelly_missing(args) if "spikingjelly" in backends else None
    if sj_missing:
        print(f"# spikingjelly skipped {sj_missing}")

    cases = []
    for dt in dtypes:
        for mode in args.mode:
            for g in (args.grad if mode == "train" else ["-"]):
                cases += [(T, N, dt, mode, g) for T in Ts for N in Ns]
    rows = []
    # per case: one step per backend set up, one per turn of the timing
    bar = C.progress_bar(total=len(cases) * (len(backends) + args.warmup + args.repeats), desc="kernels")
    for T, N, dt, mode, g in cases:
        dtype = C.DTYPES[dt]
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = (torch.randn(T, N, generator=gen) * 1.5 + 0.9).to(device=device, dtype=dtype)
        gout = torch.randn(T, N, generator=gen).to(device=device, dtype=dtype) if mode == "train" else None
        if mode == "train":
            x.requires_grad_(True)
        kw = neuron_kwargs(args, "bptt" if g == "-" else g)
        runners, extra = {}, {}

        def failed(b, e):
            bar.write(f"#   {b} T={T} N={C.size_label(N)} {dt} {mode}: failed ({str(e).splitlines()[0][:120]})")
            if gpu:
                torch.cuda.empty_cache()

        for b in backends:
            bar.set_postfix_str(f"T={T} N={C.size_label(N)} {dt} {mode} {g} {b}")
            bar.update(1)
            if b in unusable:
                continue
            runner = make_runner(b, kw, mode, args.compile_backend)
            if runner is None:
                continue
            try:
                compile_s = None
                if b == "compiled":  # the first call compiles (forward, and backward in train): timed on its own
                    t0 = time.perf_counter()
                    with torch.set_grad_enabled(mode == "train"):
                        s = runner(x)
                        if mode == "train":
                            torch.autograd.grad(s, x, gout)
                    del s
                    C.sync(device)
                    compile_s = time.perf_counter() - t0
                nbytes = 0
                if mode == "train":
                    with SavedTensorMeter() as meter:
                        runner(x)
                    nbytes = meter.total
            except (RuntimeError, MemoryError) as e:
                failed(b, e)
                continue
            runners[b] = runner
            extra[b] = dict(saved_MB=nbytes / 2**20 if mode == "train" else None, compile_s=compile_s)
        bar.set_postfix_str(f"T={T} N={C.size_label(N)} {dt} {mode} {g}: timing {len(runners)} in turn")
        copy_dst = torch.empty_like(x, requires_grad=False)
        runners[COPY] = copy_dst.copy_
        medians = bench_interleaved(runners, x, gout, timer, args.warmup, args.repeats, failed,
                                    on_turn=lambda: bar.update(1))
        copy_ms = medians.pop(COPY, (None,))[0]
        copy_GBps = gbps(2 * x.numel() * x.element_size(), copy_ms) if copy_ms else float("nan")
        del copy_dst
        case_rows = []
        for b, (f, bw, tot) in medians.items():
            row = dict(T=T, N=N, N_label=C.size_label(N), dtype=dt, mode=mode, grad=g, backend=b, fwd_ms=f,
                       bwd_ms=bw, total_ms=tot, **extra[b])
            if b not in PEERS:
                saved = row["saved_MB"] * 2**20 if mode == "train" else None
                fb, bb = fused_bytes(T, N, dtype, mode, saved)
                row["GBps"] = gbps(fb + bb, tot)
                row["copy_GBps"] = copy_GBps
                row["copy_fraction"] = row["GBps"] / copy_GBps
            case_rows.append(row)
        del runners
        add_ratios(case_rows)
        rows += case_rows
        del x, gout
        if gpu:
            torch.cuda.empty_cache()
    bar.close()

    columns = [("T", "T", None), ("N_label", "N", None), ("dtype", "dtype", None), ("mode", "mode", None),
               ("grad", "grad", None), ("who", "backend", None), ("fwd_ms", "fwd ms", "{:.2f}"),
               ("bwd_ms", "bwd ms", "{:.2f}"), ("total_ms", "time ms", "{:.2f}"),
               ("speedup_vs_reference", "x ref", "{:.1f}"), ("speedup_vs_spikingjelly", "x SJ", "{:.2f}"),
               ("speedup_vs_compiled", "x compiled", "{:.2f}"), ("GBps", "GB/s", "{:.0f}"),
               ("copy_fraction", "of copy", "{:.0%}")]
    columns += [("saved_MB", "saved MB", "{:.3g}"), ("saved_vs_spikingjelly", "SJ saved /", "{:.0f}x"),
                ("compile_s", "compile s", "{:.1f}")]
    print("\n# time ms: forward+backward (train) or forward (infer); x PEER: the peer's time / this row's, same run")
    C.print_table(columns, [dict(r, who=label(r["backend"])) for r in rows])
    stem = f"kernels_{device.type}{('_' + args.tag) if args.tag else ''}"
    written = C.write_outputs(args.out, stem, header, rows, csv_too=not args.no_csv)
    print(f"\nwrote {' and '.join(written)}")
    if not args.no_plot:
        plot(rows, os.path.join(args.out, stem + ".png"), header)
    return rows


def add_ratios(case_rows):
    """speedup_vs_PEER = the peer's time / the row's time (train: fwd+bwd; infer: fwd), same case."""
    for peer in PEERS:
        p = next((r for r in case_rows if r["backend"] == peer), None)
        for r in case_rows:
            r[f"speedup_vs_{peer}"] = p["total_ms"] / r["total_ms"] if p else None
    sj = next((r for r in case_rows if r["backend"] == "spikingjelly"), None)
    for r in case_rows:
        r["saved_vs_spikingjelly"] = (sj["saved_MB"] / r["saved_MB"]) if (sj and sj["saved_MB"] and r["saved_MB"]) else None


def plot(rows, path, header):
    """One panel per (dtype, mode, grad) and T: time against N (lines), or bars when there is one N."""
    plt = C.pyplot()
    if plt is None or not rows:
        return
    groups = sorted({(r["dtype"], r["mode"], r["grad"]) for r in rows})
    Ts = sorted({r["T"] for r in rows})
    Ns = sorted({r["N"] for r in rows})
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    colors = {b: f"C{i}" for i, b in enumerate(backends)}
    one_T = len(Ts) == 1  # then the groups side by side
    shape = (1, len(groups)) if one_T else (len(groups), len(Ts))
    fig, axes = plt.subplots(*shape, figsize=(max(3.6 * shape[1], 6), 3.2 * shape[0]), squeeze=False)
    for gi, (dt, mode, g) in enumerate(groups):
        for ti, T in enumerate(Ts):
            ax = axes[0][gi] if one_T else axes[gi][ti]
            sel = [r for r in rows if r["T"] == T and (r["dtype"], r["mode"], r["grad"]) == (dt, mode, g)]
            if len(Ns) == 1:
                bs = [b for b in backends if any(r["backend"] == b for r in sel)]
                vals = [next(r["total_ms"] for r in sel if r["backend"] == b) for b in bs]
                ax.bar(range(len(bs)), vals, color=[colors[b] for b in bs])
                ax.set_xticks(range(len(bs)), [label(b) for b in bs], rotation=30, ha="right", fontsize=8)
                for i, v in enumerate(vals):
                    ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)
                # log: the peers can be 10-30x slower, and ours against the compiled loop must stay visible
                ax.set_yscale("log")
                ax.set_ylim(min(vals, default=1) / 2, max(vals, default=1) * 2.5)
                ax.set_title(f"T={T} N={C.size_label(Ns[0])} {dt} {mode}{'' if g == '-' else ' ' + g}", fontsize=9)
            else:
                for b in backends:
                    pts = sorted((r["N"], r["total_ms"]) for r in sel if r["backend"] == b)
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colors[b],
                                label=label(b))
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_xlabel("neurons N")
                ax.set_title(f"T={T} {dt} {mode}{'' if g == '-' else ' ' + g}", fontsize=9)
                if gi == 0 and ti == 0:
                    ax.legend(fontsize=7)
            ax.set_ylabel("fwd ms" if mode == "infer" else "fwd+bwd ms", fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(f"LIF layer, {header.get('gpu', header['cpu'])}, {header['threads']} CPU threads, "
                 f"torch {header['torch']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
