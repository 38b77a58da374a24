"""Running the elementwise neuron ops on a tensor in its own memory order.

The native and Triton neuron ops read their inputs as contiguous [T, N] (or [N]) arrays and call
.contiguous() on what they are given, so a channels_last input (what a channels_last conv and its
batch norm hand on) is copied on the way in, its gradient again on the way back, and the spikes
come out in the default layout, which the next channels_last conv copies once more. A neuron is
elementwise over the neurons of a step, so the order in which they are stored does not matter:
viewing x through the permutation that makes it contiguous (a view, no copy), running the op on
that, and permuting the results back gives the same numbers, bit for bit, in x's own layout.

    x [B, C, H, W] channels_last: order (0, 2, 3, 1): x.permute(order) is contiguous [B, H, W, C]
    x [T, B, C, H, W] whose steps are channels_last: order (0, 1, 3, 4, 2) (time stays first)

Functions: storage_order (the permutation, or None for a tensor with gaps or overlaps, which
the ops copy as before), storage_orders (it and the state's, where anything moves), in_storage_order (the views an op call takes, and the function that
puts its outputs back), step_view (a per-neuron parameter viewed as in_storage_order views the
state).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

__all__ = ["storage_order", "storage_orders", "in_storage_order", "step_view"]


def storage_order(t: torch.Tensor, keep_first: bool = False) -> Optional[Tuple[int, ...]]:
    """The permutation p with t.permute(p) contiguous, or None where there is none (t has gaps
    or overlapping elements: a slice with a step, an expanded tensor). keep_first: p must keep
    dimension 0 first (the time of a multi-step input, which the ops walk in order), else None.

    Example:
        >>> storage_order(torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last))
        (0, 2, 3, 1)
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    n = t.dim()
    if t.is_contiguous():
        return tuple(range(n))
    # largest stride first; ties (dimensions of size 1, whose stride means nothing) keep their order
    first = (0,) if keep_first and n > 0 else ()
    rest = sorted(range(len(first), n), key=lambda d: (-t.stride(d), d))
    order = first + tuple(rest)
    return order if t.permute(order).is_contiguous() else None


def storage_orders(x: torch.Tensor, multistep: bool) -> Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    """(order, state_order): the permutations in_storage_order views x ([T, ...] if multistep,
    else one step) and a step's state by, or None where nothing moves (x contiguous, or with no
    such order)."""
    order = storage_order(x, keep_first=multistep)
    if order is None or order == tuple(range(x.dim())):
        return None
    return order, (tuple(d - 1 for d in order[1:]) if multistep else order)


def _inverse(order: Tuple[int, ...]) -> Tuple[int, ...]:
    inverse = [0] * len(order)
    for i, d in enumerate(order):
        inverse[d] = i
    return tuple(inverse)


def in_storage_order(x: torch.Tensor, v: Optional[torch.Tensor], multistep: bool
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Callable]:
    """(x', v', restore) for one neuron op call: x' and v' are x and the state v (None stays
    None) viewed in x's memory order, and restore(spikes, v_new) turns the op's outputs (of the
    shapes of x' and v') back into x's shape and layout. x: [T, ...] if multistep, else [...];
    v: [...] of a step's shape. Where x is contiguous, or has no such order, nothing changes
    (restore returns its arguments). A v stored in another order than x still works: the op
    copies it, as before.

    Example:
        >>> x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
        >>> xs, vs, restore = in_storage_order(x, None, multistep=False)
        >>> xs.is_contiguous(), xs.shape
        (True, torch.Size([2, 4, 5, 3]))
        >>> restore(xs * 2, xs)[0].is_contiguous(memory_format=torch.channels_last)
        True
    """
    orders = storage_orders(x, multistep)
    if orders is None:
        return x, v, lambda spikes, v_new: (spikes, v_new)
    # the state is one step: without the time dimension when multistep
    order, state_order = orders
    back, state_back = _inverse(order), _inverse(state_order)
    v_view = v.permute(state_order) if v is not None else None

    def restore(spikes: torch.Tensor, v_new: torch.Tensor):
        return spikes.permute(back), v_new.permute(state_back)

    return x.permute(order), v_view, restore


def step_view(t: Optional[torch.Tensor], x: torch.Tensor, multistep: bool) -> Optional[torch.Tensor]:
    """A tensor of one step's shape (a per-neuron k or threshold, docs/design.md, section 2.6)
    viewed in the order in_storage_order(x, ...) views the state; one element, None, or x in its
    default order: unchanged.

    Example:
        >>> x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
        >>> step_view(torch.randn(2, 3, 4, 5), x, multistep=False).shape
        torch.Size([2, 4, 5, 3])
    """
    if t is None or t.numel() == 1:
        return t
    orders = storage_orders(x, multistep)
    return t if orders is None else t.permute(orders[1])
