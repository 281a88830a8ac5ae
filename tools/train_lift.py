#!/usr/bin/env python3
"""An alias of tools/train_net.py (same arguments, same behaviour), kept so that existing
stage-one commands keep working: stage one is a config like any other."""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(__file__), "train_net.py"), run_name="__main__")
