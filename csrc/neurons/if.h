// The integrate-and-fire neuron (SpikingJelly's IFNode): no leak,
//   h = v + x,   s = [h >= theta],   v = reset(h, s)
// docs/design.md, section 2.2.
#pragma once

#include "lif.h"

namespace sltt {

template <>
struct NeuronModel<Neuron::IF> {
  template <Reset R, typename S>
  static LIF_HD S charge(const LIFParams<S>&, S v, S x) { return v + x; }
  template <typename S>
  static LIF_HD bool fire(const LIFParams<S>& p, S h) { return h >= p.theta; }
  // the same decision from d = h - theta (h >= theta exactly when h - theta >= 0)
  template <typename S>
  static LIF_HD bool fire_d(S d) { return d >= S(0); }
  template <Reset R, typename S>
  static LIF_HD S reset(const LIFParams<S>& p, S h, bool spike) { return reset_now<R>(p, h, spike); }
  template <Reset R, bool Detach, typename S>
  static LIF_HD S dv_dh(const LIFParams<S>& p, S h, bool spike, S sg) {
    return reset_now_dv_dh<R, Detach>(p, h, spike, sg);
  }
  template <typename S>
  static LIF_HD bool reset_flag(const LIFParams<S>&, S) { return false; }
  template <Reset R, typename S>
  static LIF_HD S dcharge_dv(const LIFParams<S>&, bool) { return S(1); }
  template <typename S>
  static LIF_HD S dcharge_dk(const LIFParams<S>&, S, S) { return S(0); }  // no time constant
};

}  // namespace sltt
