"""The training command: BPTT, SLTT or SLTT-K on digits, CIFAR-10/100, DVS data or ImageNet,
with the SLTT paper's recipes as its official code runs them (README of qymeng94/SLTT).

    python -m sltt_kernels.train --dataset digits --method sltt --T 4 --epochs 20
    sltt-train --dataset cifar10 --data-dir ~/data --method sltt --out runs/c10      # paper recipe
    sltt-train --dataset dvs-cifar10 --data-dir ~/CIFAR10DVS --method sltt-k --K 2
    sltt-train --dataset imagenet --data-dir ~/imagenet --model nf_resnet34 --out runs/in1   # T = 1
    sltt-train --dataset imagenet --data-dir ~/imagenet --recipe paper-finetune \\
        --pretrained runs/in1/checkpoint.pt --out runs/in6                                  # T = 6

--recipe paper (default) sets, per data set, the model, T, tau, surrogate, epochs, lr, batch
size, weight decay, dropout and loss of the paper (recipes.py; docs/paper.md says where each
comes from); every one can be overridden by its flag. --recipe fast-1bit is the same with the
rectangle surrogate (1 bit per element-step saved for the backward). paper-finetune is
ImageNet's second stage (T = 6, 30 epochs, lr 0.001, no weight decay, from --pretrained).

SGD with momentum 0.9 and cosine annealing over the epochs. Mixed precision as the official
code: fp16 autocast with a GradScaler, on a GPU (--amp, --amp-dtype). Each epoch prints one log
line (loss, train and test top-1, test top-5, epoch time, peak memory) and writes a checkpoint
atomically to --out, keeping the previous one (checkpoint.prev.pt) so that one bad write never
loses the run. --resume continues where the last good checkpoint stopped, with the checkpoint's
settings: a flag that conflicts with them is refused, except --epochs, which is applied (the
cosine schedule is recomputed for the new length). A JSON summary goes to --out/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time

import torch
from torch.utils.data import DataLoader

from . import models
from .checkpoint import (CheckpointError, load_pretrained, load_resume_checkpoint, restore_training_state,
                         save_checkpoint, training_state)
from .data import DATASETS, DataError, load_dataset
from .nn import PaperLIFNode, reset_net, set_step_mode
from .recipes import RECIPES, SURROGATES, recipe_defaults
from .training import MSE_TARGETS, bptt_step, make_loss, sltt_step

MODEL_BUILDERS = {
    "digits": lambda a, n, c, ch: models.digits_snn(num_classes=c, neuron=n),
    "resnet18": lambda a, n, c, ch: models.spiking_resnet18(num_classes=c, neuron=n, in_channels=ch, dropout=a.dropout),
    "resnet34": lambda a, n, c, ch: models.spiking_resnet34(num_classes=c, neuron=n, in_channels=ch, dropout=a.dropout),
    "vgg11_bn": lambda a, n, c, ch: models.vgg11_bn(num_classes=c, in_channels=ch, neuron=n, dropout=a.dropout),
    "vgg11_ws": lambda a, n, c, ch: models.vgg11_ws(num_classes=c, in_channels=ch, neuron=n, dropout=a.dropout),
    "nf_resnet34": lambda a, n, c, ch: models.nf_resnet34(num_classes=c, neuron=n, in_channels=ch),
    "nf_resnet50": lambda a, n, c, ch: models.nf_resnet50(num_classes=c, neuron=n, in_channels=ch),
    "nf_resnet101": lambda a, n, c, ch: models.nf_resnet101(num_classes=c, neuron=n, in_channels=ch),
}
# what defines a run: taken from the checkpoint on --resume; an explicit flag must agree
RUN_KEYS = ("dataset", "recipe", "model", "method", "T", "K", "tau", "surrogate", "dropout", "loss_lambda",
            "mse_target", "lr", "batch_size", "weight_decay", "momentum", "seed", "amp_dtype", "drop_last",
            "image_size")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="sltt-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=sorted(RECIPES), help="default: paper")
    p.add_argument("--method", choices=["bptt", "sltt", "sltt-k"], help="default: sltt")
    p.add_argument("--K", type=int, help="time steps back-propagated by sltt-k (recipe: 4 DVS-Gesture, else 2)")
    p.add_argument("--T", type=int, help="time steps")
    p.add_argument("--model", choices=list(MODEL_BUILDERS))
    p.add_argument("--dataset", choices=list(DATASETS), help="default: digits")
    p.add_argument("--data-dir", help="where the data set lives (not needed for digits)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--tau", type=float, help="membrane time constant (paper: 1.1)")
    p.add_argument("--surrogate", choices=sorted(SURROGATES), help="paper: triangle; fast-1bit: rect")
    p.add_argument("--dropout", type=float, help="dropout rate of the ResNet/VGG models")
    p.add_argument("--loss-lambda", type=float, help="weight of the MSE term of the loss (0: cross entropy)")
    p.add_argument("--mse-target", choices=MSE_TARGETS,
                   help="MSE to the threshold V_th = 1 (Eq. S13) or to the one-hot label (Eq. S14)")
    p.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the last incomplete training batch (paper: DVS-Gesture only)")
    p.add_argument("--image-size", type=int, help="ImageNet crop size (224)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--backend", default="auto", help="backend of the neurons")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"], help="autocast (auto: on a GPU)")
    p.add_argument("--amp-dtype", choices=["fp16", "bf16"], help="paper: fp16 with a GradScaler")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", default="runs/latest", help="checkpoints and summary.json go here")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--pretrained", help="start from this checkpoint's model weights (ImageNet stage 2)")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs in this run (for testing resume)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    # the flags the user gave (resume checks these against the checkpoint)
    args.explicit = sorted(k for k in RUN_KEYS + ("epochs",) if getattr(args, k, None) is not None)
    if args.resume and args.pretrained:
        p.error("--resume and --pretrained exclude each other: --resume continues the run in --out")
    if args.resume:
        return args  # the rest comes from the checkpoint (main() calls fill_defaults)
    try:
        fill_defaults(args)
    except ValueError as e:
        p.error(str(e))
    return args


def fill_defaults(args, from_checkpoint=None):
    """Completes args: explicit flags, else the checkpoint's values (on resume), else the recipe."""
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
    if args.T < 1:
        raise ValueError(f"--T must be >= 1, got {args.T}")
    if args.method == "sltt-k" and not 1 <= args.K <= args.T:
        raise ValueError(f"--K must lie in [1, T={args.T}], got {args.K}")
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if not 0.0 <= args.loss_lambda <= 1.0:
        raise ValueError(f"--loss-lambda must lie in [0, 1], got {args.loss_lambda}")
    if args.tau <= 1.0:
        raise ValueError(f"--tau must be > 1 (the decay is 1 - 1/tau), got {args.tau}")
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        raise ValueError("--epochs and --batch-size must be >= 1 and --lr > 0")
    if args.recipe == "paper-finetune" and not args.pretrained and not args.resume:
        raise ValueError("--recipe paper-finetune fine-tunes a T=1 model: give --pretrained CHECKPOINT")
    return args


