// Bit-packing of spike tensors: the per-element math and the CPU block kernels shared by the
// CPU (cpu/spike_pack_cpu.cpp) and CUDA (cuda/spike_pack_cuda.cu) backends. No torch header:
// plain g++ and `nvcc -c` compile this alone.
//
// A tensor x of N elements (row-major order) is stored as
//   bits:  int32 [ceil(N / 32)], bit j of word w = (x[32 w + j] != 0), the neuron masks' layout
//          (lif_math.h); bits past N are 0;
//   scale: one value s in x's dtype such that every element of x is +0.0 or s.
// Unpacking writes bit ? s : +0.0, which equals x to the bit exactly when x is "two-valued":
// every element is +0.0 or one common value s. Spikes are ({0, 1}); so are spikes after a
// dropout ({0, 1/(1-p)}) or a constant gain ({0, 2.74}). The pack kernels find out whether x is
// two-valued while they pack, from a running range of x's nonzero values (a few comparisons per
// element, no second pass over x): x is two-valued when that range is a single value and no
// element is NaN or -0.0 (which would unpack as s or +0.0, not as itself).
#pragma once

#include <cstdint>
#include <cstring>

#include "lif_math.h"

namespace sltt {
namespace pack {

// The nonzero values seen so far: their min and max, and whether any element cannot be unpacked
// exactly (NaN, -0.0). The empty range is lo = +inf, hi = -inf. S: float (for float, half and
// bfloat16 inputs, which convert to float exactly) or double.
template <typename S>
struct Range {
  S lo;
  S hi;
  bool bad;
};

template <typename S>
LIF_HD Range<S> range_empty() {
  // INFINITY and NAN (<cmath>) rather than numeric_limits, which is host-only without
  // --expt-relaxed-constexpr
  return Range<S>{S(INFINITY), -S(INFINITY), false};
}

// The sign bit of v, read without the <cmath> signbit (not a device function on every toolchain).
LIF_HD bool sign_bit(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return (u >> 31) != 0u;
}
LIF_HD bool sign_bit(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  return (u >> 63) != 0u;
}

// The bit an element packs to. NaN packs to 1 and -0.0 to 0; both make the range bad.
template <typename S>
LIF_HD bool spike_bit(S v) {
  return !(v == S(0));
}

// Adds one element to the range. Selects rather than branches, so the CPU loop vectorises.
template <typename S>
LIF_HD void range_add(Range<S>& r, S v) {
  const bool zero = v == S(0);
  const bool nan = v != v;
  r.bad = r.bad | nan | (zero & sign_bit(v));
  const bool counts = !zero & !nan;
  r.lo = (counts & (v < r.lo)) ? v : r.lo;
  r.hi = (counts & (v > r.hi)) ? v : r.hi;
}

template <typename S>
LIF_HD Range<S> range_merge(const Range<S>& a, const Range<S>& b) {
  return Range<S>{b.lo < a.lo ? b.lo : a.lo, b.hi > a.hi ? b.hi : a.hi, a.bad || b.bad};
}

// The scale of a two-valued tensor from its range: its nonzero value, 1 when every element is
// +0.0 (any scale unpacks it; 1 is the spike's), NaN when the tensor is not two-valued.
template <typename S>
LIF_HD S range_scale(const Range<S>& r) {
  if (r.bad || r.lo < r.hi) return S(NAN);
  return r.lo > r.hi ? S(1) : r.lo;
}

// Element i of an unpacked tensor, as a bit (0 or 1).
LIF_HD uint32_t unpack_bit(const int32_t* bits, int64_t i) {
  return (uint32_t(bits[i >> 5]) >> (i & 31)) & 1u;
}

// ---------------------------------------------------------------------------------------------
// CPU block kernels. A block is kWords words (kWords * 32 elements); the last may be short.
// X is the element type (float, double, or the binding's 16-bit types, which convert to S).

constexpr int64_t kWordsPerBlock = 64;
constexpr int64_t kBlockElems = kWordsPerBlock * 32;

LIF_HD int64_t pack_words(int64_t n) { return lif_mask_words(n); }
LIF_HD int64_t pack_blocks(int64_t n) { return (n + kBlockElems - 1) / kBlockElems; }

// Packs elements [e0, e0 + len) of x (e0 a multiple of 32) into their words and adds them to r.
// A fixed trip count of 32 per word lets the compiler vectorise the OR and the range.
template <typename X, typename S>
LIF_HD void pack_block(const X* __restrict x, int64_t e0, int64_t len, int32_t* __restrict bits, Range<S>& r) {
  const int64_t full = len / 32;
  for (int64_t w = 0; w < full; ++w) {
    const X* xw = x + e0 + w * 32;
    uint32_t word = 0;
    Range<S> rw = range_empty<S>();
    for (int j = 0; j < 32; ++j) {
      const S v = S(xw[j]);
      word |= uint32_t(spike_bit(v)) << j;
      range_add(rw, v);
    }
    bits[e0 / 32 + w] = int32_t(word);
    r = range_merge(r, rw);
  }
  const int64_t tail = len - full * 32;
  if (tail > 0) {  // the tensor's last, partial word: its bits past N stay 0
    const X* xw = x + e0 + full * 32;
    uint32_t word = 0;
    for (int64_t j = 0; j < tail; ++j) {
      const S v = S(xw[j]);
      word |= uint32_t(spike_bit(v)) << j;
      range_add(r, v);
    }
    bits[e0 / 32 + full] = int32_t(word);
  }
}

// Writes elements [e0, e0 + len) of the unpacked tensor: bit ? s : +0.0, in X.
template <typename X>
LIF_HD void unpack_block(const int32_t* __restrict bits, X s, int64_t e0, int64_t len, X* __restrict out) {
  const X zero = X(0.0f);
  for (int64_t i = e0; i < e0 + len; ++i) out[i] = unpack_bit(bits, i) ? s : zero;
}

}  // namespace pack
}  // namespace sltt
