"""Batch norms that do not save their input: it is recomputed in backward, exactly.

A batch norm saves its input for backward: the output of the conv before it, 4 bytes per element,
most of what a spiking network with 1-bit conv inputs and 1-bit neuron masks keeps. That input
can be rebuilt from what the conv saves anyway (its input, packed to 1 bit when it is spikes) by
running the conv again. `pack_spike_inputs(model, recompute=True)` arranges it:

- a tensor that can be rebuilt carries a *recipe* (a Python attribute of the tensor at the root
  of its views): the output of a conv layer of nn/packed_layers.py (the same conv on its saved
  input), the input of such a conv (its saved copy, unpacked), or the sum made by ResidualAdd of
  two such tensors (a pre-activation block's residual stream);
- while a batch norm converted here (RecomputeInputBatchNorm*) runs its forward, which is the
  plain one (so the running statistics and num_batches_tracked are updated once, as always),
  saved-tensor hooks replace every tensor it saves that carries a recipe by that recipe; the
  other tensors it saves (its mean and inverse std, its weight) go to the hooks outside, if any
  (SavedTensorMeter counts them), else are kept as usual;
- in backward, aten's own batch-norm backward asks for its input: the hook rebuilds it, once per
  forward call (a multi-step batch norm saves T views of one conv output: one rebuild serves
  them all), and frees it when the last view has been handed out. Nothing else is re-run.

Exact when the convolution is deterministic: the rebuilt tensor equals the forward's bit for bit,
so the gradients and running statistics equal the plain model's. On a CPU the convolution is
(same shapes, same thread count). On a GPU, set torch.backends.cudnn.deterministic = True (or
torch.use_deterministic_algorithms(True)) and leave torch.backends.cudnn.benchmark off: cuDNN may
otherwise pick another algorithm for the backward's rerun than for the forward, whose sums round
differently.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ._dynamic import dynamic_name, original_class

__all__ = ["ResidualAdd", "Recipe", "attach_recipe", "find_recipe", "recompute_class", "is_recomputing",
           "is_batch_norm"]

RECIPE_ATTR = "_sltt_recompute_recipe"


class ViewSpec(NamedTuple):
    """Where a view lies in its storage: its sizes, strides and storage offset."""

    size: Tuple[int, ...]
    stride: Tuple[int, ...]
    offset: int


def _spec(t: torch.Tensor) -> ViewSpec:
    return ViewSpec(tuple(t.shape), tuple(t.stride()), t.storage_offset())


def is_dense(t: torch.Tensor) -> bool:
    """Whether t covers a block of its storage with no hole and no overlap (contiguous in some
    order of its dimensions, as a channels_last tensor is)."""
    if t.is_contiguous():
        return True
    order = sorted(range(t.dim()), key=lambda d: (-t.stride(d), d))
    return t.permute(order).is_contiguous()


class Recipe:
    """How to rebuild one dense tensor (`like`: its shape, strides, dtype and device) exactly.

    Subclasses define rebuild(). Views of the tensor are rebuilt from it (view()); saved views
    share one rebuild while any of them is still to be handed out (take())."""

    def __init__(self, like: torch.Tensor):
        self.spec = _spec(like)
        self.dtype = like.dtype
        self.device = like.device
        self.version = like._version  # an in-place change after this makes the recipe stale
        self.pending = 0  # saved views not yet handed to backward
        self._cache: Optional[torch.Tensor] = None

    def rebuild(self) -> torch.Tensor:
        raise NotImplementedError

    def materialize(self) -> torch.Tensor:
        """The rebuilt tensor, with the original's shape and strides."""
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            t = self.rebuild()
        size, stride, _ = self.spec
        if tuple(t.shape) != size or any(n > 1 and a != b for n, a, b in zip(size, t.stride(), stride)):
            raise RuntimeError(f"sltt_kernels: a recomputed tensor has shape {tuple(t.shape)} and strides "
                               f"{t.stride()}, the original {size} and {stride}")
        return t

    def covers(self, t: torch.Tensor) -> bool:
        """Whether every element of the view t (same storage) is an element of the rebuilt tensor."""
        if t.numel() == 0 or t.dtype != self.dtype or t.device != self.device:
            return False
        if any(s < 0 for s in t.stride()):
            return False
        first = t.storage_offset()
        last = first + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
        start = self.spec.offset
        count = 1
        for n in self.spec.size:
            count *= n
        return start <= first and last < start + count

    def view(self, spec: ViewSpec, base: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The view `spec` of the original, on a rebuilt copy (base, or a fresh rebuild)."""
        base = self.materialize() if base is None else base
        return base.as_strided(spec.size, spec.stride, base.storage_offset() + spec.offset - self.spec.offset)

    def take(self, spec: ViewSpec) -> torch.Tensor:
        """A saved view, for backward: rebuilt once for all the views saved in one forward."""
        if self._cache is None:
            self._cache = self.materialize()
        out = self.view(spec, self._cache)
        self.pending -= 1
        if self.pending <= 0:  # the last one: free the rebuilt tensor (a later backward rebuilds)
            self._cache, self.pending = None, 0
        return out


def attach_recipe(t: torch.Tensor, recipe: Recipe, replace: bool = False) -> None:
    """Marks the dense tensor t (or a view of it: the recipe goes to its root) as rebuildable."""
    root = t if t._base is None else t._base
    if not replace and getattr(root, RECIPE_ATTR, None) is not None:
        return
    setattr(root, RECIPE_ATTR, recipe)


def find_recipe(t) -> Optional[Tuple[Recipe, ViewSpec]]:
    """(recipe, where t lies) if t can be rebuilt exactly, else None."""
    if not isinstance(t, torch.Tensor):
        return None
    root = t if t._base is None else t._base
    recipe = getattr(root, RECIPE_ATTR, None)
    if recipe is None or root._version != recipe.version or not recipe.covers(t):
        return None
    return recipe, _spec(t)


class _SumRecipe(Recipe):
    """a + b, each rebuilt from its own recipe."""

    def __init__(self, like, a: Tuple[Recipe, ViewSpec], b: Tuple[Recipe, ViewSpec]):
        super().__init__(like)
        self.parts = (a, b)

    def rebuild(self) -> torch.Tensor:
        (ra, sa), (rb, sb) = self.parts
        return ra.view(sa) + rb.view(sb)


class ResidualAdd(nn.Module):
    """a + b for a residual connection, rebuildable in backward when both operands are (a conv's
    output, a packed conv's input): with pack_spike_inputs(model, recompute=True) the batch norm
    that reads the sum does not save it. Otherwise exactly `a + b`.

    a, b: tensors of one shape (or broadcastable), any dtype. Example:
        >>> add = ResidualAdd()
        >>> add(torch.ones(2, 3), torch.ones(2, 3)).sum().item()
        12.0
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = a + b
        if torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out._base is None:
            found_a, found_b = find_recipe(a), find_recipe(b)
            if found_a is not None and found_b is not None and is_dense(out):
                attach_recipe(out, _SumRecipe(out, found_a, found_b))
        return out


class _SaveRecipes(torch.autograd.graph.saved_tensors_hooks):
    """Saved-tensor hooks that keep a recipe instead of each tensor that has one, and hand every
    other tensor to the hooks that were active outside (so that they still see it)."""

    def __init__(self):
        top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
        outer = top(False) if top is not None else None
        self.outer_pack, self.outer_unpack = outer if outer is not None else (None, None)
        super().__init__(self._pack, self._unpack)

    def _pack(self, t):
        found = find_recipe(t)
        if found is not None:
            found[0].pending += 1
            return True, found
        return False, (self.outer_pack(t) if self.outer_pack is not None else t)

    def _unpack(self, packed):
        rebuilt, value = packed
        if rebuilt:
            recipe, spec = value
            return recipe.take(spec)
        return self.outer_unpack(value) if self.outer_unpack is not None else value


def _hooks_enabled() -> bool:
    """False inside torch.autograd.graph.disable_saved_tensors_hooks (then the input is saved)."""
    enabled = getattr(torch._C._autograd, "_saved_tensors_hooks_is_enabled", None)
    return enabled is None or enabled()


class _RecomputeInputMixin:
    """The batch norm's own forward, with its input (and any view of it) saved as a recipe."""

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled() or torch.compiler.is_compiling() or not _hooks_enabled():
            return super().forward(*args, **kwargs)
        with _SaveRecipes():
            return super().forward(*args, **kwargs)


def is_batch_norm(m: nn.Module) -> bool:
    """Whether m is a batch norm (any torch batch norm class or subclass, SpikingJelly's too)."""
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def is_recomputing(m: nn.Module) -> bool:
    """Whether m is a batch norm converted to recompute its input."""
    return isinstance(m, _RecomputeInputMixin)


# Subclasses made on demand, named after the class they extend so that pickle finds them again
# through the module __getattr__ below (as nn/packed_layers.py does for the packed layers).
_DYNAMIC: Dict[str, type] = {}
DYNAMIC_PREFIX = "RecomputeInput__"


def recompute_class(cls: type) -> type:
    """The subclass of a batch-norm class whose instances recompute their input in backward."""
    if issubclass(cls, _RecomputeInputMixin):
        return cls
    name = dynamic_name(DYNAMIC_PREFIX, cls)
    if name not in _DYNAMIC:
        _DYNAMIC[name] = type(name, (_RecomputeInputMixin, cls),
                              {"__module__": __name__, "__qualname__": name,
                               "__doc__": f"{cls.__qualname__} that recomputes its input in backward."})
    return _DYNAMIC[name]


def __getattr__(name: str):
    if name.startswith(DYNAMIC_PREFIX):
        return recompute_class(original_class(DYNAMIC_PREFIX, name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
