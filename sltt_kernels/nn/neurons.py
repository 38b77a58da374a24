"""Drop-in neuron modules on the fused kernels, SpikingJelly's family.

`LIFNode`, `IFNode`, `ParametricLIFNode`, `SLTTLIFNode` and `OTTTLIFNode` take SpikingJelly's
constructor arguments and defaults (plus `grad_mode` and `backend`) and keep its state protocol
(nn/memory_module.py): `v` (a float, v_reset, until the first step; a tensor after), `reset()`,
`detach()`, `register_memory` / `memories()` / `named_memories()`, `store_v_seq` / `v_seq`, and
`step_mode` ('s': x is one step [B, ...]; 'm': x is [T, B, ...]), and SpikingJelly 2.0's functional
form (`single_step_functional_forward` / `multi_step_functional_forward`: (inputs, states) ->
(outputs, new states), which forward itself runs). `PaperLIFNode` is the SLTT paper's neuron. snnTorch's `Leaky` is in nn/leaky.py; every neuron derives from `BaseNode`.
With SpikingJelly installed, `IFNode`, `LIFNode` and `ParametricLIFNode` also derive from its classes
of those names (`_spikingjelly_roots`), so its tools that find neurons by class find ours.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .. import _config
from .. import surrogate as _surrogate
from .._backend import check_backend_name
from ..ops import run_neuron
from .memory_module import _SJ_MEMORY_MODULE, MemoryModule

__all__ = ["BaseNode", "LIFNode", "IFNode", "ParametricLIFNode", "SLTTLIFNode", "PaperLIFNode", "OTTTLIFNode",
           "surrogate_or"]


def _spikingjelly_roots() -> dict:
    """SpikingJelly's IFNode, LIFNode and ParametricLIFNode, each as a base class that runs no
    constructor of its own, when SpikingJelly is installed; else {}.

    SpikingJelly's tools find and model neurons with `isinstance(m, neuron.IFNode)` (its Lemaire
    energy estimate, its NeuroMC and SpikeSim models, the lava and lynxi exchanges), so ours
    derive from these, as MemoryModule derives from its base.MemoryModule. Every method
    SpikingJelly's neurons run is overridden by BaseNode (earlier in the MRO), and the root's
    constructor ends the chain at nn.Module: SpikingJelly's asserts and defaults never run, and
    our behaviour is the same with or without it."""
    if _SJ_MEMORY_MODULE is None:  # SpikingJelly 2.0 is not importable
        return {}
    try:
        from spikingjelly.activation_based import neuron as sj_neuron
    except Exception:  # a broken or partial install must not break this package
        return {}

    def end_at_module(self):
        nn.Module.__init__(self)

    roots = {}
    for name in ("IFNode", "LIFNode", "ParametricLIFNode"):
        cls = getattr(sj_neuron, name, None)
        if isinstance(cls, type) and issubclass(cls, _SJ_MEMORY_MODULE):
            # the attributes its constructor would set that its tools read (the lava exchange's
            # scale, the precision its own forward consults), at its values
            root = type(f"_SpikingJelly{name}Root", (cls,), {"__init__": end_at_module, "__module__": __name__,
                                                             "lava_s_cale": 1 << 6, "_neuron_precision": None})
            globals()[root.__name__] = root  # found by name, so that pickle finds the class too
            roots[name] = (root,)
    return roots


_SJ_ROOTS = _spikingjelly_roots()


class BaseNode(MemoryModule):
    """The state, step modes and v_seq of every neuron here; subclasses say which neuron runs
    (`_config_now()`, `_k()`). grad_mode='bptt' back-propagates through time (across
    single-step calls too, until `reset()`); 'sltt' drops the temporal path. `neuron_model` names
    the registered model a class runs (sltt_kernels/neurons/; tests/ops/test_registry.py checks that
    every model has a module)."""

    neuron_model: str = ""
    k_name: str = "k"  # what the module calls the tensor `_k()` derives from, for the errors

    def __init__(self, v_reset_value: float, step_mode: str, grad_mode: str, backend: str, store_v_seq: bool):
        super().__init__()
        self.step_mode = step_mode
        self.grad_mode = grad_mode  # checked by __setattr__, as every later assignment is
        self.backend = backend
        self.register_memory("v", v_reset_value)
        self.store_v_seq = store_v_seq

    # Attributes checked when set (in the constructor and after it), so that a wrong value fails
    # at the assignment, naming the attribute, rather than at the first step under another name
    # (the kernels' keyword is `grad`, the surrogate's `surrogate`).
    def __setattr__(self, name: str, value) -> None:
        if name == "grad_mode":
            value = _config.grad_mode("grad_mode", value)
        elif name == "backend":
            value = check_backend_name(value)
        elif name == "surrogate_function":
            check_surrogate("surrogate_function", value)  # kept as given: a peer's object is read each step
        super().__setattr__(name, value)

    @property
    def store_v_seq(self) -> bool:
        """Whether the module's forward records v at every step in `v_seq` ([T, B, ...]; single-step
        calls append one step each until reset()). As in SpikingJelly 2.0, v_seq is an attribute,
        not a memory: the functional forwards and their states leave it alone."""
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        value = _config.flag("store_v_seq", value)
        object.__setattr__(self, "_store_v_seq", value)
        self.v_seq = None

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def detach(self) -> None:
        super().detach()
        if isinstance(self.v_seq, torch.Tensor):  # so detach_net is TBPTT with v_seq recorded too
            self.v_seq = self.v_seq.detach()

    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        """States as the functional forward takes them (SpikingJelly 2.0's protocol; pure): a float
        v becomes a tensor of one step's shape filled with it, in the state dtype; a tensor v of
        another step shape (another batch size) starts from v_reset; the other states as given.

        Example:
            >>> (v,) = IFNode().materialize_states((torch.rand(2, 3),), (0.0,), "s")   # zeros [2, 3]
        """
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        if not isinstance(x, torch.Tensor):
            return tuple(states)
        sdt = _config.state_dtype(x.dtype)
        v = states[0]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = torch.full_like(x, float(v), dtype=sdt, memory_format=torch.preserve_format)
        elif isinstance(v, torch.Tensor):
            if v.shape != x.shape:
                v = torch.full_like(x, self._config_now().v_reset, dtype=sdt, memory_format=torch.preserve_format)
            elif v.dtype != sdt or v.device != x.device:
                v = v.to(dtype=sdt, device=x.device)
        return (v, *tuple(states)[1:])

    def _config_now(self):
        """The neuron's checked arguments now (what _config.lif_config and its siblings return)."""
        raise NotImplementedError

    def _k(self) -> Optional[torch.Tensor]:
        """The model's k as a tensor (a learnable or per-neuron time constant), else None."""
        return None

    def _threshold(self) -> Optional[torch.Tensor]:
        """The threshold as a tensor (learnable or per neuron), else None: the configuration's."""
        return None

    def _state_tensor(self, v, x: torch.Tensor, multistep: bool) -> Optional[torch.Tensor]:
        """State v (a float, as v_reset before the first step, or a tensor) as a tensor of one
        step's shape, or None where the kernels start from v_r themselves."""
        shape = x.shape[1:] if multistep else x.shape
        if isinstance(v, torch.Tensor):
            if tuple(v.shape) == tuple(shape):
                return v
            if not multistep and tuple(shape[1:]) == tuple(v.shape):
                raise ValueError(
                    f"{type(self).__name__}(step_mode='s') got x of shape {tuple(shape)}, which looks like "
                    f"[T, ...] for the state of shape {tuple(v.shape)}: a multi-step input to a single-step module. "
                    "Use step_mode='m' (sltt_kernels.nn.functional.set_step_mode) or feed one step at a time.")
            raise ValueError(f"{type(self).__name__}: x's shape per step {tuple(shape)} does not match the kept "
                             f"state {tuple(v.shape)}; call reset() (or functional.reset_net) between samples")
        v = float(v)
        cfg = self._config_now()
        if v == cfg.v_reset and multistep:
            return None  # the multi-step kernels start from v_r without a state tensor
        # full_like (not full): the op SpikingJelly's neurons use here, which its op counters know;
        # in x's memory order, so a channels_last x and its state reach the op without a copy
        # (ops.run_neuron runs it in that order)
        return torch.full_like(x[0] if multistep else x, v, dtype=_config.state_dtype(x.dtype),
                               memory_format=torch.preserve_format)

    # SpikingJelly 2.0's functional protocol (its base.MemoryModule): a step is a pure function
    # (inputs, states) -> (outputs, new states), the states in memory order, v first (subclasses
    # append theirs). The module's forward runs the same functions on its memories, so
    # base.to_functional_forward and SpikingJelly's memopt checkpointing (which recomputes through
    # them) see exactly what forward does; only the forward records v_seq.

    def _step(self, x: torch.Tensor, states: tuple, norm=None) -> Tuple[torch.Tensor, tuple]:
        """One step; norm: a batch norm applied to x inside the kernel (ops.BatchNormInput)."""
        self._check_x(x, "one step [B, ...] for step_mode='s'")
        new = dict(zip(self._memories, states))
        spike, new["v"] = run_neuron(self._config_now(), x, self._state_tensor(new["v"], x, multistep=False),
                                     multistep=False, backend=self.backend, k=self._k(),
                                     threshold=self._threshold(), k_name=self.k_name, norm=norm)
        return spike, tuple(new.values())

    def _steps(self, x_seq: torch.Tensor, states: tuple, record: bool = False, norm=None
               ) -> Tuple[torch.Tensor, tuple]:
        """T steps; record: also return v at every step ([T, B, ...], the forward's v_seq), else
        None. norm: as _step's (not with record)."""
        self._check_x(x_seq, "[T, B, ...] for step_mode='m'")
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__}(step_mode='m') needs x of shape [T, B, ...], "
                             f"got {tuple(x_seq.shape)}")
        cfg = self._config_now()
        new = dict(zip(self._memories, states))
        v0 = self._state_tensor(new["v"], x_seq, multistep=True)
        if not record:
            spikes, new["v"] = run_neuron(cfg, x_seq, v0, multistep=True, backend=self.backend, k=self._k(),
                                          threshold=self._threshold(), k_name=self.k_name, norm=norm)
            return spikes, tuple(new.values()), None
        if norm is not None:
            raise ValueError("a batch norm fused into the neuron does not record v_seq (store_v_seq=True)")
        # v_seq: one step at a time, so every v[t] is an output (the gradients are the same)
        spikes, vs = [], []
        v = v0 if v0 is not None else torch.full_like(x_seq[0], cfg.v_reset, dtype=_config.state_dtype(x_seq.dtype),
                                                      memory_format=torch.preserve_format)
        for t in range(x_seq.shape[0]):
            s, v = run_neuron(cfg, x_seq[t], v, multistep=False, backend=self.backend, k=self._k(),
                                     threshold=self._threshold(), k_name=self.k_name)
            spikes.append(s)
            vs.append(v)
        new["v"] = v
        return torch.stack(spikes), tuple(new.values()), torch.stack(vs)

    def _check_x(self, x, shape: str) -> None:
        if not isinstance(x, torch.Tensor):  # a list or an array fails later with an AttributeError otherwise
            raise TypeError(f"{type(self).__name__}: x must be a torch.Tensor ({shape}), got {type(x).__name__}")

    def _checked_states(self, states) -> tuple:
        states = tuple(states)
        if len(states) != len(self._memories):
            raise ValueError(f"{type(self).__name__}: states must hold {len(self._memories)} values "
                             f"({', '.join(self._memories)}), got {len(states)}")
        return states

    def _forward_is_custom(self) -> bool:
        # a subclass with its own call convention (snnTorch's Leaky: (x, mem) in, (spk, mem) out)
        # is made functional through that forward rather than guessed here
        return type(self).forward is not BaseNode.forward

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        """One step as a pure function: inputs (x [B, ...],), states (v,) -> ((spike,),
        new states). The module's memories are left alone (SpikingJelly 2.0's protocol).

        Example:
            >>> n = LIFNode()
            >>> (s,), (v,) = n.single_step_functional_forward((torch.rand(2, 3),), (0.0,))
        """
        states = self._checked_states(states)
        if self._forward_is_custom():
            return self._through_forward(inputs, states, "s", kwargs)
        _only_x(self, inputs, kwargs)
        spike, states = self._step(inputs[0], states)
        return (spike,), states

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        """T steps as a pure function, on the fused multi-step kernel: inputs (x [T, B, ...],),
        states (v,) -> ((spikes [T, B, ...],), new states).

        Example:
            >>> n = IFNode(step_mode="m")
            >>> (s,), (v,) = n.multi_step_functional_forward((torch.rand(4, 2, 3),), (0.0,))
        """
        states = self._checked_states(states)
        if self._forward_is_custom():
            return self._through_forward(inputs, states, "m", kwargs)
        _only_x(self, inputs, kwargs)
        spikes, states, _ = self._steps(inputs[0], states)
        return (spikes,), states

    def _through_forward(self, inputs: tuple, states: tuple, step_mode: str, kwargs) -> Tuple[tuple, tuple]:
        """forward(*inputs) with `states` as the memories and `step_mode`, then both put back."""
        kept, kept_mode = dict(self._memories), self._step_mode
        try:
            self._memories.update(zip(tuple(self._memories), states))
            object.__setattr__(self, "_step_mode", step_mode)
            out = self.forward(*inputs, **kwargs)
            new_states = tuple(self._memories.values())
        finally:
            self._memories.update(kept)
            object.__setattr__(self, "_step_mode", kept_mode)
        return (tuple(out) if isinstance(out, (tuple, list)) else (out,)), new_states

    def _commit(self, states: tuple) -> None:
        self._memories.update(zip(tuple(self._memories), states))

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        spike, states = self._step(x, tuple(self._memories.values()))
        self._commit(states)
        if self.store_v_seq:  # single-step: v_seq grows by one step per call until reset()
            self.v_seq = _v_seq_with(self.v_seq, self.v)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        spikes, states, v_seq = self._steps(x_seq, tuple(self._memories.values()), record=self.store_v_seq)
        self._commit(states)
        if self.store_v_seq:
            self.v_seq = v_seq
        return spikes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)

    def can_fuse_norm(self) -> bool:
        """Whether forward_after_norm can serve this neuron now: the steps are BaseNode's own (a
        subclass that overrides forward, a step or the step functions is called as it is), no
        v_seq is recorded, and k and the threshold are not tensors."""
        cls = type(self)
        own = all(getattr(cls, name) is getattr(BaseNode, name)
                  for name in ("forward", "single_step_forward", "multi_step_forward", "_step", "_steps",
                               "forward_after_norm"))
        return own and not self.store_v_seq and self._k() is None and self._threshold() is None

    def forward_after_norm(self, x: torch.Tensor, norm) -> torch.Tensor:
        """forward(batch_norm(x)) with the batch norm's apply inside the neuron kernel (norm: an
        ops.BatchNormInput; nn.batch_norm_neuron builds it from a batch-norm module). Needs
        can_fuse_norm(). x: [B, C, ...] ('s') or [T, B, C, ...] ('m'), float32 or float64."""
        states = tuple(self._memories.values())
        if self.step_mode == "s":
            spike, states = self._step(x, states, norm=norm)
        else:
            spike, states, _ = self._steps(x, states, norm=norm)
        self._commit(states)
        return spike


