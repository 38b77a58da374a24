// Fused neuron kernels for the CPU: templates over the input dtype X, the state dtype S and the
// configuration, so the hot loops carry no runtime branches. No torch header here: the glue
// (checks, dtype dispatch, threading) lives in lif_cpu.cpp.
//
// Work is split into blocks of kBlock neurons. A block walks t = 0..T-1 (forward) or
// T-1..0 (backward) with its state v (or the temporal gradient gv) in a small array that
// stays in L1, and the inner loop over the block's neurons is contiguous and vectorisable.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../lif_args.h"
#include "../lif_math.h"
#include "../neurons/neurons.h"
#include "lif_cpu_lanes.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define LIF_CPU_X86 1
#else
#define LIF_CPU_X86 0
#endif

namespace sltt {
namespace cpu {

// A multiple of 32 so that mask words never straddle two blocks.
constexpr int64_t kBlock = 256;

inline int64_t num_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

// Packs kBlock-aligned flags (0 or ~0u) into words: bit j of word w = flag 32w + j. Flags
// past the block's length must be 0. A fixed trip count of 32 lets the OR-reduction vectorise.
LIF_HD void pack_flags(const uint32_t* flags, int64_t len, int32_t* words) {
  for (int64_t w = 0; w * 32 < len; ++w) {
    uint32_t word = 0;
    for (int j = 0; j < 32; ++j) word |= flags[w * 32 + j] & (1u << j);
    words[w] = int32_t(word);
  }
}

// The inverse: flags[i] = bit i (0 or 1) for the block's len neurons, rounded up to a word.
LIF_HD void unpack_flags(const int32_t* words, int64_t len, uint32_t* flags) {
  for (int64_t w = 0; w * 32 < len; ++w) {
    const uint32_t word = uint32_t(words[w]);
    for (int j = 0; j < 32; ++j) flags[w * 32 + j] = (word >> j) & 1u;
  }
}

// Asks for the next block's stretch of a row (kBlock elements, one request per cache line) while
// this block computes. A block reads each row kBlock elements at a time before it turns to the
// next row, too short a run for the hardware prefetcher to get ahead; on data that is not in
// cache (a layer's input after other work) each run otherwise starts by waiting on memory.
// Measured (T = 6, N = 1M, fp32 inference, 2-core Xeon, in turns with other ops): 3-19% less
// time; on data already in cache, no change. Nearer (T0) or further (two blocks) requests, or
// the input row alone, gained less. Only whole blocks inside the row are requested, so the
// pointer arithmetic stays within the tensor.
template <typename P>
LIF_HD void prefetch_next_block(const P* row, int64_t n0, int64_t N, bool for_write) {
#if defined(__GNUC__) || defined(__clang__)
  if (n0 + 2 * kBlock > N) return;
  constexpr int64_t kLine = 64 / sizeof(P);  // elements per 64-byte cache line
  const P* next = row + kBlock;
  for (int64_t j = 0; j < kBlock; j += kLine) {
    if (for_write)
      __builtin_prefetch(next + j, 1, 2);
    else
      __builtin_prefetch(next + j, 0, 2);
  }
#else
  (void)row, (void)n0, (void)N, (void)for_write;
#endif
}

// The parameters of one block's neurons (lam, c, theta: what k and a threshold tensor set),
// copied to arrays the inner loops read contiguously, the same shared values where no tensor
// sets them: the loops then have no branch on where a parameter comes from.
template <typename S>
struct BlockParams {
  S lam[kBlock];
  S c[kBlock];
  S theta[kBlock];
  template <typename M, typename A>
  LIF_HD void fill(const A& a, const NeuronParams<S>& p, bool uniform, int64_t n0, int64_t len) {
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<S> q = uniform ? p : params_at<M>(a, n0 + i);
      lam[i] = q.lam;
      c[i] = q.c;
      theta[i] = q.theta;
    }
  }
  LIF_HD NeuronParams<S> at(NeuronParams<S> p, int64_t i) const {
    p.lam = lam[i];
    p.c = c[i];
    p.theta = theta[i];
    return p;
  }
};

// out[i] = v.at(n0 + i) for a block: one division for the block, then run by run (a run of `inner`
// neurons shares one value; a loop the compiler turns into vector stores). At T = 1, an SLTT step,
// a division or a branch per element cost as much as the neuron itself.
template <typename S>
LIF_HD void fill_channel_values(const ChannelValues<S>& v, int64_t n0, int64_t len, S* out) {
  int64_t within = n0 % v.inner;  // position inside the current channel's run
  int64_t c = (n0 / v.inner) % v.count;
  if (v.inner == 1) {  // channels_last, or one value per neuron: a value each
    for (int64_t i = 0; i < len; ++i) {
      out[i] = v.p[c * v.stride];
      if (++c == v.count) c = 0;
    }
    return;
  }
  for (int64_t i = 0; i < len;) {
    const int64_t run = std::min(len - i, v.inner - within);
    const S value = v.p[c * v.stride];
    for (int64_t j = 0; j < run; ++j) out[i + j] = value;
    i += run;
    within = 0;
    if (++c == v.count) c = 0;
  }
}

#if LIF_CPU_LANES
// The forward without saved state (inference) when x is in the state dtype: chunks of one cache
// line of neurons take all T steps with the state in registers, reading and writing T rows of one
// line each, a pattern the hardware prefetchers follow. A block's L1 array (below) costs a load
// and a store of the state per element-step: measured (T = 6, N = 1M, fp32, 2-core Xeon, data in
// cache) 1.23-1.25 ms against 1.03 ms this way. Returns the neurons done (whole chunks from n0);
// the block path takes the rest.
template <typename S, Neuron NM, Reset R, bool Affine = false>
LIF_HD int64_t lif_fwd_lanes(const FwdArgs<S, S>& a, const NeuronParams<S>& p, int64_t n0, int64_t len,
                             const S* in_scale = nullptr, const S* in_shift = nullptr) {
  using M = NeuronModel<NM>;
  using L = Lanes<S>;
  const NeuronParams<L> pl = cast_params<L>(p);
  const L one(S(1));
  const L zero(S(0));
  // locals, so that the stores need not be assumed to change them
  const S* __restrict x = a.x;
  const S* __restrict v0 = a.v0;
  S* __restrict spikes = a.spikes;
  S* __restrict v_last = a.v_last;
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t whole = len / L::kWidth * L::kWidth;
  for (int64_t i = 0; i < whole; i += L::kWidth) {
    const int64_t n = n0 + i;
    L v = v0 ? L::load(v0 + n) : pl.v_r;
    // Affine: the block's values (fill_channel_values), from the block's start
    const L scale = Affine ? L::load(in_scale + i) : one;
    const L shift = Affine ? L::load(in_shift + i) : zero;
    for (int64_t t = 0; t < T; ++t) {
      L xt = L::load(x + t * N + n);
      if constexpr (Affine) xt = lif_affine_input(xt, scale, shift);
      const L h = M::template charge<R>(pl, v, xt);
      const auto spike = M::fire(pl, h);
      lif_select(spike, one, zero).store(spikes + t * N + n);
      v = M::template reset<R>(pl, h, spike);
    }
    v.store(v_last + n);
  }
  return whole;
}
#endif

// One block of neurons [n0, n0 + len) through all T steps. The parameters are copied to
// locals and the pointers marked __restrict: without that the compiler must assume the
// outputs alias the parameters and reloads them every element, and does not vectorise.
// InRegisters: the AVX2 copy's inference forward starts with lif_fwd_lanes (above). Affine: the
// input is x * in_scale + in_shift (FwdArgs), the block's values copied to arrays once for all T.
template <typename X, typename S, Neuron NM, Reset R, Save SV, bool InRegisters = false, bool Affine = false>
LIF_HD void lif_fwd_block(const FwdArgs<X, S>& a, int64_t n0, int64_t len) {
  using M = NeuronModel<NM>;
  constexpr bool kTwoPlanes = SV == Save::SgSpike || SV == Save::SgReset;
  constexpr bool kMask = SV == Save::Sg || kTwoPlanes;
  constexpr bool kSpikeBit = SV == Save::SpikeState;  // plane 0 holds s[t] rather than sg != 0
  constexpr bool kH = SV == Save::H || SV == Save::HV0;
  constexpr int64_t kRow0 = SV == Save::HV0 ? 1 : 0;  // HV0: row 0 is the state before step 0
  const NeuronParams<S> p = params_at<M>(a, n0);
  const bool uniform = uniform_params(a);
  S in_scale[Affine ? kBlock : 1];
  S in_shift[Affine ? kBlock : 1];
  if constexpr (Affine) {
    fill_channel_values(a.in_scale, n0, len, in_scale);
    fill_channel_values(a.in_shift, n0, len, in_shift);
  }
  const S* scale_at = in_scale;  // the values of neuron n0 on, as n0 moves past what the lanes did
  const S* shift_at = in_shift;
#if LIF_CPU_LANES
  if constexpr (InRegisters && SV == Save::None && std::is_same<X, S>::value) {
    const int64_t done = uniform ? lif_fwd_lanes<S, NM, R, Affine>(a, p, n0, len, in_scale, in_shift) : 0;
    n0 += done;
    len -= done;
    scale_at += done;
    shift_at += done;
    if (len == 0) return;
  }
#endif
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t W = lif_mask_words(N);
  S v[kBlock];
  uint32_t sg_flags[kBlock];
  uint32_t plane1_flags[kBlock];
  BlockParams<S> bp;
  bp.template fill<M>(a, p, uniform, n0, len);
  const NeuronParams<S> p0 = p;
  for (int64_t i = 0; i < len; ++i) v[i] = a.v0 ? a.v0[n0 + i] : p.v_r;
  constexpr bool kD16 = SV == Save::H16 && Store16<X>::kIs16;
  if (SV == Save::HV0)
    for (int64_t i = 0; i < len; ++i) a.h[n0 + i] = v[i];
  for (int64_t i = len; i < kBlock; ++i) sg_flags[i] = plane1_flags[i] = 0u;
  for (int64_t t = 0; t < T; ++t) {
    const X* __restrict xt = a.x + t * N + n0;
    X* __restrict st = a.spikes + t * N + n0;
    S* __restrict ht = kH ? a.h + (t + kRow0) * N + n0 : nullptr;
    X* __restrict dt = kD16 ? a.d16 + t * N + n0 : nullptr;
    prefetch_next_block(xt, n0, N, false);
    prefetch_next_block(st, n0, N, true);
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<S> p = bp.at(p0, i);
      const S v_prev = v[i];
      S xi = S(xt[i]);
      if constexpr (Affine) xi = lif_affine_input(xi, scale_at[i], shift_at[i]);
      const S h = M::template charge<R>(p, v_prev, xi);
      const bool spike = M::fire(p, h);
      st[i] = X(spike ? S(1) : S(0));
      if (kH) ht[i] = h;
      if constexpr (kD16) dt[i] = Store16<X>::from(float(h - p.theta));
      if (kMask) sg_flags[i] = lif_rect_window(p, h) ? ~0u : 0u;
      if (kSpikeBit) sg_flags[i] = spike ? ~0u : 0u;
      if (SV == Save::SgSpike) plane1_flags[i] = spike ? ~0u : 0u;
      if (SV == Save::SgReset) plane1_flags[i] = M::reset_flag(p, v_prev) ? ~0u : 0u;
      v[i] = M::template reset<R>(p, h, spike);
    }
    if (kMask || kSpikeBit) pack_flags(sg_flags, len, a.mask + t * W + n0 / 32);
    if (kTwoPlanes) pack_flags(plane1_flags, len, a.mask + (T + t) * W + n0 / 32);
  }
  for (int64_t i = 0; i < len; ++i) a.v_last[n0 + i] = v[i];
}

