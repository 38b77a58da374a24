// Per-element LIF math shared by the CPU and CUDA kernels (DESIGN.md section 2).
//
// Everything here is an inline host/device function on a scalar state type S (float or
// double). No torch header: `nvcc -c` and plain g++ compile this alone. The charge is written
// as two explicit fused multiply-adds in one fixed order; the Triton kernels use the same
// order, so h, the spikes and the saved masks agree bit for bit across backends.
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

// Encodings shared by every backend; the Python layer passes them as strings.
enum class Reset : int { Soft = 0, Hard = 1 };
enum class Surrogate : int { Rect = 0, Triangle = 1, Sigmoid = 2, ATan = 3 };
// What the forward keeps for the backward (DESIGN.md section 3).
//   None:    nothing (no gradient needed)
//   Sg:      1 bit per element-step, sg != 0 (rect surrogate)
//   SgSpike: 2 bit planes, sg != 0 and s (rect surrogate, hard reset with detach_reset)
//   H:       h itself in the state dtype; sg and dv/dh are recomputed from it
enum class Save : int { None = 0, Sg = 1, SgSpike = 2, H = 3 };
enum class Grad : int { BPTT = 0, SLTT = 1 };

// Neuron constants, precomputed once per call in the state type.
template <typename S>
struct LIFParams {
  S lam;         // 1 - 1/tau
  S c;           // 1/tau if decay_input else 1
  S theta;       // firing threshold
  S v_r;         // reset potential (0 for soft reset)
  S alpha;       // surrogate sharpness (triangle, sigmoid, atan)
  S alpha2;      // alpha * alpha (triangle)
  S half_width;  // rect: a / 2
  S inv_width;   // rect: 1 / a
};

// The parameters in the state type, rounded once from their double values, so that every
// backend uses the same constants.
template <typename S>
LIF_HD LIFParams<S> cast_params(const LIFParams<double>& d) {
  LIFParams<S> p;
  p.lam = S(d.lam);
  p.c = S(d.c);
  p.theta = S(d.theta);
  p.v_r = S(d.v_r);
  p.alpha = S(d.alpha);
  p.alpha2 = S(d.alpha2);
  p.half_width = S(d.half_width);
  p.inv_width = S(d.inv_width);
  return p;
}

LIF_HD float lif_fma(float a, float b, float c) { return fmaf(a, b, c); }
LIF_HD double lif_fma(double a, double b, double c) { return fma(a, b, c); }
LIF_HD float lif_exp(float a) { return expf(a); }
LIF_HD double lif_exp(double a) { return exp(a); }
// max as a select (fmax may be a library call on the CPU); NaN in a gives b.
template <typename S>
LIF_HD S lif_max(S a, S b) { return a > b ? a : b; }

// charge: h = v_r + lam * (v - v_r) + c * x, as fma(lam, v - v_r, fma(c, x, v_r)).
template <typename S>
LIF_HD S lif_charge(const LIFParams<S>& p, S v, S x) {
  return lif_fma(p.lam, v - p.v_r, lif_fma(p.c, x, p.v_r));
}

// fire: s = 1 if h >= theta (Heaviside with H(0) = 1, as SpikingJelly).
template <typename S>
LIF_HD bool lif_fire(const LIFParams<S>& p, S h) {
  return h >= p.theta;
}

// reset, written as a select so that it is exact in every backend.
template <Reset R, typename S>
LIF_HD S lif_reset(const LIFParams<S>& p, S h, bool spike) {
  if (R == Reset::Soft) return spike ? h - p.theta : h;
  return spike ? p.v_r : h;
}

// rect surrogate window: sg != 0 exactly when |h - theta| < a / 2. Written as two
// comparisons joined by a bitwise & (no branch), which compilers vectorise; -d is exact, so
// this is |d| < a/2 to the bit, and false for NaN.
template <typename S>
LIF_HD bool lif_rect_window(const LIFParams<S>& p, S h) {
  const S d = h - p.theta;
  return (d < p.half_width) & (-d < p.half_width);
}

// Surrogate derivative sg(h - theta).
template <Surrogate SG, typename S>
LIF_HD S lif_surrogate(const LIFParams<S>& p, S h) {
  const S d = h - p.theta;
  if (SG == Surrogate::Rect) {
    return lif_rect_window(p, h) ? p.inv_width : S(0);
  } else if (SG == Surrogate::Triangle) {
    const S g = lif_fma(-p.alpha2, lif_max(d, -d), p.alpha);
    return lif_max(g, S(0));
  } else if (SG == Surrogate::Sigmoid) {
    const S sig = S(1) / (S(1) + lif_exp(-p.alpha * d));
    return p.alpha * sig * (S(1) - sig);
  } else {
    // atan: alpha / 2 / (1 + (pi / 2 * alpha * d)^2)
    const S k = S(1.57079632679489661923) * p.alpha * d;
    return (p.alpha * S(0.5)) / lif_fma(k, k, S(1));
  }
}

// dv[t]/dh[t] through the reset (DESIGN.md section 2).
template <Reset R, bool Detach, typename S>
LIF_HD S lif_dv_dh(const LIFParams<S>& p, S h, bool spike, S sg) {
  if (R == Reset::Soft) {
    if (Detach) return S(1);
    return lif_fma(-p.theta, sg, S(1));
  }
  const S keep = spike ? S(0) : S(1);
  if (Detach) return keep;
  return lif_fma(-(h - p.v_r), sg, keep);
}

// Number of int32 words per step of a packed bit plane.
LIF_HD int64_t lif_mask_words(int64_t n) { return (n + 31) / 32; }

}  // namespace sltt
