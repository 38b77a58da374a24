// The integrate-and-fire neuron (SpikingJelly's IFNode): no leak,
//   h = v + x,   s = [h >= theta],   v = reset(h, s)
// docs/design.md, section 2.2.
#pragma once

#include "lif.h"

namespace sltt {

template <>
struct NeuronModel<Neuron::IF> : ResetNowModel {
  template <Reset R, typename S>
  static LIF_HD S charge(const LIFParams<S>&, S v, S x) { return v + x; }
  template <Reset R, typename S>
  static LIF_HD S dcharge_dv(const LIFParams<S>&, bool) { return S(1); }
  template <typename S>
  static LIF_HD S dcharge_dk(const LIFParams<S>&, S, S) { return S(0); }  // no time constant
};

}  // namespace sltt
