"""Layers that keep their spike input as 1 bit per element for the backward.

A convolution or linear layer saves its input for the weight gradient. When that input is spikes
(exactly 0.0 or 1.0) stored as float32, 31 of every 32 saved bits carry nothing. The layers here
save such an input bit-packed, and unpack it in the backward: the unpacked tensor equals the
input to the bit (values and strides), so the gradients are bit-identical to the dense layer's.

Exact by construction: the pack kernel (torch.ops.sltt_kernels.spike_pack, fused CPU/CUDA/Triton
kernels) reports whether the input was "two-valued" - the bit pattern of every element that of
+0.0 or one common pattern s (compared as integers: exact for -0.0 and NaN too),
as spikes ({0, 1}), spikes after a dropout ({0, 1/(1-p)}) or a constant gain ({0, 2.74}) are - and
stores the bits with that scale s; any other input is saved dense, as the plain layer saves it.

    >>> net = sltt_kernels.models.spiking_resnet18()
    >>> report = sltt_kernels.nn.pack_spike_inputs(net)     # in place
    >>> print(report)                                          # what was packed, what left dense and why

`pack_spike_inputs` packs only the layers whose input is known to be spikes: it follows each
module's forward (torch.fx, every child a leaf) from the neurons through shape-only and
value-preserving modules (dropout, flatten, max pooling, a constant gain). Deciding to save
packed or dense reads the kernel's verdict on the host: one device synchronisation per layer call
on a GPU. Under torch.compile the layers take the dense path (that decision would break the
graph); the ops themselves trace (fake kernels, autograd).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import _registration
from .._backend import select_backend
from .layers import FoldTime, Scale, TimeDropout
from .neurons import BaseNode

__all__ = [
    "spike_pack",
    "spike_unpack",
    "spike_input_conv",
    "spike_input_linear",
    "PackedConv1d",
    "PackedConv2d",
    "PackedConv3d",
    "PackedLinear",
    "PackReport",
    "pack_spike_inputs",
    "spike_pack_calls",
]


# ---------------------------------------------------------------------------------------------
# The ops, per backend


_PATTERN = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _reference_pack(x: torch.Tensor):
    """spike_pack in plain torch ops (no compiled extension): csrc/spike_pack.h's math on the
    elements' bit patterns."""
    _registration.check_pack(x)
    u = x.contiguous().view(_PATTERN[x.dtype.itemsize]).reshape(-1)
    n = u.numel()
    nonzero = u != 0
    words = (n + 31) // 32
    padded = F.pad(nonzero.to(torch.int64), (0, words * 32 - n)).reshape(words, 32)
    packed = (padded << torch.arange(32, device=x.device)).sum(-1)
    bits = torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    values = u[nonzero]
    if values.numel() == 0:
        scale = torch.ones((), dtype=x.dtype, device=x.device)
    elif bool((values == values[0]).all()):
        scale = values[0].view(x.dtype)
    else:
        scale = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
    return bits, scale


def _reference_unpack(bits: torch.Tensor, scale: torch.Tensor, shape) -> torch.Tensor:
    n = _registration.check_unpack(bits, scale, shape)
    flags = ((bits.to(torch.int64).unsqueeze(-1) >> torch.arange(32, device=bits.device)) & 1).reshape(-1)[:n]
    pattern = scale.reshape(1).view(_PATTERN[scale.dtype.itemsize])
    return torch.where(flags.bool(), pattern, torch.zeros_like(pattern)).view(scale.dtype).reshape(list(shape))


def _ops(device_tensor: torch.Tensor, backend: str):
    """(pack, unpack) of the backend that runs on this tensor's device."""
    chosen = select_backend(device_tensor, backend)
    if chosen == "reference":
        return _reference_pack, _reference_unpack
    if chosen == "triton":
        import sltt_kernels.triton.pack  # noqa: F401  (registers the Triton kernels)
    triton = chosen == "triton"
    return _registration.op("spike_pack", triton), _registration.op("spike_unpack", triton)