def _only_x(node, inputs, kwargs) -> None:
    if len(inputs) != 1 or kwargs:
        raise TypeError(f"{type(node).__name__}'s functional forward takes one input (x,) and no keywords, "
                        f"got {len(inputs)} inputs and keywords {sorted(kwargs)}")


def _v_seq_with(seq, v: torch.Tensor) -> torch.Tensor:
    """seq with v appended as its last step; a new shape, device or dtype starts a new sequence
    (SpikingJelly 2.0's rule for single-step v_seq)."""
    step = v.unsqueeze(0)
    if (not isinstance(seq, torch.Tensor) or seq.shape[1:] != step.shape[1:] or seq.device != step.device
            or seq.dtype != step.dtype):
        return step.clone()
    return torch.cat((seq, step))


def check_surrogate(name: str, value):
    """The surrogate object `value` stands for (ours, a name, a peer's), else the resolver's
    error with the argument's own name (a module's argument is surrogate_function, not the
    kernels' surrogate)."""
    try:
        return _surrogate.resolve(value)
    except (TypeError, ValueError) as err:
        message = str(err)
        if message.startswith("surrogate "):
            message = name + message[len("surrogate"):]
        raise type(err)(message) from None


def surrogate_or(default, given, name: str = "surrogate_function"):
    """`given` resolved to a surrogate object (`default` when None); an error names `name`."""
    return check_surrogate(name, default if given is None else given)


