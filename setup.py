"""Build script for sltt_kernels: the compiled extension sltt_kernels._C.

The CPU ops are always built. The CUDA ops are added when the installed torch is a CUDA
build and nvcc is found (CUDA_HOME, or nvcc on PATH); TORCH_CUDA_ARCH_LIST picks the GPUs.
The actual reason when the CUDA ops are left out is recorded in _build_info.json (why_not_cuda),
with the sources' hash and the Python and torch versions (the device suite matches wheels on it).
Environment switches:
  SLTT_KERNELS_NO_CUDA=1     build the CPU ops only
  SLTT_KERNELS_FORCE_CUDA=1  fail instead of silently skipping the CUDA ops
"""

import importlib.util
import json
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"


def _build_facts():
    """sltt_kernels/_build_facts.py on its own (not the package, whose import needs the built ops):
    the one place that lists the sources, hashes them and decides on the CUDA ops, for here and
    the just-in-time build."""
    spec = importlib.util.spec_from_file_location("_sltt_kernels_build_facts_for_setup",
                                                  os.path.join(ROOT, "sltt_kernels", "_build_facts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extension():
    from torch.utils import cpp_extension

    facts = _build_facts()
    sources = [os.path.relpath(p, ROOT) for p in facts.source_files(os.path.join(ROOT, CSRC))]
    cuda_sources = [os.path.relpath(p, ROOT) for p in facts.source_files(os.path.join(ROOT, CSRC), True)[len(sources):]]
    with_cuda, why_not = facts.cuda_build_decision(os.path.join(ROOT, CSRC), facts.env_flag("SLTT_KERNELS_NO_CUDA"))
    if not with_cuda:
        if facts.env_flag("SLTT_KERNELS_FORCE_CUDA"):
            raise RuntimeError(f"SLTT_KERNELS_FORCE_CUDA is set but the CUDA ops cannot be built: {why_not}")
        print(f"sltt_kernels: building the CPU ops only ({why_not})", file=sys.stderr)
    cxx, link = facts.compile_flags()
    meta = dict(why_not_cuda=why_not, sources_sha256=facts.sources_hash(os.path.join(ROOT, CSRC)))
    if with_cuda:
        return cpp_extension.CUDAExtension(
            "sltt_kernels._C",
            sources + cuda_sources,
            include_dirs=[os.path.join(ROOT, CSRC)],
            extra_compile_args={"cxx": cxx, "nvcc": list(facts.NVCC_FLAGS)},
            extra_link_args=link,
        ), True, meta
    return cpp_extension.CppExtension(
        "sltt_kernels._C",
        sources,
        include_dirs=[os.path.join(ROOT, CSRC)],
        extra_compile_args={"cxx": cxx},
        extra_link_args=link,
    ), False, meta


def _build_ext_class(with_cuda, meta):
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
                "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                **meta,
            }
            target = os.path.join(os.path.dirname(self.get_ext_fullpath("sltt_kernels._C")), "_build_info.json")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                json.dump(info, f, indent=1)

    return BuildExtWithInfo.with_options(use_ninja=True)


ext, with_cuda, meta = _extension()
setup(
    # csrc/ travels in the wheel as sltt_kernels/_csrc (and in the sdist, MANIFEST.in): the
    # just-in-time build of sltt_kernels/_jit_build.py compiles it when the prebuilt _C does not fit torch.
    packages=find_packages(include=["sltt_kernels", "sltt_kernels.*"]) + ["sltt_kernels._csrc"],
    package_dir={"sltt_kernels._csrc": CSRC},
    package_data={
        "sltt_kernels": ["_build_info.json"],
        "sltt_kernels._csrc": ["*.h", "*.cpp", "neurons/*.h", "cpu/*.h", "cpu/*.cpp", "cuda/*.h", "cuda/*.cpp",
                               "cuda/*.cu"],
    },
    ext_modules=[ext],
    cmdclass={"build_ext": _build_ext_class(with_cuda, meta)},
    zip_safe=False,
)
