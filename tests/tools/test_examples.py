"""Each example in examples/ runs to the end on small data (its --small flag), as a newcomer runs it."""

import importlib.util
import os
import subprocess
import sys

import pytest

import sltt_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES),
                                reason="examples/ not present (tests run outside a checkout)")

# example -> the optional packages it needs (skipped, with the reason, without them)
NEEDS = {
    "spikingjelly_sltt.py": ["spikingjelly"],
    "snntorch_tutorial.py": ["snntorch"],
    "custom_sltt_amp.py": [],
    "saved_memory.py": [],
    "export_nir.py": ["nir"],
    "torch_export.py": [],
}


def test_every_example_is_listed_here_and_short():
    found = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert found == sorted(NEEDS)
    for f in found:
        with open(os.path.join(EXAMPLES, f)) as fh:
            assert len(fh.readlines()) <= 85, f"{f} should stay short enough to read at once"


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_runs(name):
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} (pip install {' '.join(missing)})")
    env = dict(os.environ)
    # the sltt_kernels this process imported (the installed package in CI, else the checkout)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(sltt_kernels.__file__)),
                                         env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), "--small"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{name} printed nothing"
