"""NIR (the Neuromorphic Intermediate Representation) export and import for fused-neuron networks.

    graph = sltt_kernels.nir.export_nir(model, torch.rand(1, 2, 8, 8))   # one time step [B, ...]
    nir.write("model.nir", graph)                                         # for snnTorch, Norse, Lava, ...
    model = sltt_kernels.nir.import_nir(nir.read("model.nir"))             # a network of fused neurons

Needs `pip install nir` (snnTorch's NIR reader and writer also need nirtorch). A NIR graph is a
network in continuous time; a discrete-time neuron is one of its nodes integrated by forward
Euler with a time step `dt` that the graph does not carry. Both directions take `dt` (default
1e-4, the value snnTorch writes and reads), so a graph exported here and read by snnTorch (or
the other way round) runs the same per-step dynamics:

- LIF (ours: h = v_r + (1 - 1/tau)(v - v_r) + c x, c = 1/tau with decay_input, else 1) is NIR's
  LIF with tau_nir = tau * dt, r = c * tau, v_leak = v_reset and its v_threshold / v_reset;
- IF (h = v + x) is NIR's IF with r = 1 / dt;
- snnTorch's Leaky (ours, reset_mechanism='zero') is NIR's LIF with tau_nir = dt / (1 - beta),
  r = tau_nir / dt and v_leak = v_reset = 0: its delayed reset to zero gives the spikes of NIR's
  immediate one;
- Linear, Conv2d (zero padding), Flatten, AvgPool2d (and an AdaptiveAvgPool2d that is one) map
  to NIR's nodes; dropout and identity layers vanish; a residual addition becomes two edges into
  one node (NIR sums a node's inputs); FoldTime runs its layer.
- A BatchNorm directly after a Linear or Conv2d (its only user) is folded into its weights with
  the running statistics: the network as in eval mode.

What NIR cannot say raises a ValueError naming the module, never a wrong graph: a soft
(subtractive) reset or none (NIR's neurons reset to v_reset), a learnable tau, beta or threshold
(ParametricLIFNode, learn_beta, learn_threshold; a constant per-neuron beta or threshold is
exported as the node's per-neuron arrays, which import_nir then refuses: its neurons take one
value per layer), a batch norm that does not follow a Linear/Conv2d alone (the pre-activation
networks' per-step BN after an addition), max pooling, and any other layer or operation. The
surrogate gradient, grad_mode and detach_reset are training settings, not part of the graph;
NIR fires on v > v_threshold and our LIF and IF on h >= v_threshold (equal only on a tie).
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from .nn import FoldTime, IFNode, LIFNode, TimeDropout, reset_net, set_step_mode
from .nn.neurons import BaseNode

__all__ = ["export_nir", "import_nir", "DEFAULT_DT"]

DEFAULT_DT = 1e-4  # the time step snnTorch's export and import assume

_BYPASS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, TimeDropout)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)  # StepBatchNorm2d is a BatchNorm2d


def _nir():
    try:
        import nir
    except ImportError as e:
        raise ImportError("sltt_kernels.nir needs the nir package: pip install nir") from e
    return nir


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt must be a number, got {type(dt).__name__}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0, got {dt}")
    return float(dt)


# ------------------------------------------------------------------------------------------------
# export


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer with our neurons as leaves (their state and kernels are not traced)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (BaseNode, _BATCH_NORMS, _BYPASS)) or super().is_leaf_module(m, qualname)


def _unwrap_fold_time(model: nn.Module) -> nn.Module:
    """FoldTime(layer) runs layer on one step: the layer itself stands in its place."""
    if isinstance(model, FoldTime):
        return _unwrap_fold_time(model.module)
    for name, child in list(model.named_children()):
        setattr(model, name, _unwrap_fold_time(child))
    return model


def _neuron_node(path: str, m: BaseNode, shape, dt: float):
    nir = _nir()
    kind = type(m).__name__
    k, theta = m._k(), m._threshold()
    if (k is not None and k.requires_grad) or (theta is not None and theta.requires_grad):
        raise ValueError(f"export_nir: {kind} at '{path}' has a learnable tau, beta or threshold, which NIR cannot "
                         "represent")
    for attr in ("beta", "threshold"):
        if isinstance(getattr(m, attr, None), nn.Parameter):
            raise ValueError(f"export_nir: {kind} at '{path}' has a learnable {attr}, which NIR cannot represent")
    if float(getattr(m, "graded_spikes_factor", 1.0)) != 1.0 or getattr(m, "state_quant", False):
        raise ValueError(f"export_nir: {kind} at '{path}' has graded spikes or a quantised state: not in NIR")
    a = m._config_now()
    if a.reset != "hard":
        what = "a soft (subtractive) reset" if a.reset == "soft" else "no reset"
        raise ValueError(f"export_nir: {kind} at '{path}' has {what}; NIR's neurons reset to v_reset "
                         "(use v_reset=<a value> / reset_mechanism='zero' to export it)")
    full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731  (tau as given, not rounded)

    def per_neuron(t: torch.Tensor, what: str) -> np.ndarray:
        # a tensor parameter (one value per neuron or channel, docs/design.md, section 2.6) as the
        # node's array over one sample's neurons
        values = t.detach().to(torch.float64).cpu().numpy()
        try:
            return np.broadcast_to(values, shape).copy()
        except ValueError:
            raise ValueError(f"export_nir: {kind} at '{path}': its {what} of shape {values.shape} is not one value "
                             f"per neuron of a sample {tuple(shape)}") from None

    v_threshold = full(a.v_threshold) if theta is None else per_neuron(theta, "threshold")
    if a.neuron == "if":
        return nir.IF(r=full(1.0 / dt), v_threshold=v_threshold, v_reset=full(a.v_reset))
    if a.neuron not in ("lif", "leaky"):
        raise ValueError(f"export_nir: {kind} at '{path}' (neuron model {a.neuron!r}) has no NIR node")
    if k is None:
        decay, gain = full(a.decay), full(a.input_gain)
    elif a.neuron == "leaky":  # k is beta
        decay, gain = per_neuron(k, "beta"), full(a.input_gain)
    else:  # k = 1/tau
        k_values = per_neuron(k, "1/tau")
        decay, gain = 1.0 - k_values, (k_values if a.decay_input else full(a.input_gain))
    if np.all(decay >= 1.0):  # no leak at all: an integrator
        if a.v_reset != 0.0 and a.neuron == "lif":
            raise ValueError(f"export_nir: {kind} at '{path}': no leak with v_reset {a.v_reset} has no NIR node")
        return nir.IF(r=gain / dt, v_threshold=v_threshold, v_reset=full(a.v_reset))
    if np.any(decay >= 1.0):
        raise ValueError(f"export_nir: {kind} at '{path}' has neurons with and without a leak: no one NIR node")
    tau_steps = 1.0 / (1.0 - decay)
    return nir.LIF(tau=tau_steps * dt, r=gain * tau_steps, v_leak=full(a.v_reset), v_threshold=v_threshold,
                   v_reset=full(a.v_reset))


def _fold_batch_norm(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of layer (Linear or Conv2d) with bn (running statistics, eval) folded into it."""
    scale = bn.running_var.detach().add(bn.eps).rsqrt()
    if bn.affine:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale + (bn.bias.detach() if bn.affine else 0.0)
    folded = copy.deepcopy(layer)
    w = folded.weight.detach()
    folded.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
    bias = folded.bias.detach() if folded.bias is not None else torch.zeros_like(scale)
    folded.bias = nn.Parameter(bias * scale + shift)
    return folded


