"""The neuron models, one file each, as csrc/neurons/ has one header each (docs/design.md, section 6).

Each file holds everything Python knows about its model (its keywords and value rules, its
reference charge and reset, its op counts, its public multi-step and one-step functions) and
registers it in `sltt_kernels._config.MODELS`; the validator, the reference, the ops, the counters
and the tests iterate that registry. Every module of this package is imported here, so a new
model's file needs no line elsewhere in Python.
"""

from __future__ import annotations

import importlib
import pkgutil

from .._config import MODELS, check_registry

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    importlib.import_module(f"{__name__}.{_info.name}")  # each registers its model
check_registry()

# name -> function, for every model's public functions (sltt_kernels.lif_multistep, ...)
FUNCTIONS = {fn.__name__: fn for model in MODELS.values() for fn in model.functions}
# every model's keyword checkers (lif_config, ...): name -> function
CONFIGS = {fn.__name__: fn for model in MODELS.values() for fn in model.configs}

__all__ = ["MODELS", "FUNCTIONS", "CONFIGS"] + list(FUNCTIONS)
globals().update(FUNCTIONS)
