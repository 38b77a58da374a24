"""Layers that keep their spike input as 1 bit per element for the backward.

A convolution or linear layer saves its input for the weight gradient. When that input is spikes
(exactly 0.0 or 1.0) stored as float32, 31 of every 32 saved bits carry nothing. The layers here
save such an input bit-packed, and unpack it in the backward: the unpacked tensor equals the
input to the bit (values and strides), so the gradients are bit-identical to the dense layer's.
The bits are kept through saved-tensor hooks (_PackedInput), so the unpacked input keeps the
input's place in the graph: a backward with create_graph=True gives the dense layer's
second-order gradients, the input's included.

Exact by construction: the pack kernel (sltt_kernels.spike_pack: fused CPU/CUDA/Triton kernels)
reports whether the input was "two-valued" - the bit pattern of every element that of
+0.0 or one common pattern s (compared as integers: exact for -0.0 and NaN too),
as spikes ({0, 1}), spikes after a dropout ({0, 1/(1-p)}) or a constant gain ({0, 2.74}) are - and
stores the bits with that scale s; any other input is saved dense, as the plain layer saves it.
Deciding to save packed or dense reads the kernel's verdict on the host: one device
synchronisation per layer call on a GPU. Under torch.compile the layers take the dense path (that
decision would break the graph); the ops themselves trace (fake kernels, autograd).

Which layers of a model read spikes is found by nn/spike_inputs.py (pack_spike_inputs), which
swaps their classes for the packed ones here.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import _registration
from ..spike_pack import pack_ops
from ._dynamic import dynamic_name, original_class
from .recompute import Recipe, _hooks_enabled, attach_recipe, is_dense

__all__ = [
    "spike_input_conv",
    "spike_input_linear",
    "PackedConv1d",
    "PackedConv2d",
    "PackedConv3d",
    "PackedLinear",
    "packed_class",
    "is_packed",
    "is_packable_layer",
    "unsupported_reason",
]

# ---------------------------------------------------------------------------------------------
# Saving one tensor packed when it is two-valued


def _dense_permutation(x: torch.Tensor) -> Optional[List[int]]:
    """A permutation p with x.permute(p) contiguous, if x is dense and non-overlapping (as a
    channels_last tensor is), else None. Unpacking into that order and permuting back restores
    x's strides, so the backward kernels (which choose by memory format) take the same path."""
    if x.is_contiguous():
        return list(range(x.dim()))
    p = sorted(range(x.dim()), key=lambda d: (-x.stride(d), d))
    return p if x.permute(p).is_contiguous() else None


class _PackedInput(torch.autograd.graph.saved_tensors_hooks):
    """Saved-tensor hooks around one call of a packed layer: the layer's input x, when two-valued,
    is kept as its bits and scale and unpacked when the backward reads it; every other saved
    tensor (the weight, the bias, an x that is not two-valued) goes to the hooks that were active
    outside (SavedTensorMeter, checkpointing, recompute's), and the bits and scale too.

    Saving x itself through hooks (rather than saving the bits in its place) keeps x's place in
    the graph: autograd gives the unpacked tensor x's autograd history, so a backward run with
    create_graph=True is differentiable through x as the dense layer's is (a second-order
    gradient reaches x through the weight gradient).

    Autograd checks no version of a tensor saved through hooks, so a tensor kept as it is (no
    outer hooks) has its version checked here: an in-place change before the backward is
    refused as the plain layer refuses it. The bits are a copy: an in-place change of a packed
    x leaves the gradients those of the forward's x (as before)."""

    def __init__(self):
        top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
        outer = top(False) if top is not None else None
        self.outer_pack, self.outer_unpack = outer if outer is not None else (None, None)
        self.x = None  # the input, while the call runs (dropped after: the hooks outlive the call)
        self.bits = None  # (bits, scale, unpack, shape, inverse permutation) when x is two-valued
        self.packed = False
        super().__init__(self._pack, self._unpack)

    def __enter__(self) -> "_PackedInput":
        super().__enter__()
        return self

    def __exit__(self, *exc):
        self.x = self.bits = None
        return super().__exit__(*exc)

    def decide(self, x: torch.Tensor, backend: str, module) -> None:
        """Runs the pack kernel on x (inside the layer's forward) and keeps its bits if x is
        two-valued; counts the call as packed or dense on the module."""
        self.x, self.packed = x, False
        if not getattr(module, "spike_pack_dense", False):  # else: an input known not to be spikes
            perm = _dense_permutation(x)
            ordered = x.permute(perm) if perm is not None else x.contiguous()
            pack, unpack = pack_ops(x, backend)
            bits, scale = pack(ordered)
            self.packed = not bool(torch.isnan(scale))  # the host reads the verdict: see the module docstring
            if self.packed:
                inverse = None if perm is None or perm == sorted(perm) else [perm.index(d) for d in range(len(perm))]
                self.bits = (bits, scale, unpack, list(ordered.shape), inverse)
        if module is not None:
            calls = module.__dict__.setdefault("_spike_pack_calls", [0, 0])
            calls[0 if self.packed else 1] += 1

    def _outer(self, t):
        return self.outer_pack(t) if self.outer_pack is not None else t

    def _outer_back(self, value):
        return self.outer_unpack(value) if self.outer_unpack is not None else value

    def _pack(self, t):
        if self.bits is not None and t is self.x:
            bits, scale, unpack, shape, inverse = self.bits
            return True, (self._outer(bits), self._outer(scale), unpack, shape, inverse)
        if self.outer_pack is None:
            return False, (t, t._version)
        return False, (self.outer_pack(t), None)

    def _unpack(self, saved) -> torch.Tensor:
        packed, value = saved
        if not packed:
            kept, version = value
            if version is None:
                return self.outer_unpack(kept)
            if kept._version != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: a {type(kept).__name__} of shape {list(kept.shape)} saved by a packed spike-input "
                    f"layer is at version {kept._version}; expected version {version} instead.")
            return kept
        bits, scale, unpack, shape, inverse = value
        # the unpacked tensor equals x to the bit, values and strides (so the backward kernels,
        # which choose by memory format, take the dense layer's path)
        x = unpack(self._outer_back(bits), self._outer_back(scale), shape)
        return x.permute(inverse) if inverse is not None else x


