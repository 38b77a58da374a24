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
//   kLearnableK             takes a learnable k = 1/tau (a tensor): lam = 1 - k
//   kNoLeak                 decay and input_gain are fixed at 1 (IF)
//   kUnitGainDetachedReset  input_gain is fixed at 1 and the reset is detached (leaky)
template <Neuron NM>
struct NeuronModel;

}  // namespace sltt

#include "lif.h"
#include "if.h"
#include "leaky.h"
