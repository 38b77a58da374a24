"""Every module of the package imports, and no two modules import each other, even indirectly
(an import cycle makes the import order matter and breaks lazy imports)."""

import ast
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import sltt_kernels

PACKAGE_DIR = os.path.dirname(sltt_kernels.__file__)


def _modules():
    names = ["sltt_kernels"]
    for info in pkgutil.walk_packages([PACKAGE_DIR], prefix="sltt_kernels."):
        names.append(info.name)
    return sorted(n for n in names if os.path.exists(_source(n)))  # not the compiled _C


def _source(name):
    rel = name.split(".")[1:]
    path = os.path.join(PACKAGE_DIR, *rel)
    return os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"


def _imports(name, known):
    """The package modules `name` imports anywhere in its source (function-level imports too)."""
    is_pkg = _source(name).endswith("__init__.py")
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(open(_source(name)).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("sltt_kernels"):
                continue
            for alias in node.names:  # `from pkg import module` names the module itself
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    out.discard(name)
    return {m for m in out if m in known}


def test_every_module_imports():
    for name in _modules():
        if name.startswith("sltt_kernels.triton.") and sltt_kernels.available_backends()["triton"] is not None:
            continue  # needs Triton (and a GPU or the interpreter)
        importlib.import_module(name)


def test_no_import_cycles():
    known = set(_modules())
    graph = {m: _imports(m, known) for m in known}
    # a package imports what its __init__ imports; its submodules reaching the package itself
    # for a name defined there would be a cycle too
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = "done"

    for m in sorted(known):
        if m not in state:
            visit(m)


def test_importing_the_package_needs_no_compiler_and_no_triton():
    """With the extension disabled and Triton unimportable, `import sltt_kernels` still works."""
    code = ("import sys; sys.modules['triton'] = None\n"
            "import sltt_kernels, torch\n"
            "s, v = sltt_kernels.lif_multistep(torch.ones(2, 3))\n"
            "print(sltt_kernels.available_backends()['cpu'])")
    env = dict(os.environ, SLTT_KERNELS_DISABLE_EXTENSION="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "disabled" in out.stdout
