"""The torch ops of every backend: schemas, fake kernels and autograd, registered once.

Schemas are generated from `NeuronArgs` (the op arguments' one definition, _config.py) for the
native ops `torch.ops.sltt_kernels.neuron_{multistep,step}_{fwd,bwd}` (CPU and CUDA kernels,
registered by the compiled extension, which is loaded after the schemas exist) and their Triton
twins `triton_neuron_*` (implemented in triton/ops.py). Both sides share the fake kernels and the
autograd glue here, so they pass torch.library.opcheck and work under
torch.compile(fullgraph=True). docs/design.md, section 4.
"""

from __future__ import annotations

import typing

import torch

from . import _ext
from . import memory as _memory
from ._config import (
    NeuronArgs,
    check_args,
    check_input,
    check_input_affine,
    check_param,
    check_saved,
    check_state,
    saved_dtype,
    saved_shape,
    state_dtype,
)

_SCHEMA_TYPE = {str: "str", float: "float", bool: "bool"}
NEURON_SCHEMA = ", ".join(f"{_SCHEMA_TYPE[t]} {name}" for name, t in typing.get_type_hints(NeuronArgs).items())

# name -> (leading tensor arguments, returns)
OPS = {
    "neuron_multistep_fwd": ("Tensor x, Tensor? v0, Tensor? k", "(Tensor spikes, Tensor v_last, Tensor saved)"),
    "neuron_multistep_bwd": ("Tensor grad_spikes, Tensor? grad_v_last, Tensor saved, Tensor? k",
                          "(Tensor grad_x, Tensor grad_v0, Tensor grad_k, Tensor grad_threshold)"),
    "neuron_step_fwd": ("Tensor x, Tensor v, Tensor? k", "(Tensor spike, Tensor v_new, Tensor saved)"),
    "neuron_step_bwd": ("Tensor grad_spike, Tensor? grad_v_new, Tensor saved, Tensor? k",
                     "(Tensor grad_x, Tensor grad_v, Tensor grad_k, Tensor grad_threshold)"),
}
# Arguments after the neuron arguments, optional and last, so the calls written before them keep
# their positions. The step backward's v_new is the step's output state, which save='spike_state'
# reads to rebuild h - theta (docs/design.md, section 3). threshold: the firing threshold as a
# tensor of one element or of the state's shape (one per neuron), replacing v_threshold; the
# backward ops return its gradient (where the forward saved h_v0; else an empty tensor), as they
# do k's (docs/design.md, section 2.6).
# in_scale, in_shift (the forward ops): the neuron's input is x * in_scale + in_shift, each of one
# element or of the state's shape (a per-channel value as an expanded view, read without a copy):
# a batch norm's apply fused into the neuron (docs/design.md, section 4.3). The backward ops return
# the gradient with respect to that input; the autograd below carries it to x, in_scale, in_shift.
TRAILING = {
    "neuron_multistep_fwd": ", Tensor? threshold=None, Tensor? in_scale=None, Tensor? in_shift=None",
    "neuron_multistep_bwd": ", Tensor? threshold=None",
    "neuron_step_fwd": ", Tensor? threshold=None, Tensor? in_scale=None, Tensor? in_shift=None",
    "neuron_step_bwd": ", Tensor? v_new=None, Tensor? threshold=None",
}
TRITON_PREFIX = "triton_"


def split_trailing(name: str, args, kwargs=None):
    """(neuron arguments, {trailing name: value}) of a call's arguments after its leading tensors:
    the dispatcher passes a trailing argument positionally when it was given, else not at all."""
    n = len(NeuronArgs._fields)
    names = [part.split("=")[0].split()[-1] for part in TRAILING[name].strip(", ").split(", ")]
    extra = {key: (args[n + i] if len(args) > n + i else (kwargs or {}).get(key)) for i, key in enumerate(names)}
    return tuple(args[:n]), extra


