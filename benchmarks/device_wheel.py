"""Does a prebuilt sltt_kernels wheel fit this machine, and installing it into the checkout.

    python benchmarks/device_wheel.py match DIR      # prints the matching wheel, or why none (exit 1)
    python benchmarks/device_wheel.py install WHEEL  # puts its _C*.so and _build_info.json into sltt_kernels/

A wheel fits when its tags name this Python (cp312) and this machine's processor (x86_64), and
the _build_info.json inside it records this torch (version string, CUDA included), this Python,
the CUDA ops built for every architecture in TORCH_CUDA_ARCH_LIST (unless --cpu-ok) and the same
sources hash as the checkout's csrc/: a wheel of older sources is not used.
`install` copies only the compiled files into the checkout, so that the tests and benchmarks run
this checkout's Python code with the prebuilt kernels (as `setup.py build_ext --inplace` would).
Imports neither torch nor the package (whose import would look for the extension): it runs in
well under a second.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import platform
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_facts():
    """sltt_kernels/_build_facts.py on its own (the sources' hash), without the package or torch."""
    spec = importlib.util.spec_from_file_location("_sltt_build_facts_for_wheels",
                                                  os.path.join(ROOT, "sltt_kernels", "_build_facts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wheel_build_info(path: str):
    with zipfile.ZipFile(path) as z:
        try:
            return json.loads(z.read("sltt_kernels/_build_info.json"))
        except KeyError:
            return None


def _archs(text) -> set:
    """'8.0;9.0+PTX' or '8.0 9.0' -> {'8.0', '9.0'}."""
    return {a.replace("+PTX", "").strip() for a in str(text or "").replace(";", " ").split() if a.strip()}


def why_not(path: str, torch_version: str, python: str, sources: str, require_cuda: bool,
            machine: str = platform.machine(), archs: str = None):
    """None when the wheel fits, else the first reason it does not. archs: the CUDA architectures
    the machine needs (default: TORCH_CUDA_ARCH_LIST, which the device suite sets)."""
    name = os.path.basename(path)
    parts = name[:-4].split("-") if name.endswith(".whl") else []
    if len(parts) < 5 or not parts[0].replace("-", "_") == "sltt_kernels":
        return f"{name}: not an sltt_kernels wheel"
    tag = "cp" + python.replace(".", "")
    if parts[-3] != tag:
        return f"{name}: built for {parts[-3]}, this is {tag}"
    if parts[-1] != "any" and not parts[-1].endswith(machine):
        return f"{name}: built for the platform {parts[-1]}, this machine is {machine}"
    info = wheel_build_info(path)
    if info is None:
        return f"{name}: no sltt_kernels/_build_info.json inside"
    if info.get("torch") != torch_version:
        return f"{name}: built for torch {info.get('torch')}, this is torch {torch_version}"
    if info.get("python") not in (None, python):
        return f"{name}: built for Python {info.get('python')}, this is {python}"
    if require_cuda and not info.get("with_cuda"):
        return f"{name}: built without the CUDA ops ({info.get('why_not_cuda')})"
    needed = _archs(os.environ.get("TORCH_CUDA_ARCH_LIST") if archs is None else archs)
    if require_cuda and not needed <= _archs(info.get("cuda_arch_list")):
        return (f"{name}: built for CUDA architectures {info.get('cuda_arch_list')!r}, this machine needs "
                f"{' '.join(sorted(needed))}")
    if info.get("sources_sha256") != sources:
        return f"{name}: built from other sources than this checkout's csrc/"
    return None


def torch_version() -> str:
    """torch.__version__ read from torch/version.py, without importing torch (seconds saved)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return "none"
    scope = {}
    with open(os.path.join(list(spec.submodule_search_locations)[0], "version.py")) as f:
        exec(compile(f.read(), "torch/version.py", "exec"), scope)
    return scope["__version__"]


def find_match(directory: str, require_cuda: bool = True):
    """(wheel path or None, [reasons for the others])."""
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    sources = _build_facts().sources_hash(os.path.join(ROOT, "csrc"))
    reasons = []
    for path in sorted(glob.glob(os.path.join(directory, "sltt_kernels-*.whl"))):
        why = why_not(path, torch_version(), python, sources, require_cuda)
        if why is None:
            return path, reasons
        reasons.append(why)
    if not reasons:
        reasons.append(f"no sltt_kernels wheel in {directory}")
    return None, reasons


def install(path: str, target: str = os.path.join(ROOT, "sltt_kernels")) -> list:
    """Extracts the compiled files of the wheel into the checkout's sltt_kernels/; returns them."""
    done = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            base = os.path.basename(name)
            if os.path.dirname(name) == "sltt_kernels" and (base.startswith("_C") and base.endswith(".so")
                                                            or base == "_build_info.json"):
                with open(os.path.join(target, base), "wb") as f:
                    f.write(z.read(name))
                done.append(os.path.join(target, base))
    return done


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("match")
    m.add_argument("directory")
    m.add_argument("--cpu-ok", action="store_true", help="accept a wheel without the CUDA ops")
    i = sub.add_parser("install")
    i.add_argument("wheel")
    args = p.parse_args(argv)
    if args.cmd == "match":
        path, reasons = find_match(args.directory, require_cuda=not args.cpu_ok)
        for r in reasons:
            print(f"# not used: {r}", file=sys.stderr)
        if path is None:
            return 1
        print(path)
        return 0
    files = install(args.wheel)
    print("installed " + ", ".join(os.path.relpath(f, ROOT) for f in files))
    return 0 if any(f.endswith(".so") for f in files) else 1


if __name__ == "__main__":
    sys.exit(main())
