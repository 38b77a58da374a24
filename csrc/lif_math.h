// Per-element math shared by every neuron model and by the CPU and CUDA kernels
// (docs/design.md, sections 2 and 3): the enumerations as lists, the neuron constants, the
// surrogates' formulas.
//
// The math is inline host/device functions on a scalar state type S (float or double). No
// torch header: `nvcc -c` and plain g++ compile this alone. The per-model math
// (charge, fire, reset and their derivatives) lives in csrc/neurons/, one header per model.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

// The qualifiers of every per-element function (host and device under nvcc). The name stays
// LIF_HD although it serves every model: it is on almost every line of the kernels.
#if defined(__CUDACC__)
#define LIF_HD __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define LIF_HD __forceinline
#else
#define LIF_HD inline __attribute__((always_inline))
#endif

namespace sltt {

// ---------------------------------------------------------------------------------------------
// Enumerations as lists. Each list has one line per value, X(enumerator, code, "name"): the
// code is what the Python side and the Triton kernels pass (sltt_kernels/_config.py holds the
// same tables), the name is the op argument's string. SLTT_DEFINE_ENUM makes from a list the
// enum, its table (EnumInfo: the values and names in list order, for name_of and the parser in
// lif_options.h) and with_constant, the switch from a runtime value to a compile-time one that
// the dispatch (lif_dispatch.h) is built from. The order of a list is the order in which an
// error message names the values.

template <typename E>
struct EnumItem {
  E value;
  const char* name;
};

// Specialised by SLTT_DEFINE_ENUM: kArg (the op argument's name), kItems (list order).
template <typename E>
struct EnumInfo;

#define SLTT_ENUM_CODE_(id, code, name) id = code,
#define SLTT_ENUM_ITEM_(id, code, name) {E::id, name},
#define SLTT_ENUM_CASE_(id, code, name) \
  case E::id: return f(std::integral_constant<E, E::id>{});

#define SLTT_DEFINE_ENUM(Enum, ARG, LIST)                                     \
  enum class Enum : int { LIST(SLTT_ENUM_CODE_) };                            \
  template <>                                                                 \
  struct EnumInfo<Enum> {                                                     \
    using E = Enum;                                                           \
    static constexpr const char* kArg = ARG;                                  \
    static constexpr EnumItem<E> kItems[] = {LIST(SLTT_ENUM_ITEM_)};          \
  };                                                                          \
  /* f(std::integral_constant<Enum, v>) for the runtime value v; false for a \
     value outside the list. f returns bool. */                               \
  template <typename F>                                                       \
  bool with_constant(Enum v, F&& f) {                                         \
    using E = Enum;                                                           \
    switch (v) { LIST(SLTT_ENUM_CASE_) }                                      \
    return false;                                                             \
  }

// The name of a value ("?" for a value outside its list).
template <typename E>
inline const char* name_of(E v) {
  for (const auto& item : EnumInfo<E>::kItems)
    if (item.value == v) return item.name;
  return "?";
}

// The same switch for a flag (detach_reset).
template <typename F>
bool with_constant(bool v, F&& f) {
  return v ? f(std::integral_constant<bool, true>{}) : f(std::integral_constant<bool, false>{});
}

// Soft: v = h - theta s. Hard: v = s ? v_r : h. None: no reset (the leaky model's
// reset_mechanism='none'). Which a model has, and when it applies them, its header says
// (csrc/neurons/).
#define SLTT_RESETS(X) \
  X(Soft, 0, "soft")   \
  X(Hard, 1, "hard")   \
  X(None, 2, "none")
SLTT_DEFINE_ENUM(Reset, "reset", SLTT_RESETS)

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
//   SpikeState: 1 bit per element, s[t], for one SLTT step of a soft-reset, reset-now    [1, W]
//            model (LIF, IF) with a continuous surrogate: the backward also reads the step's
//            own output state v[t] (v = h - theta where it fired, else h, the same rounding),
//            so d = h - theta is v or v - theta bit for bit (docs/design.md, section 3)
// W = ceil(N / 32) words per step; bit j of word w is neuron 32 w + j.
#define SLTT_SAVES(X)          \
  X(None, 0, "none")           \
  X(Sg, 1, "sg")               \
  X(SgSpike, 2, "sg_spike")    \
  X(SgReset, 4, "sg_reset")    \
  X(H, 3, "h")                 \
  X(HV0, 5, "h_v0")            \
  X(H16, 6, "h16")              \
  X(SpikeState, 7, "spike_state")
SLTT_DEFINE_ENUM(Save, "save", SLTT_SAVES)

#define SLTT_GRADS(X)  \
  X(BPTT, 0, "bptt")   \
  X(SLTT, 1, "sltt")
SLTT_DEFINE_ENUM(Grad, "grad", SLTT_GRADS)

// The surrogates: one line here and the formula below (SurrogateFormula).
#define SLTT_SURROGATES(X)             \
  X(Rect, 0, "rect")                   \
  X(Triangle, 1, "triangle")           \
  X(Sigmoid, 2, "sigmoid")             \
  X(ATan, 3, "atan")                   \
  X(FastSigmoid, 4, "fast_sigmoid")
SLTT_DEFINE_ENUM(Surrogate, "surrogate", SLTT_SURROGATES)

// The neuron models' list (enum Neuron) is in csrc/neurons/neurons.h, beside their headers.

// Neuron constants, precomputed once per call in the state type.
template <typename S>
struct NeuronParams {
  S lam;         // decay: the factor on the state (1 - 1/tau for LIF, beta for leaky)
  S c;           // input gain (1/tau for LIF with decay_input, else 1)
  S theta;       // firing threshold
  S v_r;         // reset potential (0 for soft reset)
  S alpha;       // surrogate parameter (triangle, sigmoid, atan; fast_sigmoid: slope)
  S alpha2;      // alpha * alpha (triangle)
  S half_width;  // rect: a / 2
  S inv_width;   // rect: 1 / a
  bool c_is_k;   // with a learnable k = 1/tau: c = k (decay_input) rather than 1
};

// The parameters in the state type, rounded once from their double values, so that every
// backend uses the same constants. Also broadcasts state-type parameters to the CPU's lanes
// (S = Lanes<float>, csrc/cpu/lif_cpu_lanes.h), whose constructor from a scalar broadcasts.
template <typename S, typename D>
LIF_HD NeuronParams<S> cast_params(const NeuronParams<D>& d) {
  NeuronParams<S> p;
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

LIF_HD float lif_fma(float a, float b, float c) { return fmaf(a, b, c); }
LIF_HD double lif_fma(double a, double b, double c) { return fma(a, b, c); }
// The input of a neuron behind a per-channel affine map (a batch norm's apply): x * scale + shift,
// rounded after the product and again after the sum, as aten's batch norm and the reference
// compute it; nvcc would otherwise contract it into one fma (the CPU build has -ffp-contract=off).
#ifdef __CUDA_ARCH__
__device__ __forceinline__ float lif_affine_input(float x, float scale, float shift) {
  return __fadd_rn(__fmul_rn(x, scale), shift);
}
__device__ __forceinline__ double lif_affine_input(double x, double scale, double shift) {
  return __dadd_rn(__dmul_rn(x, scale), shift);
}
#else
template <typename S>
LIF_HD S lif_affine_input(S x, S scale, S shift) {
  return x * scale + shift;
}
#endif
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
LIF_HD bool lif_rect_window(const NeuronParams<S>& p, S h) {
  const S d = h - p.theta;
  return (d < p.half_width) & (-d < p.half_width);
}

// The surrogates' formulas: sg(d), the surrogate derivative of the spike at d = h - theta, one
// specialisation per line of SLTT_SURROGATES. Each formula's operations and their order are
// part of the contract: the CPU, CUDA, Triton and the reference compute them alike, and the
// tests compare the results bit for bit. kOneBit: sg takes one nonzero value, so a bit per
// element-step can hold it (the mask save kinds); a continuous surrogate is saved as h or h16.
// A NaN d gives NaN for every continuous surrogate, and 0 for rect (a 1-bit saved state cannot
// hold a NaN): docs/design.md, section 2.4.
template <Surrogate SG>
struct SurrogateFormula;

// rect, width a = alpha: 1/a where |d| < a/2, else 0 (the window of lif_rect_window)
template <>
struct SurrogateFormula<Surrogate::Rect> {
  static constexpr bool kOneBit = true;
  template <typename S>
  static LIF_HD S sg(const NeuronParams<S>& p, S d) {
    return ((d < p.half_width) & (-d < p.half_width)) ? p.inv_width : S(0);
  }
};

// triangle: max(0, alpha - alpha^2 |d|), as fma(-alpha^2, |d|, alpha)
template <>
struct SurrogateFormula<Surrogate::Triangle> {
  static constexpr bool kOneBit = false;
  template <typename S>
  static LIF_HD S sg(const NeuronParams<S>& p, S d) {
    const S g = lif_fma(-p.alpha2, lif_max(d, -d), p.alpha);
    return g < S(0) ? S(0) : g;  // keeps a NaN
  }
};

// sigmoid: alpha sig (1 - sig), sig = 1 / (1 + exp(-alpha d))
template <>
struct SurrogateFormula<Surrogate::Sigmoid> {
  static constexpr bool kOneBit = false;
  template <typename S>
  static LIF_HD S sg(const NeuronParams<S>& p, S d) {
    const S sig = S(1) / (S(1) + lif_exp(-p.alpha * d));
    return p.alpha * sig * (S(1) - sig);
  }
};

// atan: alpha / 2 / (1 + (pi / 2 * alpha * d)^2), the square as fma(k, k, 1)
template <>
struct SurrogateFormula<Surrogate::ATan> {
  static constexpr bool kOneBit = false;
  template <typename S>
  static LIF_HD S sg(const NeuronParams<S>& p, S d) {
    const S k = S(1.57079632679489661923) * p.alpha * d;
    return (p.alpha * S(0.5)) / lif_fma(k, k, S(1));
  }
};

// fast sigmoid (snnTorch's surrogate.fast_sigmoid), slope in the alpha slot:
// 1 / (slope |d| + 1)^2, computed in this order: r = 1 / fma(slope, |d|, 1), then sg = r * r.
// |d| is max(d, -d), which is NaN for a NaN d, so a NaN gives NaN.
template <>
struct SurrogateFormula<Surrogate::FastSigmoid> {
  static constexpr bool kOneBit = false;
  template <typename S>
  static LIF_HD S sg(const NeuronParams<S>& p, S d) {
    const S r = S(1) / lif_fma(p.alpha, lif_max(d, -d), S(1));
    return r * r;
  }
};

template <Surrogate SG, typename S>
LIF_HD S lif_surrogate_d(const NeuronParams<S>& p, S d) {
  return SurrogateFormula<SG>::sg(p, d);
}

template <Surrogate SG, typename S>
LIF_HD S lif_surrogate(const NeuronParams<S>& p, S h) {
  return lif_surrogate_d<SG>(p, h - p.theta);
}

// Number of int32 words per step of a packed bit plane.
LIF_HD int64_t lif_mask_words(int64_t n) { return (n + 31) / 32; }

// Rows of the saved h tensor for T steps.
LIF_HD int64_t saved_h_rows(Save s, int64_t T) { return s == Save::HV0 ? T + 1 : T; }

}  // namespace sltt
