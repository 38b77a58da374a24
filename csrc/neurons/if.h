// The integrate-and-fire neuron (SpikingJelly's IFNode): no leak,
//   h = v + x,   s = [h >= theta],   v = reset(h, s)
// docs/design.md, section 2.2.
#pragma once

#include "neurons.h"
#include "reset_now.h"

namespace sltt {

template <>
struct NeuronModel<Neuron::IF> : ResetNowModel {
  static constexpr bool kLearnableK = false;  // no time constant
  static constexpr bool kKSetsGain = false;
  static constexpr bool kNoLeak = true;
  static constexpr bool kUnitGainDetachedReset = false;

  template <Reset R, typename S>
  static LIF_HD S charge(const NeuronParams<S>&, S v, S x) { return v + x; }
  template <Reset R, typename S>
  static LIF_HD S dcharge_dv(const NeuronParams<S>&, bool) { return S(1); }
  template <typename S>
  static LIF_HD NeuronParams<S> with_k(NeuronParams<S> p, S) { return p; }  // never called: no k
  template <Reset R, typename S>
  static LIF_HD S dcharge_dk(const NeuronParams<S>&, S, S, bool) { return S(0); }
};

}  // namespace sltt
