"""Which layers of a model read spikes, and letting them save those spikes as 1 bit per element.

    >>> net = sltt_kernels.models.spiking_resnet18()
    >>> report = sltt_kernels.nn.pack_spike_inputs(net)     # in place
    >>> print(report)                                          # what was packed, what left dense and why

`pack_spike_inputs` packs only the layers whose input is known to be spikes: it follows each
module's forward (torch.fx, every child a leaf) from the neurons through shape-only and
value-preserving modules (dropout, flatten, max pooling, a constant gain). The packed layers
themselves (and why a layer cannot be packed) are in nn/packed_layers.py.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import check_backend_name
from .layers import FoldTime, Scale, TimeDropout
from .neurons import BaseNode
from .packed_layers import is_packable_layer, is_packed, packed_class, unsupported_reason
from .recompute import ResidualAdd, is_batch_norm, is_recomputing, recompute_class

__all__ = ["PackReport", "pack_spike_inputs", "spike_pack_calls"]

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


class _ConvOut(_Other):
    """The output of the conv/linear layer at `path` (one call of it)."""

    def __init__(self, why: str, path: str):
        super().__init__(why)
        self.path = path


class _SumOf(_Other):
    """The output of a ResidualAdd: the sum of two values."""

    def __init__(self, why: str, parts: List[object]):
        super().__init__(why)
        self.parts = parts


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
        self.norm_calls: Dict[str, List[object]] = {}  # batch norm path -> status of its input, per call

    def module(self, m: nn.Module, path: str, inputs: List[object]) -> object:
        """The status of m's output, given its inputs' statuses; records conv/linear calls."""
        first = inputs[0] if inputs else _Other("no input")
        if is_packable_layer(m):
            self.calls.setdefault(path, []).append(first)
            self.modules[path] = m
            return _ConvOut(f"the output of {type(m).__name__} '{path}'", path)
        if is_batch_norm(m):
            self.norm_calls.setdefault(path, []).append(first)
            return _Other(f"the output of {type(m).__name__} '{path}'")
        if isinstance(m, ResidualAdd) and len(inputs) == 2:
            return _SumOf(f"the output of ResidualAdd '{path}'", inputs)
        kind = _spike_source_kind(m)
        if kind is not None:
            return _Spikes(path, tuple0=kind == "tuple0")
        if isinstance(m, FoldTime):
            return self.module(m.module, _join(path, "module"), inputs)
        if _preserves(m):
            # spikes stay spikes (a new value, unless the module passes its input on as it is);
            # anything else keeps saying where it came from
            if isinstance(first, _Spikes) and not isinstance(m, (nn.Identity, nn.Flatten, nn.Unflatten)):
                return _Spikes(first.source, first.tuple0)
            return first
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
                if is_packable_layer(sub) or is_batch_norm(sub):
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
    """What pack_spike_inputs did: packed (path, type) and dense (path, type, why) layers; with
    recompute=True also the batch norms whose input is recomputed in backward (path, type, from
    what) and those that still save it (path, type, why)."""

    packed: List[Tuple[str, str]] = field(default_factory=list)
    dense: List[Tuple[str, str, str]] = field(default_factory=list)
    recompute: bool = False
    recomputed: List[Tuple[str, str, str]] = field(default_factory=list)
    kept: List[Tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"packed spike inputs of {len(self.packed)} layer(s), left {len(self.dense)} dense"]
        lines += [f"  {path}: {kind} packed" for path, kind in self.packed]
        lines += [f"  {path}: {kind} dense: {why}" for path, kind, why in self.dense]
        if self.recompute:
            lines.append(f"recomputed the input of {len(self.recomputed)} batch norm(s) in backward, "
                         f"left {len(self.kept)} saving it")
            lines += [f"  {path}: {kind} saves its mean and inverse std; its input is recomputed from {source}"
                      for path, kind, source in self.recomputed]
            lines += [f"  {path}: {kind} saves its input: {why}" for path, kind, why in self.kept]
        return "\n".join(lines)


def pack_spike_inputs(model: nn.Module, backend: str = "auto", recompute: bool = False) -> PackReport:
    """Lets every conv/linear layer of `model` whose input is spikes save it as 1 bit per element
    (in place: the layers' classes become their packed subclasses; parameters, state_dict and
    outputs are unchanged, gradients bit-identical). Returns a PackReport.

    A layer is packed when its input comes, through each module's forward (traced with torch.fx),
    from a spiking neuron of this package (or SpikingJelly's), possibly through dropout, flatten,
    max pooling, a constant gain or a reshape; FoldTime-wrapped layers too. At run time the pack
    kernel still checks every input and saves a non-two-valued one dense. backend: the pack
    kernels' backend ('auto', 'cpu', 'cuda', 'triton', 'reference').

    recompute=True: a batch norm whose input is a conv's output (or a ResidualAdd of conv outputs
    and spikes that a conv saves) no longer saves that input (4 bytes per element): its forward
    runs once, as before, and in backward its conv runs again on the conv's saved input (1 bit
    for spikes) to rebuild it; its backward uses the mean and inverse std saved in forward (see
    nn/recompute.py). A conv whose input is not spikes (a network's first) keeps its input dense,
    as the plain layer does, and can then rebuild its output too. Exact when convolutions are
    deterministic: always on a CPU; on a GPU set torch.backends.cudnn.deterministic = True (or
    torch.use_deterministic_algorithms(True)) and leave cudnn.benchmark off.

    Example:
        >>> net = sltt_kernels.models.spiking_resnet18()
        >>> print(pack_spike_inputs(net, recompute=True))
        packed spike inputs of 19 layer(s), left 2 dense
          ...
        recomputed the input of 17 batch norm(s) in backward, left 0 saving it
          ...
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"pack_spike_inputs needs an nn.Module, got {type(model).__name__}")
    if not isinstance(recompute, bool):
        raise TypeError(f"pack_spike_inputs: recompute must be a bool, got {type(recompute).__name__}")
    # now, not at the first forward (where the pack kernel picks its backend)
    backend = check_backend_name(backend)
    analysis = _Analysis()
    analysis.module(model, "", [_Other("the model's input")])
    report = PackReport(recompute=recompute)
    for path, m in model.named_modules():
        if not is_packable_layer(m):
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
            why = unsupported_reason(m)
        if why is not None:
            report.dense.append((path, kind, why))
            continue
        if not is_packed(m):
            m.__class__ = packed_class(type(m))
        m.spike_pack_backend = backend
        report.packed.append((path, kind))
    if recompute:
        _recompute_norm_inputs(model, analysis, report, backend)
    return report


