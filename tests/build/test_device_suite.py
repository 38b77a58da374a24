"""benchmarks/device_suite.sh fits one device call, and installs a matching wheel instead of building.

DRY_RUN=1 makes the suite print its plan (install or build, each step's limit, the commands)
and stop, which is what these tests read; nothing here needs a GPU.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
SUITE = os.path.join(BENCH, "device_suite.sh")
pytestmark = pytest.mark.skipif(not os.path.isfile(SUITE) or shutil.which("bash") is None,
                                reason="benchmarks/device_suite.sh or bash not present")
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
ORDER = ["setup", "tests_gpu", "kernels", "memory_time", "sanitizers"]


def _device_wheel():
    sys.path.insert(0, BENCH)
    try:
        import device_wheel

        return device_wheel
    finally:
        sys.path.remove(BENCH)


def make_wheel(directory, **info):
    """A stand-in for build_device_wheel.sh's output, matching this machine unless info says otherwise."""
    dw = _device_wheel()
    full = dict(torch=torch.__version__, python=PY, with_cuda=True, cuda_arch_list="9.0",
                sources_sha256=dw._build_facts().sources_hash(os.path.join(ROOT, "csrc")))
    full.update(info)
    tag = full.pop("tag", TAG)
    plat = full.pop("platform", "linux_x86_64")
    path = os.path.join(directory, f"sltt_kernels-0.1.0-{tag}-{tag}-{plat}.whl")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sltt_kernels/_build_info.json", json.dumps(full))
        z.writestr(f"sltt_kernels/_C.{tag}-x86_64-linux-gnu.so", b"not really a library")
        z.writestr("sltt_kernels/__init__.py", "")
    return path


def dry_run(wheel_dir):
    env = dict(os.environ, DRY_RUN="1", WHEEL_DIR=str(wheel_dir), PYTHON=sys.executable, OUT="/nonexistent/out",
               TORCH_CUDA_ARCH_LIST="9.0")
    out = subprocess.run(["bash", SUITE], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    limits = dict(kv.split("=") for kv in re.search(r"^step limits: (.*)$", out.stdout, re.M).group(1).split())
    total = int(re.search(r"^TOTAL_LIMIT_S=(\d+)$", out.stdout, re.M).group(1))
    return out.stdout, {k: int(v) for k, v in limits.items()}, total


def test_with_a_matching_wheel_it_installs_and_never_builds(tmp_path):
    wheel = make_wheel(str(tmp_path))
    out, limits, total = dry_run(tmp_path)
    assert f"plan: install {wheel}" in out
    assert "build_ext" not in out and "pip install -e" not in out
    assert list(limits) == ORDER  # fastest and most important first
    assert sum(limits.values()) == total <= 420
    assert all(v > 0 for v in limits.values())
    # if the wheel's library does not load there: a build after the setup step, still in 420 s
    fallback = dict(kv.split("=") for kv in re.search(r"^fallback limits: (.*)$", out, re.M).group(1).split())
    fallback_total = int(re.search(r"^FALLBACK_TOTAL_LIMIT_S=(\d+)$", out, re.M).group(1))
    assert sum(map(int, fallback.values())) == fallback_total <= 420
    assert fallback["setup"] == str(limits["setup"]) and list(fallback)[:2] == ["setup", "build"]


def test_without_a_wheel_it_builds_and_still_fits(tmp_path):
    out, limits, total = dry_run(tmp_path)
    assert "plan: build" in out and "setup.py build_ext" in out
    assert sum(limits.values()) == total <= 420
    assert list(limits) == ORDER


@pytest.mark.parametrize("change,reason", [
    (dict(torch="2.11.0+cu130-other"), "built for torch"),
    (dict(tag="cp39"), "built for cp39"),
    (dict(sources_sha256="0" * 64), "other sources"),
    (dict(with_cuda=False, why_not_cuda="SLTT_KERNELS_NO_CUDA is set"), "without the CUDA ops"),
    (dict(cuda_arch_list="8.0"), "CUDA architectures"),
    (dict(cuda_arch_list=None), "CUDA architectures"),
    (dict(platform="linux_aarch64"), "platform linux_aarch64"),
])
def test_a_wheel_that_does_not_fit_is_not_installed(tmp_path, change, reason, monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")  # what the suite sets on the H200
    make_wheel(str(tmp_path), **change)
    dw = _device_wheel()
    path, reasons = dw.find_match(str(tmp_path))
    assert path is None and any(reason in r for r in reasons), reasons
    out, _, _ = dry_run(tmp_path)
    assert "plan: build" in out and reason in out


def test_install_puts_the_library_and_build_info_into_the_package(tmp_path):
    wheel = make_wheel(str(tmp_path))
    target = tmp_path / "pkg"
    target.mkdir()
    files = _device_wheel().install(wheel, str(target))
    assert sorted(os.path.basename(f) for f in files) == sorted(["_build_info.json", f"_C.{TAG}-x86_64-linux-gnu.so"])
    assert json.loads((target / "_build_info.json").read_text())["torch"] == torch.__version__


def test_results_are_at_most_eight_files():
    text = open(SUITE).read()
    listed = re.search(r"Results, at most eight files in \$OUT: (.*?)\.\n", text, re.S).group(1)
    names = [n.strip() for n in listed.replace("#", " ").replace("\n", " ").split(",")]
    assert 0 < len(names) <= 8
    logs = set(re.findall(r"^\s*step \w+ (\S+)", text, re.M))
    assert logs and logs <= set(names), logs - set(names)
    assert "--no-csv" in text and "--no-plot" in text  # the scripts add nothing else
