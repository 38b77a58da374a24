"""The training command: BPTT, SLTT or SLTT-K on digits, CIFAR-10/100, DVS data or ImageNet,
with the SLTT paper's recipes as its official code runs them (README of qymeng94/SLTT), in one
process or several (torchrun).

    python -m sltt_kernels.train --dataset digits --method sltt --T 4 --epochs 20
    sltt-train --dataset cifar10 --data-dir ~/data --method sltt --out runs/c10      # paper recipe
    sltt-train --dataset dvs-cifar10 --data-dir ~/CIFAR10DVS --method sltt-k --K 2
    sltt-train --dataset imagenet --data-dir ~/imagenet --model nf_resnet34 --out runs/in1   # T = 1
    sltt-train --dataset imagenet --data-dir ~/imagenet --recipe paper-finetune \\
        --pretrained runs/in1/checkpoint.pt --out runs/in6                                  # T = 6
    torchrun --nproc_per_node 4 -m sltt_kernels.train --dataset cifar10 --data-dir ~/data   # 4 GPUs
    sltt-train --dataset cifar10 --data-dir ~/data --neuron plif --init-tau 2.0 --v-reset none

--recipe paper (default) sets, per data set, the model, T, tau, surrogate, epochs, lr, batch
size, weight decay, dropout and loss of the paper (recipes.py; docs/paper.md says where each
comes from); every one can be overridden by its flag. --recipe fast-1bit is the same with the
rectangle surrogate (1 bit per element-step saved for the backward). paper-finetune is
ImageNet's second stage (T = 6, 30 epochs, lr 0.001, no weight decay, from --pretrained).

--neuron picks the spiking neuron of every layer: paper-lif (the paper's, default), lif
(SpikingJelly's LIFNode defaults: input decay, hard reset to 0), if, plif (parametric LIF,
learnable tau) or leaky (snnTorch's Leaky; beta defaults to 1 - 1/tau, the paper neuron's
decay). Their parameters are flags (--v-threshold, --v-reset, --decay-input, --detach-reset,
--init-tau, --beta, --reset-mechanism); a flag that the chosen neuron does not have is refused.

Several processes: under torchrun (one machine or several, with its usual rendezvous flags) each
process trains on its share of every batch (--batch-size is the global batch, split evenly over
the processes) through DistributedDataParallel, gloo on CPU and NCCL on GPU (one GPU per
process: LOCAL_RANK); SLTT all-reduces once per iteration. Process 0 alone prints, writes the
checkpoints, --tensorboard and summary.json; a run resumes with any number of processes.

SGD with momentum 0.9 and cosine annealing over the epochs. Mixed precision as the official
code: fp16 autocast with a GradScaler, on a GPU (--amp, --amp-dtype). Each epoch prints one log
line (loss, train and test top-1, test top-5, images/s, the bytes the model saved for backward
per time step, peak memory) and writes a checkpoint atomically to --out, keeping the previous one
(checkpoint.prev.pt) so that one bad write never loses the run. --resume continues where the last
good checkpoint stopped, with the checkpoint's settings: a flag that conflicts with them is
refused, except --epochs, which is applied (the cosine schedule is recomputed for the new length);
a run that has trained --epochs epochs already has nothing to train (asking for fewer is an error)
and its summary is left as it was. A JSON summary goes to --out/summary.json.

Every value and path is checked before any data or model is loaded, and a bad one is an error
naming the flag and the value. --K is SLTT-K's alone (with --method sltt or bptt it is refused);
the recipe's K, when --K is not given, is lowered to T when T is smaller. ImageNet's val/ is
labelled by train/'s class folders; a folder with more classes than the model's outputs (1000),
a class folder without images, or a val/ class unknown to train/ is refused before training; an
image that cannot be decoded is named when it is read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import resource
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from . import models
from ._backend import ALIASES as BACKEND_ALIASES
from ._backend import BACKENDS, available_backends, check_backend_name, select_backend
from .checkpoint import (CheckpointError, load_pretrained, load_resume_checkpoint, restore_training_state,
                         save_checkpoint, training_state)
from .data import DATASETS, DataError, load_dataset
from .memory import SavedTensorMeter
from .nn import IFNode, Leaky, LIFNode, PaperLIFNode, ParametricLIFNode, StepBatchNorm2d, reset_net, set_step_mode
from .recipes import RECIPES, SURROGATES, recipe_defaults
from .training import MSE_TARGETS, bptt_step, make_loss, sltt_step

MODEL_BUILDERS = {
    "digits": lambda a, n, c, ch, **kw: models.digits_snn(num_classes=c, neuron=n, **kw),
    "resnet18": lambda a, n, c, ch, **kw: models.spiking_resnet18(num_classes=c, neuron=n, in_channels=ch,
                                                                  dropout=a.dropout, **kw),
    "resnet34": lambda a, n, c, ch, **kw: models.spiking_resnet34(num_classes=c, neuron=n, in_channels=ch,
                                                                  dropout=a.dropout, **kw),
    "vgg11_bn": lambda a, n, c, ch, **kw: models.vgg11_bn(num_classes=c, in_channels=ch, neuron=n, dropout=a.dropout,
                                                          **kw),
    "vgg11_ws": lambda a, n, c, ch, **kw: models.vgg11_ws(num_classes=c, in_channels=ch, neuron=n, dropout=a.dropout,
                                                          **kw),
    "nf_resnet34": lambda a, n, c, ch, **kw: models.nf_resnet34(num_classes=c, neuron=n, in_channels=ch, **kw),
    "nf_resnet50": lambda a, n, c, ch, **kw: models.nf_resnet50(num_classes=c, neuron=n, in_channels=ch, **kw),
    "nf_resnet101": lambda a, n, c, ch, **kw: models.nf_resnet101(num_classes=c, neuron=n, in_channels=ch, **kw),
}

# Each neuron's parameters and their defaults (None: the recipe's --tau); a flag outside its
# neuron's set is refused. paper-lif: the official SLTTNeuron; lif / if / plif: SpikingJelly's
# defaults; leaky: snnTorch's subtract reset, beta None meaning 1 - 1/tau.
NEURON_PARAMS = {
    "paper-lif": dict(tau=None, decay_input=False, v_threshold=1.0, v_reset="none", detach_reset=False),
    "lif": dict(tau=None, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False),
    "if": dict(v_threshold=1.0, v_reset=0.0, detach_reset=False),
    "plif": dict(init_tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False),
    "leaky": dict(tau=None, beta=None, v_threshold=1.0, reset_mechanism="subtract"),
}
NEURON_KEYS = ("decay_input", "v_threshold", "v_reset", "detach_reset", "init_tau", "beta", "reset_mechanism")
# what defines a run: taken from the checkpoint on --resume; an explicit flag must agree
RUN_KEYS = ("dataset", "recipe", "model", "method", "T", "K", "tau", "surrogate", "dropout", "loss_lambda",
            "mse_target", "lr", "batch_size", "weight_decay", "momentum", "seed", "amp_dtype", "drop_last",
            "image_size", "max_iterations", "neuron") + NEURON_KEYS


def _v_reset(text: str):
    """--v-reset: a number (hard reset to it) or 'none' (soft reset: subtract the threshold)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def parse_args(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    # the flags the user gave (resume checks these against the checkpoint)
    args.explicit = sorted(k for k in RUN_KEYS + ("epochs",) if getattr(args, k, None) is not None)
    if args.resume and args.pretrained:
        p.error("--resume and --pretrained exclude each other: --resume continues the run in --out")
    try:
        _check_run_flags(args)
        if not args.resume:  # on resume the rest comes from the checkpoint (main() calls fill_defaults)
            fill_defaults(args)
    except ValueError as e:
        p.error(str(e))
    return args


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sltt-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=sorted(RECIPES), help="default: paper")
    p.add_argument("--method", choices=["bptt", "sltt", "sltt-k"], help="default: sltt")
    p.add_argument("--K", type=int, help="time steps back-propagated by sltt-k, 1..T (recipe: 4 DVS-Gesture, else 2, "
                   "lowered to T when T is smaller); refused with the other methods")
    p.add_argument("--T", type=int, help="time steps")
    p.add_argument("--model", choices=list(MODEL_BUILDERS))
    p.add_argument("--dataset", choices=list(DATASETS), help="default: digits")
    p.add_argument("--data-dir", help="where the data set lives (not needed for digits)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int, help="the global batch: split over the processes under torchrun")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--surrogate", choices=sorted(SURROGATES), help="paper: triangle; fast-1bit: rect")
    p.add_argument("--dropout", type=float, help="dropout rate of the ResNet/VGG models")
    p.add_argument("--loss-lambda", type=float, help="weight of the MSE term of the loss (0: cross entropy)")
    p.add_argument("--mse-target", choices=MSE_TARGETS,
                   help="MSE to the threshold V_th = 1 (Eq. S13) or to the one-hot label (Eq. S14)")
    p.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the last incomplete training batch (paper: DVS-Gesture only)")
    p.add_argument("--image-size", type=int, help="ImageNet crop size (224)")
    p.add_argument("--seed", type=int)
    n = p.add_argument_group("neuron")
    n.add_argument("--neuron", choices=list(NEURON_PARAMS), help="default: paper-lif")
    n.add_argument("--tau", type=float, help="membrane time constant of paper-lif and lif (paper: 1.1); "
                   "leaky's beta defaults to 1 - 1/tau")
    n.add_argument("--v-threshold", type=float, help="firing threshold (1.0)")
    n.add_argument("--v-reset", type=_v_reset, help="hard reset value, or 'none' for the soft reset "
                   "(paper-lif: none; lif, if, plif: 0.0)")
    n.add_argument("--decay-input", action=argparse.BooleanOptionalAction, default=None,
                   help="paper-lif: off; lif, plif: on")
    n.add_argument("--detach-reset", action=argparse.BooleanOptionalAction, default=None, help="default off")
    n.add_argument("--init-tau", type=float, help="plif's initial tau (2.0)")
    n.add_argument("--beta", type=float, help="leaky's decay (default 1 - 1/tau)")
    n.add_argument("--reset-mechanism", choices=["subtract", "zero", "none"], help="leaky's reset (subtract)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--backend", default="auto", help="backend of the neurons: auto, reference, cpu, cuda, triton")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"], help="autocast (auto: on a GPU)")
    p.add_argument("--amp-dtype", choices=["fp16", "bf16"], help="paper: fp16 with a GradScaler")
    m = p.add_argument_group("memory and speed")
    m.add_argument("--pack-spike-inputs", action="store_true",
                   help="layers that read spikes save them packed, 1 bit each, for the backward")
    m.add_argument("--recompute", action="store_true", help="the models' recompute=True")
    m.add_argument("--fuse-norm", action="store_true",
                   help="each batch norm's apply runs inside the neuron kernel after it (the models' fuse_norm=True; "
                        "rounds in the last bits unlike aten's batch norm; not with --sync-bn)")
    m.add_argument("--compile", action="store_true", help="run the model under torch.compile")
    m.add_argument("--sync-bn", action="store_true",
                   help="batch statistics over all processes (GPU only; per time step as the model's BN)")
    p.add_argument("--workers", type=int, default=0, help="data loading processes per training process")
    p.add_argument("--out", default="runs/latest", help="checkpoints and summary.json go here")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--pretrained", help="start from this checkpoint's model weights (ImageNet stage 2)")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs in this run (for testing resume)")
    p.add_argument("--max-iterations", type=int,
                   help="train at most this many iterations per epoch (quick checks and tests)")
    p.add_argument("--tensorboard", action="store_true", help="TensorBoard event files in --out/tensorboard")
    p.add_argument("--no-progress", action="store_true")
    return p