class LIFNode(BaseNode, *_SJ_ROOTS.get("LIFNode", ())):
    """Leaky integrate-and-fire neuron (SpikingJelly's LIFNode; docs/design.md, section 2.1).

    Shapes: step_mode='s': x [B, ...] -> spikes [B, ...]; step_mode='m': x [T, B, ...] ->
    spikes [T, B, ...]. Spikes in x's dtype; `v` is float32 (float64 for float64 input).

    Example:
        >>> lif = LIFNode(tau=2.0, step_mode="m", grad_mode="sltt")
        >>> s = lif(torch.randn(4, 8, 16))   # [T, B, N]
        >>> lif.reset()
    """

    neuron_model = "lif"

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "bptt"):
        grad_mode = _config.grad_mode("grad_mode", grad_mode)  # the kernels' keyword is grad: name this one
        self_surrogate = surrogate_or(_surrogate.Sigmoid(), surrogate_function)  # SpikingJelly's default
        _config.lif_config(tau=tau, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                           detach_reset=detach_reset, surrogate=self_surrogate, grad=grad_mode)  # checks
        super().__init__(0.0 if v_reset is None else float(v_reset), step_mode, grad_mode, backend, store_v_seq)
        self.surrogate_function = self_surrogate
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)

    def _config_now(self):
        return _config.lif_config(tau=self.tau, v_threshold=self.v_threshold, v_reset=self.v_reset,
                                  decay_input=self.decay_input, detach_reset=self.detach_reset,
                                  surrogate=self.surrogate_function, grad=self.grad_mode)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, "
                f"v_reset={self.v_reset}, surrogate_function={self.surrogate_function!r}, "
                f"detach_reset={self.detach_reset}, step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, "
                f"backend={self.backend!r}")


