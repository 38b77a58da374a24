// Kernel arguments shared by the CPU and CUDA kernels: raw pointers and sizes, no torch type.
// X is the input/output element type, S the state type (float, or double for float64 input).
#pragma once

#include <cstdint>

#include "lif_math.h"

namespace sltt {

// 16-bit storage of d = h - theta (Save::H16), specialised by each binding for its 16-bit
// element types with
//   static X from(float d);   // round to nearest even; a nonzero d never becomes a zero
//   static float to(X q);
template <typename X>
struct Store16 {
  static constexpr bool kIs16 = false;
};

template <typename X, typename S>
struct FwdArgs {
  const X* x;        // [T, N] input
  const S* v0;       // [N] initial state, or nullptr for v_r
  const S* k;        // [1] learnable 1/tau, or nullptr for the constants in p
  X* spikes;         // [T, N]
  S* v_last;         // [N]
  int32_t* mask;     // Save::Sg, SpikeState: [T, W]; SgSpike, SgReset: [2, T, W]; else nullptr
                     // (W = ceil(N/32))
  S* h;              // Save::H: [T, N]; Save::HV0: [T + 1, N]; else nullptr
  X* d16;            // Save::H16: [T, N] h - theta in X (16-bit); else nullptr
  int64_t T;
  int64_t N;
  NeuronParams<S> p;
};

template <typename X, typename S>
struct BwdArgs {
  const X* grad_spikes;  // [T, N]
  const S* grad_v_last;  // [N], or nullptr for zero (BPTT only)
  const int32_t* mask;   // as in FwdArgs
  const S* h;            // as in FwdArgs
  const X* d16;          // as in FwdArgs
  const S* k;            // as in FwdArgs
  const S* v_new;        // Save::SpikeState: [N] the step's output state (T = 1); else nullptr
  X* grad_x;             // [T, N]
  S* grad_v0;            // [N]: BPTT writes dL/dv0; nullptr to skip
  S* grad_k;             // [N] per-neuron partial sums of dL/dk (summed by the binding), or nullptr
  int64_t T;
  int64_t N;
  NeuronParams<S> p;
};

}  // namespace sltt