class _SpikeInputConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, backend, module, hooks):
        dim = weight.dim() - 2
        out = (F.conv1d, F.conv2d, F.conv3d)[dim - 1](x, weight, bias, stride, padding, dilation, groups)
        ctx.args = (list(stride), list(padding), list(dilation), groups, dim)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        hooks.decide(x, backend, module)
        ctx.packed = hooks.packed
        ctx.save_for_backward(x, weight)  # x through the hooks: its bits when two-valued
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, dim = ctx.args
        # what ConvolutionBackward0 (the dense layer's autograd node) calls, with the same tensors;
        # with create_graph=True it is recorded (its own backward is the dense layer's double backward)
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad_out, x, weight, ctx.bias_sizes, stride, padding, dilation, False, [0] * dim, groups,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.bias_sizes is not None and ctx.needs_input_grad[2]])
        return gx, gw, gb, None, None, None, None, None, None, None


class _SpikeInputLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, backend, module, hooks):
        out = F.linear(x, weight, bias)
        hooks.decide(x, backend, module)
        ctx.packed = hooks.packed
        ctx.save_for_backward(x, weight, bias)  # x through the hooks: its bits when two-valued
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        # The dense layer's graph depends on the input's rank and strides (addmm, matmul, mm with
        # transposes); recomputing it on the restored input gives its exact gradients, for one
        # extra matrix product (linear layers are a small part of these networks' cost).
        if torch.is_grad_enabled():
            # create_graph=True: the gradients must be differentiable, as the dense layer's are,
            # so the recomputation runs on the saved tensors themselves (x's unpacked copy has
            # x's autograd history: a second-order gradient reaches x, the weight and grad_out)
            leaves = [x, weight, bias]
            wanted = [t for t, need in zip(leaves, needs) if t is not None and need]
            out = F.linear(x, weight, bias)
            grads = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True))
        else:
            leaves = [t.detach().requires_grad_(need) if t is not None else None
                      for t, need in zip((x, weight, bias), needs)]
            wanted = [t for t, need in zip(leaves, needs) if t is not None and need]
            # The recomputation's own saved tensors (this restored input and the weight) live only
            # during this backward: identity hooks keep them out of any outer saved-tensor hooks
            # (such as SavedTensorMeter), which would count them as if kept since the forward.
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_same, _same):
                out = F.linear(*leaves)
            grads = iter(torch.autograd.grad(out, wanted, grad_out))
        return tuple(next(grads) if (t is not None and need) else None
                     for t, need in zip(leaves, needs)) + (None, None, None)


def _same(t):
    return t


