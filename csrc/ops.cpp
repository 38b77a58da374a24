// The Python module sltt_kernels._C and the CPU test hook.
//
// The op schemas of the torch.ops.sltt_kernels namespace are defined once, in Python
// (sltt_kernels/_registration.py, from the argument list in sltt_kernels/_config.py), before
// this library is loaded; the backends register their implementations in their own binding
// files (cpu/lif_cpu.cpp, cuda/lif_cuda.cpp).
#include <Python.h>
#include <torch/library.h>

#include <string>

namespace sltt {
namespace cpu {
std::string select_isa(c10::string_view isa);
}
}  // namespace sltt

TORCH_LIBRARY_FRAGMENT(sltt_kernels, m) {
  // Test hook: choose the CPU kernels' instruction set ('auto', 'avx2', 'generic');
  // returns the one in use before the call.
  m.def("_cpu_isa(str isa) -> str", &sltt::cpu::select_isa);
}

// `import sltt_kernels._C` loads the library above; the module itself is empty.
static struct PyModuleDef sltt_kernels_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&sltt_kernels_module); }
