// A vector of lanes of the state type S, one 64-byte cache line wide (16 floats, 8 doubles),
// on which the models' forward math (charge, fire, reset; csrc/neurons/) runs unchanged: the
// CPU forward without saved state (inference) keeps a chunk's state in registers through all T
// steps, as a compiler's fused loop would, instead of the L1 array of a block (docs/design.md,
// section 5). GCC's vector extensions only, no intrinsics: the line is held as two 32-byte
// halves (two independent chains; one AVX2 register each), each operator is one vector
// instruction per half on the AVX2 target (the only copy that uses it: on plain SSE2, GCC does
// the 32-byte comparisons lane by lane), and lif_fma stays a fused multiply-add per lane, so the
// results are the scalar path's (NaN payloads aside: which operand's payload an add of two NaNs
// keeps depends on the compiler's operand order). The build passes -Wno-psabi
// (sltt_kernels/_ext.py): GCC notes that 32-byte vector arguments changed ABI, which matters for
// calls between object files only, and every function here is inlined. No torch header.
#pragma once

#include <cstring>

#include "../lif_math.h"

#if defined(__GNUC__) && !defined(__clang__)
#define LIF_CPU_LANES 1
#else
#define LIF_CPU_LANES 0  // the scalar blocks serve every configuration
#endif

#if LIF_CPU_LANES
namespace sltt {
namespace cpu {

// The overloads below would otherwise hide the scalar ones from the kernels in this namespace.
using ::sltt::lif_fma;
using ::sltt::lif_select;

// The 32-byte vector of each state type (GCC drops vector_size on a type that depends on a
// template parameter, so one specialisation per type). 32 bytes rather than 64: on an AVX2
// target GCC keeps a 64-byte vector's fused multiply-add lane by lane (measured 8x slower).
template <typename S>
struct HalfLine;
template <>
struct HalfLine<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct HalfLine<double> {
  typedef double type __attribute__((vector_size(32)));
};

template <typename S>
struct Lanes {
  typedef typename HalfLine<S>::type Vec;
  static constexpr int64_t kHalf = 32 / sizeof(S);
  static constexpr int64_t kWidth = 2 * kHalf;
  Vec lo, hi;

  Lanes() = default;
  // A broadcast (the models' S(0), the parameters): s - (+0) is s for every s, -0 and NaN
  // included, where +0 + s would turn -0 into +0.
  LIF_HD Lanes(S s) : lo(s - Vec{}), hi(s - Vec{}) {}
  LIF_HD Lanes(Vec l, Vec h) : lo(l), hi(h) {}
  static LIF_HD Lanes load(const S* p) {
    Lanes r;
    std::memcpy(&r.lo, p, sizeof(Vec));
    std::memcpy(&r.hi, p + kHalf, sizeof(Vec));
    return r;
  }
  LIF_HD void store(S* p) const {
    std::memcpy(p, &lo, sizeof(Vec));
    std::memcpy(p + kHalf, &hi, sizeof(Vec));
  }
};

// The result of comparing lanes: all bits set where true (integer vectors of S's width).
template <typename S>
struct LaneMask {
  typedef decltype(typename Lanes<S>::Vec{} < typename Lanes<S>::Vec{}) Vec;
  Vec lo, hi;
};

// The operations the models' charge, fire and reset use (a new model's forward may need more).
template <typename S>
LIF_HD Lanes<S> operator+(Lanes<S> a, Lanes<S> b) { return {a.lo + b.lo, a.hi + b.hi}; }
template <typename S>
LIF_HD Lanes<S> operator-(Lanes<S> a, Lanes<S> b) { return {a.lo - b.lo, a.hi - b.hi}; }
// the input's x * in_scale + in_shift (lif_affine_input; -ffp-contract=off keeps it two roundings)
template <typename S>
LIF_HD Lanes<S> operator*(Lanes<S> a, Lanes<S> b) { return {a.lo * b.lo, a.hi * b.hi}; }
template <typename S>
LIF_HD LaneMask<S> operator>=(Lanes<S> a, Lanes<S> b) { return {a.lo >= b.lo, a.hi >= b.hi}; }
template <typename S>
LIF_HD LaneMask<S> operator>(Lanes<S> a, Lanes<S> b) { return {a.lo > b.lo, a.hi > b.hi}; }

// Found by argument-dependent lookup from the models' templates (namespace sltt).
template <typename S>
LIF_HD Lanes<S> lif_select(LaneMask<S> c, Lanes<S> a, Lanes<S> b) {
  return {c.lo ? a.lo : b.lo, c.hi ? a.hi : b.hi};
}

// Lane by lane through the scalar lif_fma, which GCC turns into one vector FMA per half on the
// AVX2+FMA target the lanes run on.
template <typename V>
LIF_HD V lif_fma_half(V a, V b, V c) {
  V r;
  for (int64_t l = 0; l < int64_t(sizeof(V) / sizeof(a[0])); ++l) r[l] = ::sltt::lif_fma(a[l], b[l], c[l]);
  return r;
}
template <typename S>
LIF_HD Lanes<S> lif_fma(Lanes<S> a, Lanes<S> b, Lanes<S> c) {
  return {lif_fma_half(a.lo, b.lo, c.lo), lif_fma_half(a.hi, b.hi, c.hi)};
}

}  // namespace cpu
}  // namespace sltt

#endif  // LIF_CPU_LANES