def _packs(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call saves anything worth packing: the weight gradient needs the input."""
    return (torch.is_grad_enabled() and weight.requires_grad and x.dtype in _registration.PACK_DTYPES
            and not torch.compiler.is_compiling()
            and _hooks_enabled())  # inside disable_saved_tensors_hooks: saved dense, as the plain layer saves it


def _autocast(x, weight, bias):
    """Autocast's casts of a conv/linear (both are in its lower-precision lists), applied here so
    that the saved input is the one the dense layer would save."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x, weight, bias, False
    dt = torch.get_autocast_dtype(device)
    cast = [t.to(dt) if t is not None and t.is_floating_point() else t for t in (x, weight, bias)]
    return cast[0], cast[1], cast[2], True


def spike_input_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                     padding=0, dilation=1, groups: int = 1, backend: str = "auto", _module=None) -> torch.Tensor:
    """F.conv1d/2d/3d (by weight.dim()) that saves a two-valued x as bits for the backward.

    x: [B, C_in, *spatial] (or unbatched), float16/bfloat16/float32/float64; weight: [C_out,
    C_in / groups, *kernel]; padding: numbers (not 'same'/'valid'). Same output and bit-identical
    gradients as the F.conv call. Example:
        >>> s = (torch.rand(2, 3, 8, 8) < 0.2).float()
        >>> w = torch.randn(4, 3, 3, 3, requires_grad=True)
        >>> spike_input_conv(s, w, padding=1).sum().backward()
    """
    if not _packs(x, weight):
        return (F.conv1d, F.conv2d, F.conv3d)[weight.dim() - 3](x, weight, bias, stride, padding, dilation, groups)
    dim = weight.dim() - 2
    tup = lambda v: (v,) * dim if isinstance(v, int) else tuple(v)  # noqa: E731
    x, weight, bias, cast = _autocast(x, weight, bias)
    with torch.autocast(x.device.type, enabled=False) if cast else _nullcontext(), _PackedInput() as hooks:
        out = _SpikeInputConv.apply(x, weight, bias, tup(stride), tup(padding), tup(dilation), groups, backend,
                                    _module, hooks)
    if getattr(_module, "spike_recompute", False) and out.grad_fn is not None:
        # what a batch norm reading `out` (or x, through a ResidualAdd) needs to rebuild it in
        # backward instead of saving it: this call's saved tensors, through its autograd node
        attach_recipe(out, _ConvOutputRecipe(out, out.grad_fn, bias), replace=True)
        if is_dense(x):
            attach_recipe(x, _ConvInputRecipe(x, out.grad_fn))
    return out


class _ConvInputRecipe(Recipe):
    """The input of a _SpikeInputConv call, from what it saved (the bits, or the dense tensor)."""

    def __init__(self, like, node):
        super().__init__(like)
        self.node = node  # the call's autograd node (its ctx): its saved tensors live until its backward

    def rebuild(self) -> torch.Tensor:
        return self.node.saved_tensors[0]  # unpacked by the call's _PackedInput hooks


class _ConvOutputRecipe(_ConvInputRecipe):
    """The output of a _SpikeInputConv call: the same convolution again, on its saved input."""

    def __init__(self, like, node, bias):
        super().__init__(like, node)
        self.bias = bias

    def rebuild(self) -> torch.Tensor:
        x, weight = self.node.saved_tensors
        stride, padding, dilation, groups, dim = self.node.args
        return (F.conv1d, F.conv2d, F.conv3d)[dim - 1](x, weight, self.bias, stride, padding, dilation, groups)


def spike_input_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                       backend: str = "auto", _module=None) -> torch.Tensor:
    """F.linear that saves a two-valued x as bits for the backward.

    x: [*, in_features]; weight: [out_features, in_features]; bias: [out_features] or None.
    Same output and bit-identical gradients as F.linear. Example:
        >>> s = (torch.rand(8, 16) < 0.2).float()
        >>> w = torch.randn(4, 16, requires_grad=True)
        >>> spike_input_linear(s, w).sum().backward()
    """
    if not _packs(x, weight):
        return F.linear(x, weight, bias)
    x, weight, bias, cast = _autocast(x, weight, bias)
    with torch.autocast(x.device.type, enabled=False) if cast else _nullcontext(), _PackedInput() as hooks:
        return _SpikeInputLinear.apply(x, weight, bias, backend, _module, hooks)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------
# Layers


