"""Loading the compiled extension sltt_kernels._C, never fatally.

The extension is loaded only when it was built against the running torch (recorded in
_build_info.json at build time): an extension built for another torch would fail on missing
symbols or, worse, misbehave. Any problem is reported once, as a warning, and the package
falls back to the other backends.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings

import torch

BUILD_COMMAND = "pip install --no-build-isolation .  (from a checkout, with torch installed)"

_state = {"loaded": False, "module": None, "reason": None, "info": None}


def build_info_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build_info.json")


def _read_build_info():
    path = build_info_path()
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load(force: bool = False):
    """Loads sltt_kernels._C once; returns the module, or None with `unavailable_reason()` set."""
    if _state["loaded"] and not force:
        return _state["module"]
    _state.update(loaded=True, module=None, reason=None, info=None)
    if os.environ.get("SLTT_KERNELS_DISABLE_EXTENSION", "") not in ("", "0"):
        _state["reason"] = "disabled by SLTT_KERNELS_DISABLE_EXTENSION"
        return None
    try:
        info = _read_build_info()
    except (OSError, ValueError) as e:
        info = {"error": str(e)}
    if info is None:
        _state["reason"] = f"the compiled extension is not built (build it with: {BUILD_COMMAND})"
        return None
    _state["info"] = info
    built_for = info.get("torch")
    if built_for != torch.__version__:
        _state["reason"] = (
            f"the compiled extension was built for torch {built_for} but torch {torch.__version__} is running; "
            f"rebuild it with: {BUILD_COMMAND}"
        )
        _warn(_state["reason"])
        return None
    try:
        module = importlib.import_module("sltt_kernels._C")
    except (ImportError, OSError) as e:
        _state["reason"] = f"the compiled extension failed to load ({e}); rebuild it with: {BUILD_COMMAND}"
        _warn(_state["reason"])
        return None
    _state["module"] = module
    return module


def _warn(reason: str) -> None:
    warnings.warn(f"sltt_kernels: {reason}. Falling back to the other backends.", RuntimeWarning, stacklevel=3)


def available() -> bool:
    return load() is not None


def has_cuda_ops() -> bool:
    return available() and bool((_state["info"] or {}).get("with_cuda"))


def unavailable_reason():
    load()
    return _state["reason"]


def build_info():
    load()
    return _state["info"]
