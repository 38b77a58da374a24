// What the models that reset at the step that fires (LIF, IF) share: fire on h >= theta, reset
// now, the derivative through that reset, and the reset traits (neurons.h). They differ in the
// charge and its derivatives.
#pragma once

#include "../lif_math.h"

namespace sltt {

// The forward's functions (charge, fire, reset) also take the CPU's vector of lanes as S
// (csrc/cpu/lif_cpu_lanes.h): fire then returns a lane mask rather than a bool, and the
// selections are lif_select calls, which that type overloads.
struct ResetNowModel {
  static constexpr bool has_reset(Reset r) { return r == Reset::Soft || r == Reset::Hard; }
  static constexpr bool kResetAtNextCharge = false;

  template <typename S>
  static LIF_HD auto fire(const NeuronParams<S>& p, S h) { return h >= p.theta; }
  // the same decision from d = h - theta (h >= theta exactly when h - theta >= 0)
  template <typename S>
  static LIF_HD bool fire_d(S d) { return d >= S(0); }
  template <Reset R, typename S, typename B>
  static LIF_HD S reset(const NeuronParams<S>& p, S h, B spike) {
    if (R == Reset::Soft) return lif_select(spike, h - p.theta, h);
    return lif_select(spike, p.v_r, h);  // a select: exact, and v_r even for an infinite h
  }
  // dv[t]/dh[t] through the reset.
  template <Reset R, bool Detach, typename S>
  static LIF_HD S dv_dh(const NeuronParams<S>& p, S h, bool spike, S sg) {
    if (R == Reset::Soft) {
      if (Detach) return S(1);
      return lif_fma(-p.theta, sg, S(1));
    }
    const S keep = spike ? S(0) : S(1);
    if (Detach) return keep;
    return lif_fma(-(h - p.v_r), sg, keep);
  }
  // The reset's derivatives besides dv_dh, for a threshold whose gradient is asked for: dv/ds
  // through the spike (soft: v = h - theta s; hard: v = h + (v_r - h) s) and dv/dtheta with the
  // spike held (soft: -s). The charge does not read theta.
  template <Reset R, typename S>
  static LIF_HD S dv_ds(const NeuronParams<S>& p, S h) {
    return R == Reset::Soft ? -p.theta : p.v_r - h;
  }
  template <Reset R, typename S>
  static LIF_HD S dv_dtheta(bool spike) {
    return (R == Reset::Soft && spike) ? S(-1) : S(0);
  }
  template <Reset R, typename S>
  static LIF_HD S dcharge_dtheta(bool) { return S(0); }
  // The flag a charge reads from the previous state (none here).
  template <typename S>
  static LIF_HD bool reset_flag(const NeuronParams<S>&, S) { return false; }
};

}  // namespace sltt
