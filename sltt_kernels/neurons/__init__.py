"""The neuron models, one file each, as csrc/neurons/ has one header each (docs/design.md, section 6).

Each file holds everything Python knows about its model (its keywords and value rules, its
reference charge and reset, its op counts, its public multi-step and one-step functions) and
registers it in `sltt_kernels._config.MODELS`; the validator, the reference, the ops, the counters
and the tests iterate that registry. They are imported here in their csrc code order.
"""

from __future__ import annotations

from .._config import MODELS
from . import lif, if_, leaky  # noqa: F401  (each registers its model; the order is csrc's)

# name -> function, for every model's public functions (sltt_kernels.lif_multistep, ...)
FUNCTIONS = {fn.__name__: fn for model in MODELS.values() for fn in model.functions}
# every model's keyword checkers (lif_config, ...): name -> function
CONFIGS = {fn.__name__: fn for model in MODELS.values() for fn in model.configs}

__all__ = ["MODELS", "FUNCTIONS", "CONFIGS"] + list(FUNCTIONS)
globals().update(FUNCTIONS)
