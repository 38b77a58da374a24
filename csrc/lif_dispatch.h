// From the runtime configuration to the compile-time kernel specialisation, shared by the
// CPU and CUDA bindings. A Launcher provides
//   template <Neuron NM, Reset R, Save SV> void fwd();
//   template <Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G> void bwd();
//   static constexpr bool kSupportsH16;   // its element type is 16-bit (Save::H16)
// and these functions call the one instantiation a configuration needs. Only combinations the
// Python validator can produce are instantiated (docs/design.md, section 3); any other returns
// false, and the binding raises. No torch header.
#pragma once

#include "lif_math.h"
#include "neurons/neurons.h"

namespace sltt {

namespace detail {

template <Neuron NM, Reset R, typename L>
bool fwd_save(L& l, Save save) {
  constexpr bool kLeaky = NM == Neuron::Leaky;
  switch (save) {
    case Save::None: l.template fwd<NM, R, Save::None>(); return true;
    case Save::Sg: l.template fwd<NM, R, Save::Sg>(); return true;
    case Save::H: l.template fwd<NM, R, Save::H>(); return true;
    case Save::HV0: l.template fwd<NM, R, Save::HV0>(); return true;
    case Save::H16:
      if constexpr (L::kSupportsH16) {
        l.template fwd<NM, R, Save::H16>();
        return true;
      } else {
        return false;
      }
    case Save::SgSpike:
      if constexpr (kLeaky || R != Reset::Hard) {
        return false;
      } else {
        l.template fwd<NM, Reset::Hard, Save::SgSpike>();
        return true;
      }
    case Save::SgReset:
      if (!kLeaky || R != Reset::Hard) return false;
      l.template fwd<Neuron::Leaky, Reset::Hard, Save::SgReset>();
      return true;
  }
  return false;
}

template <Neuron NM, typename L>
bool fwd_reset(L& l, Reset reset, Save save) {
  switch (reset) {
    case Reset::Soft: return fwd_save<NM, Reset::Soft>(l, save);
    case Reset::Hard: return fwd_save<NM, Reset::Hard>(l, save);
    case Reset::None:
      if (NM != Neuron::Leaky) return false;
      return fwd_save<Neuron::Leaky, Reset::None>(l, save);
  }
  return false;
}

// Backward from a saved h (H or HV0), for every surrogate.
template <Neuron NM, Reset R, bool Detach, Save SV, Grad G, typename L>
bool bwd_from_h(L& l, Surrogate sg) {
  switch (sg) {
    case Surrogate::Rect: l.template bwd<NM, R, Detach, Surrogate::Rect, SV, G>(); return true;
    case Surrogate::Triangle: l.template bwd<NM, R, Detach, Surrogate::Triangle, SV, G>(); return true;
    case Surrogate::Sigmoid: l.template bwd<NM, R, Detach, Surrogate::Sigmoid, SV, G>(); return true;
    case Surrogate::ATan: l.template bwd<NM, R, Detach, Surrogate::ATan, SV, G>(); return true;
  }
  return false;
}

// Backward from h in the state type (H) or from h - theta in 16 bits (H16).
template <Neuron NM, Reset R, bool Detach, Grad G, typename L>
bool bwd_h_or_h16(L& l, Surrogate sg, Save save) {
  if (save == Save::H) return bwd_from_h<NM, R, Detach, Save::H, G>(l, sg);
  if constexpr (L::kSupportsH16) {
    if (save == Save::H16) return bwd_from_h<NM, R, Detach, Save::H16, G>(l, sg);
  }
  return false;
}

// SLTT ignores the temporal path, so without HV0 neither the model, the reset nor detach
// matter (canonically LIF, soft, detached). HV0 (a learnable k) rebuilds v[t-1], which needs
// the model's reset.
template <typename L>
bool bwd_sltt(L& l, Neuron nm, Reset reset, Surrogate sg, Save save) {
  constexpr Neuron kLIF = Neuron::LIF;
  if (save == Save::Sg || save == Save::SgSpike || save == Save::SgReset) {
    if (sg != Surrogate::Rect) return false;
    // plane 0 of a two-plane mask is the sg plane
    l.template bwd<kLIF, Reset::Soft, true, Surrogate::Rect, Save::Sg, Grad::SLTT>();
    return true;
  }
  if (save == Save::H || save == Save::H16) return bwd_h_or_h16<kLIF, Reset::Soft, true, Grad::SLTT>(l, sg, save);
  if (save == Save::HV0 && nm == kLIF) {
    if (reset == Reset::Soft) return bwd_from_h<kLIF, Reset::Soft, true, Save::HV0, Grad::SLTT>(l, sg);
    if (reset == Reset::Hard) return bwd_from_h<kLIF, Reset::Hard, true, Save::HV0, Grad::SLTT>(l, sg);
  }
  return false;
}

// BPTT of the models that reset at the step that fires (LIF, IF).
template <Neuron NM, typename L>
bool bwd_bptt_reset_now(L& l, Reset reset, bool detach, Surrogate sg, Save save) {
  if (save == Save::Sg) {
    if (sg != Surrogate::Rect || reset != Reset::Soft) return false;
    if (detach) l.template bwd<NM, Reset::Soft, true, Surrogate::Rect, Save::Sg, Grad::BPTT>();
    else l.template bwd<NM, Reset::Soft, false, Surrogate::Rect, Save::Sg, Grad::BPTT>();
    return true;
  }
  if (save == Save::SgSpike) {
    if (sg != Surrogate::Rect || reset != Reset::Hard || !detach) return false;
    l.template bwd<NM, Reset::Hard, true, Surrogate::Rect, Save::SgSpike, Grad::BPTT>();
    return true;
  }
  if (save == Save::H || save == Save::H16) {
    if (reset == Reset::Soft) {
      return detach ? bwd_h_or_h16<NM, Reset::Soft, true, Grad::BPTT>(l, sg, save)
                    : bwd_h_or_h16<NM, Reset::Soft, false, Grad::BPTT>(l, sg, save);
    }
    if (reset == Reset::Hard) {
      return detach ? bwd_h_or_h16<NM, Reset::Hard, true, Grad::BPTT>(l, sg, save)
                    : bwd_h_or_h16<NM, Reset::Hard, false, Grad::BPTT>(l, sg, save);
    }
    return false;
  }
  if (save == Save::HV0 && NM == Neuron::LIF) {  // a learnable k: LIF only
    if (reset == Reset::Soft) {
      return detach ? bwd_from_h<Neuron::LIF, Reset::Soft, true, Save::HV0, Grad::BPTT>(l, sg)
                    : bwd_from_h<Neuron::LIF, Reset::Soft, false, Save::HV0, Grad::BPTT>(l, sg);
    }
    if (reset == Reset::Hard) {
      return detach ? bwd_from_h<Neuron::LIF, Reset::Hard, true, Save::HV0, Grad::BPTT>(l, sg)
                    : bwd_from_h<Neuron::LIF, Reset::Hard, false, Save::HV0, Grad::BPTT>(l, sg);
    }
  }
  return false;
}

// BPTT of the leaky model: its reset is always detached; only 'zero' needs the reset flag.
template <typename L>
bool bwd_bptt_leaky(L& l, Reset reset, Surrogate sg, Save save) {
  constexpr Neuron kLeaky = Neuron::Leaky;
  if (save == Save::Sg && sg == Surrogate::Rect) {
    if (reset == Reset::Soft) { l.template bwd<kLeaky, Reset::Soft, true, Surrogate::Rect, Save::Sg, Grad::BPTT>(); return true; }
    if (reset == Reset::None) { l.template bwd<kLeaky, Reset::None, true, Surrogate::Rect, Save::Sg, Grad::BPTT>(); return true; }
    return false;
  }
  if (save == Save::SgReset && sg == Surrogate::Rect && reset == Reset::Hard) {
    l.template bwd<kLeaky, Reset::Hard, true, Surrogate::Rect, Save::SgReset, Grad::BPTT>();
    return true;
  }
  if (save == Save::H || save == Save::H16) {
    if (reset == Reset::Soft) return bwd_h_or_h16<kLeaky, Reset::Soft, true, Grad::BPTT>(l, sg, save);
    if (reset == Reset::None) return bwd_h_or_h16<kLeaky, Reset::None, true, Grad::BPTT>(l, sg, save);
    return false;
  }
  if (save == Save::HV0 && reset == Reset::Hard) return bwd_from_h<kLeaky, Reset::Hard, true, Save::HV0, Grad::BPTT>(l, sg);
  return false;
}

}  // namespace detail

template <typename Launcher>
bool dispatch_fwd(Launcher& l, Neuron nm, Reset reset, Save save) {
  switch (nm) {
    case Neuron::LIF: return detail::fwd_reset<Neuron::LIF>(l, reset, save);
    case Neuron::IF: return detail::fwd_reset<Neuron::IF>(l, reset, save);
    case Neuron::Leaky: return detail::fwd_reset<Neuron::Leaky>(l, reset, save);
  }
  return false;
}

template <typename Launcher>
bool dispatch_bwd(Launcher& l, Neuron nm, Reset reset, bool detach, Surrogate sg, Save save, Grad grad) {
  if (save == Save::None) return false;
  if (grad == Grad::SLTT) return detail::bwd_sltt(l, nm, reset, sg, save);
  switch (nm) {
    case Neuron::LIF: return detail::bwd_bptt_reset_now<Neuron::LIF>(l, reset, detach, sg, save);
    case Neuron::IF: return detail::bwd_bptt_reset_now<Neuron::IF>(l, reset, detach, sg, save);
    case Neuron::Leaky: return detail::bwd_bptt_leaky(l, reset, sg, save);
  }
  return false;
}

}  // namespace sltt
