"""Loading the compiled extension sltt_kernels._C, never fatally, and what is available.

The prebuilt extension (setup.py, `pip install .`) is loaded only when it was built against the
running torch (recorded in _build_info.json at build time): an extension built for another
torch would fail on missing symbols or, worse, misbehave. This happens after `pip install .`
into an environment with an older torch, since pip builds in isolation against the newest one.

Then, or when the prebuilt extension is missing or fails to load, the same sources are compiled
for the running torch (_jit_build.py: the just-in-time build and its cache). When none loads, the
package falls back to the other backends (on CPU tensors, the pure-PyTorch reference) and says
so once: a RuntimeWarning when something failed (a build for another torch, a library that does
not load, a just-in-time build that failed), a UserWarning when nothing was ever built and no
build may run here (no C++ compiler or ninja, no sources, SLTT_KERNELS_NO_JIT=1), with what to do.
SLTT_KERNELS_DISABLE_EXTENSION=1 turns the compiled ops off without a word.

The sources, their hash, the CUDA decision and the compiler flags (shared with setup.py) are in
_build_facts.py.

    >>> from sltt_kernels import _ext
    >>> _ext.available(), _ext.unavailable_reason()
    (True, None)
"""

from __future__ import annotations

import importlib
import json
import os
import warnings

from . import _jit_build
from ._build_facts import compile_flags, env_flag  # noqa: F401  (compile_flags: the build's flags, asked of _ext)

BUILD_COMMAND = "pip install --no-build-isolation .  (from a checkout, with torch installed)"
CUDA_HINT = "needs a CUDA build of torch and nvcc with the CUDA headers"

_HERE = os.path.dirname(os.path.abspath(__file__))
_state = {"loaded": False, "module": None, "reason": None, "info": None}


def build_info_path() -> str:
    return os.path.join(_HERE, "_build_info.json")


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
    import torch

    _state.update(loaded=True, module=None, reason=None, info=None)
    if env_flag("SLTT_KERNELS_DISABLE_EXTENSION"):
        _state["reason"] = "disabled by SLTT_KERNELS_DISABLE_EXTENSION"
        return None
    try:
        info = _read_build_info()
    except (OSError, ValueError) as e:
        info = {"error": str(e)}
    if info is None:
        problem, warn = f"the compiled extension is not built (build it with: {BUILD_COMMAND})", False
    elif info.get("torch") != torch.__version__:
        problem, warn = (f"the compiled extension was built for torch {info.get('torch')} but torch "
                         f"{torch.__version__} is running; rebuild it with: {BUILD_COMMAND}"), True
    else:
        try:
            module = importlib.import_module("sltt_kernels._C")
        except (ImportError, OSError) as e:
            problem, warn = f"the compiled extension failed to load ({e}); rebuild it with: {BUILD_COMMAND}", True
        else:
            _state.update(module=module, info=info)
            return module
    try:
        module, jit_info, jit_problem = _jit_build.load_or_build()
    except Exception as e:  # whatever goes wrong there, the import goes on
        module, jit_info, jit_problem = None, None, f"the just-in-time build failed: {type(e).__name__}: {e}"
    if module is not None:
        _state.update(module=module, info=jit_info)
        return module
    _state["info"] = info if info is not None and "error" not in info else None
    _state["reason"] = problem + (f" ({jit_problem})" if jit_problem else "")
    if warn or (jit_problem and not _jit_build.refused(jit_problem)):
        _warn(_state["reason"])
    elif info is None and _jit_build.refused(jit_problem):
        _warn_never_built(jit_problem)
    return None


def _warn(reason: str) -> None:
    """Something that should have worked did not (a build for another torch, a library that does
    not load, a just-in-time build that failed): a RuntimeWarning."""
    warnings.warn(f"sltt_kernels: {reason}. Falling back to the other backends.", RuntimeWarning, stacklevel=3)


def _warn_never_built(why_no_build: str) -> None:
    """No compiled extension was ever built and none may be built here (no compiler, ninja or
    sources, SLTT_KERNELS_NO_JIT=1): a UserWarning, as it is the setup's doing, that says what it
    costs and what to do. Silent, every op would run on the reference without a word."""
    allow = _jit_build.how_to_allow(why_no_build)
    fix = (f"{allow} so that the next import compiles them (once, about a minute), or build them with: "
           if allow else "build them with: ")
    warnings.warn(f"sltt_kernels: the compiled kernels are not built and cannot be built here ({why_no_build}). "
                  "Falling back to the other backends: on CPU tensors every op runs on the pure-PyTorch "
                  f"reference, many times slower. To get the kernels, {fix}{BUILD_COMMAND}",
                  UserWarning, stacklevel=3)


def available() -> bool:
    return load() is not None


def has_cuda_ops() -> bool:
    return available() and bool((_state["info"] or {}).get("with_cuda"))


def unavailable_reason():
    load()
    return _state["reason"]


def cuda_unavailable_reason():
    """None when the CUDA ops are loaded, else the actual reason (recorded at build time)."""
    if load() is None:
        return _state["reason"]
    info = _state["info"] or {}
    if info.get("with_cuda"):
        return None
    why = info.get("why_not_cuda")
    if why:
        return f"the compiled extension was built without the CUDA ops: {why}"
    return f"the compiled extension was built without the CUDA ops ({CUDA_HINT})"


def build_info():
    load()
    return _state["info"]
