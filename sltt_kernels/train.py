"""The training command: BPTT, SLTT or SLTT-K on digits, CIFAR-10/100 or DVS data.

    python -m sltt_kernels.train --dataset digits --method sltt --T 4 --epochs 20
    sltt-train --dataset cifar10 --data-dir ~/data --method sltt-k --K 2 --T 6 --out runs/c10

SGD with momentum 0.9 and cosine annealing; the learning rate, batch size, weight decay and
epochs default per data set (DEFAULTS below; pass flags to change them). Static images are fed
at every step (direct encoding); CIFAR training images are randomly cropped (4-pixel padding),
flipped and cut out. Mixed precision (bf16 autocast) on a GPU. Each epoch prints one log line
(loss, train and test accuracy, epoch time, peak memory) and writes a checkpoint atomically to
--out; --resume continues exactly where the last checkpoint stopped. A JSON summary is written
at the end (--out/summary.json).
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
from .data import DATASETS, DataError, load_dataset
from .nn import PaperLIFNode, reset_net, set_step_mode
from .training import bptt_step, sltt_step

# Per data set: model, lr, batch size, weight decay, epochs, T. These follow common practice for
# these data sets; compare them with the paper's Table S4 before reporting its numbers.
DEFAULTS = {
    "digits": dict(model="digits", lr=0.1, batch_size=64, weight_decay=1e-4, epochs=20, T=4),
    "cifar10": dict(model="resnet18", lr=0.1, batch_size=128, weight_decay=5e-4, epochs=200, T=6),
    "cifar100": dict(model="resnet18", lr=0.1, batch_size=128, weight_decay=5e-4, epochs=200, T=6),
    "dvs-gesture": dict(model="vgg11_ws", lr=0.1, batch_size=16, weight_decay=5e-4, epochs=300, T=20),
    "dvs-cifar10": dict(model="vgg11_bn", lr=0.05, batch_size=128, weight_decay=5e-4, epochs=300, T=10),
}
MODEL_BUILDERS = {
    "digits": lambda n, c, ch: models.digits_snn(num_classes=c, neuron=n),
    "resnet18": lambda n, c, ch: models.spiking_resnet18(num_classes=c, neuron=n, in_channels=ch),
    "resnet34": lambda n, c, ch: models.spiking_resnet34(num_classes=c, neuron=n, in_channels=ch),
    "vgg11_bn": lambda n, c, ch: models.vgg11_bn(num_classes=c, in_channels=ch, neuron=n, dropout=0.1),
    "vgg11_ws": lambda n, c, ch: models.vgg11_ws(num_classes=c, in_channels=ch, neuron=n, dropout=0.1),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="sltt-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="sltt", choices=["bptt", "sltt", "sltt-k"])
    p.add_argument("--K", type=int, default=2, help="time steps back-propagated by sltt-k")
    p.add_argument("--T", type=int, help="time steps (default per data set)")
    p.add_argument("--model", choices=list(MODEL_BUILDERS), help="default per data set")
    p.add_argument("--dataset", default="digits", choices=list(DATASETS))
    p.add_argument("--data-dir", help="where the data set lives (not needed for digits)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--backend", default="auto", help="backend of the neurons")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"], help="bf16 autocast (auto: on a GPU)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", default="runs/latest", help="checkpoints and summary.json go here")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs in this run (for testing resume)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for k, v in DEFAULTS[args.dataset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.T < 1:
        p.error(f"--T must be >= 1, got {args.T}")
    if args.method == "sltt-k" and not 1 <= args.K <= args.T:
        p.error(f"--K must lie in [1, T={args.T}], got {args.K}")
    return args


def build_model(args, info, device):
    grad = "bptt" if args.method == "bptt" else "sltt"
    neuron = lambda: PaperLIFNode(grad_mode=grad, backend=args.backend)  # noqa: E731
    net = MODEL_BUILDERS[args.model](neuron, info.num_classes, info.in_channels).to(device)
    return net


def _loader(ds, args, shuffle, epoch):
    g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    if hasattr(ds, "generator"):  # augmentation draws, reproducible per epoch
        ds.generator.manual_seed(args.seed * 1000 + epoch + 1)
    return DataLoader(ds, batch_size=args.batch_size, shuffle=shuffle, generator=g, num_workers=args.workers,
                      drop_last=False)


def _progress(i, n, text, enabled):
    if not enabled:
        return
    width = 24
    done = int(width * i / max(n, 1))
    print(f"\r{text} [{'#' * done}{'.' * (width - done)}] {i}/{n}", end="" if i < n else "\n", file=sys.stderr,
          flush=True)


@torch.no_grad()
def evaluate(net, ds, args, device, amp):
    net.eval()
    info = DATASETS[args.dataset]
    set_step_mode(net, "m")
    correct = total = 0
    for x, y in DataLoader(ds, batch_size=max(args.batch_size, 256), num_workers=args.workers):
        x, y = x.to(device), y.to(device)
        seq = x.transpose(0, 1) if info.sequence else x.unsqueeze(0).expand(args.T, *x.shape)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(seq).float().mean(0)
        reset_net(net)
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    net.train()
    return correct / max(total, 1)


def _atomic_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    amp = device.type == "cuda" if args.amp == "auto" else args.amp == "on"
    info = DATASETS[args.dataset]
    try:
        train_ds = load_dataset(args.dataset, args.data_dir, train=True, T=args.T)
        test_ds = load_dataset(args.dataset, args.data_dir, train=False, T=args.T)
    except DataError as e:
        raise SystemExit(f"sltt-train: {e}")
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    net = build_model(args, info, device)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    start_epoch, history = 0, []
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise SystemExit(f"sltt-train: --resume but {ckpt_path} does not exist")
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)  # a checkpoint is data, not code
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in ck:
            torch.cuda.set_rng_state(ck["cuda_rng"], device)
        start_epoch, history = ck["epoch"], ck["history"]
        print(f"resumed from {ckpt_path} after epoch {start_epoch}")
    print(f"sltt-train: {args.method}{f' K={args.K}' if args.method == 'sltt-k' else ''} T={args.T} "
          f"{args.model} on {args.dataset} ({len(train_ds)} train / {len(test_ds)} test), {args.epochs} epochs, "
          f"lr {args.lr} batch {args.batch_size} wd {args.weight_decay}, {device.type}{' bf16' if amp else ''}")
    step_rng = random.Random()
    t_start = time.time()
    end = args.epochs if args.stop_after is None else min(args.epochs, start_epoch + args.stop_after)
    for epoch in range(start_epoch, end):
        step_rng.seed(args.seed * 1000 + epoch)  # SLTT-K's draws, reproducible per epoch
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.time()
        loss_sum = correct = seen = 0
        loader = _loader(train_ds, args, True, epoch)
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            if info.sequence:
                x = x.transpose(0, 1)  # [B, T, ...] -> [T, B, ...]
            kw = dict(sequence=info.sequence, autocast_dtype=torch.bfloat16 if amp else None)
            if args.method == "bptt":
                res = bptt_step(net, opt, x, y, args.T, **kw)
            else:
                res = sltt_step(net, opt, x, y, args.T, K=args.K if args.method == "sltt-k" else None,
                                generator=step_rng, **kw)
            loss_sum += res.loss * len(y)
            correct += int((res.output.argmax(1) == y).sum())
            seen += len(y)
            _progress(i + 1, len(loader), f"epoch {epoch + 1}/{args.epochs}", not args.no_progress)
        sched.step()
        test_acc = evaluate(net, test_ds, args, device, amp)
        rec = dict(epoch=epoch + 1, loss=loss_sum / seen, train_acc=correct / seen, test_acc=test_acc,
                   epoch_s=time.time() - t0, peak_memory_MB=_peak_memory_mb(device), lr=opt.param_groups[0]["lr"])
        history.append(rec)
        print(f"epoch {rec['epoch']:3d}  loss {rec['loss']:.4f}  train {100 * rec['train_acc']:.2f}%  "
              f"test {100 * rec['test_acc']:.2f}%  {rec['epoch_s']:.1f}s  peak {rec['peak_memory_MB']:.0f} MB", flush=True)
        ck = dict(model=net.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                  torch_rng=torch.get_rng_state(), epoch=epoch + 1, history=history,
                  args={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None)))})
        if device.type == "cuda":
            ck["cuda_rng"] = torch.cuda.get_rng_state(device)
        _atomic_save(ck, ckpt_path)
    summary = dict(dataset=args.dataset, model=args.model, method=args.method, T=args.T,
                   K=args.K if args.method == "sltt-k" else None, epochs_done=len(history), epochs=args.epochs,
                   final_test_acc=history[-1]["test_acc"] if history else None,
                   best_test_acc=max((h["test_acc"] for h in history), default=None),
                   wall_s=time.time() - t_start, device=device.type, torch=torch.__version__, history=history)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"summary: {os.path.join(args.out, 'summary.json')}  final test accuracy "
          f"{100 * (summary['final_test_acc'] or 0):.2f}%")
    return summary


if __name__ == "__main__":
    main()
