#!/usr/bin/env python
"""
Train / evaluate a LazyConfig detector (ViTDet, ViTDet+LiFT, controls) the way upstream's
``tools/lazyconfig_train_net.py`` does; see lift_det.engine.train_loop for the differences.

    tools/train_net.py --config-file configs/vitdet_mrcnn_lift.py [--eval-only] [--resume] \
        [--num-gpus N --num-machines M --machine-rank R --dist-url U] [key=value ...]
"""

from detectron2.engine import launch

import lift_det  # noqa: F401  (registers backbones and datasets)
from lift_det.engine import default_argument_parser, main

if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
