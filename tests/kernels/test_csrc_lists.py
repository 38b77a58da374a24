"""The C++ lists (csrc/): the neuron arguments' record against sltt_kernels._config.NeuronArgs,
the enumerations' codes and names, the dispatch they generate, and the fast sigmoid surrogate,
which was added as one list line and its formula (called through the raw native ops)."""

import math
import os
import re
import shutil
import subprocess
import typing

import pytest
import torch

from sltt_kernels import _config, _ext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")
needs_sources = pytest.mark.skipif(not os.path.isdir(CSRC), reason="csrc/ not present (tests run outside a checkout)")

# The codes the Python side and the Triton kernels pass, fixed: changing one is an interface change.
CODES = {
    "SLTT_NEURONS": {"lif": 0, "if": 1, "leaky": 2},
    "SLTT_SURROGATES": {"rect": 0, "triangle": 1, "sigmoid": 2, "atan": 3, "fast_sigmoid": 4},
    "SLTT_SAVES": {"none": 0, "sg": 1, "sg_spike": 2, "h": 3, "sg_reset": 4, "h_v0": 5, "h16": 6,
                   "spike_state": 7},
    "SLTT_RESETS": {"soft": 0, "hard": 1, "none": 2},
    "SLTT_GRADS": {"bptt": 0, "sltt": 1},
}
HEADER_OF = {"SLTT_NEURONS": os.path.join("neurons", "neurons.h"), "SLTT_NEURON_ARGS": "lif_options.h"}


def _list_entries(macro: str) -> list:
    """The X(...) entries of `#define MACRO(X)` in its header, each as a list of its fields."""
    with open(os.path.join(CSRC, HEADER_OF.get(macro, "lif_math.h"))) as f:
        text = f.read()
    match = re.search(r"#define " + macro + r"\(X\)((?:[^\n]*\\\n)*[^\n]*)", text)
    assert match is not None, f"no #define {macro}(X)"
    entries = re.findall(r"X\(([^()]*)\)", match.group(1))
    assert entries, f"{macro} has no entries"
    return [[field.strip() for field in entry.split(",")] for entry in entries]


def _enum_list(macro: str) -> list:
    """[(enumerator, code, name)] in list order."""
    return [(e, int(code), name.strip('"')) for e, code, name in _list_entries(macro)]


@needs_sources
def test_the_neuron_argument_list_is_NeuronArgs_in_schema_order():
    """csrc/lif_options.h's SLTT_NEURON_ARGS makes the op parameters and their parsing: the same
    names, in the same order, with the C++ type of each Python annotation."""
    cpp_type = {str: "c10::string_view", float: "double", bool: "bool"}
    entries = _list_entries("SLTT_NEURON_ARGS")
    assert [name for _, name, _ in entries] == list(_config.NeuronArgs._fields) == [
        "neuron", "decay", "input_gain", "decay_input", "v_threshold", "reset", "v_reset", "detach_reset", "surrogate",
        "surrogate_alpha", "save", "grad"]
    annotations = typing.get_type_hints(_config.NeuronArgs)
    assert [raw for raw, _, _ in entries] == [cpp_type[annotations[name]] for name in _config.NeuronArgs._fields]
    # a string argument is parsed into the enumeration whose argument name it is
    with open(os.path.join(CSRC, "lif_math.h")) as f:
        math_h = f.read()
    with open(os.path.join(CSRC, "neurons", "neurons.h")) as f:
        neurons_h = f.read()
    enums = dict(re.findall(r'SLTT_DEFINE_ENUM\((\w+), "(\w+)", \w+\)', math_h + neurons_h))
    for raw, name, parsed in entries:
        if raw == "c10::string_view":
            assert enums.get(parsed) == name, f"{name} is parsed as {parsed}, whose argument is {enums.get(parsed)}"
        else:
            assert parsed == raw


@needs_sources
@pytest.mark.parametrize("macro", sorted(CODES))
def test_enumeration_codes_and_names(macro):
    entries = _enum_list(macro)
    assert {name: code for _, code, name in entries} == CODES[macro]
    assert len({e for e, _, _ in entries}) == len(entries)


