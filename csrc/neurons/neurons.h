// The neuron models: their list, and one header each.
//
// Adding a model here is its header (a NeuronModel specialisation with its math and its traits,
// as lif.h, if.h and leaky.h declare them) and one line in SLTT_NEURONS; the enum, the parser,
// the name, the value checks and the kernel dispatch follow from the list and the traits. The
// whole checklist, Python and Triton included, is docs/design.md, section 6.
//
// The models' headers include this one first (for the enum), so each can also be included alone.
#pragma once

#include "../lif_math.h"

namespace sltt {

// X(enumerator, code, "name"), as the enumerations of lif_math.h.
#define SLTT_NEURONS(X) \
  X(LIF, 0, "lif")      \
  X(IF, 1, "if")        \
  X(Leaky, 2, "leaky")
SLTT_DEFINE_ENUM(Neuron, "neuron", SLTT_NEURONS)

// One specialisation per model. Besides its math (charge, fire, reset and their derivatives)
// each declares the traits the generic code (lif_options.h: check_values, checked_k;
// lif_dispatch.h) reads, so that code has no case per model:
//   has_reset(r)            which resets the model has
//   kResetAtNextCharge      a spike's reset is applied at the next step's charge, read from the
//                           previous state (leaky), rather than at the step that fires
//   kLearnableK             takes k as a tensor (LIF: 1/tau, lam = 1 - k; leaky: beta = lam)
//   kKSetsGain              k also sets the input gain when decay_input (LIF: c = k)
//   kNoLeak                 decay and input_gain are fixed at 1 (IF)
//   kUnitGainDetachedReset  input_gain is fixed at 1 and the reset is detached (leaky)
// and the derivatives a learnable k or threshold needs: with_k (k's parameters), dcharge_dk,
// dv_ds, dv_dtheta, dcharge_dtheta (threshold_grad, below, combines them).
template <Neuron NM>
struct NeuronModel;

}  // namespace sltt

#include "lif.h"
#include "if.h"
#include "leaky.h"

namespace sltt {

// dL/dtheta of one element-step (docs/design.md, section 2.5): theta reaches the loss through
// the spike (ds/dtheta = -sg, on the spike's own gradient and, unless detached, the reset's),
// through the reset with the spike held, and through the charge (the leaky model's subtraction).
// gs: dL/ds[t]; gv: dL/dv[t] from later steps; gh: dL/dh[t].
template <typename M, Reset R, bool Detach, typename S>
LIF_HD S threshold_grad(const NeuronParams<S>& p, S gs, S gv, S gh, S h, S sg, bool spike, bool reset_flag) {
  const S through_spike = Detach ? gs : lif_fma(gv, M::template dv_ds<R>(p, h), gs);
  return -sg * through_spike + gv * M::template dv_dtheta<R, S>(spike) +
         gh * M::template dcharge_dtheta<R, S>(reset_flag);
}

}  // namespace sltt
