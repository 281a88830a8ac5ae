#!/usr/bin/env python3
"""
An alias of tools/train_net.py, kept so that existing stage-one commands keep working: stage one
is a config like any other (its model, a ``LiFTDistiller``, returns the distillation loss; its
``train.export`` hook writes OUTPUT_DIR/lift_final.pth). Same arguments, same behaviour:

    .venv/bin/python tools/train_lift.py --config-file configs/mini/lift_stage1.py \\
        train.output_dir=/tmp/s1mini
    # is exactly
    .venv/bin/python tools/train_net.py --config-file configs/mini/lift_stage1.py \\
        train.output_dir=/tmp/s1mini
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(__file__), "train_net.py"), run_name="__main__")
