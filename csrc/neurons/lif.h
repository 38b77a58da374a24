// The LIF neuron (SpikingJelly's LIFNode, and ParametricLIFNode with a learnable k = 1/tau):
//   h = v_r + lam (v - v_r) + c x,   s = [h >= theta],   v = reset(h, s)
// docs/design.md, section 2.1.
#pragma once

#include "neurons.h"
#include "reset_now.h"

namespace sltt {

template <>
struct NeuronModel<Neuron::LIF> : ResetNowModel {
  static constexpr bool kLearnableK = true;
  static constexpr bool kKSetsGain = true;  // c = k with decay_input
  static constexpr bool kNoLeak = false;
  static constexpr bool kUnitGainDetachedReset = false;

  // k = 1/tau, one number or one per neuron (read on the device: no host synchronisation):
  // lam = 1 - k, c = k (decay_input) or 1.
  template <typename S>
  static LIF_HD NeuronParams<S> with_k(NeuronParams<S> p, S k) {
    p.lam = S(1) - k;
    p.c = p.c_is_k ? k : S(1);
    return p;
  }
  // h = v_r + lam (v - v_r) + c x, as fma(lam, v - v_r, fma(c, x, v_r)): one fixed order that
  // every backend uses, so h, the spikes and the masks agree bit for bit.
  template <Reset R, typename S>
  static LIF_HD S charge(const NeuronParams<S>& p, S v, S x) {
    return lif_fma(p.lam, v - p.v_r, lif_fma(p.c, x, p.v_r));
  }
  // dh[t]/dv[t-1].
  template <Reset R, typename S>
  static LIF_HD S dcharge_dv(const NeuronParams<S>& p, bool) { return p.lam; }
  // dh[t]/dk for a learnable k = 1/tau (lam = 1 - k, c = k or 1). With c = k, x is not saved:
  // h - v_prev = k (x - (v_prev - v_r)), so dh/dk = (h - v_prev) / k. At k = 0 (a sigmoid(w)
  // that underflowed) that reads 0/0: 0 is returned, which gives dL/dw = dL/dk k (1 - k) = 0, the
  // reference's answer (dL/dk itself would need x).
  template <Reset R, typename S>
  static LIF_HD S dcharge_dk(const NeuronParams<S>& p, S v_prev, S h, bool) {
    if (!p.c_is_k) return p.v_r - v_prev;
    return p.c == S(0) ? S(0) : (h - v_prev) / p.c;
  }
};

}  // namespace sltt
