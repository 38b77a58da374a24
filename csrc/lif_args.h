// Kernel arguments shared by the CPU and CUDA kernels: raw pointers and sizes, no torch type.
// X is the input/output element type, S the state type (float, or double for float64 input).
#pragma once

#include <cstdint>

#include "lif_math.h"

namespace sltt {

template <typename X, typename S>
struct FwdArgs {
  const X* x;        // [T, N] input
  const S* v0;       // [N] initial membrane potential, or nullptr for v_r
  X* spikes;         // [T, N]
  S* v_last;         // [N]
  int32_t* mask;     // Save::Sg: [T, W]; Save::SgSpike: [2, T, W]; else nullptr (W = ceil(N/32))
  S* h;              // Save::H: [T, N]; else nullptr
  int64_t T;
  int64_t N;
  LIFParams<S> p;
};

template <typename X, typename S>
struct BwdArgs {
  const X* grad_spikes;  // [T, N]
  const S* grad_v_last;  // [N], or nullptr for zero (BPTT only)
  const int32_t* mask;   // as in FwdArgs
  const S* h;            // as in FwdArgs
  X* grad_x;             // [T, N]
  S* grad_v0;            // [N]: BPTT writes lam * gh[0]; nullptr to skip
  int64_t T;
  int64_t N;
  LIFParams<S> p;
};

}  // namespace sltt
