"""What a build of the compiled extension is made of: the sources, their hash, the CUDA decision
and the compiler flags. One copy of these facts serves both builds: setup.py (`pip install .`)
and the just-in-time build of sltt_kernels/_jit_build.py, so that both compile the same files the
same way and a wheel can be matched to the sources it was built from.

setup.py and benchmarks/device_wheel.py load this file on its own, not as part of the package
(whose import needs the compiled ops): keep it free of package imports, and import torch only
inside the functions that need it (the wheel check runs without torch).

    >>> from sltt_kernels import _build_facts as facts
    >>> [os.path.relpath(p, facts.source_dir()) for p in facts.source_files(facts.source_dir())][:2]
    ['ops.cpp', 'cpu/lif_cpu.cpp']
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys

NVCC_FLAGS = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def env_flag(name: str) -> bool:
    """Whether the environment switch `name` is on (1, true, yes, on; any case)."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def source_dir(package_dir: str = _PACKAGE_DIR):
    """The C++/CUDA sources: sltt_kernels/_csrc in an installed wheel, csrc/ beside the package in
    a checkout; None when neither is there."""
    for d in (os.path.join(package_dir, "_csrc"), os.path.join(os.path.dirname(package_dir), "csrc")):
        if os.path.isfile(os.path.join(d, "ops.cpp")):
            return d
    return None


def source_files(csrc: str, with_cuda: bool = False) -> list:
    """The files setup.py compiles, in its order: ops.cpp, cpu/*.cpp, then (CUDA) cuda/*.cu, cuda/*.cpp."""
    files = [os.path.join(csrc, "ops.cpp")] + sorted(glob.glob(os.path.join(csrc, "cpu", "*.cpp")))
    if with_cuda:
        files += sorted(glob.glob(os.path.join(csrc, "cuda", "*.cu")) + glob.glob(os.path.join(csrc, "cuda", "*.cpp")))
    return files


def sources_hash(csrc: str) -> str:
    """sha256 over every source and header under csrc (relative path and content), hex."""
    h = hashlib.sha256()
    files = []
    for pattern in ("*.h", "*.cpp", "*.cu", "*.cuh"):
        files += glob.glob(os.path.join(csrc, "**", pattern), recursive=True)
    for path in sorted(files, key=lambda p: os.path.relpath(p, csrc).replace(os.sep, "/")):
        h.update(os.path.relpath(path, csrc).replace(os.sep, "/").encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()


def cuda_build_decision(csrc: str, no_cuda: bool = False):
    """(with_cuda, why_not): whether the CUDA ops can be built here, and if not the actual reason."""
    import torch
    from torch.utils import cpp_extension

    if no_cuda:
        return False, "SLTT_KERNELS_NO_CUDA is set"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is not a CUDA build"
    home = cpp_extension.CUDA_HOME
    if home is None:
        return False, "nvcc was not found (put it on PATH or set CUDA_HOME)"
    if not os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
        return False, f"CUDA_HOME={home} has no include/cuda_runtime.h (point CUDA_HOME at the CUDA toolkit)"
    if not any(os.path.isfile(os.path.join(home, "bin", n)) for n in ("nvcc", "nvcc.exe")):
        return False, (f"CUDA_HOME={home} has no bin/nvcc (a CUDA runtime without the compiler? point CUDA_HOME "
                       "at the CUDA toolkit)")
    if not source_files(csrc, True)[len(source_files(csrc)):]:
        return False, "there are no CUDA sources"
    return True, None


def compile_flags():
    """(cxx flags, link flags) of setup.py."""
    cxx = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
    if not sys.platform.startswith("win"):
        # GCC notes that passing 32-byte vectors (csrc/cpu/lif_cpu_lanes.h) changed ABI in GCC 4.6;
        # that concerns calls between object files, and those functions are all inlined.
        cxx.append("-Wno-psabi")
    link = []
    if sys.platform.startswith("linux"):
        # at::parallel_for runs on OpenMP in torch's Linux builds; without -fopenmp it is serial.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    return cxx, link