template <typename X, typename S, Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
LIF_HD void lif_bwd_block(const BwdArgs<X, S>& a, int64_t n0, int64_t len) {
  using M = NeuronModel<NM>;
  constexpr bool kTwoPlanes = SV == Save::SgSpike || SV == Save::SgReset;
  constexpr bool kMask = SV == Save::Sg || kTwoPlanes;
  constexpr bool kSpikeBit = SV == Save::SpikeState;  // s[t] bits and the output state (T = 1)
  constexpr bool kH = SV == Save::H || SV == Save::HV0;
  constexpr int64_t kRow0 = SV == Save::HV0 ? 1 : 0;
  const NeuronParams<S> p0 = params_at<M>(a, n0);
  BlockParams<S> bp;
  bp.template fill<M>(a, p0, uniform_params(a), n0, len);
  const bool learn_k = a.grad_k != nullptr;
  const bool learn_theta = a.grad_theta != nullptr;
  const int64_t N = a.N;
  const int64_t T = a.T;
  const int64_t W = lif_mask_words(N);
  constexpr bool kD16 = SV == Save::H16 && Store16<X>::kIs16;
  S gv[kBlock];
  S gk[kBlock];
  S gtheta[kBlock];
  uint32_t sg_flags[kBlock];
  uint32_t plane1_flags[kBlock];
  if (G == Grad::BPTT)
    for (int64_t i = 0; i < len; ++i) gv[i] = a.grad_v_last ? a.grad_v_last[n0 + i] : S(0);
  for (int64_t i = 0; i < len; ++i) gk[i] = gtheta[i] = S(0);
  for (int64_t t = T - 1; t >= 0; --t) {
    const X* __restrict gst = a.grad_spikes + t * N + n0;
    X* __restrict gxt = a.grad_x + t * N + n0;
    const S* __restrict ht = kH ? a.h + (t + kRow0) * N + n0 : nullptr;
    // HV0: the row before h[t] holds h[t-1] (or, at t = 0, the state v[-1] itself)
    const S* __restrict prev_row = SV == Save::HV0 ? a.h + t * N + n0 : nullptr;
    const X* __restrict dt = kD16 ? a.d16 + t * N + n0 : nullptr;
    if (kMask || kSpikeBit) unpack_flags(a.mask + t * W + n0 / 32, len, sg_flags);
    const S* __restrict vt = kSpikeBit ? a.v_new + n0 : nullptr;
    if (kTwoPlanes) unpack_flags(a.mask + (T + t) * W + n0 / 32, len, plane1_flags);
    prefetch_next_block(gst, n0, N, false);
    prefetch_next_block(gxt, n0, N, true);
    if (kH) prefetch_next_block(ht, n0, N, false);
    for (int64_t i = 0; i < len; ++i) {
      const NeuronParams<S> p = bp.at(p0, i);
      S h = S(0);
      S sg;
      bool spike = false;
      bool reset_flag = false;
      if (kH) {
        h = ht[i];
        sg = lif_surrogate<SG>(p, h);
        spike = M::fire(p, h);
      } else if constexpr (kD16) {
        // the decisions from d itself, whose sign the 16-bit store keeps exactly
        const S d = S(Store16<X>::to(dt[i]));
        h = d + p.theta;
        sg = lif_surrogate_d<SG>(p, d);
        spike = M::fire_d(d);
      } else if constexpr (kSpikeBit) {
        // the forward's soft reset wrote v = h - theta where it fired and v = h where not, so
        // this is the forward's own subtraction h - theta, to the bit
        spike = sg_flags[i] != 0u;
        const S d = spike ? vt[i] : vt[i] - p.theta;
        h = d + p.theta;
        sg = lif_surrogate_d<SG>(p, d);
      } else {
        sg = sg_flags[i] ? p.inv_width : S(0);
        if (SV == Save::SgSpike) spike = plane1_flags[i] != 0u;
        if (SV == Save::SgReset) reset_flag = plane1_flags[i] != 0u;
      }
      S v_prev = S(0);
      if (SV == Save::HV0) {
        const S before = prev_row[i];
        v_prev = t == 0 ? before : M::template reset<R>(p, before, M::fire(p, before));
        reset_flag = M::reset_flag(p, v_prev);
      }
      S gh = S(gst[i]) * sg;
      const S gv_in = G == Grad::BPTT ? gv[i] : S(0);  // dL/dv[t] from the steps after t
      if (G == Grad::BPTT) {
        gh = lif_fma(gv[i], M::template dv_dh<R, Detach>(p, h, spike, sg), gh);
        gv[i] = M::template dcharge_dv<R>(p, reset_flag) * gh;
      }
      if (SV == Save::HV0 && learn_k) gk[i] = lif_fma(gh, M::template dcharge_dk<R>(p, v_prev, h, reset_flag), gk[i]);
      if (SV == Save::HV0 && learn_theta)
        gtheta[i] += threshold_grad<M, R, Detach>(p, S(gst[i]), gv_in, gh, h, sg, spike, reset_flag);
      gxt[i] = X(p.c * gh);
    }
  }
  if (G == Grad::BPTT && a.grad_v0)
    for (int64_t i = 0; i < len; ++i) a.grad_v0[n0 + i] = gv[i];
  if (learn_k)
    for (int64_t i = 0; i < len; ++i) a.grad_k[n0 + i] = gk[i];
  if (learn_theta)
    for (int64_t i = 0; i < len; ++i) a.grad_theta[n0 + i] = gtheta[i];
}