def _schema(name: str, legacy: bool = False) -> str:
    """The op's schema; legacy: the schema the op had under its old lif_* name (no threshold, so
    three returns for the backward ops)."""
    tensors, returns = OPS[name]
    trailing = TRAILING[name]
    if legacy:
        returns = returns.replace(", Tensor grad_threshold", "")
        trailing = ", Tensor? v_new=None" if name == "neuron_step_bwd" else ""
    return f"({tensors}, {NEURON_SCHEMA}{trailing}) -> {returns}"


_LIB = torch.library.Library("sltt_kernels", "FRAGMENT")
for _name in OPS:
    for _prefix in ("", TRITON_PREFIX):
        _LIB.define(f"{_prefix}{_name}{_schema(_name)}")


def op(name: str, triton: bool = False):
    """torch.ops.sltt_kernels.<name> (the native op) or its Triton twin."""
    return getattr(torch.ops.sltt_kernels, (TRITON_PREFIX if triton else "") + name)


def neuron_args_of_call(args, kwargs, tensors: int) -> NeuronArgs:
    """The NeuronArgs of a neuron op call seen by a dispatch mode or an op counter: its `tensors`
    leading tensor arguments, then the neuron arguments, each read by its schema name from the
    keywords or else at its schema position."""
    names = NeuronArgs._fields
    given = dict(zip(names, args[tensors:]))
    given.update({k: v for k, v in kwargs.items() if k in names})
    return NeuronArgs(**given)


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the fake kernels and the Triton ops (the native ops check the same
# in C++: csrc/lif_options.h)


def _check_spike_state_step(args: NeuronArgs, multistep: bool) -> None:
    if multistep and args.save == "spike_state":
        raise ValueError("save='spike_state' serves the single-step ops only (it reads the step's output state "
                         "in backward)")


def check_fwd(x, v, k, args, multistep: bool, threshold=None, in_scale=None, in_shift=None) -> NeuronArgs:
    """Checks a forward op's arguments; returns the normalised NeuronArgs."""
    args = check_args(NeuronArgs(*args), has_k=k is not None, has_threshold=threshold is not None)
    _check_spike_state_step(args, multistep)
    check_input(x, "x", multistep)
    state_shape = x.shape[1:] if multistep else x.shape
    if multistep:
        if v is not None:
            check_state(v, "v0", x, state_shape, exact_dtype=True)
    else:
        check_state(v, "v", x, state_shape, exact_dtype=True)
    if k is not None:
        check_param(k, "k", x, state_shape, exact_dtype=True)
    if threshold is not None:
        check_param(threshold, "threshold", x, state_shape, exact_dtype=True)
    check_input_affine(in_scale, in_shift, x, state_shape)
    saved_dtype(args.save, x.dtype)  # h16 needs 16-bit input
    return args


def check_bwd(grad_spikes, grad_v, saved, k, args, multistep: bool, v_new=None, threshold=None) -> NeuronArgs:
    """Checks a backward op's arguments; returns the normalised NeuronArgs. v_new: the step's
    output state, given exactly when save='spike_state' (the step backward only)."""
    args = check_args(NeuronArgs(*args), has_k=k is not None, has_threshold=threshold is not None)
    _check_spike_state_step(args, multistep)
    check_input(grad_spikes, "grad_spikes" if multistep else "grad_spike", multistep)
    state_shape = grad_spikes.shape[1:] if multistep else grad_spikes.shape
    if grad_v is not None:
        check_state(grad_v, "grad_v_last" if multistep else "grad_v_new", grad_spikes, state_shape, exact_dtype=True)
    T = grad_spikes.shape[0] if multistep else 1
    N = 1
    for d in state_shape:
        N = N * d
    check_saved(saved, args, grad_spikes, T, N)
    if k is not None:
        check_param(k, "k", grad_spikes, state_shape, exact_dtype=True)
    if threshold is not None:
        check_param(threshold, "threshold", grad_spikes, state_shape, exact_dtype=True)
    if args.save == "spike_state":
        if v_new is None:
            raise ValueError("v_new (the step's output state) is needed by save='spike_state'")
        check_state(v_new, "v_new", grad_spikes, state_shape, exact_dtype=True)
    elif v_new is not None:
        raise ValueError(f"v_new is read only with save='spike_state', got save={args.save!r}")
    return args


# ---------------------------------------------------------------------------------------------
# Fake kernels


def _fake_fwd(x, v, k, args, multistep: bool, threshold=None, in_scale=None, in_shift=None):
    args = check_fwd(x, v, k, args, multistep, threshold=threshold, in_scale=in_scale, in_shift=in_shift)
    T = x.shape[0] if multistep else 1
    state_shape = x.shape[1:] if multistep else x.shape
    N = 1
    for d in state_shape:
        N = N * d
    spikes = x.new_empty(x.shape)
    v_last = x.new_empty(state_shape, dtype=state_dtype(x.dtype))
    saved = x.new_empty(saved_shape(args.save, T, N), dtype=saved_dtype(args.save, x.dtype))
    return spikes, v_last, saved


def _fake_param_grad(param, computed: bool, like, sdt):
    """The gradient output of k or the threshold: summed (0-dim) for one element, else in its
    shape; empty where the backward does not compute it (as csrc/lif_options.h, param_grad)."""
    if param is None or not computed:
        return like.new_empty((0,), dtype=sdt)
    return like.new_empty((), dtype=sdt) if param.numel() == 1 else like.new_empty(param.shape, dtype=sdt)


def _fake_bwd(grad_spikes, grad_v, saved, k, args, multistep: bool, v_new=None, threshold=None):
    args = check_bwd(grad_spikes, grad_v, saved, k, args, multistep, v_new=v_new, threshold=threshold)
    state_shape = grad_spikes.shape[1:] if multistep else grad_spikes.shape
    sdt = state_dtype(grad_spikes.dtype)
    computed = args.save == "h_v0"
    return (grad_spikes.new_empty(grad_spikes.shape), grad_spikes.new_empty(state_shape, dtype=sdt),
            _fake_param_grad(k, computed, grad_spikes, sdt), _fake_param_grad(threshold, computed, grad_spikes, sdt))


def _register_fakes(triton: bool):
    prefix = TRITON_PREFIX if triton else ""

    @torch.library.register_fake(f"sltt_kernels::{prefix}neuron_multistep_fwd", lib=_LIB)
    def _(x, v0, k, *args, **kwargs):
        args, extra = split_trailing("neuron_multistep_fwd", args, kwargs)
        return _fake_fwd(x, v0, k, args, True, **extra)

    @torch.library.register_fake(f"sltt_kernels::{prefix}neuron_multistep_bwd", lib=_LIB)
    def _(grad_spikes, grad_v_last, saved, k, *args, **kwargs):
        args, extra = split_trailing("neuron_multistep_bwd", args, kwargs)
        return _fake_bwd(grad_spikes, grad_v_last, saved, k, args, True, **extra)

    @torch.library.register_fake(f"sltt_kernels::{prefix}neuron_step_fwd", lib=_LIB)
    def _(x, v, k, *args, **kwargs):
        args, extra = split_trailing("neuron_step_fwd", args, kwargs)
        return _fake_fwd(x, v, k, args, False, **extra)

    @torch.library.register_fake(f"sltt_kernels::{prefix}neuron_step_bwd", lib=_LIB)
    def _(grad_spike, grad_v_new, saved, k, *args, **kwargs):
        args, extra = split_trailing("neuron_step_bwd", args, kwargs)
        return _fake_bwd(grad_spike, grad_v_new, saved, k, args, False, **extra)


# ---------------------------------------------------------------------------------------------
# Autograd


def _setup_context(ctx, inputs, output):
    x, v, k, *rest = inputs
    n = len(NeuronArgs._fields)
    args = NeuronArgs(*rest[:n])
    threshold = rest[n] if len(rest) > n else None
    in_scale = rest[n + 1] if len(rest) > n + 1 else None
    in_shift = rest[n + 2] if len(rest) > n + 2 else None
    spikes, v_last, saved = output
    # x * in_scale + in_shift: the backward op's gradient is the neuron input's; x's is it times
    # in_scale, in_scale's needs x (kept only when in_scale requires grad), in_shift's is its sum
    ctx.affine = in_scale is not None
    ctx.x_dtype = x.dtype
    affine_saved = (None, None)
    if ctx.affine:
        ctx.affine_shapes = (in_scale.shape, in_shift.shape)
        ctx.scale_grad = in_scale.requires_grad
        affine_saved = (in_scale, x if in_scale.requires_grad else None)
    ctx.args = args
    ctx.has_v = v is not None
    ctx.k_shape = None if k is None else k.shape
    ctx.threshold_shape = None if threshold is None else threshold.shape
    ctx.spikes_like = (spikes.shape, spikes.dtype, spikes.device)
    # save='spike_state' (one SLTT step) keeps the spike bit and reads h - theta from the step's
    # output state v_new, the tensor the caller keeps as its state until the next step: saving it
    # here costs no memory, and autograd's version counter refuses a backward after an in-place
    # change of it (sltt_kernels/memory.py says how SavedTensorMeter counts it)
    if args.save == "spike_state" and not torch.compiler.is_compiling():
        _memory.note_step_state(v_last)
    ctx.save_for_backward(saved, k, v_last if args.save == "spike_state" else None, threshold, *affine_saved)
    ctx.mark_non_differentiable(saved)
    if args.grad == "sltt":
        ctx.mark_non_differentiable(v_last)
    # the gradients of outputs nobody used (v_last, saved) arrive as None rather than zeros that
    # autograd would make with aten.zeros: an op SpikingJelly's strict op counters do not know
    ctx.set_materialize_grads(False)


def _make_backward(bwd_op):
    def backward(ctx, grad_spikes, grad_v_last, _grad_saved):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "sltt_kernels: higher-order gradients (autograd.grad with create_graph=True) are not supported "
                "by the fused ops; use backend='reference' for them"
            )
        saved, k, v_new, threshold, in_scale, x = ctx.saved_tensors
        args = ctx.args
        nones = (None,) * (len(args) + 3)  # the neuron arguments, the threshold, in_scale, in_shift
        if args.save == "none":
            raise RuntimeError("sltt_kernels: backward through a forward that saved nothing (it ran without grad)")
        bptt = args.grad == "bptt"
        if grad_spikes is None and (grad_v_last is None or not bptt):
            return (None,) * 3 + nones
        if grad_spikes is None:  # only the state reached the loss
            shape, dtype, device = ctx.spikes_like
            grad_spikes = torch.zeros(shape, dtype=dtype, device=device)
        extra = {"threshold": threshold} if threshold is not None else {}
        if args.save == "spike_state":
            extra["v_new"] = v_new  # the step backward's trailing v_new
        grad_x, grad_v, grad_k, grad_threshold = bwd_op(grad_spikes, grad_v_last if bptt else None, saved, k, *args,
                                                        **extra)
        learned = args.save == "h_v0"  # where the kernels compute the parameters' gradients
        grad_affine = (None, None)
        if ctx.affine:
            grad_x, grad_affine = _affine_grads(ctx, grad_x, in_scale, x)
        return ((grad_x, grad_v if (bptt and ctx.has_v) else None,
                 grad_k.reshape(ctx.k_shape) if (ctx.k_shape is not None and learned) else None)
                + (None,) * len(args)
                + (grad_threshold.reshape(ctx.threshold_shape) if (ctx.threshold_shape is not None and learned)
                   else None,) + grad_affine)

    return backward