def _layer_node(path: str, m: nn.Module, in_shape, out_shape):
    nir = _nir()
    det = lambda t: t.detach().cpu().float().numpy()  # noqa: E731
    if type(m) is nn.Linear:
        return nir.Linear(weight=det(m.weight)) if m.bias is None else nir.Affine(det(m.weight), det(m.bias))
    if type(m) is nn.Conv2d:
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise ValueError(f"export_nir: Conv2d at '{path}' has padding {m.padding!r} / padding_mode "
                             f"{m.padding_mode!r}; NIR's Conv2d takes numeric zero padding")
        bias = det(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
        return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=det(m.weight), stride=m.stride, padding=m.padding,
                          dilation=m.dilation, groups=m.groups, bias=bias)
    if type(m) is nn.Flatten:
        # NIR's dimensions have no batch: torch's dimension d >= 1 is NIR's d - 1
        start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
        end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
        if m.start_dim == 0 or m.end_dim == 0:
            raise ValueError(f"export_nir: Flatten at '{path}' folds the batch dimension, which NIR does not have")
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end)
    if type(m) is nn.AvgPool2d:
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        if m.ceil_mode or m.divisor_override is not None or (any(pair(m.padding)) and not m.count_include_pad):
            raise ValueError(f"export_nir: AvgPool2d at '{path}': ceil_mode, divisor_override and padding "
                             "left out of the count have no NIR node")
        stride = pair(m.stride) if m.stride is not None else pair(m.kernel_size)
        return nir.AvgPool2d(kernel_size=np.array(pair(m.kernel_size)), stride=np.array(stride),
                             padding=np.array(pair(m.padding)))
    if type(m) is nn.AdaptiveAvgPool2d:
        (h, w), (oh, ow) = in_shape[-2:], out_shape[-2:]
        if h % oh or w % ow:
            raise ValueError(f"export_nir: AdaptiveAvgPool2d at '{path}' maps {h}x{w} to {oh}x{ow}, "
                             "not a whole-window average pool")
        k = np.array((h // oh, w // ow))
        return nir.AvgPool2d(kernel_size=k, stride=k, padding=np.array((0, 0)))
    if isinstance(m, _BATCH_NORMS):
        raise ValueError(f"export_nir: {type(m).__name__} at '{path}' does not directly follow a Linear or Conv2d "
                         "that feeds it alone, so it cannot be folded (e.g. the per-step BN of a pre-activation "
                         "network, after an addition); NIR has no batch-norm node")
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        raise ValueError(f"export_nir: {type(m).__name__} at '{path}': NIR has no max pooling")
    raise ValueError(f"export_nir: {type(m).__name__} at '{path}' has no NIR node (supported: Linear, Conv2d, "
                     "Flatten, AvgPool2d, BatchNorm after Linear/Conv2d, dropout, LIF, IF, Leaky)")


def export_nir(model: nn.Module, example_input: torch.Tensor, dt: float = DEFAULT_DT):
    """The NIR graph of `model`, a network of this package's neurons (LIFNode, IFNode, PaperLIFNode
    with a hard reset, Leaky with reset_mechanism='zero') and stateless layers.

    model: any step mode (it is exported as one time step; the model is not changed).
    example_input: one time step's input [B, ...] (B >= 1), to learn each layer's shape.
    dt: the Euler time step that relates NIR's time constants to ours (see the module doc).
    Returns a nir.NIRGraph. Raises ValueError for what NIR cannot represent, naming the module.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), LIFNode(tau=2.0), nn.Linear(8, 2), IFNode())
        >>> graph = export_nir(net, torch.rand(1, 4))
        >>> sorted(graph.nodes)
        ['0', '1', '2', '3', 'input', 'output']
    """
    nir = _nir()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    if example_input.dim() < 2 or example_input.shape[0] < 1:
        raise ValueError(f"example_input must be one time step [B, ...] with B >= 1, got {tuple(example_input.shape)}")
    dt = _check_dt(dt)
    net = _unwrap_fold_time(copy.deepcopy(model)).eval()
    set_step_mode(net, "s")
    reset_net(net)
    shapes: Dict[str, tuple] = {}

    def record(name):  # each layer's (input, output) shape per sample, without the batch
        def hook(mod, args, out):
            out = out[0] if isinstance(out, (tuple, list)) else out  # snnTorch's (spk, mem)
            shapes[name] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in net.named_modules() if name]
    with torch.no_grad():
        y = net(example_input)
        out_shape = tuple((y[0] if isinstance(y, (tuple, list)) else y).shape[1:])
    for h in hooks:
        h.remove()
    reset_net(net)
    try:
        graph = _Tracer().trace(net)
    except Exception as e:  # data-dependent control flow, a non-torch call, ...
        raise ValueError(f"export_nir: torch.fx cannot trace the model's forward ({e}); NIR needs a fixed graph of "
                         "layers and neurons") from e
    modules = dict(net.named_modules())
    users = {n: [u for u in n.users] for n in graph.nodes}
    nodes, sources, folded = {}, {}, {}  # sources: fx node -> the NIR nodes whose sum it is
    for n in graph.nodes:
        if n.op == "placeholder":
            if nodes:
                raise ValueError("export_nir: the model's forward takes more than one input")
            shape = tuple(example_input.shape[1:])
            nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
            sources[n] = ["input"]
        elif n.op == "get_attr":
            raise ValueError(f"export_nir: the forward reads the tensor '{n.target}' directly; NIR has no node for it")
        elif n.op == "call_function" and n.target in (operator.add, torch.add) or (n.op == "call_method"
                                                                                    and n.target == "add"):
            if len(n.args) != 2 or n.kwargs or not all(isinstance(a, torch.fx.Node) for a in n.args):
                raise ValueError(f"export_nir: the addition '{n.name}' adds a constant or scales; NIR sums inputs only")
            sources[n] = sources[n.args[0]] + sources[n.args[1]]
        elif n.op == "call_function" and n.target is operator.getitem:
            src, index = n.args
            if not (src.op == "call_module" and isinstance(modules[src.target], BaseNode) and index == 0):
                raise ValueError(f"export_nir: '{n.name}' takes item {index!r} of {src.name}: only a neuron's spikes "
                                 "(item 0 of snnTorch's (spk, mem)) are in NIR, not its membrane")
            sources[n] = sources[src]
        elif n.op == "call_module":
            m = modules[n.target]
            (arg,) = n.args
            if isinstance(m, _BYPASS):
                sources[n] = sources[arg]
                continue
            if isinstance(m, _BATCH_NORMS) and arg.op == "call_module" and len(users[arg]) == 1 \
                    and type(modules[arg.target]) in (nn.Linear, nn.Conv2d) and arg.target in nodes:
                if not m.track_running_stats or m.running_mean is None:
                    raise ValueError(f"export_nir: {type(m).__name__} at '{n.target}' has no running statistics "
                                     "(track_running_stats=False): each batch's own statistics are not in NIR")
                layer = folded.get(arg.target, modules[arg.target])
                folded[arg.target] = _fold_batch_norm(layer, m)
                nodes[arg.target] = _layer_node(arg.target, folded[arg.target], *shapes[arg.target])
                sources[n] = sources[arg]
                continue
            in_shape, out_shape = shapes[n.target]
            if isinstance(m, BaseNode):
                nodes[n.target] = _neuron_node(n.target, m, out_shape, dt)
            else:
                nodes[n.target] = _layer_node(n.target, m, in_shape, out_shape)
            sources[n] = [n.target]
        elif n.op == "output":
            out = n.args[0]
            if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.fx.Node) for o in out):
                out = out[0]  # snnTorch's output layer returns (spk, mem): the spikes
                if any(o.op != "call_function" or o.target is not operator.getitem for o in n.args[0][1:]):
                    raise ValueError("export_nir: the model returns several tensors; NIR's output is one")
            if not isinstance(out, torch.fx.Node):
                raise ValueError("export_nir: the model must return one tensor (the output of its last node)")
            nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
            sources[n] = ["output"]
        else:
            what = getattr(n.target, "__name__", n.target)
            raise ValueError(f"export_nir: the forward calls {what!r} ('{n.name}'), which has no NIR node; make it "
                             "a supported layer (nn.Flatten for a reshape) or leave it out")
    edges = []
    for n in graph.nodes:
        if n.op in ("call_module", "output") and n in sources and sources[n] == [n.target if n.op != "output"
                                                                                   else "output"]:
            for arg in n.all_input_nodes:
                edges += [(src, sources[n][0]) for src in sources[arg]]
    return nir.NIRGraph(nodes=nodes, edges=edges)