// Range drivers over blocks [b0, b1). The AVX2+FMA copies are the same code compiled for
// that target: fmaf then becomes one instruction and the loops vectorise, while the generic
// copy keeps the extension loadable on any x86-64. Both round identically (fma is exact).
template <typename X, typename S, Neuron NM, Reset R, Save SV>
void lif_fwd_blocks_generic(const FwdArgs<X, S>& a, int64_t b0, int64_t b1) {
  const bool affine = a.in_scale.p != nullptr;
  for (int64_t b = b0; b < b1; ++b) {
    if (affine)
      lif_fwd_block<X, S, NM, R, SV, false, true>(a, b * kBlock, std::min(kBlock, a.N - b * kBlock));
    else
      lif_fwd_block<X, S, NM, R, SV>(a, b * kBlock, std::min(kBlock, a.N - b * kBlock));
  }
}

template <typename X, typename S, Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
void lif_bwd_blocks_generic(const BwdArgs<X, S>& a, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b)
    lif_bwd_block<X, S, NM, R, Detach, SG, SV, G>(a, b * kBlock, std::min(kBlock, a.N - b * kBlock));
}

#if LIF_CPU_X86
template <typename X, typename S, Neuron NM, Reset R, Save SV>
__attribute__((target("avx2,fma"))) void lif_fwd_blocks_avx2(const FwdArgs<X, S>& a, int64_t b0, int64_t b1) {
  const bool affine = a.in_scale.p != nullptr;
  for (int64_t b = b0; b < b1; ++b) {
    if (affine)
      lif_fwd_block<X, S, NM, R, SV, true, true>(a, b * kBlock, std::min(kBlock, a.N - b * kBlock));
    else
      lif_fwd_block<X, S, NM, R, SV, true>(a, b * kBlock, std::min(kBlock, a.N - b * kBlock));
  }
}

