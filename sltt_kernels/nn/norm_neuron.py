"""A batch norm and the neuron after it in one kernel pass: `batch_norm_neuron(bn, neuron, x)`.

neuron(bn(x)) writes the normalised activation and the neuron reads it back. With
`fuse_norm_neurons(model)` (or a model built with fuse_norm=True) the models' blocks call
batch_norm_neuron instead, which hands the batch norm's per-channel scale and shift to the neuron
kernel (ops.BatchNormInput, sltt_kernels/_norm_neuron.py): the activation is never stored. The
modules and their state_dict are unchanged; the running statistics and num_batches_tracked are
updated once per call, as the batch norm's own forward does. The rounding differs from aten's
batch norm in its last bits (docs/design.md, section 4.3), so the plain path stays the exact one.

Where the pair cannot be fused (a batch norm or neuron class with its own forward, hooks on
either or on every module, a learnable k or threshold, store_v_seq, a 16-bit x or autocast,
step_mode 'm' (a multi-step StepBatchNorm2d normalises each step by its own statistics),
torch.compile or tracing), batch_norm_neuron is neuron(bn(x)).
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import BatchNormInput
from .layers import StepBatchNorm2d
from .neurons import BaseNode
from .recompute import _hooks_enabled, _RecomputeInputMixin, _SaveRecipes, is_batch_norm

__all__ = ["batch_norm_neuron", "fuse_norm_neurons", "FUSE_ATTR"]

# the module attribute that asks for the fused path (a plain attribute: not in the state_dict)
FUSE_ATTR = "fuse_neuron"

# the forwards a fused batch norm may have along its class's MRO: the ones whose arithmetic the
# fused path reproduces (a subclass with its own forward is called as it is)
_KNOWN_FORWARDS = (nn.modules.batchnorm._BatchNorm.forward, StepBatchNorm2d.forward, _RecomputeInputMixin.forward)


def fuse_norm_neurons(model: nn.Module, enabled: bool = True) -> int:
    """Asks every batch norm of `model` to run its apply inside the neuron after it, where the
    model's forward calls batch_norm_neuron (the models of sltt_kernels.models do); returns how
    many batch norms were marked. enabled=False undoes it.

    Example:
        >>> from sltt_kernels.models import spiking_resnet18
        >>> fuse_norm_neurons(spiking_resnet18())
        17
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_norm_neurons: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(enabled, bool):
        raise TypeError(f"fuse_norm_neurons: enabled must be a bool, got {type(enabled).__name__}")
    count = 0
    for m in model.modules():
        if is_batch_norm(m):
            setattr(m, FUSE_ATTR, enabled)
            count += 1
    return count


def _known_forward(bn: nn.Module) -> bool:
    for cls in type(bn).__mro__:
        fwd = vars(cls).get("forward")
        if fwd is not None and fwd not in _KNOWN_FORWARDS and cls is not nn.Module:
            return False
    return True


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or getattr(m, "_backward_hooks", None)
                or getattr(m, "_backward_pre_hooks", None))


def _global_hooks() -> bool:
    """Hooks registered for every module (torch.nn.modules.module.register_module_forward_hook and
    its siblings): they expect to see the batch norm's and the neuron's own calls."""
    g = nn.modules.module
    return bool(getattr(g, "_global_forward_hooks", None) or getattr(g, "_global_forward_pre_hooks", None)
                or getattr(g, "_global_backward_hooks", None) or getattr(g, "_global_backward_pre_hooks", None))


def _fusable(bn: nn.Module, neuron: nn.Module, x) -> bool:
    if not getattr(bn, FUSE_ATTR, False) or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if not (is_batch_norm(bn) and isinstance(neuron, BaseNode) and isinstance(x, torch.Tensor)):
        return False
    # one step at a time: a multi-step StepBatchNorm2d normalises each step by its own statistics,
    # and a torch batch norm takes no [T, B, C, ...] input
    if neuron.step_mode != "s" or getattr(bn, "step_mode", "s") != "s":
        return False
    if x.dtype not in (torch.float32, torch.float64) or not _known_forward(bn):
        return False
    if _has_hooks(bn) or _has_hooks(neuron) or _global_hooks():
        return False
    if torch.is_autocast_enabled(x.device.type):
        return False
    if not neuron.can_fuse_norm() or x.numel() == 0:  # an empty batch: the plain pair's own answer
        return False
    # the batch norm's own input check (BatchNorm2d: a 4-d step), so a wrong x fails as it would
    bn._check_input_dim(x)
    return True


def _norm_input(bn: nn.Module) -> BatchNormInput:
    """The batch norm's arguments for this call, with num_batches_tracked counted as its forward
    counts it (torch's _BatchNorm.forward, whose arithmetic this follows)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    return BatchNormInput(bn.weight, bn.bias, bn.running_mean if keep_running else None,
                          bn.running_var if keep_running else None, batch_stats, factor, bn.eps)


def batch_norm_neuron(bn: nn.Module, neuron: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """neuron(bn(x)): with the batch norm's apply inside the neuron kernel where bn was marked by
    fuse_norm_neurons and the pair allows it (see the module's docstring), else exactly
    neuron(bn(x)).

    bn: a batch norm over dimension 1 of a step; neuron: a spiking neuron module (ours, for the
    fused path); x: [B, C, ...] (step_mode 's', the fused path) or [T, B, C, ...] ('m', the plain
    pair). Returns the spikes in x's shape and dtype.

    Example:
        >>> from sltt_kernels.nn import LIFNode
        >>> bn, sn = nn.BatchNorm2d(8), LIFNode()
        >>> _ = fuse_norm_neurons(bn)
        >>> batch_norm_neuron(bn, sn, torch.randn(4, 8, 5, 5)).shape
        torch.Size([4, 8, 5, 5])
    """
    if not _fusable(bn, neuron, x):
        return neuron(bn(x))
    norm = _norm_input(bn)
    if isinstance(bn, _RecomputeInputMixin) and torch.is_grad_enabled() and _hooks_enabled():
        with _SaveRecipes():  # x is kept as its recipe (nn/recompute.py), as the batch norm's own forward does
            return neuron.forward_after_norm(x, norm)
    return neuron.forward_after_norm(x, norm)