def _check_saved_settings(saved: dict) -> None:
    """The settings a checkpoint carries, checked as their flags are (type and choices; the ranges
    are fill_defaults'): a file edited by hand or by another program is refused by name, not run
    as something else or ended in a traceback. Raises ValueError."""
    actions = {a.dest: a for a in _parser()._actions}
    for k in RUN_KEYS + ("epochs",):
        value = saved.get(k)
        if value is None or k not in actions:
            continue
        a = actions[k]
        if a.type is None and a.nargs == 0:  # a switch (--drop-last / --no-drop-last)
            ok = isinstance(value, bool)
        elif a.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif a.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif a.type is _v_reset:
            ok = value == "none" or (isinstance(value, (int, float)) and not isinstance(value, bool))
        else:
            ok = isinstance(value, str)
        if ok and a.choices is not None:
            ok = value in a.choices
        if not ok:
            raise ValueError(f"the checkpoint's setting {k} = {value!r} is not a value of --{k.replace('_', '-')}"
                             + (f" (one of {', '.join(map(str, a.choices))})" if a.choices is not None else ""))


def _check_run_flags(args):
    """Checks of the flags that do not define the run (those are fill_defaults'), before any work."""
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    for flag in ("stop_after", "max_iterations"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU")
    _check_backend(args.backend, _device(args).type)
    _check_out(args.out)
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    if args.recompute and not args.pack_spike_inputs:
        raise ValueError("--recompute rebuilds the batch-norm inputs from the packed spike inputs: give "
                         "--pack-spike-inputs too")
    if getattr(args, "fuse_norm", False) and args.sync_bn:
        raise ValueError("--fuse-norm computes each batch norm's statistics on this process; --sync-bn gathers them "
                         "over all processes: give one of the two")
    if args.sync_bn and _device(args).type != "cuda":
        raise ValueError("--sync-bn needs GPUs: torch's SyncBatchNorm runs on CUDA only")


def _check_backend(backend: str, device_type: str) -> None:
    """--backend: a known name, usable here and on the run's device (the model's first forward
    would find out otherwise, after the data and the model are loaded). No tensor is made: under
    torchrun this runs before each process picks its GPU."""
    if backend not in BACKENDS and backend not in BACKEND_ALIASES:
        raise ValueError(f"--backend {backend}: not a backend; choose one of {', '.join(BACKENDS)} (or SpikingJelly's "
                         f"{', '.join(BACKEND_ALIASES)})")
    name = check_backend_name(backend)
    if name in ("auto", "reference"):
        return
    if name in ("cpu", "cuda") and device_type != name:
        raise ValueError(f"--backend {name} runs the neurons on {name} tensors, but the run is on --device "
                         f"{device_type}")
    if name == "triton" and device_type == "cpu":
        from . import triton as _triton

        if not _triton.interpreting():
            raise ValueError("--backend triton on --device cpu needs TRITON_INTERPRET=1 (slow); --backend cpu is "
                             "the fast CPU kernel")
    reason = available_backends()[name]
    if reason is not None:
        raise ValueError(f"--backend {name} is not available here: {reason}")


def _check_out(out: str) -> None:
    """--out must be a folder that exists or can be made, writable: checked before any work, not
    found out at the first checkpoint after an epoch of training."""
    if not out:
        raise ValueError("--out must name a folder, got an empty string")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out}: {parent} is a file, so the folder cannot be made")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {parent} is not writable")


