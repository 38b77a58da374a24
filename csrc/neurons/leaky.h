// snnTorch's Leaky with its default reset_delay=True: the reset of a spike at step t-1 is
// applied at step t's charge, computed from the previous membrane and detached, and the neuron
// fires on mem > threshold (strictly). With r = [v > theta] of the previous membrane v:
//   subtract: h = lam v + x - theta r     zero: h = lam (r ? 0 : v) + x     none: h = lam v + x
//   s = [h > theta],   v_new = h
// (lam = beta). docs/design.md, section 2.3. Reset::Soft is 'subtract', Reset::Hard 'zero'.
#pragma once

#include "neurons.h"

namespace sltt {

template <>
struct NeuronModel<Neuron::Leaky> {
  static constexpr bool has_reset(Reset r) { return r == Reset::Soft || r == Reset::Hard || r == Reset::None; }
  static constexpr bool kResetAtNextCharge = true;
  static constexpr bool kLearnableK = true;  // k is beta itself: lam = k
  static constexpr bool kKSetsGain = false;
  static constexpr bool kNoLeak = false;
  static constexpr bool kUnitGainDetachedReset = true;

  // charge, fire, reset and reset_flag also run on the CPU's lanes (see ResetNowModel, reset_now.h)
  template <typename S>
  static LIF_HD auto reset_flag(const NeuronParams<S>& p, S v) { return v > p.theta; }
  template <Reset R, typename S>
  static LIF_HD S charge(const NeuronParams<S>& p, S v, S x) {
    const auto r = reset_flag(p, v);
    if (R == Reset::Soft) return lif_fma(p.lam, v, x) - lif_select(r, p.theta, S(0));
    if (R == Reset::Hard) return lif_fma(p.lam, lif_select(r, S(0), v), x);
    return lif_fma(p.lam, v, x);
  }
  template <typename S>
  static LIF_HD auto fire(const NeuronParams<S>& p, S h) { return h > p.theta; }
  template <typename S>
  static LIF_HD bool fire_d(S d) { return d > S(0); }
  template <Reset R, typename S, typename B>
  static LIF_HD S reset(const NeuronParams<S>&, S h, B) { return h; }  // applied at the next charge
  template <Reset R, bool Detach, typename S>
  static LIF_HD S dv_dh(const NeuronParams<S>&, S, bool, S) { return S(1); }
  // The reset flag is detached (as snnTorch's), so only the zero reset gates the gradient.
  template <Reset R, typename S>
  static LIF_HD S dcharge_dv(const NeuronParams<S>& p, bool r) {
    return (R == Reset::Hard && r) ? S(0) : p.lam;
  }
  // k = beta, one number or one per neuron: lam = k.
  template <typename S>
  static LIF_HD NeuronParams<S> with_k(NeuronParams<S> p, S k) {
    p.lam = k;
    return p;
  }
  // dh/dbeta: the previous membrane, zeroed where the zero reset applies (r: its reset flag).
  template <Reset R, typename S>
  static LIF_HD S dcharge_dk(const NeuronParams<S>&, S v_prev, S, bool r) {
    return (R == Reset::Hard && r) ? S(0) : v_prev;
  }
  // The threshold's derivatives: the reset flag is detached, so theta reaches the state only
  // through the subtraction of the charge (dh/dtheta = -r).
  template <Reset R, typename S>
  static LIF_HD S dv_ds(const NeuronParams<S>&, S) { return S(0); }
  template <Reset R, typename S>
  static LIF_HD S dv_dtheta(bool) { return S(0); }
  template <Reset R, typename S>
  static LIF_HD S dcharge_dtheta(bool r) { return (R == Reset::Soft && r) ? S(-1) : S(0); }
};

}  // namespace sltt
