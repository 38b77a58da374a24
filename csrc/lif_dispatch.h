// From the runtime configuration to the compile-time kernel specialisation, shared by the
// CPU and CUDA bindings. A Launcher provides
//   template <Neuron NM, Reset R, Save SV> void fwd();
//   template <Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, Grad G> void bwd();
//   static constexpr bool kSupportsH16;   // its element type is 16-bit (Save::H16)
// and these functions call the one instantiation a configuration needs. The rules below are
// written once over the lists (lif_math.h, neurons/neurons.h), the models' traits and the
// surrogates' kOneBit, and instantiate only combinations the Python validator can produce
// (docs/design.md, section 3); any other returns false, and the binding raises. No torch header.
#pragma once

#include "lif_math.h"
#include "neurons/neurons.h"

namespace sltt {

namespace detail {

// Which of the two-plane masks serves a model's hard reset (with a 1-bit surrogate and a
// detached reset): the spike of the step (reset at the step that fires), or the reset flag
// read from the previous state (reset at the next charge).
template <Neuron NM>
constexpr Save hard_reset_planes() {
  return NeuronModel<NM>::kResetAtNextCharge ? Save::SgReset : Save::SgSpike;
}

// A hard reset applied at the next charge cuts the state's gradient where the previous state
// fired: the backward reads v[t-1], which at t = 0 is v0, so only HV0 (not H) can serve it.
template <Neuron NM, Reset R>
constexpr bool backward_reads_state_before(){
  return NeuronModel<NM>::kResetAtNextCharge && R == Reset::Hard;
}

// Save::SpikeState: the backward rebuilds d = h - theta from the spike bit and the output state,
// which holds h - theta (fired) or h (not) only for a soft reset applied at the step that fires.
template <Neuron NM, Reset R>
constexpr bool spike_state_serves() {
  return NeuronModel<NM>::has_reset(R) && R == Reset::Soft && !NeuronModel<NM>::kResetAtNextCharge;
}

template <Save SV>
constexpr bool is_mask(){ return SV == Save::Sg || SV == Save::SgSpike || SV == Save::SgReset; }

template <Neuron NM, Reset R, Save SV, bool kH16>
constexpr bool fwd_has_kernel() {
  if (!NeuronModel<NM>::has_reset(R)) return false;
  switch (SV) {
    case Save::None:
    case Save::Sg:
    case Save::H:
    case Save::HV0: return true;
    case Save::H16: return kH16;
    case Save::SgSpike:
    case Save::SgReset: return R == Reset::Hard && SV == hard_reset_planes<NM>();
    case Save::SpikeState: return spike_state_serves<NM, R>();
  }
  return false;
}

// BPTT: the model's resets; with the flag detached or not (a model whose reset is always
// detached runs the detached kernels only); the mask kinds for a 1-bit surrogate where sg and
// at most one flag suffice; h wherever it holds what the backward reads; HV0 for a learnable k
// or threshold (every model) and for what needs the state before step 0.
template <Neuron NM, Reset R, bool Detach, Surrogate SG, Save SV, bool kH16>
constexpr bool bptt_has_kernel() {
  using M = NeuronModel<NM>;
  if (!M::has_reset(R) || (!Detach && M::kUnitGainDetachedReset)) return false;
  constexpr bool kOneBit = SurrogateFormula<SG>::kOneBit;
  switch (SV) {
    case Save::None: return false;
    case Save::Sg: return kOneBit && R != Reset::Hard;
    case Save::SgSpike:
    case Save::SgReset: return kOneBit && R == Reset::Hard && Detach && SV == hard_reset_planes<NM>();
    case Save::H: return !backward_reads_state_before<NM, R>();
    case Save::H16: return kH16 && !backward_reads_state_before<NM, R>();
    case Save::HV0: return true;  // a learnable k or threshold, and what needs the state before step 0
    case Save::SpikeState: return false;  // one SLTT step only
  }
  return false;
}

// SLTT ignores the temporal path (gx = c gs sg), so without HV0 neither the model, the reset nor
// detach matter: one instantiation serves them all, the first model's with a detached soft
// reset, and a two-plane mask is read as its plane 0, the sg plane. HV0 (a learnable k or threshold) rebuilds
// v[t-1], which needs the model's reset.
constexpr Neuron kSlttNeuron = EnumInfo<Neuron>::kItems[0].value;
static_assert(NeuronModel<kSlttNeuron>::has_reset(Reset::Soft), "SLTT's shared kernel uses a soft reset");

template <typename L>
bool bwd_sltt(L& l, Neuron nm, Reset reset, Surrogate sg, Save save) {
  return with_constant(save, [&](auto sv_c) {
    constexpr Save SV = decltype(sv_c)::value;
    if constexpr (is_mask<SV>() || SV == Save::H || (SV == Save::H16 && L::kSupportsH16)) {
      constexpr Save kRead = is_mask<SV>() ? Save::Sg : SV;
      return with_constant(sg, [&](auto sg_c) {
        constexpr Surrogate SG = decltype(sg_c)::value;
        if constexpr (is_mask<SV>() && !SurrogateFormula<SG>::kOneBit) {
          return false;
        } else {
          l.template bwd<kSlttNeuron, Reset::Soft, true, SG, kRead, Grad::SLTT>();
          return true;
        }
      });
    } else if constexpr (SV == Save::SpikeState) {
      // the reconstruction holds for the soft reset of a reset-now model (spike_state_serves);
      // the rest of SLTT's backward is the shared kernel's, as for H. A 1-bit surrogate keeps
      // its window mask (Sg), so the continuous ones only.
      bool serves = false;
      with_constant(nm, [&](auto nm_c) {
        serves = reset == Reset::Soft && spike_state_serves<decltype(nm_c)::value, Reset::Soft>();
        return true;
      });
      if (!serves) return false;
      return with_constant(sg, [&](auto sg_c) {
        constexpr Surrogate SG = decltype(sg_c)::value;
        if constexpr (SurrogateFormula<SG>::kOneBit) {
          return false;
        } else {
          l.template bwd<kSlttNeuron, Reset::Soft, true, SG, Save::SpikeState, Grad::SLTT>();
          return true;
        }
      });
    } else if constexpr (SV == Save::HV0) {
      return with_constant(nm, [&](auto nm_c) {
        constexpr Neuron NM = decltype(nm_c)::value;
        return with_constant(reset, [&](auto r_c) {
          constexpr Reset R = decltype(r_c)::value;
          if constexpr (!NeuronModel<NM>::has_reset(R)) {
            return false;
          } else {
            return with_constant(sg, [&](auto sg_c) {
              l.template bwd<NM, R, true, decltype(sg_c)::value, Save::HV0, Grad::SLTT>();
              return true;
            });
          }
        });
      });
    } else {
      return false;
    }
  });
}

template <Neuron NM, Reset R, bool Detach, typename L>
bool bwd_bptt(L& l, Surrogate sg, Save save) {
  return with_constant(save, [&](auto sv_c) {
    constexpr Save SV = decltype(sv_c)::value;
    return with_constant(sg, [&](auto sg_c) {
      constexpr Surrogate SG = decltype(sg_c)::value;
      if constexpr (bptt_has_kernel<NM, R, Detach, SG, SV, L::kSupportsH16>()) {
        l.template bwd<NM, R, Detach, SG, SV, Grad::BPTT>();
        return true;
      } else {
        return false;
      }
    });
  });
}

}  // namespace detail

template <typename Launcher>
bool dispatch_fwd(Launcher& l, Neuron nm, Reset reset, Save save) {
  return with_constant(nm, [&](auto nm_c) {
    constexpr Neuron NM = decltype(nm_c)::value;
    return with_constant(reset, [&](auto r_c) {
      constexpr Reset R = decltype(r_c)::value;
      return with_constant(save, [&](auto sv_c) {
        constexpr Save SV = decltype(sv_c)::value;
        if constexpr (detail::fwd_has_kernel<NM, R, SV, Launcher::kSupportsH16>()) {
          l.template fwd<NM, R, SV>();
          return true;
        } else {
          return false;
        }
      });
    });
  });
}

template <typename Launcher>
bool dispatch_bwd(Launcher& l, Neuron nm, Reset reset, bool detach, Surrogate sg, Save save, Grad grad) {
  if (grad == Grad::SLTT) return detail::bwd_sltt(l, nm, reset, sg, save);
  if (grad != Grad::BPTT) return false;
  return with_constant(nm, [&](auto nm_c) {
    constexpr Neuron NM = decltype(nm_c)::value;
    return with_constant(reset, [&](auto r_c) {
      constexpr Reset R = decltype(r_c)::value;
      if constexpr (!NeuronModel<NM>::has_reset(R)) {
        return false;
      } else {
        // a model whose reset is always detached runs its detached kernels whatever the flag says
        // (check_values refuses the other flag before this)
        return with_constant(detach || NeuronModel<NM>::kUnitGainDetachedReset, [&](auto d_c) {
          return detail::bwd_bptt<NM, R, decltype(d_c)::value>(l, sg, save);
        });
      }
    });
  });
}

}  // namespace sltt
