"""Checkpoints of the training command (train_command.py): written atomically beside the
previous one, read back with checks that name the file and what is wrong, and applied to a
model, optimizer, schedule and loss scaler on resume.

    >>> state = training_state(net, opt, sched, None, torch.device("cpu"), epoch=3, history=[], args={})
    >>> save_checkpoint(state, "runs/x/checkpoint.pt")        # the old one -> checkpoint.prev.pt
    >>> ck, used = load_resume_checkpoint("runs/x/checkpoint.pt")
"""

from __future__ import annotations

import math
import os
import sys

import torch

__all__ = ["CheckpointError", "CKPT_KEYS", "save_checkpoint", "prev_path", "read_checkpoint",
           "load_resume_checkpoint", "load_pretrained", "training_state", "restore_training_state",
           "restore_rng_states", "cosine_lr"]

CKPT_KEYS = ("model", "optimizer", "scheduler", "torch_rng", "epoch", "history", "args")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def prev_path(path: str) -> str:
    """Where the checkpoint before `path` is kept: x.pt -> x.prev.pt."""
    return path[:-3] + ".prev.pt" if path.endswith(".pt") else path + ".prev"


def save_checkpoint(obj, path: str) -> None:
    """Writes path atomically and keeps the previous file as path's .prev.pt: a crash or a bad
    write leaves at least one good checkpoint (and no partial .tmp file); raises OSError."""
    tmp = path + ".tmp"
    handled = sys.exc_info()[1]  # a caller's exception being handled: not this save's cause
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        # a full disk or an interrupt: no partial file left beside the good checkpoint
        if os.path.exists(tmp):
            os.remove(tmp)
        # torch.save's zip writer, closing the archive after a failed write, replaces the write's
        # OSError (a full disk: ENOSPC) by a RuntimeError of its own: raise the OSError
        cause = e.__context__
        while cause is not None and cause is not handled and not isinstance(cause, OSError):
            cause = cause.__context__
        if isinstance(e, RuntimeError) and cause is not None and cause is not handled:
            raise cause from None
        raise
    if os.path.exists(path):
        os.replace(path, prev_path(path))
    os.replace(tmp, path)


def read_checkpoint(path: str, device="cpu") -> dict:
    """A training checkpoint, checked: raises CheckpointError naming the file and what is wrong
    (unreadable or truncated file, not a checkpoint, missing entries)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path} does not exist")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)  # a checkpoint is data, not code
    except Exception as e:  # torch.load reports truncation as EOFError, IndexError, RuntimeError, ...
        raise CheckpointError(f"{path} is unreadable, probably truncated or overwritten "
                              f"({type(e).__name__}: {e})") from e
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path} holds a {type(ck).__name__}, not a training checkpoint (a dict)")
    missing = [k for k in CKPT_KEYS if k not in ck]
    if missing:
        raise CheckpointError(f"{path} is not a complete sltt-train checkpoint: it lacks {', '.join(missing)}")
    if not isinstance(ck["epoch"], int) or ck["epoch"] < 0 or not isinstance(ck["args"], dict):
        raise CheckpointError(f"{path}: epoch {ck['epoch']!r} or args is malformed")
    if not isinstance(ck["history"], list) or not all(isinstance(h, dict) for h in ck["history"]):
        raise CheckpointError(f"{path}: its history is a {type(ck['history']).__name__}, not a list of epoch records")
    if not isinstance(ck["torch_rng"], torch.Tensor):
        raise CheckpointError(f"{path}: its torch_rng is a {type(ck['torch_rng']).__name__}, not a tensor")
    return ck


def load_resume_checkpoint(path: str, device="cpu"):
    """(checkpoint, the file it came from): path, or, if that one is bad, the previous one."""
    try:
        return read_checkpoint(path, device), path
    except CheckpointError as e:
        prev = prev_path(path)
        if not os.path.exists(prev):
            raise
        try:
            ck = read_checkpoint(prev, device)
        except CheckpointError as e2:
            raise CheckpointError(f"{e}; and the previous one: {e2}") from e2
        print(f"sltt-train: warning: {e}; resuming from the previous checkpoint {prev} (epoch {ck['epoch']})",
              file=sys.stderr)
        return ck, prev


def load_pretrained(net: torch.nn.Module, path: str, device="cpu") -> None:
    """Loads the model weights of a checkpoint (or of a bare state dict) into net."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"--pretrained {path} is unreadable ({type(e).__name__}: {e})") from e
    state = ck.get("model", ck) if isinstance(ck, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"--pretrained {path} holds no model state dict")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"--pretrained {path} does not fit --model: {e}") from e


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """CosineAnnealingLR's closed form (eta_min 0) after `epoch` of `epochs` epochs."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))


def training_state(net, opt, sched, scaler, device, epoch: int, history: list, args: dict) -> dict:
    """Everything a resume needs after `epoch` epochs: weights, optimizer, schedule, scaler, RNG
    states, the history and the run's settings (args: only plain values are kept)."""
    saved_args = {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool, type(None)))}
    ck = dict(model=net.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
              torch_rng=torch.get_rng_state(), epoch=epoch, history=history, args=saved_args)
    if scaler is not None:
        ck["scaler"] = scaler.state_dict()
    if device.type == "cuda":
        ck["cuda_rng"] = torch.cuda.get_rng_state(device)
    return ck


def restore_training_state(ck: dict, used: str, net, opt, sched, scaler, device, epochs: int):
    """Applies a checkpoint read by read_checkpoint; returns (start epoch, history). A changed
    number of epochs recomputes the cosine schedule for the new length from the current epoch."""
    try:
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{used} does not fit this model/optimizer: {e}") from e
    start_epoch, history = ck["epoch"], list(ck["history"])
    if sched.T_max != epochs:
        sched.T_max = epochs
        for group in opt.param_groups:
            group["lr"] = cosine_lr(group["initial_lr"], start_epoch, epochs)
        sched._last_lr = [g["lr"] for g in opt.param_groups]
    try:
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        restore_rng_states(ck, device)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:  # a state of another size or kind
        raise CheckpointError(f"{used}: its loss scaler or random number generator state is malformed "
                              f"({type(e).__name__}: {e})") from e
    return start_epoch, history


def restore_rng_states(ck: dict, device) -> None:
    """Sets torch's CPU generator from ck["torch_rng"] and, on a CUDA device, that device's from
    ck["cuda_rng"]. Both setters take CPU byte tensors only: a checkpoint read with a
    map_location onto a GPU (torch.load(path, map_location="cuda"), as a resume on --device cuda
    would) holds them on the GPU, so they are moved back to the CPU first.

    Example:
        >>> ck = torch.load("runs/x/checkpoint.pt", map_location="cuda", weights_only=True)
        >>> restore_rng_states(ck, torch.device("cuda"))
    """
    torch.set_rng_state(_cpu_byte_state(ck["torch_rng"], "torch_rng"))
    if torch.device(device).type == "cuda" and "cuda_rng" in ck:
        torch.cuda.set_rng_state(_cpu_byte_state(ck["cuda_rng"], "cuda_rng"), device)


def _cpu_byte_state(state, key: str):
    if not isinstance(state, torch.Tensor):
        raise CheckpointError(f"the checkpoint's {key} is a {type(state).__name__}, not an RNG state tensor")
    return state.to(device="cpu", dtype=torch.uint8)
