// The op schemas of the torch.ops.sltt_kernels namespace, defined once for every backend.
// Backends register implementations in their own binding files (cpu/lif_cpu.cpp,
// cuda/lif_cuda.cpp); fake implementations and autograd are registered from Python
// (sltt_kernels/ops.py).
#include <Python.h>
#include <torch/library.h>

#include <string>

namespace sltt {
namespace cpu {
std::string select_isa(c10::string_view isa);
}
}  // namespace sltt

// Neuron keywords shared by every schema, in one place.
#define SLTT_NEURON_ARGS                                                                            \
  "float tau, float v_threshold, float? v_reset, bool decay_input, bool detach_reset, str surrogate, " \
  "float surrogate_param, str save, str grad"

TORCH_LIBRARY(sltt_kernels, m) {
  // x: [T, ...]; v0: [...] in the state dtype (float64 for float64 x, else float32).
  // grad: 'bptt' or 'sltt', the backward the saved state must serve.
  // saved: what the backward needs, by `save`: 'sg' int32 [T, ceil(N/32)], 'sg_spike' int32
  // [2, T, ceil(N/32)], 'h' [T, N] in the state dtype, 'none' an empty [0].
  m.def("lif_multistep_fwd(Tensor x, Tensor? v0, " SLTT_NEURON_ARGS
        ") -> (Tensor spikes, Tensor v_last, Tensor saved)");
  // grad_v0 is zero for grad='sltt' (v[t-1] is a constant there).
  m.def("lif_multistep_bwd(Tensor grad_spikes, Tensor? grad_v_last, Tensor saved, " SLTT_NEURON_ARGS
        ") -> (Tensor grad_x, Tensor grad_v0)");
  // One time step: x and v: [...]; saved as for T = 1.
  m.def("lif_step_fwd(Tensor x, Tensor v, " SLTT_NEURON_ARGS ") -> (Tensor spike, Tensor v_new, Tensor saved)");
  m.def("lif_step_bwd(Tensor grad_spike, Tensor? grad_v_new, Tensor saved, " SLTT_NEURON_ARGS
        ") -> (Tensor grad_x, Tensor grad_v)");
  // Test hook: choose the CPU kernels' instruction set ('auto', 'avx2', 'generic');
  // returns the one in use before the call.
  m.def("_cpu_isa(str isa) -> str", &sltt::cpu::select_isa);
}

// `import sltt_kernels._C` loads the library above; the module itself is empty.
static struct PyModuleDef sltt_kernels_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&sltt_kernels_module); }
