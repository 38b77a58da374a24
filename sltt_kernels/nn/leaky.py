"""snnTorch's neurons on the fused kernels: `Leaky` (its default reset_delay=True, exact) and
`SnnTorchLeaky` (reset_delay=False, as a LIF: exact while no membrane stays above threshold after
its reset), with snnTorch's constructor, call convention (`spk, mem = lif(cur, mem)`,
`init_hidden`, `output`), state (`mem`, `reset_mem()`, `init_leaky()`) and state_dict (buffers
`threshold`, `graded_spikes_factor`, `reset_mechanism_val`, `beta`).

With snnTorch installed both classes derive from its `snntorch.Leaky` (as our SpikingJelly family
derives from SpikingJelly's MemoryModule, nn/memory_module.py), so its utilities, which decide by
`isinstance(m, snntorch.Leaky)` (`utils.reset`, `backprop`, `utils._final_layer_check`,
`export_nir`), treat ours as its own; everything they call is overridden here or is snnTorch's
own class-level helper, so our behaviour is the same with or without snnTorch.
"""

from __future__ import annotations

import importlib.util
import numbers
import weakref
from typing import Optional, Tuple

import torch
from torch import nn

from .. import _config
from .. import surrogate as _surrogate
from .neurons import BaseNode, LIFNode

__all__ = ["Leaky", "SnnTorchLeaky", "snntorch_surrogate"]

# snnTorch's reset mechanisms; reset_mechanism_val holds the position (its reset_dict's values)
RESET_MECHANISMS = ("subtract", "zero", "none")


def _snntorch_leaky_class():
    """snnTorch's `Leaky` class when snnTorch is installed, else None (a broken install too)."""
    if importlib.util.find_spec("snntorch") is None:
        return None
    try:
        import snntorch  # torch and its own small modules only
    except Exception:
        return None
    return getattr(snntorch, "Leaky", None)


_SNNTORCH_LEAKY = _snntorch_leaky_class()

if _SNNTORCH_LEAKY is not None:

    class _SnnTorchLeakyRoot(_SNNTORCH_LEAKY):
        """Puts snnTorch's Leaky among our neurons' bases without running its constructor (it
        needs beta and builds its own state; ours builds snnTorch's state in
        `_SnnTorchState._init_snntorch`). It ends the constructor chain at nn.Module."""

        def __init__(self):
            nn.Module.__init__(self)

    _ROOT: Tuple[type, ...] = (_SnnTorchLeakyRoot,)
    # the class whose constructor lists every neuron, in the class attribute `instances`
    _SNNTORCH_SPIKING_NEURON = next(c for c in _SNNTORCH_LEAKY.__mro__ if c.__name__ == "SpikingNeuron")
else:
    _ROOT = ()
    _SNNTORCH_SPIKING_NEURON = None


def _leave_instances(instances: list, proxy) -> None:
    # by identity: comparing a dead proxy raises
    for i, entry in enumerate(instances):
        if entry is proxy:
            del instances[i]
            return


def _closure_values(fn) -> dict:
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    if code is None:
        return {}
    return {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells)}


def snntorch_surrogate(fn) -> Optional[_surrogate.SurrogateFunction]:
    """Our fused surrogate for one of snnTorch's surrogate functions, or None if `fn` is not
    snnTorch's (a closure made in snntorch.surrogate).

    Fused: `snntorch.surrogate.atan(alpha)` -> ATan(alpha) and `fast_sigmoid(slope)` ->
    FastSigmoid(slope). Any other of snnTorch's raises ValueError (keep snnTorch's neuron).

    Example:
        >>> from snntorch import surrogate
        >>> snntorch_surrogate(surrogate.fast_sigmoid(slope=25))   # FastSigmoid(slope=25.0)
    """
    if not callable(fn) or not (getattr(fn, "__module__", "") or "").startswith("snntorch"):
        return None
    qualname = getattr(fn, "__qualname__", "") or ""
    maker = qualname.split(".")[0]
    params = _closure_values(fn)
    if maker in ("atan", "fast_sigmoid") and "." not in qualname:  # the factory itself, not called
        raise ValueError(f"spike_grad: pass snnTorch's surrogate.{maker}() (called), not surrogate.{maker}")
    if maker == "atan" and "alpha" in params:
        return _surrogate.ATan(params["alpha"])
    if maker == "fast_sigmoid" and "slope" in params:
        fast_sigmoid = getattr(_surrogate, "FastSigmoid", None)
        if fast_sigmoid is not None:
            return fast_sigmoid(slope=params["slope"])
        raise ValueError("spike_grad: snnTorch's fast_sigmoid is not fused by this version of sltt_kernels (its atan is); "
                         "keep snntorch.Leaky for it")
    name = qualname.replace(".<locals>.inner", "()") or repr(fn)
    raise ValueError(f"spike_grad: snnTorch's surrogate {name} has no fused equivalent (snnTorch's atan() and "
                     "fast_sigmoid() do); keep snntorch.Leaky for it")


