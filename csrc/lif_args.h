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

// A per-neuron value read through the neuron's channel: element n reads
// p[((n / inner) % count) * stride]. One value: count 1; one per channel of a [B, C, ...] state:
// inner = the elements per channel of one sample, count = C; one per neuron: inner 1, count N,
// stride 1. p == nullptr: not given.
template <typename S>
struct ChannelValues {
  const S* p = nullptr;
  int64_t inner = 1;
  int64_t count = 1;
  int64_t stride = 0;
  LIF_HD S at(int64_t n) const {
    // in 32 bits where every operand fits (a GPU has no 64-bit divider: one costs tens of
    // instructions, per element at T = 1)
    if (((n | inner | count) >> 31) == 0)
      return p[int64_t((uint32_t(n) / uint32_t(inner)) % uint32_t(count)) * stride];
    return p[((n / inner) % count) * stride];
  }
};

template <typename X, typename S>
struct FwdArgs {
  const X* x;        // [T, N] input
  const S* v0;       // [N] initial state, or nullptr for v_r
  const S* k;        // the model's k (LIF: 1/tau; leaky: beta), one (k_step 0) or one per neuron
                     // (k_step 1), or nullptr for the constants in p
  int64_t k_step;
  const S* theta;    // the threshold, one (theta_step 0) or one per neuron (theta_step 1), or
                     // nullptr for p.theta
  int64_t theta_step;
  // The neuron's input is x * in_scale + in_shift (a batch norm's apply, docs/design.md, section
  // 4.3), rounded as lif_affine_input does; both set or both nullptr (x as given).
  ChannelValues<S> in_scale;
  ChannelValues<S> in_shift;
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
  int64_t k_step;
  const S* theta;        // as in FwdArgs
  int64_t theta_step;
  const S* v_new;        // Save::SpikeState: [N] the step's output state (T = 1); else nullptr
  X* grad_x;             // [T, N]
  S* grad_v0;            // [N]: BPTT writes dL/dv0; nullptr to skip
  S* grad_k;             // [N] dL/dk of each neuron (summed by the binding for one k), or nullptr
  S* grad_theta;         // [N] dL/dtheta of each neuron (summed likewise), or nullptr
  int64_t T;
  int64_t N;
  NeuronParams<S> p;
};

// The parameters of neuron n: p with its k and threshold where they are tensors. One k or
// threshold is read through a step of 0, so every neuron reads element 0.
template <typename M, typename A>
LIF_HD auto params_at(const A& a, int64_t n) {
  auto p = a.p;
  if (a.k) p = M::with_k(p, a.k[n * a.k_step]);
  if (a.theta) p.theta = a.theta[n * a.theta_step];
  return p;
}

// True when every neuron has the same parameters (no tensor, or one-element tensors).
template <typename A>
LIF_HD bool uniform_params(const A& a) {
  return (!a.k || a.k_step == 0) && (!a.theta || a.theta_step == 0);
}

}  // namespace sltt