def _affine_grads(ctx, grad_input, in_scale, x):
    """From the gradient of the neuron's input u = x * in_scale + in_shift (what the backward op
    returns) to those of x, in_scale and in_shift, each summed into its own shape."""
    g = grad_input.to(in_scale.dtype)
    scale_shape, shift_shape = ctx.affine_shapes

    def summed(t, shape):  # one element may have more dimensions than the state: sum it whole
        return t.sum().reshape(shape) if shape.numel() == 1 else t.sum_to_size(shape)

    scale = in_scale.reshape(()) if in_scale.numel() == 1 else in_scale
    grad_x = (g * scale).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
    n = len(ctx.args)
    grad_scale = summed(g * x.to(g.dtype), scale_shape) if ctx.scale_grad and ctx.needs_input_grad[4 + n] else None
    grad_shift = summed(g, shift_shape) if ctx.needs_input_grad[5 + n] else None
    return grad_x, (grad_scale, grad_shift)


def _register_autograd(triton: bool):
    for kind in ("multistep", "step"):
        torch.library.register_autograd(
            f"sltt_kernels::{TRITON_PREFIX if triton else ''}neuron_{kind}_fwd",
            _make_backward(op(f"neuron_{kind}_bwd", triton)),
            setup_context=_setup_context,
            lib=_LIB,
        )
    for kind in ("multistep", "step"):  # the backward ops have no derivative: say so, never a silent zero
        torch.library.register_autograd(
            f"sltt_kernels::{TRITON_PREFIX if triton else ''}neuron_{kind}_bwd",
            _no_double_backward,
            setup_context=lambda ctx, inputs, output: None,
            lib=_LIB,
        )