# ------------------------------------------------------------------------------------------------
# import


class NIRNetwork(nn.Module):
    """A network read from a NIR graph: one module per node, run in the graph's order, each node
    fed the sum of its inputs (NIR's rule). x: one step [B, ...] (step_mode 's') or [T, B, ...]
    ('m'); returns the output node's input. `node_names[key]` is the NIR name of `nodes[key]`."""

    def __init__(self, modules: Dict[str, nn.Module], order: List[str], inputs: Dict[str, List[str]],
                 input_name: str, output_name: str):
        super().__init__()
        self.keys = {name: f"n{i}_" + "".join(c if c.isalnum() else "_" for c in name)
                     for i, name in enumerate(order)}  # ModuleDict keys: no dots
        self.nodes = nn.ModuleDict({self.keys[name]: modules[name] for name in order})
        self.node_names = {key: name for name, key in self.keys.items()}
        self.order, self.inputs, self.input_name, self.output_name = order, inputs, input_name, output_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name in self.order:
            srcs = self.inputs[name]
            total = values[srcs[0]]
            for s in srcs[1:]:
                total = total + values[s]
            values[name] = self.nodes[self.keys[name]](total)
        srcs = self.inputs[self.output_name]
        out = values[srcs[0]]
        for s in srcs[1:]:
            out = out + values[s]
        return out


