// Bit-packing of spike tensors: the per-element math and the CPU block kernels shared by the
// CPU (cpu/spike_pack_cpu.cpp) and CUDA (cuda/spike_pack_cuda_kernels.cu) backends. No torch header:
// plain g++ and `nvcc -c` compile this alone.
//
// A tensor x of N elements (row-major order) is stored as
//   bits:  int32 [ceil(N / 32)], bit j of word w = (x[32 w + j] is not +0.0), the neuron masks'
//          layout (lif_math.h); bits past N are 0;
//   scale: one value s in x's dtype.
// Unpacking writes bit ? s : +0.0, which equals x to the bit exactly when x is "two-valued":
// the bit pattern of every element is all zeros (+0.0) or one common pattern (s). Spikes are
// ({0, 1}); so are spikes after a dropout ({0, 1/(1-p)}) or a constant gain ({0, 2.74}).
//
// The kernels work on the elements' bit patterns U (uint16_t for float16/bfloat16, uint32_t for
// float32, uint64_t for float64), never on their values: a pattern is a spike bit when nonzero,
// and x is two-valued when the OR and the AND of its nonzero patterns agree (then every nonzero
// pattern is that one). Both are integer reductions, fused into the packing pass at no extra
// pass over x, and the verdict is exact for every input: -0.0, NaN and infinities included.
#pragma once

#include <cstdint>
#include <cstring>

#include "lif_math.h"

namespace sltt {
namespace pack {

// The OR and the AND of the nonzero bit patterns seen so far. Empty: {0, all ones}.
template <typename U>
struct Patterns {
  U any;
  U all;
};

template <typename U>
LIF_HD Patterns<U> patterns_empty() {
  return Patterns<U>{U(0), U(~U(0))};
}

// Adds one element's pattern. Selects rather than branches, so the CPU loop vectorises.
template <typename U>
LIF_HD void patterns_add(Patterns<U>& p, U u) {
  p.any = U(p.any | u);
  p.all = U(p.all & (u != U(0) ? u : U(~U(0))));
}

template <typename U>
LIF_HD Patterns<U> patterns_merge(const Patterns<U>& a, const Patterns<U>& b) {
  return Patterns<U>{U(a.any | b.any), U(a.all & b.all)};
}

// The scale's pattern: the common nonzero pattern; `one` (the dtype's 1.0) when every element
// is +0.0 (any scale unpacks it; 1 is the spike's); `nan` (the dtype's NaN) when x is not
// two-valued, which is how the layers learn to save x dense.
template <typename U>
LIF_HD U scale_pattern(const Patterns<U>& p, U one, U nan) {
  if (p.any == U(0)) return one;
  return p.any == p.all ? p.any : nan;
}

// Element i of an unpacked tensor, as a bit (0 or 1).
LIF_HD uint32_t unpack_bit(const int32_t* bits, int64_t i) {
  return (uint32_t(bits[i >> 5]) >> (i & 31)) & 1u;
}

// ---------------------------------------------------------------------------------------------
// CPU block kernels on bit patterns U. A block is kWordsPerBlock words; the last may be short.

constexpr int64_t kWordsPerBlock = 64;
constexpr int64_t kBlockElems = kWordsPerBlock * 32;

LIF_HD int64_t pack_words(int64_t n) { return lif_mask_words(n); }
LIF_HD int64_t pack_blocks(int64_t n) { return (n + kBlockElems - 1) / kBlockElems; }

// Packs elements [e0, e0 + len) of x (e0 a multiple of 32) into their words and adds them to p.
// A fixed trip count of 32 over local integer accumulators: vector compares, a movemask, ORs
// and ANDs.
template <typename U>
LIF_HD void pack_block(const U* __restrict x, int64_t e0, int64_t len, int32_t* __restrict bits, Patterns<U>& p) {
  const int64_t full = len / 32;
  U any = p.any;
  U all = p.all;
  for (int64_t w = 0; w < full; ++w) {
    const U* __restrict xw = x + e0 + w * 32;
    uint32_t word = 0;
    for (int j = 0; j < 32; ++j) {
      const U u = xw[j];
      word |= uint32_t(u != U(0)) << j;
      any = U(any | u);
      all = U(all & (u != U(0) ? u : U(~U(0))));
    }
    bits[e0 / 32 + w] = int32_t(word);
  }
  p = Patterns<U>{any, all};
  const int64_t tail = len - full * 32;
  if (tail > 0) {  // the tensor's last, partial word: its bits past N stay 0
    const U* xw = x + e0 + full * 32;
    uint32_t word = 0;
    for (int64_t j = 0; j < tail; ++j) {
      word |= uint32_t(xw[j] != U(0)) << j;
      patterns_add(p, xw[j]);
    }
    bits[e0 / 32 + full] = int32_t(word);
  }
}

// Writes elements [e0, e0 + len) of the unpacked tensor (e0 a multiple of 32): bit ? s : 0.
template <typename U>
LIF_HD void unpack_block(const int32_t* __restrict bits, U s, int64_t e0, int64_t len, U* __restrict out) {
  const int64_t full = len / 32;
  for (int64_t w = 0; w < full; ++w) {
    const uint32_t word = uint32_t(bits[e0 / 32 + w]);
    U* __restrict ow = out + e0 + w * 32;
    for (int j = 0; j < 32; ++j) ow[j] = ((word >> j) & 1u) ? s : U(0);
  }
  for (int64_t i = e0 + full * 32; i < e0 + len; ++i) out[i] = unpack_bit(bits, i) ? s : U(0);
}

// The bit pattern of a value (the bindings' 1.0 and NaN in each dtype).
template <typename U, typename X>
inline U pattern_of(X v) {
  static_assert(sizeof(U) == sizeof(X), "a pattern has the size of its value");
  U u;
  memcpy(&u, &v, sizeof u);
  return u;
}

}  // namespace pack
}  // namespace sltt