class IFNode(BaseNode, *_SJ_ROOTS.get("IFNode", ())):
    """Integrate-and-fire neuron (SpikingJelly's IFNode): h = v + x (docs/design.md, section 2.2).

    Example:
        >>> n = IFNode(v_reset=None, step_mode="m")
        >>> s = n(torch.randn(4, 8, 16))
    """

    neuron_model = "if"

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                 detach_reset: bool = False, step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False,
                 grad_mode: str = "bptt"):
        grad_mode = _config.grad_mode("grad_mode", grad_mode)  # the kernels' keyword is grad: name this one
        self_surrogate = surrogate_or(_surrogate.Sigmoid(), surrogate_function)
        _config.if_config(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                          surrogate=self_surrogate, grad=grad_mode)
        super().__init__(0.0 if v_reset is None else float(v_reset), step_mode, grad_mode, backend, store_v_seq)
        self.surrogate_function = self_surrogate
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)

    def _config_now(self):
        return _config.if_config(v_threshold=self.v_threshold, v_reset=self.v_reset, detach_reset=self.detach_reset,
                                 surrogate=self.surrogate_function, grad=self.grad_mode)

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate_function={self.surrogate_function!r}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, backend={self.backend!r}")


class ParametricLIFNode(BaseNode, *_SJ_ROOTS.get("ParametricLIFNode", ())):
    """Parametric LIF (SpikingJelly's ParametricLIFNode): 1/tau = sigmoid(w), w a learnable
    parameter initialised so that tau = init_tau; its gradient comes from the fused backward.

    Example:
        >>> n = ParametricLIFNode(init_tau=2.0, step_mode="m")
        >>> n(torch.randn(4, 8, 16)).sum().backward()   # n.w.grad
    """

    neuron_model = "lif"  # the LIF model with a learnable k = 1/tau
    k_name = "w"

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "bptt"):
        grad_mode = _config.grad_mode("grad_mode", grad_mode)  # the kernels' keyword is grad: name this one
        init_tau = _config.number("init_tau", init_tau, low=1.0, low_inclusive=False)
        self_surrogate = surrogate_or(_surrogate.Sigmoid(), surrogate_function)
        _config.plif_config(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
                            detach_reset=detach_reset, surrogate=self_surrogate, grad=grad_mode)
        super().__init__(0.0 if v_reset is None else float(v_reset), step_mode, grad_mode, backend, store_v_seq)
        self.surrogate_function = self_surrogate
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))  # sigmoid(w) = 1 / init_tau

    def _config_now(self):
        return _config.plif_config(v_threshold=self.v_threshold, v_reset=self.v_reset, decay_input=self.decay_input,
                                   detach_reset=self.detach_reset, surrogate=self.surrogate_function,
                                   grad=self.grad_mode)

    def _k(self):
        return torch.sigmoid(self.w)

    def extra_repr(self) -> str:
        return (f"tau={1.0 / float(torch.sigmoid(self.w.detach())):.4f}, decay_input={self.decay_input}, "
                f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate_function={self.surrogate_function!r}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode!r}, grad_mode={self.grad_mode!r}, backend={self.backend!r}")