def _one(node_name: str, node, field: str) -> float:
    """A node's parameter as one number: our neurons have one value per layer, not per neuron."""
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise ValueError(f"import_nir: node '{node_name}' ({type(node).__name__}) has {values.size} different "
                         f"values of {field}; this package's neurons take one per layer")
    return float(values[0])


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)


def _module_for(name: str, node, dt: float, neuron_kwargs: dict) -> nn.Module:
    nir = _nir()
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = t(node.weight)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(w)
            if lin.bias is not None:
                lin.bias.copy_(t(node.bias))
        return lin
    if isinstance(node, nir.Conv2d):
        w = t(node.weight)
        padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.atleast_1d(node.padding))
        pair = lambda v: tuple(int(i) for i in np.broadcast_to(np.atleast_1d(v), (2,)))  # noqa: E731
        conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=pair(node.stride),
                         padding=padding if isinstance(padding, str) else pair(padding),
                         dilation=pair(node.dilation), groups=int(node.groups))
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(t(node.bias) if node.bias is not None else torch.zeros(w.shape[0]))
        return conv
    if isinstance(node, nir.Flatten):
        to_torch = lambda d: int(d) + 1 if int(d) >= 0 else int(d)  # noqa: E731  (NIR's dims have no batch)
        return nn.Flatten(to_torch(node.start_dim), to_torch(node.end_dim))
    if isinstance(node, nir.AvgPool2d):
        pair = lambda v: tuple(int(i) for i in np.broadcast_to(np.atleast_1d(v), (2,)))  # noqa: E731
        return nn.AvgPool2d(pair(node.kernel_size), pair(node.stride), pair(node.padding))
    if isinstance(node, nir.LIF):
        tau_steps = _one(name, node, "tau") / dt
        gain = _one(name, node, "r") / tau_steps  # r dt / tau: what one step adds of the input
        v_leak, v_reset = _one(name, node, "v_leak"), _one(name, node, "v_reset")
        if not _close(v_leak, v_reset):
            raise ValueError(f"import_nir: LIF '{name}' leaks to {v_leak} but resets to {v_reset}; this package's LIF "
                             "leaks to its reset potential")
        if _close(gain, 1.0):
            decay_input = False
        elif _close(gain, 1.0 / tau_steps):
            decay_input = True
        else:
            raise ValueError(f"import_nir: LIF '{name}' scales its input by r*dt/tau = {gain:.6g}, neither 1 nor "
                             f"dt/tau = {1.0 / tau_steps:.6g} (with dt={dt}: is this graph's dt another?)")
        return LIFNode(tau=tau_steps, decay_input=decay_input, v_threshold=_one(name, node, "v_threshold"),
                       v_reset=v_reset, **neuron_kwargs)
    if isinstance(node, nir.IF):
        gain = _one(name, node, "r") * dt
        if not _close(gain, 1.0):
            raise ValueError(f"import_nir: IF '{name}' scales its input by r*dt = {gain:.6g}, not 1 "
                             f"(with dt={dt}: is this graph's dt another?)")
        return IFNode(v_threshold=_one(name, node, "v_threshold"), v_reset=_one(name, node, "v_reset"),
                      **neuron_kwargs)
    raise ValueError(f"import_nir: node '{name}' is a {type(node).__name__}, which this package has no module for "
                     "(supported: Affine, Linear, Conv2d, Flatten, AvgPool2d, LIF, IF)")


