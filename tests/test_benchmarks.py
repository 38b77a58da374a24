"""The benchmark scripts run end to end (tiny sizes): the README's main command must work."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
pytestmark = pytest.mark.skipif(not os.path.isdir(BENCH), reason="benchmarks/ not present (tests run outside a checkout)")


def _import(name):
    sys.path.insert(0, BENCH)
    try:
        return __import__(name)
    finally:
        sys.path.remove(BENCH)


def test_memory_time_runs_and_sltt_memory_is_flat(tmp_path, capsys):
    memory_time = _import("memory_time")
    rows = memory_time.main(["--T", "1", "2", "3", "--batch-size", "2", "--iters", "1", "--warmup", "0",
                             "--methods", "bptt", "sltt", "sltt-k", "--K", "1", "--device", "cpu",
                             "--out", str(tmp_path), "--no-plot"])
    out = capsys.readouterr().out
    assert "Table S2 layout" in out and "SLTT/BPTT mem" in out
    saved = {(r["T"], r["method"]): r["saved_MB"] for r in rows}
    assert saved[(1, "sltt")] == saved[(3, "sltt")] == saved[(3, "sltt-k")]
    assert saved[(3, "bptt")] == pytest.approx(3 * saved[(1, "bptt")], rel=0.02)
    assert (tmp_path / "memory_time_cpu.json").exists() and (tmp_path / "memory_time_cpu.csv").exists()


def test_kernels_benchmark_runs(tmp_path, capsys):
    kernels = _import("kernels")
    rows = kernels.main(["--device", "cpu", "--T", "2", "--N", "4K", "--repeats", "1", "--warmup", "0",
                         "--backends", "reference", "--out", str(tmp_path), "--no-plot"])
    assert rows and rows[0]["backend"] == "reference"
    assert "fwd+bwd ms" in capsys.readouterr().out