def _no_double_backward(ctx, *grads):
    raise RuntimeError("sltt_kernels: the backward ops have no derivative (higher-order gradients are not "
                       "supported by the fused ops; use backend='reference')")


for _triton in (False, True):
    _register_fakes(_triton)
    _register_autograd(_triton)


def _legacy_alias(new_name: str):
    target = getattr(torch.ops.sltt_kernels, new_name)
    backward = new_name.endswith("_bwd")

    def call(*args):
        out = target(*args)
        return tuple(out[:3]) if backward else out  # the old backward ops had no grad_threshold

    return call


# The names these ops had before they served every neuron model (lif_multistep_fwd, ...): aliases
# with their old schemas that decompose into the ops above, so raw calls written against the old
# names keep working (autograd, fake kernels and torch.compile come from the ops they call).
LEGACY_NAMES = {f"{prefix}lif_{name[len('neuron_'):]}": f"{prefix}{name}"
                for name in OPS for prefix in ("", TRITON_PREFIX)}
for _old, _new in LEGACY_NAMES.items():
    _LIB.define(f"{_old}{_schema(_new[len(TRITON_PREFIX):] if _new.startswith(TRITON_PREFIX) else _new, legacy=True)}")
    _LIB.impl(_old, _legacy_alias(_new), "CompositeImplicitAutograd")

