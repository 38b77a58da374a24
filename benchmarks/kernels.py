"""Kernel benchmark: forward, backward and forward+backward time of the fused LIF ops.

Every case runs each backend available on the device, the pure-PyTorch reference and, when it is
installed, SpikingJelly's multi-step LIFNode, in the same process, and prints the speedups.

    python benchmarks/kernels.py                      # CPU defaults: T 2 4 6 16, N 64K 1M 8M, fp32
    python benchmarks/kernels.py --device cuda        # GPU defaults: T 4 6 16, N 1M 16M 64M, fp32 bf16
    python benchmarks/kernels.py --T 6 --N 1M --grad bptt sltt --repeats 10

The neuron is the SLTT paper's (soft reset, no input decay, tau 2, rect surrogate of width 1)
unless --reset/--surrogate say otherwise. Achieved bandwidth counts the bytes the saved-state
contract implies for the fused kernels: forward reads x and writes spikes and the 1-bit mask,
backward reads the spike gradient and the mask and writes the input gradient. On a GPU it is
also given as a fraction of a device-to-device copy measured in the same run.
Writes kernels_<device>.json/.csv (and a .png plot) under --out.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import sltt_kernels  # noqa: E402
from sltt_kernels._config import make_config  # noqa: E402
from sltt_kernels.memory import SavedTensorMeter  # noqa: E402


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


def make_runner(backend, kw):
    """A function x -> spikes for one backend, or None when that backend cannot run here."""
    if backend == "spikingjelly":
        cfg = make_config(**kw)
        if kw["grad"] != "bptt":
            return None  # its multi-step LIFNode is BPTT only
        node = C.spikingjelly_lif(
            tau=cfg.tau, decay_input=cfg.decay_input, v_threshold=cfg.v_threshold, v_reset=cfg.v_reset,
            surrogate=cfg.surrogate, surrogate_param=cfg.surrogate_param, detach_reset=cfg.detach_reset,
        )
        if node is None:
            return None
        from spikingjelly.activation_based import functional

        def run(x):
            functional.reset_net(node)
            return node(x)

        return run

    def run(x):
        return sltt_kernels.lif_multistep(x, backend=backend, **kw)[0]

    return run


def fused_bytes(T, N, dtype):
    e = torch.empty((), dtype=dtype).element_size()
    fwd = T * N * (2 * e + 1 / 8)
    bwd = T * N * (2 * e + 1 / 8)
    return fwd, bwd


def copy_bandwidth(device, nbytes, timer, repeats):
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    times = []
    for i in range(repeats + 1):
        a = timer.mark()
        dst.copy_(src)
        b = timer.mark()
        if i:
            times.append(timer.elapsed_ms(a, b))
    del src, dst
    return 2 * nbytes / (C.median(times) * 1e-3) / 1e9


def bench_case(runner, x, gout, timer, warmup, repeats):
    fwd, bwd, tot = [], [], []
    for i in range(warmup + repeats):
        C.sync(x.device)
        a = timer.mark()
        s = runner(x)
        b = timer.mark()
        (gx,) = torch.autograd.grad(s, x, gout)
        c = timer.mark()
        C.sync(x.device)
        if i >= warmup:
            fwd.append(timer.elapsed_ms(a, b))
            bwd.append(timer.elapsed_ms(b, c))
            tot.append(timer.elapsed_ms(a, c))
        del s, gx
    return C.median(fwd), C.median(bwd), C.median(tot)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--T", nargs="+", type=int, help="time steps (CPU: 2 4 6 16; GPU: 4 6 16)")
    p.add_argument("--N", nargs="+", help="neurons per step, e.g. 64K 1M (CPU: 64K 1M 8M; GPU: 1M 16M 64M)")
    p.add_argument("--dtype", nargs="+", choices=list(C.DTYPES), help="CPU: fp32; GPU: fp32 bf16")
    p.add_argument("--grad", nargs="+", default=["bptt"], choices=["bptt", "sltt"])
    p.add_argument("--backends", nargs="+", help="default: the device's kernels, reference, spikingjelly")
    p.add_argument("--reset", default="soft", choices=["soft", "hard"], help="hard means v_reset=0 with detach_reset")
    p.add_argument("--surrogate", default="rect", choices=["rect", "sigmoid", "atan", "triangle"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)

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
        backends = kernels + ["reference", "spikingjelly"]
    timer = C.Timer(device)
    header = C.machine_info(device)
    header.update(neuron=neuron_kwargs(args, "bptt"), warmup=args.warmup, repeats=args.repeats, backends=backends)
    if gpu:
        header["copy_GBps"] = copy_bandwidth(device, 1 << 30, timer, 5)
    print(f"# sltt_kernels kernel benchmark on {header.get('gpu', header['cpu'])} ({device.type}), "
          f"torch {header['torch']}, triton {header['triton']}, spikingjelly {header['spikingjelly']}, "
          f"{header['threads']} threads")
    print(f"# neuron: {args.reset} reset, rect width 1" if args.surrogate == "rect" else f"# neuron: {args.reset} reset, {args.surrogate}")
    if gpu:
        print(f"# device-to-device copy: {header['copy_GBps']:.0f} GB/s")
    for b, why in avail.items():
        if b in backends and why is not None:
            print(f"# backend {b} skipped: {why}")

    cases = [(T, N, dt, g) for dt in dtypes for g in args.grad for T in Ts for N in Ns]
    rows = []
    for i, (T, N, dt, g) in enumerate(cases, 1):
        C.progress(i, len(cases), f"T={T} N={C.size_label(N)} {dt} {g}")
        dtype = C.DTYPES[dt]
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = (torch.randn(T, N, generator=gen) * 1.5 + 0.9).to(device=device, dtype=dtype).requires_grad_(True)
        gout = torch.randn(T, N, generator=gen).to(device=device, dtype=dtype)
        kw = neuron_kwargs(args, g)
        case_rows = []
        for b in backends:
            if b not in ("reference", "spikingjelly") and avail.get(b, "unknown") is not None:
                continue
            runner = make_runner(b, kw)
            if runner is None:
                continue
            try:
                with SavedTensorMeter() as meter:
                    runner(x)
                nbytes = meter.total
                f, bw, tot = bench_case(runner, x, gout, timer, args.warmup, args.repeats)
            except (RuntimeError, MemoryError) as e:  # e.g. out of memory for the reference at 64M
                print(f"#   {b}: failed ({str(e).splitlines()[0][:120]})", file=sys.stderr)
                if gpu:
                    torch.cuda.empty_cache()
                continue
            row = dict(T=T, N=N, N_label=C.size_label(N), dtype=dt, grad=g, backend=b, fwd_ms=f, bwd_ms=bw,
                       total_ms=tot, saved_MB=nbytes / 2**20)
            if b not in ("reference", "spikingjelly"):
                fb, bb = fused_bytes(T, N, dtype)
                row["GBps"] = (fb + bb) / (tot * 1e-3) / 1e9
                if gpu:
                    row["copy_fraction"] = row["GBps"] / header["copy_GBps"]
            case_rows.append(row)
        ref = next((r for r in case_rows if r["backend"] == "reference"), None)
        sj = next((r for r in case_rows if r["backend"] == "spikingjelly"), None)
        for r in case_rows:
            r["speedup_vs_reference"] = ref["total_ms"] / r["total_ms"] if ref else None
            r["speedup_vs_spikingjelly"] = sj["total_ms"] / r["total_ms"] if sj else None
            r["saved_vs_spikingjelly"] = (sj["saved_MB"] / r["saved_MB"]) if (sj and r["saved_MB"]) else None
        rows += case_rows
        del x, gout
        if gpu:
            torch.cuda.empty_cache()

    columns = [("T", "T", None), ("N_label", "N", None), ("dtype", "dtype", None), ("grad", "grad", None),
               ("backend", "backend", None), ("fwd_ms", "fwd ms", "{:.2f}"), ("bwd_ms", "bwd ms", "{:.2f}"),
               ("total_ms", "fwd+bwd ms", "{:.2f}"), ("speedup_vs_reference", "x ref", "{:.1f}"),
               ("speedup_vs_spikingjelly", "x SJ", "{:.2f}"), ("GBps", "GB/s", "{:.0f}")]
    if gpu:
        columns.append(("copy_fraction", "of copy", "{:.0%}"))
    columns += [("saved_MB", "saved MB", "{:.1f}"), ("saved_vs_spikingjelly", "SJ saved /", "{:.0f}x")]
    print()
    C.print_table(columns, rows)
    stem = f"kernels_{device.type}{('_' + args.tag) if args.tag else ''}"
    jp, cp = C.write_outputs(args.out, stem, header, rows)
    print(f"\nwrote {jp} and {cp}")
    if not args.no_plot:
        plot(rows, os.path.join(args.out, stem + ".png"), header)
    return rows


def plot(rows, path, header):
    plt = C.pyplot()
    if plt is None:
        return
    groups = sorted({(r["dtype"], r["grad"]) for r in rows})
    Ts = sorted({r["T"] for r in rows})
    fig, axes = plt.subplots(len(groups), len(Ts), figsize=(3.2 * len(Ts), 2.8 * len(groups)), squeeze=False)
    for gi, (dt, g) in enumerate(groups):
        for ti, T in enumerate(Ts):
            ax = axes[gi][ti]
            for b in sorted({r["backend"] for r in rows}):
                pts = sorted((r["N"], r["total_ms"]) for r in rows if r["backend"] == b and r["T"] == T
                             and r["dtype"] == dt and r["grad"] == g)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=b)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"T={T} {dt} {g}", fontsize=9)
            ax.set_xlabel("neurons N")
            if ti == 0:
                ax.set_ylabel("fwd+bwd ms")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"LIF forward+backward, {header.get('gpu', header['cpu'])}, torch {header['torch']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
