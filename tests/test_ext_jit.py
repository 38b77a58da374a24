"""The just-in-time rebuild of sltt_kernels/_ext.py: when it runs, what it compiles, where it caches.

The cheap tests check the decisions and the cache key without compiling. The one real build
(marked slow: about 25 s on two cores, into a temporary cache) is skipped with
SLTT_KERNELS_NO_JIT=1 or without a C++ compiler and ninja.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sltt_kernels import _ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
needs_checkout = pytest.mark.skipif(not os.path.isfile(os.path.join(CSRC, "ops.cpp")), reason="no csrc/ (not a checkout)")


@pytest.fixture
def restore_load():
    yield
    _ext.load(force=True)


@needs_checkout
def test_the_jit_compiles_what_setup_py_compiles():
    files = [os.path.relpath(p, ROOT) for p in _ext.source_files(CSRC)]
    assert files[0] == os.path.join("csrc", "ops.cpp")
    assert files[1:] and all(f.startswith(os.path.join("csrc", "cpu")) and f.endswith(".cpp") for f in files[1:])
    with_cuda = _ext.source_files(CSRC, True)
    assert with_cuda[: len(files)] == _ext.source_files(CSRC)
    assert any(f.endswith(".cu") for f in with_cuda)
    setup_py = open(os.path.join(ROOT, "setup.py")).read()
    assert "source_files" in setup_py and "cuda_build_decision" in setup_py  # one list, one decision


@needs_checkout
def test_cache_key_follows_torch_python_and_every_source(tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(CSRC, copy)
    key = _ext.cache_key(str(copy), False)
    assert torch.__version__.replace("+", "_") in key and f"py{sys.version_info[0]}{sys.version_info[1]}" in key
    assert key != _ext.cache_key(str(copy), True)
    assert key == _ext.cache_key(CSRC, False)  # the path does not matter, the content does
    header = sorted(copy.glob("*.h"))[0]
    header.write_text(header.read_text() + "\n// changed\n")
    assert _ext.cache_key(str(copy), False) != key


def test_jit_switches(monkeypatch):
    monkeypatch.setenv("SLTT_KERNELS_NO_JIT", "1")
    assert _ext.jit_decision() == (None, "no just-in-time build: SLTT_KERNELS_NO_JIT is set")
    monkeypatch.delenv("SLTT_KERNELS_NO_JIT")
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    csrc, why = _ext.jit_decision()
    assert csrc is None and "no C++ compiler" in why


@needs_checkout
def test_no_new_build_inside_a_test(monkeypatch, tmp_path):
    if _ext.jit_decision()[0] is None:
        pytest.skip(_ext.jit_decision()[1])
    assert os.environ.get("PYTEST_CURRENT_TEST")  # set by pytest while a test runs
    monkeypatch.delenv("SLTT_KERNELS_JIT", raising=False)
    monkeypatch.setenv("SLTT_KERNELS_CACHE", str(tmp_path))  # an empty cache: it would have to build
    module, info, why = _ext._jit_load()
    assert module is None and "inside a test" in why  # a test never starts a long build by accident
    assert list(tmp_path.iterdir()) == []


@needs_checkout
def test_jit_allowed_with_a_compiler(monkeypatch):
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler")
    from torch.utils import cpp_extension

    monkeypatch.setenv("SLTT_KERNELS_JIT", "1")
    monkeypatch.delenv("SLTT_KERNELS_NO_JIT", raising=False)
    csrc, why = _ext.jit_decision()
    if not cpp_extension.is_ninja_available():
        assert csrc is None and "ninja" in why
    else:
        assert (csrc, why) == (_ext.source_dir(), None) and csrc is not None


def test_mismatched_build_tries_the_jit_then_falls_back(restore_load, monkeypatch):
    calls = []
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": "1.0.0+other", "with_cuda": False})
    monkeypatch.setattr(_ext, "_jit_load", lambda: calls.append(1) or (None, None, "no just-in-time build: test"))
    with pytest.warns(RuntimeWarning, match="built for torch 1.0.0"):
        assert _ext.load(force=True) is None
    assert calls == [1]
    assert "rebuild" in _ext.unavailable_reason() and "no just-in-time build: test" in _ext.unavailable_reason()


def test_mismatched_build_uses_the_jit_module(restore_load, monkeypatch):
    fake = object()
    info = {"torch": torch.__version__, "with_cuda": False, "jit": True}
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": "1.0.0+other"})
    monkeypatch.setattr(_ext, "_jit_load", lambda: (fake, info, None))
    assert _ext.load(force=True) is fake
    assert _ext.unavailable_reason() is None and _ext.build_info()["jit"]


def test_cuda_reason_is_the_one_recorded_at_build_time(restore_load, monkeypatch):
    recorded = "CUDA_HOME=/usr/local has no include/cuda_runtime.h (point CUDA_HOME at the CUDA toolkit)"
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": torch.__version__, "with_cuda": False,
                                                           "why_not_cuda": recorded})
    monkeypatch.setattr(_ext.importlib, "import_module", lambda name: object())
    _ext.load(force=True)
    assert recorded in _ext.cuda_unavailable_reason()
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": torch.__version__, "with_cuda": True})
    _ext.load(force=True)
    assert _ext.cuda_unavailable_reason() is None


def test_cuda_build_decision_names_the_missing_headers(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    with_cuda, why = _ext.cuda_build_decision(CSRC)
    assert not with_cuda and "cuda_runtime.h" in why and str(tmp_path) in why
    assert _ext.cuda_build_decision(CSRC, no_cuda=True) == (False, "SLTT_KERNELS_NO_CUDA is set")


@pytest.mark.slow
@needs_checkout
@pytest.mark.skipif(os.environ.get("SLTT_KERNELS_NO_JIT", "") not in ("", "0"), reason="SLTT_KERNELS_NO_JIT is set")
def test_real_jit_build_of_a_mismatched_install(tmp_path):
    """An installed copy built for another torch compiles itself for this one, from sltt_kernels/_csrc."""
    from torch.utils import cpp_extension

    if shutil.which(os.environ.get("CXX", "c++")) is None or not cpp_extension.is_ninja_available():
        pytest.skip("needs a C++ compiler and ninja")
    pkg = tmp_path / "site" / "sltt_kernels"
    shutil.copytree(os.path.join(ROOT, "sltt_kernels"), pkg,
                    ignore=shutil.ignore_patterns("_C*.so", "__pycache__", "_build_info.json"))
    shutil.copytree(CSRC, pkg / "_csrc")  # as the wheel ships it
    (pkg / "_build_info.json").write_text(json.dumps({"torch": "1.0.0+other", "with_cuda": False}))
    code = ("import sltt_kernels, torch; from sltt_kernels import _ext\n"
            "assert sltt_kernels.available_backends()['cpu'] is None, _ext.unavailable_reason()\n"
            "info = _ext.build_info(); assert info['jit'] and info['torch'] == torch.__version__, info\n"
            "x = torch.randn(4, 100, requires_grad=True)\n"
            "s, _ = sltt_kernels.lif_multistep(x, backend='cpu'); s.sum().backward()\n"
            "r, _ = sltt_kernels.reference.lif_multistep(x)\n"
            "assert torch.equal(s, r); print('jit ok', info['path'])\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), SLTT_KERNELS_JIT="1", SLTT_KERNELS_NO_CUDA="1",
               SLTT_KERNELS_CACHE=str(tmp_path / "cache"))
    env.pop("SLTT_KERNELS_NO_JIT", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "compiling the CPU kernels" in out.stderr and "jit ok" in out.stdout
    # the second start finds the cache: no compile message
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                           cwd=str(tmp_path))
    assert again.returncode == 0 and "compiling" not in again.stderr, again.stderr
