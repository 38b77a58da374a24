"""Build script for sltt_kernels: the compiled extension sltt_kernels._C.

The CPU ops are always built. The CUDA ops are added when the installed torch is a CUDA
build and nvcc is found (CUDA_HOME, or nvcc on PATH); TORCH_CUDA_ARCH_LIST picks the GPUs.
Environment switches:
  SLTT_KERNELS_NO_CUDA=1     build the CPU ops only
  SLTT_KERNELS_FORCE_CUDA=1  fail instead of silently skipping the CUDA ops
"""

import glob
import json
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def _extension():
    import torch
    from torch.utils import cpp_extension

    csrc = os.path.join("csrc")
    sources = [os.path.join(csrc, "ops.cpp")] + sorted(glob.glob(os.path.join(csrc, "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join(csrc, "cuda", "*.cu")) + glob.glob(os.path.join(csrc, "cuda", "*.cpp")))

    with_cuda = False
    why_not = None
    if _flag("SLTT_KERNELS_NO_CUDA"):
        why_not = "SLTT_KERNELS_NO_CUDA is set"
    elif torch.version.cuda is None:
        why_not = f"torch {torch.__version__} is not a CUDA build"
    elif cpp_extension.CUDA_HOME is None:
        why_not = "nvcc was not found (set CUDA_HOME)"
    elif not os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "include", "cuda_runtime.h")):
        why_not = f"CUDA_HOME={cpp_extension.CUDA_HOME} has no include/cuda_runtime.h (point CUDA_HOME at the toolkit)"
    elif not cuda_sources:
        why_not = "there are no CUDA sources"
    else:
        with_cuda = True
    if not with_cuda:
        if _flag("SLTT_KERNELS_FORCE_CUDA"):
            raise RuntimeError(f"SLTT_KERNELS_FORCE_CUDA is set but the CUDA ops cannot be built: {why_not}")
        print(f"sltt_kernels: building the CPU ops only ({why_not})", file=sys.stderr)

    cxx = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
    link = []
    if sys.platform.startswith("linux"):
        # at::parallel_for runs on OpenMP in torch's Linux builds; without -fopenmp it is serial.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    define_macros = []
    if with_cuda:
        define_macros.append(("SLTT_WITH_CUDA", "1"))
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        return cpp_extension.CUDAExtension(
            "sltt_kernels._C",
            sources + cuda_sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
        ), True
    return cpp_extension.CppExtension(
        "sltt_kernels._C",
        sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=link,
    ), False


def _build_ext_class(with_cuda):
    import torch
    from torch.utils.cpp_extension import BuildExtension

    class BuildExtWithInfo(BuildExtension):
        """Builds the extension and records which torch it was built against.

        sltt_kernels/_ext.py reads _build_info.json before loading _C, so that an extension
        built for another torch is reported and skipped instead of failing on symbols.
        """

        def run(self):
            super().run()
            info = {
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "with_cuda": with_cuda,
                "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"),
            }
            target = os.path.join(os.path.dirname(self.get_ext_fullpath("sltt_kernels._C")), "_build_info.json")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                json.dump(info, f, indent=1)

    return BuildExtWithInfo.with_options(use_ninja=True)


ext, with_cuda = _extension()
setup(
    packages=find_packages(include=["sltt_kernels", "sltt_kernels.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": _build_ext_class(with_cuda)},
    zip_safe=False,
)
