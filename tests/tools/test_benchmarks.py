"""The benchmark scripts run end to end (tiny sizes), and their arguments are checked up front."""

import json
import os
import sys

import pytest
import torch

import sltt_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
pytestmark = pytest.mark.skipif(not os.path.isdir(BENCH), reason="benchmarks/ not present (tests run outside a checkout)")


def _import(name):
    sys.path.insert(0, BENCH)
    try:
        return __import__(name)
    finally:
        sys.path.remove(BENCH)


class _Common:
    """benchmarks/_common.py, imported on first use (the module skips without benchmarks/)."""

    def __getattr__(self, name):
        return getattr(_import("_common"), name)


C = _Common()


def test_memory_time_runs_and_sltt_memory_is_flat(tmp_path, capsys):
    memory_time = _import("memory_time")
    rows = memory_time.main(["--T", "1", "2", "3", "--batch-size", "2", "--iters", "1", "--warmup", "0",
                             "--methods", "bptt", "sltt", "sltt-k", "--K", "1", "--device", "cpu",
                             "--variants", "rect", "--threads", "1", "--out", str(tmp_path), "--no-plot"])
    out = capsys.readouterr().out
    assert "Table S2 layout" in out and "SLTT/BPTT mem" in out
    saved = {(r["T"], r["method"]): r["saved_MB"] for r in rows}
    assert saved[(1, "sltt")] == saved[(3, "sltt")] == saved[(3, "sltt-k")]
    assert saved[(3, "bptt")] == pytest.approx(3 * saved[(1, "bptt")], rel=0.02)
    # a CPU run without --full is the quick one: its own files, never over a committed full table
    assert (tmp_path / "memory_time_cpu_quick.json").exists() and (tmp_path / "memory_time_cpu_quick.csv").exists()
    assert not (tmp_path / "memory_time_cpu.json").exists()


def test_memory_time_variants_are_the_paper_neuron_and_rect():
    memory_time = _import("memory_time")
    by_name = {v.name: v for v in memory_time.variants()}
    assert {"paper", "rect"} <= set(by_name)
    paper = memory_time.neuron_factory("sltt", "reference", by_name["paper"])()
    rect = memory_time.neuron_factory("bptt", "reference", by_name["rect"])()
    assert (paper.tau, paper.v_reset, paper.decay_input) == (1.1, None, False)
    assert type(paper.surrogate_function).__name__ == "Triangle"
    assert type(rect.surrogate_function).__name__ == "Rect" and rect.tau == 1.1
    # the packed variants hand back the model itself, converted in place
    net = torch.nn.Sequential(sltt_kernels.nn.PaperLIFNode(), torch.nn.Linear(4, 3))
    assert by_name["rect-packed"].transform(net) is net
    assert type(net[1]).__name__ == "PackedLinear"


def test_memory_time_one_T_plots_bars(tmp_path):
    pytest.importorskip("matplotlib")
    memory_time = _import("memory_time")
    memory_time.main(["--T", "2", "--batch-size", "1", "--iters", "1", "--warmup", "0", "--methods", "sltt",
                      "--variants", "rect", "--threads", "1", "--device", "cpu", "--out", str(tmp_path)])
    assert (tmp_path / "memory_time_cpu_quick.png").stat().st_size > 0


BAD_ARGS = [
    (["--T", "0"], "--T"),
    (["--T", "-1"], "--T"),
    (["--T", "2", "0"], "--T"),
    (["--iters", "0"], "--iters"),
    (["--batch-size", "0"], "--batch-size"),
    (["--warmup", "-1"], "--warmup"),
    (["--backend", "bogus"], "--backend"),
    (["--T", "2", "--K", "3", "--full"], "--K"),  # the quick run has no sltt-k, so no K to check
    (["--variants", "nope"], "--variants"),
    (["--threads", "0"], "--threads"),
    (["--T", "2", "2"], "--T"),
    (["--methods", "bptt", "bptt"], "--methods"),
    (["--tag", "a/b"], "--tag"),
    (["--methods", "sj-bptt", "--variants", "rect-packed"], "nothing to run"),
]


