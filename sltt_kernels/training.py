"""Training steps: online SLTT / SLTT-K (the paper's Algorithm S2) and BPTT, with the paper's loss.

    >>> net = spiking_resnet18(num_classes=10)                   # SLTT neurons by default
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    >>> result = sltt_step(net, opt, images, labels, T=6)           # or K=2 for SLTT-K
    >>> result.loss, result.output.argmax(1)

Both work with a DistributedDataParallel model: gradients are all-reduced once per iteration
(no_sync on every backward but the last), and with mixed precision (autocast_dtype plus a
torch.amp.GradScaler).
"""

from __future__ import annotations

import contextlib
import functools
import random
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import _config
from .nn import BaseNode, reset_net, set_step_mode

__all__ = ["sltt_loss", "make_loss", "MSE_TARGETS", "sltt_step", "bptt_step", "StepResult", "set_grad_mode"]


MSE_TARGETS = ("threshold", "onehot")


def sltt_loss(output: torch.Tensor, target: torch.Tensor, lambda_mse: float = 0.05, mse_target: str = "threshold",
              v_threshold: float = 1.0) -> torch.Tensor:
    """The paper's per-step loss: (1 - lambda) CE(o, y) + lambda MSE(o, m), with m either

    - mse_target='threshold' (Eq. S13, CIFAR-10/100, DVS-Gesture): every logit regressed to the
      constant v_threshold (V_th = 1), a regulariser of the output scale;
    - mse_target='onehot' (Eq. S14, DVS-CIFAR10): the one-hot label.

    lambda_mse = 0 is plain cross entropy (ImageNet). output: [B, classes] logits of one step;
    target: [B] class indices; returns a scalar (the mean over batch and classes for the MSE).

    Example:
        >>> sltt_loss(torch.zeros(2, 10), torch.tensor([1, 2]))   # 0.95 * ln(10) + 0.05 * 1
        tensor(2.2374)
    """
    if not 0.0 <= lambda_mse <= 1.0:
        raise ValueError(f"lambda_mse must lie in [0, 1], got {lambda_mse}")
    if mse_target not in MSE_TARGETS:
        raise ValueError(f"mse_target must be one of {MSE_TARGETS}, got {mse_target!r}")
    if output.dtype in (torch.float16, torch.bfloat16):
        output = output.float()  # the loss in float32 under autocast
    ce = F.cross_entropy(output, target)
    if lambda_mse == 0.0:
        return ce
    if mse_target == "onehot":
        goal = F.one_hot(target, output.shape[-1]).to(output.dtype)
    else:
        goal = torch.full_like(output, v_threshold)
    return (1.0 - lambda_mse) * ce + lambda_mse * F.mse_loss(output, goal)


def make_loss(lambda_mse: float = 0.05, mse_target: str = "threshold", v_threshold: float = 1.0) -> Callable:
    """sltt_loss with its settings fixed, for the loss_fn argument of sltt_step / bptt_step.

    Example:
        >>> loss_fn = make_loss(0.05, "onehot")        # DVS-CIFAR10's Eq. S14
        >>> sltt_step(net, opt, frames, labels, T=10, sequence=True, loss_fn=loss_fn)
    """
    sltt_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), lambda_mse, mse_target, v_threshold)  # checks
    return functools.partial(sltt_loss, lambda_mse=lambda_mse, mse_target=mse_target, v_threshold=v_threshold)


@dataclass
class StepResult:
    """loss: the iteration's loss, the mean of the per-step losses over all T steps (for SLTT-K
    too, whose gradient comes from K of them); output: the logits averaged over all T steps,
    [B, classes], detached."""

    loss: float
    output: torch.Tensor


def set_grad_mode(net: nn.Module, grad_mode: str) -> nn.Module:
    """Sets grad_mode ('bptt' or 'sltt', _config.GRAD_MODES) on every neuron of sltt_kernels.nn
    in net (every family: LIF, IF, parametric LIF, Leaky, ...; all derive from nn.BaseNode).
    Other neurons (SpikingJelly's own) have no grad_mode and are left alone. Returns net.

    Example:
        >>> set_grad_mode(net, "sltt")
    """
    grad_mode = _config.choice("grad_mode", grad_mode, _config.GRAD_MODES)
    for m in net.modules():
        if isinstance(m, BaseNode):
            m.grad_mode = grad_mode
    return net


