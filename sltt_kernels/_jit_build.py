"""The just-in-time build of the compiled extension, and its cache.

When the prebuilt sltt_kernels._C is missing or does not fit the running torch (see _ext.py),
the same sources (_build_facts.py: csrc/ in a checkout, sltt_kernels/_csrc/ in a wheel) are
compiled for it with torch.utils.cpp_extension.load and cached under
~/.cache/sltt_kernels/<torch, Python, CPU or CUDA architectures, sources hash>/, said on stderr.
A CUDA build that fails is recorded in its folder (with the CUDA_HOME it used) and the CPU build
stands in; the next start does not spend minutes on it again unless CUDA_HOME changed or
SLTT_KERNELS_RETRY_CUDA=1 asks for another try.

The cache survives interrupted and concurrent builds: a build holds an operating-system lock on
its folder (released by the kernel however the process ends), so a second process waits for it
and then uses its result, and a lock file left by a killed build is never waited on (where the
file system cannot lock, the build runs unlocked). A build is complete only once its record
(_build_info.json, written last and atomically) names the size and sha256 of its library; a
library that does not match (cut short, damaged), or does not load, is built again. A complete
build is loaded without a compiler. Only a real folder of this user's is ever cleared (not a
symbolic link, not another user's). Once a library is loaded into the process (its ops
registered), no other is loaded beside it, whatever fails afterwards.

Switches: SLTT_KERNELS_NO_JIT=1 (no new build; a complete one in the cache is still used),
SLTT_KERNELS_JIT=1 (allow a new build inside a running test too, where it is off so that a test
never starts a long build by accident), SLTT_KERNELS_CACHE=DIR (the cache folder),
SLTT_KERNELS_RETRY_CUDA=1, SLTT_KERNELS_NO_CUDA=1 (build the CPU ops only).

    >>> module, info, why = load_or_build()  # module None: why says what stood in the way
    >>> why if module is None else (info["jit"], os.path.basename(os.path.dirname(info["path"])))
    (True, 'torch2.14.1_cu130-py311-cpu-0123456789abcdef')
"""

from __future__ import annotations

import errno
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None

from ._build_facts import (NVCC_FLAGS, compile_flags, cuda_build_decision, env_flag, source_dir, source_files,
                           sources_hash)

INFO_NAME = "_build_info.json"
LOCK_NAME = ".sltt_build.lock"
CUDA_FAILED_NAME = "cuda_build_failed.json"  # in a CUDA folder: its build failed, the CPU build stands in
LOCK_WAIT_S = 1800.0  # a CUDA build takes minutes; a holder this slow is stuck
RETRY_CUDA_FLAG = "SLTT_KERNELS_RETRY_CUDA"

# why no build was allowed to run
NO_SOURCES = "no just-in-time build: the C++ sources are not shipped with this copy"
NO_JIT_SET = "no just-in-time build: SLTT_KERNELS_NO_JIT is set"
NO_COMPILER = "no just-in-time build: no C++ compiler"
NO_NINJA = "no just-in-time build: it needs ninja (pip install ninja)"
IN_A_TEST = "no just-in-time build inside a test unless SLTT_KERNELS_JIT=1"
# what lets it run, for each of those reasons (the start of the reason's text)
_HOW_TO_ALLOW = (
    (NO_JIT_SET, "unset SLTT_KERNELS_NO_JIT"),
    (NO_COMPILER, "install a C++ compiler (or point CXX at one) and ninja"),
    (NO_NINJA, "pip install ninja"),
    (IN_A_TEST, "set SLTT_KERNELS_JIT=1"),
)


def refused(why) -> bool:
    """Whether a reason of load_or_build says that no build was allowed to run (as opposed to
    one that ran and failed)."""
    return bool(why) and why.startswith("no just-in-time build")


def how_to_allow(why: str):
    """What lets the build run, for a reason that says it was refused; None where nothing short
    of building the extension does (no sources)."""
    for reason, fix in _HOW_TO_ALLOW:
        if why.startswith(reason):
            return fix
    return None