class SLTTLIFNode(LIFNode):
    """SpikingJelly's `SLTTLIFNode` on the fused kernels: its arguments and defaults (decay_input
    True, hard reset to 0, Sigmoid surrogate, detach_reset True), grad_mode='sltt'.

    For the SLTT paper's neuron (the official code's), use `PaperLIFNode`.

    Example:
        >>> lif = SLTTLIFNode()
        >>> s = lif(torch.randn(8, 16))      # one step [B, N]
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = True,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "sltt"):
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode=step_mode,
                         backend=backend, store_v_seq=store_v_seq, grad_mode=grad_mode)


class PaperLIFNode(LIFNode):
    """The SLTT paper's neuron as its official code builds it: tau 1.1, no input decay, soft reset,
    threshold 1, the triangle surrogate with alpha 1 (SpikingJelly's PiecewiseQuadratic), and
    grad_mode='sltt'. `surrogate_function=Rect()` gives the 1-bit variant (the paper's Eq. 5).

    Example:
        >>> lif = PaperLIFNode()
        >>> s = lif(torch.randn(8, 16))      # one step [B, N]
    """

    def __init__(self, tau: float = 1.1, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = None, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, grad_mode: str = "sltt"):
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=_surrogate.Triangle(1.0) if surrogate_function is None
                         else surrogate_function,
                         detach_reset=detach_reset, step_mode=step_mode, backend=backend, store_v_seq=store_v_seq,
                         grad_mode=grad_mode)


class OTTTLIFNode(LIFNode):
    """SpikingJelly's OTTTLIFNode on the fused kernels: an online (SLTT-mode) LIF neuron that in
    training returns [spike, trace], trace[t] = trace[t-1] * (1 - 1/tau) + spike[t] (no gradient),
    for OTTT's layers; in eval it returns the spike only. Single-step only.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = None, surrogate_function=None, detach_reset: bool = True,
                 step_mode: str = "s", store_v_seq: bool = False, backend: str = "auto"):
        if not isinstance(step_mode, str):
            raise TypeError(f"OTTTLIFNode: step_mode must be a string, 's'; got "
                            f"{type(step_mode).__name__} {step_mode!r}")
        if step_mode != "s":
            raise ValueError(f"OTTTLIFNode is single-step only: step_mode must be 's', got {step_mode!r}")
        super().__init__(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode="s",
                         backend=backend, store_v_seq=store_v_seq, grad_mode="sltt")
        self.register_memory("trace", None)

    def supported_step_mode(self) -> Tuple[str, ...]:
        return ("s",)  # its trace is per step; set_step_mode(net, 'm') fails here rather than later

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        """inputs (x,), states (v, trace) -> ((spike, trace) in training, else (spike,);
        new states)."""
        states = self._checked_states(states)
        _only_x(self, inputs, kwargs)
        spike, states = self._step(inputs[0], states)
        if not self.training:
            return (spike,), states
        new = dict(zip(self._memories, states))
        with torch.no_grad():  # the trace carries no gradient (OTTT's rule)
            decayed = 0.0 if new["trace"] is None else new["trace"] * (1.0 - 1.0 / self.tau)
            new["trace"] = decayed + spike
        return (spike, new["trace"]), tuple(new.values())

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        raise ValueError("OTTTLIFNode is single-step only: it has no multi-step functional forward")

    def forward(self, x: torch.Tensor):
        outputs, states = self.single_step_functional_forward((x,), tuple(self._memories.values()))
        self._commit(states)
        if self.store_v_seq:
            self.v_seq = _v_seq_with(self.v_seq, self.v)
        return outputs[0] if len(outputs) == 1 else list(outputs)
