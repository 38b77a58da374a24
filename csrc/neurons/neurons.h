// The neuron models, one header each. Adding a model: a header with its NeuronModel
// specialisation, an include and a case in csrc/lif_dispatch.h, and the same model in
// sltt_kernels/_config.py, reference.py and triton/kernels.py (docs/design.md, section 6).
#pragma once

#include "if.h"
#include "leaky.h"
#include "lif.h"
