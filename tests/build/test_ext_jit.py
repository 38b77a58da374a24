"""The just-in-time rebuild (sltt_kernels/_jit_build.py, started by _ext.py): when it runs, what it
compiles, where it caches.

The cheap tests check the decisions and the cache key without compiling. The one real build
(marked slow: about 25 s on two cores, into a temporary cache) is skipped with
SLTT_KERNELS_NO_JIT=1 or without a C++ compiler and ninja.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from sltt_kernels import _build_facts, _ext, _jit_build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")
needs_checkout = pytest.mark.skipif(not os.path.isfile(os.path.join(CSRC, "ops.cpp")), reason="no csrc/ (not a checkout)")


@pytest.fixture
def restore_load():
    yield
    _ext.load(force=True)


@needs_checkout
def test_the_jit_compiles_what_setup_py_compiles():
    files = [os.path.relpath(p, ROOT) for p in _build_facts.source_files(CSRC)]
    assert files[0] == os.path.join("csrc", "ops.cpp")
    assert files[1:] and all(f.startswith(os.path.join("csrc", "cpu")) and f.endswith(".cpp") for f in files[1:])
    with_cuda = _build_facts.source_files(CSRC, True)
    assert with_cuda[: len(files)] == _build_facts.source_files(CSRC)
    assert any(f.endswith(".cu") for f in with_cuda)
    setup_py = open(os.path.join(ROOT, "setup.py")).read()
    assert "source_files" in setup_py and "cuda_build_decision" in setup_py  # one list, one decision


@needs_checkout
def test_cache_key_follows_torch_python_and_every_source(tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(CSRC, copy)
    key = _jit_build.cache_key(str(copy), False)
    assert torch.__version__.replace("+", "_") in key and f"py{sys.version_info[0]}{sys.version_info[1]}" in key
    assert key != _jit_build.cache_key(str(copy), True)
    assert key == _jit_build.cache_key(CSRC, False)  # the path does not matter, the content does
    header = sorted(copy.glob("*.h"))[0]
    header.write_text(header.read_text() + "\n// changed\n")
    assert _jit_build.cache_key(str(copy), False) != key


def test_jit_switches(monkeypatch):
    monkeypatch.setenv("SLTT_KERNELS_NO_JIT", "1")
    assert _jit_build.jit_decision() == (None, "no just-in-time build: SLTT_KERNELS_NO_JIT is set")
    monkeypatch.delenv("SLTT_KERNELS_NO_JIT")
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    csrc, why = _jit_build.jit_decision()
    assert csrc is None and "no C++ compiler" in why


@needs_checkout
def test_no_new_build_inside_a_test(monkeypatch, tmp_path):
    if _jit_build.jit_decision()[0] is None:
        pytest.skip(_jit_build.jit_decision()[1])
    assert os.environ.get("PYTEST_CURRENT_TEST")  # set by pytest while a test runs
    monkeypatch.delenv("SLTT_KERNELS_JIT", raising=False)
    monkeypatch.setenv("SLTT_KERNELS_CACHE", str(tmp_path))  # an empty cache: it would have to build
    module, info, why = _jit_build.load_or_build()
    assert module is None and "inside a test" in why  # a test never starts a long build by accident
    assert list(tmp_path.iterdir()) == []


@needs_checkout
def test_jit_allowed_with_a_compiler(monkeypatch):
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler")
    from torch.utils import cpp_extension

    monkeypatch.setenv("SLTT_KERNELS_JIT", "1")
    monkeypatch.delenv("SLTT_KERNELS_NO_JIT", raising=False)
    csrc, why = _jit_build.jit_decision()
    if not cpp_extension.is_ninja_available():
        assert csrc is None and "ninja" in why
    else:
        assert (csrc, why) == (_build_facts.source_dir(), None) and csrc is not None


def test_mismatched_build_tries_the_jit_then_falls_back(restore_load, monkeypatch):
    calls = []
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": "1.0.0+other", "with_cuda": False})
    monkeypatch.setattr(_jit_build, "load_or_build",
                        lambda: calls.append(1) or (None, None, "no just-in-time build: test"))
    with pytest.warns(RuntimeWarning, match="built for torch 1.0.0"):
        assert _ext.load(force=True) is None
    assert calls == [1]
    assert "rebuild" in _ext.unavailable_reason() and "no just-in-time build: test" in _ext.unavailable_reason()


def test_mismatched_build_uses_the_jit_module(restore_load, monkeypatch):
    fake = object()
    info = {"torch": torch.__version__, "with_cuda": False, "jit": True}
    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": "1.0.0+other"})
    monkeypatch.setattr(_jit_build, "load_or_build", lambda: (fake, info, None))
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
    with_cuda, why = _build_facts.cuda_build_decision(CSRC)
    assert not with_cuda and "cuda_runtime.h" in why and str(tmp_path) in why
    assert _build_facts.cuda_build_decision(CSRC, no_cuda=True) == (False, "SLTT_KERNELS_NO_CUDA is set")


def _run_as_a_group(cmd, timeout, **kw):
    """subprocess.run(cmd, capture_output=True, text=True), in a session of its own: on a timeout
    the whole group is killed (a build's ninja and compilers outlive a killed Python otherwise)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.skipif(not hasattr(os, "killpg") or not os.path.isdir("/proc"), reason="no process groups or /proc")
def test_a_timed_out_run_leaves_no_child_behind(tmp_path):
    marker = tmp_path / "child.pid"
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(marker)!r}, 'w').write(str(child.pid)); time.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        _run_as_a_group([sys.executable, "-c", code], timeout=5)
    child = int(marker.read_text())
    for _ in range(50):  # killed; reaped by init shortly after
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as f:
            if f.read().split(") ")[-1].startswith("Z"):  # a zombie: dead, not yet reaped
                break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the grandchild outlived the timeout")


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
    out = _run_as_a_group([sys.executable, "-c", code], env=env, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "compiling the CPU kernels" in out.stderr and "jit ok" in out.stdout
    # the second start finds the cache: no compile message
    again = _run_as_a_group([sys.executable, "-c", code], env=env, timeout=120, cwd=str(tmp_path))
    assert again.returncode == 0 and "compiling" not in again.stderr, again.stderr


# ---- the cache under interrupted, damaged and concurrent builds (no compiler run: the build is faked) ----

def _fake_build(monkeypatch, cache, payload=b"\x7fELF a library", fail_cuda=False):
    """The cache in folder `cache`; cpp_extension.load replaced: records what the build folder held
    when the build started (in the list returned), writes a library; _load_library replaced:
    returns the path it was given, instead of loading it."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("SLTT_KERNELS_CACHE", str(cache))
    calls = []

    def load(name, sources, build_directory, with_cuda=False, **kw):
        calls.append(dict(held=sorted(os.listdir(build_directory)), with_cuda=with_cuda))
        if with_cuda and fail_cuda:
            raise RuntimeError("nvcc fatal: a CUDA compile error")
        path = os.path.join(build_directory, "_C.so")
        with open(path, "wb") as f:
            f.write(payload)
        return path

    monkeypatch.setattr(cpp_extension, "load", load)
    monkeypatch.setattr(_jit_build, "_load_library", lambda path: ("loaded", path))
    monkeypatch.setattr(_jit_build, "jit_decision", lambda: (_build_facts.source_dir(), None))
    monkeypatch.setattr(_jit_build, "cuda_build_decision", lambda csrc, no_cuda=False: (False, "test: CPU only"))
    monkeypatch.setenv("SLTT_KERNELS_JIT", "1")
    return calls


@needs_checkout
def test_a_killed_build_leaves_nothing_that_blocks_or_is_loaded(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path)
    directory = tmp_path / _jit_build.cache_key(_build_facts.source_dir(), False)
    directory.mkdir()
    # what a build killed by SIGTERM leaves: torch <= 2.13's lock file (it would wait on it
    # forever), a half-written object file and a library, but no record
    (directory / "lock").write_text("")
    (directory / "lif_cpu.o").write_bytes(b"\x7fELF cut")
    (directory / "_C.so").write_bytes(b"\x7fELF cut")
    module, info, why = _jit_build.load_or_build()
    assert why is None and module == ("loaded", str(directory / "_C.so"))
    assert calls == [dict(held=[_jit_build.LOCK_NAME], with_cuda=False)]  # all of it cleared before the build
    assert info["so_size"] == len(b"\x7fELF a library") and info["jit"]
    # the record says the build is complete: the next start loads it and builds nothing
    module, info2, why = _jit_build.load_or_build()
    assert module == ("loaded", str(directory / "_C.so")) and len(calls) == 1


@needs_checkout
@pytest.mark.parametrize("damage", ["truncate", "garbage", "record"])
def test_a_damaged_library_is_never_loaded_and_is_rebuilt(monkeypatch, tmp_path, damage):
    calls = _fake_build(monkeypatch, tmp_path)
    _, info, _ = _jit_build.load_or_build()
    library = info["path"]
    if damage == "truncate":  # loading this one raised SIGBUS
        with open(library, "r+b") as f:
            f.truncate(3)
    elif damage == "garbage":
        with open(library, "wb") as f:
            f.write(b"garbage of the same length!")
    else:
        with open(os.path.join(os.path.dirname(library), _jit_build.INFO_NAME), "w") as f:
            f.write('{"path": ')
    found, why = _jit_build._cached_build(os.path.dirname(library))
    assert found is None and ("does not match" in why or "incomplete" in why)
    module, _, why = _jit_build.load_or_build()
    assert why is None and len(calls) == 2  # built again


@needs_checkout
def test_a_complete_build_loads_without_a_compiler(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path)
    _jit_build.load_or_build()
    monkeypatch.setattr(_jit_build, "jit_decision",
                        lambda: (None, "no just-in-time build: no C++ compiler (c++) on PATH"))
    module, info, why = _jit_build.load_or_build()
    assert why is None and module[0] == "loaded" and len(calls) == 1


@needs_checkout
def test_a_second_process_waits_for_the_build_and_uses_it(monkeypatch, tmp_path):
    if _jit_build.fcntl is None:
        pytest.skip("no fcntl: builds are not locked on this platform")
    calls = _fake_build(monkeypatch, tmp_path)
    directory = tmp_path / _jit_build.cache_key(_build_facts.source_dir(), False)
    directory.mkdir()
    payload = b"\x7fELF built by the other process"
    record = dict(path=str(directory / "_C.so"), so_size=len(payload),
                  so_sha256=__import__("hashlib").sha256(payload).hexdigest(), torch=torch.__version__, jit=True)
    # the other process: holds the lock for a while, writes a complete build, exits
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, json, sys, time\n"
        f"f = open({str(directory / _jit_build.LOCK_NAME)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(1.5)\n"
        f"open({str(directory / '_C.so')!r}, 'wb').write({payload!r})\n"
        f"json.dump({record!r}, open({str(directory / _jit_build.INFO_NAME)!r}, 'w'))\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    csrc = _build_facts.source_dir()
    digest = _build_facts.sources_hash(csrc)
    module, info, why, _ = _jit_build._build(csrc, digest, str(directory), False, "test")
    holder.wait(timeout=30)
    assert why is None and module == ("loaded", str(directory / "_C.so")) and calls == []  # no second build


@needs_checkout
def test_a_failed_cuda_build_is_retried_for_the_cpu_and_remembered(monkeypatch, tmp_path, capsys):
    calls = _fake_build(monkeypatch, tmp_path, fail_cuda=True)
    monkeypatch.setattr(_jit_build, "cuda_build_decision", lambda csrc, no_cuda=False: (True, None))
    module, info, why = _jit_build.load_or_build()
    assert why is None and [c["with_cuda"] for c in calls] == [True, False]
    assert not info["with_cuda"] and info["why_not_cuda"].startswith("the CUDA build failed")
    assert "nvcc fatal" in info["why_not_cuda"] and "using the CPU kernels alone" in capsys.readouterr().err
    module, info, why = _jit_build.load_or_build()  # the next start: the CPU build, no new attempt
    assert why is None and len(calls) == 2 and "nvcc fatal" in info["why_not_cuda"]
    assert _jit_build.RETRY_CUDA_FLAG in info["why_not_cuda"]  # and how to try again
    monkeypatch.setenv(_jit_build.RETRY_CUDA_FLAG, "1")
    _jit_build.load_or_build()
    assert [c["with_cuda"] for c in calls] == [True, False, True]  # tried again; the CPU build stands in


@needs_checkout
def test_another_toolkit_gets_another_cuda_try(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    calls = _fake_build(monkeypatch, tmp_path, fail_cuda=True)
    monkeypatch.setattr(_jit_build, "cuda_build_decision", lambda csrc, no_cuda=False: (True, None))
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/opt/cuda-old")
    _jit_build.load_or_build()
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/opt/cuda-new")
    _jit_build.load_or_build()
    assert [c["with_cuda"] for c in calls] == [True, False, True]


@needs_checkout
def test_a_cached_cpu_build_does_not_hide_a_cuda_failure(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path, fail_cuda=True)
    _jit_build.load_or_build()  # a CPU build, made while CUDA was off
    monkeypatch.setattr(_jit_build, "cuda_build_decision", lambda csrc, no_cuda=False: (True, None))
    for _ in range(3):
        module, info, why = _jit_build.load_or_build()
        assert why is None and "nvcc fatal" in info["why_not_cuda"]
    assert [c["with_cuda"] for c in calls] == [False, True]  # one CUDA attempt, then remembered


@needs_checkout
def test_a_lock_held_too_long_is_not_remembered_as_a_failed_build(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path)
    monkeypatch.setattr(_jit_build, "cuda_build_decision", lambda csrc, no_cuda=False: (True, None))

    def held(self):
        raise _jit_build._LockTimeout("another process has held it for 1800 s")

    monkeypatch.setattr(_jit_build._BuildLock, "__enter__", held)
    module, info, why = _jit_build.load_or_build()
    assert module is None and "held" in why and calls == []
    cuda_folder = os.path.join(_jit_build.cache_root(), _jit_build.cache_key(_build_facts.source_dir(), True))
    assert _jit_build._cuda_failure(cuda_folder) is None  # nothing recorded: the next start tries CUDA


@needs_checkout
def test_a_file_system_that_cannot_lock_builds_unlocked(monkeypatch, tmp_path):
    if _jit_build.fcntl is None:
        pytest.skip("no fcntl")
    calls = _fake_build(monkeypatch, tmp_path)

    def no_locks(fd, op):
        raise OSError(__import__("errno").ENOLCK, "No locks available")

    monkeypatch.setattr(_jit_build.fcntl, "flock", no_locks)
    start = __import__("time").time()
    module, info, why = _jit_build.load_or_build()
    assert why is None and len(calls) == 1 and __import__("time").time() - start < 10


@needs_checkout
def test_a_symlinked_cache_folder_is_never_cleared(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path / "cache")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    (tmp_path / "cache").mkdir()
    os.symlink(home, tmp_path / "cache" / _jit_build.cache_key(_build_facts.source_dir(), False))
    module, info, why = _jit_build.load_or_build()
    assert module is None and "symbolic link" in why and calls == []
    assert (home / "thesis.tex").read_text() == "years of work"


@needs_checkout
def test_the_record_is_readable_by_others_as_the_umask_says(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path)
    old = os.umask(0o022)
    try:
        _, info, _ = _jit_build.load_or_build()
    finally:
        os.umask(old)
    record = os.path.join(os.path.dirname(info["path"]), _jit_build.INFO_NAME)
    assert os.stat(record).st_mode & 0o777 == 0o644


@needs_checkout
def test_an_intact_library_that_does_not_load_is_rebuilt_once(monkeypatch, tmp_path):
    calls = _fake_build(monkeypatch, tmp_path)
    _jit_build.load_or_build()
    loads = []

    def load_once_broken(path):
        loads.append(path)
        if len(loads) == 1:
            raise ImportError("undefined symbol: _ZN3c10 (another torch build of the same version)")
        return ("loaded", path)

    monkeypatch.setattr(_jit_build, "_load_library", load_once_broken)
    module, info, why = _jit_build.load_or_build()
    assert why is None and module[0] == "loaded" and len(calls) == 2


@needs_checkout
def test_nothing_else_is_loaded_once_a_build_is_loaded(monkeypatch, tmp_path):
    """cpp_extension.load registers the library's ops: a second library beside it would abort the
    process (an operator registered twice), so a later error keeps the loaded one."""
    calls = _fake_build(monkeypatch, tmp_path)
    monkeypatch.setattr(_jit_build, "cuda_build_decision", lambda csrc, no_cuda=False: (True, None))

    def no_space(path, data):
        raise OSError(__import__("errno").ENOSPC, "No space left on device")

    monkeypatch.setattr(_jit_build, "_write_json", no_space)
    module, info, why = _jit_build.load_or_build()
    assert why is None and module[0] == "loaded" and info["with_cuda"]
    assert [c["with_cuda"] for c in calls] == [True]  # no CPU build after it


def test_the_build_error_keeps_the_compilers_lines():
    e = RuntimeError("Error building extension '_C': [1/2] c++ -c ops.cpp\nFAILED: ops.o\n"
                     "ops.cpp:3:1: error: 'foo' was not declared in this scope\n"
                     "ninja: build stopped: subcommand failed.")
    why = _jit_build._build_error(e)
    assert "'foo' was not declared" in why and "build stopped" not in why


def test_the_import_survives_anything_the_jit_raises(restore_load, monkeypatch):
    def broken():
        raise FileNotFoundError("csrc/cpu/stale.h")  # e.g. a dangling symlink among the sources

    monkeypatch.setattr(_ext, "_read_build_info", lambda: {"torch": "1.0.0+other"})
    monkeypatch.setattr(_jit_build, "load_or_build", broken)
    with pytest.warns(RuntimeWarning, match="stale.h"):
        assert _ext.load(force=True) is None
    assert "stale.h" in _ext.unavailable_reason()


@pytest.mark.parametrize("why, category", [
    ("no just-in-time build: SLTT_KERNELS_NO_JIT is set", UserWarning),  # the setup's doing: what to do
    ("the just-in-time build failed in /cache/x: ops.cpp:3:1: error: 'foo' was not declared", RuntimeWarning),
    (None, None),  # SLTT_KERNELS_DISABLE_EXTENSION=1: off without a word
])
def test_a_build_never_made_is_said_once_by_its_kind(restore_load, monkeypatch, why, category):
    monkeypatch.setattr(_ext, "_read_build_info", lambda: None)  # never built
    monkeypatch.setattr(_jit_build, "load_or_build", lambda: (None, None, why))
    if why is None:
        monkeypatch.setenv("SLTT_KERNELS_DISABLE_EXTENSION", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _ext.load(force=True) is None
        assert not _ext.available() and _ext.unavailable_reason() and _ext.load() is None
    ours = [w for w in caught if "sltt_kernels" in str(w.message)]
    assert [w.category for w in ours] == ([category] if category else []), [str(w.message) for w in ours]
    if category:
        assert why in str(ours[0].message) and "pip install --no-build-isolation ." in str(ours[0].message)


def test_cuda_build_decision_needs_nvcc_beside_the_headers(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime.h").write_text("")  # pip's CUDA runtime wheel: headers, no nvcc
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    with_cuda, why = _build_facts.cuda_build_decision(CSRC)
    assert not with_cuda and "bin/nvcc" in why and str(tmp_path) in why


@needs_checkout
def test_cuda_cache_key_follows_the_architectures(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    sm90 = _jit_build.cache_key(CSRC, True)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    assert _jit_build.cache_key(CSRC, True) != sm90
    assert _jit_build.cache_key(CSRC, False) == _jit_build.cache_key(CSRC, False)