def _spike_grad(spike_grad) -> _surrogate.SurrogateFunction:
    """Our surrogate for a `spike_grad` argument: None is snnTorch's default, atan(alpha=2)."""
    if spike_grad is None:
        return _surrogate.ATan(2.0)
    ours = snntorch_surrogate(spike_grad)
    if ours is not None:
        return ours
    try:
        return _surrogate.resolve(spike_grad)
    except ValueError as err:
        raise ValueError(f"spike_grad: {err}; snnTorch's surrogate.atan() and surrogate.fast_sigmoid() "
                         "are accepted too") from None


def _one_number(name: str, value, per_neuron: bool = False) -> torch.Tensor:
    """A buffer as snnTorch makes it (torch.as_tensor of the value; a tensor is kept), checked
    to hold finite numbers: one, or (per_neuron: beta, threshold) one per neuron or channel."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 and not per_neuron:
            raise ValueError(f"{name} must hold one number, got shape {tuple(value.shape)}")
        if value.numel() == 0:
            raise ValueError(f"{name} must hold at least one number, got shape {tuple(value.shape)}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real number, got a {value.dtype} tensor")
        tensor = value
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        tensor = torch.as_tensor(value)
    elif per_neuron and type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        # a numpy array (snnTorch's NIR import passes its per-neuron beta so): as snnTorch's
        # torch.as_tensor makes it, if it holds real numbers
        if value.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got a numpy array of {value.dtype}")
        return _one_number(name, torch.as_tensor(value), per_neuron)
    else:
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if not bool(torch.isfinite(tensor.detach()).all()):
        raise ValueError(f"{name} must be finite, got {tensor.detach().flatten()[:8].tolist()}")
    return tensor


def _refuse(flag: bool, what: str) -> None:
    if flag:
        raise ValueError(f"{what} is not fused; keep snntorch.Leaky for it")


class _SnnTorchState:
    """snnTorch's side of our snnTorch neurons, first among their bases so that it wins over
    BaseNode's SpikingJelly conventions where the two differ: the buffers and their keys, `mem`
    (an empty tensor until the first step, then the last membrane; a membrane of another shape
    starts from zeros), `reset_mem()`, `reset_mechanism` (checked when set), `spike_grad` (our
    surrogates, names, and snnTorch's atan / fast_sigmoid), graded spikes, and the call
    convention. The subclass says which neuron runs (`_config_now`)."""

    reset_delay: bool
    k_name = "beta"

    def _init_snntorch(self, beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition, learn_beta,
                       learn_threshold, reset_mechanism, state_quant, output, graded_spikes_factor,
                       learn_graded_spikes_factor) -> None:
        _refuse(inhibition, "inhibition=True")
        _refuse(bool(state_quant), "state_quant")
        self._check_mechanism(reset_mechanism)
        # snnTorch's buffers and parameters, its names and order, so checkpoints load strictly both
        # ways; beta and threshold may hold one number or one per neuron (a shape that broadcasts
        # to the membrane's), learnable (learn_beta / learn_threshold, or an nn.Parameter given)
        # with the fused backward computing their gradients
        self._register_param("threshold", _one_number("threshold", threshold, per_neuron=True), learn_threshold)
        factor = _one_number("graded_spikes_factor", graded_spikes_factor)
        if learn_graded_spikes_factor or isinstance(factor, nn.Parameter):
            # learnable: the spikes times this tensor, its gradient from autograd (sum of grad * spike)
            self.graded_spikes_factor = factor if isinstance(factor, nn.Parameter) else nn.Parameter(factor)
        else:
            self.register_buffer("graded_spikes_factor", factor)
        self.register_buffer("reset_mechanism_val", torch.as_tensor(RESET_MECHANISMS.index(reset_mechanism)))
        self._register_param("beta", _one_number("beta", beta, per_neuron=True), learn_beta)
        self.spike_grad = spike_grad
        self.init_hidden = _config.flag("init_hidden", init_hidden)
        self.output = _config.flag("output", output)
        # surrogate_disable: spikes carry no gradient (snnTorch's Heaviside without a surrogate)
        self.surrogate_disable = _config.flag("surrogate_disable", surrogate_disable)
        # what snnTorch's utilities may read on one of its neurons
        self.inhibition = False
        self.state_quant = False
        # snnTorch's membrane starts as an empty tensor and reset() (SpikingJelly's) goes back to it
        self.set_reset_value("v", torch.zeros(0))
        self.v = torch.zeros(0)
        self._numbers()
        self._join_snntorch_instances()

    def _register_param(self, name: str, value: torch.Tensor, learn: bool) -> None:
        if learn or isinstance(value, nn.Parameter):
            setattr(self, name, value if isinstance(value, nn.Parameter) else nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _join_snntorch_instances(self) -> None:
        """snnTorch's utils.reset / backprop reset the neurons its class-level list holds
        (SpikingNeuron.instances, which its constructor appends to): ours go there too, as a
        weak proxy taken out when the module dies, so the list never keeps a dead network's
        membrane and graph alive (snnTorch's own entries stay for good)."""
        if _SNNTORCH_LEAKY is None:
            return
        instances = _SNNTORCH_SPIKING_NEURON.instances
        proxy = weakref.proxy(self)
        instances.append(proxy)
        weakref.finalize(self, _leave_instances, instances, proxy)

    def __setstate__(self, state) -> None:  # copy.deepcopy and unpickling: the copy is reset too
        super().__setstate__(state)
        self._join_snntorch_instances()

    # -- the buffers as Python numbers ---------------------------------------------------------

    def _numbers(self) -> Tuple[Optional[float], Optional[float], Optional[float], str]:
        """(beta clamped to [0, 1] as snnTorch's forward does, threshold, graded_spikes_factor,
        reset mechanism), read from the buffers; beta, threshold or the factor is None when it is
        a learnable parameter or (beta, threshold) holds one value per neuron: the forward then
        passes the tensor (`_k`, `_threshold`) or multiplies by it. Kept until a buffer changes (another tensor or
        an in-place write, as load_state_dict's): reading a CUDA buffer waits for the device.
        Under torch.compile the kept numbers are used as they are (renewed by every eager call,
        load_state_dict and .to(); an in-place write to a buffer between compiled calls is not
        seen there)."""
        cache = self.__dict__.get("_numbers_cache")
        if cache is not None and torch.compiler.is_compiling():
            return cache[2]
        factor = self.graded_spikes_factor
        learnable = isinstance(factor, nn.Parameter)  # an optimizer writes it every step: not read
        as_number = {name: not isinstance(t, nn.Parameter) and t.numel() == 1
                     for name, t in (("beta", self.beta), ("threshold", self.threshold))}
        tensors = ((self.reset_mechanism_val,) + tuple(getattr(self, n) for n, one in as_number.items() if one)
                   + (() if learnable else (factor,)))
        try:
            versions = tuple(t._version for t in tensors)
        except RuntimeError:  # an inference-mode tensor has no version counter: read every time
            versions = None
        if (cache is not None and versions is not None and cache[1] == versions
                and all(a is b for a, b in zip(cache[0], tensors))):
            return cache[2]
        if factor.numel() != 1:
            raise ValueError(f"{type(self).__name__}: graded_spikes_factor must hold one number, got shape "
                             f"{tuple(factor.shape)}")
        code = int(self.reset_mechanism_val)
        if not 0 <= code < len(RESET_MECHANISMS):
            raise ValueError(f"{type(self).__name__}: reset_mechanism_val must be 0, 1 or 2 (subtract, zero, none), "
                             f"got {code}")
        beta = min(max(float(self.beta), 0.0), 1.0) if as_number["beta"] else None
        threshold = float(self.threshold) if as_number["threshold"] else None
        numbers_now = (beta, threshold, None if learnable else float(factor), RESET_MECHANISMS[code])
        self.__dict__["_numbers_cache"] = (tensors, versions, numbers_now)
        return numbers_now

    # torch.compile runs on the kept numbers: renew them where the buffers change under us
    # (not on the meta device, which has no values to read)
    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if not self.beta.is_meta:
            self._numbers()

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), ...
        out = super()._apply(fn, *args, **kwargs)
        if not self.beta.is_meta:
            self._numbers()
        return out

    def _beta_tensor(self) -> Optional[torch.Tensor]:
        """beta as the forward uses it when it is a tensor (learnable or per neuron): clamped to
        [0, 1] as snnTorch's forward does (the clamp's gradient is autograd's); else None."""
        return None if self._numbers()[0] is not None else self.beta.clamp(0, 1)

    def _threshold(self) -> Optional[torch.Tensor]:
        return None if self._numbers()[1] is not None else self.threshold

    # -- snnTorch's attributes -----------------------------------------------------------------

    def _check_mechanism(self, value) -> None:
        _config.choice("reset_mechanism", value, RESET_MECHANISMS, exact=True)

    @property
    def reset_mechanism(self) -> str:
        """'subtract', 'zero' or 'none': the name of reset_mechanism_val (0, 1, 2)."""
        return self._numbers()[3]

    @reset_mechanism.setter
    def reset_mechanism(self, value: str) -> None:
        self._check_mechanism(value)
        old = self.reset_mechanism_val
        self.reset_mechanism_val = torch.as_tensor(RESET_MECHANISMS.index(value), dtype=old.dtype, device=old.device)

    @property
    def spike_grad(self) -> _surrogate.SurrogateFunction:
        """The surrogate (one of sltt_kernels.surrogate's; snnTorch's atan / fast_sigmoid are
        converted when set)."""
        return self.__dict__["_spike_grad"]

    @spike_grad.setter
    def spike_grad(self, value) -> None:
        self.__dict__["_spike_grad"] = _spike_grad(value)

    @property
    def mem(self):
        """The membrane: an empty tensor before the first step (snnTorch's), then the last one."""
        v = self.v
        if not isinstance(v, torch.Tensor):  # a number set by hand: snnTorch's utilities read mem.device
            v = torch.as_tensor(float(v))
            self.v = v
        if isinstance(v, torch.Tensor) and v._is_view():
            # the one-step op hands its state out as a view of a flat buffer, and snnTorch's
            # detach_hidden() (truncated BPTT) detaches `mem` in place, which a view refuses:
            # keep a copy instead (its graph intact), made only when mem is read
            v = v.clone()
            self.v = v
        return v

    @mem.setter
    def mem(self, value) -> None:
        self.v = torch.zeros(0) if value is None else value

    def reset_mem(self) -> torch.Tensor:
        """Zeroes the membrane, keeping its shape; returns it (snnTorch's reset_mem).

        Example:
            >>> mem = lif.reset_mem()        # zeros of the last membrane's shape
        """
        v = self.v
        self.v = torch.zeros_like(v) if isinstance(v, torch.Tensor) else torch.zeros(0)
        return self.v

    def init_leaky(self) -> torch.Tensor:
        """snnTorch's older name of reset_mem()."""
        return self.reset_mem()

    # -- the call ------------------------------------------------------------------------------

    def forward(self, input_: torch.Tensor, mem: Optional[torch.Tensor] = None):
        """spk, mem = lif(cur, mem); spk = lif(cur) with init_hidden=True (output=True: both).
        step_mode 's': cur [B, ...]; 'm': cur [T, B, ...] -> spk [T, B, ...], mem of the last step."""
        if mem is not None:
            if self.init_hidden:
                raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
            self.v = mem
        v = self.v
        if isinstance(v, torch.Tensor) and isinstance(input_, torch.Tensor):
            step_shape = input_.shape if self.step_mode == "s" else input_.shape[1:]
            if tuple(v.shape) != tuple(step_shape):
                # snnTorch: a membrane of another shape (its empty start, another batch size)
                # starts from zeros
                self.v = 0.0
        try:
            spk = super().forward(input_)
        except BaseException:
            if not isinstance(self.v, torch.Tensor):
                self.v = v  # a step that failed leaves the membrane as it was (snnTorch reads mem.device)
            raise
        if self.surrogate_disable:
            spk = spk.detach()
        # graded spikes (the reset still counts a spike as 1)
        factor = self._numbers()[2]
        if factor is None:
            spk = spk * self.graded_spikes_factor.to(spk.dtype)
        elif factor != 1.0:
            spk = spk * factor
        if self.output or not self.init_hidden:
            return spk, self.v
        return spk

    def _repr_common(self) -> str:
        beta, threshold, factor, mech = self._numbers()
        beta = float("nan") if beta is None else beta  # a tensor: named below
        threshold = float("nan") if threshold is None else threshold
        graded = (", learn_graded_spikes_factor=True" if factor is None
                  else f", graded_spikes_factor={factor:.6g}" if factor != 1.0 else "")
        graded += ", surrogate_disable=True" if self.surrogate_disable else ""
        text = {"beta": f"{beta:.6g}", "threshold": f"{threshold:.6g}"}
        for name in text:
            t = getattr(self, name)
            if isinstance(t, nn.Parameter) or t.numel() != 1:
                text[name] = (f"{'learnable ' if isinstance(t, nn.Parameter) else ''}"
                              f"{'per-neuron ' if t.numel() != 1 else ''}tensor{list(t.shape)}")
        return (f"beta={text['beta']}, threshold={text['threshold']}, spike_grad={self.spike_grad!r}, "
                f"reset_mechanism={mech!r}"
                f"{graded}, init_hidden={self.init_hidden}, output={self.output}, step_mode={self.step_mode!r}, "
                f"grad_mode={self.grad_mode!r}, backend={self.backend!r}")


class Leaky(_SnnTorchState, BaseNode, *_ROOT):
    """snnTorch's `Leaky` with its default reset_delay=True, on the fused kernels (docs/design.md,
    section 2.3): snnTorch's arguments in its order, then ours as keywords (step_mode 's' / 'm',
    backend, grad_mode 'bptt' / 'sltt').

    Shapes: step_mode='s': cur [B, ...] -> spk [B, ...]; 'm': cur [T, B, ...] -> spk [T, B, ...]
    and mem of the last step. spk in cur's dtype (times graded_spikes_factor); mem float32
    (float64 for float64 input). beta, threshold: a number or a tensor of one value or one per
    neuron (a shape that broadcasts to the membrane's: [F] for [B, F], [C, 1, 1] for [B, C, H, W]),
    learnable with learn_beta / learn_threshold (or given as nn.Parameter), their gradients from
    the fused backward; beta is clamped to [0, 1] as snnTorch's forward does.
    graded_spikes_factor: one number. spike_grad: snnTorch's surrogate.atan() (the default) or fast_sigmoid(), or one of
    sltt_kernels.surrogate's; surrogate_disable=True: the spikes carry no gradient.
    learn_graded_spikes_factor=True makes the spike factor a parameter (autograd's gradient).
    Not fused (ValueError, keep snntorch.Leaky): inhibition, state_quant; reset_delay=False is `SnnTorchLeaky`.

    With snnTorch installed this is a `snntorch.Leaky`: `snntorch.utils.reset(net)` zeroes and
    detaches its `mem`. Setting reset_mechanism changes the dynamics from the next step (snnTorch
    1.0's own Leaky keeps the mechanism it was built with).

    Example:
        >>> lif = Leaky(beta=0.9)
        >>> mem = lif.reset_mem()
        >>> spk, mem = lif(torch.randn(8, 16), mem)
    """

    neuron_model = "leaky"

    reset_delay = True

    def __init__(self, beta, threshold=1.0, spike_grad=None, surrogate_disable: bool = False,
                 init_hidden: bool = False, inhibition: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, reset_mechanism: str = "subtract", state_quant=False,
                 output: bool = False, graded_spikes_factor=1.0, learn_graded_spikes_factor: bool = False,
                 reset_delay: bool = True, *, step_mode: str = "s", backend: str = "auto", grad_mode: str = "bptt"):
        if not reset_delay:
            raise ValueError("reset_delay=False is snnTorch's other Leaky: use sltt_kernels.nn.leaky.SnnTorchLeaky "
                             "(exact while no membrane stays above threshold after its reset) or snntorch.Leaky")
        BaseNode.__init__(self, 0.0, step_mode, grad_mode, backend, False)
        self._init_snntorch(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition, learn_beta,
                            learn_threshold, reset_mechanism, state_quant, output, graded_spikes_factor,
                            learn_graded_spikes_factor)
        self._config_now()  # every value checked now, not at the first step

    def _config_now(self):
        beta, threshold, _, mech = self._numbers()
        # a tensor beta or threshold: the configuration holds a placeholder the kernels replace
        return _config.leaky_config(beta=0.5 if beta is None else beta, threshold=1.0 if threshold is None else threshold,
                                    reset_mechanism=mech, surrogate=self.spike_grad, grad=self.grad_mode)

    def _k(self) -> Optional[torch.Tensor]:
        return self._beta_tensor()  # the leaky model's k is beta

    def extra_repr(self) -> str:
        return self._repr_common()


class SnnTorchLeaky(_SnnTorchState, LIFNode, *_ROOT):
    """snnTorch's `Leaky(..., reset_delay=False)` on the fused kernels: its arguments in its order
    (reset_delay must be False), then ours as keywords; its call convention, state and buffers
    as `Leaky`'s.

    Its dynamics are this package's LIF with tau = 1/(1-beta), no input decay, and a reset that
    carries the spike's gradient (`reset_mechanism='subtract'`: soft; 'zero': hard to 0; 'none'
    is refused: it is the same neuron as reset_delay=True's, use `Leaky`), as long as no
    membrane stays at or above the threshold after its reset: snnTorch then withholds the next
    step's reset (its "avoid double reset"), which this neuron does not. snnTorch fires on mem >
    threshold and this on >=, which differ only when mem equals the threshold exactly. beta must
    be < 1. With snnTorch installed this is a `snntorch.Leaky` too.

    Example:
        >>> lif = SnnTorchLeaky(beta=0.8, reset_delay=False)
        >>> spk, mem = lif(torch.randn(8, 16))
    """

    reset_delay = False

    def __init__(self, beta, threshold=1.0, spike_grad=None, surrogate_disable: bool = False,
                 init_hidden: bool = False, inhibition: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, reset_mechanism: str = "subtract", state_quant=False,
                 output: bool = False, graded_spikes_factor=1.0, learn_graded_spikes_factor: bool = False,
                 reset_delay: bool = False, *, step_mode: str = "s", backend: str = "auto", grad_mode: str = "bptt"):
        if reset_delay:
            raise ValueError("SnnTorchLeaky is snnTorch's Leaky with reset_delay=False; for reset_delay=True use "
                             "sltt_kernels.nn.Leaky")
        # BaseNode's constructor, not LIFNode's: tau, v_threshold and v_reset are read from
        # snnTorch's buffers (properties below), so a loaded checkpoint changes them
        BaseNode.__init__(self, 0.0, step_mode, grad_mode, backend, False)
        self._init_snntorch(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition, learn_beta,
                            learn_threshold, reset_mechanism, state_quant, output, graded_spikes_factor,
                            learn_graded_spikes_factor)
        self._config_now()

    def _check_mechanism(self, value) -> None:
        _config.choice("reset_mechanism", value, RESET_MECHANISMS, exact=True)
        if value == "none":
            raise ValueError("reset_mechanism='none' with reset_delay=False is the same neuron as with reset_delay=True: "
                             "use sltt_kernels.nn.Leaky")

    def _lif_values(self):
        """(tau, v_threshold, v_reset) as LIFNode reads them; tau 2.0 and v_threshold 1.0 are
        placeholders where beta or the threshold is a tensor (`_k`, `_threshold` pass it)."""
        beta, threshold, _, mech = self._numbers()
        if mech == "none":
            raise ValueError(f"{type(self).__name__}: reset_mechanism 'none' (reset_mechanism_val 2) is not this neuron; "
                             "use sltt_kernels.nn.Leaky")
        if beta is not None and not beta < 1.0:
            raise ValueError(f"{type(self).__name__}: beta must be < 1 (tau = 1 / (1 - beta)), got {beta}")
        tau = 2.0 if beta is None else 1.0 / (1.0 - beta)
        return tau, 1.0 if threshold is None else threshold, (0.0 if mech == "zero" else None)

    def _k(self) -> Optional[torch.Tensor]:
        # the LIF's k = 1/tau = 1 - beta (lam = 1 - k rounds back to beta within an ulp)
        beta = self._beta_tensor()
        return None if beta is None else 1.0 - beta

    # LIFNode's attributes, from snnTorch's buffers
    tau = property(lambda self: self._lif_values()[0], doc="1 / (1 - beta)")
    v_threshold = property(lambda self: self._lif_values()[1], doc="threshold")
    v_reset = property(lambda self: self._lif_values()[2], doc="0.0 for 'zero', None (soft) for 'subtract'")
    surrogate_function = property(lambda self: self.spike_grad, doc="spike_grad")
    decay_input = property(lambda self: False, doc="snnTorch adds the input undecayed")
    detach_reset = property(lambda self: False, doc="the reset carries the spike's gradient")

    def extra_repr(self) -> str:
        return self._repr_common() + ", reset_delay=False"