def _ddp(model: nn.Module):
    """The DistributedDataParallel wrapper of `model`, looking through torch.compile's wrapper
    (torch.compile(DDP(net))), or None."""
    inner = getattr(model, "_orig_mod", model)
    return inner if isinstance(inner, nn.parallel.DistributedDataParallel) else None


def _unwrap(model: nn.Module) -> nn.Module:
    ddp = _ddp(model)
    return ddp.module if ddp is not None else getattr(model, "_orig_mod", model)


def _is_foreign_neuron(m: nn.Module) -> bool:
    """A stateful neuron that is not ours, with SpikingJelly's protocol (a membrane v, reset())."""
    return not isinstance(m, BaseNode) and hasattr(m, "v") and callable(getattr(m, "reset", None))


def _check_neurons(net: nn.Module) -> None:
    if not any(isinstance(m, BaseNode) or _is_foreign_neuron(m) for m in net.modules()):
        raise ValueError("the model has no spiking neuron (one of sltt_kernels.nn, or one with SpikingJelly's "
                         "protocol: a membrane v and reset())")


def _check_single_steps(net: nn.Module, caller: str) -> None:
    """Refuses a module that runs on [T, B, ...] only (SpikingJelly's SeqToANNContainer,
    MultiStepContainer, ...): fed one step [B, ...] it would fail with a shape error."""
    for name, m in net.named_modules():
        supported = getattr(m, "supported_step_mode", None)
        if callable(supported) and "s" not in supported():
            raise ValueError(
                f"{caller} feeds the model one time step [B, ...] at a time, but {type(m).__name__} at "
                f"'{name or '(the model)'}' runs on whole sequences [T, B, ...] only (step modes {supported()}). "
                "Use bptt_step(step_mode='m'), or single-step layers (plain layers in a network set to "
                "step_mode 's', or sltt_kernels.nn.FoldTime) in its place.")


def _online_state_modules(net: nn.Module) -> list:
    """The foreign stateful modules sltt_step cuts from the graph after every step (ours drop the
    temporal path in their kernels with grad_mode='sltt'); one that cannot be cut is refused."""
    foreign = []
    for name, m in net.named_modules():
        if _is_foreign_neuron(m) or (not isinstance(m, BaseNode) and hasattr(m, "_memories")):
            if not callable(getattr(m, "detach", None)):
                raise ValueError(
                    f"sltt_step cannot run {type(m).__name__} at '{name}' online: it has no detach() to cut its "
                    "state from the graph after each step. Swap it for ours with "
                    "sltt_kernels.nn.replace_neurons(model), or give it SpikingJelly's detach().")
            foreign.append(m)
    return foreign


def _bptt_blockers(net: nn.Module) -> None:
    """Refuses neurons that cut their own state in training (SpikingJelly's online neurons):
    through them bptt_step would silently compute SLTT's gradients, not BPTT's."""
    # a model that holds SpikingJelly's neurons has imported it: nothing to import here
    sj_neuron = sys.modules.get("spikingjelly.activation_based.neuron")
    if sj_neuron is None:
        return
    online = tuple(getattr(sj_neuron, n) for n in ("SLTTLIFNode", "OTTTLIFNode") if hasattr(sj_neuron, n))
    for name, m in net.named_modules():
        if online and isinstance(m, online):
            raise ValueError(
                f"bptt_step cannot compute BPTT through SpikingJelly's {type(m).__name__} at '{name}': it detaches "
                "its state at every step in training (an online neuron). sltt_kernels.nn.replace_neurons(model) "
                "swaps it for ours, whose grad_mode bptt_step sets to 'bptt'; or train it with sltt_step.")


def _step_input(x: torch.Tensor, T: int, sequence: bool) -> bool:
    """True when x is one input fed at every step (direct encoding), False for [T, B, ...]."""
    if sequence and (x.dim() < 2 or x.shape[0] != T):
        raise ValueError(f"sequence=True needs x of shape [T={T}, B, ...], got {tuple(x.shape)}")
    return not sequence


