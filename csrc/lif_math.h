// Per-element math shared by every neuron model and by the CPU and CUDA kernels
// (docs/design.md, sections 2 and 3).
//
// Everything here is an inline host/device function on a scalar state type S (float or
// double). No torch header: `nvcc -c` and plain g++ compile this alone. The per-model math
// (charge, fire, reset and their derivatives) lives in csrc/neurons/, one header per model.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LIF_HD __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define LIF_HD __forceinline
#else
#define LIF_HD inline __attribute__((always_inline))
#endif

namespace sltt {

// Encodings shared by every backend; the Python layer passes them as strings
// (sltt_kernels/_config.py holds the same tables).
enum class Neuron : int { LIF = 0, IF = 1, Leaky = 2 };
// Soft: v = h - theta s. Hard: v = s ? v_r : h. None: no reset (the leaky model's
// reset_mechanism='none'). The leaky model applies its reset at the next charge.
enum class Reset : int { Soft = 0, Hard = 1, None = 2 };
enum class Surrogate : int { Rect = 0, Triangle = 1, Sigmoid = 2, ATan = 3 };
// What the forward keeps for the backward (docs/design.md, section 3).
//   None:    nothing (no gradient needed)
//   Sg:      1 bit per element-step, sg != 0 (rect surrogate)                      [T, W]
//   SgSpike: 2 bit planes, sg != 0 and s[t] (rect, hard reset with detach_reset)   [2, T, W]
//   SgReset: 2 bit planes, sg != 0 and the reset flag applied at step t's charge   [2, T, W]
//            (the leaky model with reset to zero)
//   H:       h[t] in the state dtype; sg, s and dv/dh are recomputed from it        [T, N]
//   HV0:     the state before step 0, then h[t]: what the backward of a learnable   [T+1, N]
//            time constant (and of the leaky model's reset to zero) needs
//   H16:     d = h[t] - theta in x's 16-bit type (fp16, bf16 input), sign kept      [T, N]
//            exactly: half of H's bytes, error bounded (docs/design.md, section 3)
// W = ceil(N / 32) words per step; bit j of word w is neuron 32 w + j.
enum class Save : int { None = 0, Sg = 1, SgSpike = 2, H = 3, SgReset = 4, HV0 = 5, H16 = 6 };
enum class Grad : int { BPTT = 0, SLTT = 1 };

// Neuron constants, precomputed once per call in the state type.
template <typename S>
struct LIFParams {
  S lam;         // decay: the factor on the state (1 - 1/tau for LIF, beta for leaky)
  S c;           // input gain (1/tau for LIF with decay_input, else 1)
  S theta;       // firing threshold
  S v_r;         // reset potential (0 for soft reset)
  S alpha;       // surrogate sharpness (triangle, sigmoid, atan)
  S alpha2;      // alpha * alpha (triangle)
  S half_width;  // rect: a / 2
  S inv_width;   // rect: 1 / a
  bool c_is_k;   // with a learnable k = 1/tau: c = k (decay_input) rather than 1
};

// The parameters in the state type, rounded once from their double values, so that every
// backend uses the same constants. Also broadcasts state-type parameters to the CPU's lanes
// (S = Lanes<float>, csrc/cpu/lif_cpu_lanes.h), whose constructor from a scalar broadcasts.
template <typename S, typename D>
LIF_HD LIFParams<S> cast_params(const LIFParams<D>& d) {
  LIFParams<S> p;
  p.lam = S(d.lam);
  p.c = S(d.c);
  p.theta = S(d.theta);
  p.v_r = S(d.v_r);
  p.alpha = S(d.alpha);
  p.alpha2 = S(d.alpha2);
  p.half_width = S(d.half_width);
  p.inv_width = S(d.inv_width);
  p.c_is_k = d.c_is_k;
  return p;
}

// A learnable time constant arrives as a one-element tensor k = 1/tau (read on the device,
// so no host synchronisation): lam = 1 - k, c = k or 1.
template <typename S>
LIF_HD LIFParams<S> with_k(LIFParams<S> p, const S* k) {
  if (k) {
    const S kv = *k;
    p.lam = S(1) - kv;
    p.c = p.c_is_k ? kv : S(1);
  }
  return p;
}

LIF_HD float lif_fma(float a, float b, float c) { return fmaf(a, b, c); }
LIF_HD double lif_fma(double a, double b, double c) { return fma(a, b, c); }
LIF_HD float lif_exp(float a) { return expf(a); }
LIF_HD double lif_exp(double a) { return exp(a); }
// c ? a : b as a function: the models' forward math also runs on the CPU's vector of lanes
// (csrc/cpu/lif_cpu_lanes.h), whose mask cannot drive ?:, so that type overloads this.
template <typename S>
LIF_HD S lif_select(bool c, S a, S b) { return c ? a : b; }
// max as a select (fmax may be a library call on the CPU); NaN in a gives b.
template <typename S>
LIF_HD S lif_max(S a, S b) { return a > b ? a : b; }

// rect surrogate window: sg != 0 exactly when |h - theta| < a / 2. Written as two
// comparisons joined by a bitwise & (no branch), which compilers vectorise; -d is exact, so
// this is |d| < a/2 to the bit, and false for NaN.
template <typename S>
LIF_HD bool lif_rect_window(const LIFParams<S>& p, S h) {
  const S d = h - p.theta;
  return (d < p.half_width) & (-d < p.half_width);
}

// Surrogate derivative sg(d) of d = h - theta. A NaN gives NaN for triangle, sigmoid and atan,
// and 0 for rect (a 1-bit saved state cannot hold a NaN): docs/design.md, section 2.4.
template <Surrogate SG, typename S>
LIF_HD S lif_surrogate_d(const LIFParams<S>& p, S d) {
  if (SG == Surrogate::Rect) {
    return ((d < p.half_width) & (-d < p.half_width)) ? p.inv_width : S(0);
  } else if (SG == Surrogate::Triangle) {
    const S g = lif_fma(-p.alpha2, lif_max(d, -d), p.alpha);
    return g < S(0) ? S(0) : g;  // keeps a NaN
  } else if (SG == Surrogate::Sigmoid) {
    const S sig = S(1) / (S(1) + lif_exp(-p.alpha * d));
    return p.alpha * sig * (S(1) - sig);
  } else {
    // atan: alpha / 2 / (1 + (pi / 2 * alpha * d)^2)
    const S k = S(1.57079632679489661923) * p.alpha * d;
    return (p.alpha * S(0.5)) / lif_fma(k, k, S(1));
  }
}

template <Surrogate SG, typename S>
LIF_HD S lif_surrogate(const LIFParams<S>& p, S h) {
  return lif_surrogate_d<SG>(p, h - p.theta);
}

// Number of int32 words per step of a packed bit plane.
LIF_HD int64_t lif_mask_words(int64_t n) { return (n + 31) / 32; }

// Rows of the saved h tensor for T steps.
LIF_HD int64_t saved_h_rows(Save s, int64_t T) { return s == Save::HV0 ? T + 1 : T; }

}  // namespace sltt