def build_model(args, info, device):
    grad = "bptt" if args.method == "bptt" else "sltt"

    def neuron():
        return PaperLIFNode(tau=args.tau, surrogate_function=SURROGATES[args.surrogate](), grad_mode=grad,
                            backend=args.backend)

    return MODEL_BUILDERS[args.model](args, neuron, info.num_classes, info.in_channels).to(device)


def _loader(ds, args, shuffle, epoch):
    g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    if hasattr(ds, "generator"):  # augmentation draws, reproducible per epoch
        ds.generator.manual_seed(args.seed * 1000 + epoch + 1)
    return DataLoader(ds, batch_size=args.batch_size, shuffle=shuffle, generator=g, num_workers=args.workers,
                      drop_last=bool(args.drop_last) and shuffle)


def _progress(i, n, text, enabled):
    if not enabled:
        return
    width = 24
    done = int(width * i / max(n, 1))
    print(f"\r{text} [{'#' * done}{'.' * (width - done)}] {i}/{n}", end="" if i < n else "\n", file=sys.stderr,
          flush=True)


def topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    """How many rows of logits [B, classes] have the label y [B] among their k largest."""
    k = min(k, logits.shape[-1])
    return int((logits.topk(k, dim=-1).indices == y.unsqueeze(-1)).any(-1).sum())


@torch.no_grad()
def evaluate(net, ds, args, device):
    """Top-1 and top-5 accuracy over ds, multi-step, in float32 (the official test loop does not
    autocast)."""
    net.eval()
    info = DATASETS[args.dataset]
    set_step_mode(net, "m")
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
    return top1 / max(total, 1), top5 / max(total, 1)


def reconcile_resume(args, saved: dict):
    """Settings on --resume: the checkpoint's, unless a flag was given. A given flag that differs
    from the checkpoint is refused, except --epochs (applied to the schedule). Returns the
    messages about what was applied."""
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


def _peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _device(args) -> torch.device:
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


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


def _restore(args, device, ck, used, notes, net, opt, sched, scaler):
    """Loads a checkpoint into the run (or pretrained weights); returns (start epoch, history)."""
    if ck is None:
        if args.pretrained:
            try:
                load_pretrained(net, args.pretrained, device)
            except CheckpointError as e:
                raise SystemExit(f"sltt-train: {e}")
            print(f"model weights from {args.pretrained}")
        return 0, []
    try:
        start_epoch, history = restore_training_state(ck, used, net, opt, sched, scaler, device, args.epochs)
    except CheckpointError as e:
        raise SystemExit(f"sltt-train: {e}")
    print(f"resumed from {used} after epoch {start_epoch}")
    for n in notes:
        print(f"sltt-train: {n}")
    return start_epoch, history