# The compiled CPU/CUDA implementations register themselves against the schemas above.
_ext.load()


# =============================================================================================
# Spike packing (sltt_kernels/spike_pack.py): the ops that store a two-valued tensor ({+0.0, s},
# e.g. spikes) as 1 bit per element plus the scale s, and restore it exactly. The native kernels
# are csrc/cpu/spike_pack_cpu.cpp and csrc/cuda/spike_pack_cuda.cpp (registered when the
# extension loads, above); the Triton ones sltt_kernels/triton/pack.py.
#
#   spike_pack(x)                  -> bits int32 [ceil(x.numel() / 32)] (bit j of word w = x[32 w + j] != 0,
#                                     row-major order), scale [] in x.dtype (NaN if x is not two-valued)
#   spike_unpack(bits, scale, shape) -> tensor of `shape` in scale.dtype: bit ? scale : +0.0
# =============================================================================================

PACK_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
PACK_OPS = {
    "spike_pack": "(Tensor x) -> (Tensor bits, Tensor scale)",
    "spike_unpack": "(Tensor bits, Tensor scale, SymInt[] shape) -> Tensor",
}
for _name, _schema in PACK_OPS.items():
    for _prefix in ("", TRITON_PREFIX):
        _LIB.define(f"{_prefix}{_name}{_schema}")