def import_nir(graph, dt: float = DEFAULT_DT, step_mode: str = "s", surrogate_function=None,
               grad_mode: str = "bptt", backend: str = "auto") -> NIRNetwork:
    """A network of this package's fused neurons and torch layers that runs `graph` (a nir.NIRGraph).

    NIR's LIF becomes a LIFNode (a hard reset to v_reset; input decay when r = 1), its IF an IFNode;
    dt is the Euler time step of the module doc. step_mode 's': the network takes one time step
    [B, ...]; 'm': [T, B, ...]. surrogate_function, grad_mode and backend go to every neuron (the
    graph has no surrogate: None is the neuron's default). Raises ValueError for nodes it cannot
    build (per-neuron parameters, recurrence, CubaLIF, ...), naming the node.

    Example:
        >>> net = import_nir(export_nir(model, torch.rand(1, 4)))
        >>> spikes = net(torch.rand(8, 4))   # one step; reset_net(net) between samples
    """
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    dt = _check_dt(dt)
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
    kinds = {name: type(node) for name, node in graph.nodes.items()}
    ins = [n for n, k in kinds.items() if k is nir.Input]
    outs = [n for n, k in kinds.items() if k is nir.Output]
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"import_nir: the graph needs one Input and one Output node, has {len(ins)} and {len(outs)}")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise ValueError(f"import_nir: node '{name}' is a subgraph (a recurrent layer); not supported")
    inputs: Dict[str, List[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise ValueError(f"import_nir: the edge ({src!r}, {dst!r}) names a node the graph does not have")
        inputs[dst].append(src)
    # the graph's order (Kahn's algorithm); what is left over lies on a cycle
    pending = {n: len(v) for n, v in inputs.items()}
    ready, order = [ins[0]], []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for src, dst in graph.edges:
            if src == n:
                pending[dst] -= 1
                if pending[dst] == 0:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        left = sorted(set(graph.nodes) - set(order))
        raise ValueError(f"import_nir: nodes {left} lie on a cycle (recurrence) or are not reached from the input")
    neuron_kwargs = dict(surrogate_function=surrogate_function, grad_mode=grad_mode, backend=backend)
    body = [n for n in order if n not in (ins[0], outs[0])]
    modules = {n: _module_for(n, graph.nodes[n], dt, neuron_kwargs) for n in body}
    for n in body:
        if not isinstance(modules[n], BaseNode):
            modules[n] = FoldTime(modules[n])  # a layer on [T, B, ...] in step mode 'm'
    net = NIRNetwork(modules, body, inputs, ins[0], outs[0])
    set_step_mode(net, step_mode)
    return net
