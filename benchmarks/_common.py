"""Helpers shared by the benchmark scripts: timing, peers, machine description, output files."""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time

import torch


def parse_size(text: str) -> int:
    """'64K' -> 65536, '1M' -> 1048576, '300' -> 300."""
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def size_label(n: int) -> str:
    for unit, k in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k}{unit}"
    return str(n)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def run_with_threads(run, args):
    """run(args) with torch's thread count set to args.threads (when given), restored after:
    the scripts' main() is also called in-process (tests)."""
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to torch")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall time on the CPU, CUDA events on a GPU; milliseconds."""

    def __init__(self, device: torch.device):
        self.device = device

    def mark(self):
        if self.device.type == "cuda":
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def elapsed_ms(self, a, b) -> float:
        if self.device.type == "cuda":
            b.synchronize()
            return a.elapsed_time(b)
        return (b - a) * 1e3


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device.type,
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:
        info["triton"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        import spikingjelly  # noqa: F401
        from importlib.metadata import version

        info["spikingjelly"] = version("spikingjelly")
    except Exception:
        info["spikingjelly"] = None
    return info


def spikingjelly_lif(**kw):
    """A multi-step SpikingJelly LIFNode with the given dynamics, or None when not installed.

    SpikingJelly picks its own fastest implementation for the device of the input."""
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except Exception:
        return None
    kinds = {"rect": lambda p: surrogate.Rect(alpha=1.0 / p), "sigmoid": lambda p: surrogate.Sigmoid(alpha=p),
             "atan": lambda p: surrogate.ATan(alpha=p)}
    if kw["surrogate"] not in kinds:
        return None
    return neuron.LIFNode(
        tau=kw["tau"],
        decay_input=kw["decay_input"],
        v_threshold=kw["v_threshold"],
        v_reset=kw["v_reset"],
        surrogate_function=kinds[kw["surrogate"]](kw["surrogate_param"]),
        detach_reset=kw["detach_reset"],
        step_mode="m",
    )


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (said once) if not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        print("(matplotlib not installed: no plot)")
        return None
    return plt


def write_outputs(out_dir: str, stem: str, header: dict, rows: list, csv_too: bool = True) -> tuple:
    """<stem>.json (machine and rows) and, with csv_too, <stem>.csv; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, stem + ".json")
    csv_path = os.path.join(out_dir, stem + ".csv")
    with open(json_path, "w") as f:
        json.dump({"machine": header, "rows": rows}, f, indent=1)
    if not csv_too:
        return (json_path,)
    if rows:
        keys = list(rows[0].keys())
        for r in rows[1:]:
            keys += [k for k in r if k not in keys]
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return json_path, csv_path


class _PlainBar:
    """What the scripts use of tqdm, for when tqdm is not installed: one line per step."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""

    def update(self, k=1):
        self.n += k
        print(f"[{self.n}/{self.total}] {self.desc} {self.postfix}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        self.postfix = text

    def write(self, text):
        print(text, file=sys.stderr, flush=True)

    def close(self):
        pass


def progress_bar(total: int, desc: str):
    """A tqdm progress bar on stderr (or plain lines without tqdm): update(), set_postfix_str(), write(), close()."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=True)


def print_table(columns: list, rows: list) -> None:
    """columns: [(key, title, format)]; prints an aligned table."""
    cells = [[t for _, t, _ in columns]]
    for r in rows:
        cells.append([("" if r.get(k) is None else (fmt.format(r[k]) if fmt else str(r[k]))) for k, _, fmt in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for j, line in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