def check_pack(x) -> None:
    """Checks spike_pack's argument (the native ops check the same in C++)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"sltt_kernels.spike_pack: x must be a tensor, got {type(x).__name__}")
    if x.dtype not in PACK_DTYPES:
        raise TypeError(f"sltt_kernels.spike_pack: x must be float16, bfloat16, float32 or float64, got {x.dtype}")


def check_unpack(bits, scale, shape) -> int:
    """Checks spike_unpack's arguments; returns the element count of `shape`."""
    if bits.dtype != torch.int32:
        raise TypeError(f"sltt_kernels.spike_unpack: bits must be int32, got {bits.dtype}")
    if scale.dtype not in PACK_DTYPES:
        raise TypeError(f"sltt_kernels.spike_unpack: scale must be float16, bfloat16, float32 or float64, "
                        f"got {scale.dtype}")
    if scale.dim() != 0:
        raise ValueError(f"sltt_kernels.spike_unpack: scale must be a 0-dim tensor, got shape {tuple(scale.shape)}")
    if bits.device != scale.device:
        raise ValueError(f"sltt_kernels.spike_unpack: bits and scale must be on one device, got {bits.device} "
                         f"and {scale.device}")
    n = 1
    for d in shape:
        torch._check_value(d >= 0, lambda: f"sltt_kernels.spike_unpack: shape must not be negative, got {list(shape)}")
        n = n * d
    words = (n + 31) // 32
    torch._check_value(bits.dim() == 1 and bits.shape[0] == words,
                 lambda: f"sltt_kernels.spike_unpack: bits must have shape [{words}] (ceil({n} / 32) words) for "
                         f"shape {list(shape)}, got {list(bits.shape)}")
    return n


def _register_pack(triton: bool):
    prefix = TRITON_PREFIX if triton else ""

    @torch.library.register_fake(f"sltt_kernels::{prefix}spike_pack", lib=_LIB)
    def _(x):
        check_pack(x)
        return x.new_empty(((x.numel() + 31) // 32,), dtype=torch.int32), x.new_empty(())

    @torch.library.register_fake(f"sltt_kernels::{prefix}spike_unpack", lib=_LIB)
    def _(bits, scale, shape):
        check_unpack(bits, scale, shape)
        return scale.new_empty(shape)

    def pack_setup(ctx, inputs, output):
        ctx.mark_non_differentiable(*output)  # bits are integers; the scale is piecewise constant in x

    def pack_backward(ctx, grad_bits, grad_scale):
        return None

    torch.library.register_autograd(f"sltt_kernels::{prefix}spike_pack", pack_backward, setup_context=pack_setup,
                                    lib=_LIB)

    unpack_op = op("spike_unpack", triton)

    def unpack_setup(ctx, inputs, output):
        bits, scale, shape = inputs
        ctx.save_for_backward(bits)
        ctx.shape = list(shape)
        ctx.scale_dtype = scale.dtype

    def unpack_backward(ctx, grad):
        # out = bit * scale: d/dscale = sum(grad * bit); bits carry no gradient
        (bits,) = ctx.saved_tensors
        grad_scale = None
        if ctx.needs_input_grad[1]:
            ones = torch.ones((), dtype=ctx.scale_dtype, device=bits.device)
            grad_scale = (grad * unpack_op(bits, ones, ctx.shape)).sum()
        return None, grad_scale, None

    torch.library.register_autograd(f"sltt_kernels::{prefix}spike_unpack", unpack_backward,
                                    setup_context=unpack_setup, lib=_LIB)


for _triton in (False, True):
    _register_pack(_triton)
