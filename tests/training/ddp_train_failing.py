"""Run by test_train_distributed.py under torchrun (not a test module): the training command in
which process 1 fails in its first epoch, to check that the others stop with a clear message."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from sltt_kernels import train_command  # noqa: E402

_real_epoch = train_command.train_one_epoch


def _epoch_failing_on_rank_1(*args, **kwargs):
    if int(os.environ["RANK"]) == 1:
        raise RuntimeError("injected failure of process 1")
    return _real_epoch(*args, **kwargs)  # process 0 then waits in its first all-reduce


train_command.train_one_epoch = _epoch_failing_on_rank_1

if __name__ == "__main__":
    train_command.main()