def spike_pack(x: torch.Tensor, backend: str = "auto"):
    """Packs x (any shape, float16/bfloat16/float32/float64) into (bits, scale).

    bits: int32 [ceil(x.numel() / 32)], bit j of word w = (x.flatten()[32 w + j] is not +0.0).
    scale: a 0-dim tensor in x.dtype: s when every element of x is, bit for bit, +0.0 or s (1 when
    all are +0.0), NaN when x is not two-valued (then spike_unpack does not give x back).

    Example:
        >>> bits, scale = spike_pack(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        >>> bits, scale
        (tensor([6], dtype=torch.int32), tensor(1.))
    """
    return _ops(x, backend)[0](x)


def spike_unpack(bits: torch.Tensor, scale: torch.Tensor, shape, backend: str = "auto") -> torch.Tensor:
    """The inverse of spike_pack: a contiguous tensor of `shape` in scale.dtype, bit ? scale : +0.0.

    Example:
        >>> spike_unpack(*spike_pack(torch.tensor([0.0, 2.5, 2.5])), [3])
        tensor([0.0000, 2.5000, 2.5000])
    """
    return _ops(bits, backend)[1](bits, scale, list(shape))


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
        perm = _dense_permutation(x)
        ordered = x.permute(perm) if perm is not None else x.contiguous()
        pack, unpack = _ops(x, backend)
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
        return _SpikeInputConv.apply(x, weight, bias, tup(stride), tup(padding), tup(dilation), groups, backend,
                                     _module)


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

# Packed subclasses of other conv/linear classes (ScaledWSConv2d, SpikingJelly's layer.Conv2d,
# ...), made on demand under a name that encodes the original class, so that pickle finds them
# again through the module __getattr__ below.
_DYNAMIC: Dict[str, type] = {}
_DYNAMIC_PREFIX = "PackedSub__"


def _escape(s: str) -> str:
    return s.replace("_", "_0").replace(".", "_1")


def _unescape(s: str) -> str:
    return s.replace("_1", ".").replace("_0", "_")


def _packed_class(cls: type) -> type:
    if cls in _EXACT:
        return _EXACT[cls]
    name = f"{_DYNAMIC_PREFIX}{_escape(cls.__module__)}__{_escape(cls.__qualname__)}"
    if name not in _DYNAMIC:
        mixin = _PackedLinearMixin if issubclass(cls, nn.Linear) else _PackedConvMixin
        _DYNAMIC[name] = type(name, (mixin, cls), {"__module__": __name__, "__qualname__": name,
                                                   "__doc__": f"{cls.__qualname__} with packed spike inputs."})
    return _DYNAMIC[name]


def __getattr__(name: str):
    if name.startswith(_DYNAMIC_PREFIX):
        module, _, qualname = name[len(_DYNAMIC_PREFIX):].partition("__")
        import importlib

        cls = importlib.import_module(_unescape(module))
        for part in _unescape(qualname).split("."):
            cls = getattr(cls, part)
        return _packed_class(cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unsupported(m: nn.Module) -> Optional[str]:
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


def _is_target(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))


# ---------------------------------------------------------------------------------------------
# Which layers read spikes: each module's forward traced with torch.fx, every child a leaf


class _Spikes:
    """A value known to be two-valued (tuple0: a neuron's (spikes, state) pair)."""

    def __init__(self, source: str, tuple0: bool = False):
        self.source = source
        self.tuple0 = tuple0


class _Other:
    """A value not known to be two-valued, and where it comes from."""

    def __init__(self, why: str):
        self.why = why