@pytest.mark.parametrize("argv,flag", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_memory_time_rejects_bad_arguments_before_any_work(argv, flag, monkeypatch, capsys, tmp_path):
    memory_time = _import("memory_time")

    def no_work(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(memory_time, "load_batches", no_work)
    monkeypatch.setattr(memory_time, "run_method", no_work)
    with pytest.raises(SystemExit) as e:
        memory_time.main(argv + ["--device", "cpu", "--out", str(tmp_path), "--no-plot"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err.split("error:", 1)[1], err


def test_memory_time_out_naming_a_file_is_an_error_up_front(tmp_path, monkeypatch, capsys):
    memory_time = _import("memory_time")
    monkeypatch.setattr(memory_time, "load_batches", lambda *a, **k: pytest.fail("work started"))
    target = tmp_path / "a_file"
    target.write_text("")
    with pytest.raises(SystemExit):
        memory_time.main(["--device", "cpu", "--out", str(target)])
    assert "--out" in capsys.readouterr().err


def test_memory_time_one_T_with_sltt_only_ignores_K(tmp_path):
    memory_time = _import("memory_time")
    rows = memory_time.main(["--T", "1", "--methods", "sltt", "--batch-size", "1", "--iters", "1", "--warmup", "0",
                             "--variants", "rect", "--threads", "1", "--device", "cpu", "--out", str(tmp_path),
                             "--no-plot"])
    assert [r["method"] for r in rows] == ["sltt"]


def test_memory_time_unavailable_backend_is_an_error_up_front(tmp_path, monkeypatch, capsys):
    memory_time = _import("memory_time")
    monkeypatch.setattr(memory_time, "load_batches", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit):
        memory_time.main(["--device", "cpu", "--backend", "cuda", "--out", str(tmp_path)])
    assert "--backend" in capsys.readouterr().err


def test_memory_time_cpu_default_is_the_quick_headline_and_full_is_the_whole_table(tmp_path):
    memory_time = _import("memory_time")
    quick = memory_time.parse_args(["--device", "cpu", "--out", str(tmp_path)])
    assert quick.quick and quick.methods == memory_time.QUICK_METHODS
    assert [v.name for v in quick.variant_list] == memory_time.QUICK_VARIANTS
    assert (quick.iters, quick.warmup) == (memory_time.QUICK_ITERS, memory_time.QUICK_WARMUP)
    full = memory_time.parse_args(["--device", "cpu", "--full", "--out", str(tmp_path)])
    assert not full.quick and full.methods == memory_time.ALL_METHODS
    assert {v.name for v in full.variant_list} == {v.name for v in memory_time.variants()}
    assert full.iters is None  # run() picks the device's default (CPU 5)
    # given flags win over the quick defaults
    mine = memory_time.parse_args(["--device", "cpu", "--methods", "sltt", "--iters", "7", "--warmup", "2",
                                   "--out", str(tmp_path)])
    assert (mine.methods, mine.iters, mine.warmup) == (["sltt"], 7, 2)
    with pytest.raises(SystemExit):
        memory_time.parse_args(["--quick", "--full"])


def test_memory_time_quick_run_shows_sltt_memory_flat_in_T_up_front_estimate(tmp_path, capsys):
    memory_time = _import("memory_time")
    assert memory_time.probe_Ts([6]) == [2, 4] and memory_time.probe_Ts([1]) == [] and memory_time.probe_Ts([2, 4]) == []
    rows = memory_time.main(["--T", "3", "--batch-size", "1", "--iters", "1", "--methods", "bptt", "sltt",
                             "--variants", "rect", "--threads", "1", "--device", "cpu", "--out", str(tmp_path),
                             "--no-plot"])
    out = capsys.readouterr().out
    head, rest = out.split("## Headline", 1)
    assert "quick run" in head and "s on 2 cores" in head  # the estimate comes before any work
    written = json.loads((tmp_path / "memory_time_cpu_quick.json").read_text())
    saved = {(r["T"], r["method"]): r["saved_MB"] for r in written["rows"] + written["machine"]["saved_only_rows"]}
    assert saved[(1, "sltt")] == saved[(2, "sltt")] == saved[(3, "sltt")]
    assert saved[(3, "bptt")] == pytest.approx(3 * saved[(1, "bptt")], rel=0.02)
    assert f"SLTT {saved[(1, 'sltt')]:.1f} {saved[(2, 'sltt')]:.1f} {saved[(3, 'sltt')]:.1f}" in rest
    assert "SLTT/BPTT mem" in rest and [r["T"] for r in rows] == [3, 3]


def test_memory_time_headline_compares_with_spikingjelly():
    memory_time = _import("memory_time")
    rows = [dict(variant="paper", T=6, method=m, saved_MB=mb, iter_ms=ms)
            for m, mb, ms in (("bptt", 600.0, 300.0), ("sltt", 100.0, 240.0), ("sj-bptt", 600.0, 600.0),
                              ("sj-sltt", 150.0, 960.0))]
    lines, ratios = memory_time.headline(rows, [], "saved_MB")
    (r,) = ratios
    assert r["SLTT/BPTT mem"] == pytest.approx(1 / 6) and r["SLTT/BPTT time"] == pytest.approx(0.8)
    assert r["BPTT ours/SJ time"] == pytest.approx(0.5) and r["SLTT ours/SJ time"] == pytest.approx(0.25)
    assert r["SLTT ours/SJ mem"] == pytest.approx(100 / 150)
    assert lines == ["  paper, saved MB at T = 6: SLTT 100.0; BPTT 600.0"]


def test_memory_time_packed_recompute_variant_only_when_the_model_takes_recompute(monkeypatch):
    memory_time = _import("memory_time")
    names = {v.name for v in memory_time.variants()}
    takes = memory_time.model_accepts("resnet18", "recompute")
    assert ("rect-packed+recompute" in names) == takes and ("paper-packed+recompute" in names) == takes
    monkeypatch.setattr(memory_time, "model_accepts", lambda model, option: True)
    by_name = {v.name: v for v in memory_time.variants()}
    v = by_name["rect-packed+recompute"]
    assert v.build == dict(pack_spike_inputs=True, recompute=True) and not v.peers and v.surrogate == "rect"
    assert not v.runs("sj-bptt") and v.runs("sltt-k")


def test_memory_time_packed_recompute_rows_run_and_save_less(tmp_path):
    memory_time = _import("memory_time")
    if not memory_time.model_accepts("resnet18", "recompute"):
        pytest.skip("the models do not take recompute=True in this version")
    rows = memory_time.main(["--full", "--T", "2", "--batch-size", "1", "--iters", "1", "--warmup", "0",
                             "--methods", "sltt", "--variants", "rect-packed", "rect-packed+recompute",
                             "--threads", "1", "--device", "cpu", "--out", str(tmp_path), "--no-plot"])
    saved = {r["variant"]: r["saved_MB"] for r in rows}
    assert 0 < saved["rect-packed+recompute"] < saved["rect-packed"]


def test_kernels_benchmark_runs_with_the_compiled_peer_in_both_modes(tmp_path, capsys):
    kernels = _import("kernels")
    # backend 'eager': Dynamo traces the plain loop (the custom Function included) without
    # generating code, so that the test stays fast; the benchmark itself uses inductor.
    rows = kernels.main(["--device", "cpu", "--T", "2", "--N", "4K", "--repeats", "1", "--warmup", "0",
                         "--backends", "reference", "compiled", "--compile-backend", "eager",
                         "--out", str(tmp_path), "--no-plot"])
    got = {(r["mode"], r["backend"]) for r in rows}
    assert got == {("train", "reference"), ("train", "compiled"), ("infer", "reference"), ("infer", "compiled")}
    for r in rows:
        assert r["speedup_vs_compiled"] == pytest.approx(
            next(c for c in rows if c["mode"] == r["mode"] and c["backend"] == "compiled")["total_ms"] / r["total_ms"])
    infer = [r for r in rows if r["mode"] == "infer"]
    assert all(r["bwd_ms"] is None for r in infer)
    out = capsys.readouterr().out
    assert "x compiled" in out and "infer" in out


def test_kernels_inference_flag_runs_forward_only(tmp_path):
    kernels = _import("kernels")
    rows = kernels.main(["--device", "cpu", "--T", "2", "--N", "1K", "--repeats", "1", "--warmup", "0",
                         "--backends", "reference", "--inference", "--out", str(tmp_path), "--no-plot"])
    assert [r["mode"] for r in rows] == ["infer"]


def test_packed_time_runs_both_copies_in_turns_and_reports_the_ratios(tmp_path, capsys):
    packed_time = _import("packed_time")
    rows = packed_time.main(["--T", "2", "--batch-size", "1", "--iters", "2", "--warmup", "0", "--methods", "sltt",
                             "--variants", "rect", "--device", "cpu", "--threads", "1", "--out", str(tmp_path)])
    (row,) = rows
    assert row["time_ratio"] == pytest.approx(row["packed_ms"] / row["plain_ms"])
    assert row["packed_saved_MB"] < 0.6 * row["plain_saved_MB"]  # the spike inputs kept as 1 bit
    assert "time packed/plain" in capsys.readouterr().out
    assert (tmp_path / "packed_time_cpu.json").exists() and (tmp_path / "packed_time_cpu.csv").exists()


@pytest.mark.parametrize("argv", [["--T", "0"], ["--iters", "0"], ["--methods", "sltt-k", "--T", "2", "--K", "3"],
                                  ["--variants", "rect-packed"]])
def test_packed_time_rejects_bad_arguments(argv, capsys):
    packed_time = _import("packed_time")
    with pytest.raises(SystemExit):
        packed_time.parse_args(argv)
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_kernels_turn_orders_let_each_backend_follow_every_other_equally_often(n):
    kernels = _import("kernels")
    orders = kernels.balanced_orders(n)
    assert all(sorted(o) == list(range(n)) for o in orders)
    follows = {}
    for o in orders:
        for a, b in zip(o, o[1:]):
            follows[(a, b)] = follows.get((a, b), 0) + 1
    assert set(follows) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(follows.values())) <= 1


def test_kernels_turns_call_every_backend_once_per_repeat_in_changing_order():
    kernels = _import("kernels")
    calls = []

    def runner(name):
        def run(x):
            calls.append(name)
            return x
        return run

    names = ["a", "b", "c", "d"]
    medians = kernels.bench_interleaved({n: runner(n) for n in names}, torch.ones(2, 3), None,
                                        kernels.C.Timer(torch.device("cpu")), warmup=0, repeats=4)
    assert set(medians) == set(names) and len(calls) == 16
    turns = [tuple(calls[i:i + 4]) for i in range(0, 16, 4)]
    assert all(sorted(t) == names for t in turns) and len(set(turns)) == 4
    before_a = {t[t.index("a") - 1] for t in turns if t.index("a") > 0}
    assert before_a == {"b", "c", "d"}


def test_kernels_rows_give_the_fraction_of_the_copy_ceiling_on_cpu(tmp_path):
    kernels = _import("kernels")
    rows = kernels.main(["--device", "cpu", "--T", "2", "--N", "4K", "--repeats", "1", "--warmup", "0",
                         "--mode", "infer", "--out", str(tmp_path), "--no-plot", "--no-csv"]
                        + ["--backends", "cpu" if sltt_kernels.available_backends()["cpu"] is None else "reference"])
    for r in rows:
        if r["backend"] == "cpu":
            assert r["copy_fraction"] > 0 and r["GBps"] > 0


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("grad", ["bptt", "sltt"])
@pytest.mark.parametrize("surrogate", ["rect", "triangle", "sigmoid"])
def test_plain_lif_loop_matches_the_reference(reset, grad, surrogate):
    plain_lif = _import("plain_lif")
    import sltt_kernels

    kw = dict(tau=2.0, v_threshold=1.0, v_reset=None if reset == "soft" else 0.0, decay_input=False,
              detach_reset=reset == "hard", surrogate=surrogate, grad=grad)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 300, generator=gen, dtype=torch.float64) * 1.5 + 0.9).requires_grad_(True)
    g = torch.randn(5, 300, generator=gen, dtype=torch.float64)
    param = sltt_kernels.surrogate.resolve(surrogate).param
    s1, v1 = plain_lif.make_lif_loop(surrogate_param=param, **kw)(x)
    s2, v2 = sltt_kernels.reference.lif_multistep(x, **kw)
    assert torch.equal(s1, s2) and torch.allclose(v1, v2)
    (g1,) = torch.autograd.grad(s1, x, g)
    (g2,) = torch.autograd.grad(s2, x, g)
    assert torch.allclose(g1, g2)


KERNELS_BAD_ARGS = [
    (["--backends", "bogus"], "--backends"),
    (["--N", "1.5M"], "--N"),
    (["--N", "inf"], "--N"),
    (["--N=-1K"], "--N"),
    (["--N", "1K", "1024"], "--N"),
    (["--T", "2", "2"], "--T"),
    (["--tag", "a/b"], "--tag"),
    (["--compile-backend", "bogus"], "--compile-backend"),
    (["--inference", "--mode", "train"], "--inference"),
]


@pytest.mark.parametrize("argv,flag", KERNELS_BAD_ARGS, ids=[" ".join(a) for a, _ in KERNELS_BAD_ARGS])
def test_kernels_rejects_bad_arguments_before_any_work(argv, flag, capsys, tmp_path):
    kernels = _import("kernels")
    with pytest.raises(SystemExit) as e:
        kernels.parse_args(["--device", "cpu", "--out", str(tmp_path)] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err.split("error:", 1)[1], err


def test_kernels_out_inside_a_file_is_an_error_up_front(tmp_path, capsys):
    kernels = _import("kernels")
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit):
        kernels.parse_args(["--device", "cpu", "--out", str(tmp_path / "f" / "sub")])
    assert "--out" in capsys.readouterr().err


def test_kernels_with_no_runnable_backend_is_an_error_not_an_empty_table(tmp_path):
    kernels = _import("kernels")
    with pytest.raises(SystemExit) as e:
        kernels.main(["--device", "cpu", "--T", "2", "--N", "1K", "--repeats", "1", "--backends", "cuda",
                      "--out", str(tmp_path), "--no-plot"])
    assert "none of --backends can run here" in str(e.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text,n", [("300", 300), ("64K", 65536), ("1m", 1 << 20), (" 2G ", 2 << 30)])
def test_sizes_are_whole_numbers_with_binary_suffixes(text, n):
    assert C.parse_size(text) == n


@pytest.mark.parametrize("text", ["1.5M", "inf", "nan", "-1K", "1e6", "K", "", "1KB"])
def test_other_sizes_are_refused(text):
    with pytest.raises(ValueError):
        C.parse_size(text)


def test_outputs_without_rows_name_only_the_file_written(tmp_path):
    written = C.write_outputs(str(tmp_path), "empty", {"machine": "x"}, [])
    assert written == (str(tmp_path / "empty.json"),)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]


def test_progress_to_a_file_is_one_line_per_stage(capsys):
    # stderr under capsys is not a terminal: plain lines, not tqdm's in-place redraws
    bar = C.progress_bar(total=6, desc="bench")
    for stage in ("a", "a", "b", "b", "b", "b"):
        bar.set_postfix_str(stage)
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines  # stage a, stage b, and the end
    assert lines[0].startswith("[1/6") and lines[-1].startswith("[6/6") and "\r" not in "".join(lines)


def test_kernels_of_copy_is_measured_on_the_case_in_its_turns(tmp_path):
    kernels = _import("kernels")
    rows = kernels.main(["--device", "cpu", "--T", "2", "--N", "4K", "--repeats", "3", "--warmup", "0",
                         "--backends", "cpu", "reference", "--mode", "infer", "--out", str(tmp_path), "--no-plot"])
    ours = next(r for r in rows if r["backend"] == "cpu")
    assert ours["copy_fraction"] == pytest.approx(ours["GBps"] / ours["copy_GBps"])
    assert {r["backend"] for r in rows} == {"cpu", "reference"}  # the copy is no row of its own


def test_kernels_bytes_count_what_the_forward_saved():
    kernels = _import("kernels")
    one_bit = kernels.fused_bytes(6, 1000, torch.float32, "train")
    assert one_bit == (6 * 1000 * 8 + 750, 6 * 1000 * 8 + 750)
    four_bytes = kernels.fused_bytes(6, 1000, torch.float32, "train", saved_bytes=24000)
    assert four_bytes == (6 * 1000 * 8 + 24000, 6 * 1000 * 8 + 24000)


def test_compile_time_times_eager_alone_and_in_turns_and_keeps_the_copies_equal(tmp_path, capsys):
    compile_time = _import("compile_time")
    # backend 'aot_eager': the same graphs and our ops' fake kernels, without inductor's code
    # generation (minutes on a CPU); the benchmark itself uses inductor
    rows = compile_time.main(["--model", "digits", "--T", "2", "--batch-size", "3", "--iters", "2", "--warmup", "1",
                              "--alone", "2", "--compile-backend", "aot_eager", "--threads", "1", "--device", "cpu",
                              "--out", str(tmp_path)])
    assert [r["method"] for r in rows] == ["sltt", "bptt"]
    for r in rows:
        assert r["speedup"] == pytest.approx(r["eager_ms"] / r["compiled_ms"])
        assert r["turns_vs_alone"] == pytest.approx(r["eager_ms"] / r["eager_alone_ms"])
        assert r["eager_min_ms"] <= r["eager_ms"] <= r["eager_max_ms"]
        assert r["compiled_min_ms"] <= r["compiled_ms"] <= r["compiled_max_ms"]
        assert r["eager_alone_min_ms"] <= r["eager_alone_ms"] <= r["eager_alone_max_ms"]
        # the compiled copy takes the eager one's updates (the alone ones too): same last loss
        assert r["loss_gap"] < 1e-5, r
        assert r["graph_breaks"] == 0 and r["graphs"] >= 1
    data = json.loads((tmp_path / "compile_time_cpu.json").read_text())
    # torch was loaded before the script here, so its OpenMP policy is not the script's to set
    assert data["machine"]["omp_wait_policy_applied"] is False
    assert data["machine"]["alone"] == 2 and data["machine"]["compile_backend"] == "aot_eager"
    assert (tmp_path / "compile_time_cpu.csv").exists()
    out = capsys.readouterr().out
    assert "turns/alone" in out and "eager/compiled" in out


@pytest.mark.parametrize("argv,flag", [(["--alone", "-1"], "--alone"), (["--warmup", "-1"], "--warmup"),
                                       (["--iters", "0"], "--iters"), (["--compile-backend", "bogus"],
                                                                       "--compile-backend"),
                                       (["--methods", "sltt", "sltt"], "--methods")])
def test_compile_time_rejects_bad_arguments_before_any_work(argv, flag, capsys, tmp_path):
    compile_time = _import("compile_time")
    with pytest.raises(SystemExit) as e:
        compile_time.parse_args(["--out", str(tmp_path)] + argv)
    assert e.value.code == 2
    assert flag in capsys.readouterr().err.split("error:", 1)[1]


def test_norm_neuron_time_runs_the_pairs_in_turns(tmp_path, capsys):
    norm_neuron_time = _import("norm_neuron_time")
    rows = norm_neuron_time.main(["--batch-size", "2", "--iters", "2", "--warmup", "1", "--threads", "1",
                                  "--out", str(tmp_path), "--tag", "t"])
    assert len(rows) == 2 * len(norm_neuron_time.LAYERS)  # forward + backward, and forward alone, per shape
    assert all(r["plain_ms"] > 0 and r["fused_ms"] > 0 and r["fused_vs_plain"] > 0 for r in rows)
    assert "fused/plain" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "norm_neuron_time_cpu_t.json")