def fill_defaults(args, from_checkpoint=None):
    """Completes args: explicit flags, else the checkpoint's values (on resume), else the recipe
    (and the neuron's defaults). Raises ValueError naming the flag for a bad value."""
    if from_checkpoint:
        for k in RUN_KEYS + ("epochs",):
            if getattr(args, k, None) is None and from_checkpoint.get(k) is not None:
                setattr(args, k, from_checkpoint[k])
    args.dataset = args.dataset or "digits"
    args.recipe = args.recipe or "paper"
    defaults = recipe_defaults(args.recipe, args.dataset)
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    for flag in ("lr", "weight_decay", "momentum", "tau", "dropout", "loss_lambda"):
        if not math.isfinite(getattr(args, flag)):
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number, got {getattr(args, flag)}")
    for flag, least in (("T", 1), ("epochs", 1), ("batch_size", 1), ("image_size", 1)):
        if getattr(args, flag) < least:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {least}, got {getattr(args, flag)}")
    _fill_K(args)
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if not 0.0 <= args.loss_lambda <= 1.0:
        raise ValueError(f"--loss-lambda must lie in [0, 1], got {args.loss_lambda}")
    if args.tau <= 1.0:
        raise ValueError(f"--tau must be > 1 (the decay is 1 - 1/tau), got {args.tau}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.weight_decay < 0:
        raise ValueError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if not 0.0 <= args.momentum < 1.0:
        raise ValueError(f"--momentum must lie in [0, 1), got {args.momentum}")
    if args.recipe == "paper-finetune" and not args.pretrained and not args.resume:
        raise ValueError("--recipe paper-finetune fine-tunes a T=1 model: give --pretrained CHECKPOINT")
    _fill_neuron(args)
    _check_fuse_norm(args)
    return args


# the models whose forward runs its batch norm + neuron pairs through nn.batch_norm_neuron
FUSE_NORM_MODELS = ("resnet18", "resnet34")


def _check_fuse_norm(args) -> None:
    """--fuse-norm where it would change nothing is refused rather than reported as on."""
    if not getattr(args, "fuse_norm", False):
        return
    if args.model not in FUSE_NORM_MODELS:
        raise ValueError(f"--fuse-norm: --model {args.model} runs no batch norm + neuron pair through "
                         f"nn.batch_norm_neuron ({' and '.join(FUSE_NORM_MODELS)} do)")
    if args.method == "bptt":
        raise ValueError("--fuse-norm serves the single-step methods (sltt, sltt-k): --method bptt runs each "
                         "layer over all T steps, whose batch norms normalise every step by its own statistics")
    if args.compile:
        raise ValueError("--fuse-norm and --compile: the compiled model runs the plain batch norms; give one of "
                         "the two")


def _fill_K(args):
    """SLTT-K's K. Given (--K), it must lie in [1, T], and only --method sltt-k takes it: an
    error, not a warning, for the other methods, where it would do nothing (a user who gives it
    most likely meant sltt-k, and a long run of the wrong method costs more than a retyped
    command). The recipe's K (not given) is a default: above T it becomes T, said in the log, so
    that --method sltt-k --T 1 runs instead of blaming a --K nobody gave."""
    given = "K" in args.explicit
    if given and args.method != "sltt-k":
        raise ValueError(f"--K {args.K}: only --method sltt-k back-propagates K of the T steps; --method "
                         f"{args.method} would ignore it (drop --K, or give --method sltt-k)")
    if args.method != "sltt-k":
        return
    if given and not 1 <= args.K <= args.T:
        raise ValueError(f"--K must lie in [1, T={args.T}] for --method sltt-k, got --K {args.K}")
    if not given and args.K > args.T:
        args.notes = getattr(args, "notes", []) + [
            f"K={args.T}: the recipe's K={args.K} is more than --T {args.T} (every step back-propagated"
            + (", the same as --method sltt)" if args.T == 1 else ")")]
        args.K = args.T


def _fill_neuron(args):
    """The neuron's parameters: explicit flags, else its defaults; a flag it lacks is refused,
    and the neuron is built once so that a bad value is reported before any data is loaded."""
    args.neuron = getattr(args, "neuron", None) or "paper-lif"
    params = NEURON_PARAMS[args.neuron]
    for k in NEURON_KEYS:
        if k in params:
            if getattr(args, k, None) is None:
                setattr(args, k, params[k])
        elif k in args.explicit:
            flag = "--" + k.replace("_", "-")
            raise ValueError(f"{flag} is not a parameter of --neuron {args.neuron} (it takes "
                             f"{', '.join('--' + p.replace('_', '-') for p in params)})")
        else:
            setattr(args, k, None)
    if "tau" in args.explicit and "tau" not in params:
        raise ValueError(f"--tau is not a parameter of --neuron {args.neuron}"
                         + (" (its initial tau is --init-tau)" if args.neuron == "plif" else ""))
    # values the modules take (they follow their libraries) but no training run wants; given as
    # flags only: a run begun before these checks resumes with its checkpoint's values
    given = set(args.explicit)
    if "v_threshold" in given and args.v_threshold <= 0:
        raise ValueError(f"--v-threshold must be > 0 (the membrane rests at 0: at or below it a neuron fires "
                         f"without input or at the least one), got {args.v_threshold}")
    if (given & {"v_reset", "v_threshold"} and args.v_reset not in (None, "none") and args.v_threshold is not None
            and args.v_reset >= args.v_threshold):
        raise ValueError(f"--v-reset must be below --v-threshold {args.v_threshold} (a neuron reset to "
                         f"{args.v_reset} would be at or past the threshold after each spike), got {args.v_reset}")
    if "beta" in given and not 0.0 <= args.beta <= 1.0:
        raise ValueError(f"--beta must lie in [0, 1] (the leaky neuron clamps it there, as snnTorch's does: "
                         f"{args.beta} would run as {min(max(args.beta, 0.0), 1.0)}), got {args.beta}")
    try:
        neuron_factory(args)()
    except (TypeError, ValueError) as e:
        raise ValueError(f"--neuron {args.neuron}: {e}") from e


def neuron_factory(args, grad_mode=None):
    """A function that builds one neuron as the flags say (for the models' `neuron=`)."""
    grad = grad_mode or ("bptt" if args.method == "bptt" else "sltt")
    surrogate = SURROGATES[args.surrogate]
    v_reset = None if args.v_reset == "none" else args.v_reset
    common = dict(grad_mode=grad, backend=args.backend)
    if args.neuron == "leaky":
        beta = args.beta if args.beta is not None else 1.0 - 1.0 / args.tau
        # init_hidden: the neuron keeps its membrane and returns the spikes alone, as a layer of
        # a network does (snnTorch's (spk, mem) calling convention is for hand-written loops)
        return lambda: Leaky(beta=beta, threshold=args.v_threshold, spike_grad=surrogate(), init_hidden=True,
                             reset_mechanism=args.reset_mechanism, **common)
    common.update(v_threshold=args.v_threshold, v_reset=v_reset, detach_reset=args.detach_reset)
    if args.neuron == "if":
        return lambda: IFNode(surrogate_function=surrogate(), **common)
    if args.neuron == "plif":
        return lambda: ParametricLIFNode(init_tau=args.init_tau, decay_input=args.decay_input,
                                         surrogate_function=surrogate(), **common)
    cls = PaperLIFNode if args.neuron == "paper-lif" else LIFNode
    return lambda: cls(tau=args.tau, decay_input=args.decay_input, surrogate_function=surrogate(), **common)


def build_model(args, info, device):
    """The model of --model with --neuron's neurons, on device. --pack-spike-inputs and
    --recompute become the models' pack_spike_inputs=True and recompute=True, passed only when
    given; a model without those keywords (digits) gets the same conversion after it is built
    (sltt_kernels.nn.pack_spike_inputs)."""
    extra = {}
    if getattr(args, "pack_spike_inputs", False):
        extra["pack_spike_inputs"] = True
    if getattr(args, "recompute", False):
        extra["recompute"] = True
    build = MODEL_BUILDERS[args.model]
    neuron = neuron_factory(args)
    try:
        net = build(args, neuron, info.num_classes, info.in_channels, **extra)
    except TypeError as e:
        if not extra or not any(k in str(e) for k in extra):
            raise
        from .nn import pack_spike_inputs

        net = build(args, neuron, info.num_classes, info.in_channels)
        pack_spike_inputs(net, recompute=bool(extra.get("recompute")))
    if getattr(args, "fuse_norm", False):
        from .nn import fuse_norm_neurons

        fuse_norm_neurons(net)  # the pairs a model's forward calls through nn.batch_norm_neuron
    return net.to(device)


class SyncStepBatchNorm2d(nn.SyncBatchNorm):
    """StepBatchNorm2d whose batch statistics are taken over every process (torch's
    SyncBatchNorm), per time step: step_mode 'm' normalises each x[t] on its own, as the paper's
    per-step BN does. x: [B, C, H, W] ('s') or [T, B, C, H, W] ('m')."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 step_mode="s"):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.step_mode = step_mode

    def forward(self, x):
        if self.step_mode == "s":
            return super().forward(x)
        return torch.stack([super(SyncStepBatchNorm2d, self).forward(x[t]) for t in range(x.shape[0])])


def convert_sync_batchnorm(net: nn.Module) -> nn.Module:
    """Every StepBatchNorm2d of net to a SyncStepBatchNorm2d (same parameters, buffers, mode and
    step mode), every other batch norm to torch's SyncBatchNorm; in place, returns net."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.SyncBatchNorm):
            continue
        if isinstance(child, StepBatchNorm2d):
            sync = SyncStepBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats, child.step_mode)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(net, name, sync.to(next(child.buffers()).device))
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            convert_sync_batchnorm(child)
    return net


