"""Entry point of `python -m sltt_kernels.train` and `sltt-train`: runs the training command,
which lives in train_command.py (its flags: `python -m sltt_kernels.train --help`). The
training steps it calls, for your own loops, are the library in training.py; the paper's recipes
are in recipes.py and the checkpoints in checkpoint.py."""

import os
import sys

from .train_command import build_model, evaluate, main, parse_args, topk_correct  # noqa: F401  (the old names)


def cli(argv=None) -> None:
    """`sltt-train` and `python -m sltt_kernels.train`: runs main(argv) and returns nothing, since
    a console script exits with what its function returns (main's summary dict would be printed
    and read as a failure). main(argv) is the call that returns the summary."""
    main(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # torch 2.14.1's gloo backend sometimes aborts at interpreter exit after a clean
        # destroy_process_group ("terminate called without an active exception", in 4 of 16 runs of
        # a plain DDP script under load), so torchrun would report a finished run as failed. main has
        # written everything and every process passed its barrier: leave without the destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    cli()