@needs_sources
def test_the_python_tables_agree_with_the_lists():
    """The code of a name in sltt_kernels._config is its code in C++ (C++ may know a surrogate
    before Python does: the lists grow at the end)."""
    tables = {"SLTT_SURROGATES": _config.SURROGATE_KINDS, "SLTT_SAVES": _config.SAVE_KINDS,
              "SLTT_RESETS": _config.RESETS, "SLTT_GRADS": _config.GRAD_MODES,
              "SLTT_NEURONS": sorted(_config.MODELS, key=lambda name: _config.MODELS[name].code)}
    for macro, names in tables.items():
        codes = {name: code for _, code, name in _enum_list(macro)}
        assert {name: codes.get(name) for name in names} == {name: i for i, name in enumerate(names)}, macro


def _native(name):
    return getattr(torch.ops.sltt_kernels, name)


def _args(**kw):
    base = dict(neuron="lif", decay=0.5, input_gain=0.5, decay_input=True, v_threshold=1.0, reset="soft", v_reset=0.0,
                detach_reset=False, surrogate="fast_sigmoid", surrogate_alpha=25.0, save="h", grad="bptt")
    base.update(kw)
    return tuple(base[f] for f in _config.NeuronArgs._fields)


@pytest.mark.skipif(_ext.unavailable_reason() is not None, reason="no compiled extension")
def test_parse_errors_name_every_value_of_the_list_in_order():
    x = torch.randn(2, 5, dtype=torch.float64)
    expected = {
        "neuron": "'lif', 'if' or 'leaky'",
        "reset": "'soft', 'hard' or 'none'",
        "surrogate": "'rect', 'triangle', 'sigmoid', 'atan' or 'fast_sigmoid'",
        "save": "'none', 'sg', 'sg_spike', 'sg_reset', 'h', 'h_v0', 'h16' or 'spike_state'",
        "grad": "'bptt' or 'sltt'",
    }
    with torch.inference_mode():  # the native op itself, without the Python validator
        for field, names in expected.items():
            with pytest.raises(ValueError) as info:
                _native("neuron_multistep_fwd")(x, None, None, *_args(**{field: "bogus"}))
            assert f"sltt_kernels: {field} must be {names}, got 'bogus'" in str(info.value)
        with pytest.raises(ValueError, match=re.escape("reset must be one of 'soft', 'hard' for this neuron, got 'none'")):
            _native("neuron_multistep_fwd")(x, None, None, *_args(neuron="if", decay=1.0, input_gain=1.0, reset="none"))


def _fast_sigmoid(slope: float, d: torch.Tensor) -> torch.Tensor:
    """snnTorch's fast sigmoid derivative, written out: 1 / (slope |d| + 1)^2."""
    return 1.0 / (slope * d.abs() + 1.0) ** 2


def _lif_bptt_by_hand(x, gs, decay, gain, theta, slope, detach):
    """LIF with a soft reset in float64, its backward written out (docs/design.md, 2.1 and 2.5)."""
    T = x.shape[0]
    v = torch.zeros_like(x[0])
    hs, spikes = [], []
    for t in range(T):
        h = decay * v + gain * x[t]
        s = (h >= theta).to(x.dtype)
        v = h - theta * s
        hs.append(h)
        spikes.append(s)
    gx = torch.empty_like(x)
    gv = torch.zeros_like(x[0])
    for t in reversed(range(T)):
        sg = _fast_sigmoid(slope, hs[t] - theta)
        dv_dh = torch.ones_like(sg) if detach else 1.0 - theta * sg
        gh = gs[t] * sg + gv * dv_dh
        gx[t] = gain * gh
        gv = decay * gh
    return torch.stack(spikes), torch.stack(hs), gx, gv