def _same_padding(module) -> Optional[Tuple[int, ...]]:
    """The numeric padding of a conv with padding 'valid' or symmetric 'same'; None if asymmetric."""
    if module.padding == "valid":
        return (0,) * len(module.kernel_size)
    pads = []
    for d, k in zip(module.dilation, module.kernel_size):
        total = d * (k - 1)
        if total % 2:
            return None
        pads.append(total // 2)
    return tuple(pads)


class _PackedConvMixin:
    """Overrides the conv's _conv_forward (every nn.ConvNd forward, and subclasses' that build
    their weight first, end there), so any conv class can be packed by subclassing."""

    spike_pack_backend = "auto"
    spike_pack_dense = False  # True: the input is not spikes; saved dense, as the plain layer saves it
    spike_recompute = False  # True: the output (and input) can be rebuilt in backward (nn/recompute.py)

    def _conv_forward(self, input, weight, bias):
        if not _packs(input, weight):
            return super()._conv_forward(input, weight, bias)
        padding = self.padding
        if isinstance(padding, str):
            padding = _same_padding(self)
            if padding is None:  # asymmetric 'same' pads the input inside F.conv: leave it dense
                return super()._conv_forward(input, weight, bias)
        if self.padding_mode != "zeros":  # as nn.ConvNd does; padding spikes keeps them spikes
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0,) * len(self.kernel_size)
        return spike_input_conv(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                                self.spike_pack_backend, self)


class _PackedLinearMixin:
    spike_pack_backend = "auto"

    def forward(self, input):
        return spike_input_linear(input, self.weight, self.bias, self.spike_pack_backend, self)


class PackedConv1d(_PackedConvMixin, nn.Conv1d):
    """nn.Conv1d that saves a two-valued (spike) input as 1 bit per element; see the module doc."""


class PackedConv2d(_PackedConvMixin, nn.Conv2d):
    """nn.Conv2d that saves a two-valued (spike) input as 1 bit per element for the backward.

    Same arguments, parameters, output and (bit-identical) gradients as nn.Conv2d; x: [B, C, H, W].
    A non-two-valued input is saved dense. Example:
        >>> conv = PackedConv2d(3, 8, 3, padding=1)
        >>> conv((torch.rand(2, 3, 16, 16) < 0.3).float()).sum().backward()
    """


class PackedConv3d(_PackedConvMixin, nn.Conv3d):
    """nn.Conv3d that saves a two-valued (spike) input as 1 bit per element; see PackedConv2d."""


class PackedLinear(_PackedLinearMixin, nn.Linear):
    """nn.Linear that saves a two-valued (spike) input as 1 bit per element for the backward.

    x: [*, in_features]. Example:
        >>> fc = PackedLinear(16, 4)
        >>> fc((torch.rand(8, 16) < 0.3).float()).sum().backward()
    """


_EXACT = {nn.Conv1d: PackedConv1d, nn.Conv2d: PackedConv2d, nn.Conv3d: PackedConv3d, nn.Linear: PackedLinear}
_PACKED = (_PackedConvMixin, _PackedLinearMixin)


def is_packed(m: nn.Module) -> bool:
    """Whether m is a packed layer (one of this module's classes)."""
    return isinstance(m, _PACKED)


# Packed subclasses of other conv/linear classes (ScaledWSConv2d, SpikingJelly's layer.Conv2d,
# ...), made on demand under a name that encodes the original class, so that pickle finds them
# again through the module __getattr__ below.
_DYNAMIC: Dict[str, type] = {}
DYNAMIC_PREFIX = "PackedSub__"


def packed_class(cls: type) -> type:
    """The packed subclass of a conv/linear class (PackedConv2d for nn.Conv2d, made on demand for others)."""
    if cls in _EXACT:
        return _EXACT[cls]
    name = dynamic_name(DYNAMIC_PREFIX, cls)
    if name not in _DYNAMIC:
        mixin = _PackedLinearMixin if issubclass(cls, nn.Linear) else _PackedConvMixin
        _DYNAMIC[name] = type(name, (mixin, cls), {"__module__": __name__, "__qualname__": name,
                                                   "__doc__": f"{cls.__qualname__} with packed spike inputs."})
    return _DYNAMIC[name]


def __getattr__(name: str):
    if name.startswith(DYNAMIC_PREFIX):
        return packed_class(original_class(DYNAMIC_PREFIX, name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unsupported_reason(m: nn.Module) -> Optional[str]:
    """Why this conv/linear cannot be packed, or None."""
    cls = type(m)
    if isinstance(m, _PACKED):
        return None
    if isinstance(m, nn.modules.lazy.LazyModuleMixin):
        return "a lazy module (initialise it first)"
    if isinstance(m, nn.Linear):
        if cls.forward is not nn.Linear.forward:
            return f"{cls.__qualname__} has its own forward"
        return None
    if cls._conv_forward is not _base_conv(m)._conv_forward:
        return f"{cls.__qualname__} has its own _conv_forward"
    if isinstance(m.padding, str) and _same_padding(m) is None:
        return "padding='same' with an even dilated kernel pads asymmetrically"
    return None


def _base_conv(m):
    for base in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(m, base):
            return base
    return None


def is_packable_layer(m: nn.Module) -> bool:
    """Whether m is a layer this module can pack: a conv (1d/2d/3d) or a linear layer."""
    return isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))

