"""A missing or mismatched compiled extension never breaks `import sltt_kernels`."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from sltt_kernels import _ext

from helpers import HAVE_EXT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


def test_import_without_extension_falls_back_to_reference():
    code = (
        "import torch, sltt_kernels as sk\n"
        "r = sk.available_backends()\n"
        "assert r['reference'] is None and 'disabled' in r['cpu'], r\n"
        "x = torch.randn(3, 5, requires_grad=True)\n"
        "s, v = sk.lif_multistep(x)\n"
        "s.sum().backward()\n"
        "try:\n"
        "    sk.lif_multistep(x, backend='cpu')\n"
        "except RuntimeError as e:\n"
        "    assert 'not available' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('backend=cpu should have failed')\n"
        "print('ok')\n"
    )
    out = _run(code, SLTT_KERNELS_DISABLE_EXTENSION="1")
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


@pytest.mark.skipif(not HAVE_EXT, reason="no extension built")
def test_mismatched_torch_version_warns_once_and_falls_back(monkeypatch):
    real = _ext._read_build_info
    monkeypatch.setattr(_ext, "_read_build_info", lambda: dict(real(), torch="1.0.0+other"))
    monkeypatch.setenv("SLTT_KERNELS_NO_JIT", "1")  # the fallback itself, not the just-in-time rebuild
    try:
        with pytest.warns(RuntimeWarning, match="built for torch 1.0.0"):
            assert _ext.load(force=True) is None
        assert "rebuild" in _ext.unavailable_reason()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once: no second warning
            assert _ext.load() is None
    finally:
        monkeypatch.setattr(_ext, "_read_build_info", real)
        monkeypatch.delenv("SLTT_KERNELS_NO_JIT")
        assert _ext.load(force=True) is not None


@pytest.mark.skipif(not HAVE_EXT, reason="no extension built")
def test_unloadable_library_is_reported_not_fatal(monkeypatch):
    import importlib

    def broken(name, *a, **k):
        raise ImportError("undefined symbol: _ZN3c10fake")

    monkeypatch.setattr(importlib, "import_module", broken)
    monkeypatch.setenv("SLTT_KERNELS_NO_JIT", "1")  # the report itself, not the just-in-time rebuild
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": torch.__version__, "with_cuda": False})
    try:
        with pytest.warns(RuntimeWarning, match="undefined symbol"):
            assert _ext.load(force=True) is None
    finally:
        monkeypatch.undo()
        assert _ext.load(force=True) is not None


@pytest.mark.skipif(not HAVE_EXT, reason="no extension built")
def test_build_info_records_the_running_torch():
    info = _ext.build_info()
    assert info["torch"] == torch.__version__


@pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "csrc", "ops.cpp")), reason="no csrc/ (not a checkout)")
@pytest.mark.parametrize("cannot_compile", ["no compiler", "SLTT_KERNELS_NO_JIT"])
def test_no_build_and_no_way_to_compile_warns_once(tmp_path, cannot_compile):
    """A checkout never built, where the just-in-time build cannot run (no C++ compiler, or
    SLTT_KERNELS_NO_JIT=1) and the cache is empty: the import says so once, as a UserWarning that
    names the reason and what to do, and the ops run on the reference."""
    checkout = tmp_path / "checkout"  # a copy, so that the real in-place build is never touched
    shutil.copytree(os.path.join(ROOT, "sltt_kernels"), checkout / "sltt_kernels",
                    ignore=shutil.ignore_patterns("_C*.so", "_C*.pyd", "__pycache__", "_build_info.json"))
    shutil.copytree(os.path.join(ROOT, "csrc"), checkout / "csrc")
    cache = tmp_path / "cache"
    code = ("import json, warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')  # every warning, so that 'once' is the package's doing\n"
            "    import torch, sltt_kernels\n"
            "    reason = sltt_kernels.available_backends()['cpu']\n"
            "    s, _ = sltt_kernels.lif_multistep(torch.randn(3, 5))\n"
            "    sltt_kernels.available_backends()\n"
            "ours = [dict(category=w.category.__name__, user=issubclass(w.category, UserWarning),\n"
            "             message=str(w.message)) for w in caught if 'sltt_kernels' in str(w.message)]\n"
            "print(json.dumps(dict(file=sltt_kernels.__file__, reason=reason, warnings=ours)))\n")
    env = dict(os.environ, PYTHONPATH=str(checkout), SLTT_KERNELS_CACHE=str(cache))
    for name in ("PYTEST_CURRENT_TEST", "SLTT_KERNELS_JIT", "SLTT_KERNELS_NO_JIT", "SLTT_KERNELS_DISABLE_EXTENSION",
                 "SLTT_KERNELS_BACKEND"):
        env.pop(name, None)
    if cannot_compile == "no compiler":
        env["CXX"] = str(tmp_path / "no-such-c++")
        expected_reason, expected_fix = "no C++ compiler", "install a C++ compiler"
    else:
        env["SLTT_KERNELS_NO_JIT"] = "1"
        expected_reason, expected_fix = "SLTT_KERNELS_NO_JIT is set", "unset SLTT_KERNELS_NO_JIT"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["file"].startswith(str(checkout)), seen["file"]  # the copy, not the checkout under test
    assert seen["reason"] is not None and expected_reason in seen["reason"]  # the cpu backend is off, and why
    assert len(seen["warnings"]) == 1, seen["warnings"]  # said once
    (warning,) = seen["warnings"]
    assert warning["user"], warning
    for said in (expected_reason, expected_fix, "reference", "pip install --no-build-isolation ."):
        assert said in warning["message"], (said, warning["message"])
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing built, nothing left in the cache


@pytest.mark.skipif(not HAVE_EXT, reason="no extension built")
def test_a_forced_reload_never_loads_a_cached_build_beside_the_loaded_extension(tmp_path):
    """_ext.load(force=True) after the prebuilt extension loaded, with a complete build of the same
    sources in the cache: loading that second library registered the ops again and aborted the
    process (it happened to the test above once another session had filled ~/.cache). Now the
    cached build is not loaded, the reload says why, and the loaded extension keeps working."""
    code = (
        "import hashlib, json, os, shutil, sys, warnings\n"
        "import torch, sltt_kernels\n"
        "from sltt_kernels import _ext, _jit_build, _build_facts\n"
        "assert _ext.available(), _ext.unavailable_reason()\n"
        "first = sys.modules['sltt_kernels._C'].__file__\n"
        "if _build_facts.source_dir() is None:\n"
        "    print('no sources'); sys.exit(0)  # no cache key without them\n"
        "key = _jit_build.cache_key(_build_facts.source_dir(), False)\n"
        "folder = os.path.join(os.environ['SLTT_KERNELS_CACHE'], key)\n"
        "os.makedirs(folder)\n"
        "library = shutil.copy(first, os.path.join(folder, '_C.so'))  # a real library, complete and intact\n"
        "data = open(library, 'rb').read()\n"
        "json.dump(dict(torch=torch.__version__, with_cuda=False, path=library, so_size=len(data),\n"
        "               so_sha256=hashlib.sha256(data).hexdigest()),\n"
        "          open(os.path.join(folder, '_build_info.json'), 'w'))\n"
        "real = _ext._read_build_info\n"
        "_ext._read_build_info = lambda: dict(real(), torch='1.0.0+other')  # the prebuilt one does not fit\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    assert _ext.load(force=True) is None\n"
        "print(json.dumps(dict(reason=_ext.unavailable_reason(), warnings=[str(w.message) for w in caught])))\n"
        "_ext._read_build_info = real\n"
        "assert _ext.load(force=True) is not None and sys.modules['sltt_kernels._C'].__file__ == first\n"
        "s, v = sltt_kernels.lif_multistep(torch.randn(3, 5), backend='cpu')\n"
        "print('still running', s.shape)\n")
    import sltt_kernels

    # the package this process imported (CI tests the installed one: the checkout has no compiled ops)
    env = dict(os.environ, SLTT_KERNELS_CACHE=str(tmp_path / "cache"), SLTT_KERNELS_NO_JIT="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(sltt_kernels.__file__))))
    for name in ("PYTEST_CURRENT_TEST", "SLTT_KERNELS_JIT", "SLTT_KERNELS_DISABLE_EXTENSION", "SLTT_KERNELS_BACKEND"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=str(tmp_path))
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr[-3000:])  # -6 (SIGABRT) before
    lines = out.stdout.strip().splitlines()
    if lines[-1] == "no sources":
        pytest.skip("the imported package has no C++ sources (no cache key)")
    seen = json.loads(lines[-2])
    assert "already loaded in this process" in seen["reason"] and "built for torch 1.0.0" in seen["reason"]
    assert len(seen["warnings"]) == 1 and "already loaded in this process" in seen["warnings"][0]
    assert lines[-1] == "still running torch.Size([3, 5])"
