"""Surrogate gradients of the spike function (docs/design.md, section 2.4), one class each.

The forward is always the Heaviside step s = [h - theta >= 0]; the surrogate only defines the
backward, sg(d) with d = h - theta. Each class is the surrogate's one Python entry: its name
(`kind`, the op argument), its csrc code, its parameter and the formula the reference uses; it
registers itself (`SURROGATES`), and the validator, the reference and the Triton kernels read that
registry. Pass an object, or its name for the defaults:

    lif_multistep(x, surrogate=Rect(width=0.5))
    lif_multistep(x, surrogate="sigmoid")          # Sigmoid(alpha=4.0)

Objects are callable like SpikingJelly's: ``Sigmoid()(d)`` returns spikes with that gradient.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["SurrogateFunction", "Rect", "Triangle", "Sigmoid", "ATan", "FastSigmoid", "SURROGATES", "KINDS", "resolve",
           "surrogate_grad", "spike"]


def _check_spiking(obj, spiking: bool) -> None:
    if not spiking:
        raise ValueError(f"{type(obj).__name__}: only spiking=True (a Heaviside forward) is supported")


# kind -> class, in code order (the codes are csrc's list positions: csrc/lif_math.h)
SURROGATES: dict = {}


class SurrogateFunction:
    """Base class: `kind` names the kernel's surrogate, `code` its csrc value, `param` its width
    or alpha. A subclass with a `kind` registers itself and defines `grad(d, param)`, sg(d) in
    d's dtype: the formula the reference computes (the kernels compute the same, in the same
    order where it matters for the bits)."""

    kind: str = ""
    code: int = -1
    param_name: str = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "kind" not in cls.__dict__:  # a subclass of a registered surrogate is that surrogate
            return
        if cls.kind in SURROGATES:
            raise ValueError(f"surrogate kind {cls.kind!r} is registered twice")
        if cls.code != len(SURROGATES):
            raise ValueError(f"surrogate {cls.kind!r} has code {cls.code}, expected {len(SURROGATES)} (csrc's order)")
        SURROGATES[cls.kind] = cls

    @staticmethod
    def grad(d: torch.Tensor, param: float) -> torch.Tensor:
        raise NotImplementedError

    def __init__(self, param: float):
        param = float(param)
        if not (math.isfinite(param) and param > 0):
            raise ValueError(f"{type(self).__name__}: {self.param_name} must be a finite number > 0, got {param}")
        object.__setattr__(self, "param", param)

    def __setattr__(self, name, value):
        # immutable: a checked configuration may be reused while the object lives
        raise AttributeError(f"{type(self).__name__} is immutable; make a new one")

    def __call__(self, d: torch.Tensor) -> torch.Tensor:
        """Heaviside spikes of d = h - theta whose gradient is this surrogate."""
        return spike(d, self.kind, self.param)

    def __reduce__(self):  # pickling and copy.deepcopy (a module holding one is copied)
        return (_rebuild, (type(self), self.param))

    def __eq__(self, other):
        return type(self) is type(other) and self.param == other.param

    def __hash__(self):
        return hash((self.kind, self.param))

    def __repr__(self):
        return f"{type(self).__name__}({self.param_name}={self.param})"


def _rebuild(cls, param):
    obj = cls.__new__(cls)
    SurrogateFunction.__init__(obj, param)
    return obj


class Rect(SurrogateFunction):
    """Rectangle (the SLTT paper's Eq. 5): sg(d) = 1/width where |d| < width/2, else 0.

    The only surrogate whose backward needs just 1 bit per element-step.
    """

    kind, code, param_name = "rect", 0, "width"

    @staticmethod
    def grad(d, param):
        return (d.abs() < param / 2).to(d.dtype) / param  # 0 for NaN: a bit cannot hold one

    def __init__(self, width: Optional[float] = None, alpha: Optional[float] = None, spiking: bool = True):
        # SpikingJelly names it by alpha, the height: its window is |d| < 0.5 / alpha
        if width is not None and alpha is not None:
            raise ValueError("Rect: give width or alpha (SpikingJelly's, = 1 / width), not both")
        _check_spiking(self, spiking)
        if alpha is not None:
            alpha = float(alpha)
            if not (math.isfinite(alpha) and alpha > 0):
                raise ValueError(f"Rect: alpha must be a finite number > 0, got {alpha}")
            width = 1.0 / alpha
        super().__init__(1.0 if width is None else width)

    @property
    def width(self) -> float:
        return self.param


class Triangle(SurrogateFunction):
    """Triangle (the official SLTT scripts' default): sg(d) = max(0, alpha - alpha^2 |d|)."""

    kind, code, param_name = "triangle", 1, "alpha"

    @staticmethod
    def grad(d, param):
        return (param - param * param * d.abs()).clamp(min=0)

    def __init__(self, alpha: float = 1.0, spiking: bool = True):
        _check_spiking(self, spiking)
        super().__init__(alpha)

    @property
    def alpha(self) -> float:
        return self.param


class Sigmoid(SurrogateFunction):
    """Sigmoid, as SpikingJelly's: sg(d) = alpha * sigmoid(alpha d) * (1 - sigmoid(alpha d))."""

    kind, code, param_name = "sigmoid", 2, "alpha"

    @staticmethod
    def grad(d, param):
        sig = torch.sigmoid(param * d)
        return param * sig * (1 - sig)

    def __init__(self, alpha: float = 4.0, spiking: bool = True):
        _check_spiking(self, spiking)
        super().__init__(alpha)

    @property
    def alpha(self) -> float:
        return self.param


class ATan(SurrogateFunction):
    """Arctangent, as SpikingJelly's: sg(d) = alpha / 2 / (1 + (pi/2 * alpha * d)^2)."""

    kind, code, param_name = "atan", 3, "alpha"

    @staticmethod
    def grad(d, param):
        return param / 2 / (1 + (math.pi / 2 * param * d) ** 2)

    def __init__(self, alpha: float = 2.0, spiking: bool = True):
        _check_spiking(self, spiking)
        super().__init__(alpha)

    @property
    def alpha(self) -> float:
        return self.param


class FastSigmoid(SurrogateFunction):
    """snnTorch's fast sigmoid: sg(d) = 1 / (slope |d| + 1)^2 (its `surrogate.fast_sigmoid(slope)`,
    the surrogate of its tutorials), computed as r = 1 / (slope |d| + 1), sg = r * r."""

    kind, code, param_name = "fast_sigmoid", 4, "slope"

    @staticmethod
    def grad(d, param):
        r = 1 / (param * d.abs() + 1)
        return r * r

    def __init__(self, slope: float = 25.0, spiking: bool = True):
        _check_spiking(self, spiking)
        super().__init__(slope)

    @property
    def slope(self) -> float:
        return self.param


KINDS = tuple(SURROGATES)  # the names, in code order


def from_spikingjelly(obj):
    """Our equivalent of a SpikingJelly surrogate object, or None if there is none.

    Sigmoid(alpha) and ATan(alpha) map one to one; Rect(alpha), whose window is |x| < 0.5/alpha
    with height alpha, is Rect(width=1/alpha); PiecewiseQuadratic(alpha) is Triangle(alpha)."""
    mod = type(obj).__module__ or ""
    if not mod.startswith("spikingjelly") or not getattr(obj, "spiking", True):
        return None
    name = type(obj).__name__
    alpha = getattr(obj, "alpha", None)
    if alpha is None:
        return None
    if name == "Sigmoid":
        return Sigmoid(alpha)
    if name == "ATan":
        return ATan(alpha)
    if name == "Rect":
        return Rect(1.0 / alpha)
    if name == "PiecewiseQuadratic":  # max(0, alpha - alpha^2 |x|): the triangle
        return Triangle(alpha)
    return None


def resolve(surrogate) -> SurrogateFunction:
    """A surrogate object from an object, a name ('rect', 'triangle', 'sigmoid', 'atan') or a
    SpikingJelly surrogate (Sigmoid, ATan, Rect)."""
    if isinstance(surrogate, SurrogateFunction):
        return surrogate
    if isinstance(surrogate, str) and surrogate.lower() in SURROGATES:
        return SURROGATES[surrogate.lower()]()
    converted = from_spikingjelly(surrogate)
    if converted is not None:
        return converted
    names = ", ".join(cls.__name__ for cls in SURROGATES.values())
    error = ValueError if isinstance(surrogate, str) or _is_surrogate_object(surrogate) else TypeError
    raise error(f"surrogate must be one of {sorted(SURROGATES)} or an object from sltt_kernels.surrogate "
                f"({names}); got {type(surrogate).__name__} {surrogate!r}")


def _is_surrogate_object(obj) -> bool:
    """A peer's surrogate object (SpikingJelly's, snnTorch's): a known kind of thing we cannot
    fuse is a wrong value, anything else (a number, a list) a wrong type."""
    return callable(obj) and not isinstance(obj, type)


def surrogate_grad(d: torch.Tensor, kind: str, param: float) -> torch.Tensor:
    """sg(d) for d = h - theta, in d's dtype (docs/design.md, section 2.4). NaN gives NaN, but 0
    for rect (a 1-bit saved state cannot hold a NaN)."""
    cls = SURROGATES.get(kind)
    if cls is None:
        raise ValueError(f"unknown surrogate kind {kind!r}")
    return cls.grad(d, param)


class _HeavisideWithSurrogate(torch.autograd.Function):
    generate_vmap_rule = True  # works under torch.func.grad / vmap

    @staticmethod
    def forward(d, kind, param, strict):
        return ((d > 0) if strict else (d >= 0)).to(d.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        d, kind, param, _ = inputs
        ctx.save_for_backward(d)
        ctx.kind, ctx.param = kind, param

    @staticmethod
    def backward(ctx, grad_s):
        (d,) = ctx.saved_tensors
        return grad_s * surrogate_grad(d, ctx.kind, ctx.param), None, None, None

    @staticmethod
    def jvp(ctx, d_tangent, *_):
        raise RuntimeError("sltt_kernels: forward-mode AD of a spike is not defined (its derivative is a "
                           "surrogate for the backward only)")


def spike(d: torch.Tensor, kind: str, param: float, strict: bool = False) -> torch.Tensor:
    """s = [d >= 0] (or [d > 0] with strict) with gradient sg(d)."""
    return _HeavisideWithSurrogate.apply(d, kind, param, strict)
