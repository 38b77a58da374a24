"""Worker for test_training.py's DDP test (run under torchrun; not a test module itself).

Each of 2 ranks trains on its half of a fixed batch with sltt_step on a DistributedDataParallel
model; rank 0 saves the weights, the weights of a single-process step on the whole batch, and
how many all-reduce calls one iteration made."""

import argparse
import os
import random
import sys

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sltt_kernels import training  # noqa: E402
from sltt_kernels.nn import FoldTime, SLTTLIFNode  # noqa: E402


def build(backend):
    torch.manual_seed(0)
    return nn.Sequential(
        FoldTime(nn.Linear(12, 32)), SLTTLIFNode(backend=backend), FoldTime(nn.Linear(32, 5)),
    ).double()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--K", type=int, default=None)
    p.add_argument("--backend", default="auto")
    a = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 12, generator=g, dtype=torch.float64) * 1.5 + 0.5
    y = torch.randint(0, 5, (8,), generator=g)
    per = 8 // world
    model = nn.parallel.DistributedDataParallel(build(a.backend))
    calls = [0]

    def counting_allreduce(state, bucket):
        calls[0] += 1
        t = bucket.buffer()
        fut = dist.all_reduce(t, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0] / world)

    model.register_comm_hook(None, counting_allreduce)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    training.sltt_step(model, opt, x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per], a.T, K=a.K,
                       generator=random.Random(5))
    if rank == 0:
        torch.save(model.module.state_dict(), os.path.join(a.out, "ddp_rank0.pt"))
        single = build(a.backend)
        sopt = torch.optim.SGD(single.parameters(), lr=0.5)
        training.sltt_step(single, sopt, x, y, a.T, K=a.K, generator=random.Random(5))
        torch.save(single.state_dict(), os.path.join(a.out, "single.pt"))
        # the model is far under DDP's 25 MB bucket: one bucket, so one call per all-reduce
        torch.save({"per_iteration": calls[0], "buckets": 1}, os.path.join(a.out, "allreduce_counts.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # torch 2.14.1's gloo backend sometimes aborts at interpreter exit, after a clean
    # destroy_process_group ("terminate called without an active exception"; seen in 4 of 16 runs
    # of a plain two-layer DDP script under load, without this library). Everything is saved and
    # both ranks passed the barrier, so leave without running the static destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
