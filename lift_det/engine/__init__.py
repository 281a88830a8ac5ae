"""Training and evaluation loops shared by tools/train_net.py and tools/train_lift.py."""

from .train_loop import build_trainer, default_argument_parser, do_test, do_train, main

__all__ = ["build_trainer", "default_argument_parser", "do_test", "do_train", "main"]
