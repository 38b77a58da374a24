"""A missing or mismatched compiled extension never breaks `import sltt_kernels`."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from sltt_kernels import _ext

from helpers import HAVE_EXT


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