@pytest.mark.skipif(_ext.unavailable_reason() is not None, reason="no compiled extension")
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("T,N", [(1, 1), (5, 37), (3, 70)])
def test_fast_sigmoid_through_the_native_ops_equals_the_formula(T, N, detach):
    """surrogate='fast_sigmoid' (code 4, slope in surrogate_alpha) through the raw CPU ops, BPTT
    and SLTT, against the backward written out by hand in float64."""
    gen = torch.Generator().manual_seed(21 + T * N)
    x = torch.randn(T, N, dtype=torch.float64, generator=gen) * 1.5 + 0.6
    gs = torch.randn(T, N, dtype=torch.float64, generator=gen)
    slope = 7.0
    args = _args(surrogate_alpha=slope, detach_reset=detach)
    spikes_ref, h_ref, gx_ref, gv0_ref = _lif_bptt_by_hand(x, gs, 0.5, 0.5, 1.0, slope, detach)
    with torch.inference_mode():
        spikes, _, saved = _native("neuron_multistep_fwd")(x, None, None, *args)
        gx, gv0, _, _ = _native("neuron_multistep_bwd")(gs, None, saved, None, *args)
        sltt_args = _args(surrogate_alpha=slope, detach_reset=detach, grad="sltt")
        gx_sltt, gv0_sltt, _, _ = _native("neuron_multistep_bwd")(gs, None, saved, None, *sltt_args)
    assert torch.equal(spikes, spikes_ref)
    torch.testing.assert_close(saved, h_ref, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(gv0, gv0_ref, rtol=1e-12, atol=1e-13)
    # SLTT: gx = c gs sg(h - theta), no gradient to v0
    torch.testing.assert_close(gx_sltt, 0.5 * gs * _fast_sigmoid(slope, h_ref - 1.0), rtol=1e-13, atol=1e-14)
    assert torch.equal(gv0_sltt, torch.zeros_like(gv0_sltt))


@pytest.mark.skipif(_ext.unavailable_reason() is not None, reason="no compiled extension")
def test_fast_sigmoid_is_computed_in_its_documented_order_and_keeps_nan():
    """float32: r = 1 / fma(slope, |d|, 1), sg = r * r, each rounded to float32 (the fma emulated
    exactly: the product of two float32 numbers and 1 add up exactly in float64 where |d| is
    near the threshold, as here). A NaN input gives a NaN gradient."""
    gen = torch.Generator().manual_seed(4)
    h = (torch.rand(1, 301, generator=gen, dtype=torch.float64) * 4 - 2).to(torch.float32)
    h[0, 7] = float("nan")
    slope = 25.0
    args = _args(neuron="if", decay=1.0, input_gain=1.0, surrogate_alpha=slope, save="h", grad="sltt")
    with torch.inference_mode():
        # IF from v0 = 0 with T = 1: h = x exactly
        _, _, saved = _native("neuron_multistep_fwd")(h, None, None, *args)
        gs = torch.ones_like(h)
        gx = _native("neuron_multistep_bwd")(gs, None, saved, None, *args)[0]
    assert torch.equal(saved[~saved.isnan()], h[~h.isnan()])
    d = (h.double() - 1.0).to(torch.float32).double()  # h - theta in float32
    fma = (slope * d.abs() + 1.0).to(torch.float32)  # slope * |d| + 1 is exact in float64 here
    r = (1.0 / fma.double()).to(torch.float32)
    expected = (r.double() * r.double()).to(torch.float32)
    assert torch.isnan(gx[0, 7]) and torch.isnan(expected[0, 7])
    keep = ~expected.isnan()
    assert torch.equal(gx[keep], expected[keep])
    assert math.isclose(float(gx[0, 0]), float(_fast_sigmoid(slope, d[0, :1])), rel_tol=1e-6)


@pytest.mark.skipif(_ext.unavailable_reason() is not None, reason="no compiled extension")
def test_fast_sigmoid_saves_h16_and_never_a_bit_mask():
    """A continuous surrogate: 16-bit input saves h - theta in 16 bits; a 1-bit mask has no kernel."""
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(5)).to(torch.float16)
    args = _args(save="h16", grad="sltt")
    with torch.inference_mode():
        _, _, saved = _native("neuron_multistep_fwd")(x, None, None, *args)
        gx = _native("neuron_multistep_bwd")(torch.ones_like(x), None, saved, None, *args)[0]
        expected = (0.5 * _fast_sigmoid(25.0, saved.double())).to(torch.float16)
        torch.testing.assert_close(gx, expected, rtol=2e-3, atol=1e-6)
        _, _, mask = _native("neuron_multistep_fwd")(x.double(), None, None, *_args(surrogate="rect", save="sg"))
        with pytest.raises(ValueError, match="no backward kernel"):
            _native("neuron_multistep_bwd")(torch.ones_like(x.double()), None, mask, None, *_args(save="sg"))


