// From the runtime configuration to the compile-time kernel specialisation, shared by the
// CPU and CUDA bindings. A Launcher provides
//   template <Reset R, Save SV> void fwd();
//   template <Reset R, bool Detach, Surrogate SG, Save SV, Grad G> void bwd();
// and these functions call the one instantiation a configuration needs. No torch header.
#pragma once

#include "lif_math.h"

namespace sltt {

template <typename Launcher>
void dispatch_fwd(Launcher& l, Reset reset, Save save) {
  // The forward does not depend on the surrogate (only rect masks are written) or detach.
#define SLTT_FWD_SAVE(R)                                              \
  switch (save) {                                                     \
    case Save::None: return l.template fwd<R, Save::None>();          \
    case Save::Sg: return l.template fwd<R, Save::Sg>();              \
    case Save::SgSpike: return l.template fwd<R, Save::SgSpike>();    \
    case Save::H: return l.template fwd<R, Save::H>();                \
  }
  if (reset == Reset::Soft) {
    SLTT_FWD_SAVE(Reset::Soft)
  } else {
    SLTT_FWD_SAVE(Reset::Hard)
  }
#undef SLTT_FWD_SAVE
}

// Backward from saved h, for every surrogate.
template <Reset R, bool Detach, Grad G, typename Launcher>
void dispatch_bwd_from_h(Launcher& l, Surrogate sg) {
  switch (sg) {
    case Surrogate::Rect: return l.template bwd<R, Detach, Surrogate::Rect, Save::H, G>();
    case Surrogate::Triangle: return l.template bwd<R, Detach, Surrogate::Triangle, Save::H, G>();
    case Surrogate::Sigmoid: return l.template bwd<R, Detach, Surrogate::Sigmoid, Save::H, G>();
    case Surrogate::ATan: return l.template bwd<R, Detach, Surrogate::ATan, Save::H, G>();
  }
}

// Only the combinations that can occur are instantiated: SLTT ignores reset and detach
// (canonically soft + detach), and a bit mask implies the rect surrogate. The caller has
// checked the combination (check_backward_options).
template <typename Launcher>
void dispatch_bwd(Launcher& l, Reset reset, bool detach, Surrogate sg, Save save, Grad grad) {
  constexpr Surrogate kRect = Surrogate::Rect;
  if (grad == Grad::SLTT) {
    if (save == Save::H) return dispatch_bwd_from_h<Reset::Soft, true, Grad::SLTT>(l, sg);
    // plane 0 of an sg_spike mask is the sg mask
    return l.template bwd<Reset::Soft, true, kRect, Save::Sg, Grad::SLTT>();
  }
  if (save == Save::Sg) {
    if (detach) return l.template bwd<Reset::Soft, true, kRect, Save::Sg, Grad::BPTT>();
    return l.template bwd<Reset::Soft, false, kRect, Save::Sg, Grad::BPTT>();
  }
  if (save == Save::SgSpike) return l.template bwd<Reset::Hard, true, kRect, Save::SgSpike, Grad::BPTT>();
  if (reset == Reset::Soft) {
    if (detach) return dispatch_bwd_from_h<Reset::Soft, true, Grad::BPTT>(l, sg);
    return dispatch_bwd_from_h<Reset::Soft, false, Grad::BPTT>(l, sg);
  }
  if (detach) return dispatch_bwd_from_h<Reset::Hard, true, Grad::BPTT>(l, sg);
  return dispatch_bwd_from_h<Reset::Hard, false, Grad::BPTT>(l, sg);
}

}  // namespace sltt