# ---------------------------------------------------------------------------------------------
# processes


class Dist:
    """This process's place in the run: rank, world size, and whether torch.distributed runs."""

    def __init__(self, rank=0, world=1):
        self.rank, self.world = rank, world

    @property
    def active(self):
        return self.world > 1

    @property
    def main(self):
        return self.rank == 0


def _device(args) -> torch.device:
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def _init_processes(args):
    """(Dist, device): from torchrun's environment (WORLD_SIZE > 1) the process group, gloo on CPU
    and NCCL on GPU with one GPU per process (LOCAL_RANK); else one process."""
    device = _device(args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return Dist(dist.get_rank(), dist.get_world_size()), device


def _broadcast(obj, d: Dist, device):
    """Process 0's obj on every process."""
    if not d.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def _all_sum(values, d: Dist, device):
    """values (floats) summed over the processes."""
    if not d.active:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ---------------------------------------------------------------------------------------------
# data, progress, metrics


def _reseed_worker(worker_id):
    # each DataLoader worker holds a copy of the data set; without this every worker would
    # replay the same augmentation draws
    info = torch.utils.data.get_worker_info()
    gen = getattr(info.dataset, "generator", None)
    if gen is not None:
        gen.manual_seed(info.seed % 2**63)


def _loader(ds, args, shuffle, epoch, d: Dist = None):
    """This process's loader of one epoch. Training: a DistributedSampler over the global order
    (the same for any number of processes: global batch i is the i-th run of --batch-size
    samples of the epoch's permutation), each process taking --batch-size / world of it."""
    d = d or Dist()
    if hasattr(ds, "generator"):  # augmentation draws, reproducible per epoch (and per process)
        ds.generator.manual_seed(args.seed * 1000 + epoch + 1 + 7919 * d.rank)
    drop_last = bool(args.drop_last) and shuffle
    sampler = DistributedSampler(ds, num_replicas=d.world, rank=d.rank, shuffle=shuffle, seed=args.seed * 1000,
                                 drop_last=drop_last)
    sampler.set_epoch(epoch)
    # the loader's generator only draws the workers' seeds (the sampler shuffles on its own): one
    # per process, or worker i of every process would replay the same augmentation draws
    return DataLoader(ds, batch_size=args.batch_size // d.world, sampler=sampler, num_workers=args.workers,
                      drop_last=drop_last, worker_init_fn=_reseed_worker if args.workers else None,
                      generator=torch.Generator().manual_seed(args.seed * 1000 + epoch + 7919 * d.rank))


class _PlainProgress:
    """tqdm's update/close as plain lines, about every tenth of the epoch: for a log file or a
    pipe, where tqdm's redraws would pile up on one line."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n = total, desc, 0
        self.every = max(1, total // 10)
        self.start = time.perf_counter()

    def update(self, k=1):
        self.n += k
        if self.n % self.every == 0 or self.n == self.total:
            print(f"[{self.n}/{self.total} {time.perf_counter() - self.start:.0f}s] {self.desc}", file=sys.stderr,
                  flush=True)

    def close(self):
        pass


class _NoProgress:
    def update(self, k=1):
        pass

    def close(self):
        pass


def _progress(total, desc, enabled):
    """tqdm on stderr when it is a terminal, plain lines otherwise, nothing when disabled."""
    if not enabled:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, desc)
    if not sys.stderr.isatty():
        return _PlainProgress(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)


def topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    """How many rows of logits [B, classes] have the label y [B] among their k largest."""
    k = min(k, logits.shape[-1])
    return int((logits.topk(k, dim=-1).indices == y.unsqueeze(-1)).any(-1).sum())


@torch.no_grad()
def evaluate(net, ds, args, device, d: Dist = None):
    """Top-1 and top-5 accuracy over ds, multi-step, in float32 (the official test loop does not
    autocast). Under several processes each takes every world-th sample and the counts are summed."""
    d = d or Dist()
    net.eval()
    info = DATASETS[args.dataset]
    set_step_mode(net, "m")
    if d.active:
        ds = Subset(ds, range(d.rank, len(ds), d.world))
    top1 = top5 = total = 0
    for x, y in DataLoader(ds, batch_size=max(args.batch_size, 256), num_workers=args.workers):
        x, y = x.to(device), torch.as_tensor(y).to(device)
        seq = x.transpose(0, 1) if info.sequence else x.unsqueeze(0).expand(args.T, *x.shape)
        out = net(seq).float().mean(0)
        reset_net(net)
        top1 += topk_correct(out, y, 1)
        top5 += topk_correct(out, y, 5)
        total += len(y)
    net.train()
    top1, top5, total = _all_sum([top1, top5, total], d, device)
    return top1 / max(total, 1), top5 / max(total, 1)


def _peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def backend_line(args, device) -> str:
    """Which backend runs the neurons, and why the others do not."""
    chosen = select_backend(torch.empty(0, device=device), args.backend)
    missing = {k: v for k, v in available_backends().items() if v is not None}
    usable = [k for k in available_backends() if k not in missing]
    return f"neurons on the {chosen} backend (usable here: {', '.join(usable)})"


# ---------------------------------------------------------------------------------------------
# the run


def reconcile_resume(args, saved: dict):
    """Settings on --resume: the checkpoint's, unless a flag was given. A given flag that differs
    from the checkpoint is refused, except --epochs (applied to the schedule). Returns the
    messages about what was applied."""
    _check_saved_settings(saved)
    conflicts, notes = [], []
    for k in RUN_KEYS:
        if k in args.explicit and k in saved and saved[k] is not None and getattr(args, k) != saved[k]:
            flag = "--" + k.replace("_", "-")
            conflicts.append(f"{flag} {getattr(args, k)} (the checkpoint has {saved[k]})")
    if conflicts:
        raise CheckpointError("--resume continues a run with its own settings; these flags conflict with it: "
                              + "; ".join(conflicts) + ". Drop them, or start a new run in another --out")
    if "epochs" in args.explicit and saved.get("epochs") not in (None, args.epochs):
        notes.append(f"--epochs {args.epochs} applied (the run had {saved['epochs']}): the cosine schedule now "
                     f"anneals to 0 at epoch {args.epochs}")
    fill_defaults(args, from_checkpoint=saved)
    return notes


def _setup(args, device):
    """The model, optimizer, schedule, loss scaler and loss of a run (fresh or resumed)."""
    info = DATASETS[args.dataset]
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    net = build_model(args, info, device)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    amp = device.type == "cuda" if args.amp == "auto" else args.amp == "on"
    amp_dtype = torch.float16 if args.amp_dtype == "fp16" else torch.bfloat16
    # fp16 needs loss scaling (the official amp.GradScaler); bf16 has float32's range
    scaler = torch.amp.GradScaler(device.type) if (amp and amp_dtype == torch.float16) else None
    return net, opt, sched, scaler, (amp_dtype if amp else None), make_loss(args.loss_lambda, args.mse_target)


def _restore(args, device, ck, used, notes, net, opt, sched, scaler, say):
    """Loads a checkpoint into the run (or pretrained weights); returns (start epoch, history)."""
    if ck is None:
        if args.pretrained:
            try:
                load_pretrained(net, args.pretrained, "cpu")
            except CheckpointError as e:
                raise SystemExit(f"sltt-train: {e}")
            say(f"model weights from {args.pretrained}")
        return 0, []
    try:
        start_epoch, history = restore_training_state(ck, used, net, opt, sched, scaler, device, args.epochs)
    except CheckpointError as e:
        raise SystemExit(f"sltt-train: {e}")
    say(f"resumed from {used} after epoch {start_epoch}")
    for n in notes:
        say(f"sltt-train: {n}")
    return start_epoch, history


def _step_model(net, args, device, d: Dist):
    """What the training steps run: net, compiled (--compile), in DistributedDataParallel under
    several processes. The compiled module is wrapped by DDP (not the reverse) so that the steps
    see a DDP model and SLTT keeps its one all-reduce per iteration (training.sltt_step's
    no_sync)."""
    model = net
    if args.compile:
        import torch._dynamo

        # one graph per step mode, grad mode and batch size, each compiled for static shapes: a
        # step-mode switch changes the input's rank, which makes every size dynamic (H, W too), and
        # inductor cannot order the strides of the time-folded input (pytorch/pytorch#185510; our
        # fake kernels take symbolic sizes: tests/training/test_compile_dynamic.py). The limit covers
        # train/eval x s/m x full/last batch x SLTT-K's no_grad steps. No layout optimization: it
        # converts every conv weight to channels_last at each graph call, T times per SLTT iteration
        # (0.73-0.86x eager with it, 1.04-1.08x without: benchmarks/compile_time.py)
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        model = torch.compile(net, dynamic=False, options={"layout_optimization": False})
    if d.active:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def train_one_epoch(model, opt, train_ds, args, device, epoch, step_rng, autocast_dtype, scaler, loss_fn,
                    d: Dist = None, net=None):
    """One epoch of the chosen method; returns a dict: loss (mean), train_acc, images, seconds,
    saved_per_step_bytes (what the model held for backward per time step, measured on the
    epoch's first iteration), over every process."""
    d = d or Dist()
    net = net if net is not None else model
    info = DATASETS[args.dataset]
    step_rng.seed(args.seed * 1000 + epoch)  # SLTT-K's draws, reproducible per epoch (and equal on every rank)
    loss_sum = correct = seen = 0
    saved = None
    loader = _loader(train_ds, args, True, epoch, d)
    n_iter = len(loader) if args.max_iterations is None else min(len(loader), args.max_iterations)
    bar = _progress(n_iter, f"epoch {epoch + 1}/{args.epochs}", d.main and not args.no_progress)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == n_iter:
            break
        x, y = x.to(device), torch.as_tensor(y).to(device)
        if info.sequence:
            x = x.transpose(0, 1)  # [B, T, ...] -> [T, B, ...]
        kw = dict(sequence=info.sequence, autocast_dtype=autocast_dtype, scaler=scaler, loss_fn=loss_fn)
        meter = SavedTensorMeter(net) if i == 0 else None
        with meter if meter is not None else _nothing():
            if args.method == "bptt":
                res = bptt_step(model, opt, x, y, args.T, **kw)
            else:
                res = sltt_step(model, opt, x, y, args.T, K=args.K if args.method == "sltt-k" else None,
                                generator=step_rng, **kw)
        if meter is not None:
            # SLTT frees each step's graph before the next step: its peak is one step's; BPTT
            # holds all T steps' graphs at once
            saved = meter.peak / (args.T if args.method == "bptt" else 1)
        loss_sum += res.loss * len(y)
        correct += topk_correct(res.output, y, 1)
        seen += len(y)
        bar.update()
        if _SIGNALLED:
            raise KeyboardInterrupt
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen, saved_sum = _all_sum([loss_sum, correct, seen, saved or 0.0], d, device)
    return dict(loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1), images=int(seen), seconds=seconds,
                saved_per_step_bytes=saved_sum / d.world if saved is not None else None)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _raise_on_signals() -> dict:
    """SIGTERM (a scheduler's stop, torchrun stopping its processes) and Ctrl-C end the run with a
    message saying which checkpoint is kept, instead of dying without a word or being lost.
    Returns the handlers replaced, for _restore_signals."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}  # signal handlers can only be set from the main thread

    def interrupt(signum, frame):
        _SIGNALLED.append(signum)
        _quiet_unraisable_after_signal()
        # Python prints and drops an exception raised inside a __del__ (SavedTensorMeter's, a
        # DataLoader iterator's): there the signal is only recorded, and the training loop raises
        # after the iteration
        if frame is not None and frame.f_code.co_name == "__del__":
            return
        raise KeyboardInterrupt

    replaced = {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored (nohup)
        replaced[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    return replaced


def _quiet_unraisable_after_signal() -> None:
    """Once this run has been signalled, the reports of exceptions Python cannot raise (printed as
    "Exception ignored in ...") are dropped; before, they go to the hook that was there. They are
    the stop's own noise: our KeyboardInterrupt landing in a callback around a DataLoader worker's
    fork (the training loop raises it after the iteration, from _SIGNALLED), a library's fork
    callback then releasing a lock it never took (loguru's), a DataLoader iterator's __del__
    meeting its workers killed by a scheduler's SIGTERM to the whole process group."""
    previous = sys.unraisablehook
    if getattr(previous, "_sltt_quiet_after_signal", False):
        return

    def hook(unraisable):
        if not _SIGNALLED:
            previous(unraisable)

    hook._sltt_quiet_after_signal = True
    sys.unraisablehook = hook


def _restore_signals(replaced: dict) -> None:
    import signal

    for signum, handler in replaced.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


# signals received: the handler's KeyboardInterrupt can land in a __del__ (SavedTensorMeter's),
# where Python prints and drops it, so the training loop also looks here after each iteration
_SIGNALLED = []


def _write_summary(args, device, history, wall_s, d: Dist, backend):
    summary = dict(dataset=args.dataset, model=args.model, method=args.method, recipe=args.recipe, T=args.T,
                   K=args.K if args.method == "sltt-k" else None, neuron=args.neuron, epochs_done=len(history),
                   epochs=args.epochs, final_test_acc=history[-1]["test_acc"] if history else None,
                   final_test_top5=history[-1]["test_top5"] if history else None,
                   best_test_acc=max((h["test_acc"] for h in history), default=None),
                   wall_s=wall_s, device=device.type, world_size=d.world, backend=backend,
                   compile=args.compile, pack_spike_inputs=args.pack_spike_inputs, recompute=args.recompute,
                   fuse_norm=args.fuse_norm,
                   sync_bn=args.sync_bn, torch=torch.__version__, history=history)
    path = os.path.join(args.out, "summary.json")
    # written beside and then moved over the old one: an interrupt or a full disk never leaves half a file
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(path + ".tmp", path)
    except BaseException:
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")
        raise
    print(f"summary: {os.path.join(args.out, 'summary.json')}  final test accuracy "
          f"{100 * (summary['final_test_acc'] or 0):.2f}%")
    return summary


def _tensorboard_writer(args):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=os.path.join(args.out, "tensorboard"))


def _log_tensorboard(writer, rec):
    step = rec["epoch"]
    for tag, key in (("train/loss", "loss"), ("train/top1", "train_acc"), ("test/top1", "test_acc"),
                     ("test/top5", "test_top5"), ("lr", "lr"), ("speed/images_per_s", "images_per_s"),
                     ("memory/peak_MB", "peak_memory_MB"), ("memory/saved_per_step_MB", "saved_per_step_MB")):
        if rec.get(key) is not None:
            writer.add_scalar(tag, rec[key], step)
    writer.flush()


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM and Ctrl-C end the run with a word from here on (an interrupt inside training says
    # which checkpoint is kept: _run; before or after it: here)
    _SIGNALLED.clear()  # a signal of an earlier run in this process is not this run's
    replaced = _raise_on_signals()
    try:
        return _main(args)
    finally:
        _restore_signals(replaced)  # a caller's own handlers (a notebook's Ctrl-C) after the run


def _main(args):
    """main's run after the signal handlers are set: one process or one of torchrun's."""
    d, device = _init_processes(args)
    args.training_began = False
    try:
        try:
            result = _run(args, d, device)
        except KeyboardInterrupt:
            raise SystemExit(_interrupted_outside_training(args)) from None
        if d.active:
            import torch.distributed as dist

            dist.barrier()  # every process done (process 0 has written) before the group goes away
            dist.destroy_process_group()
        return result
    except BaseException as e:
        if d.active and not (isinstance(e, SystemExit) and e.code in (0, None)):
            # say which process failed; torchrun then stops the others (their collectives would wait)
            what = e.code if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
            print(f"sltt-train: process {d.rank} of {d.world} failed: {what}; the run stops", file=sys.stderr,
                  flush=True)
            sys.stderr.flush()
            os._exit(1)  # no clean shutdown: a collective of the process group would wait for the dead peer
        raise


def _interrupted_outside_training(args) -> str:
    """The message of a SIGTERM or Ctrl-C before the first epoch began or after the last ended."""
    if args.training_began:
        return (f"sltt-train: interrupted after training, while writing the summary; the last epoch's checkpoint is "
                f"kept in {args.out}: --resume --out {args.out} writes the summary")
    text = "sltt-train: interrupted before training began; nothing was written"
    if args.resume:
        text += f" (the checkpoint in {args.out} is as it was: continue with --resume --out {args.out})"
    return text


def _run(args, d: Dist, device):
    def say(text):
        if d.main:
            print(text, flush=True)

    if d.main and not args.resume:  # a resumed run reads its folder: a mistyped one is not made
        os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    ck, used, notes = None, None, []
    if args.resume:
        # process 0 reads the checkpoint (or falls back to the previous one) and hands it to all
        error = None
        if d.main:
            try:
                ck, used = load_resume_checkpoint(ckpt_path, "cpu")
            except CheckpointError as e:
                error = str(e)
        ck, used, error = _broadcast((ck, used, error), d, device)
        if error is not None:
            raise SystemExit(f"sltt-train: {error}")
        try:
            notes = reconcile_resume(args, ck["args"])
        except (CheckpointError, ValueError) as e:
            raise SystemExit(f"sltt-train: {e}")
        if ck["epoch"] >= args.epochs:
            return _nothing_to_train(args, ck, used, d, device, say)
    if args.pretrained is not None and not os.path.isfile(args.pretrained):
        # read once the model is built, after the data: a wrong path is found out here instead
        # (not in parse_args, which names a file only to be read later)
        raise SystemExit(f"sltt-train: --pretrained {args.pretrained}: no such file")
    if args.batch_size % d.world:
        raise SystemExit(f"sltt-train: --batch-size {args.batch_size} (the global batch) does not split evenly over "
                         f"{d.world} processes")
    info = DATASETS[args.dataset]
    try:
        # num_classes: the model's outputs; an ImageNet folder with more classes is refused here
        train_ds = load_dataset(args.dataset, args.data_dir, train=True, T=args.T, image_size=args.image_size,
                                num_classes=info.num_classes)
        test_ds = load_dataset(args.dataset, args.data_dir, train=False, T=args.T, image_size=args.image_size,
                               num_classes=info.num_classes)
    except DataError as e:
        raise SystemExit(f"sltt-train: {e}")
    for note in getattr(args, "notes", []) + _data_notes(args, train_ds, test_ds):
        say(f"sltt-train: {note}")
    net, opt, sched, scaler, autocast_dtype, loss_fn = _setup(args, device)
    if args.sync_bn:
        net = convert_sync_batchnorm(net)
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    start_epoch, history = _restore(args, device, ck, used, notes, net, opt, sched, scaler, say)
    model = _step_model(net, args, device, d)
    backend = select_backend(torch.empty(0, device=device), args.backend)
    say(f"sltt-train: {args.method}{f' K={args.K}' if args.method == 'sltt-k' else ''} T={args.T} "
        f"{args.model} ({args.neuron}) on {args.dataset} ({len(train_ds)} train / {len(test_ds)} test), "
        f"recipe {args.recipe}, {args.epochs} epochs, lr {args.lr} batch {args.batch_size} wd {args.weight_decay}, "
        f"tau {args.tau} {args.surrogate}, dropout {args.dropout}, loss lambda {args.loss_lambda} "
        f"({args.mse_target}), {device.type}{f' {args.amp_dtype} autocast' if autocast_dtype is not None else ''}"
        f"{f', {d.world} processes' if d.active else ''}"
        + "".join(f", {flag}" for flag, on in (("packed spike inputs", args.pack_spike_inputs),
                                              ("recompute", args.recompute), ("fused batch norms", args.fuse_norm),
                                              ("compiled", args.compile),
                                              ("sync BN", args.sync_bn)) if on))
    say(f"sltt-train: {backend_line(args, device)}")
    writer = _tensorboard_writer(args) if args.tensorboard and d.main else None
    t_start = time.time()
    args.training_began = True
    end = args.epochs if args.stop_after is None else min(args.epochs, start_epoch + args.stop_after)
    kept_epoch = [start_epoch]  # the epoch of the last checkpoint written (on resume: the one read)
    try:
        _train_epochs(args, d, device, net, model, opt, sched, scaler, autocast_dtype, loss_fn, train_ds, test_ds,
                      history, start_epoch, end, writer, ckpt_path, say, kept_epoch)
        if _SIGNALLED:  # a signal recorded (not raised) after the last iteration: in a __del__, say
            raise KeyboardInterrupt
    except (KeyboardInterrupt, RuntimeError) as e:
        # a DataLoader worker killed by a signal (a scheduler's SIGTERM to the whole process group,
        # whose worker may die before this process's handler runs; the kernel's OOM killer) stops
        # the run as an interrupt does, naming it; any other RuntimeError is raised as it is
        text = str(e).strip()
        killed = isinstance(e, RuntimeError) and text.startswith("DataLoader worker") and (
            "killed by signal" in text or "exited unexpectedly" in text)
        if isinstance(e, RuntimeError) and not killed:
            raise
        kept = _kept(args, kept_epoch[0])
        if d.main and len(history) > kept_epoch[0]:  # between the epoch's end and its checkpoint
            where = f"after epoch {len(history)}, before its checkpoint was written"
            kept = kept if kept_epoch[0] else "no checkpoint was written"
        elif len(history) >= end:  # history holds every epoch of the run, resumed ones too
            where = f"after its last epoch ({len(history)}), before the summary was written"
        else:
            where = f"in epoch {len(history) + 1}"
        what = f"stopped {where} ({text.rstrip('. ')})" if killed and not _SIGNALLED else f"interrupted {where}"
        raise SystemExit(f"sltt-train: {what}; {kept}") from None
    except DataError as e:
        # an image that cannot be decoded, found when it is read: its path, not a traceback
        raise SystemExit(f"sltt-train: {_data_error_text(e)}; {_kept(args, kept_epoch[0])}") from None
    if writer is not None:
        writer.close()
    if not d.main:
        return None
    try:
        return _write_summary(args, device, history, time.time() - t_start, d, backend)
    except OSError as e:
        raise SystemExit(f"sltt-train: could not write {os.path.join(args.out, 'summary.json')} ({e.strerror or e}); "
                         f"the checkpoint of epoch {kept_epoch[0]} is kept in {args.out}: --resume --out {args.out} "
                         f"writes the summary") from e


def _data_notes(args, train_ds, test_ds) -> list:
    """What the log should say about the data: a validation split that lacks some of the training
    classes (its labels keep the training numbering, so nothing shifts, but its accuracy covers
    fewer classes)."""
    missing = getattr(test_ds, "missing_classes", None)
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"the test split lacks {len(missing)} of the {len(train_ds.classes)} training classes ({shown}); "
            f"its labels keep the training split's numbering"]


def _data_error_text(e: DataError) -> str:
    """The message of a DataError raised while reading a sample. From a DataLoader worker it
    arrives re-raised with the worker's traceback in its text: keep the original's last line."""
    text = str(e).strip()
    if "Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split("DataError: ", 1)[-1]


def _nothing_to_train(args, ck, used, d: Dist, device, say):
    """--resume of a run that has trained --epochs epochs or more: nothing is trained, and
    summary.json is left as it is. Asking for fewer epochs than were trained is an error (a run
    cannot be shortened); asking for as many returns the run's summary. A summary that is missing
    (the run stopped between its last checkpoint and the summary) or older than the checkpoint is
    written from the checkpoint's history, with wall_s None: no time was spent training here."""
    done = ck["epoch"]
    summary_path = os.path.join(args.out, "summary.json")
    if args.epochs < done:
        raise SystemExit(f"sltt-train: --epochs {args.epochs}: the checkpoint {used} has already trained {done} "
                         f"epochs, so there is nothing to train (give --epochs above {done} to train on); "
                         f"{summary_path} is left as it was")
    say(f"sltt-train: nothing to train: the checkpoint {used} has trained all {done} epochs of the run (give "
        f"--epochs above {done} to train on)")
    if not d.main:
        return None
    try:
        with open(summary_path) as f:
            summary = json.load(f)
        if isinstance(summary, dict) and summary.get("epochs_done") == done:
            say(f"sltt-train: {summary_path} is left as it was")
            return summary
    except (OSError, ValueError):
        pass
    say(f"sltt-train: {summary_path} is missing or older than the checkpoint: written from its history")
    return _write_summary(args, device, list(ck["history"]), None, d,
                          select_backend(torch.empty(0, device=device), args.backend))


def _kept(args, epochs_done: int) -> str:
    """What an interrupted or failed run leaves, and how to go on. epochs_done None: a process
    other than 0 past its first epoch, which cannot know whether process 0's last write ended."""
    if epochs_done is None:
        return "process 0 names the checkpoint kept"
    if epochs_done == 0:
        return "no epoch was completed, so no checkpoint was written"
    return (f"the checkpoint of epoch {epochs_done} is kept in {args.out}: continue with --resume --out {args.out}")


def _train_epochs(args, d, device, net, model, opt, sched, scaler, autocast_dtype, loss_fn, train_ds, test_ds,
                  history, start_epoch, end, writer, ckpt_path, say, kept_epoch):
    step_rng = random.Random()
    for epoch in range(start_epoch, end):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.time()
        lr = opt.param_groups[0]["lr"]  # the epoch's: the log and history say what it trained with
        stats = train_one_epoch(model, opt, train_ds, args, device, epoch, step_rng, autocast_dtype, scaler, loss_fn,
                                d, net)
        sched.step()
        test_acc, test_top5 = evaluate(net, test_ds, args, device, d)
        saved = stats["saved_per_step_bytes"]
        rec = dict(epoch=epoch + 1, loss=stats["loss"], train_acc=stats["train_acc"], test_acc=test_acc,
                   test_top5=test_top5, epoch_s=time.time() - t0, images_per_s=stats["images"] / stats["seconds"],
                   saved_per_step_MB=None if saved is None else saved / 2**20,
                   peak_memory_MB=_peak_memory_mb(device), lr=lr)
        history.append(rec)
        say(f"epoch {rec['epoch']:3d}  loss {rec['loss']:.4f}  train {100 * rec['train_acc']:.2f}%  "
            f"test {100 * rec['test_acc']:.2f}% (top-5 {100 * test_top5:.2f}%)  {rec['epoch_s']:.1f}s  "
            f"{rec['images_per_s']:.1f} img/s  saved/step {rec['saved_per_step_MB'] or 0:.2f} MB  "
            f"peak {rec['peak_memory_MB']:.0f} MB")
        if writer is not None:
            _log_tensorboard(writer, rec)
        if d.main:
            try:
                save_checkpoint(training_state(net, opt, sched, scaler, device, epoch + 1, history, vars(args)),
                                ckpt_path)
            except OSError as e:
                raise SystemExit(f"sltt-train: could not write the checkpoint of epoch {epoch + 1} to {ckpt_path} "
                                 f"({e.strerror or e}); {_kept(args, kept_epoch[0])}") from e
            kept_epoch[0] = epoch + 1
        else:
            kept_epoch[0] = None  # process 0 writes the checkpoints and names the one kept


if __name__ == "__main__":
    main()