def train_one_epoch(net, opt, train_ds, args, device, epoch, step_rng, autocast_dtype, scaler, loss_fn):
    """One epoch of the chosen method; returns (mean loss, train top-1 accuracy)."""
    info = DATASETS[args.dataset]
    step_rng.seed(args.seed * 1000 + epoch)  # SLTT-K's draws, reproducible per epoch
    loss_sum = correct = seen = 0
    loader = _loader(train_ds, args, True, epoch)
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device), torch.as_tensor(y).to(device)
        if info.sequence:
            x = x.transpose(0, 1)  # [B, T, ...] -> [T, B, ...]
        kw = dict(sequence=info.sequence, autocast_dtype=autocast_dtype, scaler=scaler, loss_fn=loss_fn)
        if args.method == "bptt":
            res = bptt_step(net, opt, x, y, args.T, **kw)
        else:
            res = sltt_step(net, opt, x, y, args.T, K=args.K if args.method == "sltt-k" else None,
                            generator=step_rng, **kw)
        loss_sum += res.loss * len(y)
        correct += topk_correct(res.output, y, 1)
        seen += len(y)
        _progress(i + 1, len(loader), f"epoch {epoch + 1}/{args.epochs}", not args.no_progress)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _checkpoint(args, device, net, opt, sched, scaler, epoch, history, path):
    save_checkpoint(training_state(net, opt, sched, scaler, device, epoch, history, vars(args)), path)


def _write_summary(args, device, history, wall_s):
    summary = dict(dataset=args.dataset, model=args.model, method=args.method, recipe=args.recipe, T=args.T,
                   K=args.K if args.method == "sltt-k" else None, epochs_done=len(history), epochs=args.epochs,
                   final_test_acc=history[-1]["test_acc"] if history else None,
                   final_test_top5=history[-1]["test_top5"] if history else None,
                   best_test_acc=max((h["test_acc"] for h in history), default=None),
                   wall_s=wall_s, device=device.type, torch=torch.__version__, history=history)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"summary: {os.path.join(args.out, 'summary.json')}  final test accuracy "
          f"{100 * (summary['final_test_acc'] or 0):.2f}%")
    return summary


def main(argv=None):
    args = parse_args(argv)
    device = _device(args)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    ck, used, notes = None, None, []
    if args.resume:
        try:
            ck, used = load_resume_checkpoint(ckpt_path, device)
            notes = reconcile_resume(args, ck["args"])
        except (CheckpointError, ValueError) as e:
            raise SystemExit(f"sltt-train: {e}")
    try:
        train_ds = load_dataset(args.dataset, args.data_dir, train=True, T=args.T, image_size=args.image_size)
        test_ds = load_dataset(args.dataset, args.data_dir, train=False, T=args.T, image_size=args.image_size)
    except DataError as e:
        raise SystemExit(f"sltt-train: {e}")
    net, opt, sched, scaler, autocast_dtype, loss_fn = _setup(args, device)
    start_epoch, history = _restore(args, device, ck, used, notes, net, opt, sched, scaler)
    print(f"sltt-train: {args.method}{f' K={args.K}' if args.method == 'sltt-k' else ''} T={args.T} "
          f"{args.model} on {args.dataset} ({len(train_ds)} train / {len(test_ds)} test), recipe {args.recipe}, "
          f"{args.epochs} epochs, lr {args.lr} batch {args.batch_size} wd {args.weight_decay}, tau {args.tau} "
          f"{args.surrogate}, dropout {args.dropout}, loss lambda {args.loss_lambda} ({args.mse_target}), "
          f"{device.type}{f' {args.amp_dtype} autocast' if autocast_dtype is not None else ''}")
    step_rng = random.Random()
    t_start = time.time()
    end = args.epochs if args.stop_after is None else min(args.epochs, start_epoch + args.stop_after)
    for epoch in range(start_epoch, end):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.time()
        loss, train_acc = train_one_epoch(net, opt, train_ds, args, device, epoch, step_rng, autocast_dtype, scaler,
                                          loss_fn)
        sched.step()
        test_acc, test_top5 = evaluate(net, test_ds, args, device)
        rec = dict(epoch=epoch + 1, loss=loss, train_acc=train_acc, test_acc=test_acc, test_top5=test_top5,
                   epoch_s=time.time() - t0, peak_memory_MB=_peak_memory_mb(device), lr=opt.param_groups[0]["lr"])
        history.append(rec)
        print(f"epoch {rec['epoch']:3d}  loss {rec['loss']:.4f}  train {100 * rec['train_acc']:.2f}%  "
              f"test {100 * rec['test_acc']:.2f}% (top-5 {100 * test_top5:.2f}%)  {rec['epoch_s']:.1f}s  "
              f"peak {rec['peak_memory_MB']:.0f} MB", flush=True)
        _checkpoint(args, device, net, opt, sched, scaler, epoch + 1, history, ckpt_path)
    return _write_summary(args, device, history, time.time() - t_start)


if __name__ == "__main__":
    main()
