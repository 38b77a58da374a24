"""Helpers shared by the benchmark scripts: timing, peers, machine description, output files."""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import statistics
import sys
import time

import torch


def parse_size(text: str) -> int:
    """'64K' -> 65536, '1M' -> 1048576, '300' -> 300: a whole number, optionally K, M or G
    (binary). Anything else ('1.5M', 'inf', '-1K') raises ValueError."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", str(text).upper())
    if m is None:
        raise ValueError(f"not a size like 64K, 1M or 300: {text!r}")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


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


def check_output_args(p, args) -> None:
    """--out and --tag, checked before any work (argparse errors naming them): --out is a folder
    or can be made one, and is writable; --tag is a plain suffix for a file name."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]*", args.tag) or args.tag in (".", ".."):
        p.error(f"--tag {args.tag!r}: use letters, digits, '_', '-' or '.' (it becomes part of a file name)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"--out {args.out} is a file, not a folder")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"--out {args.out}: cannot create the folder ({e.strerror})")
    if not os.access(args.out, os.W_OK):
        p.error(f"--out {args.out}: the folder is not writable")


def check_unique(p, flag: str, values) -> None:
    """An argparse error when a list flag repeats a value (it would run, and print, twice)."""
    seen = [v for i, v in enumerate(values or []) if v in (values or [])[:i]]
    if seen:
        p.error(f"{flag}: each value once, but {', '.join(map(str, dict.fromkeys(seen)))} repeated")


def check_device_arg(p, args) -> None:
    """--device cuda without a GPU: an argparse error before any work."""
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch")


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


def have_spikingjelly() -> bool:
    try:
        import spikingjelly.activation_based.neuron  # noqa: F401
    except Exception:
        return False
    return True


def spikingjelly_lif(**kw):
    """A multi-step SpikingJelly LIFNode with the given dynamics, or None when not installed.

    SpikingJelly picks its own fastest implementation for the device of the input."""
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except Exception:
        return None
    # PiecewiseQuadratic(alpha) is max(0, alpha - alpha^2 |x|): our triangle with the same alpha
    kinds = {"rect": lambda p: surrogate.Rect(alpha=1.0 / p), "sigmoid": lambda p: surrogate.Sigmoid(alpha=p),
             "atan": lambda p: surrogate.ATan(alpha=p), "triangle": lambda p: surrogate.PiecewiseQuadratic(alpha=p)}
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
    if not csv_too or not rows:
        return (json_path,)
    keys = list(rows[0].keys())
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return json_path, csv_path


class _PlainBar:
    """What the scripts use of tqdm, as plain lines: for output to a file or a pipe (where tqdm's
    in-place redraws pile up on one line), or when tqdm is not installed. One line each time the
    stage (the postfix) changes, and one at the end, with the elapsed time."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""
        self._printed, self._start = None, time.perf_counter()

    def update(self, k=1):
        self.n += k
        if self.postfix != self._printed or self.n >= self.total:
            self._printed = self.postfix
            print(f"[{self.n}/{self.total} {time.perf_counter() - self._start:.0f}s] {self.desc} {self.postfix}",
                  file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        self.postfix = text

    def write(self, text):
        print(text, file=sys.stderr, flush=True)

    def close(self):
        pass


def progress_bar(total: int, desc: str):
    """A tqdm progress bar on stderr when it is a terminal, else (a file, a pipe, or no tqdm)
    plain lines: update(), set_postfix_str(), write(), close()."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    if not sys.stderr.isatty():
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
