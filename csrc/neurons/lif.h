// The LIF neuron (SpikingJelly's LIFNode, and ParametricLIFNode with a learnable k = 1/tau):
//   h = v_r + lam (v - v_r) + c x,   s = [h >= theta],   v = reset(h, s)
// docs/design.md, section 2.1.
#pragma once

#include "../lif_math.h"

namespace sltt {

template <Neuron NM>
struct NeuronModel;

// What the models that reset at the step that fires (LIF, IF) share: fire on h >= theta, reset
// now, and the derivative through that reset. They differ in the charge and its derivatives.
// The forward's functions (charge, fire, reset) also take the CPU's vector of lanes as S
// (csrc/cpu/lif_cpu_lanes.h): fire then returns a lane mask rather than a bool, and the
// selections are lif_select calls, which that type overloads.
struct ResetNowModel {
  template <typename S>
  static LIF_HD auto fire(const LIFParams<S>& p, S h) { return h >= p.theta; }
  // the same decision from d = h - theta (h >= theta exactly when h - theta >= 0)
  template <typename S>
  static LIF_HD bool fire_d(S d) { return d >= S(0); }
  template <Reset R, typename S, typename B>
  static LIF_HD S reset(const LIFParams<S>& p, S h, B spike) {
    if (R == Reset::Soft) return lif_select(spike, h - p.theta, h);
    return lif_select(spike, p.v_r, h);  // a select: exact, and v_r even for an infinite h
  }
  // dv[t]/dh[t] through the reset.
  template <Reset R, bool Detach, typename S>
  static LIF_HD S dv_dh(const LIFParams<S>& p, S h, bool spike, S sg) {
    if (R == Reset::Soft) {
      if (Detach) return S(1);
      return lif_fma(-p.theta, sg, S(1));
    }
    const S keep = spike ? S(0) : S(1);
    if (Detach) return keep;
    return lif_fma(-(h - p.v_r), sg, keep);
  }
  // The flag a charge reads from the previous state (none here).
  template <typename S>
  static LIF_HD bool reset_flag(const LIFParams<S>&, S) { return false; }
};

template <>
struct NeuronModel<Neuron::LIF> : ResetNowModel {
  // h = v_r + lam (v - v_r) + c x, as fma(lam, v - v_r, fma(c, x, v_r)): one fixed order that
  // every backend uses, so h, the spikes and the masks agree bit for bit.
  template <Reset R, typename S>
  static LIF_HD S charge(const LIFParams<S>& p, S v, S x) {
    return lif_fma(p.lam, v - p.v_r, lif_fma(p.c, x, p.v_r));
  }
  // dh[t]/dv[t-1].
  template <Reset R, typename S>
  static LIF_HD S dcharge_dv(const LIFParams<S>& p, bool) { return p.lam; }
  // dh[t]/dk for a learnable k = 1/tau (lam = 1 - k, c = k or 1). With c = k, x is not saved:
  // h - v_prev = k (x - (v_prev - v_r)), so dh/dk = (h - v_prev) / k.
  template <typename S>
  static LIF_HD S dcharge_dk(const LIFParams<S>& p, S v_prev, S h) {
    return p.c_is_k ? (h - v_prev) / p.c : p.v_r - v_prev;
  }
};

}  // namespace sltt