def jit_decision():
    """(csrc folder or None, why not): whether a just-in-time build may run here and now."""
    if env_flag("SLTT_KERNELS_NO_JIT"):
        return None, NO_JIT_SET
    csrc = source_dir()
    if csrc is None:
        return None, NO_SOURCES
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return None, f"{NO_COMPILER} ({cxx}) on PATH"
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return None, NO_NINJA
    return csrc, None


def cache_root() -> str:
    base = os.environ.get("SLTT_KERNELS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "sltt_kernels")
    return os.path.expanduser(base)


def cache_key(csrc: str, with_cuda: bool) -> str:
    """torch version, Python version, CPU or the CUDA architectures, and the sources' hash: one build each."""
    return _key(sources_hash(csrc), with_cuda)


def _key(digest: str, with_cuda: bool) -> str:
    """cache_key for sources whose sha256 is digest."""
    import torch

    torch_tag = torch.__version__.replace("+", "_")
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    if with_cuda:
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
        kind = "cuda-" + ("".join(c if c.isalnum() else "_" for c in arch) if arch else "auto")
    else:
        kind = "cpu"
    return f"torch{torch_tag}-{py}-{kind}-{digest[:16]}"


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached_build(directory: str):
    """(library path, build info) of a complete, intact build in directory; else (None, why not)
    with why None when nothing was built there yet."""
    info_path = os.path.join(directory, INFO_NAME)
    if not os.path.exists(info_path):
        return None, None
    try:
        with open(info_path) as f:
            info = json.load(f)
        library = os.path.join(directory, os.path.basename(info["path"]))
        intact = os.path.getsize(library) == info["so_size"] and _file_sha256(library) == info["so_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"an incomplete build ({type(e).__name__}: {e})"
    if not intact:
        return None, "a library that does not match its record (a build cut short, or a damaged file)"
    return library, dict(info, path=library)


ANOTHER_LOADED = "another sltt_kernels._C is already loaded in this process"


def _load_library(path: str):
    loaded = sys.modules.get("sltt_kernels._C")
    if loaded is not None:
        # its ops are registered: loading a second library registers them again, which aborts
        # the process (_ext.load(force=True) after the prebuilt extension loaded, say)
        where = getattr(loaded, "__file__", None)
        if where is not None and os.path.realpath(where) == os.path.realpath(path):
            return loaded
        raise ImportError(f"{ANOTHER_LOADED} ({where or 'no file'}): a second one cannot be loaded beside it; "
                          "start a new Python process")
    spec = importlib.util.spec_from_file_location(
        "sltt_kernels._C", path, loader=importlib.machinery.ExtensionFileLoader("sltt_kernels._C", path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["sltt_kernels._C"] = module
    return module


class _LockTimeout(Exception):
    pass


class _BuildLock:
    """An exclusive lock on directory/.sltt_build.lock while a build runs (flock, or msvcrt's on
    Windows): the operating system drops it when its holder exits, however it exits, so a killed
    build never blocks the next one. Where the file system cannot lock (NFS without lockd, some
    FUSE mounts) the build runs unlocked rather than waiting for nothing."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOCK_NAME)
        self.file = None

    def _try(self) -> bool:
        """True when taken, False when another process holds it; raises OSError when locking fails."""
        fd = self.file.fileno()
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                self.file.seek(0)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK):
                return False
            raise

    def __enter__(self):
        self.file = open(self.path, "a+")
        if fcntl is None and msvcrt is None:
            return self
        deadline, said = time.time() + LOCK_WAIT_S, False
        while True:
            try:
                if self._try():
                    return self
            except OSError:
                return self  # this file system cannot lock: build unlocked
            if time.time() > deadline:
                self.file.close()
                raise _LockTimeout(f"another process has held {self.path} for {LOCK_WAIT_S:.0f} s")
            if not said:
                print(f"sltt_kernels: another process is compiling the kernels in {os.path.dirname(self.path)}; "
                      "waiting for it ...", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.5)

    def __exit__(self, *exc):
        self.file.close()  # closing drops the lock


def _own_folder(directory: str):
    """None when directory is a real folder of this user's (safe to clear), else why not."""
    if os.path.islink(directory):
        return f"{directory} is a symbolic link; the cache clears only folders of its own"
    if hasattr(os, "getuid") and os.stat(directory).st_uid != os.getuid():
        return f"{directory} belongs to another user"
    return None


def _clear(directory: str) -> None:
    """Everything of an earlier, unfinished or damaged build, but our lock: torch's own lock file
    (left by a build that was killed; torch <= 2.13 would wait on it forever), the record, the
    library and the object files (one cut short may look newer than its source to ninja)."""
    for name in os.listdir(directory):
        if name == LOCK_NAME:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass


def _write_json(path: str, data: dict) -> None:
    """data into path, whole or not at all (a temporary file, then a rename); the file's mode
    follows the umask, as any file the user writes (others sharing the cache can read it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _build_error(e: Exception) -> str:
    """The lines of a build error that say what went wrong: the compiler's 'error' lines, not
    ninja's closing 'build stopped' (torch puts the compiler's output into the exception)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() and not ln.startswith("ninja: build stopped")]
    picked = errors[:2] or lines[-1:] or [type(e).__name__]
    return " | ".join(ln[:240] for ln in picked)


def _cuda_failure(cuda_folder: str):
    """The failure recorded in a CUDA build's folder, if it was with this toolkit; else None (also
    when SLTT_KERNELS_RETRY_CUDA=1 asks for another try)."""
    if env_flag(RETRY_CUDA_FLAG):
        return None
    from torch.utils import cpp_extension

    path = os.path.join(cuda_folder, CUDA_FAILED_NAME)
    try:
        with open(path) as f:
            failed = json.load(f)
    except (OSError, ValueError):
        return None
    if failed.get("cuda_home") != cpp_extension.CUDA_HOME:
        return None  # another toolkit: worth another try
    return failed.get("why")


def load_or_build():
    """(module, build info, None) after a cached or fresh just-in-time build, else (None, None, why)."""
    csrc = source_dir()
    if csrc is None:
        return None, None, NO_SOURCES
    digest = sources_hash(csrc)  # once: every folder below is keyed on it

    def folder(cuda: bool) -> str:
        return os.path.join(cache_root(), _key(digest, cuda))

    with_cuda, why_not_cuda = cuda_build_decision(csrc, env_flag("SLTT_KERNELS_NO_CUDA"))
    if with_cuda:
        failed = _cuda_failure(folder(True))
        if failed is not None:  # the CUDA build failed before with this toolkit: the CPU build stands in
            with_cuda, why_not_cuda = False, _cuda_failed_reason(failed)
    module, info, damaged = _load_cached(folder(with_cuda))
    if module is not None:
        return module, dict(info, why_not_cuda=why_not_cuda) if not with_cuda else info, None
    if damaged is not None and ANOTHER_LOADED in damaged:  # a build would load beside it too
        return None, None, f"the cached build was not loaded: {damaged}"
    ok, why = jit_decision()
    if ok is None:
        return None, None, why + (f"; the cache holds {damaged}" if damaged else "")
    if os.environ.get("PYTEST_CURRENT_TEST") and not env_flag("SLTT_KERNELS_JIT"):
        # a build already in the cache is used anywhere; a new one is never started inside a
        # running test (one that reloads the extension, say), only at the start of a session
        # (conftest importing the package) as at any first use
        return None, None, IN_A_TEST
    module, info, why, compile_failed = _build(csrc, digest, folder(with_cuda), with_cuda, why_not_cuda,
                                               reuse=_reusable(damaged))
    if module is None and with_cuda and compile_failed:
        why = _cuda_failure(folder(True)) or why
        why_not_cuda = _cuda_failed_reason(why)
        print(f"sltt_kernels: {why}; using the CPU kernels alone", file=sys.stderr, flush=True)
        module, info, damaged = _load_cached(folder(False))
        if module is not None:
            return module, dict(info, why_not_cuda=why_not_cuda), None
        module, info, why, _ = _build(csrc, digest, folder(False), False, why_not_cuda, reuse=_reusable(damaged))
    return module, info, why


def _cuda_failed_reason(why: str) -> str:
    return f"the CUDA build failed: {why} (set {RETRY_CUDA_FLAG}=1 to try again, or change CUDA_HOME)"


UNLOADABLE = "a library that does not load"


def _reusable(damaged) -> bool:
    """Whether a build found in the folder may be taken (not one that failed to load here)."""
    return not (damaged or "").startswith(UNLOADABLE)


def _load_cached(directory: str):
    """(module, info, None) from a complete build in directory; else (None, None, what is wrong
    with the one there, or None when there is none)."""
    library, found = _cached_build(directory)
    if library is None:
        return None, None, found
    try:
        return _load_library(library), found, None
    except (ImportError, OSError) as e:
        return None, None, f"{UNLOADABLE} ({e})"


def _build(csrc: str, digest: str, directory: str, with_cuda: bool, why_not_cuda, reuse: bool = True):
    """Builds the sources of csrc (sha256 digest) into directory, or takes what another process
    built there meanwhile (reuse). (module, info, None, False) on success, else (None, None, why,
    whether the compiler failed)."""
    import torch

    try:
        os.makedirs(directory, exist_ok=True)
        unsafe = _own_folder(directory)
        if unsafe:
            return None, None, f"the just-in-time build did not run: {unsafe}", False
        with _BuildLock(directory):
            if reuse:
                library, found = _cached_build(directory)  # built by the process we waited for?
                if library is not None:
                    return _load_library(library), found, None, False
            failed = _cuda_failure(directory) if with_cuda else None
            if failed is not None:  # it failed for the process we waited for
                return None, None, failed, True
            _clear(directory)
            start = time.time()
            print(f"sltt_kernels: compiling the {'CPU and CUDA' if with_cuda else 'CPU'} kernels for torch "
                  f"{torch.__version__} (once, about a minute{' or more for CUDA' if with_cuda else ''}; "
                  f"cached in {directory}) ...", file=sys.stderr, flush=True)
            from torch.utils import cpp_extension

            cxx, link = compile_flags()
            try:
                path = cpp_extension.load(
                    name="_C", sources=source_files(csrc, with_cuda), build_directory=directory,
                    extra_cflags=cxx, extra_cuda_cflags=NVCC_FLAGS if with_cuda else None,
                    extra_ldflags=link, extra_include_paths=[csrc], with_cuda=with_cuda,
                    is_python_module=False, verbose=False)
            except Exception as e:
                why = _build_error(e)
                if with_cuda:  # remembered, so that the next start does not spend minutes on it again
                    _write_json(os.path.join(directory, CUDA_FAILED_NAME),
                                dict(why=why, cuda_home=cpp_extension.CUDA_HOME, torch=torch.__version__))
                return None, None, f"the just-in-time build failed in {directory}: {why}", True
    except _LockTimeout as e:
        return None, None, f"the just-in-time build did not run: {e}", False
    except Exception as e:  # a read-only cache, a library that does not load, ...: never fail the import
        return None, None, f"the just-in-time build failed in {directory}: {_build_error(e)}", False
    # From here on the library is loaded into this process (cpp_extension.load registers its ops):
    # whatever fails now, no other build may be loaded beside it.
    try:
        module = _load_library(path)
    except Exception as e:
        return None, None, f"the just-in-time build in {directory} does not load: {_build_error(e)}", False
    info = dict(torch=torch.__version__, cuda=torch.version.cuda, with_cuda=with_cuda,
                why_not_cuda=why_not_cuda, cuda_arch_list=os.environ.get("TORCH_CUDA_ARCH_LIST"),
                python=f"{sys.version_info[0]}.{sys.version_info[1]}", sources_sha256=digest,
                jit=True, path=path)
    try:
        info.update(so_size=os.path.getsize(path), so_sha256=_file_sha256(path))
        _write_json(os.path.join(directory, INFO_NAME), info)  # last: its presence marks the build complete
    except OSError as e:
        print(f"sltt_kernels: compiled, but could not record the build ({e}); the next start builds again",
              file=sys.stderr, flush=True)
    print(f"sltt_kernels: compiled in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    return module, info, None, False