def _autocast(x: torch.Tensor, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=dtype)


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) to float32 for summing over steps; float64 stays float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _optimizer_step(optimizer, scaler):
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def sltt_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    T: int,
    *,
    K: Optional[int] = None,
    loss_fn: Callable = sltt_loss,
    scaler=None,
    autocast_dtype: Optional[torch.dtype] = None,
    sequence: bool = False,
    generator: Optional[random.Random] = None,
) -> StepResult:
    """One online SLTT iteration (Algorithm S2): for t = 0..T-1, forward one step, loss / T,
    backward at once; the neurons carry their state detached; reset at the end; one optimizer step.

    With K (SLTT-K): back-propagate at K of the T steps, drawn without replacement (from
    `generator`, a random.Random, or Python's global one), and run the other steps under no_grad.
    The loss of a back-propagated step is still divided by T, not K, as in Algorithm S2 (line 10)
    and the official train_SLTTK.py: the gradient is K/T of SLTT's in expectation.
    x: [B, ...] fed at every step (direct encoding), or with sequence=True [T, B, ...] (e.g. DVS
    frames); y: [B].
    Puts the model in single-step mode with grad_mode='sltt' (every neuron of sltt_kernels.nn).
    Other neurons with SpikingJelly's protocol (its own LIFNode, IFNode, ...) run online too:
    their state is detached (their detach()) after every step. A module that runs on whole
    sequences only (SpikingJelly's SeqToANNContainer) is refused by name.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if K is not None and (not isinstance(K, int) or not 1 <= K <= T):
        raise ValueError(f"K must be an int with 1 <= K <= T (T={T}), got {K!r}")
    net = _unwrap(model)
    _check_neurons(net)
    _check_single_steps(net, "sltt_step")
    foreign = _online_state_modules(net)
    set_step_mode(net, "s")
    set_grad_mode(net, "sltt")
    static = _step_input(x, T, sequence)
    rng = generator if generator is not None else random
    bp_steps = set(range(T)) if K is None else set(rng.sample(range(T), K))
    last_bp = max(bp_steps)
    ddp = _ddp(model)
    optimizer.zero_grad(set_to_none=True)
    reset_net(net)
    total_out = 0.0
    total_loss = None  # summed on the loss's device, read once: no host synchronisation per step
    for t in range(T):
        xt = x if static else x[t]
        bp = t in bp_steps
        sync_ctx = ddp.no_sync() if (ddp is not None and bp and t != last_bp) else contextlib.nullcontext()
        with sync_ctx:
            with torch.set_grad_enabled(bp), _autocast(x, autocast_dtype):
                out = model(xt)
                loss = loss_fn(out, y) / T  # / T for SLTT-K too (Algorithm S2)
            if bp:
                (scaler.scale(loss) if scaler is not None else loss).backward()
        for m in foreign:  # SLTT for neurons without grad_mode: no gradient along time
            m.detach()
        total_loss = loss.detach() if total_loss is None else total_loss + loss.detach()
        total_out = total_out + _wide(out.detach())
    reset_net(net)
    _optimizer_step(optimizer, scaler)
    return StepResult(loss=float(total_loss), output=total_out / T)


def bptt_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    T: int,
    *,
    loss_fn: Callable = sltt_loss,
    scaler=None,
    autocast_dtype: Optional[torch.dtype] = None,
    sequence: bool = False,
    step_mode: str = "m",
) -> StepResult:
    """One BPTT iteration: forward all T steps, loss = mean over steps, one backward through
    time, reset, optimizer step. step_mode='m' runs the fused multi-step kernels on [T, B, ...];
    's' loops single steps keeping the graph (same gradients, more launches).
    Puts the model in that step mode with grad_mode='bptt' on every neuron of sltt_kernels.nn,
    whatever grad_mode they were built or left with (sltt_step sets 'sltt'): this computes BPTT.
    Neurons that detach their own state (SpikingJelly's SLTTLIFNode, OTTTLIFNode) are refused.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    step_mode = _config.choice("step_mode", step_mode, ("m", "s"))
    net = _unwrap(model)
    _check_neurons(net)
    _bptt_blockers(net)
    if step_mode == "s":
        _check_single_steps(net, "bptt_step(step_mode='s')")
    set_step_mode(net, step_mode)
    set_grad_mode(net, "bptt")
    static = _step_input(x, T, sequence)
    optimizer.zero_grad(set_to_none=True)
    reset_net(net)
    with _autocast(x, autocast_dtype):
        if step_mode == "m":
            seq = x.unsqueeze(0).expand(T, *x.shape) if static else x
            outs = model(seq)
        else:
            outs = torch.stack([model(x if static else x[t]) for t in range(T)])
        loss = sum(loss_fn(outs[t], y) for t in range(T)) / T
    (scaler.scale(loss) if scaler is not None else loss).backward()
    reset_net(net)
    _optimizer_step(optimizer, scaler)
    return StepResult(loss=float(loss.detach()), output=_wide(outs.detach()).mean(0))