def _recompute_norm_inputs(model: nn.Module, analysis: "_Analysis", report: PackReport, backend: str) -> None:
    """Converts each batch norm whose input can be rebuilt, and the convs that rebuild it."""

    def conv_usable(path: str) -> Optional[str]:
        """Why the conv at path cannot rebuild its output, or None."""
        m = analysis.modules.get(path)
        if not isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return f"'{path}' is a {type(m).__name__}, not a convolution"
        if path in analysis.untraced:
            return analysis.untraced[path]
        return unsupported_reason(m)

    def rebuild(status) -> Tuple[Optional[str], str, List[str]]:
        """(why not, or None; what it is rebuilt from; the convs that rebuild it)."""
        if isinstance(status, _ConvOut):
            why = conv_usable(status.path)
            saved = "its 1-bit input" if is_packed(analysis.modules[status.path]) else "its input, saved dense"
            source = f"{status.path} ({saved})"
            return (None if why is None else f"it is {status.why}, and {why}"), source, [status.path]
        if isinstance(status, _Spikes):
            for path, calls in analysis.calls.items():
                if any(c is status for c in calls) and conv_usable(path) is None:
                    return None, f"the spikes of '{status.source}' ({path}'s input)", [path]
            return f"it adds the spikes of '{status.source}', which no convolution saves", "", []
        if isinstance(status, _SumOf):
            parts = [rebuild(p) for p in status.parts]
            why = next((w for w, _, _ in parts if w is not None), None)
            return why, " + ".join(src for _, src, _ in parts), [c for _, _, convs in parts for c in convs]
        return f"it is {getattr(status, 'why', 'unknown')}", "", []

    for path, m in model.named_modules():
        if not is_batch_norm(m):
            continue
        kind = type(m).__name__
        calls = analysis.norm_calls.get(path)
        if path in analysis.untraced:
            report.kept.append((path, kind, analysis.untraced[path]))
            continue
        if not calls:
            report.kept.append((path, kind, "not called by the model's forward (as far as it could be traced)"))
            continue
        found = [rebuild(c) for c in calls]
        why = next((w for w, _, _ in found if w is not None), None)
        if why is not None:
            report.kept.append((path, kind, why))
            continue
        for conv_path in (c for _, _, convs in found for c in convs):
            conv = analysis.modules[conv_path]
            if not is_packed(conv):  # its input is not spikes: saved dense, as the plain layer saves it
                conv.__class__ = packed_class(type(conv))
                conv.spike_pack_dense = True
                conv.spike_pack_backend = backend
            conv.spike_recompute = True
        if not is_recomputing(m):
            m.__class__ = recompute_class(type(m))
        report.recomputed.append((path, kind, "; ".join(dict.fromkeys(src for _, src, _ in found))))


def spike_pack_calls(model: nn.Module) -> Dict[str, Tuple[int, int]]:
    """{path: (calls saved packed, calls saved dense)} of the packed layers of `model` so far."""
    return {path: tuple(m.__dict__.get("_spike_pack_calls", (0, 0))) for path, m in model.named_modules()
            if is_packed(m)}