def _spike_source_kind(m: nn.Module) -> Optional[str]:
    """'spikes' for a neuron whose output is its spikes, 'tuple0' for one returning (spikes, ...)."""
    from .leaky import Leaky, SnnTorchLeaky
    from .neurons import OTTTLIFNode

    if isinstance(m, (Leaky, OTTTLIFNode, SnnTorchLeaky)):
        return "tuple0"
    if isinstance(m, BaseNode):
        return "spikes"
    mod = type(m).__module__
    if mod.startswith("spikingjelly") and ".neuron" in mod and hasattr(m, "v_threshold"):
        return "spikes"
    return None


def _preserves(m: nn.Module) -> bool:
    """Modules whose output is two-valued when their input is (up to the scale)."""

    keep = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, TimeDropout,
            nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d, Scale)
    if isinstance(m, keep):
        return True
    # SpikingJelly's dropouts (one mask for all steps, like TimeDropout)
    return type(m).__module__.startswith("spikingjelly") and type(m).__name__ in ("Dropout", "Dropout2d")


_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose,
                    torch.movedim, torch.narrow, torch.select, operator.getitem, F.dropout, F.dropout1d, F.dropout2d,
                    F.dropout3d, F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.clone, torch.detach}
_SHAPE_METHODS = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "contiguous", "squeeze",
                  "unsqueeze", "clone", "detach", "float", "half", "bfloat16", "double", "to", "view_as",
                  "reshape_as", "expand", "expand_as", "narrow", "select", "__getitem__", "movedim"}
