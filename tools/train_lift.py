#!/usr/bin/env python
"""
Stage one (paper §3.3-3.4): train LiFT against a frozen ViT, self-supervised, with the same loop
as tools/train_net.py. The config's model is a ``LiFTDistiller``; its ``train.export`` hook writes
the trained LiFT with its metadata to OUTPUT_DIR/lift_final.pth, the file stage two loads.

    tools/train_lift.py --config-file configs/lift_stage1_coco.py [--resume] [--eval-only] \
        [--num-gpus N --num-machines M --machine-rank R --dist-url U] [key=value ...]
    tools/train_lift.py --config-file configs/mini/lift_stage1.py train.output_dir=/tmp/s1mini
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
