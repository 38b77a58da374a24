"""Entry point of `python -m sltt_kernels.train` and `sltt-train`: runs the training command,
which lives in train_command.py (its flags: `python -m sltt_kernels.train --help`). The
training steps it calls, for your own loops, are the library in training.py; the paper's recipes
are in recipes.py and the checkpoints in checkpoint.py."""

from .train_command import build_model, evaluate, main, parse_args, topk_correct  # noqa: F401  (the old names)

if __name__ == "__main__":
    main()