_SCALING = {operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div"}


class _Analysis:
    def __init__(self):
        self.calls: Dict[str, List[object]] = {}  # conv/linear path -> status of its input, per call
        self.untraced: Dict[str, str] = {}  # path of a conv/linear -> why its input is unknown
        self.modules: Dict[str, nn.Module] = {}

    def module(self, m: nn.Module, path: str, inputs: List[object]) -> object:
        """The status of m's output, given its inputs' statuses; records conv/linear calls."""
        first = inputs[0] if inputs else _Other("no input")
        if _is_target(m):
            self.calls.setdefault(path, []).append(first)
            self.modules[path] = m
            return _Other(f"the output of {type(m).__name__} '{path}'")
        kind = _spike_source_kind(m)
        if kind is not None:
            return _Spikes(path, tuple0=kind == "tuple0")
        if isinstance(m, FoldTime):
            return self.module(m.module, _join(path, "module"), inputs)
        if _preserves(m):
            return first  # spikes stay spikes; anything else keeps saying where it came from
        if not any(True for _ in m.children()):
            return _Other(f"the output of {type(m).__name__} '{path}'")
        return self.trace(m, path, inputs)

    def trace(self, m: nn.Module, path: str, inputs: List[object]) -> object:
        import torch.fx as fx

        class Tracer(fx.Tracer):
            def is_leaf_module(self, sub, qualname):
                return sub is not m

        try:
            graph = Tracer().trace(m)
        except Exception as e:  # a data-dependent forward, or one fx cannot follow
            why = f"the forward of {type(m).__name__} '{path or '(model)'}' could not be traced " \
                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            for name, sub in m.named_modules(prefix=path):
                if _is_target(sub):
                    self.untraced.setdefault(name, why)
                    self.modules[name] = sub
            return _Other(why)
        status: Dict[fx.Node, object] = {}
        placeholders = 0
        out = _Other(f"the output of {type(m).__name__} '{path}'")
        for node in graph.nodes:
            args = [status.get(a, _Other("a constant")) if isinstance(a, fx.Node) else a for a in node.args]
            node_inputs = [a for a in args if isinstance(a, (_Spikes, _Other))]
            if node.op == "placeholder":
                status[node] = inputs[placeholders] if placeholders < len(inputs) else _Other("an input of the model")
                placeholders += 1
            elif node.op == "call_module":
                status[node] = self.module(m.get_submodule(node.target), _join(path, node.target), node_inputs)
            elif node.op in ("call_function", "call_method"):
                status[node] = _function_status(node, args)
            elif node.op == "output":
                out = args[0] if isinstance(args[0], (_Spikes, _Other)) else out
            else:
                status[node] = _Other(f"'{node.target}'")
        return out


def _function_status(node, args) -> object:
    first = args[0] if args else None
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    if isinstance(first, _Spikes):
        if node.target is operator.getitem or node.target == "__getitem__":
            if first.tuple0:  # (spikes, state)[i]
                return _Spikes(first.source) if args[1] == 0 else _Other(f"the state of neuron '{first.source}'")
            return first
        if node.target in _SHAPE_FUNCTIONS or (node.op == "call_method" and node.target in _SHAPE_METHODS):
            return _Spikes(first.source)
        if node.target in _SCALING and len(args) == 2 and isinstance(args[1], (int, float)):
            return _Spikes(first.source)  # spikes times a constant: still two-valued
    if node.target in (torch.cat, torch.stack) and isinstance(first, (list, tuple)) and first:
        parts = [a for a in first]
        return _Spikes("cat") if all(isinstance(p, _Spikes) and p is parts[0] for p in parts) else _Other("a cat")
    return _Other(f"the result of {name}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass
class PackReport:
    """What pack_spike_inputs did: packed (path, type) and dense (path, type, why) layers."""

    packed: List[Tuple[str, str]] = field(default_factory=list)
    dense: List[Tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"packed spike inputs of {len(self.packed)} layer(s), left {len(self.dense)} dense"]
        lines += [f"  {path}: {kind} packed" for path, kind in self.packed]
        lines += [f"  {path}: {kind} dense: {why}" for path, kind, why in self.dense]
        return "\n".join(lines)


def pack_spike_inputs(model: nn.Module, backend: str = "auto") -> PackReport:
    """Lets every conv/linear layer of `model` whose input is spikes save it as 1 bit per element
    (in place: the layers' classes become their packed subclasses; parameters, state_dict and
    outputs are unchanged, gradients bit-identical). Returns a PackReport.

    A layer is packed when its input comes, through each module's forward (traced with torch.fx),
    from a spiking neuron of this package (or SpikingJelly's), possibly through dropout, flatten,
    max pooling, a constant gain or a reshape; FoldTime-wrapped layers too. At run time the pack
    kernel still checks every input and saves a non-two-valued one dense. backend: the pack
    kernels' backend ('auto', 'cpu', 'cuda', 'triton', 'reference').

    Example:
        >>> net = sltt_kernels.models.spiking_resnet18()
        >>> print(pack_spike_inputs(net))
        packed spike inputs of 19 layer(s), left 2 dense
          ...
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"pack_spike_inputs needs an nn.Module, got {type(model).__name__}")
    analysis = _Analysis()
    analysis.module(model, "", [_Other("the model's input")])
    report = PackReport()
    for path, m in model.named_modules():
        if not _is_target(m):
            continue
        kind = type(m).__name__
        calls = analysis.calls.get(path)
        if path in analysis.untraced:
            why = analysis.untraced[path]
        elif not calls:
            why = "not called by the model's forward (as far as it could be traced)"
        elif not all(isinstance(c, _Spikes) for c in calls):
            other = next(c for c in calls if not isinstance(c, _Spikes))
            why = f"its input is not known to be spikes: it is {other.why}"
        else:
            why = _unsupported(m)
        if why is not None:
            report.dense.append((path, kind, why))
            continue
        if not isinstance(m, _PACKED):
            m.__class__ = _packed_class(type(m))
        m.spike_pack_backend = backend
        report.packed.append((path, kind))
    return report


def spike_pack_calls(model: nn.Module) -> Dict[str, Tuple[int, int]]:
    """{path: (calls saved packed, calls saved dense)} of the packed layers of `model` so far."""
    return {path: tuple(m.__dict__.get("_spike_pack_calls", (0, 0))) for path, m in model.named_modules()
            if isinstance(m, _PACKED)}

