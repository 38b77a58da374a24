"""The CUDA sources compile here, without a GPU: kernels with nvcc alone (no torch headers,
no warnings) for the architectures we support, and the installed extension was built with them."""

import os
import re
import shutil
import subprocess

import pytest
import torch

from sltt_kernels import _ext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


NVCC = _nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set CUDA_HOME): cannot compile-check the CUDA kernels")
needs_sources = pytest.mark.skipif(not os.path.isdir(CSRC), reason="csrc/ not present (tests run outside a checkout)")


@needs_nvcc
@needs_sources
@pytest.mark.parametrize("arch", ["80", "90"])
def test_cuda_kernels_compile_alone_without_warnings(arch, tmp_path):
    src = os.path.join(CSRC, "cuda", "lif_cuda_kernels.cu")
    cmd = [
        NVCC, "-std=c++17", "-O3", "-c", src, "-o", str(tmp_path / f"k{arch}.o"),
        "-gencode", f"arch=compute_{arch},code=sm_{arch}",
        "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "warning" not in (out.stderr + out.stdout).lower(), out.stderr


def _longest_load_run(ptx: str, kernel: str) -> int:
    """The most global loads in a row (no global store between them) in the PTX of `kernel`."""
    entry = re.search(r"\.entry (\S*" + re.escape(kernel) + r"\S*)\(", ptx)
    assert entry is not None, f"{kernel} not in the PTX"
    body = ptx[entry.end():ptx.index("\n}\n", entry.end())]
    best = run = 0
    for line in body.splitlines():
        if "ld.global" in line:
            run += 1
            best = max(best, run)
        elif "st.global" in line:
            run = 0
    return best


@needs_nvcc
@needs_sources
def test_cuda_kernels_issue_the_loads_of_several_steps_together(tmp_path):
    """The memory-level parallelism the GPU kernels rely on (docs/design.md, section 5): the
    forward loads x for 4 steps, the backward grad_spikes and the mask word for 4 steps, before
    any store. With one step's load between each store, as before, the runs are 4 long at most
    (the entry's loads of k, v0 and the first x)."""
    src = os.path.join(CSRC, "cuda", "lif_cuda_kernels.cu")
    ptx_path = tmp_path / "k.ptx"
    out = subprocess.run([NVCC, "-std=c++17", "-O3", "-ptx", src, "-o", str(ptx_path), "-arch=compute_90"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    ptx = ptx_path.read_text()
    # float32, LIF, soft reset, rect mask (Save::Sg); the backward BPTT
    fwd = "lif_fwd_kernelIffLNS_6NeuronE0ELNS_5ResetE0ELNS_4SaveE1EEE"
    bwd = "lif_bwd_kernelIffLNS_6NeuronE0ELNS_5ResetE0ELb0ELNS_9SurrogateE0ELNS_4SaveE1ELNS_4GradE0EEE"
    assert _longest_load_run(ptx, fwd) >= 6  # k, v0, then x of 4 steps
    assert _longest_load_run(ptx, bwd) >= 8  # grad_spikes and the mask word of 4 steps


@needs_sources
def test_kernel_headers_compile_without_torch(tmp_path):
    """The shared math and the CPU kernel templates need no torch header."""
    gxx = shutil.which("g++") or shutil.which("c++")
    if gxx is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "headers.cpp"
    src.write_text(
        '#include "lif_math.h"\n#include "lif_dispatch.h"\n#include "cpu/lif_cpu_kernels.h"\n'
        "template void sltt::cpu::lif_fwd_blocks<float, float, sltt::Neuron::LIF, sltt::Reset::Soft, sltt::Save::Sg>("
        "const sltt::FwdArgs<float, float>&, int64_t, int64_t, bool);\n"
        # the inference forward runs the models on the vector lanes of cpu/lif_cpu_lanes.h
        "template void sltt::cpu::lif_fwd_blocks<float, float, sltt::Neuron::Leaky, sltt::Reset::Hard, "
        "sltt::Save::None>(const sltt::FwdArgs<float, float>&, int64_t, int64_t, bool);\n"
        "template void sltt::cpu::lif_fwd_blocks<double, double, sltt::Neuron::LIF, sltt::Reset::Soft, "
        "sltt::Save::None>(const sltt::FwdArgs<double, double>&, int64_t, int64_t, bool);\n"
        "template void sltt::cpu::lif_bwd_blocks<double, double, sltt::Neuron::Leaky, sltt::Reset::Hard, true, "
        "sltt::Surrogate::ATan, sltt::Save::HV0, sltt::Grad::BPTT>(const sltt::BwdArgs<double, double>&, int64_t, "
        "int64_t, bool);\n"
    )
    cxx, _ = _ext.compile_flags()  # the build's own flags (-Wno-psabi among them), then every warning an error
    out = subprocess.run([gxx, "-std=c++17", *cxx, "-Wall", "-Wextra", "-Werror", "-I", CSRC, "-c", str(src),
                          "-o", str(tmp_path / "h.o")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(os.environ.get("SLTT_KERNELS_EXPECT_CUDA_BUILD", "") in ("", "0"),
                    reason="set SLTT_KERNELS_EXPECT_CUDA_BUILD=1 where the extension was built with nvcc (CI does)")
def test_installed_extension_has_the_cuda_ops():
    info = _ext.build_info()
    assert info is not None, _ext.unavailable_reason()
    assert info["with_cuda"], info
    assert torch.version.cuda is not None
    expect = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if expect:
        assert info["cuda_arch_list"] == expect
        # each listed architecture's machine code is in the library
        import glob

        (lib,) = glob.glob(os.path.join(os.path.dirname(_ext.build_info_path()), "_C*.so"))
        data = open(lib, "rb").read()
        for arch in expect.replace(",", ";").split(";"):
            num = arch.strip().split("+")[0].replace(".", "")
            assert f"sm_{num}".encode() in data, f"no sm_{num} code in {lib}"
    # the CUDA implementations are registered for the ops
    assert torch._C._dispatch_has_kernel_for_dispatch_key("sltt_kernels::neuron_multistep_fwd", "CUDA")
