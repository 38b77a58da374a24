"""Layers that keep their spike input as 1 bit per element for the backward.

A convolution or linear layer saves its input for the weight gradient. When that input is spikes
(exactly 0.0 or 1.0) stored as float32, 31 of every 32 saved bits carry nothing. The layers here
save such an input bit-packed, and unpack it in the backward: the unpacked tensor equals the
input to the bit (values and strides), so the gradients are bit-identical to the dense layer's.

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
from .recompute import Recipe, attach_recipe, is_dense

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


class _Saved:
    """What a layer keeps of its input: the bits and scale, or the dense tensor."""

    @staticmethod
    def pack(ctx, x: torch.Tensor, backend: str, module) -> List[torch.Tensor]:
        """Tensors to save; sets ctx.packed and what unpacking needs."""
        if getattr(module, "spike_pack_dense", False):  # an input known not to be spikes: as the plain layer
            ctx.packed = False
            module.__dict__.setdefault("_spike_pack_calls", [0, 0])[1] += 1
            return [x]
        perm = _dense_permutation(x)
        ordered = x.permute(perm) if perm is not None else x.contiguous()
        pack, unpack = pack_ops(x, backend)
        bits, scale = pack(ordered)
        ctx.packed = not bool(torch.isnan(scale))  # the host reads the verdict: see the module docstring
        if module is not None:
            calls = module.__dict__.setdefault("_spike_pack_calls", [0, 0])
            calls[0 if ctx.packed else 1] += 1
        if not ctx.packed:
            return [x]
        ctx.unpack = unpack
        ctx.shape = list(ordered.shape)
        ctx.inverse = None if perm is None or perm == sorted(perm) else [perm.index(d) for d in range(len(perm))]
        return [bits, scale]

    @staticmethod
    def unpack(ctx, saved: List[torch.Tensor]) -> torch.Tensor:
        if not ctx.packed:
            return saved[0]
        x = ctx.unpack(saved[0], saved[1], ctx.shape)
        return x.permute(ctx.inverse) if ctx.inverse is not None else x


class _SpikeInputConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, backend, module):
        dim = weight.dim() - 2
        out = (F.conv1d, F.conv2d, F.conv3d)[dim - 1](x, weight, bias, stride, padding, dilation, groups)
        ctx.args = (list(stride), list(padding), list(dilation), groups, dim)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        ctx.n_x = 0
        saved = _Saved.pack(ctx, x, backend, module)
        ctx.n_x = len(saved)
        ctx.save_for_backward(*saved, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        *saved, weight = ctx.saved_tensors
        x = _Saved.unpack(ctx, saved)
        stride, padding, dilation, groups, dim = ctx.args
        # what ConvolutionBackward0 (the dense layer's autograd node) calls, with the same tensors
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad_out, x, weight, ctx.bias_sizes, stride, padding, dilation, False, [0] * dim, groups,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.bias_sizes is not None and ctx.needs_input_grad[2]])
        return gx, gw, gb, None, None, None, None, None, None


class _SpikeInputLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, backend, module):
        out = F.linear(x, weight, bias)
        saved = _Saved.pack(ctx, x, backend, module)
        ctx.has_bias = bias is not None
        if bias is not None:
            saved.append(bias)
        ctx.save_for_backward(*saved, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        *saved, weight = ctx.saved_tensors
        bias = saved.pop() if ctx.has_bias else None
        x = _Saved.unpack(ctx, saved)
        # The dense layer's graph depends on the input's rank and strides (addmm, matmul, mm with
        # transposes); recomputing it on the restored input gives its exact gradients, for one
        # extra matrix product (linear layers are a small part of these networks' cost).
        leaves = [t.detach().requires_grad_(need) if t is not None else None
                  for t, need in zip((x, weight, bias), ctx.needs_input_grad[:3])]
        wanted = [t for t, need in zip(leaves, ctx.needs_input_grad[:3]) if t is not None and need]
        # The recomputation's own saved tensors (this restored input and the weight) live only
        # during this backward: identity hooks keep them out of any outer saved-tensor hooks
        # (such as SavedTensorMeter), which would count them as if kept since the forward.
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_same, _same):
            out = F.linear(*leaves)
        grads = iter(torch.autograd.grad(out, wanted, grad_out))
        return tuple(next(grads) if (t is not None and need) else None
                     for t, need in zip(leaves, ctx.needs_input_grad[:3])) + (None, None)


def _same(t):
    return t


def _packs(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call saves anything worth packing: the weight gradient needs the input."""
    return (torch.is_grad_enabled() and weight.requires_grad and x.dtype in _registration.PACK_DTYPES
            and not torch.compiler.is_compiling())


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
    with torch.autocast(x.device.type, enabled=False) if cast else _nullcontext():
        out = _SpikeInputConv.apply(x, weight, bias, tup(stride), tup(padding), tup(dilation), groups, backend,
                                    _module)
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
        *saved, _ = self.node.saved_tensors
        return _Saved.unpack(self.node, saved)


class _ConvOutputRecipe(_ConvInputRecipe):
    """The output of a _SpikeInputConv call: the same convolution again, on its saved input."""

    def __init__(self, like, node, bias):
        super().__init__(like, node)
        self.bias = bias

    def rebuild(self) -> torch.Tensor:
        *saved, weight = self.node.saved_tensors
        x = _Saved.unpack(self.node, saved)
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
    with torch.autocast(x.device.type, enabled=False) if cast else _nullcontext():
        return _SpikeInputLinear.apply(x, weight, bias, backend, _module)


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