# A launcher that records the instantiation each configuration dispatches to (lif_dispatch.h).
_RECORDER = r"""
#include <cstdio>
#include "lif_dispatch.h"
using namespace sltt;
template <bool H16>
struct Recorder {
  static constexpr bool kSupportsH16 = H16;
  int n = -1, r = -1, d = -1, g = -1, s = -1, G = -1;
  template <Neuron NM, Reset R, Save SV> void fwd() { n = int(NM); r = int(R); s = int(SV); }
  template <Neuron NM, Reset R, bool D, Surrogate SG, Save SV, Grad GR> void bwd() {
    n = int(NM); r = int(R); d = int(D); g = int(SG); s = int(SV); G = int(GR);
  }
};
template <bool H16> void table(int surrogates) {
  for (int n = 0; n < 3; ++n) for (int r = 0; r < 3; ++r) for (int s = 0; s < 7; ++s) {
    Recorder<H16> l;
    if (dispatch_fwd(l, Neuron(n), Reset(r), Save(s)))
      printf("fwd %d %d %d %d -> %d %d %d\n", int(H16), n, r, s, l.n, l.r, l.s);
  }
  for (int n = 0; n < 3; ++n) for (int r = 0; r < 3; ++r) for (int d = 0; d < 2; ++d)
  for (int g = 0; g < surrogates; ++g) for (int s = 0; s < 7; ++s) for (int G = 0; G < 2; ++G) {
    Recorder<H16> l;
    if (dispatch_bwd(l, Neuron(n), Reset(r), bool(d), Surrogate(g), Save(s), Grad(G)))
      printf("bwd %d %d %d %d %d %d %d -> %d %d %d %d %d %d\n", int(H16), n, r, d, g, s, G, l.n, l.r, l.d, l.g, l.s, l.G);
  }
}
int main() { table<false>(5); table<true>(5); }
"""


@needs_sources
def test_the_dispatch_treats_fast_sigmoid_as_every_continuous_surrogate(tmp_path):
    """The dispatch is written over the lists and traits: fast_sigmoid (one list line) reaches
    exactly the kernels atan reaches, with its own code; the mask kinds serve rect alone; every
    kernel a configuration reaches is the one of its model, reset and save kind (SLTT's shared
    kernel and the detached kernels of a detached model aside)."""
    gxx = shutil.which("g++") or shutil.which("c++")
    if gxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "rec.cpp").write_text(_RECORDER)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # scripts/asan_raw_ops.sh preloads libasan
    out = subprocess.run([gxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-I", CSRC, str(tmp_path / "rec.cpp"),
                          "-o", str(tmp_path / "rec")], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    lines = subprocess.run([str(tmp_path / "rec")], capture_output=True, text=True, timeout=60, check=True,
                           env=env).stdout
    fwd, bwd = {}, {}
    for line in lines.splitlines():
        kind, rest = line.split(" ", 1)
        key, value = rest.split(" -> ")
        (fwd if kind == "fwd" else bwd)[tuple(map(int, key.split()))] = tuple(map(int, value.split()))
    rect, atan, fast = 0, 3, 4
    assert fwd and bwd
    for (h16, n, r, d, g, s, G), (kn, kr, kd, kg, ks, kG) in bwd.items():
        assert kg == g and kG == G
        if s in (1, 2, 4):  # the mask kinds
            assert g == rect
            assert ks == (1 if G == 1 else s)  # SLTT reads plane 0 of any mask
        if G == 0:
            assert (kn, kr, ks) == (n, r, s) and kd in (d, 1)
    for (h16, n, r, d, g, s, G), kernel in bwd.items():
        if g == atan:
            assert bwd.get((h16, n, r, d, fast, s, G)) == kernel[:3] + (fast,) + kernel[4:]
        if g == fast:
            assert (h16, n, r, d, atan, s, G) in bwd
    # LIF, soft reset, 1-bit mask, BPTT: the paper's default has its kernel
    assert bwd[(0, 0, 0, 0, rect, 1, 0)] == (0, 0, 0, rect, 1, 0)
    # h16 only where the launcher's element type is 16-bit
    assert not any(key[0] == 0 and key[5] == 6 for key in bwd) and any(key[0] == 1 and key[5] == 6 for key in bwd)
    assert not any(key[0] == 0 and key[3] == 6 for key in fwd)