template <typename X, typename S, Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
__attribute__((target("avx2,fma"))) void lif_bwd_blocks_avx2(const BwdArgs<X, S>& a, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b)
    lif_bwd_block<X, S, NM, R, Detach, SG, SV, G>(a, b * kBlock, std::min(kBlock, a.N - b * kBlock));
}
#endif

template <typename X, typename S, Neuron NM, Reset R, Save SV>
void lif_fwd_blocks(const FwdArgs<X, S>& a, int64_t b0, int64_t b1, bool use_avx2) {
#if LIF_CPU_X86
  if (use_avx2) return lif_fwd_blocks_avx2<X, S, NM, R, SV>(a, b0, b1);
#endif
  (void)use_avx2;
  lif_fwd_blocks_generic<X, S, NM, R, SV>(a, b0, b1);
}

template <typename X, typename S, Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G>
void lif_bwd_blocks(const BwdArgs<X, S>& a, int64_t b0, int64_t b1, bool use_avx2) {
#if LIF_CPU_X86
  if (use_avx2) return lif_bwd_blocks_avx2<X, S, NM, R, Detach, SG, SV, G>(a, b0, b1);
#endif
  (void)use_avx2;
  lif_bwd_blocks_generic<X, S, NM, R, Detach, SG, SV, G>(a, b0, b1);
}

// True when this CPU can run the AVX2+FMA copies.
inline bool cpu_has_avx2_fma() {
#if LIF_CPU_X86
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace sltt
